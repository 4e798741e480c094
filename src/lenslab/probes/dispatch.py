"""The probe for a run's task."""

from __future__ import annotations

from pathlib import Path
from typing import Optional, Sequence

from lenslab.probes.counterfactual import counterfactual
from lenslab.probes.length import length_generalization
from lenslab.probes.result import PROBES, ProbeResult, load
from lenslab.probes.rules import rule_test
from lenslab.run import Run


def probe(run_dir: str | Path, step: Optional[int] = None, *, lengths: Optional[Sequence[int]] = None,
          variant: str = "swap", n: Optional[int] = None, bootstrap: int = 1000,
          seed: int = 0) -> ProbeResult:
    """The probe for the run's task: two rules (``repeat``), length (``sequence``) or
    counterfactual variants (``modular_addition``, ``addition``)."""
    kind = PROBES.get(Run.open(run_dir).config.data.task)
    if kind == "rules":
        return rule_test(run_dir, step, n=n or 256, bootstrap=bootstrap, seed=seed)
    if kind == "length":
        return length_generalization(run_dir, step, lengths, n=n or 256, bootstrap=bootstrap,
                                     seed=seed)
    if kind == "counterfactual":
        return counterfactual(run_dir, variant, step, n=n or 1024, bootstrap=bootstrap, seed=seed)
    load(run_dir, step)  # raises the one-line error naming the tasks the probes read
    raise AssertionError("unreachable")
