"""The Chinchilla form ``L = E + A N^-alpha + B D^-beta`` by variable projection.

For fixed exponents the law is linear in ``(E, A, B)``, so the amplitudes have a closed form
(non-negative least squares) and only ``(alpha, beta)`` are searched: a two-dimensional problem
with no amplitude-exponent valleys for the optimiser to wander along (Golub and Pereyra 1973;
proposed for Chinchilla's Approach 3 in Open-Athena's ``scaling-law-analysis``). It uses every
run, so it does not depend on which runs sit near each budget's minimum; the isoFLOP fit
reports its ``a_N = beta / (alpha + beta)`` as a cross-check of the per-budget minima.

Residuals are in loss, not log loss (that is what keeps the amplitudes linear); the exponents
are searched on a grid and then polished with L-BFGS-B inside ``[0.01, 3]``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy.optimize import minimize, nnls

#: Exponent bounds and the starting grid (per exponent).
BOUNDS = (0.01, 3.0)
GRID = np.linspace(0.05, 1.5, 15)


@dataclass
class VarProFit:
    E: float
    A: float
    B: float
    alpha: float
    beta: float
    rmse: float  # root mean squared residual, in loss

    @property
    def a_N(self) -> float:
        """Compute-optimal size exponent of this law: ``N* ~ C^(beta / (alpha + beta))``."""
        return self.beta / (self.alpha + self.beta)

    def to_dict(self) -> dict:
        return {"method": "variable projection of the Chinchilla form (amplitudes by "
                          "non-negative least squares, exponents searched)",
                "E": self.E, "A": self.A, "B": self.B, "alpha": self.alpha, "beta": self.beta,
                "a_N": self.a_N, "rmse": self.rmse}


def _amplitudes(lN: np.ndarray, lD: np.ndarray, L: np.ndarray, alpha: float, beta: float):
    """Best non-negative ``(E, A, B)`` for the exponents, and the residual sum of squares."""
    X = np.stack([np.ones_like(L), np.exp(-alpha * lN), np.exp(-beta * lD)], axis=1)
    scale = np.linalg.norm(X, axis=0)  # columns differ by orders of magnitude
    c, rnorm = nnls(X / scale, L)
    return c / scale, float(rnorm * rnorm)


def fit_varpro(N: np.ndarray, D: np.ndarray, L: np.ndarray) -> VarProFit:
    """Least-squares fit of the Chinchilla form to runs ``(N [n], D [n], L [n])``."""
    lN, lD, L = np.log(np.asarray(N, float)), np.log(np.asarray(D, float)), np.asarray(L, float)

    def rss(t: np.ndarray) -> float:
        return _amplitudes(lN, lD, L, float(t[0]), float(t[1]))[1]

    grid = [(a, b) for a in GRID for b in GRID]
    vals = np.array([rss(np.array(g)) for g in grid])
    best = None
    for i in np.argsort(vals)[:3]:  # polish the three best grid points
        r = minimize(rss, np.array(grid[i]), method="L-BFGS-B", bounds=[BOUNDS, BOUNDS],
                     options={"ftol": 1e-15, "gtol": 1e-12, "maxiter": 500})
        if best is None or r.fun < best.fun:
            best = r
    alpha, beta = (float(v) for v in best.x)
    (E, A, B), r = _amplitudes(lN, lD, L, alpha, beta)
    return VarProFit(float(E), float(A), float(B), alpha, beta, math.sqrt(r / L.size))
