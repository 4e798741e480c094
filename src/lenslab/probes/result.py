"""What every probe shares: the tasks each reads, loading a run, bootstrap intervals, and
:class:`ProbeResult`, the one result kind (``probe``) the three probes write."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch

from lenslab.errors import DataError
from lenslab.html import badge
from lenslab.result import Result
from lenslab.run import Run

#: Tasks each probe reads, for the error a run of another task gets.
PROBES = {"repeat": "rules", "question": "rules", "sequence": "length", "modular_addition": "counterfactual",
          "addition": "counterfactual"}
VARIANTS = {"swap": "each question with its operands swapped (b + a for a + b): the answer is "
                    "the same under addition"}
TITLES = {"rules": "Which rule did the model learn?", "length": "Length generalization",
          "counterfactual": "Counterfactual variants"}


def intervals(hits: np.ndarray, counts: np.ndarray, n_boot: int, seed: int) -> np.ndarray:
    """95% intervals of ``sum(hits) / sum(counts)`` over resampled rows (a row is a sequence:
    its positions are not independent, so sequences are what is resampled). ``hits [n, k]``,
    ``counts [n]``; returns ``[k, 2]``."""
    n = len(counts)
    idx = np.random.default_rng(seed).integers(0, n, size=(n_boot, n))
    shares = hits[idx].sum(1) / np.maximum(counts[idx].sum(1), 1)[:, None]  # [B, k]
    return np.quantile(shares, [0.025, 0.975], axis=0).T


def load(run_dir: Any, step: Any) -> tuple[Any, Any, Any, int]:
    """``(model, task, resolved config, step)`` of a run the probes read."""
    run = Run.open(run_dir)
    task = run.config.data.task
    if task not in PROBES:
        raise DataError(f"{run.path} trains data.task = {task!r}; the generalization probes read "
                        + ", ".join(f"{t} ({k})" for t, k in PROBES.items()))
    ck = run.checkpoint(step)
    return run.load_model(ck), run.task, run.resolved, ck.step


@torch.no_grad()
def argmax(model: torch.nn.Module, x: torch.Tensor, batch: int = 256) -> np.ndarray:
    """The model's greedy next token at every position ``[n, T]``."""
    return torch.cat([model(x[i:i + batch]).argmax(-1) for i in range(0, len(x), batch)]).numpy()


class ProbeResult(Result):
    """Base of the three probe results (dataclasses with ``run_dir`` and ``step``): one kind,
    ``probe``, told apart by :attr:`probe` (``rules``, ``length``, ``counterfactual``). Every
    probe has a :attr:`verdict` and a :attr:`summary` (properties: they follow from the
    numbers), both written into the file for readers of the JSON."""

    kind = "probe"
    probe: ClassVar[str] = ""
    _types: ClassVar[dict[str, type]] = {}

    def __init_subclass__(cls, **kw: Any) -> None:
        super().__init_subclass__(**kw)
        if cls.__dict__.get("probe"):
            ProbeResult._types[cls.probe] = cls

    @property
    def verdict(self) -> str:  # pragma: no cover - each probe defines it
        raise NotImplementedError

    @property
    def summary(self) -> str:  # pragma: no cover - each probe defines it
        raise NotImplementedError

    @property
    def title(self) -> str:  # type: ignore[override]
        return TITLES[self.probe]

    def heading(self) -> str:
        return f"{self.title}: {Path(self.run_dir).name} at step {self.step}"

    def to_dict(self) -> dict:
        return {"probe": self.probe, **dataclasses.asdict(self), "verdict": self.verdict,
                "summary": self.summary}

    @classmethod
    def from_dict(cls, d: dict) -> "ProbeResult":
        name = d.get("probe") or d.get("kind")  # files before the result protocol: "kind"
        if name not in cls._types:  # the probes register when lenslab.probes is imported
            raise DataError(f"unknown probe {name!r} (one of {', '.join(cls._types)})")
        target = cls._types[name]
        fields = {f.name: d[f.name] for f in dataclasses.fields(target) if f.name in d}
        if "by_period" in fields:  # JSON keys are strings
            fields["by_period"] = {int(k): v for k, v in fields["by_period"].items()}
        return target(**fields)

    def badge(self, good: str) -> str:
        return badge(self.verdict, "ok" if self.verdict == good else "warn")
