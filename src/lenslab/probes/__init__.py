"""Generalization probes: did the model learn the rule we meant, or a shortcut?"""

from lenslab.probes.generalization import (CounterfactualTest, LengthTest, ProbeSeries,
                                           RuleTest, counterfactual, length_generalization,
                                           probe, probe_checkpoints, probe_sweep, rule_test,
                                           write_probe, write_probe_series)

__all__ = ["RuleTest", "LengthTest", "CounterfactualTest", "ProbeSeries", "rule_test",
           "length_generalization", "counterfactual", "probe", "probe_sweep", "probe_checkpoints",
           "write_probe", "write_probe_series"]
