"""The logit lens (nostalgebraist 2020): the residual stream after each layer, read through the
final norm and the unembedding, as if the model stopped there. Where the answer's rank falls
is where the model has it."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np
import torch

from lenslab.errors import DataError
from lenslab.html import badge, escape, figure_block, figure_to_svg, pyplot, table_html
from lenslab.interventions.patching import cache
from lenslab.result import Result


@dataclass
class LogitLens(Result):
    """Rank (0 = top) and probability of the answer at the last position, after each layer."""

    run_dir: str
    step: int
    layers: list[str]  # "embed", "L0", ... (the stream after that layer)
    median_rank: list[float]
    rank_iqr: list[list[float]]
    mean_prob: list[float]
    n: int
    prompts: str = ""

    kind = "logit-lens"
    title = "Logit lens"

    def to_dict(self) -> dict:
        return {**dataclasses.asdict(self), "summary": self.summary}

    @classmethod
    def from_dict(cls, d: dict) -> "LogitLens":
        return cls(**{f.name: d[f.name] for f in dataclasses.fields(cls) if f.name in d})

    @property
    def summary(self) -> str:
        first = next((name for name, r in zip(self.layers, self.median_rank) if r == 0), None)
        where = f"first ranked top after {first}" if first else "never ranked top"
        return (f"the answer's median rank goes {' -> '.join(f'{r:g}' for r in self.median_rank)} "
                f"through {', '.join(self.layers)}; {where}")

    def figure(self):
        plt = pyplot()
        fig, (a1, a2) = plt.subplots(1, 2, figsize=(8.4, 3.2))
        x = range(len(self.layers))
        iqr = np.array(self.rank_iqr)
        a1.fill_between(x, iqr[:, 0] + 1, iqr[:, 1] + 1, alpha=0.2, color="#3056d3", lw=0)
        a1.plot(x, np.array(self.median_rank) + 1, "o-", color="#3056d3")
        a1.set_yscale("log")
        a1.set_ylabel("rank of the answer (1 = top)")
        a2.plot(x, self.mean_prob, "o-", color="#1b7f3b")
        a2.set_ylim(0, 1)
        a2.set_ylabel("mean probability of the answer")
        for a in (a1, a2):
            a.set_xticks(list(x), self.layers)
            a.grid(alpha=0.3)
        fig.tight_layout()
        return fig

    def to_html(self) -> str:
        rows = [{"after": name, "median rank": r, "interquartile range": f"{q[0]:g} to {q[1]:g}",
                 "mean p(answer)": p}
                for name, r, q, p in zip(self.layers, self.median_rank, self.rank_iqr, self.mean_prob)]
        return (f"<p>{badge('logit lens', 'ok')} {escape(self.summary)}. {self.n} prompts. "
                f"{escape(self.prompts)}.</p>" + table_html(rows, digits=3)
                + figure_block(figure_to_svg(self.figure()),
                               "The answer's rank (median, with its interquartile range) and "
                               "probability when the residual stream after each layer is read "
                               "through the final norm and unembedding."))


@torch.no_grad()
def logit_lens(model, x: torch.Tensor, answer: torch.Tensor, run_dir: str = "", step: int = 0,
               prompts: str = "") -> LogitLens:
    """The logit lens at the last position of ``x [n, T]`` for ``answer [n]``."""
    if getattr(model, "lm_head", None) is None:
        raise DataError("the logit lens reads the residual stream through the unembedding; "
                        "this model has none (it reads out vectors)")
    model.eval()
    resid, _ = cache(model, x)
    ranks, probs = [], []
    for r in resid:  # entering block l = after layer l - 1; the last one enters the final norm
        logits = model.lm_head(model.ln_f(r[:, -1])).float()
        target = logits.gather(1, answer[:, None])
        ranks.append((logits > target).sum(1).numpy())
        probs.append(logits.softmax(-1).gather(1, answer[:, None])[:, 0].numpy())
    names = ["embed"] + [f"L{i}" for i in range(len(resid) - 1)]
    return LogitLens(run_dir, step, names, [float(np.median(r)) for r in ranks],
                     [[float(v) for v in np.quantile(r, [0.25, 0.75])] for r in ranks],
                     [float(p.mean()) for p in probs], int(len(x)), prompts)
