"""Two rules: training data that fits more than one rule (``data.task = "repeat"``: induction,
a fixed offset, a fixed phase). On held-out inputs where the rules disagree, the share of the
model's answers each rule gives, with intervals from resampling sequences, and a verdict."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import numpy as np
import torch

from lenslab.errors import DataError
from lenslab.html import badge, escape, figure_block, figure_to_svg, pyplot, table_html
from lenslab.probes.result import PROBES, ProbeResult, argmax, intervals, load
from lenslab.run import Run


@dataclass
class RuleTest(ProbeResult):
    """Which rule the model follows where the candidate rules disagree."""

    run_dir: str
    step: int
    intended: str
    rules: list[str]
    shares: dict[str, float]  # share of disputed answers each rule gives
    intervals: dict[str, list[float]]  # 95%, sequences resampled
    n_sequences: int
    n_positions: int
    in_distribution_acc: float  # accuracy where the rules agree (the training distribution)
    by_period: dict[int, dict[str, float]]  # the shares at each probed period
    trained_period: int
    history: dict[str, list] = field(default_factory=dict)  # step and follows_<rule> during training

    probe = "rules"

    @property
    def verdict(self) -> str:
        """The rule whose whole 95% interval lies above one half, or ``mixed``."""
        top = max(self.rules, key=lambda r: self.shares[r])
        return top if self.intervals[top][0] > 0.5 else "mixed"

    @property
    def summary(self) -> str:
        top = max(self.rules, key=lambda r: self.shares[r])
        lo, hi = self.intervals[top]
        share = f"{self.shares[top]:.0%} of the disputed answers ({lo:.0%} to {hi:.0%})"
        if self.verdict == "mixed":
            return (f"no rule gives most answers: the largest, {top}, gives {share}; the model "
                    "follows none of the candidate rules consistently")
        what = "the rule we meant" if self.verdict == self.intended else "a shortcut"
        return f"the model follows {self.verdict} ({what}): {share}"


    def figure(self):
        plt = pyplot()

        steps = self.history.get("step", [])
        panels = 3 if len(steps) >= 2 else 2
        fig, axes = plt.subplots(1, panels, figsize=(4.4 * panels, 3.4),
                                 gridspec_kw={"width_ratios": [1, 1.4, 1.4][:panels]})
        a1, a2 = axes[:2]
        colors = {"induction": "#3056d3", "offset": "#e07b00", "phase": "#1b7f3b"}
        y = np.arange(len(self.rules))
        shares = [self.shares[r] for r in self.rules]
        err = np.array([[self.shares[r] - self.intervals[r][0], self.intervals[r][1] - self.shares[r]]
                        for r in self.rules]).T
        a1.barh(y, shares, xerr=err, color=[colors.get(r, "#777") for r in self.rules], capsize=3)
        a1.set_yticks(y, [r + (" (meant)" if r == self.intended else "") for r in self.rules])
        a1.set_xlim(0, 1)
        a1.invert_yaxis()
        a1.set_xlabel("share of disputed answers")
        periods = sorted(self.by_period)
        for r in self.rules:
            a2.plot(periods, [self.by_period[p][r] for p in periods], "o-", ms=3.5,
                    color=colors.get(r, "#777"), label=r)
        a2.axvline(self.trained_period, color="#999", ls=":", lw=1)
        a2.text(self.trained_period, 1.02, " trained period", fontsize=8, color="#666")
        a2.set_ylim(0, 1.08)
        a2.set_xlabel("period of the probe sequences")
        a2.set_ylabel("share of answers")
        a2.legend(fontsize=8, frameon=False)
        if panels == 3:
            a3 = axes[2]
            for r in self.rules:
                a3.plot(steps, self.history[r], "o-", ms=3, color=colors.get(r, "#777"), label=r)
            a3.set_ylim(0, 1.08)
            a3.set_xlabel("training step")
            a3.set_title("during training", fontsize=9)
        for a in axes:
            a.grid(alpha=0.25)
        fig.tight_layout()
        return fig

    def to_html(self) -> str:
        kind = "ok" if self.verdict == self.intended else "warn"
        rows = [{"rule": r + (" (meant)" if r == self.intended else ""), "share": self.shares[r],
                 "95% interval": f"{self.intervals[r][0]:.3f} to {self.intervals[r][1]:.3f}"}
                for r in self.rules]
        rows.append({"rule": "none of them", "share": 1 - sum(self.shares.values()),
                     "95% interval": ""})
        return (f"<p>{badge(self.verdict, kind)} {escape(self.summary)}. Where the rules agree "
                f"(sequences of the trained period {self.trained_period}), the model is right on "
                f"{self.in_distribution_acc:.1%} of the repeated tokens. {self.n_positions:,} "
                f"disputed positions in {self.n_sequences} held-out sequences.</p>"
                + table_html(rows, digits=3)
                + figure_block(figure_to_svg(self.figure()),
                               "Left: share of the answers each rule gives where they disagree, "
                               "with 95% intervals. Middle: the same at each probe period."
                               + (" Right: the same at each evaluation during training (64 "
                                  "sequences each)." if len(self.history.get("step", [])) >= 2
                                  else "")))



@torch.no_grad()
def rule_test(run_dir: str | Path, step: Optional[int] = None, n: int = 256,
              bootstrap: int = 1000, seed: int = 0) -> RuleTest:
    """The two-rule probe of a ``repeat`` run: which rule gives the model's answers where
    induction, the offset shortcut and the phase shortcut all disagree (at each disputed
    position at most one rule can be right, so the shares add up to at most 1)."""
    model, task, cfg, at = load(run_dir, step)
    if PROBES[cfg.data.task] != "rules":
        raise DataError(f"{run_dir}: the two-rule probe reads data.task = \"repeat\" runs, not "
                        f"{cfg.data.task!r}")
    s = task.probe_inputs(n, seed)
    pred = argmax(model, torch.from_numpy(s["x"]))  # [n, T]
    m = s["disagree"]
    hits = np.stack([((pred == s[r]) & m).sum(1) for r in task.rules], axis=1)  # [n, rules]
    counts = m.sum(1)
    if counts.sum() == 0:
        raise DataError(f"{run_dir}: on the probe periods {task.cfg.period_min}..{task.cfg.period_max} "
                        "the rules never all disagree; widen data.period_min/period_max")
    shares = hits.sum(0) / counts.sum()
    ci = intervals(hits, counts, bootstrap, seed)
    by_period = {}
    for p in np.unique(s["periods"]):
        rows = s["periods"] == p
        if counts[rows].sum() == 0:  # e.g. twice the trained period: two rules always agree
            continue
        by_period[int(p)] = {r: float(hits[rows, i].sum() / max(counts[rows].sum(), 1))
                             for i, r in enumerate(task.rules)}
    tx, ty = task.trained_inputs(n, seed)
    acc = task.repeated_accuracy(argmax(model, tx), ty)
    history: dict[str, list] = {}
    # evaluations logged while training; a step logged twice (after a rollback) keeps its last
    logged = {r["step"] + 1: r for r in Run(run_dir).metrics()  # steps done
              if all(f"follows_{r_}" in r for r_ in task.rules) and r["step"] < at}
    if logged:
        done = sorted(logged)
        history = {"step": done, **{r_: [logged[k][f"follows_{r_}"] for k in done]
                                    for r_ in task.rules}}
    return RuleTest(
        str(run_dir), at, task.intended, list(task.rules),
        {r: float(shares[i]) for i, r in enumerate(task.rules)},
        {r: [float(ci[i, 0]), float(ci[i, 1])] for i, r in enumerate(task.rules)},
        int(n), int(counts.sum()), acc, by_period, task.cfg.period, history)
