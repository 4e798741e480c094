"""Emergent, or an artifact of the metric? (Schaeffer et al. 2023, with a precise "jump").

Input: the answers of a family of models of increasing scale to the same examples (or a table
of metric values by scale). Each metric becomes a curve over scale; each curve is classified
as ``jump``, ``smooth``, ``flat``, ``unclear`` or ``too few scales``; the verdict compares the
discontinuous metric (exact match) with the continuous ones computed from the *same*
predictions.

What "jump" and "smooth" mean here
----------------------------------
A capability is called emergent when larger models could not have been forecast from smaller
ones. We measure exactly that. Orient the curve so that higher is better, put the scales on a
log axis ``u_k = log(scale_k)`` (k = 0..K-1), and for every step ``k -> k+1`` with at least two
smaller scales behind it (k >= 1) extrapolate the least-squares line through the points
``0..k`` to ``u_{k+1}``. The *forecast surprise* of the step is how far the observed value lands
above that forecast, as a share of the curve's observed range:

    s_k = (y_{k+1} - yhat_{k+1 | 0..k}) / (max_j y_j - min_j y_j),      J = max_k s_k.

``J`` near 0 or negative: every scale was where the trend of the smaller ones pointed (a
straight or saturating curve in log scale). ``J = 0.5``: at one step the metric landed half
of its whole range above the forecast. With the threshold :data:`JUMP_THRESHOLD` = 0.25 and a
percentile interval of ``J`` from a bootstrap over examples (paired across scales) at level
``level``:

* ``jump``: the interval's lower end is >= 0.25 (the step is a surprise even at the low end);
* ``smooth``: the upper end is < 0.25 and the curve changes (the bootstrap interval of the
  improvement ``I(y)`` excludes 0);
* ``flat``: the curve does not change (the interval of ``I(y)`` contains 0), or, for metrics
  bounded in [0, 1] (exact match, token accuracy), it moves by less than 0.05 over all scales;
* ``unclear``: the interval straddles 0.25;
* ``too few scales``: fewer than :data:`MIN_SCALES` scales (J needs several forecasts).

Without per-example data (a table of metric values) there is no bootstrap: the point value of
``J`` decides between ``jump`` and ``smooth``, and the result says so.

The verdict
-----------
* ``metric artifact``: exact match jumps, and at least one continuous metric of the same
  predictions is smooth (the jump is produced by thresholding, Schaeffer et al. 2023);
* ``emergent``: exact match jumps, no continuous metric is smooth, and at least one
  continuous metric also jumps within one step of where exact match jumps;
* ``smooth: not emergent``: exact match itself rises smoothly with scale: each scale is where
  the trend of the smaller ones pointed, so there is nothing to explain;
* ``flat: not emergent``: exact match does not change over these scales (a capability may
  still appear beyond them, but none appears here);
* ``inconclusive``: the data cannot tell: too few scales, intervals too wide to decide
  (exact match ``unclear``), or exact match jumps but the continuous metrics are unclear or
  flat; the reason says which.

BIG-bench's breakthroughness and linearity (Srivastava et al. 2022) are reported for every
curve, with bootstrap intervals. When the table carries each model's pre-training ``loss``,
every metric is also analysed against loss (Du et al. 2024: abilities emerge below a loss
threshold), with the scale axis replaced by decreasing loss.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

from lenslab.emergence.metrics import (
    METRICS,
    PROBABILITY_METRICS,
    ExampleMatrix,
    breakthroughness,
    example_bootstrap_counts,
    improvement,
    linearity,
    score_examples,
)
from lenslab.emergence.result import (
    JUMP_THRESHOLD,
    MIN_SCALES,
    EmergenceResult,
    MetricCurve,
)
from lenslab.errors import ConfigError, DataError
from lenslab.table import DataWarning, Table, positive_column, read_csv, size_values

#: Metrics bounded in [0, 1] (a share of examples or tokens). Their curve must move by at least
#: :data:`MIN_BOUNDED_RANGE` in absolute terms to be called anything but flat: the surprise is
#: relative to the curve's own range, and 4 right answers out of 512 are no capability.
BOUNDED_METRICS = ("exact_match", "token_accuracy")
MIN_BOUNDED_RANGE = 0.05
#: Verdict strings.
VERDICTS = ("metric artifact", "emergent", "smooth: not emergent", "flat: not emergent",
            "inconclusive")


def forecast_surprise(u: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Forecast surprise ``J`` and the step where it happens, over the last axis.

    ``u [K]`` log scales (increasing), ``y [..., K]`` oriented so higher is better. Returns
    (``J [...]``, ``step [...]``): ``step = k`` means the jump is from scale k to k+1. A curve
    with zero range has ``J = 0``. See the module docstring for the definition.
    """
    y = np.asarray(y, dtype=float)
    K = u.size
    if K < 3:
        shape = y.shape[:-1]
        return np.zeros(shape), np.zeros(shape, dtype=int)
    rng = np.nanmax(y, axis=-1) - np.nanmin(y, axis=-1)
    surprises = []
    for k in range(1, K - 1):
        uu = u[: k + 1]
        yy = y[..., : k + 1]
        um = uu.mean()
        ym = yy.mean(axis=-1)
        slope = ((uu - um) * (yy - ym[..., None])).sum(axis=-1) / ((uu - um) ** 2).sum()
        pred = ym + slope * (u[k + 1] - um)
        surprises.append(y[..., k + 1] - pred)
    s = np.stack(surprises, axis=-1)  # [..., K-2]
    with np.errstate(invalid="ignore", divide="ignore"):
        rel = np.where(rng[..., None] > 0, s / np.where(rng > 0, rng, 1.0)[..., None], 0.0)
    step = np.argmax(np.nan_to_num(rel, nan=-np.inf), axis=-1) + 1
    return np.max(np.nan_to_num(rel, nan=-np.inf), axis=-1), step


def _classify(curve: MetricCurve, u: np.ndarray, boot: np.ndarray | None, level: float, threshold: float) -> None:
    """Fill ``curve``'s shape, surprise and BIG-bench scores; ``boot [R, K]`` replicate curves."""
    sign = 1.0 if curve.higher_is_better else -1.0
    y = sign * curve.values
    K = y.size
    curve.breakthroughness = float(breakthroughness(y))
    curve.linearity = float(linearity(y))
    J, step = forecast_surprise(u, y)
    curve.surprise, curve.jump_step = float(J), int(step)
    if K < MIN_SCALES or not np.all(np.isfinite(y)):
        curve.shape = "too few scales" if K < MIN_SCALES else "unclear"
        return
    if (curve.bounded or curve.name in BOUNDED_METRICS) and float(np.max(y) - np.min(y)) < MIN_BOUNDED_RANGE:
        curve.shape = "flat"  # moves by less than MIN_BOUNDED_RANGE across all scales
        return
    if boot is None:
        if np.max(y) - np.min(y) == 0:
            curve.shape = "flat"
        else:
            curve.shape = "jump" if J >= threshold else "smooth"
        return
    q = (1 - level) / 2
    yb = sign * boot
    ok = np.all(np.isfinite(yb), axis=1)
    yb = yb[ok]
    Jb, _ = forecast_surprise(u, yb)
    lo, hi = float(np.quantile(Jb, q)), float(np.quantile(Jb, 1 - q))
    curve.surprise_interval = (lo, hi)
    Ib = improvement(yb)
    i_lo, i_hi = float(np.quantile(Ib, q)), float(np.quantile(Ib, 1 - q))
    for name, fn in (("breakthroughness", breakthroughness), ("linearity", linearity)):
        vals = fn(yb)
        vals = vals[np.isfinite(vals)]
        if vals.size:
            curve.intervals[name] = (float(np.quantile(vals, q)), float(np.quantile(vals, 1 - q)))
    curve.intervals["improvement"] = (i_lo, i_hi)
    if i_lo <= 0 <= i_hi:
        curve.shape = "flat"
    elif lo >= threshold:
        curve.shape = "jump"
    elif hi < threshold:
        curve.shape = "smooth"
    else:
        curve.shape = "unclear"


def decide(curves: dict[str, MetricCurve]) -> tuple[str, str]:
    """The verdict and its one-sentence reason from classified curves (see module docstring)."""
    disc = [c for c in curves.values() if not c.continuous]
    cont = [c for c in curves.values() if c.continuous]
    if not disc:
        return "inconclusive", "no discontinuous metric (exact match) to test"
    if not cont:
        return "inconclusive", "no continuous metric of the same predictions to compare with"
    em = disc[0]
    if em.shape == "smooth":
        return "smooth: not emergent", (f"{em.name} rises smoothly with scale: every scale is "
                                        "where the trend of the smaller ones pointed")
    if em.shape == "flat":
        return "flat: not emergent", f"{em.name} does not change over these scales"
    if em.shape != "jump":
        return "inconclusive", f"{em.name} does not jump (its curve is {em.shape})"
    a, b = em.jump_between
    smooth = [c.name for c in cont if c.shape == "smooth"]
    if smooth:
        return "metric artifact", (f"{em.name} jumps between {a:g} and {b:g} while "
                                   f"{', '.join(smooth)} {'is' if len(smooth) == 1 else 'are'} smooth")
    aligned = [c.name for c in cont if c.shape == "jump" and abs(c.jump_step - em.jump_step) <= 1]
    if aligned:
        return "emergent", (f"{em.name} jumps between {a:g} and {b:g} and so "
                            f"{'does' if len(aligned) == 1 else 'do'} {', '.join(aligned)}")
    shapes = ", ".join(f"{c.name} {c.shape}" for c in cont)
    return "inconclusive", (f"{em.name} jumps between {a:g} and {b:g} but the continuous metrics "
                            f"are not decisive ({shapes})")


def _curves(x: np.ndarray, u: np.ndarray, matrices: dict[str, ExampleMatrix], n_boot: int, level: float,
            seed: int, threshold: float) -> dict[str, MetricCurve]:
    n_examples = next(iter(matrices.values())).values.shape[1]
    counts = example_bootstrap_counts(n_examples, n_boot, seed) if n_boot else None
    q = (1 - level) / 2
    out = {}
    for name, m in matrices.items():
        higher, continuous = METRICS[name]
        c = MetricCurve(name, higher, continuous, x, m.mean(), m.present.sum(axis=1))
        boot = None
        if counts is not None:
            boot = m.bootstrap_means(counts)
            c.low, c.high = np.nanquantile(boot, q, axis=0), np.nanquantile(boot, 1 - q, axis=0)
        _classify(c, u, boot, level, threshold)
        out[name] = c
    return out


def analyze(scales: Sequence[float], examples: Sequence[Any], targets: Sequence[str], predictions: Sequence[str],
            logprobs: Sequence[float] | None = None, losses: Sequence[float] | None = None, *,
            tokens: str = "char", n_boot: int = 1000, level: float = 0.95, seed: int = 0,
            threshold: float = JUMP_THRESHOLD, scale_name: str = "scale") -> EmergenceResult:
    """Analyse per-example predictions of a family of models.

    One entry per (model scale, example): ``scales [n]`` (parameters, compute...: positive),
    ``examples [n]`` example ids shared across scales, ``targets [n]`` and ``predictions [n]``
    answer strings, optional ``logprobs [n]`` (log p(target), nats) and ``losses [n]`` (the
    model's pre-training loss, the same for every example of a scale). ``n_boot`` paired
    bootstrap resamples of the examples give the intervals.
    """
    if not 0 < level < 1:
        raise ConfigError(f"level must be between 0 and 1, not {level}")
    if n_boot < 0 or 0 < n_boot < 20:
        raise ConfigError(f"use 0 or at least 20 bootstrap resamples, not {n_boot}")
    s = np.asarray(scales, dtype=float)
    n = s.size
    for name, col in (("example", examples), ("target", targets), ("prediction", predictions)):
        if len(col) != n:
            raise DataError(f"{name} has {len(col)} entries but scale has {n}")
    if n == 0:
        raise DataError("no predictions given")
    if not np.all(np.isfinite(s) & (s > 0)):
        raise DataError("scale must be a positive number in every row")
    uniq = np.unique(s)
    ex_ids = {e: i for i, e in enumerate(dict.fromkeys(examples))}
    si = np.searchsorted(uniq, s)
    ei = np.array([ex_ids[e] for e in examples])
    seen = set()
    for a, b, e in zip(si, ei, examples):
        if (a, b) in seen:
            raise DataError(f"example {e!r} appears twice at scale {uniq[a]:g}; one answer per model and example")
        seen.add((a, b))
    lp = None
    notes: list[str] = []
    if logprobs is not None:
        lp = np.asarray(logprobs, dtype=float)
        if np.any(lp[np.isfinite(lp)] > 1e-9):
            raise DataError("logprob must be a log-probability (<= 0) of the target answer")
        zero, missing = int(np.sum(np.isneginf(lp))), int(np.sum(np.isnan(lp)))
        if zero:  # probability 0 is a legitimate answer: kept where a metric can hold it
            warnings.warn(DataWarning(
                f"{zero} example(s) have logprob = -inf (probability 0): brier counts them (1.0), "
                "the mean log-likelihood leaves them out"), stacklevel=2)
        if missing:
            warnings.warn(DataWarning(
                f"{missing} example(s) have no logprob: log-likelihood and brier leave them out"),
                stacklevel=2)
    scores = score_examples(list(targets), list(predictions), lp, tokens)
    K, E = uniq.size, len(ex_ids)
    matrices = {}
    for name, v in scores.items():
        M = np.full((K, E), np.nan)
        M[si, ei] = v
        matrices[name] = ExampleMatrix(M)
    if lp is not None and not np.any(np.isfinite(lp)):
        for name in PROBABILITY_METRICS:
            matrices.pop(name, None)
        notes.append("the logprob column is empty: no log-likelihood or Brier score")
    u = np.log(uniq)
    curves = _curves(uniq, u, matrices, n_boot, level, seed, threshold)
    verdict, reason = decide(curves)
    res = EmergenceResult(uniq, curves, verdict, reason, level, n_boot, seed, threshold, "predictions",
                          scale_name, notes=notes)
    if K < MIN_SCALES:
        res.notes.append(f"only {K} scales: at least {MIN_SCALES} are needed to tell a jump from a smooth curve")
    if losses is not None:
        _add_loss_axis(res, np.asarray(losses, dtype=float), si, matrices, n_boot, level, seed, threshold)
    return res


def _add_loss_axis(res: EmergenceResult, losses: np.ndarray, si: np.ndarray, matrices: dict[str, ExampleMatrix],
                   n_boot: int, level: float, seed: int, threshold: float) -> None:
    """Du et al. 2024: the same curves against pre-training loss (one loss per scale)."""
    K = res.scales.size
    per_scale = np.full(K, np.nan)
    for k in range(K):
        vals = losses[si == k]
        vals = vals[np.isfinite(vals)]
        if vals.size == 0:
            res.notes.append(f"no loss for scale {res.scales[k]:g}: the analysis against loss is skipped")
            return
        if np.ptp(vals) > 1e-9 * max(1.0, abs(vals[0])):
            raise DataError(f"loss differs between rows of scale {res.scales[k]:g}; give each model's "
                            f"pre-training loss, the same on all of its rows")
        per_scale[k] = vals[0]
    order = np.argsort(-per_scale, kind="stable")  # decreasing loss = improving model
    res.losses = per_scale[order]
    mats = {k: ExampleMatrix(m.values[order]) for k, m in matrices.items()}
    res.loss_curves = _curves(res.losses, -res.losses, mats, n_boot, level, seed, threshold)
    res.loss_verdict = decide(res.loss_curves)


@dataclass(frozen=True)
class MetricKind:
    """How to read a metric column of a table: continuous or not, which way is better, and
    whether it is a share in [0, 1] (accuracies)."""

    continuous: bool
    higher_is_better: bool = True
    bounded: bool = False


def parse_metric(spec: str) -> tuple[str, MetricKind]:
    """``COLUMN:discrete`` or ``COLUMN:continuous``, then optionally ``:higher`` / ``:lower``
    (default higher is better). A discrete metric is taken to be a share in [0, 1]."""
    parts = [p.strip() for p in spec.split(":")]
    if len(parts) not in (2, 3) or not parts[0] or parts[1] not in ("discrete", "continuous") or (
            len(parts) == 3 and parts[2] not in ("higher", "lower")):
        raise ConfigError(f"--metric takes COLUMN:discrete or COLUMN:continuous, optionally "
                          f"followed by :higher or :lower, not {spec!r}")
    continuous = parts[1] == "continuous"
    higher = len(parts) < 3 or parts[2] == "higher"
    return parts[0], MetricKind(continuous, higher, bounded=not continuous)


def _kind_of(name: str, kinds: dict[str, MetricKind] | None) -> MetricKind:
    if kinds and name in kinds:
        return kinds[name]
    higher, continuous = METRICS[name]
    return MetricKind(continuous, higher, name in BOUNDED_METRICS)


def analyze_table(scales: Sequence[float], metrics: dict[str, Sequence[float]], losses: Sequence[float] | None = None,
                  *, threshold: float = JUMP_THRESHOLD, scale_name: str = "scale",
                  kinds: dict[str, MetricKind] | None = None) -> EmergenceResult:
    """Analyse a table of metric values by scale (no per-example data, so no intervals).

    ``metrics`` maps metric names to values ``[K]``, one per scale in ``scales [K]``. Names
    from :data:`lenslab.emergence.metrics.METRICS` are known; any other needs its
    :class:`MetricKind` in ``kinds`` (e.g. a benchmark's accuracy is discrete, its perplexity
    continuous with lower better).
    """
    s = np.asarray(scales, dtype=float)
    if not np.all(np.isfinite(s) & (s > 0)):
        raise DataError(f"{scale_name} must be a positive number in every row")
    if np.unique(s).size != s.size:
        raise DataError(f"each {scale_name} must appear once in a table of metric values; "
                        "select one row per scale (lenslab emergence --where COLUMN=VALUE)")
    unknown = [m for m in metrics if m not in METRICS and not (kinds and m in kinds)]
    if unknown:
        raise DataError(f"unknown metric column(s) {', '.join(unknown)}; known: {', '.join(METRICS)} "
                        "(declare others with --metric COLUMN:discrete|continuous[:higher|lower])")
    order = np.argsort(s)
    x = s[order]
    u = np.log(x)
    curves = {}
    for name, vals in metrics.items():
        v = np.asarray(vals, dtype=float)[order]
        k = _kind_of(name, kinds)
        if k.bounded and np.any((v < 0) | (v > 1)):
            bad = v[(v < 0) | (v > 1)][0]
            raise DataError(f"{name} is a share in [0, 1] (a discrete metric) but has {bad:g}"
                            + ("; a percentage? divide it by 100" if 1 < bad <= 100 else ""))
        c = MetricCurve(name, k.higher_is_better, k.continuous, x, v, bounded=k.bounded)
        _classify(c, u, None, 0.95, threshold)
        curves[name] = c
    verdict, reason = decide(curves)
    res = EmergenceResult(x, curves, verdict, reason, 0.95, 0, 0, threshold, "table", scale_name,
                          notes=["metric values without per-example answers: no bootstrap, "
                                 "shapes are judged on point values"])
    if losses is not None:
        L = np.asarray(losses, dtype=float)[order]
        if np.all(np.isfinite(L)):
            lo = np.argsort(-L, kind="stable")
            res.losses = L[lo]
            res.loss_curves = {}
            for name, c in curves.items():
                lc = MetricCurve(name, c.higher_is_better, c.continuous, res.losses, c.values[lo],
                                 bounded=c.bounded)
                _classify(lc, -res.losses, None, 0.95, threshold)
                res.loss_curves[name] = lc
            res.loss_verdict = decide(res.loss_curves)
    return res


def analyze_csv(source: Any, *, tokens: str = "char", n_boot: int = 1000, level: float = 0.95, seed: int = 0,
                threshold: float = JUMP_THRESHOLD, scale: str = "scale", metrics: Sequence[str] = (),
                where: Sequence[str] = ()) -> EmergenceResult:
    """Analyse a CSV: per-example predictions or a table of metric values by scale.

    Predictions: columns ``scale``, ``example``, ``target``, ``prediction`` (answer strings),
    optional ``logprob`` and ``loss``. Metric table: a scale column (``scale``: numbers, or
    model names carrying a size such as ``pythia-1.4b``) and metric columns, named as in
    :data:`lenslab.emergence.metrics.METRICS` or declared in ``metrics`` as
    ``COLUMN:discrete|continuous[:higher|lower]`` (optional ``loss``). ``where`` keeps the
    rows that meet every ``COLUMN=VALUE``, ``COLUMN!=VALUE`` or ``COLUMN~REGEX``.
    """

    table = source if isinstance(source, Table) else read_csv(source)
    table = table.where(where)
    declared = dict(parse_metric(m) for m in metrics)
    if declared:
        table.require([scale, *declared], "an emergence analysis")
        losses = table.numeric("loss") if table.has("loss") and "loss" not in declared else None
        return analyze_table(size_values(table, scale), {m: table.numeric(m) for m in declared}, losses,
                             threshold=threshold, scale_name=scale, kinds=declared)
    table.require([scale], "an emergence analysis")
    if scale != "scale" and ("prediction" in table.columns or "target" in table.columns):
        raise ConfigError("per-example predictions are read with their scale column named scale; "
                          "--scale is for tables of metric values")
    if "prediction" in table.columns or "target" in table.columns:
        table.require(["scale", "example", "target", "prediction"], "per-example predictions")
        scales = positive_column(table, "scale")
        logprobs = table.numeric("logprob") if table.has("logprob") else None
        losses = table.numeric("loss") if table.has("loss") else None
        return analyze(scales, table.text("example"), table.text("target"), table.text("prediction"),
                       logprobs, losses, tokens=tokens, n_boot=n_boot, level=level, seed=seed,
                       threshold=threshold)
    found = [m for m in METRICS if m in table.columns]
    if not found:
        raise DataError(f"{table.name} has neither per-example columns (example, target, prediction) nor "
                        f"metric columns ({', '.join(METRICS)}; declare others with --metric COLUMN:discrete|continuous); "
                        f"it has: {', '.join(table.columns)}")
    losses = table.numeric("loss") if table.has("loss") else None
    return analyze_table(size_values(table, scale), {m: table.numeric(m) for m in found}, losses,
                         threshold=threshold, scale_name=scale)
