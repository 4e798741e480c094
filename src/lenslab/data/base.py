"""The task protocol and the deterministic data cursor.

A task hands out *global* batches by index: ``task.batch(index, batch_size)`` is a pure function
of ``(seed, index)``. The trainer keeps one integer, the data index, and (after a rollback) a
list of skipped index ranges; those are the whole data cursor, saved in every checkpoint, so a
resumed run sees exactly the batches it would have seen. Ranks and micro-batches take slices of
the same global batch, which is why a 2-process run matches a 1-process run with the same
global batch.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterator, Protocol

import numpy as np
import torch
import torch.nn.functional as F

IGNORE = -100  # target id that is not scored (cross_entropy's ignore_index)


def rng_for(seed: int, *stream: int) -> np.random.Generator:
    """An independent generator for ``(seed, *stream)`` (SeedSequence mixes the words)."""
    return np.random.default_rng(np.random.SeedSequence([seed, *stream]))


class Task(Protocol):
    name: str
    vocab_size: int
    seq_len: int  # tokens per input sequence

    def batch(self, index: int, batch_size: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Global training batch ``index``: inputs ``[B, T]`` and targets ``[B, T]`` (IGNORE = unscored)."""

    def eval_batches(self, n: int, batch_size: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """Held-out batches, the same on every call."""

    def token_str(self, ids: list[int]) -> list[str]:
        """Token strings as the model sees them (raw; escape only when rendering)."""

    def metrics(self, model: torch.nn.Module, device: torch.device) -> dict[str, float]:
        """Task-specific measures of the model (accuracy, loss on repeated tokens, ...)."""


@dataclass
class DataCursor:
    """Which global batch comes next. ``skip`` holds inclusive index ranges never to be used."""

    index: int = 0
    skip: list[tuple[int, int]] = field(default_factory=list)

    def _normalize(self) -> None:
        while True:
            for a, b in self.skip:
                if a <= self.index <= b:
                    self.index = b + 1
                    break
            else:
                return

    def take(self) -> int:
        """Return the next usable index and advance past it."""
        self._normalize()
        i = self.index
        self.index += 1
        return i

    def peek(self) -> int:
        self._normalize()
        return self.index

    def add_skip(self, a: int, b: int) -> None:
        self.skip.append((int(a), int(b)))

    def state_dict(self) -> dict:
        return {"index": self.index, "skip": [list(r) for r in self.skip]}

    def load_state_dict(self, d: dict) -> None:
        self.index = int(d["index"])
        self.skip = [(int(a), int(b)) for a, b in d["skip"]]


@torch.no_grad()
def mean_loss(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Per-position cross-entropy ``[B, T]`` (0 where the target is IGNORE)."""
    logits = model(x)
    return torch.nn.functional.cross_entropy(
        logits.float().reshape(-1, logits.shape[-1]), y.reshape(-1), ignore_index=IGNORE,
        reduction="none",
    ).view_as(y)


def task_loss(task: Task, out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Summed loss over the scored targets: the task's own (e.g. squared error for in-context
    regression) when it defines ``loss_sum``, else next-token cross-entropy."""
    own = getattr(task, "loss_sum", None)
    if own is not None:
        return own(out, y)
    return F.cross_entropy(out.float().reshape(-1, out.shape[-1]), y.reshape(-1),
                           ignore_index=IGNORE, reduction="sum")


def task_scored(task: Task, y: torch.Tensor) -> int:
    """How many targets of ``y`` the task scores (the denominator of its mean loss)."""
    own = getattr(task, "scored_count", None)
    return int(own(y)) if own is not None else int((y != IGNORE).sum())
