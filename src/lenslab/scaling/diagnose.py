"""Where a scaling law bends, and why.

:func:`diagnose` reads a table of runs (a CSV, or a sweep folder's ``results.csv``) and answers
two questions.

1. **Does one power law (with floor) describe loss against size, or does it break?** The
   points are the best loss at each size. The unbroken law ``E + A x^-alpha`` is compared with a
   one-break law of Caballero et al. 2022 (see :func:`lenslab.scaling.fit.select_breaks`): the
   single law is *rejected* when the broken law lowers BIC by at least
   :data:`~lenslab.scaling.fit.BIC_MARGIN` and lowers the cross-validated error. The
   *confidence* is the share of bootstrap resamples of the points in which the broken law
   still wins on BIC by that margin; the break's location gets a bootstrap interval.

2. **Which plausible causes do the runs' own records support?** Runs are split into *large*
   (at or past the break when the single law is rejected; otherwise the largest third of the
   sizes) and *small* (the rest). Each cause is a check with a stated threshold, reported as
   ``supported``, ``not supported``, or ``cannot tell`` (the columns it needs are missing, or
   there is nothing to compare):

   ===================  ============================  ================================================
   check                columns                       supported when
   ===================  ============================  ================================================
   repeated_data        epochs, or D and U            a large run saw its data more than
                        (unique_tokens)               :data:`EPOCHS_LIMIT` times (Muennighoff et al.
                                                      2023)
   tokens_per_param     N, D                          large runs' median D/N is more than
                                                      :data:`TPP_FACTOR` times away from
                                                      :data:`TPP_OPTIMAL` and further away than the
                                                      small runs'
   lr_not_retuned       lr                            every size used the same learning rate (within
                                                      :data:`SAME_REL`)
   warmup_not_retuned   warmup                        every size used the same warmup
   train_val_gap        train_loss, val_loss          the median relative gap (val - train) / val
                                                      of large runs exceeds the small runs' by more
                                                      than :data:`GAP_GROWTH`
   near_floor           (the fit)                     large runs' median reducible share
                                                      (L - E) / L is below :data:`FLOOR_SHARE`
   guard_events         guard_events (or guard_*)     large runs average at least one guard event
                                                      and :data:`GUARD_RATIO` times the small runs'
   ===================  ============================  ================================================

   Supported causes come first, ranked by how far past its threshold each is (the
   ``strength``, 1 at the threshold); then ``cannot tell``; then ``not supported``.
"""

from __future__ import annotations

import math
import warnings
from typing import Any, Sequence

import numpy as np

from lenslab.errors import ConfigError, DataError
from lenslab.scaling.constrained import MUENNIGHOFF_2023, DataConstrainedLaw
from lenslab.scaling.diagnosis import (
    EPOCHS_LIMIT,
    FLOOR_SHARE,
    GAP_GROWTH,
    GUARD_RATIO,
    SAME_REL,
    STATUSES,
    TPP_FACTOR,
    TPP_OPTIMAL,
    Bend,
    Check,
    Diagnosis,
)
from lenslab.scaling.fit import BIC_MARGIN, select_breaks
from lenslab.scaling.fitted import ScalingFit
from lenslab.scaling.laws import PowerLaw
from lenslab.scaling.optim import HuberObjective, lbfgs_batched
from lenslab.table import DataWarning, Table, drop_missing, positive_column, read_csv

# ----------------------------------------------------------------------------------------------
# The bend
# ----------------------------------------------------------------------------------------------


def _bootstrap_delta_bic(lx: np.ndarray, y: np.ndarray, single_theta: np.ndarray, broken_law, broken_theta: np.ndarray,
                         n_boot: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Refit both laws on ``n_boot`` resamples of the points (warm starts).

    Returns (delta BIC single - broken ``[R]``, single-law samples ``[R, 3]``, broken samples
    ``[R, P]``); each refit uses the resample's counts as weights, all rows batched.
    """
    rng = np.random.default_rng(seed)
    n = y.size
    counts = rng.multinomial(n, np.full(n, 1.0 / n), size=n_boot).astype(float)
    out = []
    for law, theta in ((PowerLaw(lx), single_theta), (broken_law, broken_theta)):
        obj = HuberObjective(law, y, counts)
        res = lbfgs_batched(obj.value_and_grad, np.tile(theta, (n_boot, 1)))
        absr = np.abs(law.predict(res.x) - y)  # [R, n]
        b = np.maximum((counts * absr).sum(axis=1) / n, 1e-300)
        bic = 2.0 * n * (1.0 + np.log(2.0 * b)) + law.n_params * math.log(n)
        out.append((bic, res.x))
    return out[0][0] - out[1][0], out[0][1], out[1][1]


def find_bend(x: np.ndarray, loss: np.ndarray, *, x_name: str = "N", y_name: str = "loss", n_boot: int = 200,
              seed: int = 0, level: float = 0.95) -> Bend:
    """Is loss against ``x`` one power law with floor, or does it break? (see module docstring)

    ``x [n]`` distinct positive sizes, ``loss [n]`` their (best) losses.
    """
    x = np.asarray(x, dtype=float)
    loss = np.asarray(loss, dtype=float)
    n = x.size
    if n < 3:
        return Bend("cannot tell", f"only {n} distinct sizes; a power law with floor needs at least 3")
    lx, y = np.log(x)[None, :], np.log(loss)
    if n < 8:
        single = None
        sel = select_breaks(lx, y, 0, seed=seed)
        if sel.fits:  # cross-validation needs a few more points than the law's 3 parameters
            law, theta, f, _ = sel.fits[0]
            single = ScalingFit("power", PowerLaw(lx), theta, (x_name,), y_name, x[:, None], loss, f,
                                level, seed=seed)
        return Bend("cannot tell", f"only {n} distinct sizes; telling a break from noise needs at least 8 "
                                   f"(the one-break law has 6 parameters)", single=single)
    sel = select_breaks(lx, y, 1, seed=seed)
    (_, th0, f0, _), (law1, th1, f1, _) = sel.fits[0], sel.fits[1]
    single = ScalingFit("power", PowerLaw(lx), th0, (x_name,), y_name, x[:, None], loss, f0, level, seed=seed)
    broken = ScalingFit("broken", law1, th1, (x_name,), y_name, x[:, None], loss, f1, level, seed=seed)
    rows = sel.rows
    rejected = sel.chosen == 1
    bend = Bend("single law rejected" if rejected else "single law holds", "", single, broken, rows)
    p = broken.params
    bend.break_x, bend.alpha_before, bend.alpha_after = p["d1"], p["alpha"], p["alpha_after_1"]
    if n_boot:
        dbic, s0, s1 = _bootstrap_delta_bic(lx, y, th0, law1, th1, n_boot, seed)
        single.samples, broken.samples = s0, s1
        bend.confidence = float(np.mean(dbic >= BIC_MARGIN))
        d = law1.params(s1)["d1"]
        q = (1 - level) / 2
        bend.break_interval = (float(np.quantile(d, q)), float(np.quantile(d, 1 - q)))
    r1 = rows[1]
    conf = f"; the break wins in {bend.confidence:.0%} of {n_boot} bootstrap resamples" if n_boot else ""
    where = (f"break at {x_name} = {bend.break_x:.3g}, exponent {bend.alpha_before:.3g} -> {bend.alpha_after:.3g}")
    if rejected:
        bend.reason = (f"a one-break law fits better: BIC lower by {r1['delta_bic']:.1f} (>= {BIC_MARGIN:g}) and "
                       f"cross-validated RMSLE {r1['cv_rmsle']:.3g} < {rows[0]['cv_rmsle']:.3g}; {where}{conf}")
    else:
        why = []
        if r1["delta_bic"] < BIC_MARGIN:
            why.append(f"BIC lower by only {r1['delta_bic']:.1f} (< {BIC_MARGIN:g})")
        if r1["cv_rmsle"] >= rows[0]["cv_rmsle"]:
            why.append(f"cross-validated RMSLE not lower ({r1['cv_rmsle']:.3g} vs {rows[0]['cv_rmsle']:.3g})")
        bend.reason = f"one power law with floor is enough: {'; '.join(why)}; best {where}{conf}"
    return bend


# ----------------------------------------------------------------------------------------------
# The causes
# ----------------------------------------------------------------------------------------------


def _median(v: np.ndarray) -> float:
    v = v[np.isfinite(v)]
    return float(np.median(v)) if v.size else math.nan


def _col(table: Table, name: str) -> np.ndarray | None:
    return table.numeric(name) if table.has(name) else None


def _cannot(name: str, title: str, threshold: str, why: str) -> Check:
    return Check(name, title, "cannot tell", threshold, why)


def check_repeated_data(t: Table, large: np.ndarray, small: np.ndarray) -> Check:
    name, title = "repeated_data", "Repeated data (epochs > 1)"
    thr = f"a large run saw its data more than {EPOCHS_LIMIT:g} times"
    ep = _col(t, "epochs")
    if ep is None:
        U = _col(t, "unique_tokens") if t.has("unique_tokens") else _col(t, "U")
        D = _col(t, "D")
        if U is None or D is None:
            return _cannot(name, title, thr, "no epochs column (nor D with unique_tokens/U)")
        with np.errstate(invalid="ignore", divide="ignore"):
            ep = D / U
    el = ep[large]
    if not np.any(np.isfinite(el)):
        return _cannot(name, title, thr, "no epoch counts for the large runs")
    mx, ms = float(np.nanmax(el)), _median(ep[small])
    values = {"max_epochs_large": mx, "median_epochs_large": _median(el), "median_epochs_small": ms}
    ev = f"large runs: up to {mx:.3g} epochs (median {_median(el):.3g}); small runs: median {ms:.3g}"
    if mx > 1:
        # how much the repeats are worth by the data-constrained law, with the C4 constant
        rd = MUENNIGHOFF_2023["R_D_star"]
        eff = float(DataConstrainedLaw.effective_data(np.log([[rd, 1.0]]), np.array([mx - 1.0]))[0, 0])
        values["effective_data_share_at_max"] = eff / mx
        ev += (f"; at {mx:.3g} epochs the data is worth {eff / mx:.0%} of as many fresh tokens "
               f"(D'/D by Muennighoff et al.'s decay, R_D* = {rd:g} on C4)")
    if mx > EPOCHS_LIMIT and math.isfinite(ms) and ms > EPOCHS_LIMIT and ms >= mx / 2:
        # the small runs repeated their data about as often: repetition alone cannot explain
        # why the large ones fall off the law (Muennighoff et al.: the loss of value grows with
        # repetition, so it needs the large runs to repeat *more*)
        return Check(name, title, "cannot tell", thr, ev + "; the small runs repeated their data "
                     "about as often, so repetition does not separate them", 0.0, values)
    if mx > EPOCHS_LIMIT:
        return Check(name, title, "supported", thr, ev, mx / EPOCHS_LIMIT, values)
    return Check(name, title, "not supported", thr, ev, 0.0, values)


def check_tokens_per_param(t: Table, large: np.ndarray, small: np.ndarray) -> Check:
    name, title = "tokens_per_param", "Tokens per parameter far from compute-optimal"
    thr = (f"large runs' median D/N more than {TPP_FACTOR:g}x away from {TPP_OPTIMAL:g} and further "
           f"than the small runs'")
    N, D = _col(t, "N"), _col(t, "D")
    if N is None or D is None:
        return _cannot(name, title, thr, "needs both N and D columns")
    with np.errstate(invalid="ignore", divide="ignore"):
        tpp = D / N
    tl, ts = _median(tpp[large]), _median(tpp[small])
    if not math.isfinite(tl) or tl <= 0:
        return _cannot(name, title, thr, "no tokens-per-parameter values for the large runs")
    off_l = abs(math.log(tl / TPP_OPTIMAL))
    off_s = abs(math.log(ts / TPP_OPTIMAL)) if math.isfinite(ts) and ts > 0 else math.nan
    values = {"median_tpp_large": tl, "median_tpp_small": ts, "optimal": TPP_OPTIMAL}
    side = "under-trained" if tl < TPP_OPTIMAL else "over-trained"
    ev = f"large runs: median {tl:.3g} tokens/parameter ({side}); small runs: {ts:.3g}; optimal ~{TPP_OPTIMAL:g}"
    far = off_l > math.log(TPP_FACTOR)
    further = not math.isfinite(off_s) or off_l > off_s
    if far and further:
        return Check(name, title, "supported", thr, ev, math.exp(off_l) / TPP_FACTOR, values)
    return Check(name, title, "not supported", thr, ev, 0.0, values)


def _same_across_sizes(t: Table, col: str, sizes: np.ndarray) -> tuple[bool | None, dict[float, float]]:
    v = _col(t, col)
    if v is None:
        return None, {}
    per = {}
    for s in np.unique(sizes):
        vals = v[(sizes == s) & np.isfinite(v)]
        if vals.size:
            per[float(s)] = float(np.median(vals))
    if len(per) < 2:
        return None, per
    arr = np.array(list(per.values()))
    ref = np.max(np.abs(arr))
    same = bool(np.ptp(arr) <= SAME_REL * ref) if ref > 0 else True
    return same, per


def check_lr(t: Table, sizes: np.ndarray, x_name: str) -> Check:
    name, title = "lr_not_retuned", "Learning rate not retuned across sizes"
    thr = f"the same learning rate (within {SAME_REL:.0%}) at every size"
    same, per = _same_across_sizes(t, "lr", sizes)
    if same is None:
        return _cannot(name, title, thr, "no lr column" if not t.has("lr") else "learning rates for fewer than 2 sizes")
    ev = ", ".join(f"{x_name}={k:.3g}: {v:.3g}" for k, v in list(per.items())[:8])
    if same:
        return Check(name, title, "supported", thr, f"lr {next(iter(per.values())):.3g} at all {len(per)} sizes",
                     1.0, {"lr_by_size": per})
    return Check(name, title, "not supported", thr, f"lr varies with size ({ev})", 0.0, {"lr_by_size": per})


def check_warmup(t: Table, sizes: np.ndarray, x_name: str) -> Check:
    name, title = "warmup_not_retuned", "Warmup not retuned across sizes"
    thr = "the same warmup at every size"
    same, per = _same_across_sizes(t, "warmup", sizes)
    if same is None:
        return _cannot(name, title, thr, "no warmup column" if not t.has("warmup") else "warmup for fewer than 2 sizes")
    if same:
        return Check(name, title, "supported", thr, f"warmup {next(iter(per.values())):.3g} at all {len(per)} sizes",
                     1.0, {"warmup_by_size": per})
    ev = ", ".join(f"{x_name}={k:.3g}: {v:.3g}" for k, v in list(per.items())[:8])
    return Check(name, title, "not supported", thr, f"warmup varies with size ({ev})", 0.0, {"warmup_by_size": per})


def check_gap(t: Table, large: np.ndarray, small: np.ndarray) -> Check:
    name, title = "train_val_gap", "Growing train-validation gap"
    thr = f"relative gap (val - train) / val of large runs exceeds small runs' by more than {GAP_GROWTH:g}"
    tr = _col(t, "train_loss")
    va = _col(t, "val_loss")
    if tr is None or va is None:
        return _cannot(name, title, thr, "needs train_loss and val_loss columns")
    with np.errstate(invalid="ignore", divide="ignore"):
        gap = (va - tr) / va
    gl, gs = _median(gap[large]), _median(gap[small])
    if not (math.isfinite(gl) and math.isfinite(gs)):
        return _cannot(name, title, thr, "train and validation losses missing for large or small runs")
    values = {"median_gap_large": gl, "median_gap_small": gs}
    ev = f"relative gap: large runs {gl:.3%}, small runs {gs:.3%}"
    growth = gl - gs
    if growth > GAP_GROWTH:
        return Check(name, title, "supported", thr, ev, growth / GAP_GROWTH, values)
    return Check(name, title, "not supported", thr, ev, 0.0, values)


def check_floor(loss: np.ndarray, large: np.ndarray, fit: ScalingFit | None) -> Check:
    name, title = "near_floor", "Loss near the fitted floor"
    thr = f"large runs' median (L - E) / L below {FLOOR_SHARE:g}"
    if fit is None:
        return _cannot(name, title, thr, "no law could be fitted")
    E = fit.params["E"]
    share = _median((loss[large] - E) / loss[large])
    if not math.isfinite(share):
        return _cannot(name, title, thr, "no losses for the large runs")
    values = {"E": E, "median_reducible_share_large": share}
    ev = f"fitted floor E = {E:.4g}; reducible share of large runs' loss {share:.1%}"
    if share < 0:  # measured losses below the fitted floor: the floor is not credible
        return Check(name, title, "cannot tell", thr, ev + " (losses below the fitted floor: the "
                     "floor is poorly determined)", 0.0, values)
    if share < FLOOR_SHARE:
        return Check(name, title, "supported", thr, ev, FLOOR_SHARE / max(share, 1e-6), values)
    return Check(name, title, "not supported", thr, ev, 0.0, values)


def check_guard(t: Table, large: np.ndarray, small: np.ndarray) -> Check:
    name, title = "guard_events", "Guard events concentrated in large runs"
    thr = f"large runs average >= 1 event and >= {GUARD_RATIO:g}x the small runs' rate"
    if t.has("guard_events"):
        ev_ = t.numeric("guard_events")
    else:
        cols = [c for c in t.columns if c.startswith("guard_")]
        if not cols:
            return _cannot(name, title, thr, "no guard_events column")
        ev_ = np.nansum(np.stack([t.numeric(c) for c in cols]), axis=0)
    rl, rs = float(np.nanmean(ev_[large])), float(np.nanmean(ev_[small])) if small.any() else math.nan
    values = {"mean_events_large": rl, "mean_events_small": rs}
    ev = f"guard events per run: large {rl:.3g}, small {rs:.3g}"
    if not math.isfinite(rs):
        return _cannot(name, title, thr, "no small runs to compare with")
    if rl >= 1.0 and rl >= GUARD_RATIO * rs:
        strength = rl / (GUARD_RATIO * rs) if rs > 0 else rl * GUARD_RATIO
        return Check(name, title, "supported", thr, ev, max(strength, 1.0), values)
    return Check(name, title, "not supported", thr, ev, 0.0, values)


def rank(checks: list[Check]) -> list[Check]:
    """Supported (strongest first), then cannot tell, then not supported."""
    order = {s: i for i, s in enumerate(STATUSES)}
    return sorted(checks, key=lambda c: (order[c.status], -c.strength))


# ----------------------------------------------------------------------------------------------
# Entry point
# ----------------------------------------------------------------------------------------------


def diagnose(source: Any, *, x: str | None = None, y: str | None = None, n_boot: int = 200, seed: int = 0,
             level: float = 0.95, where: Sequence[str] = ()) -> Diagnosis:
    """Diagnose a table of runs: a CSV path, a sweep folder with ``results.csv``, or a :class:`Table`.

    ``x`` is the size column (default ``N``), ``y`` the loss (default ``loss``, else
    ``val_loss``). Rows with a missing loss are dropped with a warning that names them;
    ``where`` keeps the rows that meet every condition (see :meth:`Table.where`).
    """
    if n_boot < 0 or 0 < n_boot < 20:
        raise ConfigError(f"use 0 or at least 20 bootstrap resamples, not {n_boot}")
    table = source if isinstance(source, Table) else read_csv(source)
    table = table.where(where)
    x = x or "N"
    if y is None:
        y = "loss" if table.has("loss") or not table.has("val_loss") else "val_loss"
    table.require([x, y], "a diagnosis")
    table = drop_missing(table, y, context=[x])
    if table.n_rows == 0:
        raise DataError(f"{table.name} has no rows with a {y}")
    sizes = positive_column(table, x)
    loss = table.numeric(y)
    if np.any(loss <= 0):
        raise DataError(f"{table.name}: {y} must be positive")
    notes: list[str] = []
    ux = np.unique(sizes)
    best = np.array([loss[sizes == s].min() for s in ux])
    if ux.size < sizes.size:
        notes.append(f"{sizes.size} runs at {ux.size} sizes: the law is fitted to the best {y} at each size")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DataWarning)
        bend = find_bend(ux, best, x_name=x, y_name=y, n_boot=n_boot, seed=seed, level=level)

    # Large runs: past the break when a break is supported, else the largest third of the sizes.
    if bend.rejected and bend.break_x is not None:
        large = sizes >= bend.break_x
        rule = f"{x} >= {bend.break_x:.3g} (at or past the break)"
    else:
        k = max(1, int(math.ceil(ux.size / 3)))
        cut = ux[-k] if ux.size > 1 else np.inf
        large = sizes >= cut
        rule = f"{x} >= {cut:.3g} (the largest third of the sizes)" if ux.size > 1 else "only one size"
    small = ~large
    if not large.any() or not small.any():
        checks = [_cannot(n, t, "", "all runs have the same size: nothing to compare") for n, t in (
            ("repeated_data", "Repeated data (epochs > 1)"),
            ("tokens_per_param", "Tokens per parameter far from compute-optimal"),
            ("lr_not_retuned", "Learning rate not retuned across sizes"),
            ("warmup_not_retuned", "Warmup not retuned across sizes"),
            ("train_val_gap", "Growing train-validation gap"),
            ("near_floor", "Loss near the fitted floor"),
            ("guard_events", "Guard events concentrated in large runs"))]
    else:
        fit = bend.broken if bend.rejected else bend.single
        checks = [
            check_repeated_data(table, large, small),
            check_tokens_per_param(table, large, small),
            check_lr(table, sizes, x),
            check_warmup(table, sizes, x),
            check_gap(table, large, small),
            check_floor(loss, large, fit),
            check_guard(table, large, small),
        ]
        if (bend.rejected and bend.alpha_before is not None and bend.alpha_after is not None
                and bend.alpha_after > bend.alpha_before):
            # Every cause on the list makes the loss fall *less* than the law predicts; a law that
            # steepens (the loss falls faster past the break) is explained by none of them.
            note = (f"; but the law steepens past the break (exponent {bend.alpha_before:.3g} -> "
                    f"{bend.alpha_after:.3g}) and this cause can only make it flatten")
            for c in checks:
                if c.status == "supported":
                    c.status, c.evidence, c.strength = "cannot tell", c.evidence + note, 0.0
            notes.append("the law steepens past the break: the listed causes all explain a "
                         "flattening, so none can be supported")
    return Diagnosis(table.path, x, y, table.n_rows, bend, rank(checks), rule, notes)
