"""The emergence verdict as a result: each metric's curve across scales, its shape, and the
verdict (:class:`EmergenceResult`, kind ``emergence``)."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from lenslab._io import num
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

#: A step whose forecast surprise is at least this share of the curve's range is a jump.
JUMP_THRESHOLD = 0.25
#: Scales needed to judge a curve (two forecasts at least).
MIN_SCALES = 4


@dataclass
class MetricCurve:
    """One metric across scales: values ``[K]``, bootstrap band, shape and scores."""

    name: str
    higher_is_better: bool
    continuous: bool
    x: np.ndarray
    values: np.ndarray
    n_examples: np.ndarray | None = None
    low: np.ndarray | None = None
    high: np.ndarray | None = None
    surprise: float = 0.0
    surprise_interval: tuple[float, float] | None = None
    jump_step: int = 0
    shape: str = "too few scales"
    breakthroughness: float = math.nan
    linearity: float = math.nan
    intervals: dict[str, tuple[float, float]] = field(default_factory=dict)
    bounded: bool = False  # a share in [0, 1]: must move by MIN_BOUNDED_RANGE to have a shape

    @property
    def jump_between(self) -> tuple[float, float]:
        """The two x values (scales or losses) around the largest-surprise step."""
        return float(self.x[self.jump_step]), float(self.x[min(self.jump_step + 1, self.x.size - 1)])

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {
            "kind": "continuous" if self.continuous else "discontinuous",
            "higher_is_better": self.higher_is_better,
            "values": [float(v) for v in self.values],
            "shape": self.shape,
            "forecast_surprise": float(self.surprise),
            "jump_between": list(self.jump_between),
            "breakthroughness": float(self.breakthroughness),
            "linearity": float(self.linearity),
        }
        if self.n_examples is not None:
            d["n_examples"] = [int(v) for v in self.n_examples]
        if self.low is not None and self.high is not None:
            d["interval_low"] = [float(v) for v in self.low]
            d["interval_high"] = [float(v) for v in self.high]
        if self.surprise_interval is not None:
            d["forecast_surprise_interval"] = [float(v) for v in self.surprise_interval]
        if self.intervals:
            d["intervals"] = {k: [float(a), float(b)] for k, (a, b) in self.intervals.items()}
        d["bounded"] = self.bounded
        return d

    @classmethod
    def from_dict(cls, name: str, d: dict[str, Any], x: np.ndarray) -> "MetricCurve":
        def arr(key: str, dtype: Any = float) -> np.ndarray | None:
            return np.asarray(d[key], dtype=dtype) if d.get(key) is not None else None

        jump = float(d["jump_between"][0])
        si = d.get("forecast_surprise_interval")
        return cls(name, bool(d["higher_is_better"]), d["kind"] == "continuous", x,
                   np.asarray(d["values"], dtype=float), arr("n_examples", int), arr("interval_low"),
                   arr("interval_high"), float(d["forecast_surprise"]), tuple(si) if si else None,
                   int(np.argmin(np.abs(x - jump))), d["shape"], num(d["breakthroughness"]),
                   num(d["linearity"]), {k: tuple(v) for k, v in (d.get("intervals") or {}).items()},
                   bool(d.get("bounded", False)))


@dataclass
class EmergenceResult(Result):
    """Metric curves across scales, their shapes and the verdict (kind ``emergence``)."""

    kind = "emergence"
    title = "Emergent or metric artifact?"

    scales: np.ndarray
    curves: dict[str, MetricCurve]
    verdict: str
    reason: str
    level: float = 0.95
    n_boot: int = 0
    seed: int = 0
    threshold: float = JUMP_THRESHOLD
    source: str = "predictions"
    scale_name: str = "scale"
    losses: np.ndarray | None = None
    loss_curves: dict[str, MetricCurve] | None = None
    loss_verdict: tuple[str, str] | None = None
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {
            "verdict": self.verdict,
            "reason": self.reason,
            "source": self.source,
            "scales": [float(s) for s in self.scales],
            "metrics": {k: c.to_dict() for k, c in self.curves.items()},
            "bootstrap": self.n_boot,
            "level": self.level,
            "seed": self.seed,
            "threshold": self.threshold,
            "scale_name": self.scale_name,
            "definitions": {
                "forecast_surprise": "max over steps k>=1 of (y[k+1] - least-squares line in log scale "
                                     "through points 0..k, evaluated at k+1) / (max y - min y), "
                                     "y oriented higher=better",
                "jump": f"lower end of the {int(self.level * 100)}% interval of forecast_surprise >= {self.threshold}",
                "smooth": f"upper end < {self.threshold} and the improvement interval excludes 0",
                "min_scales": MIN_SCALES,
            },
        }
        if self.losses is not None and self.loss_curves is not None:
            d["against_loss"] = {
                "losses": [float(v) for v in self.losses],
                "metrics": {k: c.to_dict() for k, c in self.loss_curves.items()},
                "verdict": self.loss_verdict[0] if self.loss_verdict else None,
                "reason": self.loss_verdict[1] if self.loss_verdict else None,
            }
        if self.notes:
            d["notes"] = list(self.notes)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "EmergenceResult":
        scales = np.asarray(d["scales"], dtype=float)
        curves = {k: MetricCurve.from_dict(k, c, scales) for k, c in d["metrics"].items()}
        al = d.get("against_loss")
        losses = loss_curves = loss_verdict = None
        if al:
            losses = np.asarray(al["losses"], dtype=float)
            loss_curves = {k: MetricCurve.from_dict(k, c, losses) for k, c in al["metrics"].items()}
            loss_verdict = (al["verdict"], al["reason"]) if al.get("verdict") else None
        return cls(scales, curves, d["verdict"], d["reason"], float(d["level"]),
                   int(d.get("bootstrap", 0)), int(d.get("seed", 0)),
                   float(d.get("threshold", JUMP_THRESHOLD)), str(d.get("source", "")),
                   str(d.get("scale_name", "scale")), losses, loss_curves, loss_verdict,
                   list(d.get("notes", [])))

    def heading(self) -> str:
        return f"{self.title} {Path(self.source).name}" if self.source else self.title

    def to_html(self) -> str:
        return self.html()

    def summary_rows(self) -> list[dict[str, Any]]:
        rows = []
        for name, c in self.curves.items():
            si = c.surprise_interval
            rows.append({
                "metric": name,
                "kind": "continuous" if c.continuous else "discontinuous",
                "shape": c.shape,
                "surprise": c.surprise,
                "surprise_low": si[0] if si else math.nan,
                "surprise_high": si[1] if si else math.nan,
                "breakthroughness": c.breakthroughness,
                "linearity": c.linearity,
            })
        return rows

    def figure(self):
        """Every metric against scale (log axis) with its bootstrap band; a second row against
        pre-training loss when losses are known. The largest-surprise step is shaded."""
        plt = pyplot()

        names = list(self.curves)
        rows = 2 if self.loss_curves else 1
        fig, axes = plt.subplots(rows, len(names), figsize=(3.6 * len(names), 3.2 * rows), squeeze=False)
        for j, name in enumerate(names):
            _plot_curve(axes[0, j], self.curves[name], log_x=True, xlabel=self.scale_name)
            if self.loss_curves:
                _plot_curve(axes[1, j], self.loss_curves[name], log_x=False, xlabel="pre-training loss")
                axes[1, j].invert_xaxis()
        fig.suptitle(f"verdict: {self.verdict}", fontsize=11)
        fig.tight_layout()
        return fig

    def html(self, figure: bool = True) -> str:
        kind = {"metric artifact": "warn", "emergent": "ok"}.get(self.verdict, "")
        parts = [f"<p>{badge(self.verdict, kind)} {escape(self.reason)}</p>",
                 table_html(self.summary_rows())]
        curve_rows = []
        for i, s in enumerate(self.scales):
            row: dict[str, Any] = {self.scale_name: float(s)}
            for name, c in self.curves.items():
                row[name] = float(c.values[i])
            curve_rows.append(row)
        parts.append("<h3>Curves</h3>" + table_html(curve_rows))
        if self.loss_verdict:
            parts.append(f"<p>Against pre-training loss: {badge(self.loss_verdict[0])} "
                         f"{escape(self.loss_verdict[1])}</p>")
        parts.append(f"<p class='caption'>Jump: the lower end of the {int(self.level * 100)}% interval of the "
                     f"forecast surprise is at least {self.threshold} (see lenslab.emergence.verdict).</p>")
        for note in self.notes:
            parts.append(f"<div class='note'>{escape(note)}</div>")
        if figure:
            parts.append(figure_block(figure_to_svg(self.figure()), "Bands: bootstrap over examples."))
        return "".join(parts)



def _plot_curve(ax, c: MetricCurve, log_x: bool, xlabel: str) -> None:
    x = c.x
    if c.low is not None and c.high is not None:
        ax.fill_between(x, c.low, c.high, color="C0", alpha=0.2, lw=0)
    ax.plot(x, c.values, "o-", color="C0", ms=4)
    if c.shape == "jump":
        a, b = c.jump_between
        ax.axvspan(min(a, b), max(a, b), color="C3", alpha=0.12)
    if log_x:
        ax.set_xscale("log")
    ax.set_title(label(f"{c.name} ({c.shape})"), fontsize=9)
    ax.set_xlabel(label(xlabel), fontsize=8)
    ax.grid(True, alpha=0.25)
