"""Signatures of data-pipeline breaks (evergreen.analysis.signatures)."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from scipy import stats

from evergreen.analysis import AlignedHistograms, HistogramSet, SeriesKey, align
from evergreen.analysis.series import BoolArray, FloatArray
from evergreen.analysis.signatures import (
    CONVERSION_CENTER_TOLERANCE,
    CONVERSION_SLOPE_TOLERANCE,
    CONVERSIONS,
    QUANTILE_LEVELS,
    Conversion,
    affine_fit,
    bucket_quantiles,
    concentration,
    known_conversion,
    outside_support,
    signatures,
    window_quantiles,
)
from evergreen.errors import AnalysisError

pytestmark = pytest.mark.filterwarnings("error")

INF = math.inf
NAN = math.nan
Cdf = Callable[[FloatArray], FloatArray]
Rows = Sequence[Sequence[float]] | Sequence[FloatArray]

#: Buckets wide enough to hold a temperature in °C and in °F: -10, -5, ..., 110.
TEMPERATURE_BOUNDS = np.append(np.arange(-10.0, 111.0, 5.0), INF)
#: Buckets sized for °C only: -10, -8, ..., 40.
CELSIUS_BOUNDS = np.append(np.arange(-10.0, 41.0, 2.0), INF)
#: Exponential buckets, 10 per decade from 0.001 to 10,000 (71 bounds).
DECADE_BOUNDS = np.append(10 ** (np.arange(-30, 41) / 10), INF)
#: A session length in seconds: 0 (nothing happened), then up to an hour.
SESSION_BOUNDS = np.array([0, 1, 5, 10, 30, 60, 120, 300, 600, 1800, 3600, INF])


def keys(count: int) -> tuple[SeriesKey, ...]:
    return tuple(SeriesKey(f"f{i}") for i in range(count))


def aligned_cumulative(bounds: FloatArray, baseline: Rows, current: Rows) -> AlignedHistograms:
    """Align cumulative counts per bound (NaN: bound unknown) the way real windows are."""
    names = keys(len(baseline))
    return align(
        HistogramSet(names, np.asarray(bounds, dtype=float), np.array(baseline, dtype=float)),
        HistogramSet(names, np.asarray(bounds, dtype=float), np.array(current, dtype=float)),
    )


def expected(bounds: FloatArray, cdf: Cdf, n: float = 10_000) -> FloatArray:
    """Cumulative counts of ``n`` values distributed exactly as ``cdf`` (no sampling noise)."""
    counts: FloatArray = n * np.where(np.isfinite(bounds), cdf(np.where(np.isfinite(bounds), bounds, 0)), 1)
    return counts


def observed(bounds: FloatArray, values: FloatArray) -> FloatArray:
    """Cumulative counts of ``values`` at or below each bound, as a Prometheus histogram has."""
    counts: FloatArray = np.searchsorted(np.sort(values), bounds, side="right").astype(float)
    return counts


def from_cdfs(bounds: FloatArray, baseline: Sequence[Cdf], current: Sequence[Cdf]) -> AlignedHistograms:
    return aligned_cumulative(
        bounds, [expected(bounds, cdf) for cdf in baseline], [expected(bounds, cdf) for cdf in current]
    )


def per_bin(baseline: Rows, current: Rows, known: BoolArray | None = None) -> AlignedHistograms:
    """Per-bin counts on bounds 1, 2, ..., +Inf, every bound known unless told otherwise."""
    b, c = np.array(baseline, dtype=float), np.array(current, dtype=float)
    return AlignedHistograms(
        keys=keys(b.shape[0]),
        upper_bounds=np.append(np.arange(1.0, b.shape[1]), INF),
        baseline=b,
        current=c,
        baseline_total=b.sum(axis=1),
        current_total=c.sum(axis=1),
        known_bounds=np.ones(b.shape, dtype=bool) if known is None else known,
    )


# --- quantiles ---------------------------------------------------------------------------


def test_quantile_by_hand() -> None:
    # Bounds 0, 1, 2, 4, 8, +Inf; cumulative shares 0, .1, .3, .6, 1, 1.
    counts = np.array([[0, 10, 20, 30, 40, 0]], dtype=float)
    bounds = np.array([0, 1, 2, 4, 8, INF])
    known = np.ones(counts.shape, dtype=bool)
    quantile = bucket_quantiles(counts, bounds, known, np.array([0.05, 0.5, 0.9]))
    # 0.05 is halfway through (0, 1]; 0.5 is 2/3 through (2, 4]; 0.9 is 3/4 through (4, 8].
    assert quantile[0].tolist() == pytest.approx([0.5, 2 + 2 * (0.2 / 0.3), 7.0])


@pytest.mark.parametrize("seed", range(3))
def test_quantiles_interpolate_the_cdf_like_np_interp(seed: int) -> None:
    rng = np.random.default_rng(seed)
    bounds = np.append(np.sort(rng.choice(np.arange(-100.0, 100.0, 0.5), 15, replace=False)), INF)
    # Every bin holds mass (a strictly increasing CDF); first and +Inf bins too.
    counts = rng.gamma(2.0, 10.0, size=(8, bounds.size)) + 0.1
    shares = np.cumsum(counts, axis=1) / counts.sum(axis=1, keepdims=True)
    quantile = bucket_quantiles(counts, bounds, np.ones(counts.shape, dtype=bool), QUANTILE_LEVELS)
    for row in range(counts.shape[0]):
        # Levels inside the finite part of the CDF; the others fall in open bins.
        inside = (shares[row, 0] < QUANTILE_LEVELS) & (shares[row, -2] >= QUANTILE_LEVELS)
        reference = np.interp(QUANTILE_LEVELS[inside], shares[row, :-1], bounds[:-1])
        assert quantile[row, inside] == pytest.approx(reference, rel=1e-12, abs=1e-12)
        assert np.isnan(quantile[row, ~inside]).all()


def test_levels_in_the_open_buckets_are_unusable() -> None:
    # 10 % in (-Inf, 0], 80 % in (0, 10], 10 % in (10, +Inf).
    counts = np.array([[10, 80, 10]], dtype=float)
    levels = np.array([0.05, 0.1, 0.5, 0.9, 0.95])
    quantile = bucket_quantiles(counts, np.array([0, 10, INF]), np.ones((1, 3), dtype=bool), levels)
    # Ranks exactly on a finite bound are that bound; those inside open bins have no place.
    assert quantile[0, 1:4].tolist() == pytest.approx([0, 5, 10])
    assert np.isnan(quantile[0, [0, 4]]).all()


def test_a_rank_on_a_bound_is_the_bound_whatever_the_rounding() -> None:
    # 11 of 20 values are at or below 1: level 0.55 is exactly bound 1. In floating point,
    # 0.55 * 0.2 exceeds 0.05 + 0.06 by one rounding error, which without snapping would
    # push the rank into the +Inf bucket for the second row only.
    counts = np.array([[5, 6, 9], [0.05, 0.06, 0.09]])
    quantile = bucket_quantiles(counts, np.array([0, 1, INF]), np.ones((2, 3), dtype=bool), np.array([0.55]))
    assert quantile[:, 0].tolist() == [1.0, 1.0]


def test_quantiles_respect_each_series_known_bounds() -> None:
    bounds = np.array([1, 2, 3, 10, 20, INF])
    # f0 knows 1, 2, 3; f1 knows 10, 20 (a different layout); f2 knows 1 and 3 but not 2.
    baseline = [
        [10, 20, 30, NAN, NAN, 40],
        [NAN, NAN, NAN, 10, 30, 40],
        [10, NAN, 30, NAN, NAN, 40],
    ]
    aligned = aligned_cumulative(bounds, baseline, baseline)
    quantile = window_quantiles(aligned, np.array([0.125, 0.375, 0.625])).baseline
    # f0 (shares .25 .5 .75 1): 0.125 is in (-Inf, 1]; 0.375 and 0.625 halve (1, 2] and (2, 3].
    assert math.isnan(quantile[0, 0])
    assert quantile[0, 1:].tolist() == pytest.approx([1.5, 2.5])
    # f1: its first bin is (-Inf, 10], not (3, 10]: 0.125 is unusable; ranks 15 and 25 of 40
    # are 1/4 and 3/4 through (10, 20], which holds 20.
    assert math.isnan(quantile[1, 0])
    assert quantile[1, 1:].tolist() == pytest.approx([12.5, 17.5])
    # f2: bound 2 is unknown, so (1, 3] is one bin holding 20: ranks 15 and 25 are 1/4 and
    # 3/4 through it (not through (2, 3]).
    assert quantile[2, 1:].tolist() == pytest.approx([1.5, 2.5])


def test_quantiles_without_data_are_nan() -> None:
    counts = np.array([[0, 0, 0], [1, 2, 3]], dtype=float)
    quantile = bucket_quantiles(counts, np.array([1, 2, INF]), np.ones((2, 3), dtype=bool))
    assert np.isnan(quantile[0]).all()
    aligned = per_bin([[1, 2, 3], [0, 0, 0]], [[0, 0, 0], [1, 2, 3]])
    both = window_quantiles(aligned)
    assert np.isnan(both.baseline).all() and np.isnan(both.current).all()


@pytest.mark.parametrize("levels", [[], [0.0, 0.5], [0.5, 1.0], [[0.5]], [NAN], [0.5, 0.2], [0.5, 0.5]])
def test_levels_outside_the_open_unit_interval_raise(levels: list[float]) -> None:
    with pytest.raises(AnalysisError):
        bucket_quantiles(np.ones((1, 2)), np.array([1, INF]), np.ones((1, 2), dtype=bool), np.array(levels))


# --- affine fit and conversions ----------------------------------------------------------


def test_affine_fit_by_hand() -> None:
    # Uniform on [0, 10] against uniform on [5, 25]: every quantile maps as 2x + 5 exactly.
    bounds = np.append(np.arange(0.0, 26.0), INF)
    baseline = stats.uniform(0, 10).cdf
    current = stats.uniform(5, 20).cdf
    fit = affine_fit(from_cdfs(bounds, [baseline], [current]))
    assert fit.slope[0] == pytest.approx(2.0, rel=1e-9)
    assert fit.offset[0] == pytest.approx(5.0, rel=1e-9)
    assert fit.r_squared[0] == pytest.approx(1.0, rel=1e-12)
    assert fit.points.tolist() == [19]
    assert fit.baseline_center[0] == pytest.approx(5.0)
    assert fit.baseline_spread[0] == pytest.approx(10 * np.std(QUANTILE_LEVELS))


def test_affine_fit_needs_four_points() -> None:
    aligned = from_cdfs(
        np.append(np.arange(0.0, 26.0), INF), [stats.uniform(0, 10).cdf], [stats.uniform(5, 20).cdf]
    )
    assert math.isnan(affine_fit(aligned, np.array([0.2, 0.4, 0.6])).slope[0])
    four = affine_fit(aligned, np.array([0.2, 0.4, 0.6, 0.8]))
    assert four.slope[0] == pytest.approx(2.0) and four.points.tolist() == [4]


CELSIUS = stats.norm(21, 6)
FAHRENHEIT = stats.norm(21 * 1.8 + 32, 6 * 1.8)


@pytest.mark.parametrize("sampled", [False, True], ids=["expected", "sampled"])
def test_celsius_to_fahrenheit_is_recognised(sampled: bool) -> None:
    if sampled:
        values = CELSIUS.rvs(20_000, random_state=np.random.default_rng(1))
        aligned = aligned_cumulative(
            TEMPERATURE_BOUNDS,
            [observed(TEMPERATURE_BOUNDS, values)],
            [observed(TEMPERATURE_BOUNDS, values * 1.8 + 32)],
        )
    else:
        aligned = from_cdfs(TEMPERATURE_BOUNDS, [CELSIUS.cdf], [FAHRENHEIT.cdf])
    found = signatures(aligned)
    assert found.fit.slope[0] == pytest.approx(1.8, rel=0.05)
    assert found.fit.offset[0] == pytest.approx(32, rel=0.05)
    assert found.fit.r_squared[0] >= 0.99
    assert found.conversion.tolist() == ["celsius_to_fahrenheit"]


@pytest.mark.parametrize(
    ("bounds", "baseline", "current", "name"),
    [
        (TEMPERATURE_BOUNDS, FAHRENHEIT, CELSIUS, "fahrenheit_to_celsius"),
        # Kelvin and Celsius in one layout: -10..40 and 260..320 in steps of 2.
        (
            np.concatenate([np.arange(-10.0, 41, 2), np.arange(260.0, 321, 2), [INF]]),
            CELSIUS,
            stats.norm(21 + 273.15, 6),
            "celsius_to_kelvin",
        ),
        (DECADE_BOUNDS, stats.lognorm(0.5, scale=500), stats.lognorm(0.5, scale=0.5), "divided_by_1000"),
        (DECADE_BOUNDS, stats.lognorm(0.5, scale=0.5), stats.lognorm(0.5, scale=500), "times_1000"),
        # A percentage read as a fraction; buckets 0.01 wide up to 1, then 1 wide up to 100.
        (
            np.concatenate([np.arange(0.01, 1.0, 0.01), np.arange(1.0, 101.0), [INF]]),
            stats.beta(2, 5, scale=100),
            stats.beta(2, 5, scale=1),
            "divided_by_100",
        ),
        (
            DECADE_BOUNDS,
            stats.lognorm(0.4, scale=30),
            stats.lognorm(0.4, scale=30 * 2.20462262),
            "kilograms_to_pounds",
        ),
    ],
    ids=["F-C", "C-K", "g-kg", "kg-g", "percent-fraction", "kg-lb"],
)
def test_other_conversions_are_recognised_when_the_buckets_allow(
    bounds: FloatArray, baseline: stats.rv_continuous, current: stats.rv_continuous, name: str
) -> None:
    found = signatures(from_cdfs(bounds, [baseline.cdf], [current.cdf]))
    assert found.conversion.tolist() == [name]


def test_warming_is_not_a_unit_change() -> None:
    warmer = stats.norm(23, 6)
    warmer_and_wider = stats.norm(23, 6 * 1.05)
    found = signatures(from_cdfs(TEMPERATURE_BOUNDS, [CELSIUS.cdf] * 2, [warmer.cdf, warmer_and_wider.cdf]))
    assert found.fit.slope.tolist() == pytest.approx([1.0, 1.05], abs=0.02)
    # The offset stays near the shift (2 °C), nowhere near 273.15 (°C→K).
    assert np.all(np.abs(found.fit.offset) < 3)
    assert found.conversion.tolist() == ["", ""]
    assert np.all(found.outside_support < 0.01)


def test_a_price_increase_is_not_a_unit_change() -> None:
    amount = stats.lognorm(0.6, scale=40)
    found = signatures(from_cdfs(DECADE_BOUNDS, [amount.cdf], [stats.lognorm(0.6, scale=48).cdf]))
    assert found.fit.slope[0] == pytest.approx(1.2, rel=0.03)
    assert found.fit.r_squared[0] > 0.99
    assert found.conversion.tolist() == [""]


def test_fahrenheit_in_celsius_buckets_leaves_no_quantiles_but_lands_outside_the_support() -> None:
    found = signatures(from_cdfs(CELSIUS_BOUNDS, [CELSIUS.cdf], [FAHRENHEIT.cdf]))
    assert found.fit.points[0] < 4
    assert math.isnan(found.fit.slope[0]) and math.isnan(found.fit.r_squared[0])
    assert found.conversion.tolist() == [""]
    assert found.outside_support[0] > 0.99


def test_known_conversion_table_is_unambiguous() -> None:
    # Factors are either equal (°C↔K, whose offsets are 546 apart) or more than two slope
    # tolerances apart, so no line can match two conversions.
    for i, first in enumerate(CONVERSIONS):
        for second in CONVERSIONS[i + 1 :]:
            gap = abs(math.log(first.factor / second.factor))
            assert gap > 2 * CONVERSION_SLOPE_TOLERANCE or (
                gap == 0 and abs(first.offset - second.offset) > 500
            ), (first.name, second.name)


@pytest.mark.parametrize("conversion", CONVERSIONS, ids=lambda c: c.name)
def test_known_conversion_at_and_beyond_its_tolerances(conversion: Conversion) -> None:
    name, factor, offset = conversion
    center, spread = 20.0, 5.0
    allowed = CONVERSION_CENTER_TOLERANCE * factor * spread
    slopes = factor * np.exp(
        [0.0, 0.99, -0.99, 1.01, -1.01, 0.0, 0.0, 0.0, 0.0] * np.array(CONVERSION_SLOPE_TOLERANCE)
    )
    # The line's value at the centre moved by a share of the allowed gap (rows 5-8).
    shifts = np.array([0, 0, 0, 0, 0, 0.99, -0.99, 1.01, -1.01]) * allowed
    # Keep each line through the conversion's value at the centre, plus the shift.
    offsets = factor * center + offset - slopes * center + shifts
    names = known_conversion(slopes, offsets, np.full(9, center), np.full(9, spread))
    assert names.tolist() == [name] * 3 + [""] * 2 + [name] * 2 + [""] * 2


def test_known_conversion_of_nothing_is_nothing() -> None:
    names = known_conversion(
        np.array([NAN, -1.8, 1.8, 1.8]),
        np.array([32, 32, NAN, 32]),
        np.full(4, 20.0),
        np.array([5, 5, 5, NAN]),
    )
    assert names.tolist() == ["", "", "", ""]


def test_a_crooked_fit_names_no_conversion() -> None:
    # Baseline unimodal, current bimodal with the °C→°F spread: the quantile line bends.
    bimodal: Cdf = lambda x: (stats.norm(45, 3).cdf(x) + stats.norm(95, 3).cdf(x)) / 2  # noqa: E731
    fit = affine_fit(from_cdfs(TEMPERATURE_BOUNDS, [CELSIUS.cdf], [bimodal]))
    assert fit.r_squared[0] < 0.98
    assert fit.conversion().tolist() == [""]


# --- concentration -----------------------------------------------------------------------


def test_concentration_by_hand() -> None:
    found = concentration(per_bin([[1, 2, 1, 0], [5, 5, 0, 0]], [[0, 0, 9, 1], [0, 0, 0, 0]]))
    assert found.baseline_max_share[0] == 0.5
    assert found.current_max_share[0] == pytest.approx(0.9)
    assert found.current_peak_bin.tolist() == [2, -1]
    assert found.baseline_share_at_current_peak[0] == 0.25
    assert np.isnan([found.baseline_max_share[1], found.current_max_share[1]]).all()


def test_collapse_to_a_constant() -> None:
    rng = np.random.default_rng(7)
    sessions = rng.lognormal(math.log(120), 1.0, size=5_000)
    # The pipeline now sends 0 for every session.
    aligned = aligned_cumulative(
        SESSION_BOUNDS, [observed(SESSION_BOUNDS, sessions)], [observed(SESSION_BOUNDS, np.zeros(800))]
    )
    found = concentration(aligned)
    assert found.current_max_share[0] == pytest.approx(1.0)
    assert found.baseline_max_share[0] < 0.5
    assert found.current_peak_bin.tolist() == [0]
    assert found.baseline_share_at_current_peak[0] == 0


def test_a_naturally_peaked_feature_keeps_its_concentration() -> None:
    # Items per order: mostly 1. Two healthy windows of the same distribution.
    bounds = np.array([0, 1, 2, 3, 5, 10, INF])
    items = stats.geom(0.7)
    rng = np.random.default_rng(3)
    aligned = aligned_cumulative(
        bounds,
        [observed(bounds, items.rvs(20_000, random_state=rng).astype(float))],
        [observed(bounds, items.rvs(2_000, random_state=rng).astype(float))],
    )
    found = concentration(aligned)
    assert found.baseline_max_share[0] == pytest.approx(0.7, abs=0.02)
    assert found.current_max_share[0] == pytest.approx(found.baseline_max_share[0], abs=0.03)
    assert found.baseline_share_at_current_peak[0] == found.baseline_max_share[0]


# --- outside the support -----------------------------------------------------------------


def test_outside_support_by_hand() -> None:
    # tail 1 %: baseline shares up to each bin .000 .005 .995 1 1 -> bins 0, 1 are in the low
    # tail; from each bin on 1 1 .995 .005 0 -> bins 3, 4 in the high tail. The baseline
    # holds 1 % there, the current window 20 %.
    aligned = per_bin([[0, 5, 990, 5, 0]], [[10, 0, 80, 0, 10]])
    assert outside_support(aligned, tail=0.01)[0] == pytest.approx(0.19)
    # With tail 0 only the empty edge bins count.
    assert outside_support(aligned, tail=0.0)[0] == pytest.approx(0.2)


def test_healthy_noise_stays_inside_the_support() -> None:
    rng = np.random.default_rng(11)
    aligned = aligned_cumulative(
        CELSIUS_BOUNDS,
        [observed(CELSIUS_BOUNDS, CELSIUS.rvs(50_000, random_state=rng))],
        [observed(CELSIUS_BOUNDS, CELSIUS.rvs(3_000, random_state=rng))],
    )
    assert outside_support(aligned)[0] < 0.005


@pytest.mark.parametrize("tail", [-0.1, 0.5, NAN])
def test_outside_support_rejects_a_bad_tail(tail: float) -> None:
    with pytest.raises(AnalysisError):
        outside_support(per_bin([[1, 1]], [[1, 1]]), tail)


# --- no data -----------------------------------------------------------------------------


def test_every_signature_is_nan_without_data_or_without_a_common_bound() -> None:
    known = np.ones((4, 5), dtype=bool)
    known[3, :4] = False  # only +Inf in common
    aligned = per_bin(
        [[0, 0, 0, 0, 0], [1, 3, 3, 3, 0], [1, 3, 3, 3, 0], [0, 0, 0, 0, 5]],
        [[1, 3, 3, 3, 0], [0, 0, 0, 0, 0], [1, 2, 3, 4, 0], [0, 0, 0, 0, 5]],
        known,
    )
    found = signatures(aligned)
    missing = [0, 1, 3]
    for values in (
        found.fit.slope,
        found.fit.offset,
        found.fit.r_squared,
        found.outside_support,
        found.concentration.baseline_max_share,
        found.concentration.current_max_share,
        found.concentration.baseline_share_at_current_peak,
    ):
        assert np.isnan(values[missing]).all()
        assert not math.isnan(values[2])
    assert found.concentration.current_peak_bin[missing].tolist() == [-1, -1, -1]
    assert found.conversion.tolist() == ["", "", "", ""]
    assert found.keys == aligned.keys and len(found) == 4


# --- properties --------------------------------------------------------------------------

counts = st.one_of(st.just(0.0), st.floats(min_value=1e-3, max_value=1e6))


@st.composite
def aligned_windows(draw: st.DrawFn) -> AlignedHistograms:
    """Random windows over shared bounds, each row with its own known bounds (as aligned)."""
    series, bins = draw(st.integers(1, 4)), draw(st.integers(2, 12))
    finite = draw(hnp.arrays(np.float64, bins - 1, elements=st.floats(-1e3, 1e3), unique=True))
    bounds = np.append(np.sort(finite), INF)
    known = draw(hnp.arrays(np.bool_, (series, bins)))
    known[:, -1] = True
    baseline = draw(hnp.arrays(np.float64, (series, bins), elements=counts)) * known
    current = draw(hnp.arrays(np.float64, (series, bins), elements=counts)) * known
    return AlignedHistograms(
        keys=keys(series),
        upper_bounds=bounds,
        baseline=baseline,
        current=current,
        baseline_total=baseline.sum(axis=1),
        current_total=current.sum(axis=1),
        known_bounds=known,
    )


def flat_values(aligned: AlignedHistograms) -> dict[str, FloatArray]:
    found = signatures(aligned)
    quantiles = window_quantiles(aligned)
    # Conversions as numbers (1 where one is named), so every value compares the same way.
    return {
        "conversion": (found.conversion != "").astype(float),
        "baseline_quantiles": quantiles.baseline,
        "current_quantiles": quantiles.current,
        "slope": found.fit.slope,
        "offset": found.fit.offset,
        "r_squared": found.fit.r_squared,
        "points": found.fit.points.astype(float),
        "baseline_max_share": found.concentration.baseline_max_share,
        "current_max_share": found.concentration.current_max_share,
        "current_peak_bin": found.concentration.current_peak_bin.astype(float),
        "baseline_share_at_current_peak": found.concentration.baseline_share_at_current_peak,
        "outside_support": found.outside_support,
    }


@settings(max_examples=40, deadline=None)
@given(aligned_windows())
def test_identical_windows_show_no_break(aligned: AlignedHistograms) -> None:
    same = AlignedHistograms(
        keys=aligned.keys,
        upper_bounds=aligned.upper_bounds,
        baseline=aligned.baseline,
        current=aligned.baseline.copy(),
        baseline_total=aligned.baseline_total,
        current_total=aligned.baseline_total,
        known_bounds=aligned.known_bounds,
    )
    found = signatures(same)
    fitted = ~np.isnan(found.fit.slope)
    assert found.fit.slope[fitted] == pytest.approx(1.0, rel=1e-9)
    scale = np.maximum(1.0, np.abs(found.fit.baseline_center[fitted]))
    assert np.all(np.abs(found.fit.offset[fitted]) <= 1e-9 * scale)
    assert found.fit.r_squared[fitted] == pytest.approx(1.0, rel=1e-9)
    assert np.all(found.conversion == "")
    data = ~np.isnan(found.outside_support)
    assert np.all(found.outside_support[data] == 0)
    shares = found.concentration
    assert np.array_equal(shares.baseline_max_share, shares.current_max_share, equal_nan=True)


@settings(max_examples=40, deadline=None)
@given(aligned_windows(), st.floats(min_value=1e-3, max_value=1e3), st.booleans())
def test_scaling_a_window_changes_no_signature(
    aligned: AlignedHistograms, factor: float, baseline: bool
) -> None:
    scaled = AlignedHistograms(
        keys=aligned.keys,
        upper_bounds=aligned.upper_bounds,
        baseline=aligned.baseline * factor if baseline else aligned.baseline,
        current=aligned.current if baseline else aligned.current * factor,
        baseline_total=aligned.baseline_total * factor if baseline else aligned.baseline_total,
        current_total=aligned.current_total if baseline else aligned.current_total * factor,
        known_bounds=aligned.known_bounds,
    )
    before, after = flat_values(aligned), flat_values(scaled)
    for name, values in before.items():
        assert after[name] == pytest.approx(values, rel=1e-6, abs=1e-6, nan_ok=True), name


def per_bin_like(aligned: AlignedHistograms, baseline: FloatArray, current: FloatArray) -> AlignedHistograms:
    return AlignedHistograms(
        keys=aligned.keys,
        upper_bounds=aligned.upper_bounds,
        baseline=baseline,
        current=current,
        baseline_total=baseline.sum(axis=1),
        current_total=current.sum(axis=1),
        known_bounds=aligned.known_bounds,
    )


@settings(max_examples=40, deadline=None)
@given(aligned_windows(), st.integers(0, 3), st.booleans())
def test_a_silent_window_gives_nan_never_zero(aligned: AlignedHistograms, row: int, baseline: bool) -> None:
    row %= len(aligned)
    silenced = (aligned.baseline if baseline else aligned.current).copy()
    silenced[row] = 0
    other = aligned.current if baseline else aligned.baseline
    b, c = (silenced, other) if baseline else (other, silenced)
    values = flat_values(per_bin_like(aligned, b, c))
    for name, array in values.items():
        if name not in ("points", "current_peak_bin", "conversion"):
            assert np.isnan(array[row]).all(), name
    assert values["current_peak_bin"][row] == -1
    assert values["conversion"][row] == 0


@settings(max_examples=40, deadline=None)
@given(aligned_windows())
def test_quantiles_are_ordered_and_inside_the_finite_bounds(aligned: AlignedHistograms) -> None:
    quantiles = window_quantiles(aligned).baseline
    finite = aligned.upper_bounds[:-1]
    usable = ~np.isnan(quantiles)
    if finite.size:
        assert np.all(quantiles[usable] >= finite.min()) and np.all(quantiles[usable] <= finite.max())
    # Where two levels are usable, the higher one is never below the lower one.
    ordered = np.where(usable, quantiles, -INF)
    assert np.all(np.maximum.accumulate(ordered, axis=1)[usable] == quantiles[usable])


def test_a_unit_change_with_clipped_values_is_fitted_on_the_unclipped_buckets() -> None:
    # x100 (units to cents) where the exporter clamps values at its top bound, 500: about an
    # eighth of the current values pile up in the top finite bucket (400, 500].
    bounds = np.array(
        [0.1, 0.2, 0.5, 1, 2, 3, 4, 5, 7.5, 10, 15, 20, 30, 50, 75, 100, 150, 200, 300, 400, 500, INF]
    )
    rng = np.random.default_rng(3)
    baseline = rng.lognormal(math.log(2), 0.8, 20_000)
    current = np.minimum(rng.lognormal(math.log(2), 0.8, 20_000) * 100, 500)
    fit = affine_fit(aligned_cumulative(bounds, [observed(bounds, baseline)], [observed(bounds, current)]))
    # Interpolating the pile-up bent the line to about 70 x baseline + 54 (r² 0.92).
    assert fit.slope[0] == pytest.approx(100, abs=2 * fit.slope_error[0] + 0.5)
    assert 0 < fit.slope_error[0] < 2
    assert fit.r_squared[0] > 0.99
    assert fit.conversion()[0] == "times_100"


def test_an_unclipped_top_bucket_is_kept() -> None:
    fit = affine_fit(
        from_cdfs(
            np.append(np.arange(0.0, 26.0), INF), [stats.uniform(0, 10).cdf], [stats.uniform(5, 20).cdf]
        )
    )
    assert fit.points.tolist() == [19] and fit.slope_error[0] == pytest.approx(0, abs=1e-9)
