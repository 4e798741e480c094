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

Everything returns a :class:`~lenslab.scaling.fitted.ScalingFit`: parameters, percentile-bootstrap
intervals (resampling points with replacement and refitting, warm-started at the full-data
optimum as Epoch did), predictions with intervals for extrapolation, compute-optimal allocation
for the Chinchilla form, and the result protocol (``fit.json``, ``.html``, ``.png``).

This module holds the procedures; the laws are in :mod:`~lenslab.scaling.laws`, the result in
:mod:`~lenslab.scaling.fitted`, and fitting a results table by form name in
:mod:`~lenslab.scaling.forms`. :func:`check_inputs`, :func:`check_level` and
:func:`refits_from` are shared with the data-constrained and isoFLOP fits.

Units: x and L are whatever the table holds (parameters, tokens, FLOP; nats per token). All
logarithms are natural.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

from lenslab.errors import ConfigError, DataError
from lenslab.scaling.fitted import ScalingFit
from lenslab.scaling.laws import (
    BrokenLaw,
    ChinchillaLaw,
    Law,
    PowerLaw,
    broken_starts,
    chinchilla_starts,
    laplace_ic,
    power_starts,
)
from lenslab.scaling.optim import (
    HuberObjective,
    best_distinct,
    lbfgs_batched,
    multistart_fit,
)

#: A broken law must lower BIC by at least this much (2 log Bayes factor >= 6, "strong"
#: evidence in Kass & Raftery 1995) and lower the cross-validated error to be preferred.
BIC_MARGIN = 6.0


def check_inputs(xs: Sequence[np.ndarray], names: Sequence[str], loss: np.ndarray, y_name: str, n_params: int,
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
    # a law of one size variable with P parameters needs P distinct sizes; a law of several
    # needs each to vary: otherwise many laws fit equally well and intervals would lie
    need = n_params if len(cols) == 1 else 2
    for x, name in zip(cols, names):
        distinct = np.unique(x).size
        if distinct < need:
            raise DataError(f"the {form} law cannot be identified from these points: {name} takes "
                            f"{distinct} distinct value{'' if distinct == 1 else 's'} and the fit "
                            f"needs at least {need}; add runs at other sizes")
    return np.stack(cols, axis=1), loss


def bootstrap_refits(law: Law, y: np.ndarray, starts: np.ndarray, n_boot: int, seed: int) -> np.ndarray:
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


def refits_from(law: Law, y: np.ndarray, best: np.ndarray, batch, n_boot: int, seed: int) -> np.ndarray | None:
    if n_boot <= 0:
        return None
    f0 = HuberObjective(law, y, np.ones_like(y)).value(best[None])[0]
    # Warm starts: the optimum, plus other distinct local optima that are nearly as good.
    extra = [batch.x[i] for i in best_distinct(batch.x, batch.f, 3, tol=1e-2)
             if batch.f[i] <= 1.2 * f0 and np.max(np.abs(batch.x[i] - best)) > 1e-2] if batch is not None else []
    return bootstrap_refits(law, y, np.array([best] + extra[:2]), n_boot, seed)


def bootstrap(fit: ScalingFit, n_boot: int, seed: int = 0) -> ScalingFit:
    """Give ``fit`` percentile-bootstrap intervals from ``n_boot`` resamples of its points.

    Each resample is refitted from the fit's optimum (batched L-BFGS; see :func:`bootstrap_refits`);
    ``fit.samples`` is replaced and ``fit`` returned.
    """
    check_level(fit.level, n_boot)
    y = np.log(fit.loss)
    fit.samples = bootstrap_refits(fit.law, y, fit.theta[None, :], n_boot, seed) if n_boot else None
    fit.seed = seed
    return fit


def fit_power(x: Any, loss: Any, *, x_name: str = "x", y_name: str = "loss", bootstrap: int = 0,
              level: float = 0.95, seed: int = 0) -> ScalingFit:
    """Fit ``L(x) = E + A x^-alpha`` (Huber on log loss, L-BFGS from a grid of starts).

    ``x [n]`` sizes (positive), ``loss [n]`` (positive). ``bootstrap`` resamples give
    percentile intervals at ``level``.
    """
    check_level(level, bootstrap)
    X, L = check_inputs([x], [x_name], loss, y_name, 3, "power")
    lx, y = np.log(X).T, np.log(L)
    law = PowerLaw(lx)
    obj = HuberObjective(law, y, np.ones_like(y))
    best, fbest, batch = multistart_fit(obj, power_starts(lx[0], y))
    samples = refits_from(law, y, best, batch, bootstrap, seed)
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
    check_level(level, bootstrap)
    P = 4 if tie else 5
    X, L = check_inputs([N, D], list(x_names), loss, y_name, P, "chinchilla")
    lx, y = np.log(X).T, np.log(L)
    law = ChinchillaLaw(lx, tie=tie)
    obj = HuberObjective(law, y, np.ones_like(y))
    grid = chinchilla_starts(lx[0], lx[1], y, tie) if starts is None else np.asarray(starts, float)
    best, fbest, batch = multistart_fit(obj, grid)
    samples = refits_from(law, y, best, batch, bootstrap, seed)
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
    check_level(level, bootstrap)
    if max_breaks < 0 or (force_breaks is not None and force_breaks < 0):
        raise ConfigError("the number of breaks cannot be negative")
    X, L = check_inputs([x], [x_name], loss, y_name, 3, "broken")
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
    samples = refits_from(law, y, best, batch, bootstrap, seed)
    return ScalingFit("broken", law, best, (x_name,), y_name, X, L, fbest, level, samples,
                      selection=selection, notes=notes, seed=seed)


def check_level(level: float, bootstrap: int) -> None:
    if not 0 < level < 1:
        raise ConfigError(f"the interval level must be between 0 and 1, not {level}")
    if bootstrap < 0:
        raise ConfigError(f"the number of bootstrap resamples cannot be negative ({bootstrap})")
    if 0 < bootstrap < 20:
        raise ConfigError(f"{bootstrap} bootstrap resamples are too few for intervals; use 0 or at least 20")
