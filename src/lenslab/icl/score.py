"""In-context learning, measured: ICL score, per-position loss, the induction phase change,
and transformers against LSTMs.

* **ICL score** (Olsson et al. 2022): mean loss at a late token minus mean loss at an early one
  (they use tokens 500 and 50 of a 512 context; by default lenslab scales those positions to the
  model's context). Negative = the model predicts better with more context.
* **Per-position loss**: the whole curve, mean loss at every position of held-out sequences.
* **Phase change**: at every checkpoint of a run, the best head's prefix-matching (induction)
  score, the best previous-token score, the ICL score and the loss on repeated tokens; the step
  where the induction score jumps is detected and marked.
* **Transformer vs LSTM** (Kaplan et al. 2020, fig. 7): per-position curves side by side.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import numpy as np
import torch
import torch.nn.functional as F
from rich.progress import Progress

from lenslab.attention import GPTLens, random_battery, score_battery
from lenslab.data import IGNORE
from lenslab.errors import DataError, ModelError, RunDirError
from lenslab.html import escape, figure_block, figure_to_svg, label, pyplot, table_html
from lenslab.models import GPT
from lenslab.result import Result
from lenslab.run import Run

# ---------------------------------------------------------------------- loading


@dataclass
class RunModel:
    """A run folder's model at one checkpoint, with its task."""

    run_dir: Path
    step: int
    model: torch.nn.Module
    task: object
    cfg: object

    @property
    def n_ctx(self) -> int:
        return self.cfg.model.n_ctx


def load_run_model(run_dir: str | Path | Run, step: Optional[int] = None) -> RunModel:
    """A token-level run's model at a verified checkpoint (default: the newest)."""
    run = Run.open(run_dir)
    cfg = run.config
    if getattr(cfg.data, "task", "") in ("icl_regression",) or getattr(cfg.model, "d_in", None):
        raise DataError(f"{run.path} is an in-context regression run; token-level measures need "
                        "a token task (use `lenslab algorithms` for regression runs)")
    ck = run.checkpoint(step)
    return RunModel(run.path, ck.step, run.load_model(ck), run.task, run.resolved)


def checkpoint_steps(run_dir: str | Path | Run) -> list[int]:
    run = Run.open(run_dir)
    steps = run.verified_steps()
    if not steps:
        raise RunDirError(f"{run.path} has no verified checkpoints; train it first")
    return steps


# ---------------------------------------------------------------------- measures


def default_positions(n_ctx: int) -> tuple[int, int]:
    """Olsson et al.'s tokens 50 and 500 of 512, scaled to the context (0-based positions)."""
    early = max(1, round(n_ctx * 50 / 512) - 1)
    late = max(early + 1, round(n_ctx * 500 / 512) - 1)
    return early, late


@torch.no_grad()
def per_position_loss(model: torch.nn.Module, task, n_batches: int = 4,
                      batch_size: int = 32) -> np.ndarray:
    """Mean loss at every position ``[T]`` over the task's held-out batches (NaN where unscored)."""
    tot = cnt = None
    for x, y in task.eval_batches(n_batches, batch_size):
        logits = model(x)
        loss = F.cross_entropy(logits.float().reshape(-1, logits.shape[-1]), y.reshape(-1),
                               ignore_index=IGNORE, reduction="none").view_as(y)
        scored = (y != IGNORE).float()
        tot = loss.sum(0) if tot is None else tot + loss.sum(0)
        cnt = scored.sum(0) if cnt is None else cnt + scored.sum(0)
    out = (tot / cnt.clamp(min=1)).numpy()
    out[cnt.numpy() == 0] = np.nan
    return out


def icl_score(curve: np.ndarray, early: Optional[int] = None, late: Optional[int] = None) -> dict:
    T = len(curve)
    e, l_ = default_positions(T)
    early = e if early is None else early
    late = l_ if late is None else late
    if not (0 <= early < late < T):
        raise DataError(f"ICL positions must satisfy 0 <= early < late < context ({T}); got "
                        f"early={early}, late={late}")
    if not (math.isfinite(curve[early]) and math.isfinite(curve[late])):
        raise DataError(f"the task scores no loss at position {early} or {late}; choose "
                        "positions where targets are scored")
    return {"icl_score": float(curve[late] - curve[early]), "early": early, "late": late,
            "loss_early": float(curve[early]), "loss_late": float(curve[late])}


def repeat_length(n_ctx: int, vocab: int) -> int:
    """Distinct tokens in :func:`repeated_token_loss`'s sequences: 32, or what the context and
    the vocabulary allow."""
    return max(2, min(32, n_ctx // 2, vocab))


@torch.no_grad()
def repeated_token_loss(model: torch.nn.Module, vocab: int, n_ctx: int, n: int = 32,
                        length: Optional[int] = None, seed: int = 0) -> float:
    """Loss on the second copy of a random sequence of distinct tokens (its first token
    excluded: nothing announces the repeat). Olsson et al.'s "loss on repeated tokens"."""
    L = length or repeat_length(n_ctx, vocab)
    g = np.random.default_rng(seed)
    x = np.stack([g.choice(vocab, size=L, replace=vocab < L) for _ in range(n)])
    seq = torch.from_numpy(np.concatenate([x, x], axis=1))
    logits = model(seq[:, :-1])
    loss = F.cross_entropy(logits.float().reshape(-1, logits.shape[-1]), seq[:, 1:].reshape(-1),
                           reduction="none").view(n, -1)
    return float(loss[:, L:].mean())  # targets at positions L+1 .. 2L-1


def head_scores(run_model: RunModel) -> tuple[float, float, tuple[int, int]]:
    """Best prefix-matching and previous-token scores over heads (random battery)."""
    lens = GPTLens(run_model.model, run_model.task, str(run_model.run_dir.name))
    means, _ = score_battery(lens, random_battery(lens, 8, seed=11))
    ind = means["induction"]
    prev = means["prev_token"]
    arg = int(torch.argmax(ind))
    return float(ind.max()), float(prev.max()), divmod(arg, lens.n_head)


# ---------------------------------------------------------------------- phase change


@dataclass
class PhaseChange:
    run_dir: str
    steps: list[int]
    induction: list[float]
    prev_token: list[float]
    icl: list[float]
    repeat_loss: list[float]
    best_head: list[list[int]]
    jump_step: Optional[int]
    jump_from: Optional[int]  # last checkpoint below `low`
    jump_to: Optional[int]  # first checkpoint above `high`
    low: float = 0.1
    high: float = 0.6

    @property
    def detected(self) -> bool:
        return self.jump_to is not None and self.jump_from is not None

    def to_dict(self) -> dict:
        return dict(self.__dict__, detected=self.detected)

    @classmethod
    def from_dict(cls, d: dict) -> "PhaseChange":
        return cls(**{k: d[k] for k in cls.__dataclass_fields__ if k in d})

    def figure(self):
        plt = pyplot()

        fig, ax = plt.subplots(figsize=(8.4, 3.6))
        ax.plot(self.steps, self.induction, "o-", ms=3, color="#c2185b",
                label="best prefix-matching score")
        ax.plot(self.steps, self.prev_token, "o-", ms=3, color="#3056d3",
                label="best previous-token score")
        ax.set_xlabel("training step")
        ax.set_ylabel("attention score")
        ax.set_ylim(-0.02, 1.02)
        ax2 = ax.twinx()
        ax2.plot(self.steps, self.repeat_loss, "s--", ms=3, color="#555", label="loss on repeated tokens")
        ax2.plot(self.steps, self.icl, "^:", ms=3, color="#1b7f3b", label="ICL score (late - early loss)")
        ax2.set_ylabel("nats")
        if self.jump_step is not None:
            ax.axvline(self.jump_step, color="#c2185b", lw=1, ls="--")
            ax.annotate(f"phase change ~ step {self.jump_step}", (self.jump_step, 0.95), fontsize=8,
                        color="#c2185b", xytext=(4, 0), textcoords="offset points")
        h1, l1 = ax.get_legend_handles_labels()
        h2, l2 = ax2.get_legend_handles_labels()
        ax.legend(h1 + h2, l1 + l2, fontsize=8, loc="center right", framealpha=0.9)
        ax.grid(alpha=0.25)
        fig.tight_layout()
        return fig

    def to_html(self) -> str:
        rows = [{"step": s, "prefix matching": i, "prev-token": p, "ICL score": c,
                 "repeat loss": r, "best head": f"L{b[0]}H{b[1]}"}
                for s, i, p, c, r, b in zip(self.steps, self.induction, self.prev_token, self.icl,
                                            self.repeat_loss, self.best_head)]
        verdict = (f"Phase change detected: the best prefix-matching score goes from under "
                   f"{self.low} (step {self.jump_from}) to over {self.high} (step {self.jump_to}); "
                   f"steepest rise at step {self.jump_step}." if self.detected else
                   f"No jump from under {self.low} to over {self.high} in these checkpoints.")
        return (f"<p>{escape(verdict)}</p>" + figure_block(figure_to_svg(self.figure()))
                + "<details><summary>per checkpoint</summary>" + table_html(rows, digits=3)
                + "</details>")

    def _repr_html_(self) -> str:
        return self.to_html()


def detect_jump(steps: list[int], scores: list[float], low: float = 0.1,
                high: float = 0.6) -> tuple[Optional[int], Optional[int], Optional[int]]:
    """(steepest-rise step, last step below ``low`` before it, first step above ``high`` after)."""
    if len(steps) < 2:
        return None, None, None
    d = np.diff(scores)
    i = int(np.argmax(d))
    if d[i] <= 0:
        return None, None, None
    mid = 0.5 * (steps[i] + steps[i + 1])
    below = [s for s, v in zip(steps, scores) if v < low and s <= steps[i]]
    above = [s for s, v in zip(steps, scores) if v > high and s >= steps[i + 1]]
    return int(round(mid)), (below[-1] if below else None), (above[0] if above else None)


def phase_change(run_dir: str | Path, max_checkpoints: int = 40, progress: bool = False) -> PhaseChange:
    run_dir = Path(run_dir)
    steps = checkpoint_steps(run_dir)
    if len(steps) > max_checkpoints:  # evenly thinned, first and last kept
        idx = np.unique(np.linspace(0, len(steps) - 1, max_checkpoints).round().astype(int))
        steps = [steps[i] for i in idx]
    first = load_run_model(run_dir, steps[0])
    if not isinstance(first.model, GPT):
        raise ModelError(f"{run_dir} is not a transformer run: the phase change is measured on "
                         "attention heads (use `lenslab icl` curves for LSTMs)")
    out = {k: [] for k in ("induction", "prev_token", "icl", "repeat_loss", "best_head")}
    it = steps
    bar = None
    if progress:
        bar = Progress(transient=True)
        bar.start()
        tid = bar.add_task("checkpoints", total=len(steps))
    try:
        for s in it:
            rm = load_run_model(run_dir, s)
            ind, prev, head = head_scores(rm)
            curve = per_position_loss(rm.model, rm.task, 2, 32)
            out["induction"].append(ind)
            out["prev_token"].append(prev)
            out["best_head"].append(list(head))
            out["icl"].append(icl_score(curve)["icl_score"])
            out["repeat_loss"].append(repeated_token_loss(rm.model, rm.cfg.model.vocab_size, rm.n_ctx))
            if bar is not None:
                bar.advance(tid)
    finally:
        if bar is not None:
            bar.stop()
    jump, lo, hi = detect_jump(steps, out["induction"])
    return PhaseChange(str(run_dir), steps, out["induction"], out["prev_token"], out["icl"],
                       out["repeat_loss"], out["best_head"], jump, lo, hi)


# ---------------------------------------------------------------------- reports


SCORE_KEYS = ("icl_score", "early", "late", "loss_early", "loss_late")


@dataclass
class ICLReport(Result):
    """ICL score and per-position loss of a run at one checkpoint, and the phase change over
    its checkpoints (transformer runs with two or more)."""

    kind = "icl"
    title = "In-context learning"

    run_dir: str
    step: int
    curve: list[float]  # [T] mean loss at each position
    score: dict  # icl_score, early, late, loss_early, loss_late
    phase: Optional[PhaseChange] = None

    def to_dict(self) -> dict:
        d = {"run_dir": self.run_dir, "step": self.step, "per_position_loss": self.curve,
             **self.score}
        if self.phase is not None:
            d["phase_change"] = self.phase.to_dict()
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "ICLReport":
        ph = d.get("phase_change")
        return cls(str(d.get("run_dir", "")), int(d["step"]), list(d["per_position_loss"]),
                   {k: d[k] for k in SCORE_KEYS}, PhaseChange.from_dict(ph) if ph else None)

    def heading(self) -> str:
        return f"In-context learning: {Path(self.run_dir).name}" if self.run_dir else self.title

    def figure(self):
        return self.curve_figure()

    def curve_figure(self):
        return curves_figure({f"{Path(self.run_dir).name} @ {self.step}": self.curve},
                             marks=(self.score["early"], self.score["late"]))

    def to_html(self) -> str:
        s = self.score
        body = (f"<p>ICL score at step {self.step}: <b>{s['icl_score']:+.3f}</b> nats (loss at "
                f"position {s['late']} minus loss at position {s['early']}: {s['loss_late']:.3f} - "
                f"{s['loss_early']:.3f}). Negative means the model predicts better with more "
                "context.</p>" + figure_block(figure_to_svg(self.curve_figure()),
                                              "Mean loss at each position of held-out sequences."))
        if self.phase is not None:
            body += "<h3>Across checkpoints</h3>" + self.phase.to_html()
        return body


def curves_figure(curves: dict[str, list[float]], marks: Optional[tuple[int, int]] = None):
    plt = pyplot()

    fig, ax = plt.subplots(figsize=(7.6, 3.6))
    for (name, c), color in zip(curves.items(), ["#3056d3", "#e07b00", "#1b7f3b", "#8e24aa"]):
        x = np.arange(1, len(c) + 1)
        ax.plot(x, c, lw=1.4, color=color, label=label(name))
    if marks:
        for m in marks:
            ax.axvline(m + 1, color="#999", lw=0.8, ls=":")
    ax.set_xscale("log")
    ax.set_xlabel("token position in context")
    ax.set_ylabel("loss (nats)")
    ax.legend(fontsize=8, frameon=False)
    ax.grid(alpha=0.25, which="both")
    fig.tight_layout()
    return fig


def measure_icl(run_dir: str | Path, early: Optional[int] = None, late: Optional[int] = None,
                with_phase: bool = True, progress: bool = False) -> ICLReport:
    rm = load_run_model(run_dir)
    if early is not None or late is not None:
        e, l_ = default_positions(rm.n_ctx)
        early, late = (e if early is None else early), (l_ if late is None else late)
        if late >= rm.task.seq_len or early < 0 or early >= late:
            raise DataError(f"positions early={early}, late={late} do not fit the run's context "
                            f"of {rm.task.seq_len} tokens")
    curve = per_position_loss(rm.model, rm.task)
    score = icl_score(curve, early, late)
    phase = None
    if with_phase and isinstance(rm.model, GPT) and len(checkpoint_steps(rm.run_dir)) >= 2:
        phase = phase_change(rm.run_dir, progress=progress)
    return ICLReport(str(run_dir), rm.step, [float(v) for v in curve], score, phase)



@dataclass
class Comparison(Result):
    """Per-position loss of two runs on the same held-out sequences (transformer vs LSTM)."""

    kind = "compare"
    title = "Per-position loss"

    names: list[str]
    curves: dict[str, list[float]]
    scores: dict[str, dict]
    params: dict[str, int]

    def to_dict(self) -> dict:
        return {"runs": self.names, "per_position_loss": self.curves, "icl": self.scores,
                "non_embedding_params": self.params}

    @classmethod
    def from_dict(cls, d: dict) -> "Comparison":
        return cls(list(d["runs"]), dict(d["per_position_loss"]), dict(d["icl"]),
                   dict(d["non_embedding_params"]))

    def heading(self) -> str:
        return "Per-position loss: " + " vs ".join(self.names)

    def figure(self):
        return curves_figure(self.curves)

    def to_html(self) -> str:
        rows = [{"run": n, "non-embedding params": self.params[n],
                 "loss early": self.scores[n]["loss_early"], "loss late": self.scores[n]["loss_late"],
                 "ICL score": self.scores[n]["icl_score"]} for n in self.names]
        return figure_block(figure_to_svg(self.figure()), "Per-position loss on the same held-out "
                            "sequences (log position axis).") + table_html(rows, digits=3)


def compare(run_a: str | Path, run_b: str | Path) -> Comparison:
    a, b = load_run_model(run_a), load_run_model(run_b)
    if a.cfg.data.model_dump() != b.cfg.data.model_dump() or a.cfg.seed != b.cfg.seed:
        raise DataError(f"{run_a} and {run_b} were trained on different data (task or seed); "
                        "per-position curves are only comparable on the same sequences")
    curves, scores, params = {}, {}, {}
    for rm in (a, b):
        name = f"{rm.run_dir.name} ({type(rm.model).__name__})"
        c = per_position_loss(rm.model, rm.task)
        curves[name] = [float(v) for v in c]
        scores[name] = icl_score(c)
        params[name] = rm.model.num_params()
    return Comparison(list(curves), curves, scores, params)
