"""Drift scores of every series of a histogram family, in one call.

:func:`drift_scores` applies the configured statistic to all aligned series at once and adds
what a decision needs next to each score: the effective sample size (to ignore thin
segments) and the chi-square homogeneity p-value (to control false discoveries across
features x segments), whatever the statistic.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from enum import StrEnum

import numpy as np

from evergreen.analysis import statistics
from evergreen.analysis.alignment import AlignedHistograms
from evergreen.analysis.series import BoolArray, FloatArray, IntArray, SeriesKey
from evergreen.errors import AnalysisError


class DriftMethod(StrEnum):
    """The statistic a drift score is computed with (``spec.drift.method``)."""

    PSI = "psi"
    JENSENSHANNON = "jensenshannon"
    KS = "ks"
    WASSERSTEIN = "wasserstein"
    CHISQUARE = "chisquare"


@dataclass(frozen=True, eq=False)
class DriftScores:
    """One drift score per series; NaN means no data (never "no drift").

    A score is NaN where either window has no traffic for the series, or where the two
    windows share no finite bucket bound for it (a single bin cannot show a change of shape).
    ``bins`` is how many bins each series was compared over.
    """

    keys: tuple[SeriesKey, ...]
    method: DriftMethod
    score: FloatArray
    p_value: FloatArray
    effective_samples: FloatArray
    baseline_total: FloatArray
    current_total: FloatArray
    bins: IntArray

    def __len__(self) -> int:
        return len(self.keys)

    @property
    def no_data(self) -> BoolArray:
        """Series that could not be scored."""
        return np.isnan(self.score)

    def top(self, count: int) -> list[tuple[SeriesKey, float]]:
        """The ``count`` highest scores (ties in key order); series without data are left out."""
        scored = np.flatnonzero(~self.no_data)
        order = scored[np.argsort(-self.score[scored], kind="stable")][: max(count, 0)]
        return [(self.keys[i], float(self.score[i])) for i in order]


def drift_scores(method: DriftMethod | str, aligned: AlignedHistograms) -> DriftScores:
    """Score every series of ``aligned`` with ``method``, plus sample sizes and p-values.

    The chi-square score is the window-balanced Cramér's V (see
    :class:`~evergreen.analysis.statistics.ChiSquare`); a Wasserstein score is +Inf when the
    baseline has zero spread and the current window differs from it.
    """
    method = _method(method)
    windows = statistics.WindowPair(aligned.baseline, aligned.current)
    if method is DriftMethod.PSI:
        score = windows.psi()
    elif method is DriftMethod.JENSENSHANNON:
        score = windows.jensen_shannon()
    elif method is DriftMethod.KS:
        score = windows.ks()
    elif method is DriftMethod.WASSERSTEIN:
        score = windows.wasserstein(aligned.upper_bounds, aligned.known_bounds)
    else:
        score = windows.balanced_v()

    bins = aligned.bins
    # Only the +Inf bound in common: the windows can be counted but not compared.
    incomparable = bins < 2
    return DriftScores(
        keys=aligned.keys,
        method=method,
        score=np.where(incomparable, math.nan, score),
        p_value=np.where(incomparable, math.nan, windows.chi_square_p_value()),
        effective_samples=statistics.effective_samples(aligned.baseline_total, aligned.current_total),
        baseline_total=aligned.baseline_total,
        current_total=aligned.current_total,
        bins=bins,
    )


def _method(method: DriftMethod | str) -> DriftMethod:
    try:
        return DriftMethod(method)
    except ValueError:
        choices = ", ".join(m.value for m in DriftMethod)
        raise AnalysisError(f"unknown drift method {method!r}; expected one of {choices}") from None
