"""Compute-optimal size from isoFLOP profiles (Hoffmann et al. 2022, "Approach 2").

Runs trained with the same compute ``C`` but different sizes ``N`` trace a valley in loss
against ``log N``. For each compute budget a parabola ``L = a u^2 + b u + c`` in ``u = log N``
is fitted; its vertex is the compute-optimal size ``N*(C)``. A line through
``(log C, log N*)`` gives ``N* = k C^a_N``, and, with ``C = 6 N D``, ``D* = C / (6 N*)``
grows as ``C^(1 - a_N)``. Chinchilla's Approach 2 found ``a_N = 0.49``; Kaplan et al. 2020 about
0.73. This is the other route to the exponent that the Chinchilla form gives as
``beta / (alpha + beta)`` (:func:`lenslab.scaling.fit.fit_chinchilla`, Approach 3), and it
assumes nothing about the shape of the law away from each minimum.

The parabola is fitted near each minimum only: over the ``window`` distinct sizes nearest (in
log N) to the budget's best run, 5 by default (``window = 0``: the whole profile). A valley is
a parabola only near its bottom; one parabola over a wide or lopsided profile puts its vertex
where the far runs pull it. On noise-free Chinchilla surfaces with 15 sizes per budget at five
budgets, over +-10x and +-100x around centres that drift from the optimum to 10x off it, the
whole-profile parabola misses ``beta / (alpha + beta)`` by up to 0.10 while a five-size window
stays within 0.006 (``tests/test_scaling_isoflop.py`` measures both).

As a cross-check that does not depend on which runs sit near each minimum, the Chinchilla form
is fitted to all runs by variable projection (:mod:`lenslab.scaling.varpro`, ``D = C / 6N``)
and its ``a_N = beta / (alpha + beta)`` is reported beside the isoFLOP exponent, with a note
when the two disagree by more than :data:`DISAGREE`.

Budgets are the distinct values of the compute column (within 1%). A budget needs at least
three sizes; one whose parabola opens downward, or whose vertex lies outside the sizes it was
trained at (the minimum was not bracketed), is left out of the line with a warning that names
it. Intervals come from resampling the runs within each budget and refitting everything.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from lenslab._io import plain
from lenslab.errors import ConfigError, DataError
from lenslab.html import escape, figure_block, figure_to_svg, label, pyplot, table_html
from lenslab.result import Result
from lenslab.scaling.fit import check_inputs, check_level
from lenslab.scaling.varpro import fit_varpro
from lenslab.table import DataWarning

FORM = "isoflop"
#: Relative tolerance within which two compute values are the same budget.
SAME_BUDGET = 0.01
#: Distinct sizes around each budget's best run that its parabola is fitted to (0: all).
WINDOW = 5
#: The isoFLOP and variable-projection exponents differ by more than this: a note says so.
DISAGREE = 0.02


def group_budgets(C: np.ndarray) -> np.ndarray:
    """Budget index of each run ``[n]``: runs within :data:`SAME_BUDGET` of a budget's first
    (smallest) compute share it."""
    order = np.argsort(C, kind="stable")
    labels = np.empty(C.size, dtype=int)
    k, start = -1, -math.inf
    for i in order:
        if C[i] > start * (1 + SAME_BUDGET):
            k, start = k + 1, C[i]
        labels[i] = k
    return labels


def _vertex(u: np.ndarray, L: np.ndarray) -> tuple[float, float, float]:
    """Least-squares parabola in ``u``: (vertex u*, loss at the vertex, curvature a)."""
    a, b, c = np.polyfit(u, L, 2)
    if not a > 0:
        return math.nan, math.nan, float(a)
    us = -b / (2 * a)
    return float(us), float(c - b * b / (4 * a)), float(a)


def near_minimum(u: np.ndarray, L: np.ndarray, window: int) -> np.ndarray:
    """Mask ``[n]`` of the runs of one budget whose size is among the ``window`` distinct sizes
    nearest (in rank of log N) to the size of its best run; all runs when ``window`` is 0 or
    covers every size. Near an edge the window shifts inward, so it keeps ``window`` sizes."""
    sizes = np.unique(u)
    if window <= 0 or sizes.size <= window:
        return np.ones(u.size, dtype=bool)
    b = int(np.searchsorted(sizes, u[int(np.argmin(L))]))
    lo = min(max(b - window // 2, 0), sizes.size - window)
    return (u >= sizes[lo]) & (u <= sizes[lo + window - 1])


def _line(x: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    """Slope and intercept of the least-squares line."""
    slope, icpt = np.polyfit(x, y, 1)
    return float(slope), float(icpt)


@dataclass
class IsoFlopFit(Result):
    """Per-budget optima and the power law through them, with bootstrap intervals (kind
    ``fit``, form ``isoflop``; the file keeps the runs and refits, so it draws again)."""

    kind = "fit"
    title = "Compute-optimal size from isoFLOP profiles"

    N: np.ndarray
    C: np.ndarray
    loss: np.ndarray
    budget: np.ndarray  # budget index per run
    budgets: list[dict[str, Any]]  # one per budget: C, n, N_opt, loss_opt, used, why
    a_N: float
    log_k: float
    y_name: str = "loss"
    x_names: tuple[str, str] = ("N", "C")
    level: float = 0.95
    samples: np.ndarray | None = None  # [R, 2]: a_N, log_k per resample
    notes: list[str] = field(default_factory=list)
    seed: int = 0
    form: str = FORM
    source: str = ""  # the table it was fitted to
    window: int = WINDOW  # distinct sizes per parabola (0: the whole profile)
    cross_check: dict[str, Any] | None = None  # the variable-projection fit (VarProFit.to_dict)

    @property
    def n_points(self) -> int:
        return int(self.loss.size)

    @property
    def params(self) -> dict[str, float]:
        return {"a_N": self.a_N, "b_D": 1.0 - self.a_N, "k": math.exp(self.log_k)}

    @property
    def intervals(self) -> dict[str, tuple[float, float]]:
        if self.samples is None or not len(self.samples):
            return {}
        q = (1 - self.level) / 2
        a = self.samples[:, 0]
        out = {"a_N": tuple(np.nanquantile(a, [q, 1 - q]).tolist()),
               "k": tuple(np.exp(np.nanquantile(self.samples[:, 1], [q, 1 - q])).tolist())}
        lo, hi = out["a_N"]
        out["b_D"] = (1.0 - hi, 1.0 - lo)
        return {k: out[k] for k in ("a_N", "b_D", "k")}

    def n_opt(self, C: Any) -> np.ndarray:
        """Compute-optimal size at compute ``C`` (FLOP)."""
        return np.exp(self.log_k + self.a_N * np.log(np.asarray(C, dtype=float)))

    def summary_rows(self) -> list[dict[str, Any]]:
        iv = self.intervals
        rows = [{"parameter": k, "value": v, "low": iv.get(k, (math.nan,) * 2)[0],
                 "high": iv.get(k, (math.nan,) * 2)[1]} for k, v in self.params.items()]
        if self.cross_check:
            rows.append({"parameter": "a_N (variable projection)", "value": self.cross_check["a_N"],
                         "low": math.nan, "high": math.nan})
        return rows

    def to_dict(self) -> dict[str, Any]:

        Cmax = float(self.C.max())
        n_star = float(self.n_opt(Cmax))
        return plain({
            "form": self.form,
            "law": {"form": self.form, "n_opt": "N* = k C^a_N", "d_opt": "D* = C / (6 N*) ~ C^b_D"},
            "columns": {"x": list(self.x_names), "y": self.y_name},
            "n_points": self.n_points,
            "params": self.params,
            "intervals": {k: list(v) for k, v in self.intervals.items()},
            "level": self.level,
            "bootstrap": 0 if self.samples is None else int(len(self.samples)),
            "seed": self.seed,
            "budgets": self.budgets,
            "window": {"sizes": self.window,
                       "rule": (f"each parabola is fitted to the {self.window} distinct sizes "
                                "nearest the budget's best run" if self.window else
                                "each parabola is fitted to the whole profile")},
            "cross_check": self.cross_check,
            "compute_optimal": {"exponent_a": self.a_N, "exponent_b": 1.0 - self.a_N,
                                "reference_compute": Cmax, "N_opt": n_star,
                                "D_opt": Cmax / (6 * n_star),
                                "tokens_per_parameter": Cmax / (6 * n_star * n_star)},
            "notes": list(self.notes),
            "source": self.source,
            "data": {"N": self.N, "C": self.C, "loss": self.loss, "budget": self.budget,
                     "a_N": self.a_N, "log_k": self.log_k},
            "samples": self.samples,
        })

    @classmethod
    def from_dict(cls, d: dict) -> "IsoFlopFit":
        data = d.get("data")
        if not isinstance(data, dict):
            raise DataError("this fit was written before lenslab kept a fit's points; fit the "
                            "table again to draw it")
        samples = d.get("samples")
        return cls(np.asarray(data["N"], float), np.asarray(data["C"], float),
                   np.asarray(data["loss"], float), np.asarray(data["budget"], int),
                   list(d["budgets"]), float(data["a_N"]), float(data["log_k"]),
                   d["columns"]["y"], tuple(d["columns"]["x"]), float(d["level"]),
                   None if samples is None else np.asarray(samples, float),
                   list(d.get("notes", [])), int(d.get("seed", 0)), FORM, str(d.get("source", "")),
                   int((d.get("window") or {}).get("sizes", 0)), d.get("cross_check"))

    def heading(self) -> str:
        return self.title + (f": {Path(self.source).name}" if self.source else "")

    def to_html(self) -> str:
        return self.html()

    def html(self, figure: bool = True) -> str:
        parts = [table_html(self.summary_rows(), ["parameter", "value", "low", "high"])]
        if self.intervals:
            parts.append(f"<p class='caption'>{int(self.level * 100)}% intervals from "
                         f"{len(self.samples)} resamples of the runs within each budget.</p>")
        parts.append(f"<p class='caption'>{escape(self.to_dict()['window']['rule'])}."
                     + (" Cross-check: the Chinchilla form fitted to every run by variable "
                        f"projection gives alpha {self.cross_check['alpha']:.3f}, beta "
                        f"{self.cross_check['beta']:.3f}, so a_N = beta / (alpha + beta) = "
                        f"{self.cross_check['a_N']:.3f}." if self.cross_check else "") + "</p>")
        parts.append("<h3>Budgets</h3>")
        parts.append(table_html(self.budgets))
        parts += [f"<div class='note'>{escape(n)}</div>" for n in self.notes]
        if figure:
            parts.append(figure_block(figure_to_svg(self.figure()),
                                      "Left: loss against size at each compute budget, with the "
                                      "fitted parabola and its minimum. Right: the minima against "
                                      "compute and the power law through them."))
        return "".join(parts)

    def figure(self):
        plt = pyplot()

        fig, (ax, ax2) = plt.subplots(1, 2, figsize=(12, 4.4))
        cmap = plt.get_cmap("viridis")
        nb = max(len(self.budgets), 1)
        for j, b in enumerate(self.budgets):
            m = self.budget == j
            col = cmap(j / max(nb - 1, 1))
            ax.scatter(self.N[m], self.loss[m], s=14, color=col, label=f"C = {b['C']:.3g}")
            near = near_minimum(np.log(self.N[m]), self.loss[m], self.window)
            u, lm = np.log(self.N[m])[near], self.loss[m][near]
            if np.unique(u).size >= 3:  # the parabola, over the sizes it was fitted to
                coef = np.polyfit(u, lm, 2)
                uu = np.linspace(u.min(), u.max(), 100)
                ax.plot(np.exp(uu), np.polyval(coef, uu), color=col, lw=1)
            if b["used"]:
                ax.plot([b["N_opt"]], [b["loss_opt"]], "*", color=col, ms=10, mec="k", mew=0.5)
        ax.set_xscale("log")
        ax.set_xlabel(label(f"parameters {self.x_names[0]}"))
        ax.set_ylabel(label(self.y_name))
        ax.legend(fontsize=7, loc="best")
        ax.grid(True, which="both", alpha=0.25)
        used = [b for b in self.budgets if b["used"]]
        cs = np.array([b["C"] for b in used])
        ax2.scatter(cs, [b["N_opt"] for b in used], color="C0", zorder=3, label="minimum of each budget")
        if cs.size:
            grid = np.geomspace(cs.min(), cs.max() * 10, 100)
            if self.samples is not None and len(self.samples):
                band = np.exp(self.samples[:, 1:2] + self.samples[:, 0:1] * np.log(grid)[None])
                q = (1 - self.level) / 2
                ax2.fill_between(grid, np.nanquantile(band, q, axis=0), np.nanquantile(band, 1 - q, axis=0),
                                 color="C1", alpha=0.2, lw=0, label=f"{int(self.level * 100)}% interval")
            ax2.plot(grid, self.n_opt(grid), color="C1", label=f"N* ~ C^{self.a_N:.3f}")
        ax2.set_xscale("log")
        ax2.set_yscale("log")
        ax2.set_xlabel(label(f"compute {self.x_names[1]} (FLOP)"))
        ax2.set_ylabel("compute-optimal N*")
        ax2.legend(fontsize=8, loc="best")
        ax2.grid(True, which="both", alpha=0.25)
        fig.tight_layout()
        return fig


def _optima(u: np.ndarray, L: np.ndarray, budget: np.ndarray, nb: int, bracket: np.ndarray,
            window: int = WINDOW):
    """Vertex log-size and loss per budget ``[nb]`` each (NaN where unusable)."""
    us, ls = np.full(nb, math.nan), np.full(nb, math.nan)
    for j in range(nb):
        m = budget == j
        if m.sum() < 3 or np.unique(u[m]).size < 3:
            continue
        near = near_minimum(u[m], L[m], window)
        v, lv, _ = _vertex(u[m][near], L[m][near])
        if math.isfinite(v) and bracket[j, 0] <= v <= bracket[j, 1]:
            us[j], ls[j] = v, lv
    return us, ls


def fit_isoflop(N: Any, C: Any, loss: Any, *, bootstrap: int = 0, level: float = 0.95, seed: int = 0,
                y_name: str = "loss", x_names: tuple[str, str] = ("N", "C"),
                window: int = WINDOW) -> IsoFlopFit:
    """Compute-optimal size ``N* = k C^a_N`` from runs ``(N [n], C [n], loss [n])`` grouped
    into compute budgets (see the module docstring). Each budget's parabola is fitted to the
    ``window`` distinct sizes nearest its best run (0: all of them; otherwise at least 3).
    ``bootstrap`` resamples give intervals."""
    check_level(level, bootstrap)
    if window != 0 and window < 3:
        raise ConfigError(f"the isoFLOP window needs at least 3 sizes (a parabola has 3 "
                          f"parameters), or 0 for the whole profile; got {window}")
    X, L = check_inputs([N, C], list(x_names), loss, y_name, 3, FORM)
    N, C = X[:, 0], X[:, 1]
    budget = group_budgets(C)
    nb = int(budget.max()) + 1
    u = np.log(N)
    bracket = np.array([[u[budget == j].min(), u[budget == j].max()] for j in range(nb)])
    us, ls = _optima(u, L, budget, nb, bracket, window)
    budgets, dropped = [], []
    for j in range(nb):
        m = budget == j
        row: dict[str, Any] = {"C": float(C[m].min()), "runs": int(m.sum()), "used": bool(math.isfinite(us[j]))}
        near = near_minimum(u[m], L[m], window)
        row.update(window_N_low=float(N[m][near].min()), window_N_high=float(N[m][near].max()))
        if row["used"]:
            row.update(N_opt=math.exp(us[j]), loss_opt=ls[j], why="")
        else:
            n_sizes = np.unique(u[m]).size
            if n_sizes < 3:
                why = f"{n_sizes} size{'s' if n_sizes != 1 else ''} (a parabola needs 3)"
            elif not _vertex(u[m][near], L[m][near])[2] > 0:
                why = "loss is not convex in log N here"
            else:
                why = "its minimum lies outside the sizes trained (not bracketed)"
            row.update(N_opt=math.nan, loss_opt=math.nan, why=why)
            dropped.append(f"C = {row['C']:.3g}: {why}")
        budgets.append(row)
    if dropped:
        warnings.warn(f"isoFLOP budgets left out: {'; '.join(dropped)}", DataWarning, stacklevel=2)
    ok = np.isfinite(us)
    if ok.sum() < 2:
        raise DataError(f"an isoFLOP fit needs at least 2 compute budgets with a bracketed minimum; "
                        f"found {int(ok.sum())} of {nb} (each needs 3 or more sizes around its optimum)")
    lc = np.log(np.array([b["C"] for b in budgets]))
    a_N, log_k = _line(lc[ok], us[ok])
    notes = [] if ok.sum() > 2 else ["only two budgets: the exponent is a line through two points"]
    samples = None
    if bootstrap:
        rng = np.random.default_rng(seed)
        members = [np.flatnonzero(budget == j) for j in range(nb)]
        samples = np.full((bootstrap, 2), math.nan)
        for r in range(bootstrap):
            idx = np.concatenate([rng.choice(mj, size=mj.size, replace=True) for mj in members])
            ur, _ = _optima(u[idx], L[idx], budget[idx], nb, bracket, window)
            okr = np.isfinite(ur) & ok  # only the budgets the estimate itself used
            if okr.sum() >= 2:
                samples[r] = _line(lc[okr], ur[okr])
        lost = int(np.isnan(samples[:, 0]).sum())
        if lost:
            notes.append(f"{lost} of {bootstrap} resamples left fewer than 2 usable budgets and were dropped")
    cross = fit_varpro(N, C / (6.0 * N), L).to_dict()
    if abs(cross["a_N"] - a_N) > DISAGREE:
        notes.append(f"the exponents disagree: a_N {a_N:.3f} from the minima, {cross['a_N']:.3f} "
                     "from the Chinchilla form fitted to every run (variable projection); the "
                     "profiles are sparse near their minima, or not of the Chinchilla form")
    return IsoFlopFit(N, C, L, budget, budgets, a_N, log_k, y_name, tuple(x_names), level, samples,
                      notes, seed, window=window, cross_check=cross)
