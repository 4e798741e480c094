"""What ``lenslab diagnose`` finds, as a result: whether a single law holds (:class:`Bend`), the
ranked causes with their evidence (:class:`Check`), and the thresholds they were held to
(:class:`Diagnosis`, kind ``diagnosis``)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from lenslab._io import plain
from lenslab.errors import DataError
from lenslab.html import (
    badge,
    escape,
    figure_block,
    figure_to_svg,
    label,
    pyplot,
    table_html,
)
from lenslab.result import Result
from lenslab.scaling.fit import BIC_MARGIN
from lenslab.scaling.fitted import ScalingFit

#: Repeated data: a large run that saw its unique data more than this many times.
EPOCHS_LIMIT = 1.0
#: Compute-optimal tokens per parameter (Hoffmann et al. 2022; Besiroglu et al. 2024: ~20).
TPP_OPTIMAL = 20.0
#: "Far from compute-optimal": more than this factor away from :data:`TPP_OPTIMAL`.
TPP_FACTOR = 4.0
#: Relative tolerance for "the same learning rate / warmup".
SAME_REL = 0.01
#: Growth of the relative train-validation gap (share of the loss) from small to large runs.
GAP_GROWTH = 0.01
#: "Near the floor": the reducible part (L - E) is less than this share of the loss.
FLOOR_SHARE = 0.1
#: Guard events concentrated in large runs: at least this many times the small runs' rate.
GUARD_RATIO = 2.0

STATUSES = ("supported", "cannot tell", "not supported")


@dataclass
class Check:
    """One candidate cause: its status, the threshold it was held to and the evidence."""

    name: str
    title: str
    status: str
    threshold: str
    evidence: str
    strength: float = 0.0
    values: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "title": self.title, "status": self.status, "threshold": self.threshold,
                "evidence": self.evidence, "strength": float(self.strength), "values": plain(self.values)}



@dataclass
class Bend:
    """Whether a single law holds for loss against ``x``, and where it breaks."""

    status: str  # "single law rejected" | "single law holds" | "cannot tell"
    reason: str
    single: ScalingFit | None = None
    broken: ScalingFit | None = None
    selection: list[dict[str, Any]] | None = None
    confidence: float | None = None
    break_x: float | None = None
    break_interval: tuple[float, float] | None = None
    alpha_before: float | None = None
    alpha_after: float | None = None

    @property
    def rejected(self) -> bool | None:
        if self.status == "cannot tell":
            return None
        return self.status == "single law rejected"

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"status": self.status, "single_law_rejected": self.rejected, "reason": self.reason}
        if self.confidence is not None:
            d["confidence"] = self.confidence
        if self.break_x is not None:
            d["break"] = {
                "x": self.break_x,
                "interval": list(self.break_interval) if self.break_interval else None,
                "alpha_before": self.alpha_before,
                "alpha_after": self.alpha_after,
                "direction": "flattens" if (self.alpha_after or 0) < (self.alpha_before or 0) else "steepens",
            }
        if self.selection is not None:
            d["selection"] = self.selection
        for key, fit in (("single_law", self.single), ("broken_law", self.broken)):
            if fit is not None:
                d[key] = {"params": fit.params, "intervals": {k: list(v) for k, v in fit.intervals.items()},
                          "fit": fit.to_dict()}  # the whole fit: the page draws it again
        return plain(d)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "Bend":
        fits = {}
        for key in ("single_law", "broken_law"):
            entry = d.get(key) or {}
            if "fit" not in entry and entry:
                raise DataError("this diagnosis was written before lenslab kept its fits; run "
                                "`lenslab diagnose` again to draw it")
            fits[key] = ScalingFit.from_dict(entry["fit"]) if entry else None
        br = d.get("break") or {}
        iv = br.get("interval")
        return cls(d["status"], d["reason"], fits["single_law"], fits["broken_law"],
                   d.get("selection"), d.get("confidence"), br.get("x"),
                   tuple(iv) if iv else None, br.get("alpha_before"), br.get("alpha_after"))


@dataclass
class Diagnosis(Result):
    """The bend and the ranked causes, for one table of runs (kind ``diagnosis``)."""

    kind = "diagnosis"
    title = "Where the law bends, and why"

    source: str
    x_name: str
    y_name: str
    n_rows: int
    bend: Bend
    checks: list[Check]
    large_rule: str
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return plain({
            "source": self.source,
            "x": self.x_name,
            "y": self.y_name,
            "n_rows": self.n_rows,
            "law": self.bend.to_dict(),
            "large_runs": self.large_rule,
            "causes": [c.to_dict() for c in self.checks],
            "thresholds": {
                "bic_margin": BIC_MARGIN, "epochs_limit": EPOCHS_LIMIT, "tokens_per_param_optimal": TPP_OPTIMAL,
                "tokens_per_param_factor": TPP_FACTOR, "same_rel": SAME_REL, "gap_growth": GAP_GROWTH,
                "floor_share": FLOOR_SHARE, "guard_ratio": GUARD_RATIO,
            },
            "notes": self.notes,
        })

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "Diagnosis":
        checks = [Check(c["name"], c["title"], c["status"], c["threshold"], c["evidence"],
                        float(c.get("strength", 0.0)), dict(c.get("values") or {}))
                  for c in d["causes"]]
        return cls(str(d["source"]), d["x"], d["y"], int(d["n_rows"]), Bend.from_dict(d["law"]),
                   checks, d["large_runs"], list(d.get("notes", [])))

    def heading(self) -> str:
        return f"{self.title}: {Path(self.source).name}" if self.source else self.title

    def to_html(self) -> str:
        return self.html()

    def rows(self) -> list[dict[str, Any]]:
        return [{"cause": c.title, "status": c.status, "evidence": c.evidence, "threshold": c.threshold}
                for c in self.checks]

    def figure(self):
        """Best loss at each size with the single law and (when fitted) the one-break law."""
        plt = pyplot()

        fig, ax = plt.subplots(figsize=(7.5, 4.6))
        b = self.bend
        fit = b.single or b.broken
        if fit is None:
            ax.text(0.5, 0.5, "too few sizes to fit a law", ha="center", transform=ax.transAxes)
            return fig
        x = fit.x[:, 0]
        xs = np.geomspace(x.min(), x.max(), 200)
        ax.scatter(x, fit.loss, s=20, color="C0", zorder=3, label="best run at each size")
        if b.single is not None:
            ax.plot(xs, b.single.predict(xs), "--", color="0.4", label="single law")
        if b.broken is not None:
            band = b.broken.predict_interval(xs)
            if band is not None:
                ax.fill_between(xs, band[0], band[1], color="C1", alpha=0.2, lw=0)
            ax.plot(xs, b.broken.predict(xs), "-", color="C1", label="one-break law")
        if b.break_x is not None:
            ax.axvline(b.break_x, color="C3", lw=1, ls="-.", label="break")
            if b.break_interval:
                ax.axvspan(*b.break_interval, color="C3", alpha=0.08)
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel(label(self.x_name))
        ax.set_ylabel(label(self.y_name))
        ax.set_title(b.status + (f" (confidence {b.confidence:.0%})" if b.confidence is not None else ""), fontsize=10)
        ax.grid(True, which="both", alpha=0.25)
        ax.legend(fontsize=8)
        fig.tight_layout()
        return fig

    def html(self, figure: bool = True) -> str:
        b = self.bend
        kind = {"single law rejected": "bad", "single law holds": "ok"}.get(b.status, "warn")
        parts = [f"<p>{badge(b.status, kind)} {escape(b.reason)}</p>"]
        if b.selection:
            parts.append(table_html(b.selection))
        parts.append(f"<p class='caption'>Large runs: {escape(self.large_rule)}</p>")
        rows = []
        for c in self.checks:
            k = {"supported": "bad", "not supported": "ok"}.get(c.status, "")
            rows.append(f"<tr><td>{escape(c.title)}</td><td>{badge(c.status, k)}</td>"
                        f"<td>{escape(c.evidence)}</td><td>{escape(c.threshold)}</td></tr>")
        parts.append("<table><thead><tr><th>cause</th><th>status</th><th>evidence</th><th>threshold</th>"
                     f"</tr></thead><tbody>{''.join(rows)}</tbody></table>")
        for note in self.notes:
            parts.append(f"<div class='note'>{escape(note)}</div>")
        if figure:
            parts.append(figure_block(figure_to_svg(self.figure()), "Band: bootstrap interval of the one-break law."))
        return "".join(parts)
