"""Expected classification performance from a prediction-score histogram, without labels.

Confidence-based performance estimation: if a binary classifier's scores are calibrated, a
request scored ``s`` is a positive with probability ``s``. A bucket of ``n`` requests whose
scores average ``m`` then holds ``n * m`` expected positives, and the expected confusion
matrix at a decision threshold ``t`` follows from the buckets alone:

- above ``t`` (predicted positive): ``TP = sum n * m``, ``FP = sum n * (1 - m)``;
- at or below ``t`` (predicted negative): ``FN = sum n * m``, ``TN = sum n * (1 - m)``.

**Bucket mean.** A classic Prometheus histogram carries one ``_sum`` for the whole
distribution, not one per bucket, so it cannot say how the expected positives split between
the two sides of the threshold. The mean score of a bucket is taken as its midpoint (the
lowest bucket starts at 0, the overflow bucket ends at 1: scores are probabilities). The
error this makes is at most half a bucket width per request, and much less where the score
density is flat within a bucket; finer buckets around the threshold make it smaller.

**Threshold.** Only a bucket bound splits the requests exactly into predicted positives and
negatives, so the threshold must be one (anything else is rejected, naming the bounds).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from enum import StrEnum

import numpy as np

from evergreen.analysis.histograms import HistogramSet
from evergreen.analysis.series import FloatArray, SeriesKey
from evergreen.errors import AnalysisError

__all__ = [
    "ConfusionEstimate",
    "EstimatedMetric",
    "ThresholdNotABound",
    "expected_confusion",
]


class EstimatedMetric(StrEnum):
    """What an estimated KPI measures, at the decision threshold."""

    PRECISION = "precision"
    RECALL = "recall"
    ACCURACY = "accuracy"
    F1 = "f1"
    #: Share of requests predicted positive (scored above the threshold): exact, from counts.
    POSITIVE_RATE = "positiveRate"
    #: Expected share of requests that are actual positives (the mean score).
    PREVALENCE = "prevalence"


class ThresholdNotABound(AnalysisError):
    """The decision threshold falls inside a bucket: the histogram cannot split at it."""

    def __init__(self, threshold: float, bounds: tuple[float, ...]) -> None:
        shown = ", ".join(f"{b:g}" for b in bounds)
        super().__init__(f"{threshold:g} is not a bucket bound of the score histogram (bounds: {shown})")
        self.threshold = threshold
        self.bounds = bounds


#: A finite bound this close to the threshold is the threshold (``le="0.5"`` parsed back).
_SAME_BOUND = 1e-9


@dataclass(frozen=True)
class ConfusionEstimate:
    """Expected confusion-matrix counts per series (one row per key)."""

    keys: tuple[SeriesKey, ...]
    tp: FloatArray
    fp: FloatArray
    tn: FloatArray
    fn: FloatArray

    @property
    def count(self) -> FloatArray:
        total: FloatArray = self.tp + self.fp + self.tn + self.fn
        return total

    def metric(self, metric: EstimatedMetric) -> FloatArray:
        """The metric per series; NaN where it is undefined (no predicted positives for precision)."""
        tp, fp, tn, fn = self.tp, self.fp, self.tn, self.fn
        with np.errstate(divide="ignore", invalid="ignore"):
            if metric is EstimatedMetric.PRECISION:
                value = tp / (tp + fp)
            elif metric is EstimatedMetric.RECALL:
                value = tp / (tp + fn)
            elif metric is EstimatedMetric.ACCURACY:
                value = (tp + tn) / self.count
            elif metric is EstimatedMetric.F1:
                value = 2 * tp / (2 * tp + fp + fn)
            elif metric is EstimatedMetric.POSITIVE_RATE:
                value = (tp + fp) / self.count
            else:
                value = (tp + fn) / self.count
        result: FloatArray = np.where(np.isfinite(value), value, np.nan)
        return result


def _bucket_means(upper: FloatArray) -> FloatArray:
    """The midpoint of every bucket, scores clipped to [0, 1]."""
    lower = np.concatenate([[0.0], upper[:-1]])
    top = np.minimum(upper, 1.0)
    bottom = np.clip(lower, 0.0, 1.0)
    means: FloatArray = (np.maximum(top, bottom) + bottom) / 2
    return means


def expected_confusion(histograms: HistogramSet, threshold: float) -> ConfusionEstimate:
    """The expected confusion matrix of every series at ``threshold``, scores taken as calibrated.

    Raises :class:`ThresholdNotABound` when ``threshold`` is not one of the finite bucket
    bounds, and :class:`AnalysisError` when a series holds scores outside [0, 1] (they are
    not probabilities) or has unknown bucket counts.
    """
    upper = histograms.upper_bounds
    finite = tuple(float(b) for b in upper[:-1])
    matches = [i for i, bound in enumerate(finite) if abs(bound - threshold) <= _SAME_BOUND]
    if not matches:
        raise ThresholdNotABound(threshold, finite)
    split = matches[0] + 1  # buckets [0, split) lie at or below the threshold
    cumulative = histograms.cumulative
    if np.isnan(cumulative).any():
        unknown = [str(k) for k, row in zip(histograms.keys, cumulative, strict=True) if np.isnan(row).any()]
        raise AnalysisError(f"unknown bucket counts in {', '.join(unknown[:3])}")
    counts = np.diff(cumulative, axis=1, prepend=0.0)
    # A counter reset inside the window can leave a tiny negative difference: not a count.
    counts = np.clip(counts, 0.0, None)
    if len(histograms.keys):
        lower = np.concatenate([[-math.inf], upper[:-1]])
        outside = (lower >= 1.0) | (upper < 0.0)
        if (counts[:, outside] > 0).any():
            raise AnalysisError(
                "scores outside [0, 1] (counts in buckets beyond 1 or below 0): they are not "
                "probabilities, so performance cannot be estimated from them"
            )
    means = _bucket_means(upper)
    positives = counts * means
    negatives = counts - positives
    return ConfusionEstimate(
        keys=histograms.keys,
        tp=positives[:, split:].sum(axis=1),
        fp=negatives[:, split:].sum(axis=1),
        tn=negatives[:, :split].sum(axis=1),
        fn=positives[:, :split].sum(axis=1),
    )
