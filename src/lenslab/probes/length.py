"""Length: exact match and per-token accuracy at every length, inside and past the training
range (``data.task = "sequence"``), and the longest length up to which the model keeps its
in-range accuracy."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Sequence

import numpy as np
import torch

from lenslab.errors import DataError
from lenslab.html import badge, escape, figure_block, figure_to_svg, pyplot
from lenslab.probes.result import PROBES, ProbeResult, argmax, intervals, load


@dataclass
class LengthTest(ProbeResult):
    """Accuracy at every length, inside and past the training range."""

    run_dir: str
    step: int
    op: str
    model: str  # "GPT, learned positions", "LSTM", ...
    train_range: list[int]
    lengths: list[int]
    exact_match: list[float]
    exact_interval: list[list[float]]
    token_acc: list[float]
    in_range: float  # mean exact match over the trained lengths
    holds_to: int  # longest length up to which exact match stays >= threshold * in_range
    threshold: float
    n: int

    probe = "length"

    @property
    def verdict(self) -> str:
        if self.in_range < 0.5:
            return "not learned"
        return "generalizes" if self.holds_to > self.train_range[1] else "does not generalize"

    @property
    def summary(self) -> str:
        lo, hi = self.train_range
        past = self.holds_to - hi
        if self.in_range < 0.5:
            return (f"the model has not learned to {self.op} in its training range ({lo} to "
                    f"{hi}): exact match {self.in_range:.1%} there, so length generalization "
                    "cannot be judged")
        first = self.lengths.index(hi + 1) if hi + 1 in self.lengths else None
        nxt = (f"; at length {hi + 1}: {self.exact_match[first]:.1%}" if first is not None else "")
        if past <= 0:
            return (f"no length generalization: {self.in_range:.1%} exact match on lengths {lo} "
                    f"to {hi}{nxt}")
        return (f"holds to length {self.holds_to}, {past} past the longest trained ({hi}); "
                f"{self.in_range:.1%} exact match on lengths {lo} to {hi}")

    def figure(self, others: Sequence["LengthTest"] = ()):
        plt = pyplot()

        fig, ax = plt.subplots(figsize=(7.6, 3.4))
        tests = [self, *others]
        colors = ["#3056d3", "#e07b00", "#1b7f3b", "#8e24aa"]
        for t, c in zip(tests, colors):
            label = t.model if len(tests) > 1 else "exact match"
            ci = np.array(t.exact_interval)
            ax.fill_between(t.lengths, ci[:, 0], ci[:, 1], color=c, alpha=0.15, lw=0)
            ax.plot(t.lengths, t.exact_match, "o-", ms=3.5, color=c, label=label)
            ax.plot(t.lengths, t.token_acc, "--", color=c, lw=1,
                    label=f"{label} (per token)" if len(tests) > 1 else "per token")
        lo, hi = self.train_range
        ax.axvspan(lo - 0.5, hi + 0.5, color="#888", alpha=0.1, lw=0)
        ax.text(lo, 1.03, "trained lengths", fontsize=8, color="#555")
        ax.set_ylim(-0.02, 1.1)
        ax.set_xlabel("sequence length")
        ax.set_ylabel("accuracy")
        ax.legend(fontsize=8, frameon=False, loc="lower left")
        ax.grid(alpha=0.25)
        fig.tight_layout()
        return fig

    def to_html(self) -> str:
        kind = "ok" if self.verdict == "generalizes" else "warn"
        return (f"<p>{badge(self.verdict, kind)} {escape(self.summary)}. {self.n} held-out strings "
                f"per length; the model: {escape(self.model)}.</p>"
                + figure_block(figure_to_svg(self.figure()),
                               f"Exact match (whole answer right, with its 95% interval) and "
                               f"per-token accuracy of {self.op} at every length; the shaded band "
                               "is the training range."))



def parse_lengths(spec: str) -> list[int]:
    """``"1-24"`` or ``"4,8,16"`` (or both, comma-separated) as a sorted list of lengths."""
    out: set[int] = set()
    for part in spec.split(","):
        part = part.strip()
        try:
            if "-" in part:
                a, b = (int(v) for v in part.split("-", 1))
                out.update(range(a, b + 1))
            elif part:
                out.add(int(part))
        except ValueError:
            raise DataError(f"lengths: {spec!r} is not like 1-24 or 4,8,16") from None
    if not out or min(out) < 1:
        raise DataError(f"lengths: {spec!r} names no positive length")
    return sorted(out)


@torch.no_grad()
def length_generalization(run_dir: str | Path, step: Optional[int] = None,
                          lengths: Optional[Sequence[int]] = None, n: int = 256,
                          threshold: float = 0.9, bootstrap: int = 1000,
                          seed: int = 0) -> LengthTest:
    """Exact match and per-token accuracy of a ``sequence`` run at every length in
    ``lengths`` (default: 1 to the task's ``eval_max_len``).

    Answers are read in one forward pass with the true answer as the prefix: a string counts
    as exactly right when every answer token is the argmax, which is when greedy decoding
    would write the whole answer right. Per-token accuracy is teacher-forced."""
    model, task, cfg, at = load(run_dir, step)
    if PROBES[cfg.data.task] != "length":
        raise DataError(f"{run_dir}: the length probe reads data.task = \"sequence\" runs, not "
                        f"{cfg.data.task!r}")
    lengths = list(lengths) if lengths else list(range(1, task.cfg.eval_max_len + 1))
    if min(lengths) < 1:
        raise DataError(f"lengths must be positive, not {min(lengths)}")
    too_long = [L for L in lengths if 2 * L > cfg.model.n_ctx]
    if too_long:
        raise DataError(f"length {too_long[0]} needs {2 * too_long[0]} tokens but the model's "
                        f"context is {cfg.model.n_ctx}; probe lengths up to {cfg.model.n_ctx // 2}")

    def measure(L: int) -> tuple[np.ndarray, float]:
        """Per-string exact match and the per-token accuracy at length ``L``."""
        x, y = task.probe_inputs(n, L, seed)
        return task.score(argmax(model, x), y)

    exact, token, ci = [], [], []
    for L in lengths:
        e, t = measure(L)
        exact.append(float(e.mean()))
        token.append(t)
        ci.append([float(v) for v in intervals(e[:, None], np.ones(n), bootstrap, seed + L)[0]])
    lo, hi = task.cfg.min_len, task.cfg.max_len
    # the in-range reference is every trained length, whichever lengths were asked
    asked = dict(zip(lengths, exact))
    in_range = float(np.mean([asked[L] if L in asked else measure(L)[0].mean()
                              for L in range(lo, hi + 1)]))
    holds_to = hi
    for L, e in zip(lengths, exact):
        if L <= hi:
            continue
        if L != holds_to + 1 or not e >= threshold * in_range:
            break
        holds_to = L
    m = cfg.model
    desc = (("GPT, no positions" if m.position == "none" else f"GPT, {m.position} positions")
            if m.kind == "gpt" else m.kind.upper())
    return LengthTest(str(run_dir), at, task.cfg.op, desc, [lo, hi], lengths,
                      exact, ci, token, in_range, holds_to, threshold, int(n))
