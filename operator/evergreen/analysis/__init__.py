"""Pure statistics on histograms: no network, no Kubernetes, vectorised over series.

Typical use, one histogram family per call::

    baseline = HistogramSet.from_samples(samples, feature_label="feature",
                                         segment_labels=["segment"]).with_totals()
    current = HistogramSet.from_samples(...).with_totals()
    scores = drift_scores(DriftMethod.PSI, align(baseline, current))
    scores.top(10)
"""

from evergreen.analysis.alignment import AlignedHistograms, align
from evergreen.analysis.drift import DriftMethod, DriftScores, drift_scores
from evergreen.analysis.histograms import HistogramSet
from evergreen.analysis.multiple_testing import benjamini_hochberg, fdr_adjusted
from evergreen.analysis.parsing import Sample, samples_from_vector
from evergreen.analysis.series import SeriesKey
from evergreen.analysis.signatures import (
    AffineFit,
    BreakSignatures,
    Concentration,
    Conversion,
    WindowQuantiles,
    affine_fit,
    bucket_quantiles,
    concentration,
    known_conversion,
    outside_support,
    window_quantiles,
)
from evergreen.analysis.statistics import (
    ChiSquare,
    WindowPair,
    chi_square,
    effective_samples,
    jensen_shannon,
    ks_statistic,
    psi,
    representative_points,
    wasserstein,
)

__all__ = [
    "AffineFit",
    "AlignedHistograms",
    "BreakSignatures",
    "ChiSquare",
    "Concentration",
    "Conversion",
    "DriftMethod",
    "DriftScores",
    "HistogramSet",
    "Sample",
    "SeriesKey",
    "WindowPair",
    "WindowQuantiles",
    "affine_fit",
    "align",
    "benjamini_hochberg",
    "bucket_quantiles",
    "chi_square",
    "concentration",
    "drift_scores",
    "effective_samples",
    "fdr_adjusted",
    "jensen_shannon",
    "known_conversion",
    "ks_statistic",
    "outside_support",
    "psi",
    "representative_points",
    "samples_from_vector",
    "wasserstein",
    "window_quantiles",
]
