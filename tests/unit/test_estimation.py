"""The estimator: expected performance from a score histogram matches the labels when scores are
calibrated, and misses them when they are not."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pytest

from evergreen.analysis.estimation import (
    ConfusionEstimate,
    EstimatedMetric,
    ThresholdNotABound,
    expected_confusion,
)
from evergreen.analysis.histograms import HistogramSet
from evergreen.errors import AnalysisError

#: Twenty buckets over [0, 1], as a team exporting probabilities would declare them.
BOUNDS = tuple(round(0.05 * i, 2) for i in range(1, 21))
#: Largest |estimate - truth| accepted on calibrated data: the midpoint rule's bias plus the
#: sampling noise of 200,000 labelled requests (measured: at most 0.0031 over these cases).
TOLERANCE = 0.01


@dataclass(frozen=True)
class Labelled:
    """Scores of ``n`` requests, and their labels drawn with P(positive | s) = link(s)."""

    scores: np.ndarray
    labels: np.ndarray

    def histogram(self, segment: str | None = None) -> list[tuple[dict[str, str], float]]:
        cumulative = [float(np.sum(self.scores <= b)) for b in BOUNDS] + [float(self.scores.size)]
        extra = {"segment": segment} if segment else {}
        les = [repr(b) for b in BOUNDS] + ["+Inf"]
        return [({**extra, "le": le}, count) for le, count in zip(les, cumulative, strict=True)]

    def truth(self, metric: EstimatedMetric, threshold: float) -> float:
        predicted = self.scores > threshold
        actual = self.labels
        tp = float(np.sum(predicted & actual))
        fp = float(np.sum(predicted & ~actual))
        fn = float(np.sum(~predicted & actual))
        tn = float(np.sum(~predicted & ~actual))
        return {
            EstimatedMetric.PRECISION: tp / (tp + fp),
            EstimatedMetric.RECALL: tp / (tp + fn),
            EstimatedMetric.ACCURACY: (tp + tn) / actual.size,
            EstimatedMetric.F1: 2 * tp / (2 * tp + fp + fn),
            EstimatedMetric.POSITIVE_RATE: (tp + fp) / actual.size,
            EstimatedMetric.PREVALENCE: (tp + fn) / actual.size,
        }[metric]


def generate(a: float, b: float, *, n: int = 200_000, power: float = 1.0, seed: int = 7) -> Labelled:
    """Beta(a, b) scores; ``power`` 1 is calibrated, above 1 an overconfident model."""
    rng = np.random.default_rng(seed)
    scores = rng.beta(a, b, n)
    labels = rng.random(n) < scores**power
    return Labelled(scores, labels)


def estimate(
    histogram: list[tuple[dict[str, str], float]], threshold: float, segments: bool = False
) -> ConfusionEstimate:
    histograms = HistogramSet.from_samples(
        histogram, feature_label=None, segment_labels=["segment"] if segments else []
    )
    return expected_confusion(histograms, threshold)


@pytest.mark.parametrize("metric", list(EstimatedMetric))
@pytest.mark.parametrize(("a", "b", "threshold"), [(0.6, 2.0, 0.5), (2.0, 2.0, 0.3), (0.8, 0.8, 0.7)])
def test_calibrated_scores_estimate_what_the_labels_measure(
    metric: EstimatedMetric, a: float, b: float, threshold: float
) -> None:
    data = generate(a, b)
    value = float(estimate(data.histogram(), threshold).metric(metric)[0])
    assert value == pytest.approx(data.truth(metric, threshold), abs=TOLERANCE)


def test_an_overconfident_model_is_estimated_far_from_its_labels() -> None:
    # P(positive | s) = s^2: every score claims more than it delivers.
    data = generate(0.6, 2.0, power=2.0)
    value = float(estimate(data.histogram(), 0.5).metric(EstimatedMetric.PRECISION)[0])
    truth = data.truth(EstimatedMetric.PRECISION, 0.5)
    assert value - truth > 0.1


def test_segments_are_estimated_separately() -> None:
    low, high = generate(0.6, 4.0, seed=1), generate(3.0, 1.5, seed=2)
    confusion = estimate(low.histogram("web") + high.histogram("ios"), 0.5, segments=True)
    by_segment = {
        dict(key.segment)["segment"]: value
        for key, value in zip(confusion.keys, confusion.metric(EstimatedMetric.RECALL), strict=True)
    }
    assert by_segment["web"] == pytest.approx(low.truth(EstimatedMetric.RECALL, 0.5), abs=TOLERANCE)
    assert by_segment["ios"] == pytest.approx(high.truth(EstimatedMetric.RECALL, 0.5), abs=TOLERANCE)


def test_a_threshold_inside_a_bucket_is_rejected_naming_the_bounds() -> None:
    with pytest.raises(ThresholdNotABound) as error:
        estimate(generate(1, 1, n=1000).histogram(), 0.52)
    assert "0.52 is not a bucket bound" in str(error.value)
    assert "0.5, 0.55" in str(error.value)


def test_scores_above_one_are_not_probabilities() -> None:
    histogram = [({"le": "0.5"}, 10.0), ({"le": "1"}, 20.0), ({"le": "2"}, 25.0), ({"le": "+Inf"}, 25.0)]
    with pytest.raises(AnalysisError, match="not probabilities"):
        estimate(histogram, 0.5)


def test_an_empty_side_of_the_threshold_leaves_its_metric_undefined() -> None:
    histogram = [({"le": "0.5"}, 100.0), ({"le": "1"}, 100.0), ({"le": "+Inf"}, 100.0)]
    confusion = estimate(histogram, 0.5)
    assert math.isnan(float(confusion.metric(EstimatedMetric.PRECISION)[0]))  # nothing predicted positive
    # Every score in (0, 0.5] is taken as 0.25: a quarter are expected positives, all missed.
    assert float(confusion.metric(EstimatedMetric.PREVALENCE)[0]) == pytest.approx(0.25)
    assert float(confusion.metric(EstimatedMetric.RECALL)[0]) == 0.0


def test_the_overflow_bucket_of_a_histogram_ending_below_one_reaches_one() -> None:
    histogram = [({"le": "0.5"}, 0.0), ({"le": "0.8"}, 0.0), ({"le": "+Inf"}, 10.0)]
    confusion = estimate(histogram, 0.5)
    assert float(confusion.tp[0]) == pytest.approx(9.0)  # scores in (0.8, 1] taken as 0.9
