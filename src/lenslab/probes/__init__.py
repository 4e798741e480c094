"""Generalization probes: did the model learn the rule we meant, or a shortcut?"""

from lenslab.probes.generalization import (CounterfactualTest, LengthTest, RuleTest,
                                           counterfactual, length_generalization, probe,
                                           rule_test, write_probe)

__all__ = ["RuleTest", "LengthTest", "CounterfactualTest", "rule_test", "length_generalization",
           "counterfactual", "probe", "write_probe"]
