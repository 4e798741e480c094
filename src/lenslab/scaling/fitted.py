"""A fitted scaling law: :class:`ScalingFit`, the result every law's fit returns."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from lenslab._io import plain
from lenslab.errors import ConfigError, DataError
from lenslab.html import escape, figure_block, figure_to_svg, label, pyplot, table_html
from lenslab.result import Result
from lenslab.scaling.laws import Law, compute_optimal_allocation, laplace_ic, law_from
from lenslab.scaling.optim import HUBER_DELTA


@dataclass
class ScalingFit(Result):
    """A fitted scaling law with data, intervals and everything needed to plot it (kind ``fit``:
    the file holds the data and the bootstrap refits, so it draws again without the table).

    ``x [n, d]`` are the fitted inputs (d = 1 for power and broken laws, 2 for N and D),
    ``loss [n]`` the fitted losses; ``heldout_x``/``heldout_loss`` the points left out with
    ``holdout_last``. ``samples [R, P]`` are the raw parameters of the bootstrap refits.
    """

    form: str
    law: Law
    theta: np.ndarray
    x_names: tuple[str, ...]
    y_name: str
    x: np.ndarray
    loss: np.ndarray
    objective: float
    level: float = 0.95
    samples: np.ndarray | None = None
    heldout_x: np.ndarray | None = None
    heldout_loss: np.ndarray | None = None
    selection: list[dict[str, Any]] | None = None
    notes: list[str] = field(default_factory=list)
    seed: int = 0
    source: str = ""  # the table it was fitted to

    kind = "fit"
    title = "Scaling-law fit"

    # --- parameters -------------------------------------------------------------------------

    @property
    def params(self) -> dict[str, float]:
        """Human-readable parameter values (E, A, alpha, ...)."""
        return {k: float(v) for k, v in self.law.params(self.theta).items()}

    def _sample_params(self) -> dict[str, np.ndarray] | None:
        if self.samples is None or len(self.samples) == 0:
            return None
        return self.law.params(self.samples)

    def _quantiles(self, values: np.ndarray) -> tuple[float, float]:
        v = values[np.isfinite(values)]
        if v.size == 0:
            return math.nan, math.nan
        q = (1 - self.level) / 2
        return float(np.quantile(v, q)), float(np.quantile(v, 1 - q))

    @property
    def intervals(self) -> dict[str, tuple[float, float]]:
        """Percentile-bootstrap intervals at ``level`` for every parameter (empty without bootstrap)."""
        sp = self._sample_params()
        if sp is None:
            return {}
        return {k: self._quantiles(v) for k, v in sp.items()}

    def compute_optimal_intervals(self) -> dict[str, tuple[float, float]]:
        """Bootstrap intervals of the allocation exponents and of tokens per parameter at the
        largest compute in the data (Chinchilla form with bootstrap; empty otherwise)."""
        co = self._compute_optimal_samples()
        return {} if co is None else {k: self._quantiles(v) for k, v in co.items()}

    @property
    def residuals(self) -> np.ndarray:
        """``log L_hat - log L`` at the fitted points ``[n]``."""
        return self.law.at(self._lx(self.x)).predict(self.theta[None])[0] - np.log(self.loss)

    @property
    def n_points(self) -> int:
        return int(self.loss.size)

    def information_criteria(self) -> dict[str, float]:
        return laplace_ic(np.abs(self.residuals), self.law.n_params)

    # --- predictions ------------------------------------------------------------------------

    def _lx(self, x: np.ndarray) -> np.ndarray:
        x = np.asarray(x, dtype=float)
        if x.ndim == 1:
            x = x[:, None]
        return np.log(x).T  # [d, m]

    def _as_x(self, x: Any, D: Any = None) -> np.ndarray:
        if D is not None:
            x = np.stack(np.broadcast_arrays(np.asarray(x, float), np.asarray(D, float)), axis=-1)
        x = np.asarray(x, dtype=float)
        if x.ndim == 0:
            x = x[None]
        if len(self.x_names) == 1 and x.ndim == 1:
            x = x[:, None]
        if x.ndim != 2 or x.shape[1] != len(self.x_names):
            raise ConfigError(f"predictions of the {self.form} law need {len(self.x_names)} input column(s)")
        return x

    def predict(self, x: Any, D: Any = None) -> np.ndarray:
        """Loss at ``x [m]`` (or ``x = N [m], D [m]`` for the Chinchilla form): ``[m]``."""
        X = self._as_x(x, D)
        return np.exp(self.law.at(self._lx(X)).predict(self.theta[None])[0])

    def predict_interval(self, x: Any, D: Any = None) -> tuple[np.ndarray, np.ndarray] | None:
        """Bootstrap interval (at ``level``) of the predicted loss at ``x``: ``([m], [m])``."""
        if self.samples is None or len(self.samples) == 0:
            return None
        X = self._as_x(x, D)
        with np.errstate(over="ignore", invalid="ignore"):
            pred = np.exp(self.law.at(self._lx(X)).predict(self.samples))  # [R, m]
        q = (1 - self.level) / 2
        return np.nanquantile(pred, q, axis=0), np.nanquantile(pred, 1 - q, axis=0)

    # --- compute-optimal allocation (Chinchilla form) ---------------------------------------

    def compute_optimal(self, C: Any) -> dict[str, Any] | None:
        """Compute-optimal N, D, tokens per parameter and loss at compute ``C`` (FLOP, C = 6ND).

        Minimising ``E + A N^-alpha + B D^-beta`` subject to ``6 N D = C`` gives
        ``N_opt = G (C/6)^a``, ``D_opt = (C/6)^b / G`` with ``a = beta / (alpha + beta)``,
        ``b = alpha / (alpha + beta)`` and ``G = (alpha A / (beta B))^(1 / (alpha + beta))``.
        """
        if self.form != "chinchilla":
            return None
        p = self.params
        return compute_optimal_allocation(p["A"], p["B"], p["E"], p["alpha"], p["beta"], np.asarray(C, dtype=float))

    def _reference_compute(self) -> float:
        return float(np.max(6.0 * self.x[:, 0] * self.x[:, 1]))

    def _compute_optimal_samples(self) -> dict[str, np.ndarray] | None:
        if self.form != "chinchilla" or self.samples is None or len(self.samples) == 0:
            return None
        sp = self.law.params(self.samples)
        opt = compute_optimal_allocation(sp["A"], sp["B"], sp["E"], sp["alpha"], sp["beta"], self._reference_compute())
        return {"exponent_a": opt["a"], "exponent_b": opt["b"],
                "tokens_per_parameter": opt["tokens_per_parameter"]}

    # --- serialisation ----------------------------------------------------------------------

    def holdout(self) -> dict[str, Any] | None:
        """Extrapolation error on the held-out points (``None`` without a holdout)."""
        if self.heldout_x is None or self.heldout_loss is None or self.heldout_loss.size == 0:
            return None
        pred = self.predict(self.heldout_x)
        err = np.log(pred) - np.log(self.heldout_loss)
        out: dict[str, Any] = {
            "n": int(err.size),
            "rmsle": float(np.sqrt(np.mean(err ** 2))),
            "mean_abs_log_error": float(np.mean(np.abs(err))),
            "max_abs_log_error": float(np.max(np.abs(err))),
            "mean_relative_error": float(np.mean(pred / self.heldout_loss - 1.0)),
            "points": [],
        }
        band = self.predict_interval(self.heldout_x)
        for i in range(err.size):
            pt = {n: float(self.heldout_x[i, j]) for j, n in enumerate(self.x_names)}
            pt.update({"loss": float(self.heldout_loss[i]), "predicted": float(pred[i])})
            if band is not None:
                pt["interval"] = [float(band[0][i]), float(band[1][i])]
                pt["inside_interval"] = bool(band[0][i] <= self.heldout_loss[i] <= band[1][i])
            out["points"].append(pt)
        if band is not None:
            out["coverage"] = float(np.mean([p["inside_interval"] for p in out["points"]]))
        return out

    def to_dict(self) -> dict[str, Any]:
        """Everything about the fit as JSON-able values."""
        r = self.residuals
        d: dict[str, Any] = {
            "form": self.form,
            "law": self.law.describe(),
            "columns": {"x": list(self.x_names), "y": self.y_name},
            "n_points": self.n_points,
            "params": self.params,
            "intervals": {k: list(v) for k, v in self.intervals.items()},
            "level": self.level,
            "bootstrap": 0 if self.samples is None else int(len(self.samples)),
            "seed": self.seed,
            "objective": {"huber_delta": HUBER_DELTA, "value": self.objective},
            "fit_quality": {
                "rmsle": float(np.sqrt(np.mean(r ** 2))),
                "mean_abs_log_error": float(np.mean(np.abs(r))),
                **self.information_criteria(),
            },
            "raw_params": dict(zip(self.law.raw_names, map(float, self.theta))),
        }
        ho = self.holdout()
        if ho is not None:
            d["holdout"] = ho
        if self.form == "chinchilla":
            C = self._reference_compute()
            opt = self.compute_optimal(C)
            d["compute_optimal"] = {
                "exponent_a": opt["a"], "exponent_b": opt["b"], "reference_compute": C,
                "N_opt": opt["N_opt"], "D_opt": opt["D_opt"],
                "tokens_per_parameter": opt["tokens_per_parameter"], "loss": opt["loss"],
                "intervals": {k: list(v) for k, v in self.compute_optimal_intervals().items()},
            }
        if self.selection is not None:
            d["selection"] = self.selection
        if self.notes:
            d["notes"] = list(self.notes)
        d["source"] = self.source
        # what the page needs to draw again: the points, the law's arguments, the refits
        d["law_args"] = self.law.args()
        d["data"] = {"x": self.x, "loss": self.loss,
                     "heldout_x": self.heldout_x, "heldout_loss": self.heldout_loss}
        d["samples"] = self.samples
        return plain(d)

    @classmethod
    def from_dict(cls, d: dict) -> "ScalingFit":
        data = d.get("data")
        if not isinstance(data, dict):
            raise DataError("this fit was written before lenslab kept a fit's points; fit the "
                            "table again to draw it")
        x = np.asarray(data["x"], dtype=float)
        law = law_from(d["form"], d.get("law_args") or {}, np.log(x).T)
        theta = np.array([d["raw_params"][n] for n in law.raw_names], dtype=float)

        def arr(v: Any) -> Any:
            return None if v is None else np.asarray(v, dtype=float)

        return cls(d["form"], law, theta, tuple(d["columns"]["x"]), d["columns"]["y"], x,
                   arr(data["loss"]), float(d["objective"]["value"]), float(d["level"]),
                   arr(d.get("samples")), arr(data.get("heldout_x")), arr(data.get("heldout_loss")),
                   d.get("selection"), list(d.get("notes", [])), int(d.get("seed", 0)),
                   str(d.get("source", "")))

    # --- display ----------------------------------------------------------------------------

    def summary_rows(self) -> list[dict[str, Any]]:
        """One row per parameter: name, value, interval bounds."""
        iv = self.intervals
        rows = []
        for k, v in self.params.items():
            lo, hi = iv.get(k, (math.nan, math.nan))
            rows.append({"parameter": k, "value": v, "low": lo, "high": hi})
        return rows

    def heading(self) -> str:
        return (f"Scaling-law fit ({self.form})"
                + (f": {Path(self.source).name}" if self.source else ""))

    def to_html(self) -> str:
        return self.html()

    def html(self, figure: bool = True) -> str:
        """An HTML fragment: parameter table, holdout, allocation, selection, figure."""
        parts = [table_html(self.summary_rows(), ["parameter", "value", "low", "high"])]
        if self.intervals:
            parts.append(f"<p class='caption'>{int(self.level * 100)}% percentile-bootstrap "
                         f"intervals from {len(self.samples)} resamples.</p>")
        ho = self.holdout()
        if ho is not None:
            parts.append("<h3>Extrapolation to held-out points</h3>")
            parts.append(table_html([{k: v for k, v in ho.items() if k != "points"}]))
            parts.append(table_html(ho["points"]))
        if self.form == "chinchilla":
            co = dict(self.to_dict()["compute_optimal"])
            ivs = co.pop("intervals")
            for k, (lo, hi) in ivs.items():
                co[f"{k} interval"] = f"[{lo:.4g}, {hi:.4g}]"
            parts.append("<h3>Compute-optimal allocation</h3>")
            parts.append(table_html([co]))
        if self.selection:
            parts.append("<h3>Number of breaks</h3>")
            parts.append(table_html(self.selection))
        for note in self.notes:
            parts.append(f"<div class='note'>{escape(note)}</div>")
        if figure:
            parts.append(figure_block(figure_to_svg(self.figure()),
                                      "Points: fitted (filled), held out (open). Band: bootstrap "
                                      "interval. Dashed: extrapolation."))
        return "".join(parts)


    # --- plots ------------------------------------------------------------------------------

    def figure(self, extrapolate: float = 1.0):
        """A matplotlib figure: loss against each size variable on log axes (see :meth:`plot`)."""
        plt = pyplot()

        if self.form == "chinchilla":
            fig, axes = plt.subplots(1, 3, figsize=(14, 4.2))
            for ax, against in zip(axes, ("C", "N", "D")):
                self.plot(ax=ax, against=against, extrapolate=extrapolate)
        elif self.form == "data-constrained":
            fig, (ax_p, ax_e) = plt.subplots(1, 2, figsize=(12, 4.4))
            self._plot_parity(ax_p)
            self.law.side_panel(self, ax_e)
        else:
            fig, (ax, ax_r) = plt.subplots(2, 1, figsize=(7.5, 6.5), sharex=True,
                                           gridspec_kw={"height_ratios": [3, 1]})
            self.plot(ax=ax, extrapolate=extrapolate)
            ax.set_xlabel("")
            ax_r.axhline(0.0, color="0.5", lw=0.8)
            ax_r.scatter(self.x[:, 0], self.residuals, s=14, color="C0")
            ax_r.set_xscale("log")
            ax_r.set_ylabel("log residual")
            ax_r.set_xlabel(label(self.x_names[0]))
        fig.tight_layout()
        return fig

    def plot(self, ax=None, against: str | None = None, extrapolate: float = 1.0):
        """Loss against a size variable on log axes: points, fit, interval band, extrapolation.

        ``extrapolate`` is how many decades past the largest point the curve continues
        (dashed). For the Chinchilla form ``against`` is ``"C"`` (default), ``"N"`` or ``"D"``
        and the curve is the compute-optimal frontier (the lowest loss the law allows at each
        compute, drawn against that compute's optimal C, N or D); points are coloured by
        tokens per parameter. Returns the axes.
        """
        plt = pyplot()

        if ax is None:
            _, ax = plt.subplots(figsize=(7, 4.5))
        if self.form == "chinchilla":
            self._plot_chinchilla(ax, against or "C", extrapolate)
        elif self.form == "data-constrained":
            self._plot_parity(ax)
        else:
            self._plot_1d(ax, extrapolate)
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_ylabel(label(self.y_name))
        ax.grid(True, which="both", alpha=0.25)
        return ax

    def _plot_1d(self, ax, extrapolate: float) -> None:
        x = self.x[:, 0]
        lo, hi = float(x.min()), float(x.max())
        if self.heldout_x is not None and self.heldout_x.size:
            hi_all = max(hi, float(self.heldout_x.max()))
        else:
            hi_all = hi
        top = max(hi_all, hi * 10 ** extrapolate)
        xs_in = np.geomspace(lo, hi, 200)
        xs_out = np.geomspace(hi, top, 100)
        for xs, style, text in ((xs_in, "-", "fit"), (xs_out, "--", "extrapolation")):
            band = self.predict_interval(xs)
            if band is not None:
                ax.fill_between(xs, band[0], band[1], color="C1", alpha=0.2, lw=0,
                                label=f"{int(self.level * 100)}% interval" if style == "-" else None)
            ax.plot(xs, self.predict(xs), style, color="C1", lw=1.8, label=text)
        ax.scatter(x, self.loss, s=18, color="C0", zorder=3, label="fitted points")
        if self.heldout_x is not None and self.heldout_x.size:
            ax.scatter(self.heldout_x[:, 0], self.heldout_loss, s=30, facecolors="none",
                       edgecolors="C3", zorder=3, label="held out")
        p = self.params
        ax.axhline(p["E"], color="0.4", ls=":", lw=1, label=f"floor E = {p['E']:.3g}")
        for i in range(1, getattr(self.law, "k", 0) + 1):
            ax.axvline(p[f"d{i}"], color="C2", ls="-.", lw=1, label=f"break {i}" if i == 1 else None)
        ax.set_xlabel(label(self.x_names[0]))
        ax.legend(fontsize=8, loc="best")

    def _plot_parity(self, ax) -> None:
        """Observed against predicted loss, coloured by epochs over the data (D / U)."""
        pred = self.predict(self.x)
        epochs = self.x[:, 1] / self.x[:, 2]
        sc = ax.scatter(pred, self.loss, c=np.log10(np.maximum(epochs, 1e-3)), cmap="viridis",
                        s=14, zorder=3, label="fitted points")
        if self.heldout_x is not None and self.heldout_x.size:
            ax.scatter(self.predict(self.heldout_x), self.heldout_loss, s=30, facecolors="none",
                       edgecolors="C3", zorder=3, label="held out")
        ax.figure.colorbar(sc, ax=ax, pad=0.01).set_label("log10 epochs D / U")
        lo = float(min(pred.min(), self.loss.min()))
        hi = float(max(pred.max(), self.loss.max()))
        ax.plot([lo, hi], [lo, hi], color="0.5", ls=":", lw=1, label="observed = predicted")
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel(label(f"predicted {self.y_name}"))
        ax.set_ylabel(label(f"observed {self.y_name}"))
        ax.legend(fontsize=8, loc="upper left")
        ax.grid(True, which="both", alpha=0.25)

    def _plot_chinchilla(self, ax, against: str, extrapolate: float) -> None:
        if against not in ("C", "N", "D"):
            raise ConfigError(f"against must be C, N or D, not {against!r}")
        N, D = self.x[:, 0], self.x[:, 1]
        C = 6 * N * D
        pts = {"C": C, "N": N, "D": D}[against]
        sc = ax.scatter(pts, self.loss, c=np.log10(D / N), cmap="viridis", s=14, zorder=3,
                        label="fitted points")
        if self.heldout_x is not None and self.heldout_x.size:
            hN, hD = self.heldout_x[:, 0], self.heldout_x[:, 1]
            hp = {"C": 6 * hN * hD, "N": hN, "D": hD}[against]
            ax.scatter(hp, self.heldout_loss, s=30, facecolors="none", edgecolors="C3", zorder=3,
                       label="held out")
        cb = ax.figure.colorbar(sc, ax=ax, pad=0.01)
        cb.set_label("log10 tokens per parameter")
        p = self.params
        Cmax = float(C.max())
        for Cs, style, text in ((np.geomspace(C.min(), Cmax, 200), "-", "compute-optimal frontier"),
                                 (np.geomspace(Cmax, Cmax * 10 ** extrapolate, 100), "--", "extrapolation")):
            opt = compute_optimal_allocation(p["A"], p["B"], p["E"], p["alpha"], p["beta"], Cs)
            xs = {"C": Cs, "N": opt["N_opt"], "D": opt["D_opt"]}[against]
            if self.samples is not None and len(self.samples):
                sp = self.law.params(self.samples)
                so = compute_optimal_allocation(sp["A"][:, None], sp["B"][:, None], sp["E"][:, None],
                              sp["alpha"][:, None], sp["beta"][:, None], Cs[None, :])
                q = (1 - self.level) / 2
                blo, bhi = np.nanquantile(so["loss"], q, axis=0), np.nanquantile(so["loss"], 1 - q, axis=0)
                ax.fill_between(xs, blo, bhi, color="C1", alpha=0.2, lw=0,
                                label=f"{int(self.level * 100)}% interval" if style == "-" else None)
            ax.plot(xs, opt["loss"], style, color="C1", lw=1.8, label=text)
        ax.axhline(p["E"], color="0.4", ls=":", lw=1, label=f"floor E = {p['E']:.3g}")
        ax.set_xlabel({"C": "compute C = 6ND (FLOP)", "N": "parameters N", "D": "tokens D"}[against])
        ax.legend(fontsize=7, loc="best")
