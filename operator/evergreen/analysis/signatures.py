"""Signatures that tell a broken feature pipeline from real drift, from the same histograms.

A drift score says *that* a distribution moved; these signatures say *how*, in ways typical
of data-pipeline breaks rather than of a changing world:

- **Affine fit of quantiles** (:func:`affine_fit`, :func:`known_conversion`): a unit change
  (°C read as °F, grams as kilograms) maps every value ``x`` to ``slope * x + offset``, so
  the current window's quantiles lie on a straight line against the baseline's, and the line
  is one of a small table of known conversions.
- **Concentration** (:func:`concentration`): a feature collapsing to a constant (a default
  value, a null filled with 0) piles its mass into a single bin.
- **Mass outside the baseline's support** (:func:`outside_support`): values out of the range
  the baseline ever produced; it catches unit changes that leave the bucket layout (°F read
  into buckets sized for °C all land in the +Inf bucket) where quantiles cannot.

Every function takes an :class:`~evergreen.analysis.alignment.AlignedHistograms` and returns
one value per series (row), computed for all series at once. A series gets NaN where either
window has no data or where the windows share no finite bucket bound (one bin cannot show a
change of shape), as in :func:`~evergreen.analysis.drift.drift_scores`: NaN is "cannot tell",
never "healthy". :func:`signatures` bundles them all.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import NamedTuple, TypeAlias

import numpy as np
import numpy.typing as npt

from evergreen.analysis.alignment import AlignedHistograms
from evergreen.analysis.series import BoolArray, FloatArray, IntArray, SeriesKey
from evergreen.errors import AnalysisError

__all__ = [
    "CONVERSIONS",
    "CONVERSION_CENTER_TOLERANCE",
    "CONVERSION_MIN_R_SQUARED",
    "CONVERSION_SLOPE_TOLERANCE",
    "MIN_FIT_POINTS",
    "QUANTILE_LEVELS",
    "SUPPORT_TAIL",
    "AffineFit",
    "BreakSignatures",
    "Concentration",
    "Conversion",
    "StrArray",
    "WindowQuantiles",
    "affine_fit",
    "bucket_quantiles",
    "concentration",
    "known_conversion",
    "outside_support",
    "signatures",
    "window_quantiles",
]

StrArray: TypeAlias = npt.NDArray[np.str_]

#: Quantile levels compared between windows: 0.05, 0.10, ..., 0.95. Nineteen points are
#: plenty for a straight-line fit, and stopping at 5 % from either end keeps most levels out
#: of the open-ended first and +Inf buckets, where no quantile can be placed.
QUANTILE_LEVELS: FloatArray = np.arange(1, 20) / 20
QUANTILE_LEVELS.setflags(write=False)

#: A level within this distance of a bound's cumulative share (its share of the window's
#: total) is taken to sit exactly on that bound. Without it, rescaling all counts of a window
#: (which must not change any signature) could move a level that sits on a bound by one
#: rounding error into the neighbouring bucket and change whether it is usable.
RANK_SNAP = 1e-9

#: Fewest quantile pairs a line is fitted through. Two points always lie on a line and three
#: barely test it; with four, r² starts to mean something.
MIN_FIT_POINTS = 4

#: Largest relative gap between a fitted slope and a conversion's factor, measured as
#: ``|ln(slope / factor)|`` (so x1.05 and /1.05 are equally far). Linear interpolation within
#: buckets spreads the quantiles of whichever window sits in relatively coarser buckets, which
#: biases the slope towards 1: for °C→°F with buckets as wide as 0.5 / 0.83 / 1.2 baseline
#: standard deviations the slope comes out up to 2 % / 4.5 % / 8 % low. 5 % covers buckets up
#: to about 0.8 standard deviations wide while the windows around the factors of
#: :data:`CONVERSIONS`, at least 11 % apart (1.8 vs km→mi 1.609), still never overlap. A +20 %
#: shift of a price-like feature (x1.2) matches nothing.
CONVERSION_SLOPE_TOLERANCE = 0.05

#: Largest gap, in converted baseline spreads, between the fitted line and the conversion at
#: the centre of the baseline. Comparing the lines where the data are, rather than their raw
#: offsets at 0, keeps the slope's small error from counting twice: for a temperature in
#: kelvin near 293, a 1 % slope error alone moves the offset at 0 by 3 K. Bucket
#: interpolation moves the centre by under 0.02 spreads even with buckets two standard
#: deviations wide; the rest is room for sampling noise (a window of n values has its centre
#: wander by about 1/sqrt(n) spreads: a quarter spread is over 5 standard errors at n = 500).
#: A warming (+2 °C) is still 45 spreads away from °C→K (+273.15).
CONVERSION_CENTER_TOLERANCE = 0.25

#: Fits below this r² name no conversion: a unit change moves every quantile onto one line,
#: while a change of shape (a second mode, a skew) bends the quantile-quantile curve.
CONVERSION_MIN_R_SQUARED = 0.98

#: Share of the baseline's mass each tail may hold and still count as "outside the baseline's
#: support" (0.1 %): the baseline's rare extremes, the open first and +Inf buckets it
#: barely used. Values the baseline produced at least once in a thousand are not new.
SUPPORT_TAIL = 0.001


class Conversion(NamedTuple):
    """A unit or scale conversion ``converted = factor * value + offset``."""

    name: str
    factor: float
    offset: float = 0.0


_FAHRENHEIT_OFFSET = -32 * 5 / 9  # °F→°C: (x - 32) * 5/9 = 5/9 x - 17.78

#: Conversions a pipeline break commonly introduces, named from the baseline's unit to the
#: current window's: ``celsius_to_fahrenheit`` means values that arrived in °C now arrive in
#: °F. Only temperature conversions carry an offset; the others map 0 to 0, and a fitted line
#: must do the same (within :data:`CONVERSION_CENTER_TOLERANCE`) to match them.
CONVERSIONS: tuple[Conversion, ...] = (
    Conversion("celsius_to_fahrenheit", 1.8, 32.0),
    Conversion("fahrenheit_to_celsius", 5 / 9, _FAHRENHEIT_OFFSET),
    Conversion("celsius_to_kelvin", 1.0, 273.15),
    Conversion("kelvin_to_celsius", 1.0, -273.15),
    Conversion("times_1000", 1000.0),  # kg→g, km→m, s→ms
    Conversion("divided_by_1000", 0.001),  # g→kg, m→km, ms→s
    Conversion("times_100", 100.0),  # fraction→percent, units→cents
    Conversion("divided_by_100", 0.01),  # percent→fraction, cents→units
    Conversion("times_60", 60.0),  # min→s, h→min
    Conversion("divided_by_60", 1 / 60),  # s→min, min→h
    Conversion("times_3600", 3600.0),  # h→s
    Conversion("divided_by_3600", 1 / 3600),  # s→h
    Conversion("miles_to_kilometres", 1.609344),
    Conversion("kilometres_to_miles", 1 / 1.609344),
    Conversion("kilograms_to_pounds", 2.20462262),
    Conversion("pounds_to_kilograms", 1 / 2.20462262),
    Conversion("inches_to_centimetres", 2.54),
    Conversion("centimetres_to_inches", 1 / 2.54),
)

_NAMES = np.array([c.name for c in CONVERSIONS])
_FACTORS = np.array([c.factor for c in CONVERSIONS])
_OFFSETS = np.array([c.offset for c in CONVERSIONS])


# --- quantiles ---------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class WindowQuantiles:
    """Quantiles of both windows at ``levels``: arrays of shape ``(N, len(levels))``, NaN where
    unusable."""

    levels: FloatArray
    baseline: FloatArray
    current: FloatArray


def bucket_quantiles(
    counts: FloatArray,
    upper_bounds: FloatArray,
    known_bounds: BoolArray,
    levels: FloatArray = QUANTILE_LEVELS,
) -> FloatArray:
    """Quantiles of each row's binned distribution, shape ``(N, len(levels))``.

    As Prometheus' ``histogram_quantile``: the rank ``level * total`` falls in the first bin
    whose cumulative count reaches it, and the quantile is interpolated linearly between that
    bin's bounds (values are assumed spread evenly within a bucket). Unlike
    ``histogram_quantile``, a level is NaN (unusable) where the bin is open-ended: the first
    bin ``(-Inf, b]`` and the +Inf bin say nothing about where their values lie, and placing
    them at a bound would invent a location. Bounds unknown to a row (``known_bounds``) merge
    its bins: the merged bin reaches from the previous known bound, and a row's first known
    bound closes its open first bin. A level on a bound's cumulative share (within
    :data:`RANK_SNAP`) is that bound, usable when finite. Rows without data are NaN.
    ``levels`` must be strictly increasing within (0, 1).
    """
    counts = np.asarray(counts, dtype=np.float64)
    bounds = np.asarray(upper_bounds, dtype=np.float64)
    known = np.asarray(known_bounds, dtype=bool)
    levels = _checked_levels(levels)
    if counts.ndim != 2 or known.shape != counts.shape or bounds.shape != counts.shape[1:]:
        raise AnalysisError(
            f"counts {counts.shape}, bounds {bounds.shape} and known bounds {known.shape} do not match"
        )
    if counts.shape[1] == 0:
        return np.full((counts.shape[0], levels.size), math.nan)

    cumulative = np.cumsum(counts, axis=1)
    total = cumulative[:, -1:]
    data = np.isfinite(total) & (total > 0)
    # As shares of each row's total, the rank of every level is the level itself.
    shares = np.divide(cumulative, total, out=np.zeros_like(cumulative), where=data)
    previous_shares = np.concatenate([np.zeros((counts.shape[0], 1)), shares[:, :-1]], axis=1)
    column = _first_reaching(shares, levels)

    upper_share = np.take_along_axis(shares, column, axis=1)
    lower_share = np.take_along_axis(previous_shares, column, axis=1)
    upper = bounds[column]
    lower_column = np.take_along_axis(_previous_known(known), column, axis=1)
    lower = np.where(lower_column >= 0, bounds[np.maximum(lower_column, 0)], -math.inf)
    column_known = np.take_along_axis(known, column, axis=1)

    rank = np.broadcast_to(levels, column.shape)
    on_bound = np.abs(upper_share - rank) <= RANK_SNAP
    mass = upper_share - lower_share
    fraction = np.divide(rank - lower_share, mass, out=np.zeros(column.shape), where=mass > 0)
    # Finite ends only, so that no infinity enters the arithmetic of rows that are masked.
    finite_lower = np.where(np.isfinite(lower), lower, 0.0)
    finite_upper = np.where(np.isfinite(upper), upper, 0.0)
    inside = finite_lower + (finite_upper - finite_lower) * fraction
    bounded = column_known & np.isfinite(lower) & np.isfinite(upper) & (mass > 0)

    quantile = np.where(on_bound, finite_upper, inside)
    usable = np.where(on_bound, column_known & np.isfinite(upper), bounded) & data
    return np.where(usable, quantile, math.nan)


def window_quantiles(aligned: AlignedHistograms, levels: FloatArray = QUANTILE_LEVELS) -> WindowQuantiles:
    """:func:`bucket_quantiles` of both windows of ``aligned``, each row on its own bins."""
    levels = _checked_levels(levels)
    comparable = _comparable(aligned)[:, np.newaxis]
    baseline = bucket_quantiles(aligned.baseline, aligned.upper_bounds, aligned.known_bounds, levels)
    current = bucket_quantiles(aligned.current, aligned.upper_bounds, aligned.known_bounds, levels)
    return WindowQuantiles(
        levels=levels,
        baseline=np.where(comparable, baseline, math.nan),
        current=np.where(comparable, current, math.nan),
    )


# --- affine fit and unit conversions ----------------------------------------------------


@dataclass(frozen=True, eq=False)
class AffineFit:
    """Per series, the line ``current_quantile ≈ slope * baseline_quantile + offset``.

    ``points`` is how many levels were usable in both windows; ``baseline_center`` and
    ``baseline_spread`` are the mean and standard deviation of the baseline quantiles at those
    levels (for a normal distribution and the default levels, the spread is about 0.9
    standard deviations). Every float field is NaN where fewer than :data:`MIN_FIT_POINTS`
    points were usable or the baseline quantiles do not spread at all.
    """

    slope: FloatArray
    #: The slope's standard error: a unit change is reported as ``slope ± error``.
    slope_error: FloatArray
    offset: FloatArray
    r_squared: FloatArray
    points: IntArray
    baseline_center: FloatArray
    baseline_spread: FloatArray

    def __len__(self) -> int:
        return int(self.slope.size)

    def conversion(self, min_r_squared: float = CONVERSION_MIN_R_SQUARED) -> StrArray:
        """The known conversion each series' line matches, ``""`` where none or r² is too low.

        See :func:`known_conversion`; fits below ``min_r_squared`` are not straight lines and
        name no conversion (:data:`CONVERSION_MIN_R_SQUARED`).
        """
        names = known_conversion(self.slope, self.offset, self.baseline_center, self.baseline_spread)
        straight = np.nan_to_num(self.r_squared, nan=-1.0) >= min_r_squared
        result: StrArray = np.where(straight, names, "")
        return result


def affine_fit(aligned: AlignedHistograms, levels: FloatArray = QUANTILE_LEVELS) -> AffineFit:
    """Least-squares line through each series' (baseline, current) quantile pairs.

    Only levels usable in both windows count (see :func:`bucket_quantiles`). A unit change is
    an affine map of every value, and quantiles follow affine maps exactly, so a unit change
    gives r² ≈ 1 with the conversion's slope and offset (°C→°F: 1.8 and 32). Real drift
    usually moves the quantiles too, but rarely onto a line with a conversion's slope and
    offset. ``r_squared`` is 1 where the current quantiles are all equal (a flat line fits
    them exactly); with bucket interpolation that is practically never the case.
    """
    quantiles = window_quantiles(aligned, levels)
    x, y = quantiles.baseline, quantiles.current
    usable = np.isfinite(x) & np.isfinite(y)
    # Values an exporter clamps at its top bound pile up in the top finite bucket, and
    # interpolating them there bends the line: fit only quantiles below a clipped bucket.
    for counts, values in ((aligned.baseline, x), (aligned.current, y)):
        edge = _clipped_from(counts, aligned.upper_bounds, aligned.known_bounds)
        usable &= ~(values > edge[:, np.newaxis])
    points = np.count_nonzero(usable, axis=1)
    n = np.maximum(points, 1)
    x0, y0 = np.where(usable, x, 0.0), np.where(usable, y, 0.0)
    center_x = x0.sum(axis=1) / n
    center_y = y0.sum(axis=1) / n
    dx = np.where(usable, x0 - center_x[:, np.newaxis], 0.0)
    dy = np.where(usable, y0 - center_y[:, np.newaxis], 0.0)
    sxx, sxy, syy = (dx * dx).sum(axis=1), (dx * dy).sum(axis=1), (dy * dy).sum(axis=1)

    valid = (points >= MIN_FIT_POINTS) & (sxx > 0)
    slope = np.divide(sxy, sxx, out=np.zeros_like(sxx), where=valid)
    offset = center_y - slope * center_x
    denominator = sxx * syy
    r_squared = np.divide(sxy * sxy, denominator, out=np.ones_like(sxx), where=denominator > 0)
    # The slope's standard error from the residuals around the line (n - 2 degrees of freedom).
    residual = np.maximum(syy - slope * sxy, 0.0)
    freedom = np.maximum(points - 2, 1)
    error = np.sqrt(np.divide(residual / freedom, sxx, out=np.zeros_like(sxx), where=valid))
    return AffineFit(
        slope=_masked(slope, ~valid),
        slope_error=_masked(error, ~valid),
        offset=_masked(offset, ~valid),
        r_squared=_masked(np.clip(r_squared, 0.0, 1.0), ~valid),
        points=points.astype(np.intp),
        baseline_center=_masked(center_x, ~valid),
        baseline_spread=_masked(np.sqrt(sxx / n), ~valid),
    )


def known_conversion(
    slope: FloatArray,
    offset: FloatArray,
    center: FloatArray,
    spread: FloatArray,
    *,
    slope_tolerance: float = CONVERSION_SLOPE_TOLERANCE,
    center_tolerance: float = CONVERSION_CENTER_TOLERANCE,
) -> StrArray:
    """The name of the :data:`CONVERSIONS` entry each line matches; ``""`` where none does.

    A line ``slope * x + offset`` fitted on a baseline centred at ``center`` with spread
    ``spread`` (see :class:`AffineFit`) matches the conversion ``factor * x + c`` when

    - ``|ln(slope / factor)| <= slope_tolerance`` (:data:`CONVERSION_SLOPE_TOLERANCE`), and
    - at the baseline's centre the two lines differ by at most ``center_tolerance`` converted
      spreads: ``|(slope - factor) * center + offset - c| <= center_tolerance * factor *
      spread`` (:data:`CONVERSION_CENTER_TOLERANCE`).

    The second rule is the tolerance on the offset, scaled by the spread and taken where the
    data are. A match says the change is *consistent* with the conversion: for a feature whose
    spread dwarfs a temperature offset (amounts in the hundreds), x1.8 and °C→°F cannot be
    told apart. NaN inputs or a non-positive slope match nothing.
    """
    slope, offset, center, spread = (np.asarray(a, dtype=np.float64) for a in (slope, offset, center, spread))
    if not (slope_tolerance >= 0 and center_tolerance >= 0):
        raise AnalysisError("conversion tolerances must not be negative")
    finite = np.isfinite(slope) & np.isfinite(offset) & np.isfinite(center) & np.isfinite(spread)
    positive = finite & (slope > 0)
    s = np.where(positive, slope, 1.0)[..., np.newaxis]
    o = np.where(positive, offset, 0.0)[..., np.newaxis]
    c = np.where(positive, center, 0.0)[..., np.newaxis]
    w = np.where(positive, np.abs(spread), 0.0)[..., np.newaxis]
    slope_gap = np.abs(np.log(s / _FACTORS))
    center_gap = np.abs((s - _FACTORS) * c + o - _OFFSETS)
    matches = (slope_gap <= slope_tolerance) & (center_gap <= center_tolerance * _FACTORS * w)
    matches &= positive[..., np.newaxis]
    # The table's factors are far enough apart that at most one matches; pick the closest anyway.
    best = np.argmin(np.where(matches, slope_gap, math.inf), axis=-1)
    names: StrArray = np.where(matches.any(axis=-1), _NAMES[best], "")
    return names


# --- concentration and support ----------------------------------------------------------


@dataclass(frozen=True, eq=False)
class Concentration:
    """The largest single-bin share of each window, per series (NaN without data).

    ``current_peak_bin`` is the column of the current window's fullest bin (-1 without data);
    ``baseline_share_at_current_peak`` is how much of the baseline sat in that same bin.
    """

    baseline_max_share: FloatArray
    current_max_share: FloatArray
    current_peak_bin: IntArray
    baseline_share_at_current_peak: FloatArray


def concentration(aligned: AlignedHistograms) -> Concentration:
    """How much of each window sits in its fullest bin.

    A feature that collapses to a constant (a default value, nulls filled with 0, a frozen
    upstream cache) puts nearly all of its mass in one bin: typically ≥ 90 % where the
    baseline's fullest bin held at most about half. A feature that is peaked by nature (a
    count that is mostly 1) keeps its maximum share, so compare the two windows, and check
    ``baseline_share_at_current_peak``: a collapse lands in a bin the baseline did not favour.
    Bins are the histogram's buckets, so a narrow distribution inside one wide bucket also
    looks concentrated: the signature is about a change between windows, not a level.
    """
    comparable = _comparable(aligned)
    baseline = _shares(aligned.baseline, comparable)
    current = _shares(aligned.current, comparable)
    peak = np.argmax(current, axis=1)[:, np.newaxis]
    return Concentration(
        baseline_max_share=_masked(baseline.max(axis=1, initial=0.0), ~comparable),
        current_max_share=_masked(current.max(axis=1, initial=0.0), ~comparable),
        current_peak_bin=np.where(comparable, peak[:, 0], -1).astype(np.intp),
        baseline_share_at_current_peak=_masked(np.take_along_axis(baseline, peak, axis=1)[:, 0], ~comparable),
    )


def outside_support(aligned: AlignedHistograms, tail: float = SUPPORT_TAIL) -> FloatArray:
    """Share of the current window's mass in bins the baseline (almost) never reached.

    A bin is outside the baseline's support when it lies wholly in one of the baseline's
    tails: all baseline mass up to and including the bin is at most ``tail`` of the
    baseline's total, or all baseline mass from the bin onwards is. This includes the open
    first and +Inf bins when the baseline barely used them, and bins beyond them. The result
    is the current window's share in those bins minus the baseline's own (at most
    ``2 * tail``), clipped at 0, so identical windows give exactly 0.

    A unit change that leaves the bucket layout (°F values in buckets sized for °C all land
    in the +Inf bucket) gives about 1 where no quantile can be placed; out-of-range values
    after a parsing change (prices in cents) show up here as well. ``tail`` defaults to
    :data:`SUPPORT_TAIL`.
    """
    if not 0 <= tail < 0.5:
        raise AnalysisError(f"support tail must be within [0, 0.5), got {tail}")
    comparable = _comparable(aligned)
    baseline = np.where(comparable[:, np.newaxis], aligned.baseline, 0.0)
    total = baseline.sum(axis=1, keepdims=True)
    up_to = np.cumsum(baseline, axis=1)
    # Summed from the right, so a bin after the last baseline mass gets exactly 0.
    from_on = np.cumsum(baseline[:, ::-1], axis=1)[:, ::-1]
    outside = (up_to <= tail * total) | (from_on <= tail * total)
    current = _shares(aligned.current, comparable)
    shares = _shares(aligned.baseline, comparable)
    excess = np.sum(np.where(outside, current, 0.0), axis=1) - np.sum(np.where(outside, shares, 0.0), axis=1)
    return _masked(np.maximum(excess, 0.0), ~comparable)


# --- all of them -------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class BreakSignatures:
    """Every pipeline-break signature of one aligned histogram family, row ``i`` = ``keys[i]``.

    ``conversion`` is :meth:`AffineFit.conversion` (``""`` where no known conversion fits).
    """

    keys: tuple[SeriesKey, ...]
    fit: AffineFit
    conversion: StrArray
    concentration: Concentration
    outside_support: FloatArray

    def __len__(self) -> int:
        return len(self.keys)


def signatures(
    aligned: AlignedHistograms,
    *,
    levels: FloatArray = QUANTILE_LEVELS,
    tail: float = SUPPORT_TAIL,
) -> BreakSignatures:
    """Compute every signature of ``aligned`` (see the module docstring)."""
    fit = affine_fit(aligned, levels)
    return BreakSignatures(
        keys=aligned.keys,
        fit=fit,
        conversion=fit.conversion(),
        concentration=concentration(aligned),
        outside_support=outside_support(aligned, tail),
    )


# --- helpers -----------------------------------------------------------------------------


def _checked_levels(levels: FloatArray) -> FloatArray:
    array = np.asarray(levels, dtype=np.float64)
    if array.ndim != 1 or array.size == 0 or not np.all((array > 0) & (array < 1)):
        raise AnalysisError("quantile levels must be a non-empty 1-D array within (0, 1)")
    if np.any(np.diff(array) <= 0):
        raise AnalysisError("quantile levels must be strictly increasing")
    return array


def _first_reaching(shares: FloatArray, levels: FloatArray) -> IntArray:
    """Per row and level, the first column whose cumulative share reaches the level.

    "Reaches" allows :data:`RANK_SNAP`. With ``within[j]`` the number of levels at or below
    column ``j``'s share, the column lies below level ``l`` (0-based) exactly when
    ``within[j] <= l``; as shares never decrease along a row, the first column reaching level
    ``l`` is the number of such columns. One ``searchsorted`` and one ``bincount`` give it for
    every level, without a (series, levels, bins) array.
    """
    rows, bins = shares.shape
    within = np.searchsorted(levels, shares + RANK_SNAP, side="right")
    offsets = np.arange(rows)[:, np.newaxis] * (levels.size + 1)
    per_count = np.bincount((within + offsets).ravel(), minlength=rows * (levels.size + 1))
    below = np.cumsum(per_count.reshape(rows, levels.size + 1), axis=1)[:, : levels.size]
    # Shares end at 1 > every level, so only rows without data would run past the last column.
    column: IntArray = np.minimum(below, bins - 1).astype(np.intp)
    return column


def _clipped_from(counts: FloatArray, bounds: FloatArray, known: BoolArray) -> FloatArray:
    """Per row, the bound above which quantiles may be clipped values (+Inf: none).

    The top finite bucket is clipped when it holds more than the bucket below it: a tail
    thins out towards the top, values clamped at the top bound pile up there.
    """
    columns = np.arange(bounds.size)
    usable = np.where(known & np.isfinite(bounds)[np.newaxis, :], columns, -1)
    ends = []
    for _ in range(3):  # the top three finite known bounds, highest first
        last = usable.max(axis=1)
        ends.append(last)
        usable = np.where(usable == last[:, np.newaxis], -1, usable)
    top, below, lower = ends
    cumulative = np.cumsum(counts, axis=1)

    def upto(column: IntArray) -> FloatArray:
        index = np.maximum(column, 0)[:, np.newaxis]
        values: FloatArray = np.take_along_axis(cumulative, index, axis=1)[:, 0]
        return values

    enough = lower >= 0
    top_mass = upto(top) - upto(below)
    below_mass = upto(below) - upto(lower)
    # A relative margin keeps ties tied when every count of a window is rescaled.
    clipped = enough & (top_mass > below_mass * (1 + 1e-9))
    result: FloatArray = np.where(clipped, bounds[np.maximum(below, 0)], math.inf)
    return result


def _previous_known(known: BoolArray) -> IntArray:
    """Per cell, the column of the last known bound before it; -1 where there is none."""
    columns = np.arange(known.shape[1])
    last_known = np.maximum.accumulate(np.where(known, columns, -1), axis=1)
    previous: IntArray = np.concatenate(
        [np.full((known.shape[0], 1), -1, dtype=np.intp), last_known[:, :-1]], axis=1
    )
    return previous


def _comparable(aligned: AlignedHistograms) -> BoolArray:
    """Rows with data in both windows and at least one finite bound in common."""
    baseline_total = aligned.baseline.sum(axis=1)
    current_total = aligned.current.sum(axis=1)
    data = np.isfinite(baseline_total) & (baseline_total > 0)
    data &= np.isfinite(current_total) & (current_total > 0)
    result: BoolArray = data & (aligned.bins >= 2)
    return result


def _shares(counts: FloatArray, rows: BoolArray) -> FloatArray:
    """Each row's counts as shares of its total; rows not selected are all 0."""
    counts = np.where(rows[:, np.newaxis], counts, 0.0)
    total = counts.sum(axis=1, keepdims=True)
    shares: FloatArray = np.divide(counts, total, out=np.zeros_like(counts), where=total > 0)
    return shares


def _masked(values: FloatArray, missing: BoolArray) -> FloatArray:
    result: FloatArray = np.where(missing, math.nan, values)
    return result
