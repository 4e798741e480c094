"""The data-constrained scaling law of Muennighoff et al. 2023: what repeated data is worth.

Training for ``D`` tokens on ``U`` unique tokens repeats the data ``R_D = D / U - 1`` times. The
law replaces ``D`` in ``L = E + A / N^alpha + B / D^beta`` by the *effective* data

    ``D' = U_D (1 + R_D* (1 - exp(-R_D / R_D*)))``,      ``U_D = min(U, D)``,

so the value of each further epoch decays with a characteristic number of repetitions
``R_D*`` (``D' -> U_D (1 + R_D*)`` however long one trains), and ``N`` by the effective size

    ``N' = U_N (1 + R_N* (1 - exp(-R_N / R_N*)))``,      ``U_N = min(N, N_opt(U_D))``,
    ``R_N = N / U_N - 1``,

where ``N_opt(D) = G (G D)^(beta / alpha)`` is the compute-optimal size for ``D`` tokens under the
base law (``G = (alpha A / (beta B))^(1 / (alpha + beta))``): parameters beyond what the unique
data can feed are "repeated parameters", worth less and less.

The fit follows the authors' procedure (``huggingface/datablations``, ``utils/parametric_fit``):
the base law ``(A, B, E, alpha, beta)`` comes first, either given or fitted to the runs that see
their data at most once, and ``R_D*`` and ``R_N*`` are then fitted with the base held fixed,
by the same Huber loss on log loss and batched L-BFGS as every lenslab law. The result is a
:class:`~lenslab.scaling.fit.ScalingFit` of form ``data-constrained`` (columns N, D, U).

On the 182 runs the authors fitted, the objective is nearly flat along a ridge in
``(R_D*, R_N*)``: the constants are weakly identified by those runs, and the bootstrap interval
says how weakly. Compare predictions, not constants (see ``tests/test_scaling_fit.py``).
"""

from __future__ import annotations

import itertools
import math
from typing import Any, Mapping

import numpy as np

from lenslab.errors import ConfigError, DataError
from lenslab.scaling.fit import check_inputs, check_level, fit_chinchilla, refits_from
from lenslab.scaling.fitted import ScalingFit
from lenslab.scaling.laws import Law
from lenslab.scaling.optim import HuberObjective, logsumexp_terms, multistart_fit

FORM = "data-constrained"
BASE_KEYS = ("A", "B", "E", "alpha", "beta")

#: Published constants for C4 (Muennighoff et al. 2023, from the authors' notebook).
MUENNIGHOFF_2023 = {"A": 520.8, "B": 1487.7, "E": 1.869, "alpha": 0.3527, "beta": 0.3527,
                    "R_D_star": 15.39, "R_N_star": 5.31}

#: Starting values of R_D* and R_N* (a log grid; both are fitted as logs, so stay positive).
STAR_GRID = (0.5, 2.0, 5.0, 15.0, 50.0, 200.0)


def _effective(U: np.ndarray, R: np.ndarray, log_star: np.ndarray):
    """``log U (1 + s (1 - exp(-R / s)))`` with ``s = exp(log_star)``, and its derivative in
    ``log_star``. ``U, R [n]``; ``log_star [B, 1]`` -> ``[B, n]`` each."""
    with np.errstate(divide="ignore", over="ignore", invalid="ignore"):
        s = np.exp(log_star)
        q = R / s
        e = np.exp(-q)
        one_minus_e = -np.expm1(-q)  # 1 - e without cancellation when R* is large
        inner = 1.0 + s * one_minus_e
        # d inner / d log s = s (1 - e) - R e = s (1 - e - q e)
        return np.log(U) + np.log(inner), s * (one_minus_e - q * e) / inner


def repetition(N: np.ndarray, D: np.ndarray, U: np.ndarray, base: Mapping[str, float]):
    """Unique data and size, and their repetitions: ``(U_D, R_D, U_N, R_N)``, each ``[n]``."""
    A, B, alpha, beta = (float(base[k]) for k in ("A", "B", "alpha", "beta"))
    U_D = np.minimum(U, D)
    R_D = np.maximum(D / U_D - 1.0, 0.0)
    G = (alpha * A / (beta * B)) ** (1.0 / (alpha + beta))
    U_N = np.minimum(N, G * (G * U_D) ** (beta / alpha))
    R_N = np.maximum(N / U_N - 1.0, 0.0)
    return U_D, R_D, U_N, R_N


class DataConstrainedLaw(Law):
    """``log L = LSE(log A - alpha log N', log B - beta log D', log E)`` with the base fixed;
    theta = ``(log R_D*, log R_N*)``. Bound to log inputs ``lx [3, n]`` (N, D, U)."""

    form = FORM

    def __init__(self, lx: np.ndarray, base: Mapping[str, float], fixed_R_N: float | None = None):
        super().__init__(lx)
        self.base = {k: float(base[k]) for k in BASE_KEYS}
        self.fixed_R_N = fixed_R_N  # R_N* held at this value (no run could identify it)
        self.raw_names = ("log_R_D_star",) if fixed_R_N else ("log_R_D_star", "log_R_N_star")
        N, D, U = np.exp(self.lx)
        self.U_D, self.R_D, self.U_N, self.R_N = repetition(N, D, U, self.base)

    def at(self, lx: np.ndarray) -> "DataConstrainedLaw":
        return DataConstrainedLaw(lx, self.base, self.fixed_R_N)

    def _log_rn(self, theta: np.ndarray) -> np.ndarray:
        if self.fixed_R_N:
            return np.full((theta.shape[0], 1), math.log(self.fixed_R_N))
        return theta[:, 1:2]

    def predict_vjp(self, theta: np.ndarray):
        theta = np.atleast_2d(theta)
        b = self.base
        lDp, dD = _effective(self.U_D, self.R_D, theta[:, 0:1])
        lNp, dN = _effective(self.U_N, self.R_N, self._log_rn(theta))
        lse, (wN, wD, _) = logsumexp_terms([math.log(b["A"]) - b["alpha"] * lNp,
                                           math.log(b["B"]) - b["beta"] * lDp,
                                           np.full_like(lNp, math.log(b["E"]))])

        def vjp(c: np.ndarray) -> np.ndarray:
            g = [-b["beta"] * np.einsum("bn,bn->b", c * wD, dD)]
            if not self.fixed_R_N:
                g.append(-b["alpha"] * np.einsum("bn,bn->b", c * wN, dN))
            return np.stack(g, axis=1)

        return lse, vjp

    def params(self, theta: np.ndarray) -> dict[str, np.ndarray]:
        theta = np.asarray(theta, dtype=float)
        rd = np.exp(theta[..., 0])
        rn = np.full_like(rd, self.fixed_R_N) if self.fixed_R_N else np.exp(theta[..., 1])
        return {"R_D_star": rd, "R_N_star": rn}

    def args(self) -> dict[str, Any]:
        return {"base": dict(self.base), "fixed_R_N": self.fixed_R_N}

    def describe(self) -> dict[str, Any]:
        d: dict[str, Any] = {"form": self.form, "base": dict(self.base)}
        if self.fixed_R_N:
            d["R_N_star_held_at"] = self.fixed_R_N
        return d

    def side_panel(self, fit: Any, ax: Any) -> None:
        """Effective data ``D' / U`` against epochs ``D / U``, with the bootstrap band, against the
        line of fresh data; the runs' epochs marked along the bottom."""
        law = self
        epochs = fit.x[:, 1] / np.minimum(fit.x[:, 2], fit.x[:, 1])
        top = max(float(epochs.max()) * 2, 4.0)
        ep = np.geomspace(1.0, top, 200)
        R = ep - 1.0
        ax.plot(ep, ep, color="0.5", ls=":", lw=1, label="fresh data (D' = D)")
        if fit.samples is not None and len(fit.samples):
            band = law.effective_data(fit.samples, R)
            q = (1 - fit.level) / 2
            ax.fill_between(ep, np.quantile(band, q, axis=0), np.quantile(band, 1 - q, axis=0),
                            color="C1", alpha=0.2, lw=0, label=f"{int(fit.level * 100)}% interval")
        p = fit.params
        ax.plot(ep, law.effective_data(fit.theta, R)[0], color="C1", lw=1.8,
                label=f"fit, R_D* = {p['R_D_star']:.3g}")
        ax.axhline(1 + p["R_D_star"], color="C1", ls="--", lw=0.8, label="limit 1 + R_D*")
        ax.plot(epochs, np.full_like(epochs, 1.0), "|", color="C0", ms=12, label="runs' epochs")
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("epochs D / U")
        ax.set_ylabel("effective data D' / U")
        ax.legend(fontsize=8, loc="upper left")
        ax.grid(True, which="both", alpha=0.25)

    @staticmethod
    def effective_data(theta: np.ndarray, R: np.ndarray) -> np.ndarray:
        """``D' / U_D`` after ``R [m]`` repetitions (epochs ``R + 1``) for each row of
        ``theta [B, 2]``: ``[B, m]``."""
        R = np.asarray(R, dtype=float)
        return np.exp(_effective(np.ones_like(R), R, np.atleast_2d(theta)[:, 0:1])[0])


def parse_base(text: str | Mapping[str, float] | None) -> dict[str, float] | None:
    """``"A=520.8,B=1487.7,E=1.869,alpha=0.3527,beta=0.3527"`` (or a mapping) -> dict."""
    if text is None or isinstance(text, Mapping):  # a mapping may carry R_D_star, R_N_star too
        base = None if text is None else {k: v for k, v in text.items() if k not in ("R_D_star", "R_N_star")}
    else:
        base = {}
        for part in filter(None, (p.strip() for p in text.split(","))):
            key, sep, value = part.partition("=")
            if not sep:
                raise ConfigError(f"--base takes NAME=VALUE pairs separated by commas, not {part!r}")
            try:
                base[key.strip()] = float(value)
            except ValueError:
                raise ConfigError(f"--base {key.strip()}: {value!r} is not a number") from None
    if base is None:
        return None
    missing = [k for k in BASE_KEYS if k not in base]
    unknown = [k for k in base if k not in BASE_KEYS]
    if missing or unknown:
        raise ConfigError("the base law needs A, B, E, alpha and beta"
                          + (f"; missing {', '.join(missing)}" if missing else "")
                          + (f"; unknown {', '.join(unknown)}" if unknown else ""))
    bad = [k for k in BASE_KEYS if not (math.isfinite(base[k]) and base[k] > 0)]
    if bad:
        raise ConfigError(f"base parameters must be positive: {', '.join(bad)}")
    return {k: float(base[k]) for k in BASE_KEYS}


def _fit_base(X: np.ndarray, L: np.ndarray, tie: bool, y_name: str) -> tuple[dict[str, float], int]:
    """The base law from the runs the data-constrained law leaves untouched: no repeated data
    (``D <= U``) and no repeated parameters (``N <= N_opt(D)``). Which runs are oversized
    depends on the base, so fit, reselect and refit until the selection settles."""
    need = 4 if tie else 5
    once = X[:, 1] <= X[:, 2]
    keep = once.copy()
    for _ in range(6):
        if keep.sum() <= need:
            raise DataError(f"fitting the base law needs more than {need} runs with at most one epoch "
                            f"and a compute-optimal or smaller size; there are {int(keep.sum())}. Give "
                            "the base parameters instead (--base A=..,B=..,E=..,alpha=..,beta=..)")
        bf = fit_chinchilla(X[keep, 0], X[keep, 1], L[keep], tie=tie, y_name=y_name)
        base, n_fit = {k: bf.params[k] for k in BASE_KEYS}, int(keep.sum())
        _, _, _, R_N = repetition(X[:, 0], X[:, 1], X[:, 2], base)
        new = once & (R_N <= 0)
        if np.array_equal(new, keep):
            return base, n_fit, True
        keep = new
    return base, n_fit, False


def fit_data_constrained(N: Any, D: Any, U: Any, loss: Any, *, base: Any = None, tie: bool = True,
                         y_name: str = "loss", x_names: tuple[str, str, str] = ("N", "D", "U"),
                         bootstrap: int = 0, level: float = 0.95, seed: int = 0):
    """Fit ``R_D*`` and ``R_N*`` of the data-constrained law to runs ``(N, D, U, loss)`` (``[n]``).

    ``base`` gives ``A, B, E, alpha, beta`` (a mapping, a ``"A=..,B=.."`` string or a Chinchilla
    :class:`ScalingFit`); without it the base is fitted first (Chinchilla form, alpha tied to
    beta unless ``tie=False``) on the runs with at most one epoch, ``D <= U``. Bootstrap
    intervals resample the runs and refit both constants with the base held fixed.
    """
    check_level(level, bootstrap)
    X, L = check_inputs([N, D, U], list(x_names), loss, y_name, 2, FORM)
    notes: list[str] = []
    if isinstance(base, ScalingFit):
        if base.form != "chinchilla":
            raise ConfigError(f"the base law must be a chinchilla fit, not {base.form}")
        base = {k: base.params[k] for k in BASE_KEYS}
    base = parse_base(base)
    if base is None:
        base, used, settled = _fit_base(X, L, tie, y_name)
        notes.append(f"base law fitted to the {used} runs with at most one epoch and at most the "
                     f"compute-optimal size for their tokens (Chinchilla form"
                     f"{', alpha tied to beta' if tie else ''}), then held fixed"
                     + ("" if settled else "; which runs are oversized had not settled after 6 refits"))
    else:
        notes.append("base law given, held fixed")
    if not np.any(X[:, 1] > X[:, 2]):
        raise DataError("no run repeats its data (every D <= U): R_D* and R_N* cannot be fitted")
    lx, y = np.log(X).T, np.log(L)
    law = DataConstrainedLaw(lx, base)
    fixed = None
    if not np.any(law.R_N > 0):
        fixed = MUENNIGHOFF_2023["R_N_star"]
        law = DataConstrainedLaw(lx, base, fixed_R_N=fixed)
        notes.append(f"no run has more parameters than its unique data can feed (R_N = 0 "
                     f"everywhere), so R_N* cannot be fitted: it is held at Muennighoff et al.'s "
                     f"{fixed:g}")
    obj = HuberObjective(law, y, np.ones_like(y))
    grid = list(itertools.product(STAR_GRID, STAR_GRID)) if fixed is None else [(g,) for g in STAR_GRID]
    starts = np.log(np.array(grid, dtype=float))
    best, fbest, batch = multistart_fit(obj, starts)
    samples = refits_from(law, y, best, batch, bootstrap, seed)
    fit = ScalingFit(FORM, law, best, tuple(x_names), y_name, X, L, fbest, level, samples, seed=seed)
    fit.notes = notes
    return fit

