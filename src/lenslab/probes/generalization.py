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

:func:`probe` picks the probe for a run's task; :func:`write_probe` writes ``probe.json``,
``probe.html`` and ``probe.png``. :func:`probe_sweep` and :func:`probe_checkpoints` run it on
every run of a sweep or every checkpoint of a run, into one table and plot
(:class:`ProbeSeries`). Every result has ``_repr_html_`` for notebooks.
"""

from __future__ import annotations

import shlex
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Optional, Sequence

import numpy as np
import torch

from lenslab._io import read_jsonl
from lenslab.errors import DataError
from lenslab.html import (pyplot, Page, badge, escape, figure_block, figure_to_svg, table_html,
                                 write_png)
from lenslab.run import Run

#: Tasks each probe reads, for the error a run of another task gets.
PROBES = {"repeat": "rules", "sequence": "length", "modular_addition": "counterfactual",
          "addition": "counterfactual"}
VARIANTS = {"swap": "each question with its operands swapped (b + a for a + b): the answer is "
                    "the same under addition"}


def _intervals(hits: np.ndarray, counts: np.ndarray, n_boot: int, seed: int) -> np.ndarray:
    """95% intervals of ``sum(hits) / sum(counts)`` over resampled rows (a row is a sequence:
    its positions are not independent, so sequences are what is resampled). ``hits [n, k]``,
    ``counts [n]``; returns ``[k, 2]``."""
    n = len(counts)
    idx = np.random.default_rng(seed).integers(0, n, size=(n_boot, n))
    shares = hits[idx].sum(1) / np.maximum(counts[idx].sum(1), 1)[:, None]  # [B, k]
    return np.quantile(shares, [0.025, 0.975], axis=0).T


def _load(run_dir, step):
    """``(model, task, resolved config, step)`` of a run the probes read."""
    run = Run.open(run_dir)
    task = run.config.data.task
    if task not in PROBES:
        raise DataError(f"{run.path} trains data.task = {task!r}; the generalization probes read "
                        + ", ".join(f"{t} ({k})" for t, k in PROBES.items()))
    ck = run.checkpoint(step)
    return run.load_model(ck), run.task, run.resolved, ck.step


@torch.no_grad()
def _argmax(model, x: torch.Tensor, batch: int = 256) -> np.ndarray:
    return torch.cat([model(x[i:i + batch]).argmax(-1) for i in range(0, len(x), batch)]).numpy()


# ---------------------------------------------------------------------- two rules


@dataclass
class RuleTest:
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
    verdict: str  # a rule's name, or "mixed"
    history: dict[str, list] = field(default_factory=dict)  # step and follows_<rule> during training
    kind: str = "rules"
    command: str = ""

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

    def to_dict(self) -> dict:
        return asdict(self)

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

    def _repr_html_(self) -> str:
        return self.to_html()


@torch.no_grad()
def rule_test(run_dir: str | Path, step: Optional[int] = None, n: int = 256,
              bootstrap: int = 1000, seed: int = 0) -> RuleTest:
    """The two-rule probe of a ``repeat`` run: which rule gives the model's answers where
    induction, the offset shortcut and the phase shortcut all disagree (at each disputed
    position at most one rule can be right, so the shares add up to at most 1)."""
    model, task, cfg, at = _load(run_dir, step)
    if PROBES[cfg.data.task] != "rules":
        raise DataError(f"{run_dir}: the two-rule probe reads data.task = \"repeat\" runs, not "
                        f"{cfg.data.task!r}")
    s = task.probe_inputs(n, seed)
    pred = _argmax(model, torch.from_numpy(s["x"]))  # [n, T]
    m = s["disagree"]
    hits = np.stack([((pred == s[r]) & m).sum(1) for r in task.rules], axis=1)  # [n, rules]
    counts = m.sum(1)
    if counts.sum() == 0:
        raise DataError(f"{run_dir}: on the probe periods {task.cfg.period_min}..{task.cfg.period_max} "
                        "the rules never all disagree; widen data.period_min/period_max")
    shares = hits.sum(0) / counts.sum()
    ci = _intervals(hits, counts, bootstrap, seed)
    by_period = {}
    for p in np.unique(s["periods"]):
        rows = s["periods"] == p
        if counts[rows].sum() == 0:  # e.g. twice the trained period: two rules always agree
            continue
        by_period[int(p)] = {r: float(hits[rows, i].sum() / max(counts[rows].sum(), 1))
                             for i, r in enumerate(task.rules)}
    tx, ty = task.trained_inputs(n, seed)
    acc = task.repeated_accuracy(_argmax(model, tx), ty)
    top = int(np.argmax(shares))
    verdict = task.rules[top] if ci[top, 0] > 0.5 else "mixed"
    history: dict[str, list] = {}
    # evaluations logged while training; a step logged twice (after a rollback) keeps its last
    logged = {r["step"] + 1: r for r in read_jsonl(Path(run_dir) / "metrics.jsonl")  # steps done
              if all(f"follows_{r_}" in r for r_ in task.rules) and r["step"] < at}
    if logged:
        done = sorted(logged)
        history = {"step": done, **{r_: [logged[k][f"follows_{r_}"] for k in done]
                                    for r_ in task.rules}}
    return RuleTest(
        str(run_dir), at, task.intended, list(task.rules),
        {r: float(shares[i]) for i, r in enumerate(task.rules)},
        {r: [float(ci[i, 0]), float(ci[i, 1])] for i, r in enumerate(task.rules)},
        int(n), int(counts.sum()), acc, by_period, task.cfg.period, verdict, history)


# ---------------------------------------------------------------------- length


@dataclass
class LengthTest:
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
    kind: str = "length"
    command: str = ""

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

    def to_dict(self) -> dict:
        return {**asdict(self), "verdict": self.verdict}

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

    def _repr_html_(self) -> str:
        return self.to_html()


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
    model, task, cfg, at = _load(run_dir, step)
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
        return task.score(_argmax(model, x), y)

    exact, token, ci = [], [], []
    for L in lengths:
        e, t = measure(L)
        exact.append(float(e.mean()))
        token.append(t)
        ci.append([float(v) for v in _intervals(e[:, None], np.ones(n), bootstrap, seed + L)[0]])
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
    desc = f"GPT, {m.position} positions" if m.kind == "gpt" else m.kind.upper()
    return LengthTest(str(run_dir), at, task.cfg.op, desc, [lo, hi], lengths,
                      exact, ci, token, in_range, holds_to, threshold, int(n))


# ---------------------------------------------------------------------- counterfactual


@dataclass
class CounterfactualTest:
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
    kind: str = "counterfactual"
    command: str = ""

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
        return {**asdict(self), "verdict": self.verdict, "finding": self.finding}

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
        ax.set_yticks(y, [r["name"] for r in rows])
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

    def _repr_html_(self) -> str:
        return self.to_html()


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
    model, task, cfg, at = _load(run_dir, step)
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
        pa, pb = _argmax(model, x)[:, 2], _argmax(model, xs)[:, 2]
        ok_a, ok_b, same = pa == answer, pb == answer, pa == pb
        p = task.p
        trained = set((task.train_pairs[:, 0] * p + task.train_pairs[:, 1]).tolist())
        swap_trained = np.array([int(b) * p + int(a) in trained for a, b in pairs], dtype=bool)
        for label, rows in (("swap trained", swap_trained), ("swap held out", ~swap_trained)):
            groups.append({"name": label, **_group_measures(ok_a[rows], ok_b[rows], same[rows])})
    else:  # addition: fresh operands and their swaps; greedy answers compared whole
        rng = np.random.default_rng(seed)
        hi = task.base ** task.cfg.digits
        a, b = rng.integers(0, hi, n), rng.integers(0, hi, n)
        x, y = task.encode(a, b)
        xs, _ = task.encode(b, a)
        answer = y[:, -task.answer_len:].numpy()
        ga, gb = task.predict(model, "cpu", x).numpy(), task.predict(model, "cpu", xs).numpy()
        ok_a, ok_b, same = (ga == answer).all(1), (gb == answer).all(1), (ga == gb).all(1)
    diff = ok_a.astype(float) - ok_b.astype(float)
    ci_same, ci_diff = _intervals(np.stack([same.astype(float), diff], axis=1),
                                  np.ones(len(diff)), bootstrap, seed)
    m = _group_measures(ok_a, ok_b, same)
    return CounterfactualTest(str(run_dir), at, name, variant, VARIANTS[variant], m["n"],
                              m["acc_original"], m["acc_variant"], m["consistency"],
                              [float(v) for v in ci_same], float(diff.mean()),
                              [float(v) for v in ci_diff], groups)


# ---------------------------------------------------------------------- entry points


def probe(run_dir: str | Path, step: Optional[int] = None, *, lengths: Optional[Sequence[int]] = None,
          variant: str = "swap", n: Optional[int] = None, bootstrap: int = 1000, seed: int = 0):
    """The probe for the run's task: two rules (``repeat``), length (``sequence``) or
    counterfactual variants (``modular_addition``, ``addition``)."""
    from lenslab.config import load_config
    from lenslab.errors import RunDirError

    cfg_path = Path(run_dir) / "config.toml"
    if not cfg_path.is_file():
        raise RunDirError(f"{run_dir} is not a lenslab run folder (no config.toml)")
    task = load_config(cfg_path).data.task
    kind = PROBES.get(task)
    if kind == "rules":
        return rule_test(run_dir, step, n=n or 256, bootstrap=bootstrap, seed=seed)
    if kind == "length":
        return length_generalization(run_dir, step, lengths, n=n or 256, bootstrap=bootstrap,
                                     seed=seed)
    if kind == "counterfactual":
        return counterfactual(run_dir, variant, step, n=n or 1024, bootstrap=bootstrap, seed=seed)
    _load(run_dir, step)  # raises the one-line error naming the tasks the probes read
    raise AssertionError("unreachable")


# ---------------------------------------------------------------------- a sweep of runs

#: What a sweep's table shows of each probe, per kind.
_SWEEP_MEASURES = {
    "length": ("in_range", "exact_past", "holds_to"),
    "counterfactual": ("acc_original", "acc_variant", "consistency"),
}
_AXES = ("n_layer", "d_model", "n_head", "steps", "lr", "seed")
_SHORT = {"acc_original": "acc", "acc_variant": "acc variant", "consistency": "same",
          "acc_swap_trained": "swap trained", "acc_swap_held_out": "swap held out",
          "in_range": "in range", "exact_past": "past range", "holds_to": "holds to",
          "in_distribution_acc": "acc where rules agree"}


@dataclass
class ProbeSeries:
    """One probe on several models: the completed runs of a sweep against the sweep's axes,
    or the checkpoints of one run against the step."""

    source: str  # the sweep folder or the run folder
    over: str  # "runs" or "checkpoints"
    kind: str
    axes: list[str]  # what varies: sweep axes, or ["step"]
    measures: list[str]
    rows: list[dict]  # axes, measures, verdict (and run folder) per model
    command: str = ""

    def to_dict(self) -> dict:
        return asdict(self)

    def columns(self) -> list[tuple[str, str]]:
        """``(key, short label)`` of the table's columns: axes, verdict, measures."""
        return [(c, _SHORT.get(c, c.split(".")[-1].removeprefix("share_")))
                for c in [*self.axes, "verdict", *self.measures]]

    def figure(self):
        """One panel per measure against the first axis; a line per value of the others
        (seeds averaged, each seed a dot)."""
        plt = pyplot()

        xs = [a for a in self.axes if a != "seed"]
        x = xs[0] if xs else "seed"
        others = [a for a in xs[1:]]
        numeric = all(isinstance(r[x], (int, float)) for r in self.rows)
        levels = sorted({r[x] for r in self.rows}, key=lambda v: (str(type(v)), v))
        pos = (lambda v: v) if numeric else (lambda v: levels.index(v))  # noqa: E731
        groups: dict[tuple, list[dict]] = {}
        for r in self.rows:
            groups.setdefault(tuple(r[a] for a in others), []).append(r)
        fig, axs = plt.subplots(1, len(self.measures), figsize=(3.6 * len(self.measures), 3.3),
                                squeeze=False)
        colors = ["#3056d3", "#e07b00", "#1b7f3b", "#8e24aa", "#c62828", "#00838f"]
        for ax, m in zip(axs[0], self.measures):
            for (key, rows), c in zip(sorted(groups.items(), key=lambda kv: str(kv[0])), colors * 9):
                label = ", ".join(f"{a.split('.')[-1]} {v}" for a, v in zip(others, key)) or None
                at = sorted({r[x] for r in rows}, key=lambda v: (str(type(v)), v))
                mean = [np.mean([r[m] for r in rows if r[x] == v]) for v in at]
                ax.plot([pos(v) for v in at], mean, "o-", ms=3.5, color=c, label=label)
                ax.scatter([pos(r[x]) for r in rows], [r[m] for r in rows], s=8, color=c, alpha=0.4)
            ax.set_title(m.replace("_", " "), fontsize=9)
            if all(0 <= r[m] <= 1 for r in self.rows):  # shares and accuracies
                ax.set_ylim(-0.03, 1.05)
            ax.set_xlabel(x)
            if not numeric:
                ax.set_xticks(range(len(levels)), [str(v) for v in levels])
            ax.grid(alpha=0.25)
        if len(groups) > 1:
            axs[0][0].legend(fontsize=7, frameon=False)
        fig.tight_layout()
        return fig

    def to_html(self) -> str:
        cols = [*self.axes, "verdict", *self.measures]
        if self.over == "runs":
            intro = (f"The {escape(self.kind)} probe on each of the {len(self.rows)} completed runs "
                     f"of {escape(self.source)}; each run's own page is in its "
                     "<code>analysis/probe.html</code>.")
            caption = ("Each measure against the sweep's first varying axis; a line per value of "
                       "the other axes, seeds averaged (dots: single runs).")
        else:
            intro = (f"The {escape(self.kind)} probe at each of {len(self.rows)} verified "
                     f"checkpoints of {escape(self.source)}.")
            caption = "Each measure at each checkpoint."
        return (f"<p>{intro}</p>" + table_html(self.rows, cols, digits=3)
                + figure_block(figure_to_svg(self.figure()), caption))

    def _repr_html_(self) -> str:
        return self.to_html()


def is_sweep_dir(path: str | Path) -> bool:
    p = Path(path)
    return (p / "results.json").is_file() and not (p / "config.toml").is_file()


def _measured(res) -> dict:
    """What a table of many probes shows of one result (see :data:`_SWEEP_MEASURES`)."""
    if res.kind == "rules":
        return {**{f"share_{rule}": res.shares[rule] for rule in res.rules},
                "in_distribution_acc": res.in_distribution_acc}
    if res.kind == "length":
        past = res.train_range[1] + 1
        return {"in_range": res.in_range, "holds_to": res.holds_to,
                "exact_past": (res.exact_match[res.lengths.index(past)] if past in res.lengths
                               else float("nan"))}
    row = {m: getattr(res, m) for m in _SWEEP_MEASURES["counterfactual"]}
    for g in res.groups:  # modular addition: held-out pairs by whether their swap was trained
        row[f"acc_{g['name'].replace(' ', '_')}"] = g["acc_original"]
    return row


def _measure_names(kind: str, row: dict) -> list[str]:
    if kind == "rules":
        return [k for k in row if k.startswith("share_")]
    if kind == "counterfactual":
        return [*_SWEEP_MEASURES[kind], *(k for k in row if k.startswith("acc_swap"))]
    return list(_SWEEP_MEASURES[kind])


def _each(items: list, what: str, progress: bool):
    """``items``, with a transient progress bar on stderr when ``progress``."""
    if not progress:
        return items
    from rich.console import Console
    from rich.progress import track

    return track(items, description=what, transient=True, console=Console(stderr=True))


def probe_sweep(sweep_dir: str | Path, progress: bool = False, **kw) -> ProbeSeries:
    """:func:`probe` on every completed run of a sweep folder (each run's result goes to its
    ``analysis/``), in one table against the axes that vary."""
    from lenslab.scaling.sweep import read_results

    rows = [r for r in read_results(sweep_dir) if r.get("status") == "completed"]
    if not rows:
        raise DataError(f"{sweep_dir}: no completed runs to probe yet")
    out, kind = [], None
    for r in _each(rows, "probing runs", progress):
        res = probe(r["run"], **kw)
        write_probe(res, Path(r["run"]) / "analysis", f"lenslab probe {r['run']}")
        kind = res.kind
        row = {a: r.get(a) for a in _AXES}
        row.update({k: v for k, v in r.items() if "." in k})
        row.update({"verdict": res.verdict, "run": r["run"], **_measured(res)})
        out.append(row)
    keys = [k for k in out[0] if k in _AXES or "." in k]
    axes = [k for k in keys if len({str(r[k]) for r in out}) > 1]
    return ProbeSeries(str(sweep_dir), "runs", kind, axes, _measure_names(kind, out[0]), out)


def probe_checkpoints(run_dir: str | Path, max_checkpoints: int = 40, progress: bool = False,
                      **kw) -> ProbeSeries:
    """:func:`probe` at every verified checkpoint of one run (at most ``max_checkpoints``,
    evenly spaced, the newest always included): when did the model take its rule?"""

    steps = Run.open(run_dir).verified_steps()
    if not steps:
        from lenslab.errors import RunDirError

        raise RunDirError(f"{run_dir} has no verified checkpoints; train it first")
    if len(steps) > max_checkpoints:
        idx = np.unique(np.linspace(0, len(steps) - 1, max_checkpoints).round().astype(int))
        steps = [steps[i] for i in idx]
    out, kind = [], None
    for st in _each(steps, "probing checkpoints", progress):
        res = probe(run_dir, st, **kw)
        kind = res.kind
        out.append({"step": st, "verdict": res.verdict, **_measured(res)})
    return ProbeSeries(str(run_dir), "checkpoints", kind, ["step"], _measure_names(kind, out[0]),
                       out)


def write_probe_series(result: ProbeSeries, out: str | Path, command: str = "") -> Path:
    """``probes.json``, ``probes.csv``, ``probes.html`` and ``probes.png`` in ``out``
    (``probe-checkpoints.*`` for a run's checkpoints, beside its ``probe.*``)."""
    import csv
    import io

    from lenslab._io import atomic_write_json, atomic_write_text

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    stem = "probes" if result.over == "runs" else "probe-checkpoints"
    result.command = command or " ".join(shlex.quote(a) for a in sys.argv)
    atomic_write_json(out / f"{stem}.json", result.to_dict())
    cols = [*result.axes, "verdict", *result.measures, *(["run"] if result.over == "runs" else [])]
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(cols)
    for r in result.rows:
        w.writerow([r.get(c) for c in cols])
    atomic_write_text(out / f"{stem}.csv", buf.getvalue())
    write_png(result.figure(), out / f"{stem}.png")
    page = Page(f"{_TITLES[result.kind]}: {Path(result.source).name}", "Command: " + result.command)
    page.add(_TITLES[result.kind], result.to_html())
    page.write(out / f"{stem}.html")
    return out / f"{stem}.html"


def result_from_dict(d: dict):
    """A probe result read back from its ``probe.json`` (for the run report)."""
    cls = {"rules": RuleTest, "length": LengthTest, "counterfactual": CounterfactualTest}[d["kind"]]
    fields = {k: d[k] for k in cls.__dataclass_fields__ if k in d}
    if "by_period" in fields:  # JSON keys are strings
        fields["by_period"] = {int(k): v for k, v in fields["by_period"].items()}
    return cls(**fields)


_TITLES = {"rules": "Which rule did the model learn?", "length": "Length generalization",
           "counterfactual": "Counterfactual variants"}


def write_probe(result, out: str | Path, command: str = "") -> Path:
    """``probe.json``, ``probe.html`` and ``probe.png`` in ``out``; returns the HTML's path."""
    from lenslab._io import atomic_write_json

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    result.command = command or " ".join(shlex.quote(a) for a in sys.argv)
    atomic_write_json(out / "probe.json", result.to_dict())
    write_png(result.figure(), out / "probe.png")
    page = Page(f"{_TITLES[result.kind]}: {Path(result.run_dir).name} at step {result.step}",
                "Command: " + result.command)
    page.add(_TITLES[result.kind], result.to_html())
    page.write(out / "probe.html")
    return out / "probe.html"
