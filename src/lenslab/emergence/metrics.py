"""Per-example metrics of answer strings, and curves of a metric across model scales.

Every metric here scores one example (a target answer string, a predicted answer string and,
when given, the model's log-probability of the target); a *curve* is the mean over examples at
each model scale. The metrics, and which way is better:

==================  ==============================================  ========  ==============
name                per example                                     better    kind
==================  ==============================================  ========  ==============
exact_match         1 if prediction == target else 0                higher    discontinuous
token_accuracy      share of target tokens reproduced at their      higher    continuous
                    position (missing positions count as wrong)
edit_distance       Levenshtein distance in tokens                  lower     continuous
log_likelihood      log p(target) (nats), from the ``logprob``      higher    continuous
                    column
brier               (1 - p(target))^2, p = exp(logprob): the        lower     continuous
                    Brier score of the event "the answer is right"
==================  ==============================================  ========  ==============

Tokens are characters by default (answers such as ``"1234"`` are scored digit by digit); pass
``tokens="whitespace"`` to split on whitespace instead. Comparisons strip surrounding
whitespace and nothing else (case matters).

Curves get percentile intervals from a paired bootstrap over examples: the same resampled
examples are used at every scale, since every model answered the same questions.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

#: name -> (higher is better, continuous). Exact match is the thresholded metric whose jumps
#: Schaeffer et al. 2023 attribute to the metric; the others change by small amounts when a
#: single token changes.
METRICS: dict[str, tuple[bool, bool]] = {
    "exact_match": (True, False),
    "token_accuracy": (True, True),
    "edit_distance": (False, True),
    "log_likelihood": (True, True),
    "brier": (False, True),
}

#: Metrics that need the ``logprob`` column.
PROBABILITY_METRICS = ("log_likelihood", "brier")


def tokenize(text: str, tokens: str = "char") -> list[str]:
    """Split an answer into tokens: characters (``"char"``) or whitespace-separated words."""
    text = text.strip()
    if tokens == "char":
        return list(text)
    if tokens == "whitespace":
        return text.split()
    raise ValueError(f"tokens must be 'char' or 'whitespace', not {tokens!r}")


def exact_match(target: str, prediction: str) -> float:
    return float(target.strip() == prediction.strip())


def token_accuracy(target: Sequence[str], prediction: Sequence[str]) -> float:
    """Share of target positions where the prediction has the same token (empty target: EM)."""
    if len(target) == 0:
        return float(len(prediction) == 0)
    hits = sum(1 for i, t in enumerate(target) if i < len(prediction) and prediction[i] == t)
    return hits / len(target)


def edit_distance(a: Sequence[str], b: Sequence[str]) -> int:
    """Levenshtein distance between two token sequences (insert, delete, substitute: cost 1)."""
    if len(a) < len(b):
        a, b = b, a
    prev = list(range(len(b) + 1))
    for i, x in enumerate(a, 1):
        cur = [i]
        for j, y in enumerate(b, 1):
            cur.append(min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (x != y)))
        prev = cur
    return prev[-1]


def score_examples(targets: Sequence[str], predictions: Sequence[str], logprobs: Sequence[float] | None = None,
                   tokens: str = "char") -> dict[str, np.ndarray]:
    """Score every example: metric name -> values ``[n_examples]``.

    ``logprobs`` (natural log of p(target), <= 0) adds ``log_likelihood`` and ``brier``;
    entries that are NaN give NaN scores for those two metrics.
    """
    n = len(targets)
    em = np.empty(n)
    acc = np.empty(n)
    ed = np.empty(n)
    for i, (t, p) in enumerate(zip(targets, predictions)):
        tt, pt = tokenize(t, tokens), tokenize(p, tokens)
        em[i] = exact_match(t, p)
        acc[i] = token_accuracy(tt, pt)
        ed[i] = edit_distance(tt, pt)
    out = {"exact_match": em, "token_accuracy": acc, "edit_distance": ed}
    if logprobs is not None:
        lp = np.asarray(logprobs, dtype=float)
        out["log_likelihood"] = lp
        out["brier"] = (1.0 - np.exp(lp)) ** 2
    return out


@dataclass
class ExampleMatrix:
    """Per-example values of one metric: ``values [n_scales, n_examples]``, NaN where missing."""

    values: np.ndarray

    @property
    def present(self) -> np.ndarray:
        return np.isfinite(self.values)

    def mean(self) -> np.ndarray:
        """Mean over available examples at each scale ``[n_scales]``."""
        v = np.where(self.present, self.values, 0.0)
        cnt = self.present.sum(axis=1)
        with np.errstate(invalid="ignore", divide="ignore"):
            return v.sum(axis=1) / cnt

    def bootstrap_means(self, counts: np.ndarray) -> np.ndarray:
        """Means under example weights ``counts [R, n_examples]`` -> ``[R, n_scales]``."""
        v = np.where(self.present, self.values, 0.0)
        num = counts @ v.T
        den = counts @ self.present.T.astype(float)
        with np.errstate(invalid="ignore", divide="ignore"):
            return num / den


def example_bootstrap_counts(n_examples: int, n_boot: int, seed: int) -> np.ndarray:
    """Multinomial resampling counts of examples: ``[n_boot, n_examples]``."""
    rng = np.random.default_rng(seed)
    return rng.multinomial(n_examples, np.full(n_examples, 1.0 / n_examples), size=n_boot).astype(float)


def improvement(y: np.ndarray) -> np.ndarray:
    """BIG-bench's improvement ``I(y) = sign(argmax y - argmin y) * (max y - min y)`` over the last axis.

    ``y [..., K]`` ordered by scale, oriented so that higher is better.
    """
    sign = np.where(np.argmax(y, axis=-1) - np.argmin(y, axis=-1) >= 0, 1.0, -1.0)
    return sign * (np.max(y, axis=-1) - np.min(y, axis=-1))


def breakthroughness(y: np.ndarray) -> np.ndarray:
    """BIG-bench breakthroughness ``B = I(y) / sqrt(median_i (y_{i+1} - y_i)^2)`` (Srivastava et al. 2022).

    Large when the improvement happens in a few steps between adjacent scales and the typical
    step is small. ``y [..., K]`` ordered by scale, higher is better; a curve whose median step
    is zero gets ``inf`` (``nan`` if it does not change at all).
    """
    d = np.diff(y, axis=-1)
    denom = np.sqrt(np.median(d * d, axis=-1))
    with np.errstate(invalid="ignore", divide="ignore"):
        return improvement(y) / denom


def linearity(y: np.ndarray) -> np.ndarray:
    """BIG-bench-style linearity ``L = I(y) / sqrt(mean_i (y_{i+1} - y_i)^2)``.

    The root *mean* square step in place of breakthroughness's root *median* square: steady
    steps give ``L = B = K - 1``; one step carrying all the change gives ``L = sqrt(K - 1)``.
    ``y [..., K]`` ordered by scale, higher is better.
    """
    d = np.diff(y, axis=-1)
    denom = np.sqrt(np.mean(d * d, axis=-1))
    with np.errstate(invalid="ignore", divide="ignore"):
        return improvement(y) / denom

