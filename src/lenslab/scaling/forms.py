"""Fit a results table by the name of a form: ``lenslab fit --form NAME``.

One dispatcher over every way lenslab fits a table: ``power``, ``chinchilla`` and ``broken``
(:mod:`~lenslab.scaling.fit`), ``data-constrained`` (:mod:`~lenslab.scaling.constrained`) and
``isoflop`` (:mod:`~lenslab.scaling.isoflop`); and the reader of a ``fit.json`` of any of them.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from lenslab.errors import ConfigError, DataError
from lenslab.scaling.constrained import fit_data_constrained
from lenslab.scaling.fit import fit_broken, fit_chinchilla, fit_power
from lenslab.scaling.fitted import ScalingFit
from lenslab.scaling.isoflop import WINDOW, IsoFlopFit, fit_isoflop
from lenslab.table import Table, drop_missing, positive_column, read_csv

FORMS = ("power", "chinchilla", "broken", "data-constrained", "isoflop")


def fit_table(source: Any, form: str = "power", *, x: str | Sequence[str] | None = None, y: str = "loss",
              holdout_last: int = 0, bootstrap: int = 0, level: float = 0.95, seed: int = 0,
              tie: bool | None = None, max_breaks: int = 2, base: Any = None,
              where: Sequence[str] = (), window: int = WINDOW) -> ScalingFit:
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
    :class:`~lenslab.scaling.isoflop.IsoFlopFit` (``window``: distinct sizes per budget's
    parabola, around its best run; 0 for the whole profile). ``where`` keeps the rows that meet every
    ``COLUMN=VALUE``, ``COLUMN!=VALUE`` or ``COLUMN~REGEX`` (one setup of a table of several).
    """
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
        res = fit_isoflop(fx[0], fx[1], L[fit_mask], bootstrap=bootstrap, level=level, seed=seed, y_name=y,
                          x_names=(xs[0], xs[1]), window=window)
    elif form == "data-constrained":
        res = fit_data_constrained(fx[0], fx[1], fx[2], L[fit_mask], base=base, tie=tie is not False,
                                   x_names=(xs[0], xs[1], xs[2]), **kw)
    else:
        res = fit_broken(fx[0], L[fit_mask], x_name=xs[0], max_breaks=max_breaks, **kw)
    if holdout_last:
        res.heldout_x = np.stack([c[~fit_mask] for c in cols], axis=1)
        res.heldout_loss = L[~fit_mask]
    res.notes = notes + res.notes
    return res


def fit_from_dict(d: dict) -> ScalingFit | IsoFlopFit:
    """A ``fit.json`` of any form, read back (the result registry's loader for kind ``fit``)."""
    return (IsoFlopFit if d.get("form") == "isoflop" else ScalingFit).from_dict(d)
