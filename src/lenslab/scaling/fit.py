"""Scaling-law fits with bootstrap intervals.

Three families, all fitted to *log* loss with a Huber loss (delta = 1e-3) and L-BFGS from a
grid of starts, as Hoffmann et al. 2022 and Besiroglu et al. 2024 (Epoch) fitted Chinchilla:

``power``
    ``L(x) = E + A x^-alpha`` for one size variable x (parameters N, tokens D or compute C),
    written ``log L = LSE(a - alpha log x, e)`` with ``A = exp(a)``, ``E = exp(e)``.
``chinchilla``
    ``L(N, D) = E + A / N^alpha + B / D^beta``, written
    ``log L = LSE(a - alpha log N, b - beta log D, e)``; optionally ``alpha = beta``.
``broken``
    The broken neural scaling law of Caballero et al. 2022 with ``k >= 1`` breaks,
    ``L(x) = E + A x^-alpha * prod_i (1 + (x / d_i)^(1 / f_i))^(-c_i f_i)``: past the break
    ``d_i`` the exponent changes from ``alpha`` to ``alpha + c_i`` over a width ``f_i`` (in
    natural-log units of x; small is sharp). Caballero's ``(a, b, c0)`` are ``(E, A, alpha)``
    here. The number of breaks is chosen against the unbroken law by cross-validated error on
    held-out points *and* the Bayesian information criterion (:func:`fit_broken`).
``isoflop`` (not a law)
    Hoffmann et al.'s Approach 2: the minimum of each compute budget's loss-against-size
    parabola, and the power law ``N* = k C^a`` through them (:mod:`lenslab.scaling.isoflop`).
``data-constrained``
    Muennighoff et al. 2023's law for repeated data: the Chinchilla form with D and N replaced
    by effective values that decay with repetition (constants ``R_D*``, ``R_N*``); columns
    N, D and unique tokens U. See :mod:`lenslab.scaling.constrained`.

Everything returns a :class:`ScalingFit`: parameters, percentile-bootstrap intervals (resampling
points with replacement and refitting, warm-started at the full-data optimum as Epoch did),
predictions with intervals for extrapolation, compute-optimal allocation for the Chinchilla
form, ``to_dict()`` for JSON, ``_repr_html_()`` for notebooks and :meth:`ScalingFit.figure`.

Units: x and L are whatever the table holds (parameters, tokens, FLOP; nats per token). All
logarithms are natural.
"""

from __future__ import annotations

import abc
import itertools
import math
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import numpy as np

from lenslab.errors import ConfigError, DataError
from lenslab.scaling.optim import (
    HUBER_DELTA,
    HuberObjective,
    best_distinct,
    lbfgs_batched,
    logsumexp_terms,
    multistart_fit,
)
from lenslab.html import pyplot
from lenslab._io import plain

#: Epoch's grid of starting points for the Chinchilla form (Besiroglu et al. 2024, as in the
#: shared data README): alpha, beta in 0..2 step 0.5; e in -1..1 step 0.5; a, b in 0..25 step 5.
EPOCH_GRID = {
    "alpha": np.arange(0.0, 2.5, 0.5),
    "beta": np.arange(0.0, 2.5, 0.5),
    "e": np.arange(-1.0, 1.5, 0.5),
    "a": np.arange(0.0, 30.0, 5.0),
    "b": np.arange(0.0, 30.0, 5.0),
}

#: Exponents and floor fractions (of the smallest observed loss) for data-anchored starts.
ANCHOR_ALPHAS = (0.05, 0.1, 0.2, 0.35, 0.5, 0.75, 1.0, 1.5, 2.0)
ANCHOR_FLOORS = (1e-4, 0.25, 0.5, 0.75, 0.9, 0.97)

#: A broken law must lower BIC by at least this much (2 log Bayes factor >= 6, "strong"
#: evidence in Kass & Raftery 1995) and lower the cross-validated error to be preferred.
BIC_MARGIN = 6.0

FORMS = ("power", "chinchilla", "broken", "data-constrained", "isoflop")


def _dot(m: np.ndarray, v: np.ndarray) -> np.ndarray:
    """``m [B, n] @ v [n]`` without BLAS: these products are small, and OpenBLAS threads
    fighting over two busy cores made the whole fit several times slower."""
    return np.einsum("bn,n->b", m, v)


def _softplus(z: np.ndarray) -> np.ndarray:
    return np.maximum(z, 0.0) + np.log1p(np.exp(-np.abs(z)))


def _sigmoid(z: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * z))


# ----------------------------------------------------------------------------------------------
# Laws: each maps raw parameters theta [B, P] to log-loss predictions [B, n] at bound inputs.
# ----------------------------------------------------------------------------------------------


class Law(abc.ABC):
    """Base class: a law bound to log inputs ``lx [d, n]`` (d = 1, or 2 for N and D)."""

    form: str = ""
    raw_names: tuple[str, ...] = ()

    def __init__(self, lx: np.ndarray):
        self.lx = np.atleast_2d(np.asarray(lx, dtype=float))

    @property
    def n_params(self) -> int:
        return len(self.raw_names)

    @abc.abstractmethod
    def at(self, lx: np.ndarray) -> "Law":
        """The same law bound to other inputs (for predictions)."""

    @abc.abstractmethod
    def predict_vjp(self, theta: np.ndarray) -> tuple[np.ndarray, Callable[[np.ndarray], np.ndarray]]:
        """Predicted log loss ``[..., n]`` for ``theta [..., P]`` and its vector-Jacobian product."""

    def predict(self, theta: np.ndarray) -> np.ndarray:
        return self.predict_vjp(np.atleast_2d(theta))[0]

    @abc.abstractmethod
    def params(self, theta: np.ndarray) -> dict[str, np.ndarray]:
        """Human-readable parameters from ``theta [..., P]`` (arrays of shape ``[...]``)."""

    def describe(self) -> dict[str, Any]:
        return {"form": self.form}


class PowerLaw(Law):
    """``log L = LSE(a - alpha log x, e)``, i.e. ``L = E + A x^-alpha``; theta = (a, alpha, e)."""

    form = "power"
    raw_names = ("a", "alpha", "e")

    def at(self, lx: np.ndarray) -> "PowerLaw":
        return PowerLaw(lx)

    def predict_vjp(self, theta):
        lx = self.lx[0]
        a, alpha, e = theta[:, 0:1], theta[:, 1:2], theta[:, 2:3]
        lse, (w0, _) = logsumexp_terms([a - alpha * lx, e])

        def vjp(c: np.ndarray) -> np.ndarray:
            c0 = c * w0
            ga = c0.sum(axis=1)
            return np.stack([ga, -_dot(c0, lx), c.sum(axis=1) - ga], axis=1)

        return lse, vjp

    def params(self, theta):
        theta = np.asarray(theta, dtype=float)
        return {"E": np.exp(theta[..., 2]), "A": np.exp(theta[..., 0]), "alpha": theta[..., 1]}


class ChinchillaLaw(Law):
    """``log L = LSE(a - alpha log N, b - beta log D, e)``; theta = (a, b, e, alpha[, beta]).

    With ``tie=True`` there is one exponent (alpha = beta) and theta has four entries.
    """

    form = "chinchilla"

    def __init__(self, lx: np.ndarray, tie: bool = False):
        super().__init__(lx)
        self.tie = tie
        self.raw_names = ("a", "b", "e", "alpha") if tie else ("a", "b", "e", "alpha", "beta")

    def at(self, lx: np.ndarray) -> "ChinchillaLaw":
        return ChinchillaLaw(lx, self.tie)

    def predict_vjp(self, theta):
        lN, lD = self.lx[0], self.lx[1]
        a, b, e, alpha = theta[:, 0:1], theta[:, 1:2], theta[:, 2:3], theta[:, 3:4]
        beta = alpha if self.tie else theta[:, 4:5]
        lse, (w0, w1, _) = logsumexp_terms([a - alpha * lN, b - beta * lD, e])

        def vjp(c: np.ndarray) -> np.ndarray:
            c0, c1 = c * w0, c * w1
            ga, gb = c0.sum(axis=1), c1.sum(axis=1)
            ge = c.sum(axis=1) - ga - gb  # the three softmax weights sum to one
            if self.tie:
                return np.stack([ga, gb, ge, -_dot(c0, lN) - _dot(c1, lD)], axis=1)
            return np.stack([ga, gb, ge, -_dot(c0, lN), -_dot(c1, lD)], axis=1)

        return lse, vjp

    def params(self, theta):
        theta = np.asarray(theta, dtype=float)
        out = {
            "E": np.exp(theta[..., 2]),
            "A": np.exp(theta[..., 0]),
            "B": np.exp(theta[..., 1]),
            "alpha": theta[..., 3],
            "beta": theta[..., 3] if self.tie else theta[..., 4],
        }
        return out

    def describe(self):
        return {"form": self.form, "tie_alpha_beta": self.tie}


class BrokenLaw(Law):
    """Caballero et al. 2022 broken power law with ``k`` breaks, fitted in log space.

    ``log L = LSE(e, a - alpha log x - sum_i c_i f_i softplus((log x - delta_i) / f_i))``,
    ``E = exp(e)``, ``A = exp(a)``, break ``d_i = exp(delta_i)``, width ``f_i``.

    A break is only meaningful where data can locate it, so both are bounded: the location
    ``delta_i = lo + (hi - lo) * sigmoid(u_i)`` stays between ``lo`` and ``hi`` (by default the
    second-smallest and second-largest log size, leaving two points on each side; see
    :meth:`for_data`), and the width ``f_i = span * sigmoid(g_i)`` is at most the span of the
    data in log x (a wider "break" is a gentle curvature, not a break).
    theta = (a, alpha, e, c_1, u_1, g_1, ..., c_k, u_k, g_k).
    """

    form = "broken"

    def __init__(self, lx: np.ndarray, k: int, lo: float, hi: float, span: float):
        super().__init__(lx)
        self.k, self.lo, self.hi, self.span = int(k), float(lo), float(hi), float(span)
        names = ["a", "alpha", "e"]
        for i in range(1, self.k + 1):
            names += [f"c{i}", f"u{i}", f"g{i}"]
        self.raw_names = tuple(names)

    @classmethod
    def for_data(cls, lx: np.ndarray, k: int) -> "BrokenLaw":
        """Bounds from the data ``lx [1, n]``: breaks between the second-smallest and the
        second-largest distinct size (the full range with fewer than 4 distinct sizes)."""
        u = np.unique(np.asarray(lx, dtype=float).ravel())
        lo, hi = (u[1], u[-2]) if u.size >= 4 else (u[0], u[-1])
        return cls(lx, k, float(lo), float(hi), float(max(u[-1] - u[0], 1e-6)))

    def at(self, lx: np.ndarray) -> "BrokenLaw":
        return BrokenLaw(lx, self.k, self.lo, self.hi, self.span)

    def delta(self, u: np.ndarray) -> np.ndarray:
        return self.lo + (self.hi - self.lo) * _sigmoid(u)

    def width(self, g: np.ndarray) -> np.ndarray:
        return self.span * _sigmoid(g)

    def u_of(self, delta: float) -> float:
        """Raw location parameter for a break at ``delta`` (clipped inside the bounds)."""
        p = np.clip((delta - self.lo) / max(self.hi - self.lo, 1e-12), 0.02, 0.98)
        return float(np.log(p / (1 - p)))

    def g_of(self, f: float) -> float:
        """Raw width parameter for a width ``f`` (clipped below the span)."""
        p = float(np.clip(f / self.span, 1e-4, 0.98))
        return float(np.log(p / (1 - p)))

    def predict_vjp(self, theta):
        lx = self.lx[0]
        a, alpha, e = theta[:, 0:1], theta[:, 1:2], theta[:, 2:3]
        t1 = a - alpha * lx
        parts = []
        for i in range(self.k):
            c, u, g = theta[:, 3 + 3 * i: 4 + 3 * i], theta[:, 4 + 3 * i: 5 + 3 * i], theta[:, 5 + 3 * i: 6 + 3 * i]
            sg = _sigmoid(g)
            f = np.maximum(self.span * sg, 1e-12)
            su = _sigmoid(u)
            z = (lx - (self.lo + (self.hi - self.lo) * su)) / f
            sp, sz = _softplus(z), _sigmoid(z)
            t1 = t1 - c * f * sp
            parts.append((c, f, sg, su, z, sp, sz))
        lse, (w1, _) = logsumexp_terms([t1, e])

        def vjp(cc: np.ndarray) -> np.ndarray:
            c1 = cc * w1
            ga = c1.sum(axis=1)
            cols = [ga, -_dot(c1, lx), cc.sum(axis=1) - ga]
            for c, f, sg, su, z, sp, sz in parts:
                # d t1/dc = -f sp; d t1/d delta = c sz; d t1/d f = -c (sp - z sz)
                cols.append(-(c1 * sp).sum(axis=1) * f[:, 0])
                ddelta_du = (self.hi - self.lo) * su * (1 - su)
                cols.append((c1 * sz).sum(axis=1) * (c * ddelta_du)[:, 0])
                df_dg = f * (1 - sg)
                cols.append(-(c1 * (sp - z * sz)).sum(axis=1) * (c * df_dg)[:, 0])
            return np.stack(cols, axis=1)

        return lse, vjp

    def params(self, theta):
        theta = np.asarray(theta, dtype=float)
        out = {"E": np.exp(theta[..., 2]), "A": np.exp(theta[..., 0]), "alpha": theta[..., 1]}
        if self.k == 0:
            return out
        # Report breaks ordered by location, with the exponent that holds past each one.
        deltas = np.stack([self.delta(theta[..., 4 + 3 * i]) for i in range(self.k)], axis=-1)
        order = np.argsort(deltas, axis=-1)
        cs = np.stack([theta[..., 3 + 3 * i] for i in range(self.k)], axis=-1)
        fs = np.stack([self.width(theta[..., 5 + 3 * i]) for i in range(self.k)], axis=-1)
        cs, fs = np.take_along_axis(cs, order, -1), np.take_along_axis(fs, order, -1)
        ds = np.exp(np.take_along_axis(deltas, order, -1))
        slope = out["alpha"]
        for i in range(self.k):
            slope = slope + cs[..., i]
            out[f"d{i + 1}"] = ds[..., i]
            out[f"c{i + 1}"] = cs[..., i]
            out[f"f{i + 1}"] = fs[..., i]
            out[f"alpha_after_{i + 1}"] = slope
        return out

    def describe(self):
        return {"form": self.form, "breaks": self.k, "break_range": [math.exp(self.lo), math.exp(self.hi)],
                "max_width": self.span}


# ----------------------------------------------------------------------------------------------
# Starting points
# ----------------------------------------------------------------------------------------------


def _anchor_starts(lx: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Data-anchored (a, alpha, e) starts for ``E + A x^-alpha``: ``[S, 3]``.

    For each exponent in :data:`ANCHOR_ALPHAS` and floor ``E`` at a fraction of the smallest
    loss, ``A`` is set so the curve passes through the median point.
    """
    L = np.exp(y)
    x_med, L_med, L_min = float(np.median(lx)), float(np.median(L)), float(L.min())
    out = []
    for alpha in ANCHOR_ALPHAS:
        for frac in ANCHOR_FLOORS:
            E = frac * L_min
            reducible = max(L_med - E, 1e-3 * L_med)
            out.append([math.log(reducible) + alpha * x_med, alpha, math.log(E)])
    return np.array(out)


def power_starts(lx: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Epoch's grid restricted to (a, alpha, e) plus data-anchored starts: ``[S, 3]``."""
    g = EPOCH_GRID
    grid = np.array([[a, al, e] for al, e, a in itertools.product(g["alpha"], g["e"], g["a"])])
    return np.concatenate([grid, _anchor_starts(lx, y)])


def chinchilla_starts(lN: np.ndarray, lD: np.ndarray, y: np.ndarray, tie: bool) -> np.ndarray:
    """Epoch's grid (4500 starts, 900 when tied) plus data-anchored starts: ``[S, P]``."""
    g = EPOCH_GRID
    if tie:
        grid = [[a, b, e, al] for al, e, a, b in itertools.product(g["alpha"], g["e"], g["a"], g["b"])]
    else:
        grid = [[a, b, e, al, be] for al, be, e, a, b in
                itertools.product(g["alpha"], g["beta"], g["e"], g["a"], g["b"])]
    # Anchored: split the reducible loss evenly between the N and D terms at the median point.
    L = np.exp(y)
    L_med, L_min = float(np.median(L)), float(L.min())
    mN, mD = float(np.median(lN)), float(np.median(lD))
    anchored = []
    for alpha in ANCHOR_ALPHAS:
        for frac in ANCHOR_FLOORS:
            E = frac * L_min
            half = max(L_med - E, 1e-3 * L_med) / 2
            row = [math.log(half) + alpha * mN, math.log(half) + alpha * mD, math.log(E), alpha]
            anchored.append(row if tie else row + [alpha])
    return np.array(grid + anchored, dtype=float)


def broken_starts(law: BrokenLaw, prev: Sequence[np.ndarray], lx: np.ndarray) -> np.ndarray:
    """Starts for a ``k``-break law from good ``(k-1)``-break solutions ``prev``: ``[S, P]``.

    The new break is placed between adjacent distinct ``x`` values (at most 12 places), its
    exponent change is one of ``(-0.9, -0.5, 0.5, 1, 2) * max(alpha, 0.05)`` (negative: the
    law flattens) and its width one of ``(0.1, 0.5, 2)``.
    """
    ux = np.unique(lx)
    mids = (ux[:-1] + ux[1:]) / 2 if ux.size > 1 else ux
    if mids.size > 2:
        mids = mids[1:-1]  # a break needs points on both sides
    if mids.size > 12:
        mids = mids[np.linspace(0, mids.size - 1, 12).round().astype(int)]
    out = []
    for th in prev:
        alpha = max(abs(float(th[1])), 0.05)
        for delta in mids:
            for cfac in (-0.9, -0.5, 0.5, 1.0, 2.0):
                for f in (0.1, 0.5, 2.0):
                    out.append(np.concatenate([th, [cfac * alpha, law.u_of(float(delta)), law.g_of(f)]]))
    return np.array(out)


# ----------------------------------------------------------------------------------------------
# Results
# ----------------------------------------------------------------------------------------------



def laplace_ic(abs_resid: np.ndarray, n_params: int, weights: np.ndarray | None = None) -> dict[str, float]:
    """Information criteria for residuals of a Huber (~L1, delta << residuals) fit.

    With delta = 1e-3 the Huber loss is the absolute error for almost every point, which is
    the negative log-likelihood of Laplace noise; at the maximum-likelihood scale
    ``b = mean |r|``, ``-2 log lik = 2 n (1 + log(2 b))``. Returns that, AIC and BIC.
    """
    w = np.ones_like(abs_resid) if weights is None else weights
    n = float(w.sum())
    b = max(float((w * abs_resid).sum() / n), 1e-300)
    m2ll = 2.0 * n * (1.0 + math.log(2.0 * b))
    return {"neg2_loglik": m2ll, "aic": m2ll + 2 * n_params, "bic": m2ll + n_params * math.log(n)}


@dataclass
class ScalingFit:
    """A fitted scaling law with data, intervals and everything needed to plot it.

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
        return _optimal(p["A"], p["B"], p["E"], p["alpha"], p["beta"], np.asarray(C, dtype=float))

    def _reference_compute(self) -> float:
        return float(np.max(6.0 * self.x[:, 0] * self.x[:, 1]))

    def _compute_optimal_samples(self) -> dict[str, np.ndarray] | None:
        if self.form != "chinchilla" or self.samples is None or len(self.samples) == 0:
            return None
        sp = self.law.params(self.samples)
        opt = _optimal(sp["A"], sp["B"], sp["E"], sp["alpha"], sp["beta"], self._reference_compute())
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
        return plain(d)

    # --- display ----------------------------------------------------------------------------

    def summary_rows(self) -> list[dict[str, Any]]:
        """One row per parameter: name, value, interval bounds."""
        iv = self.intervals
        rows = []
        for k, v in self.params.items():
            lo, hi = iv.get(k, (math.nan, math.nan))
            rows.append({"parameter": k, "value": v, "low": lo, "high": hi})
        return rows

    def html(self, figure: bool = True) -> str:
        """An HTML fragment: parameter table, holdout, allocation, selection, figure."""
        from lenslab.html import figure_block, figure_to_svg, table_html

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
            from lenslab.html import escape

            parts.append(f"<div class='note'>{escape(note)}</div>")
        if figure:
            parts.append(figure_block(figure_to_svg(self.figure()),
                                      "Points: fitted (filled), held out (open). Band: bootstrap "
                                      "interval. Dashed: extrapolation."))
        return "".join(parts)

    def _repr_html_(self) -> str:
        return self.html()

    def page(self, title: str | None = None):
        """A self-contained :class:`lenslab.html.Page` for this fit."""
        from lenslab.html import Page

        page = Page(title or f"Scaling-law fit ({self.form})",
                    subtitle=f"{self.n_points} points, columns {', '.join(self.x_names)} -> {self.y_name}")
        page.add("Fit", self.html())
        return page

    # --- plots ------------------------------------------------------------------------------

    def figure(self, extrapolate: float = 1.0):
        """A matplotlib figure: loss against each size variable on log axes (see :meth:`plot`)."""
        plt = pyplot()

        if self.form == "chinchilla":
            fig, axes = plt.subplots(1, 3, figsize=(14, 4.2))
            for ax, against in zip(axes, ("C", "N", "D")):
                self.plot(ax=ax, against=against, extrapolate=extrapolate)
        elif self.form == "data-constrained":
            from lenslab.scaling.constrained import effective_data_figure

            fig, (ax_p, ax_e) = plt.subplots(1, 2, figsize=(12, 4.4))
            self._plot_parity(ax_p)
            effective_data_figure(self, ax=ax_e)
        else:
            fig, (ax, ax_r) = plt.subplots(2, 1, figsize=(7.5, 6.5), sharex=True,
                                           gridspec_kw={"height_ratios": [3, 1]})
            self.plot(ax=ax, extrapolate=extrapolate)
            ax.set_xlabel("")
            ax_r.axhline(0.0, color="0.5", lw=0.8)
            ax_r.scatter(self.x[:, 0], self.residuals, s=14, color="C0")
            ax_r.set_xscale("log")
            ax_r.set_ylabel("log residual")
            ax_r.set_xlabel(self.x_names[0])
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
        ax.set_ylabel(self.y_name)
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
        for xs, style, label in ((xs_in, "-", "fit"), (xs_out, "--", "extrapolation")):
            band = self.predict_interval(xs)
            if band is not None:
                ax.fill_between(xs, band[0], band[1], color="C1", alpha=0.2, lw=0,
                                label=f"{int(self.level * 100)}% interval" if style == "-" else None)
            ax.plot(xs, self.predict(xs), style, color="C1", lw=1.8, label=label)
        ax.scatter(x, self.loss, s=18, color="C0", zorder=3, label="fitted points")
        if self.heldout_x is not None and self.heldout_x.size:
            ax.scatter(self.heldout_x[:, 0], self.heldout_loss, s=30, facecolors="none",
                       edgecolors="C3", zorder=3, label="held out")
        p = self.params
        ax.axhline(p["E"], color="0.4", ls=":", lw=1, label=f"floor E = {p['E']:.3g}")
        for i in range(1, getattr(self.law, "k", 0) + 1):
            ax.axvline(p[f"d{i}"], color="C2", ls="-.", lw=1, label=f"break {i}" if i == 1 else None)
        ax.set_xlabel(self.x_names[0])
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
        ax.set_xlabel(f"predicted {self.y_name}")
        ax.set_ylabel(f"observed {self.y_name}")
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
        for Cs, style, label in ((np.geomspace(C.min(), Cmax, 200), "-", "compute-optimal frontier"),
                                 (np.geomspace(Cmax, Cmax * 10 ** extrapolate, 100), "--", "extrapolation")):
            opt = _optimal(p["A"], p["B"], p["E"], p["alpha"], p["beta"], Cs)
            xs = {"C": Cs, "N": opt["N_opt"], "D": opt["D_opt"]}[against]
            if self.samples is not None and len(self.samples):
                sp = self.law.params(self.samples)
                so = _optimal(sp["A"][:, None], sp["B"][:, None], sp["E"][:, None],
                              sp["alpha"][:, None], sp["beta"][:, None], Cs[None, :])
                q = (1 - self.level) / 2
                blo, bhi = np.nanquantile(so["loss"], q, axis=0), np.nanquantile(so["loss"], 1 - q, axis=0)
                ax.fill_between(xs, blo, bhi, color="C1", alpha=0.2, lw=0,
                                label=f"{int(self.level * 100)}% interval" if style == "-" else None)
            ax.plot(xs, opt["loss"], style, color="C1", lw=1.8, label=label)
        ax.axhline(p["E"], color="0.4", ls=":", lw=1, label=f"floor E = {p['E']:.3g}")
        ax.set_xlabel({"C": "compute C = 6ND (FLOP)", "N": "parameters N", "D": "tokens D"}[against])
        ax.legend(fontsize=7, loc="best")


def _optimal(A, B, E, alpha, beta, C) -> dict[str, Any]:
    """Compute-optimal allocation for ``E + A N^-alpha + B D^-beta`` at compute ``C`` (broadcasts)."""
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        s = alpha + beta
        a, b = beta / s, alpha / s
        G = (alpha * A / (beta * B)) ** (1.0 / s)
        N = G * (C / 6.0) ** a
        D = (C / 6.0) ** b / G
        loss = E + A * N ** (-alpha) + B * D ** (-beta)
    return {"a": a, "b": b, "G": G, "N_opt": N, "D_opt": D, "tokens_per_parameter": D / N, "loss": loss}


# ----------------------------------------------------------------------------------------------
# Fitting
# ----------------------------------------------------------------------------------------------


def _check_inputs(xs: Sequence[np.ndarray], names: Sequence[str], loss: np.ndarray, y_name: str, n_params: int,
                  form: str) -> tuple[np.ndarray, np.ndarray]:
    loss = np.asarray(loss, dtype=float).ravel()
    cols = []
    for x, name in zip(xs, names):
        x = np.asarray(x, dtype=float).ravel()
        if x.shape != loss.shape:
            raise DataError(f"{name} has {x.size} values but {y_name} has {loss.size}")
        if not np.all(np.isfinite(x) & (x > 0)):
            raise DataError(f"{name} must be positive and finite in every row (log of {name} is fitted)")
        cols.append(x)
    if not np.all(np.isfinite(loss) & (loss > 0)):
        raise DataError(f"{y_name} must be positive and finite in every row (log of {y_name} is fitted)")
    if loss.size < n_params:
        raise DataError(f"the {form} law has {n_params} parameters but there {'is' if loss.size == 1 else 'are'} "
                        f"only {loss.size} point{'' if loss.size == 1 else 's'}; add points or use a simpler form")
    return np.stack(cols, axis=1), loss


def _bootstrap(law: Law, y: np.ndarray, starts: np.ndarray, n_boot: int, seed: int) -> np.ndarray:
    """Refit on ``n_boot`` resamples of the points (with replacement): raw params ``[R, P]``.

    Each resample is a row of multinomial counts used as weights, so all refits run as one
    batched L-BFGS; every resample starts from each row of ``starts [S, P]`` (the full-data
    optimum first) and keeps its best.
    """
    rng = np.random.default_rng(seed)
    n = y.size
    counts = rng.multinomial(n, np.full(n, 1.0 / n), size=n_boot).astype(float)  # [R, n]
    S = len(starts)
    weights = np.repeat(counts, S, axis=0)  # row r*S + s
    obj = HuberObjective(law, y, weights)
    x0 = np.tile(starts, (n_boot, 1))
    res = lbfgs_batched(obj.value_and_grad, x0)
    f = res.f.reshape(n_boot, S)
    best = np.argmin(f, axis=1)
    return res.x.reshape(n_boot, S, -1)[np.arange(n_boot), best]


def _finish(law: Law, y: np.ndarray, best: np.ndarray, batch, n_boot: int, seed: int) -> np.ndarray | None:
    if n_boot <= 0:
        return None
    f0 = HuberObjective(law, y, np.ones_like(y)).value(best[None])[0]
    # Warm starts: the optimum, plus other distinct local optima that are nearly as good.
    extra = [batch.x[i] for i in best_distinct(batch.x, batch.f, 3, tol=1e-2)
             if batch.f[i] <= 1.2 * f0 and np.max(np.abs(batch.x[i] - best)) > 1e-2] if batch is not None else []
    return _bootstrap(law, y, np.array([best] + extra[:2]), n_boot, seed)


def bootstrap(fit: ScalingFit, n_boot: int, seed: int = 0) -> ScalingFit:
    """Give ``fit`` percentile-bootstrap intervals from ``n_boot`` resamples of its points.

    Each resample is refitted from the fit's optimum (batched L-BFGS; see :func:`_bootstrap`);
    ``fit.samples`` is replaced and ``fit`` returned.
    """
    _check_level(fit.level, n_boot)
    y = np.log(fit.loss)
    fit.samples = _bootstrap(fit.law, y, fit.theta[None, :], n_boot, seed) if n_boot else None
    fit.seed = seed
    return fit


def fit_power(x: Any, loss: Any, *, x_name: str = "x", y_name: str = "loss", bootstrap: int = 0,
              level: float = 0.95, seed: int = 0) -> ScalingFit:
    """Fit ``L(x) = E + A x^-alpha`` (Huber on log loss, L-BFGS from a grid of starts).

    ``x [n]`` sizes (positive), ``loss [n]`` (positive). ``bootstrap`` resamples give
    percentile intervals at ``level``.
    """
    _check_level(level, bootstrap)
    X, L = _check_inputs([x], [x_name], loss, y_name, 3, "power")
    lx, y = np.log(X).T, np.log(L)
    law = PowerLaw(lx)
    obj = HuberObjective(law, y, np.ones_like(y))
    best, fbest, batch = multistart_fit(obj, power_starts(lx[0], y))
    samples = _finish(law, y, best, batch, bootstrap, seed)
    return ScalingFit("power", law, best, (x_name,), y_name, X, L, fbest, level, samples, seed=seed)


def fit_chinchilla(N: Any, D: Any, loss: Any, *, tie: bool = False, y_name: str = "loss",
                   x_names: tuple[str, str] = ("N", "D"), bootstrap: int = 0, level: float = 0.95,
                   seed: int = 0, starts: np.ndarray | None = None) -> ScalingFit:
    """Fit ``L(N, D) = E + A / N^alpha + B / D^beta`` as Epoch did.

    ``log L = LSE(a - alpha log N, b - beta log D, e)``, Huber loss (delta 1e-3) on log loss,
    L-BFGS from Epoch's grid (:data:`EPOCH_GRID`, 4500 starts) plus data-anchored starts; the
    best starts are polished with scipy's L-BFGS-B. ``tie=True`` fits one exponent
    ``alpha = beta`` (as Muennighoff et al. 2023 did). ``N [n]`` parameters, ``D [n]`` tokens,
    ``loss [n]``. ``starts [S, P]`` replaces the default grid.
    """
    _check_level(level, bootstrap)
    P = 4 if tie else 5
    X, L = _check_inputs([N, D], list(x_names), loss, y_name, P, "chinchilla")
    lx, y = np.log(X).T, np.log(L)
    law = ChinchillaLaw(lx, tie=tie)
    obj = HuberObjective(law, y, np.ones_like(y))
    grid = chinchilla_starts(lx[0], lx[1], y, tie) if starts is None else np.asarray(starts, float)
    best, fbest, batch = multistart_fit(obj, grid)
    samples = _finish(law, y, best, batch, bootstrap, seed)
    return ScalingFit("chinchilla", law, best, tuple(x_names), y_name, X, L, fbest, level, samples, seed=seed)


def _fit_k_breaks(lx: np.ndarray, y: np.ndarray, k: int, prev: Sequence[np.ndarray]):
    law = BrokenLaw.for_data(lx, k)
    obj = HuberObjective(law, y, np.ones_like(y))
    if k == 0:
        starts = power_starts(lx[0], y)
    else:
        starts = broken_starts(law, prev, lx[0])
    best, fbest, batch = multistart_fit(obj, starts)
    return law, best, fbest, batch


def _cv_error(law: Law, y: np.ndarray, starts: np.ndarray, folds: int, seed: int) -> float:
    """K-fold cross-validated RMSLE: refit without each fold (warm starts), predict it."""
    n = y.size
    rng = np.random.default_rng(seed)
    fold_of = rng.permutation(np.arange(n) % folds)
    S = len(starts)
    masks = np.stack([(fold_of != k).astype(float) for k in range(folds)])  # [K, n] train weights
    obj = HuberObjective(law, y, np.repeat(masks, S, axis=0))
    res = lbfgs_batched(obj.value_and_grad, np.tile(starts, (folds, 1)))
    f = res.f.reshape(folds, S)
    th = res.x.reshape(folds, S, -1)[np.arange(folds), np.argmin(f, axis=1)]  # [K, P]
    pred = law.predict(th)  # [K, n]
    err = (pred - y)[masks == 0]
    return float(np.sqrt(np.mean(err ** 2)))


@dataclass
class BreakSelection:
    """Candidate laws with 0..k breaks fitted to the same points, and the comparison.

    ``fits[k] = (law, theta [P], objective, batch result of every start)``; ``rows[k]`` holds
    AIC, BIC, the cross-validated RMSLE and whether ``k`` breaks beat the chosen law with fewer;
    ``chosen`` is the number of breaks kept.
    """

    fits: list[tuple[BrokenLaw, np.ndarray, float, Any]]
    rows: list[dict[str, Any]]
    chosen: int


def select_breaks(lx: np.ndarray, y: np.ndarray, max_breaks: int, folds: int = 10, seed: int = 0) -> BreakSelection:
    """Fit laws with 0..``max_breaks`` breaks to log sizes ``lx [1, n]`` and log losses ``y [n]``.

    A law with ``k`` breaks replaces the chosen one (with ``k - 1`` breaks) only when both

    * its BIC (Laplace likelihood, see :func:`laplace_ic`) is lower by at least
      :data:`BIC_MARGIN`, and
    * its cross-validated RMSLE (``folds``-fold, leave-one-out when ``n <= folds``; each fold
      refitted from the full-data optima) is lower.

    Laws with fewer than two points more than parameters are not tried.
    """
    n = y.size
    folds = min(folds, n)
    fits: list[tuple[BrokenLaw, np.ndarray, float, Any]] = []
    prev: list[np.ndarray] = []
    rows: list[dict[str, Any]] = []
    chosen = 0
    for k in range(0, max_breaks + 1):
        P = 3 + 3 * k
        if n < P + 2:
            break
        law, best, fbest, batch = _fit_k_breaks(lx, y, k, prev)
        fits.append((law, best, fbest, batch))
        keep = [batch.x[i] for i in best_distinct(batch.x, batch.f, 3, tol=1e-2)]
        prev = [best] + [p for p in keep if np.max(np.abs(p - best)) > 1e-2][:2]
        ic = laplace_ic(np.abs(law.predict(best[None])[0] - y), P)
        cv = _cv_error(law, y, np.array(prev), folds, seed)
        row = {"breaks": k, "n_params": P, "objective": fbest, "aic": ic["aic"], "bic": ic["bic"],
               "cv_rmsle": cv, "chosen": False}
        if k > 0:
            ref = rows[chosen]
            row["delta_bic"] = ref["bic"] - ic["bic"]
            row["supported"] = bool(row["delta_bic"] >= BIC_MARGIN and cv < ref["cv_rmsle"] and chosen == k - 1)
            if row["supported"]:
                chosen = k
        rows.append(row)
    if rows:
        rows[chosen]["chosen"] = True
    return BreakSelection(fits, rows, chosen)


def fit_broken(x: Any, loss: Any, *, max_breaks: int = 2, x_name: str = "x", y_name: str = "loss",
               bootstrap: int = 0, level: float = 0.95, seed: int = 0, folds: int = 10,
               force_breaks: int | None = None) -> ScalingFit:
    """Fit broken power laws with 0..``max_breaks`` breaks and keep the one the data support.

    The number of breaks is chosen by :func:`select_breaks` (lower BIC by at least
    :data:`BIC_MARGIN` *and* lower cross-validated error on held-out points); the comparison
    is in ``ScalingFit.selection``. ``force_breaks`` skips the selection and fits exactly that
    many breaks. ``x [n]`` sizes, ``loss [n]`` losses.
    """
    _check_level(level, bootstrap)
    if max_breaks < 0 or (force_breaks is not None and force_breaks < 0):
        raise ConfigError("the number of breaks cannot be negative")
    X, L = _check_inputs([x], [x_name], loss, y_name, 3, "broken")
    lx, y = np.log(X).T, np.log(L)
    n = y.size
    notes: list[str] = []
    if force_breaks is not None:
        if n < 3 + 3 * force_breaks:
            raise DataError(f"a broken law with {force_breaks} break(s) has {3 + 3 * force_breaks} parameters "
                            f"but only {n} points were given")
        prev: list[np.ndarray] = []
        for k in range(force_breaks + 1):
            law, best, fbest, batch = _fit_k_breaks(lx, y, k, prev)
            keep = [batch.x[i] for i in best_distinct(batch.x, batch.f, 3, tol=1e-2)]
            prev = [best] + [p for p in keep if np.max(np.abs(p - best)) > 1e-2][:2]
        selection = None
    else:
        sel = select_breaks(lx, y, max_breaks, folds, seed)
        law, best, fbest, batch = sel.fits[sel.chosen]
        selection = sel.rows
        if len(sel.rows) < max_breaks + 1:
            notes.append(f"only {n} points: laws with more than {len(sel.rows) - 1} break(s) were not tried "
                         f"(each break adds 3 parameters and needs 2 points to spare)")
    samples = _finish(law, y, best, batch, bootstrap, seed)
    return ScalingFit("broken", law, best, (x_name,), y_name, X, L, fbest, level, samples,
                      selection=selection, notes=notes, seed=seed)


def _check_level(level: float, bootstrap: int) -> None:
    if not 0 < level < 1:
        raise ConfigError(f"the interval level must be between 0 and 1, not {level}")
    if bootstrap < 0:
        raise ConfigError(f"the number of bootstrap resamples cannot be negative ({bootstrap})")
    if 0 < bootstrap < 20:
        raise ConfigError(f"{bootstrap} bootstrap resamples are too few for intervals; use 0 or at least 20")


# ----------------------------------------------------------------------------------------------
# Tables
# ----------------------------------------------------------------------------------------------


def fit_table(source: Any, form: str = "power", *, x: str | Sequence[str] | None = None, y: str = "loss",
              holdout_last: int = 0, bootstrap: int = 0, level: float = 0.95, seed: int = 0,
              tie: bool | None = None, max_breaks: int = 2, base: Any = None,
              where: Sequence[str] = ()) -> ScalingFit:
    """Fit a law to a results table (a CSV path, a sweep folder, or a :class:`Table`).

    ``x`` names the size column (default ``N``); for the Chinchilla form it is two columns,
    ``"N,D"`` by default (``D`` is derived as ``C / (6 N)`` when the table has ``C`` but no
    ``D``). Rows with a missing or non-finite loss are dropped with a warning naming them.
    ``holdout_last = K`` fits without the K largest points (by x; by compute ``N * D`` for the
    Chinchilla form) and reports the extrapolation error on them. The ``data-constrained`` form
    takes three columns, ``"N,D,U"`` by default (``U``: unique tokens), and an optional ``base``
    law (see :func:`lenslab.scaling.constrained.fit_data_constrained`; ``tie`` applies to the
    base fitted when none is given, tied unless ``tie=False``, as the authors fitted it; the
    Chinchilla form is untied unless ``tie=True``). The ``isoflop`` form takes ``"N,C"`` (``C`` derived as
    ``6 N D`` when only ``D`` is there) and returns an
    :class:`~lenslab.scaling.isoflop.IsoFlopFit`. ``where`` keeps the rows that meet every
    ``COLUMN=VALUE``, ``COLUMN!=VALUE`` or ``COLUMN~REGEX`` (one setup of a table of several).
    """
    from lenslab.table import Table, drop_missing, positive_column, read_csv

    if form not in FORMS:
        raise ConfigError(f"unknown form {form!r}; choose one of {', '.join(FORMS)}")
    if holdout_last < 0:
        raise ConfigError(f"--holdout-last must be >= 0, not {holdout_last}")
    table = (source if isinstance(source, Table) else read_csv(source)).where(
        [where] if isinstance(where, str) else where)
    if form == "chinchilla":
        xs = [c.strip() for c in (x.split(",") if isinstance(x, str) else (x or ["N", "D"]))]
        if len(xs) != 2:
            raise ConfigError(f"the chinchilla form needs two size columns (N,D), got {','.join(xs)}")
    elif form == "isoflop":
        xs = [c.strip() for c in (x.split(",") if isinstance(x, str) else (x or ["N", "C"]))]
        if len(xs) != 2:
            raise ConfigError(f"the isoflop form needs two columns (N,C: parameters, compute), got {','.join(xs)}")
        if holdout_last:
            raise ConfigError("--holdout-last does not apply to the isoflop form (it fits each budget's minimum)")
    elif form == "data-constrained":
        xs = [c.strip() for c in (x.split(",") if isinstance(x, str) else (x or ["N", "D", "U"]))]
        if len(xs) != 3:
            raise ConfigError("the data-constrained form needs three columns (N,D,U: parameters, "
                              f"tokens, unique tokens), got {','.join(xs)}")
    else:
        xs = [x.strip()] if isinstance(x, str) else list(x or ["N"])
        if len(xs) != 1:
            raise ConfigError(f"the {form} form takes one size column, got {','.join(xs)}")
    derive_D = form == "chinchilla" and xs[1] == "D" and not table.has("D") and table.has("C")
    derive_C = form == "isoflop" and xs[1] == "C" and not table.has("C") and table.has("D")
    needed = [xs[0], "C"] if derive_D else [xs[0], "D"] if derive_C else list(xs)
    purpose = f"a {form} fit"
    if form == "chinchilla" and xs[1] == "D" and not table.has("D"):
        purpose += " (or give C to derive D = C / 6N)"
    if form == "isoflop" and xs[1] == "C" and not table.has("C"):
        purpose += " (or give D to derive C = 6ND)"
    table.require(needed + [y], purpose)
    table = drop_missing(table, y, context=needed)
    cols = [positive_column(table, c) for c in needed]
    notes = []
    if derive_D:
        cols = [cols[0], cols[1] / (6.0 * cols[0])]
        notes.append("D was derived from compute as C / (6 N)")
    if derive_C:
        cols = [cols[0], 6.0 * cols[0] * cols[1]]
        notes.append("C was derived as 6 N D")
    L = table.numeric(y)
    if np.any(L <= 0):
        bad = np.flatnonzero(L <= 0)
        raise DataError(f"{table.name}: {y} must be positive; line {table.lines[bad[0]]} has {L[bad[0]]:g}")
    order_key = cols[0] * cols[1] if form in ("chinchilla", "data-constrained") else cols[0]
    fit_mask = np.ones(L.size, dtype=bool)
    if holdout_last:
        if holdout_last >= L.size:
            raise DataError(f"--holdout-last {holdout_last} leaves no points to fit ({L.size} rows)")
        fit_mask[np.argsort(order_key, kind="stable")[-holdout_last:]] = False
    fx = [c[fit_mask] for c in cols]
    kw = dict(bootstrap=bootstrap, level=level, seed=seed, y_name=y)
    if form == "power":
        res = fit_power(fx[0], L[fit_mask], x_name=xs[0], **kw)
    elif form == "chinchilla":
        res = fit_chinchilla(fx[0], fx[1], L[fit_mask], tie=bool(tie), x_names=(xs[0], xs[1]), **kw)
    elif form == "isoflop":
        from lenslab.scaling.isoflop import fit_isoflop

        res = fit_isoflop(fx[0], fx[1], L[fit_mask], bootstrap=bootstrap, level=level, seed=seed, y_name=y,
                          x_names=(xs[0], xs[1]))
    elif form == "data-constrained":
        from lenslab.scaling.constrained import fit_data_constrained

        res = fit_data_constrained(fx[0], fx[1], fx[2], L[fit_mask], base=base, tie=tie is not False,
                                   x_names=(xs[0], xs[1], xs[2]), **kw)
    else:
        res = fit_broken(fx[0], L[fit_mask], x_name=xs[0], max_breaks=max_breaks, **kw)
    if holdout_last:
        res.heldout_x = np.stack([c[~fit_mask] for c in cols], axis=1)
        res.heldout_loss = L[~fit_mask]
    res.notes = notes + res.notes
    return res
