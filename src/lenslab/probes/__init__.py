"""Did the model learn the rule we meant, or a shortcut? Three probes on held-out inputs.

* **Two rules** (:func:`rule_test`): training data that fits more than one rule (``data.task =
  "repeat"``: induction, a fixed offset, a fixed phase). On held-out inputs where the rules
  disagree, the share of the model's answers each rule gives, with intervals from resampling
  sequences, and a verdict: the rule whose 95% interval lies above one half, or "mixed".
* **Length** (:func:`length_generalization`): exact match and per-token accuracy at every
  length, inside and past the training range (``data.task = "sequence"``), and the longest
  length up to which the model keeps its in-range accuracy.
* **Counterfactual variants** (:func:`counterfactual`): the same questions changed in a way the
  rule says cannot matter (``swap``: ``b + a`` for ``a + b``). Accuracy on the originals and on
  the variants, how often the answer stays the same, and the drop with its interval. For
  modular addition the held-out pairs are split by whether their swap was trained: a model that
  answers only those has learned commutativity, not addition.

:func:`probe` picks the probe for a run's task; its result is of kind ``probe``
(:class:`~lenslab.probes.result.ProbeResult`: ``probe.json``, ``.html``, ``.png`` through
:func:`lenslab.result.write_result`). :func:`probe_sweep` and :func:`probe_checkpoints` run it
on every run of a sweep or every checkpoint of a run, into one table and plot
(:class:`ProbeSeries`). One module per probe: :mod:`rules`, :mod:`length`, :mod:`counterfactual`;
the series in :mod:`series`.
"""

from __future__ import annotations

from lenslab.probes.counterfactual import CounterfactualTest, counterfactual
from lenslab.probes.dispatch import probe
from lenslab.probes.length import LengthTest, length_generalization, parse_lengths
from lenslab.probes.result import PROBES, VARIANTS, ProbeResult
from lenslab.probes.rules import RuleTest, rule_test
from lenslab.probes.series import (
           ProbeSeries,
           is_sweep_dir,
           probe_checkpoints,
           probe_sweep,
)

__all__ = ["RuleTest", "LengthTest", "CounterfactualTest", "ProbeResult", "ProbeSeries",
           "rule_test", "length_generalization", "counterfactual", "probe", "probe_sweep",
           "probe_checkpoints", "parse_lengths", "is_sweep_dir", "PROBES", "VARIANTS"]
