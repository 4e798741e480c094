"""Counterfactual variants: the same questions changed in a way the rule says cannot matter
(``swap``: ``b + a`` for ``a + b``). For modular addition the held-out pairs are split by whether
their swap was trained: a model that answers only those has learned commutativity, not
addition."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import numpy as np
import torch

from lenslab.errors import DataError
from lenslab.html import (
    badge,
    escape,
    figure_block,
    figure_to_svg,
    pyplot,
    table_html,
    tick_text,
)
from lenslab.probes.result import PROBES, VARIANTS, ProbeResult, argmax, intervals, load


@dataclass
class CounterfactualTest(ProbeResult):
    """The same questions, changed in a way the rule says cannot matter."""

    run_dir: str
    step: int
    task: str
    variant: str
    description: str
    n: int
    acc_original: float
    acc_variant: float
    consistency: float  # the answer to the variant is the answer to the original
    consistency_interval: list[float]
    drop: float  # acc_original - acc_variant
    drop_interval: list[float]
    groups: list[dict] = field(default_factory=list)  # the same measures on named subsets
    tolerance: float = 0.05

    probe = "counterfactual"

    @property
    def verdict(self) -> str:
        """Invariance is the answer not changing: "invariant" when the whole 95% interval of
        the consistency is within ``tolerance`` of 1, "not invariant" when none of it is."""
        lo, hi = self.consistency_interval
        if lo >= 1 - self.tolerance:
            return "invariant"
        if hi < 1 - self.tolerance:
            return "not invariant"
        return "inconclusive"

    @property
    def summary(self) -> str:
        lo, hi = self.consistency_interval
        dlo, dhi = self.drop_interval
        return (f"the answer stays the same for {self.consistency:.1%} ({lo:.1%} to {hi:.1%}); "
                f"accuracy {self.acc_original:.1%} on the originals, {self.acc_variant:.1%} on "
                f"the variants (difference {self.drop:+.3f}, {dlo:+.3f} to {dhi:+.3f})")

    @property
    def finding(self) -> str:
        """What the groups say, for modular addition: does held-out accuracy come from
        commutativity (the swap was trained) or from addition?"""
        g = {r["name"]: r for r in self.groups}
        if "swap trained" not in g or not g["swap trained"]["n"] or not g["swap held out"]["n"]:
            return ""
        a, b = g["swap trained"], g["swap held out"]
        text = (f"held-out pairs whose swap was trained: {a['acc_original']:.1%} right "
                f"({a['n']}); pairs whose swap was held out too: {b['acc_original']:.1%} "
                f"({b['n']})")
        if a["acc_original"] - b["acc_original"] >= 0.3:
            text += ("; what the model gets right off the training set, it gets mostly by "
                     "commutativity, not by adding")
        return text

    def to_dict(self) -> dict:
        return {**super().to_dict(), "finding": self.finding}

    def figure(self):
        plt = pyplot()

        rows = [{"name": "all", "acc_original": self.acc_original,
                 "acc_variant": self.acc_variant, "consistency": self.consistency},
                *self.groups]
        fig, ax = plt.subplots(figsize=(7.6, 0.9 + 0.8 * len(rows)))
        y = np.arange(len(rows))
        h = 0.26
        for k, (key, label, c) in enumerate((("acc_original", "accuracy, original", "#3056d3"),
                                             ("acc_variant", f"accuracy, {self.variant}", "#e07b00"),
                                             ("consistency", "same answer", "#1b7f3b"))):
            ax.barh(y + (k - 1) * h, [r[key] for r in rows], height=h, color=c, label=label)
        ax.set_yticks(y, tick_text(r["name"] for r in rows))
        ax.invert_yaxis()
        ax.set_xlim(0, 1)
        ax.legend(fontsize=8, frameon=False, loc="lower right")
        ax.grid(alpha=0.25, axis="x")
        fig.tight_layout()
        return fig

    def to_html(self) -> str:
        kind = {"invariant": "ok", "not invariant": "warn"}.get(self.verdict, "")
        body = (f"<p>{badge(self.verdict, kind)} Variant <b>{escape(self.variant)}</b>: "
                f"{escape(self.description)}. On {self.n:,} held-out questions, "
                f"{escape(self.summary)} (95% intervals; invariant means the same answer for at "
                f"least {1 - self.tolerance:.0%}).</p>")
        if self.finding:
            body += f"<p>{escape(self.finding[0].upper() + self.finding[1:])}.</p>"
        if self.groups:
            body += table_html(self.groups, ["name", "n", "acc_original", "acc_variant",
                                             "consistency"], digits=3)
        return body + figure_block(figure_to_svg(self.figure()),
                                   "Accuracy on the original questions and on their variants, and "
                                   "how often the two answers agree.")



def _group_measures(a: np.ndarray, b: np.ndarray, same: np.ndarray) -> dict:
    return {"n": int(len(a)), "acc_original": float(a.mean()) if len(a) else float("nan"),
            "acc_variant": float(b.mean()) if len(b) else float("nan"),
            "consistency": float(same.mean()) if len(same) else float("nan")}


@torch.no_grad()
def counterfactual(run_dir: str | Path, variant: str = "swap", step: Optional[int] = None,
                   n: int = 1024, bootstrap: int = 1000, seed: int = 0) -> CounterfactualTest:
    """Accuracy on held-out questions and on their ``variant``; for modular addition, also
    split by whether the variant of a held-out pair was itself trained."""
    if variant not in VARIANTS:
        raise DataError(f"unknown variant {variant!r} (one of {', '.join(VARIANTS)})")
    model, task, cfg, at = load(run_dir, step)
    name = cfg.data.task
    if PROBES[name] != "counterfactual":
        raise DataError(f"{run_dir}: counterfactual variants read modular_addition and addition "
                        f"runs, not {name!r}")
    groups: list[dict] = []
    if name == "modular_addition":  # held-out pairs and their swaps; one answer token each
        pairs = task.test_pairs
        if len(pairs) > n:
            pairs = pairs[np.random.default_rng(seed).choice(len(pairs), n, replace=False)]
        x, y = task._xy(pairs)
        xs, _ = task._xy(pairs[:, ::-1].copy())
        answer = y[:, 2].numpy()
        pa, pb = argmax(model, x)[:, 2], argmax(model, xs)[:, 2]
        ok_a, ok_b, same = pa == answer, pb == answer, pa == pb
        p = task.p
        trained = set((task.train_pairs[:, 0] * p + task.train_pairs[:, 1]).tolist())
        swap_trained = np.array([int(b) * p + int(a) in trained for a, b in pairs], dtype=bool)
        for label, rows in (("swap trained", swap_trained), ("swap held out", ~swap_trained)):
            groups.append({"name": label, **_group_measures(ok_a[rows], ok_b[rows], same[rows])})
    else:  # addition: fresh operands and their swaps; greedy answers compared whole
        a, b = task.held_out(np.random.default_rng(seed), n)  # never a training question
        answer, ga = task.answers(model, "cpu", a, b)
        _, gb = task.answers(model, "cpu", b, a)
        ok_a = np.array([p == t for p, t in zip(ga, answer)])
        ok_b = np.array([p == t for p, t in zip(gb, answer)])
        same = np.array([p == q for p, q in zip(ga, gb)])
    diff = ok_a.astype(float) - ok_b.astype(float)
    ci_same, ci_diff = intervals(np.stack([same.astype(float), diff], axis=1),
                                  np.ones(len(diff)), bootstrap, seed)
    m = _group_measures(ok_a, ok_b, same)
    return CounterfactualTest(str(run_dir), at, name, variant, VARIANTS[variant], m["n"],
                              m["acc_original"], m["acc_variant"], m["consistency"],
                              [float(v) for v in ci_same], float(diff.mean()),
                              [float(v) for v in ci_diff], groups)
