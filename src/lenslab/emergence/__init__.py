"""Emergent ability or metric artifact: metric curves across model scales with a verdict.

    from lenslab.emergence import analyze_csv
    res = analyze_csv("predictions.csv")    # scale, example, target, prediction[, logprob, loss]
    res.verdict    # "metric artifact" | "emergent" | "smooth: not emergent" | "flat: not emergent"
                   # | "inconclusive" (the data cannot tell)

See :mod:`lenslab.emergence.verdict` for the exact definitions of "jump" and "smooth".
"""

from lenslab.emergence.metrics import (
    METRICS,
    breakthroughness,
    edit_distance,
    linearity,
    score_examples,
)
from lenslab.emergence.verdict import (
    JUMP_THRESHOLD,
    MIN_SCALES,
    EmergenceResult,
    MetricCurve,
    MetricKind,
    analyze,
    analyze_csv,
    analyze_table,
    decide,
    forecast_surprise,
    parse_metric,
)

__all__ = [
    "METRICS", "JUMP_THRESHOLD", "MIN_SCALES", "EmergenceResult", "MetricCurve", "analyze", "analyze_csv",
    "analyze_table", "decide", "forecast_surprise", "breakthroughness", "linearity", "edit_distance",
    "score_examples", "MetricKind", "parse_metric",
]
