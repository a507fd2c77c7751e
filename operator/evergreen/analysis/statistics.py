"""Two-sample statistics over binned distributions, one row per series.

Every statistic takes ``baseline`` and ``current`` per-bin counts of shape ``(N, B)`` (row =
series, column = bin; fractional counts are fine) and returns one value per row. A row where
either window has no mass (total 0 or NaN) gets NaN: no traffic is "no data", never "no
drift". Nothing loops over rows or bins in Python.

The module-level functions each build a :class:`WindowPair`; build one yourself to compute
several statistics of the same windows without repeating the shared work.

A monitor's arrays are small (a few hundred rows of ~20 bins): numpy's per-call overhead
costs more than the arithmetic. So both windows share one ``(2, N, B)`` array (one call per
step for both) and masks are applied by arithmetic, not by ``where``. Row sums stay numpy
reductions along the bins, so results are bit-for-bit those of the plain formulas.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from functools import cached_property

import numpy as np
from scipy import special

from evergreen.analysis.points import representative_points
from evergreen.analysis.series import BoolArray, FloatArray, IntArray
from evergreen.errors import AnalysisError

__all__ = [
    "PSI_EPSILON",
    "ChiSquare",
    "WindowPair",
    "chi_square",
    "effective_samples",
    "jensen_shannon",
    "ks_statistic",
    "psi",
    "representative_points",
    "wasserstein",
]

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
    """Per-bin counts of two windows, with the intermediate results statistics share.

    ``counts`` stacks ``baseline`` and ``current`` as one ``(2, N, B)`` array; ``baseline``
    and ``current`` are views of it.
    """

    baseline: FloatArray
    current: FloatArray
    counts: FloatArray = field(init=False, repr=False)

    def __post_init__(self) -> None:
        shapes = np.shape(self.baseline), np.shape(self.current)
        if len(shapes[0]) != 2 or shapes[0] != shapes[1]:
            raise AnalysisError(
                "baseline and current must be (series, bins) arrays of one shape, "
                f"got {shapes[0]} and {shapes[1]}"
            )
        counts = np.array((self.baseline, self.current), dtype=np.float64)
        # min() is NaN-propagating and NaN < 0 is False: NaN counts mean "no data", not an error.
        if counts.size and counts.min() < 0:
            raise AnalysisError("bin counts must not be negative")
        object.__setattr__(self, "counts", counts)
        object.__setattr__(self, "baseline", counts[0])
        object.__setattr__(self, "current", counts[1])

    @cached_property
    def totals(self) -> FloatArray:
        """Row totals of both windows, shape ``(2, N)``."""
        totals: FloatArray = np.add.reduce(self.counts, axis=2)
        return totals

    @property
    def baseline_total(self) -> FloatArray:
        total: FloatArray = self.totals[0]
        return total

    @property
    def current_total(self) -> FloatArray:
        total: FloatArray = self.totals[1]
        return total

    @cached_property
    def no_data(self) -> BoolArray:
        """Rows where either window has no positive, finite total."""
        totals = self.totals
        positive = (totals > 0) & (totals < math.inf)
        no_data: BoolArray = ~(positive[0] & positive[1])
        return no_data

    @cached_property
    def shares(self) -> FloatArray:
        """Proportions of both windows, shape ``(2, N, B)`` (rows without data divided by 1)."""
        divisor = np.where(self.no_data, 1.0, self.totals)
        shares: FloatArray = self.counts / divisor[:, :, np.newaxis]
        return shares

    @property
    def p(self) -> FloatArray:
        """Baseline proportions (rows without data are divided by 1 and masked later)."""
        p: FloatArray = self.shares[0]
        return p

    @property
    def q(self) -> FloatArray:
        """Current proportions."""
        q: FloatArray = self.shares[1]
        return q

    @cached_property
    def pooled(self) -> FloatArray:
        """``p + q``: positive exactly in the bins non-empty in either window."""
        pooled: FloatArray = self.p + self.q
        return pooled

    @cached_property
    def cdf_gap(self) -> FloatArray:
        """``CDF_baseline - CDF_current`` at every bound."""
        gap: FloatArray = np.cumsum(self.p - self.q, axis=1)
        return gap

    def psi(self, epsilon: float = PSI_EPSILON) -> FloatArray:
        """See :func:`psi`."""
        if not epsilon > 0:
            raise AnalysisError(f"PSI epsilon must be positive, got {epsilon}")
        used = self.pooled > 0
        scale = 1 + _row_counts(used)[:, np.newaxis] * epsilon
        smoothed = self.shares + epsilon
        smoothed /= scale
        p, q = smoothed
        # A bin empty in both windows smooths to the same value in both: (q - p) is exactly 0
        # there and so is its term, without masking it out.
        terms = q - p
        terms *= np.log(q / p)
        return _masked(np.add.reduce(terms, axis=1), self.no_data)

    def jensen_shannon(self) -> FloatArray:
        """See :func:`jensen_shannon`."""
        m = self.pooled / 2
        entropy = special.rel_entr(self.shares, m)
        divergence = np.add.reduce(entropy[0] + entropy[1], axis=1) / (2 * math.log(2))
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
        statistic, bins = self._chi_square_statistic
        n = np.where(self.no_data, 1.0, self.baseline_total + self.current_total)
        cramers_v = np.sqrt(np.clip(statistic / n, 0.0, 1.0))
        return ChiSquare(
            statistic=_masked(statistic, self.no_data),
            dof=np.maximum(bins - 1, 0).astype(np.intp),
            p_value=self.chi_square_p_value(),
            cramers_v=_masked(cramers_v, self.no_data),
            balanced_v=self.balanced_v(),
        )

    def chi_square_p_value(self) -> FloatArray:
        """The p-value of :meth:`chi_square` alone (what every drift score reports)."""
        statistic, bins = self._chi_square_statistic
        dof = bins - 1
        # chi2 with 0 degrees of freedom is undefined; such a table shows no difference.
        # chdtrc(dof, x) is chi2.sf(x, dof) as a plain ufunc, without scipy.stats' per-call overhead.
        p_value = np.where(dof > 0, special.chdtrc(np.maximum(dof, 1), statistic), 1.0)
        return _masked(p_value, self.no_data)

    def balanced_v(self) -> FloatArray:
        """The window-balanced Cramér's V of :meth:`chi_square` alone (its drift score)."""
        # Rows of proportions have totals 1 and 1: chi2 = sum((p - q)^2 / (p + q)), n = 2.
        per_share = self._squared_gap / (self.pooled + ~self._columns[1])
        balanced_v = np.sqrt(np.clip(np.add.reduce(per_share, axis=1) / 2, 0.0, 1.0))
        return _masked(balanced_v, self.no_data)

    @cached_property
    def _columns(self) -> tuple[FloatArray, BoolArray]:
        """Per-bin counts of both windows together, and the bins where that is positive."""
        column: FloatArray = self.baseline + self.current
        return column, column > 0

    @cached_property
    def _squared_gap(self) -> FloatArray:
        gap: FloatArray = np.square(self.p - self.q)
        return gap

    @cached_property
    def _chi_square_statistic(self) -> tuple[FloatArray, FloatArray]:
        """Pearson's statistic and the number of table columns (non-empty bins), per row."""
        column, used = self._columns
        # With O - E = R_b R_c (p - q) / n in every cell, Pearson's sum reduces to
        # R_b R_c sum((p - q)^2 / C): identical proportions give exactly 0. Empty columns
        # are left out as 0 / 1.
        per_count = self._squared_gap / (column + ~used)
        statistic = self.baseline_total * self.current_total * np.add.reduce(per_count, axis=1)
        return statistic, _row_counts(used)


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


def _row_counts(mask: BoolArray) -> FloatArray:
    """How many cells of each row are set, as floats (exact: a product with ones).

    A matrix-vector product is a few times faster than ``count_nonzero(axis=1)`` on short rows.
    """
    counts: FloatArray = mask @ np.ones(mask.shape[1])
    return counts


def _masked(values: FloatArray, no_data: BoolArray) -> FloatArray:
    return np.where(no_data, math.nan, values)
