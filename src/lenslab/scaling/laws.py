"""Scaling laws as functions of raw parameters, their starting points, and the allocation they
imply.

Each :class:`Law` maps raw parameters ``theta [B, P]`` to predicted log losses ``[B, n]`` at the
log inputs it is bound to, with a vector-Jacobian product for batched L-BFGS
(:mod:`lenslab.scaling.optim`). The forms (see :mod:`lenslab.scaling.fit` for how each is
fitted): :class:`PowerLaw` ``E + A x^-alpha``, :class:`ChinchillaLaw`
``E + A / N^alpha + B / D^beta``, :class:`BrokenLaw` (Caballero et al. 2022), and the
data-constrained law in :mod:`lenslab.scaling.constrained`. Every law registers itself by
form, so a fit written to JSON is rebuilt with :func:`law_from`.
"""

from __future__ import annotations

import abc
import itertools
import math
from typing import Any, Callable, Sequence

import numpy as np

from lenslab.scaling.optim import logsumexp_terms

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
    registry: dict[str, type["Law"]] = {}

    def __init_subclass__(cls, **kw: Any) -> None:
        super().__init_subclass__(**kw)
        if cls.__dict__.get("form"):
            Law.registry[cls.form] = cls

    def __init__(self, lx: np.ndarray):
        self.lx = np.atleast_2d(np.asarray(lx, dtype=float))

    def args(self) -> dict[str, Any]:
        """What besides the inputs builds this law again (``law_from(form, args, lx)``)."""
        return {}

    def side_panel(self, fit: Any, ax: Any) -> None:
        """Draw what this form shows beside a fit's parity plot (data-constrained: the
        effective data); most forms have none."""

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

    def args(self) -> dict[str, Any]:
        return {"tie": self.tie}


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

    def args(self) -> dict[str, Any]:
        return {"k": self.k, "lo": self.lo, "hi": self.hi, "span": self.span}

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


def compute_optimal_allocation(A, B, E, alpha, beta, C) -> dict[str, Any]:
    """Compute-optimal allocation for ``E + A N^-alpha + B D^-beta`` at compute ``C`` (broadcasts)."""
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        s = alpha + beta
        a, b = beta / s, alpha / s
        G = (alpha * A / (beta * B)) ** (1.0 / s)
        N = G * (C / 6.0) ** a
        D = (C / 6.0) ** b / G
        loss = E + A * N ** (-alpha) + B * D ** (-beta)
    return {"a": a, "b": b, "G": G, "N_opt": N, "D_opt": D, "tokens_per_parameter": D / N, "loss": loss}


def law_from(form: str, args: dict[str, Any], lx: np.ndarray) -> Law:
    """The law of ``form`` bound to ``lx``, built with the ``args`` of :meth:`Law.args`."""
    cls = Law.registry.get(form)
    if cls is None:
        raise KeyError(f"no law of form {form!r} (known: {', '.join(sorted(Law.registry))})")
    return cls(lx, **args)
