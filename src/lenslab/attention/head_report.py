"""The head taxonomy's result: every head's class with its evidence, and what a page shows of it.

:class:`HeadReport` is what :func:`lenslab.attention.heads.classify` returns and what
``lenslab heads`` writes (``heads.json``, ``heads.html``, ``heads.png``). Beyond the taxonomy it
may carry each head's importance (the rise of a metric when the head is ablated), the rollout of
one example and that example's attention for the viewer, so its page is drawn from the file
alone.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional

import numpy as np

from lenslab.attention import viewer
from lenslab.attention.classes import HeadClass, label, parse_class
from lenslab.html import (
    escape,
    figure_block,
    figure_to_svg,
    fmt,
    pyplot,
    table_html,
    tick_text,
)
from lenslab.html import label as html_label
from lenslab.result import Result


@dataclass
class HeadReport(Result):
    """Per-head classes against re-initialised and permutation nulls (see ``heads.py``).

    ``heads``: one record per head, in layer-major order, with ``layer``, ``head``, ``class``
    (:class:`HeadClass`), ``offset`` (positional heads), ``winning_score``, ``scores``,
    ``null``, ``excess``, ``evidence`` and, when measured, ``importance``.
    """

    kind = "heads"
    title = "Heads"

    model: str
    n_layer: int
    n_head: int
    margin: float
    broad_entropy: float
    heads: list[dict]
    battery: dict
    null: dict
    importance: Optional[dict] = None  # metric, baseline, zero_ablation / mean_ablation [L][H]
    importance_unavailable: str = ""  # why no importance was measured
    rollout: Optional[dict] = None  # tokens and matrix [T][T] of one example
    example: Optional[dict] = None  # one input for the attention viewer (viewer.encode_input)

    # -- data ------------------------------------------------------------------------------
    def to_dict(self) -> dict:
        d = {"model": self.model, "n_layer": self.n_layer, "n_head": self.n_head,
             "margin": self.margin, "broad_entropy": self.broad_entropy,
             "battery": self.battery, "null": self.null, "heads": self.heads}
        for key in ("importance", "importance_unavailable", "rollout", "example"):
            if getattr(self, key):
                d[key] = getattr(self, key)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "HeadReport":
        heads = []
        for h in d["heads"]:
            c, off = parse_class(h.get("class"), h.get("offset"))
            heads.append({**h, "class": c if c is not None else HeadClass.RANDOM_LIKE,
                          "offset": off})
        return cls(d["model"], int(d["n_layer"]), int(d["n_head"]), float(d["margin"]),
                   float(d["broad_entropy"]), heads, d.get("battery", {}), d.get("null", {}),
                   d.get("importance"), str(d.get("importance_unavailable", "")),
                   d.get("rollout"), d.get("example"))

    # -- queries ---------------------------------------------------------------------------
    def head(self, layer: int, head: int) -> dict:
        return self.heads[layer * self.n_head + head]

    def classes(self) -> dict[tuple[int, int], HeadClass]:
        return {(h["layer"], h["head"]): h["class"] for h in self.heads}

    def by_class(self, cls: HeadClass | str) -> list[tuple[int, int]]:
        """The ``(layer, head)`` of every head of class ``cls``."""
        want, _ = parse_class(cls)
        return [(h["layer"], h["head"]) for h in self.heads if h["class"] is want]

    def counts(self) -> dict[HeadClass, int]:
        out: dict[HeadClass, int] = {}
        for h in self.heads:
            out[h["class"]] = out.get(h["class"], 0) + 1
        return out

    def importance_of(self, layer: int, head: int, how: str = "zero_ablation") -> float:
        if not self.importance:
            return math.nan
        return float(self.importance[how][layer][head])

    # -- figures ---------------------------------------------------------------------------
    def figure(self):
        return self.grid_figure()

    def grid_figure(self):
        """Layer x head grid coloured by class, with the deciding score written in each cell."""
        plt = pyplot()  # matplotlib loads only when a figure is drawn
        from matplotlib.colors import ListedColormap
        from matplotlib.patches import Patch

        order = list(HeadClass)
        grid = np.zeros((self.n_layer, self.n_head))
        fig, ax = plt.subplots(figsize=(max(4, 0.62 * self.n_head + 1.5), 0.55 * self.n_layer + 1.3))
        for h in self.heads:
            c = h["class"]
            grid[h["layer"], h["head"]] = order.index(c)
            key = h.get("winning_score")
            val = h["scores"].get(key) if key else h["scores"]["entropy"]
            ax.text(h["head"], h["layer"], fmt(val, 2), ha="center", va="center", fontsize=7,
                    color="white" if c is not HeadClass.RANDOM_LIKE else "#222")
        ax.imshow(grid, cmap=ListedColormap([c.color for c in order]), vmin=-0.5,
                  vmax=len(order) - 0.5, aspect="auto")
        ax.set_xticks(range(self.n_head))
        ax.set_yticks(range(self.n_layer))
        ax.set_xlabel("head")
        ax.set_ylabel("layer")
        present = [c for c in order if any(h["class"] is c for h in self.heads)]
        ax.legend(handles=[Patch(color=c.color, label=c.value) for c in present],
                  bbox_to_anchor=(1.01, 1), loc="upper left", fontsize=8, frameon=False)
        ax.set_title(html_label(f"{self.model}: head classes (number: the deciding score)"), fontsize=10)
        fig.tight_layout()
        return fig

    def importance_figure(self):
        """Each head: how structured it looks (largest excess over its null) against how much
        the metric changes when it is zero-ablated."""
        plt = pyplot()
        fig, ax = plt.subplots(figsize=(6.4, 4.2))
        for c in HeadClass:
            pts = [h for h in self.heads if h["class"] is c]
            if not pts:
                continue
            xs = [max(h["excess"].values(), default=math.nan) for h in pts]
            ys = [self.importance_of(h["layer"], h["head"]) for h in pts]
            ax.scatter(xs, ys, color=c.color, label=c.value, s=28)
            for h, x, y in zip(pts, xs, ys):
                ax.annotate(f"L{h['layer']}H{h['head']}", (x, y), fontsize=7, xytext=(3, 2),
                            textcoords="offset points")
        ax.axvline(0, color="#999", lw=0.8, ls="--")
        ax.axhline(0, color="#999", lw=0.8)
        ax.set_xlabel("structure: largest score excess over its null threshold")
        ax.set_ylabel(f"importance: change of {self.importance['metric']} when zero-ablated")
        ax.legend(fontsize=8, frameon=False)
        ax.grid(alpha=0.25)
        fig.tight_layout()
        return fig

    def rollout_figure(self):
        plt = pyplot()
        strings = self.rollout["tokens"]
        fig, ax = plt.subplots(figsize=(5.2, 4.6))
        ax.imshow(np.asarray(self.rollout["matrix"], dtype=float), cmap="Blues")
        n = len(strings)
        if n <= 40:
            ax.set_xticks(range(n), tick_text(strings), rotation=90, fontsize=6)
            ax.set_yticks(range(n), tick_text(strings), fontsize=6)
        ax.set_xlabel("source token (key)")
        ax.set_ylabel("position (query)")
        ax.set_title("attention rollout", fontsize=10)
        fig.tight_layout()
        return fig

    # -- html ------------------------------------------------------------------------------
    def heading(self) -> str:
        return f"Heads of {self.model}"

    def table_rows(self, only_structured: bool = False) -> list[dict]:
        rows = []
        for h in self.heads:
            if only_structured and h["class"] is HeadClass.RANDOM_LIKE:
                continue
            s = h["scores"]
            row = {"head": f"L{h['layer']}H{h['head']}", "class": label(h["class"], h.get("offset")),
                   "prev": s["prev_token"], "induction": s["induction"],
                   "duplicate": s["duplicate"], "sink": s["sink"], "delimiter": s["delimiter"],
                   "best offset": s["best_offset"], "offset mass": s["offset"],
                   "entropy": s["entropy"]}
            if self.importance:
                row["importance"] = self.importance_of(h["layer"], h["head"])
            row["evidence"] = h["evidence"]
            rows.append(row)
        return rows

    def summary(self) -> str:
        counts = ", ".join(f"{c.value}: {n}" for c, n in sorted(self.counts().items(),
                                                                key=lambda kv: kv[0].value))
        return (f"{self.model}, {self.n_layer} layers x {self.n_head} heads. {counts}. A class is "
                f"given only when the score clears max(re-init 99th percentile, permutation 99th "
                f"percentile) + {self.margin}.")

    def taxonomy_html(self) -> str:
        return (f"<p>{escape(self.summary())}</p>" + figure_block(figure_to_svg(self.grid_figure()))
                + table_html(self.table_rows(), digits=3))

    def to_html(self) -> str:
        parts = [self.taxonomy_html()]
        if self.importance:
            what = (f"the rise of the loss on repeated random tokens (baseline "
                    f"{fmt(self.importance['baseline'], 4)})" if self.importance["metric"] == "loss"
                    else "the shift of the mean-pooled representation of repeated random tokens "
                         "(1 - cosine to the unablated one)")
            parts.append("<h3>Structure against importance</h3><p>A head that looks structured "
                         f"need not matter, and the reverse. Importance is {escape(what)} when "
                         "the head's output is zeroed.</p>"
                         + figure_block(figure_to_svg(self.importance_figure())))
        elif self.importance_unavailable:
            parts.append(f"<div class='note'>No importance: {escape(self.importance_unavailable)}"
                         "</div>")
        if self.rollout:
            parts.append("<h3>Rollout</h3>" + figure_block(figure_to_svg(self.rollout_figure()),
                                                           "Rollout on repeated random tokens."))
        if self.example:
            parts.append("<h3>Viewer</h3><p>Click a head in the grid; hover tokens for weights.</p>"
                         + self.viewer_html())
        return "".join(parts)

    def viewer_html(self, title: str = "") -> str:
        return viewer.viewer_fragment([viewer.decode_input(self.example)], self.heads, title=title)

    def assets(self) -> tuple[str, str]:
        if not self.example:
            return "", ""
        return viewer.assets()

