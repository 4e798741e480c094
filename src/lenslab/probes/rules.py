"""Two rules: training data that fits more than one rule (``data.task = "repeat"``: induction,
a fixed offset, a fixed phase; ``data.task = "question"``: move the main auxiliary or the first).
On held-out inputs where the rules disagree, the share of the model's answers each rule gives,
with intervals from resampling sequences, and a verdict."""

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
    by_period: dict[int, dict[str, float]] = field(default_factory=dict)  # repeat: per period
    trained_period: int = 0  # repeat: the period of the training sequences
    history: dict[str, list] = field(default_factory=dict)  # step and follows_<rule> during training
    task: str = "repeat"  # the run's data.task
    by_group: dict[str, dict[str, float]] = field(default_factory=dict)  # question: per clause

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
        ratios = [1.0] + [1.4] * bool(self.by_period) + [1.4] * (len(steps) >= 2)
        fig, axes = plt.subplots(1, len(ratios), figsize=(4.4 * len(ratios), 3.4),
                                 gridspec_kw={"width_ratios": ratios}, squeeze=False)
        axes = list(axes[0])
        a1 = axes[0]
        colors = {"induction": "#3056d3", "offset": "#e07b00", "phase": "#1b7f3b",
                  "hierarchical": "#3056d3", "linear": "#e07b00"}
        y = np.arange(len(self.rules))
        shares = [self.shares[r] for r in self.rules]
        err = np.array([[self.shares[r] - self.intervals[r][0], self.intervals[r][1] - self.shares[r]]
                        for r in self.rules]).T
        a1.barh(y, shares, xerr=err, color=[colors.get(r, "#777") for r in self.rules], capsize=3)
        a1.set_yticks(y, [r + (" (meant)" if r == self.intended else "") for r in self.rules])
        a1.set_xlim(0, 1)
        a1.invert_yaxis()
        a1.set_xlabel("share of disputed answers")
        if self.by_period:
            a2 = axes[1]
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
        if len(steps) >= 2:
            a3 = axes[-1]
            for r in self.rules:
                a3.plot(steps, self.history[r], "o-", ms=3, color=colors.get(r, "#777"), label=r)
            a3.set_ylim(0, 1.08)
            a3.set_xlabel("training step")
            a3.set_title("during training", fontsize=9)
            if not self.by_period:
                a3.legend(fontsize=8, frameon=False)
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
        if self.task == "question":
            where = (f"On held-out questions like the training ones (no relative clause on the "
                     f"subject) the model writes {self.in_distribution_acc:.1%} exactly right. "
                     f"{self.n_sequences} held-out questions of sentences whose subject has a "
                     "relative clause with an auxiliary other than the main one; the first word "
                     "of the model's question is what is counted.")
            panels = " Right: the same at each evaluation during training (128 questions each)."
        else:
            where = (f"Where the rules agree (sequences of the trained period "
                     f"{self.trained_period}), the model is right on "
                     f"{self.in_distribution_acc:.1%} of the repeated tokens. "
                     f"{self.n_positions:,} disputed positions in {self.n_sequences} held-out "
                     "sequences.")
            panels = (" Middle: the same at each probe period. Right: the same at each "
                      "evaluation during training (64 sequences each).")
        if len(self.history.get("step", [])) < 2:
            panels = panels.split(" Right:")[0]
        lead = "Left: s" if panels else "S"
        groups = ""
        if self.by_group:
            groups = ("<p>By the kind of relative clause on the subject (McCoy et al. report "
                      "the same split):</p>" + table_html(
                          [{"relative clause": g, "questions": int(v.get("n", 0)),
                            **{r: v[r] for r in self.rules}} for g, v in self.by_group.items()],
                          digits=3))
        return (f"<p>{badge(self.verdict, kind)} {escape(self.summary)}. {escape(where)}</p>"
                + table_html(rows, digits=3) + groups
                + figure_block(figure_to_svg(self.figure()),
                               f"{lead}hare of the answers each rule gives where they disagree, "
                               "with 95% intervals." + panels))



@torch.no_grad()
def rule_test(run_dir: str | Path, step: Optional[int] = None, n: int = 256,
              bootstrap: int = 1000, seed: int = 0) -> RuleTest:
    """The two-rule probe of a ``repeat`` run: which rule gives the model's answers where
    induction, the offset shortcut and the phase shortcut all disagree (at each disputed
    position at most one rule can be right, so the shares add up to at most 1)."""
    model, task, cfg, at = load(run_dir, step)
    if PROBES[cfg.data.task] != "rules":
        raise DataError(f"{run_dir}: the two-rule probe reads data.task = \"repeat\" and "
                        f"\"question\" runs, not {cfg.data.task!r}")
    if cfg.data.task == "question":
        return _question_test(run_dir, model, task, at, n, bootstrap, seed)
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
    return RuleTest(
        str(run_dir), at, task.intended, list(task.rules),
        {r: float(shares[i]) for i, r in enumerate(task.rules)},
        {r: [float(ci[i, 0]), float(ci[i, 1])] for i, r in enumerate(task.rules)},
        int(n), int(counts.sum()), acc, by_period, task.cfg.period,
        _history(run_dir, task.rules, at))


def _history(run_dir, rules, at: int) -> dict[str, list]:
    """The ``follows_<rule>`` shares logged at each evaluation before step ``at``; a step
    logged twice (after a rollback) keeps its last."""
    logged = {r["step"] + 1: r for r in Run(run_dir).metrics()  # steps done
              if all(f"follows_{r_}" in r for r_ in rules) and r["step"] < at}
    if not logged:
        return {}
    done = sorted(logged)
    return {"step": done, **{r_: [logged[k][f"follows_{r_}"] for k in done] for r_ in rules}}


def _question_test(run_dir, model, task, at: int, n: int, bootstrap: int, seed: int) -> RuleTest:
    """Question formation: the first word of the model's question, on sentences whose subject
    has a relative clause with another auxiliary than the main one (one answer per question,
    so each question is a row of the bootstrap)."""
    q = task.questions(n, rc_subject=True, seed=seed)
    hit = task.first_words(argmax(model, q["x"]), q)
    hits = np.stack([hit[r] for r in task.rules], axis=1).astype(float)  # [n, rules]
    ci = intervals(hits, np.ones(n), bootstrap, seed)
    easy = task.questions(n, rc_subject=False, seed=seed)
    acc = float(task.exact(argmax(model, easy["x"]), easy).mean())
    groups = {str(g): {"n": float((q["clause"] == g).sum()),
                  **{r: float(hit[r][q["clause"] == g].mean()) for r in task.rules}}
              for g in sorted(set(q["clause"]))}
    return RuleTest(
        str(run_dir), at, task.intended, list(task.rules),
        {r: float(hits[:, i].mean()) for i, r in enumerate(task.rules)},
        {r: [float(ci[i, 0]), float(ci[i, 1])] for i, r in enumerate(task.rules)},
        int(n), int(n), acc, history=_history(run_dir, task.rules, at), task="question",
        by_group=groups)
