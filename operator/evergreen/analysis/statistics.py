"""Two-sample statistics over binned distributions, one row per series.

Every statistic takes ``baseline`` and ``current`` per-bin counts of shape ``(N, B)`` (row =
series, column = bin; fractional counts are fine) and returns one value per row. A row where
either window has no mass (total 0 or NaN) gets NaN: no traffic is "no data", never "no
drift". Nothing loops over rows or bins in Python.

The module-level functions each build a :class:`WindowPair`; build one yourself to compute
several statistics of the same windows without repeating the shared work.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import cached_property

import numpy as np
from scipy import special

from evergreen.analysis.series import BoolArray, FloatArray, IntArray
from evergreen.errors import AnalysisError

#: Added to every non-empty bin's proportion before PSI's logarithm (then renormalised).
#: 1e-4 (0.01 %) is the floor customary in PSI practice: a bin that is empty in one window
#: and holds a share ``q`` in the other contributes about ``q * ln(q / 1e-4)``, which stays
#: finite and still grows with ``q``, while a bin with a real share of 1 % or more is barely
#: moved. A smaller constant would let one new rare value dominate the score.
PSI_EPSILON = 1e-4


@dataclass(frozen=True, eq=False)
class ChiSquare:
    """Chi-square test of homogeneity of the two windows, per row.

    ``cramers_v`` is ``sqrt(statistic / n)`` on the actual counts; it depends on the ratio of
    the window sizes (a 7-day baseline against a 1-hour window shrinks it towards 0).
    ``balanced_v`` is Cramér's V of the same table with both rows rescaled to equal totals:
    free of sample size and of the window ratio, within [0, 1], and the drift score.
    """

    statistic: FloatArray
    dof: IntArray
    p_value: FloatArray
    cramers_v: FloatArray
    balanced_v: FloatArray


@dataclass(frozen=True, eq=False)
class WindowPair:
    """Per-bin counts of two windows, with the intermediate results statistics share."""

    baseline: FloatArray
    current: FloatArray

    def __post_init__(self) -> None:
        b = np.asarray(self.baseline, dtype=np.float64)
        c = np.asarray(self.current, dtype=np.float64)
        if b.ndim != 2 or b.shape != c.shape:
            raise AnalysisError(
                "baseline and current must be (series, bins) arrays of one shape, "
                f"got {b.shape} and {c.shape}"
            )
        # min() is NaN-propagating and NaN < 0 is False: NaN counts mean "no data", not an error.
        if b.size and (b.min() < 0 or c.min() < 0):
            raise AnalysisError("bin counts must not be negative")
        object.__setattr__(self, "baseline", b)
        object.__setattr__(self, "current", c)

    @cached_property
    def baseline_total(self) -> FloatArray:
        total: FloatArray = self.baseline.sum(axis=1)
        return total

    @cached_property
    def current_total(self) -> FloatArray:
        total: FloatArray = self.current.sum(axis=1)
        return total

    @cached_property
    def no_data(self) -> BoolArray:
        """Rows where either window has no positive, finite total."""
        return ~(_positive(self.baseline_total) & _positive(self.current_total))

    @cached_property
    def p(self) -> FloatArray:
        """Baseline proportions (rows without data are divided by 1 and masked later)."""
        return self.baseline / np.where(self.no_data, 1.0, self.baseline_total)[:, np.newaxis]

    @cached_property
    def q(self) -> FloatArray:
        """Current proportions."""
        return self.current / np.where(self.no_data, 1.0, self.current_total)[:, np.newaxis]

    @cached_property
    def pooled(self) -> FloatArray:
        """``p + q``: positive exactly in the bins non-empty in either window."""
        return self.p + self.q

    @cached_property
    def cdf_gap(self) -> FloatArray:
        """``CDF_baseline - CDF_current`` at every bound."""
        return np.cumsum(self.p - self.q, axis=1)

    def psi(self, epsilon: float = PSI_EPSILON) -> FloatArray:
        """See :func:`psi`."""
        if not epsilon > 0:
            raise AnalysisError(f"PSI epsilon must be positive, got {epsilon}")
        used = self.pooled > 0
        scale = 1 + np.count_nonzero(used, axis=1)[:, np.newaxis] * epsilon
        p = np.where(used, (self.p + epsilon) / scale, 1.0)
        q = np.where(used, (self.q + epsilon) / scale, 1.0)
        # Unused bins hold 1 and 1: (1 - 1) * ln(1) contributes exactly 0.
        return _masked(np.sum((q - p) * np.log(q / p), axis=1), self.no_data)

    def jensen_shannon(self) -> FloatArray:
        """See :func:`jensen_shannon`."""
        m = self.pooled / 2
        entropy = special.rel_entr(self.p, m) + special.rel_entr(self.q, m)
        divergence = np.sum(entropy, axis=1) / (2 * math.log(2))
        # Rounding can leave the divergence a hair outside [0, 1].
        return _masked(np.sqrt(np.clip(divergence, 0.0, 1.0)), self.no_data)

    def ks(self) -> FloatArray:
        """See :func:`ks_statistic`."""
        return _masked(np.clip(np.max(np.abs(self.cdf_gap), axis=1), 0.0, 1.0), self.no_data)

    def wasserstein(self, upper_bounds: FloatArray, known_bounds: BoolArray | None = None) -> FloatArray:
        """See :func:`wasserstein`."""
        points = representative_points(upper_bounds, known_bounds)
        if points.shape[1] != self.p.shape[1]:
            raise AnalysisError(f"{points.shape[1]} bounds for {self.p.shape[1]} bins")
        distance = np.sum(np.abs(self.cdf_gap[:, :-1]) * np.diff(points, axis=1), axis=1)
        mean = np.sum(self.p * points, axis=1, keepdims=True)
        spread = np.sqrt(np.sum(self.p * (points - mean) ** 2, axis=1))
        flat = spread == 0
        relative = np.divide(distance, spread, out=np.zeros_like(distance), where=~flat)
        relative[flat & (distance > 0)] = math.inf
        return _masked(relative, self.no_data)

    def chi_square(self) -> ChiSquare:
        """See :func:`chi_square`."""
        column = self.baseline + self.current
        used = column > 0
        # With O - E = R_b R_c (p - q) / n in every cell, Pearson's sum reduces to
        # R_b R_c sum((p - q)^2 / C): identical proportions give exactly 0.
        gap = (self.p - self.q) ** 2
        per_count = np.divide(gap, column, out=np.zeros_like(gap), where=used)
        statistic = self.baseline_total * self.current_total * np.sum(per_count, axis=1)
        n = np.where(self.no_data, 1.0, self.baseline_total + self.current_total)
        cramers_v = np.sqrt(np.clip(statistic / n, 0.0, 1.0))
        # Rows of proportions have totals 1 and 1: chi2 = sum((p - q)^2 / (p + q)), n = 2.
        per_share = np.divide(gap, self.pooled, out=np.zeros_like(gap), where=used)
        balanced_v = np.sqrt(np.clip(np.sum(per_share, axis=1) / 2, 0.0, 1.0))
        dof = np.maximum(np.count_nonzero(used, axis=1) - 1, 0)
        # chi2 with 0 degrees of freedom is undefined; such a table shows no difference.
        # chdtrc(dof, x) is chi2.sf(x, dof) as a plain ufunc, without scipy.stats' per-call overhead.
        p_value = np.where(dof > 0, special.chdtrc(np.maximum(dof, 1), statistic), 1.0)
        return ChiSquare(
            statistic=_masked(statistic, self.no_data),
            dof=dof,
            p_value=_masked(np.asarray(p_value, dtype=np.float64), self.no_data),
            cramers_v=_masked(cramers_v, self.no_data),
            balanced_v=_masked(balanced_v, self.no_data),
        )


def psi(baseline: FloatArray, current: FloatArray, epsilon: float = PSI_EPSILON) -> FloatArray:
    """Population Stability Index, ``sum((q - p) * ln(q / p))`` over bin proportions.

    Empty bins are smoothed: ``epsilon`` is added to the proportion of every bin that is
    non-empty in at least one window, and each window is renormalised to sum to 1. Bins empty
    in both windows contribute exactly 0. PSI is symmetric in its two windows.
    """
    return WindowPair(baseline, current).psi(epsilon)


def jensen_shannon(baseline: FloatArray, current: FloatArray) -> FloatArray:
    """Jensen-Shannon distance (square root of the divergence) in base 2, within [0, 1]."""
    return WindowPair(baseline, current).jensen_shannon()


def ks_statistic(baseline: FloatArray, current: FloatArray) -> FloatArray:
    """Kolmogorov-Smirnov statistic, ``max |CDF_baseline - CDF_current|`` at the bin bounds.

    Only the bounds are observed, so this is a lower bound of the KS statistic of the
    underlying samples (the gap can be wider between bounds).
    """
    return WindowPair(baseline, current).ks()


def wasserstein(
    baseline: FloatArray,
    current: FloatArray,
    upper_bounds: FloatArray,
    known_bounds: BoolArray | None = None,
) -> FloatArray:
    """Wasserstein-1 distance divided by the baseline's standard deviation.

    Mass sits at :func:`representative_points`; ``known_bounds`` (from alignment) gives each
    row its own bins, so features with different layouts share one array. The distance is in
    units of the baseline's spread, comparable across features. When the baseline has zero
    spread (all its mass in one bin) the score is 0 if the current window matches it, else
    +Inf.
    """
    return WindowPair(baseline, current).wasserstein(upper_bounds, known_bounds)


def chi_square(baseline: FloatArray, current: FloatArray) -> ChiSquare:
    """Pearson's chi-square test on each row's 2 x B table, without continuity correction.

    Bins empty in both windows are left out (also from the degrees of freedom). A table with
    a single non-empty bin has statistic 0, p-value 1 and V 0.
    """
    return WindowPair(baseline, current).chi_square()


def representative_points(upper_bounds: FloatArray, known_bounds: BoolArray | None = None) -> FloatArray:
    """Where each bin's mass is placed for Wasserstein: shape ``(N, B)`` (``(1, B)`` if no mask).

    A bin ``(l, u]`` between two known bounds sits at its midpoint; the first bin ``(-Inf, u]``
    at ``u``; the +Inf bin at the last finite known bound ``l``; a lone ``(-Inf, +Inf]`` bin at
    0. A column whose bound is not known holds no mass: it gets the point of the last known
    column before it (of the first known column if none), so no row's points ever decrease.
    """
    bounds = np.asarray(upper_bounds, dtype=np.float64)
    known = np.ones((1, bounds.size), dtype=bool) if known_bounds is None else known_bounds
    columns = np.arange(bounds.size)
    last_known = np.maximum.accumulate(np.where(known, columns, -1), axis=1)
    previous = np.concatenate([np.full((known.shape[0], 1), -1), last_known[:, :-1]], axis=1)
    lower = np.where(previous >= 0, bounds[np.maximum(previous, 0)], -math.inf)
    upper = np.broadcast_to(bounds, lower.shape)
    # Pick finite ends before averaging so no infinity is ever added.
    low = np.where(np.isfinite(lower), lower, np.where(np.isfinite(upper), upper, 0.0))
    high = np.where(np.isfinite(upper), upper, low)
    points = (low + high) / 2
    # Columns before the first known one borrow its point (any point will do: no mass).
    first_known = np.argmax(known, axis=1)[:, np.newaxis]
    source = np.where(last_known >= 0, last_known, first_known)
    return np.take_along_axis(points, source, axis=1)


def effective_samples(baseline_total: FloatArray, current_total: FloatArray) -> FloatArray:
    """Effective sample size of a two-sample comparison, ``n * m / (n + m)``.

    0 where either total is 0 (or not a positive finite number).
    """
    n = np.asarray(baseline_total, dtype=np.float64)
    m = np.asarray(current_total, dtype=np.float64)
    valid = _positive(n) & _positive(m)
    safe_n, safe_m = np.where(valid, n, 1.0), np.where(valid, m, 1.0)
    return np.where(valid, safe_n * safe_m / (safe_n + safe_m), 0.0)


def _positive(values: FloatArray) -> BoolArray:
    return np.isfinite(values) & (values > 0)


def _masked(values: FloatArray, no_data: BoolArray) -> FloatArray:
    return np.where(no_data, math.nan, values)
