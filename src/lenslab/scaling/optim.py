"""Robust least-squares machinery shared by every scaling-law fit.

All laws are fitted the way Hoffmann et al. (2022) and Besiroglu et al. (Epoch, 2024) fit
Chinchilla: minimise the Huber loss (delta = 1e-3) of the residuals in *log* loss,

    objective(theta) = sum_i w_i * huber_delta(log L_hat(x_i; theta) - log L_i) / (delta * sum_i w_i),

with L-BFGS from a grid of starting points. The division by ``delta * sum(w)`` only rescales
the objective (the minimiser is unchanged): for residuals much larger than delta the value is
then close to the mean absolute log residual, which keeps tolerances meaningful whatever the
number of points.

Scipy's L-BFGS-B runs one start at a time, which costs ~5 ms per start in interpreter overhead;
Epoch's grid has 4500 starts and a bootstrap refits 1000 times. :func:`lbfgs_batched` runs
L-BFGS on a whole batch of independent problems at once (one row of ``theta`` per start or per
bootstrap resample), so every step is a handful of numpy operations on ``[batch, points]``
arrays. The best rows are then polished with scipy's L-BFGS-B (:func:`polish`), so a reported
optimum is always a point where scipy's own L-BFGS-B stops.

Shapes: ``theta [B, P]`` (B problems, P parameters), ``weights [n]`` or ``[B_w, n]`` (per-point
weights: bootstrap counts, or 0/1 masks for cross-validation folds), predictions ``[B, n]``.
"""

from __future__ import annotations

from contextlib import nullcontext
from dataclasses import dataclass
from typing import Callable, ContextManager, Protocol

import numpy as np
from scipy.optimize import minimize

try:  # optional: scipy's L-BFGS-B makes tiny BLAS calls that threads only slow down
    from threadpoolctl import threadpool_limits
except ImportError:  # pragma: no cover - threadpoolctl is not a hard dependency
    threadpool_limits = None


def single_thread_blas() -> ContextManager:
    """Limit BLAS to one thread where threadpoolctl is available (a no-op otherwise)."""
    return threadpool_limits(1, user_api="blas") if threadpool_limits is not None else nullcontext()


#: Huber threshold on log-loss residuals, as in Hoffmann et al. 2022 and Epoch 2024.
HUBER_DELTA = 1e-3


class LogModel(Protocol):
    """A law written as a prediction of log loss, with a reverse-mode gradient."""

    n_params: int

    def predict(self, theta: np.ndarray) -> np.ndarray:
        """``theta [B, P]`` -> log-loss predictions ``[B, n]``."""
        ...

    def predict_vjp(self, theta: np.ndarray) -> tuple[np.ndarray, Callable[[np.ndarray], np.ndarray]]:
        """``theta [B, P]`` -> (predictions ``[B, n]``, ``vjp``) where ``vjp(c [B, n])`` returns
        ``sum_i c[:, i] * d pred[:, i] / d theta`` with shape ``[B, P]``."""
        ...


def huber(r: np.ndarray, delta: float = HUBER_DELTA) -> np.ndarray:
    """Elementwise Huber loss: ``r**2 / 2`` for ``|r| <= delta``, else ``delta * (|r| - delta / 2)``."""
    rc = np.clip(r, -delta, delta)
    return rc * (r - 0.5 * rc)


def logsumexp_terms(terms: list[np.ndarray]) -> tuple[np.ndarray, list[np.ndarray]]:
    """Stable log-sum-exp of K arrays of the same shape ``[B, n]`` (scalars broadcast).

    Returns (``lse [B, n]``, softmax weights: K arrays ``[B, n]``). The weights are the
    derivative of the LSE with respect to each term, used to build gradients.
    """
    m = terms[0]
    for t in terms[1:]:
        m = np.maximum(m, t)
    ex = [np.exp(t - m) for t in terms]
    z = ex[0]
    for e in ex[1:]:
        z = z + e
    inv = 1.0 / z
    return m + np.log(z), [e * inv for e in ex]


@dataclass
class HuberObjective:
    """Normalised Huber objective of a :class:`LogModel` on log losses ``y [n]``.

    ``weights`` is ``[n]`` (shared by every row of theta) or ``[B_w, n]``; in the latter case a
    call passes ``rows`` (indices into the weight rows, one per theta row).
    """

    model: LogModel
    y: np.ndarray
    weights: np.ndarray
    delta: float = HUBER_DELTA

    def __post_init__(self) -> None:
        self.y = np.asarray(self.y, dtype=float)
        w = np.asarray(self.weights, dtype=float)
        self.weights = w
        self._norm = 1.0 / (self.delta * np.maximum(w.sum(axis=-1), 1e-300))  # [] or [B_w]

    def _reduce(self, h: np.ndarray, rows: np.ndarray | None) -> np.ndarray:
        """Weighted, normalised sum over points of ``h [B, n]`` -> ``[B]``."""
        if self.weights.ndim == 1:
            return np.einsum("bn,n->b", h, self.weights) * self._norm  # no BLAS threads
        assert rows is not None, "row indices are needed with per-row weights"
        return np.einsum("bn,bn->b", h, self.weights[rows]) * self._norm[rows]

    def value_and_grad(self, theta: np.ndarray, rows: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """``theta [B, P]`` -> (objective ``[B]``, gradient ``[B, P]``); non-finite -> ``inf``."""
        with np.errstate(over="ignore", invalid="ignore"):
            pred, vjp = self.model.predict_vjp(theta)
            r = pred - self.y
            rc = np.clip(r, -self.delta, self.delta)
            f = self._reduce(rc * (r - 0.5 * rc), rows)
            if self.weights.ndim == 1:
                c = rc * (self.weights * self._norm)
            else:
                c = rc * self.weights[rows] * self._norm[rows, None]
            g = vjp(c)
        bad = ~np.isfinite(f) | ~np.isfinite(g).all(axis=1)
        if bad.any():
            f = np.where(bad, np.inf, f)
            g[bad] = 0.0
        return f, g

    def value(self, theta: np.ndarray, rows: np.ndarray | None = None) -> np.ndarray:
        """``theta [B, P]`` -> objective ``[B]`` (``inf`` where not finite)."""
        with np.errstate(over="ignore", invalid="ignore"):
            f = self._reduce(huber(self.model.predict(theta) - self.y, self.delta), rows)
        return np.where(np.isfinite(f), f, np.inf)


@dataclass
class BatchResult:
    """Outcome of :func:`lbfgs_batched`: ``x [B, P]``, ``f [B]``, iterations ``[B]``."""

    x: np.ndarray
    f: np.ndarray
    n_iter: np.ndarray
    converged: np.ndarray


def lbfgs_batched(
    fun: Callable[[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]],
    x0: np.ndarray,
    *,
    memory: int = 10,
    max_iter: int = 1000,
    ftol: float = 1e-12,
    gtol: float = 1e-9,
    c1: float = 1e-4,
    max_backtracks: int = 50,
    prune_every: int = 0,
    prune_ratio: float = 1.5,
    prune_progress: float = 0.1,
) -> BatchResult:
    """Minimise B independent smooth functions with L-BFGS, all rows stepping together.

    ``fun(x [b, P], rows [b]) -> (f [b], g [b, P])`` evaluates the rows ``rows`` (indices into
    ``x0``). Each row keeps its own curvature pairs (``memory`` of them) and its own step size;
    the line search is a backtracking Armijo search with safeguarded quadratic interpolation.
    Curvature pairs with ``s.y <= eps * y.y`` are skipped (as in L-BFGS-B), so the inverse
    Hessian approximation stays positive definite.

    A row stops when ``max|g| <= gtol``, when its objective decreases by no more than
    ``ftol * max(|f|, 1e-300)`` in one step, or when a line search along the steepest
    descent direction finds no decrease (the minimum is resolved to floating-point precision).
    Rows whose start is not finite are returned unchanged with ``f = inf``.

    Multi-start pruning (``prune_every > 0``): every ``prune_every`` iterations, a running row
    is abandoned when it is *dominated and stalled*: its objective is above ``prune_ratio``
    times the best objective of any row, and it fell by less than a fraction
    ``prune_progress`` since the previous check. Such a row sits on a plateau or in a poor
    local minimum and cannot become the best start; on Epoch's 4500-start Chinchilla grid this
    removes most of the work (starts that drift to the degenerate "floor only" solution) and
    changes no digit of the optimum. Abandoned rows keep their last point and
    ``converged = False``.
    """
    x = np.array(x0, dtype=float, copy=True)
    B, P = x.shape
    f = np.full(B, np.inf)
    g = np.zeros((B, P))
    n_iter = np.zeros(B, dtype=int)
    converged = np.zeros(B, dtype=bool)
    S = np.zeros((B, memory, P))
    Y = np.zeros((B, memory, P))
    rho = np.zeros((B, memory))
    eps = np.finfo(float).eps

    idx = np.arange(B)
    f[idx], g[idx] = fun(x, idx)
    active = idx[np.isfinite(f)]
    gmax = np.abs(g[active]).max(axis=1) if active.size else np.zeros(0)
    converged[active[gmax <= gtol]] = True
    active = active[gmax > gtol]

    f_check = f.copy()
    for it in range(max_iter):
        if active.size == 0:
            break
        if prune_every and it and it % prune_every == 0:
            fa = f[active]
            stalled = (fa > prune_ratio * np.min(f)) & (fa > (1.0 - prune_progress) * f_check[active])
            f_check[active] = fa
            active = active[~stalled]
            if active.size == 0:
                break
        xa, fa, ga = x[active], f[active], g[active]
        Sa, Ya, ra = S[active], Y[active], rho[active]
        # Two-loop recursion, vectorised over rows; empty slots have rho = 0 and do nothing.
        q = ga.copy()
        alph = np.zeros((active.size, memory))
        for j in range(memory - 1, -1, -1):
            alph[:, j] = ra[:, j] * np.einsum("bp,bp->b", Sa[:, j], q)
            q -= alph[:, j, None] * Ya[:, j]
        has_hist = ra[:, -1] > 0
        yy = np.einsum("bp,bp->b", Ya[:, -1], Ya[:, -1])
        gamma = np.where(has_hist, 1.0 / np.where(has_hist, ra[:, -1] * yy, 1.0), 1.0)
        r = gamma[:, None] * q
        for j in range(memory):
            beta = ra[:, j] * np.einsum("bp,bp->b", Ya[:, j], r)
            r += (alph[:, j] - beta)[:, None] * Sa[:, j]
        d = -r
        gd = np.einsum("bp,bp->b", ga, d)
        # Not a descent direction (can happen after a bad pair): restart from steepest descent.
        restart = ~(gd < 0) | ~np.isfinite(gd)
        gnorm = np.linalg.norm(ga, axis=1)
        first = restart | ~has_hist
        d[first] = -ga[first] / np.maximum(gnorm[first], 1e-300)[:, None]
        gd[first] = -gnorm[first]
        rho[active[restart]] = 0.0

        # Backtracking line search, rows leave the loop as soon as they satisfy Armijo.
        t = np.ones(active.size)
        f_new = np.full(active.size, np.inf)
        g_new = np.zeros_like(ga)
        ok = np.zeros(active.size, dtype=bool)
        todo = np.arange(active.size)
        for _bt in range(max_backtracks):
            xt = xa[todo] + t[todo, None] * d[todo]
            ft, gt = fun(xt, active[todo])
            acc = ft <= fa[todo] + c1 * t[todo] * gd[todo]
            acc &= np.isfinite(ft)
            sel = todo[acc]
            f_new[sel], g_new[sel], ok[sel] = ft[acc], gt[acc], True
            rej = todo[~acc]
            if rej.size == 0:
                break
            # Quadratic interpolation of phi(t) = f(x + t d), safeguarded to [0.1 t, 0.5 t].
            fr, tr, gdr = ft[~acc], t[rej], gd[rej]
            denom = 2.0 * (fr - fa[rej] - gdr * tr)
            with np.errstate(divide="ignore", invalid="ignore"):
                tq = -gdr * tr * tr / denom
            tq = np.where(np.isfinite(tq) & (denom > 0), tq, 0.5 * tr)
            t[rej] = np.clip(tq, 0.1 * tr, 0.5 * tr)
            todo = rej

        n_iter[active] += 1
        failed = ~ok
        # A failed search from a quasi-Newton direction gets one more try from steepest descent.
        retry = failed & has_hist & ~restart
        rho[active[retry]] = 0.0
        done = failed & ~retry

        s = t[ok, None] * d[ok]
        yv = g_new[ok] - ga[ok]
        rows_ok = active[ok]
        x[rows_ok] = xa[ok] + s
        decrease = fa[ok] - f_new[ok]
        f[rows_ok], g[rows_ok] = f_new[ok], g_new[ok]
        sy = np.einsum("bp,bp->b", s, yv)
        yy = np.einsum("bp,bp->b", yv, yv)
        upd = sy > eps * yy
        if upd.any():
            ru = rows_ok[upd]
            S[ru] = np.concatenate([S[ru, 1:], s[upd, None]], axis=1)
            Y[ru] = np.concatenate([Y[ru, 1:], yv[upd, None]], axis=1)
            rho[ru] = np.concatenate([rho[ru, 1:], (1.0 / sy[upd])[:, None]], axis=1)

        small_step = decrease <= ftol * np.maximum(np.abs(fa[ok]), 1e-300)
        small_grad = np.abs(g_new[ok]).max(axis=1) <= gtol
        stop_ok = small_step | small_grad
        converged[rows_ok[stop_ok]] = True
        converged[active[done]] = True
        keep = np.ones(active.size, dtype=bool)
        keep[np.flatnonzero(ok)[stop_ok]] = False
        keep[done] = False
        active = active[keep]

    return BatchResult(x=x, f=f, n_iter=n_iter, converged=converged)


def polish(objective: HuberObjective, x0: np.ndarray, row: int | None = None) -> tuple[np.ndarray, float]:
    """Refine one start ``x0 [P]`` with scipy's L-BFGS-B (analytic gradient); returns (x, f)."""
    rows = None if row is None else np.array([row])

    def fg(p: np.ndarray) -> tuple[float, np.ndarray]:
        fv, gv = objective.value_and_grad(p[None, :], rows)
        if not np.isfinite(fv[0]):
            return 1e300, np.zeros_like(p)
        return float(fv[0]), gv[0]

    with single_thread_blas():
        res = minimize(fg, np.asarray(x0, dtype=float), jac=True, method="L-BFGS-B",
                       options={"maxiter": 2000, "ftol": 1e-13, "gtol": 1e-10})
    x = res.x if res.fun <= fg(np.asarray(x0, dtype=float))[0] else np.asarray(x0, dtype=float)
    return x, float(objective.value(x[None, :], rows)[0])


def best_distinct(x: np.ndarray, f: np.ndarray, k: int, tol: float = 1e-3) -> np.ndarray:
    """Indices of the ``k`` lowest-objective rows of ``x [B, P]`` that differ by more than ``tol``."""
    order = np.argsort(f)
    chosen: list[int] = []
    for i in order:
        if not np.isfinite(f[i]):
            break
        if all(np.max(np.abs(x[i] - x[j])) > tol for j in chosen):
            chosen.append(int(i))
            if len(chosen) == k:
                break
    return np.array(chosen, dtype=int)


def multistart_fit(objective: HuberObjective, starts: np.ndarray, n_polish: int = 3,
                   ftol: float = 1e-8, prune_every: int = 10) -> tuple[np.ndarray, float, BatchResult]:
    """Run batched L-BFGS from every row of ``starts [S, P]``, polish the best few with scipy.

    Returns (best parameters ``[P]``, best objective, the batched result of every start).
    """
    res = lbfgs_batched(lambda th, rows: objective.value_and_grad(th), starts, ftol=ftol, prune_every=prune_every)
    best_x, best_f = None, np.inf
    for i in best_distinct(res.x, res.f, n_polish):
        x, fv = polish(objective, res.x[i])
        if fv < best_f:
            best_x, best_f = x, fv
        if res.f[i] < best_f:
            best_x, best_f = res.x[i].copy(), float(res.f[i])
    if best_x is None:
        raise FloatingPointError("no start gave a finite objective")
    return best_x, best_f, res
