"""Drift statistics over (series, bins) count arrays (evergreen.analysis)."""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from scipy import special, stats
from scipy.spatial import distance

from evergreen.analysis import (
    AlignedHistograms,
    DriftMethod,
    SeriesKey,
    WindowPair,
    chi_square,
    drift_scores,
    effective_samples,
    jensen_shannon,
    ks_statistic,
    psi,
    representative_points,
    wasserstein,
)
from evergreen.analysis.series import BoolArray, FloatArray
from evergreen.analysis.statistics import PSI_EPSILON
from evergreen.errors import AnalysisError

pytestmark = pytest.mark.filterwarnings("error")

INF = math.inf
Statistic = Callable[[FloatArray, FloatArray], FloatArray]


def rows(*values: list[float]) -> FloatArray:
    return np.array(values, dtype=np.float64)


def wasserstein_on_own_bounds(baseline: FloatArray, current: FloatArray) -> FloatArray:
    bounds = np.append(np.arange(1.0, baseline.shape[1]), INF)
    return wasserstein(baseline, current, bounds)


def cramers_v(baseline: FloatArray, current: FloatArray) -> FloatArray:
    return chi_square(baseline, current).cramers_v


def balanced_v(baseline: FloatArray, current: FloatArray) -> FloatArray:
    return chi_square(baseline, current).balanced_v


EVERY: dict[str, Statistic] = {
    "psi": psi,
    "jensenshannon": jensen_shannon,
    "ks": ks_statistic,
    "wasserstein": wasserstein_on_own_bounds,
    "balanced_v": balanced_v,
    "cramers_v": cramers_v,
}
SYMMETRIC = ("psi", "jensenshannon", "ks", "balanced_v", "cramers_v")
UNIT_INTERVAL = ("jensenshannon", "ks", "balanced_v", "cramers_v")
PROPORTION_BASED = ("psi", "jensenshannon", "ks", "wasserstein", "balanced_v")


# --- hand-computed values ----------------------------------------------------------------


def test_psi_by_hand() -> None:
    # p = (0.5, 0.5), q = (0.25, 0.75); smoothing: (x + e) / (1 + 2e) for both bins.
    e = PSI_EPSILON
    p1 = p2 = (0.5 + e) / (1 + 2 * e)
    q1, q2 = (0.25 + e) / (1 + 2 * e), (0.75 + e) / (1 + 2 * e)
    expected = (q1 - p1) * math.log(q1 / p1) + (q2 - p2) * math.log(q2 / p2)
    assert psi(rows([50, 50]), rows([25, 75]))[0] == pytest.approx(expected, rel=1e-12)
    # Without smoothing: 0.25 ln 2 + 0.25 ln 1.5 = 0.274653.
    assert psi(rows([50, 50]), rows([25, 75]), epsilon=1e-15)[0] == pytest.approx(0.274653, 1e-5)


def test_psi_empty_bin_is_smoothed_to_a_finite_value() -> None:
    # p = (1, 0), q = (0.5, 0.5): the empty baseline bin gets e before renormalising.
    e = PSI_EPSILON
    p1, p2 = (1 + e) / (1 + 2 * e), e / (1 + 2 * e)
    q1 = q2 = (0.5 + e) / (1 + 2 * e)
    expected = (q1 - p1) * math.log(q1 / p1) + (q2 - p2) * math.log(q2 / p2)
    # About (0.5 - 1) ln(0.5 / 1) + (0.5 - 0) ln(0.5 / 1e-4) = 0.347 + 4.259 = 4.605.
    assert expected == pytest.approx(-0.5 * math.log(0.5) + 0.5 * math.log(0.5 / 1e-4), rel=1e-3)
    assert psi(rows([10, 0]), rows([4, 4]))[0] == pytest.approx(expected, rel=1e-12)


def test_psi_bins_empty_in_both_windows_contribute_nothing() -> None:
    assert psi(rows([1, 0, 3, 0]), rows([2, 0, 1, 0]))[0] == psi(rows([1, 3]), rows([2, 1]))[0]


def test_psi_rejects_a_non_positive_epsilon() -> None:
    with pytest.raises(AnalysisError):
        psi(rows([1, 1]), rows([1, 1]), epsilon=0)


def test_jensen_shannon_by_hand() -> None:
    # p = (0.5, 0.5), q = (1, 0), m = (0.75, 0.25), base 2.
    divergence = 0.5 * (0.5 * math.log2(0.5 / 0.75) + 0.5 * math.log2(0.5 / 0.25)) + 0.5 * (
        1.0 * math.log2(1 / 0.75)
    )
    assert jensen_shannon(rows([3, 3]), rows([7, 0]))[0] == pytest.approx(math.sqrt(divergence))
    # Disjoint supports are the maximum distance, 1.
    assert jensen_shannon(rows([5, 0]), rows([0, 2]))[0] == pytest.approx(1.0)


def test_ks_by_hand() -> None:
    # CDF_b = (0.25, 0.5, 1), CDF_c = (0.5, 0.75, 1): the largest gap is 0.25.
    assert ks_statistic(rows([1, 1, 2]), rows([2, 1, 1]))[0] == pytest.approx(0.25)


def test_representative_points_by_hand() -> None:
    # (-inf, 1] at 1; (1, 2] at 1.5; (2, 3] at 2.5; (3, +inf) at 3.
    assert representative_points(np.array([1, 2, 3, INF])).tolist() == [[1, 1.5, 2.5, 3]]
    # With bound 2 unknown, (1, 3] is one bin at 2, and column 1 repeats column 0's point.
    known = np.array([[True, False, True, True]])
    assert representative_points(np.array([1, 2, 3, INF]), known).tolist() == [[1, 1, 2, 3]]
    # Only +Inf known: the single bin sits at 0.
    only_inf = np.array([[False, True]])
    assert representative_points(np.array([5, INF]), only_inf).tolist() == [[0, 0]]
    # Leading unknown columns borrow the first known point, so points never decrease.
    leading = np.array([[False, True, True]])
    assert representative_points(np.array([1, 2, INF]), leading).tolist() == [[2, 2, 2]]


def test_wasserstein_by_hand() -> None:
    # Points 1, 1.5, 2.5, 3. Baseline: half at 1.5 and 2.5 (mean 2, std 0.5).
    # Current: half at 2.5 and 3. W = 0.5 * (2.5 - 1.5) + 0.5 * (3 - 2.5) = 0.75.
    bounds = np.array([1, 2, 3, INF])
    score = wasserstein(rows([0, 1, 1, 0]), rows([0, 0, 1, 1]), bounds)
    assert score[0] == pytest.approx(0.75 / 0.5)


def test_wasserstein_with_a_flat_baseline() -> None:
    bounds = np.array([1, 2, INF])
    assert wasserstein(rows([0, 4, 0]), rows([0, 9, 0]), bounds)[0] == 0
    assert wasserstein(rows([0, 4, 0]), rows([0, 9, 1]), bounds)[0] == INF


def test_chi_square_by_hand() -> None:
    # Table [[10, 20], [20, 10]]: every expected count is 15, chi2 = 4 * 5^2 / 15 = 6.667.
    result = chi_square(rows([10, 20]), rows([20, 10]))
    assert result.statistic[0] == pytest.approx(20 / 3)
    assert result.dof.tolist() == [1]
    assert result.p_value[0] == pytest.approx(0.0098232, rel=1e-4)
    # V = sqrt(6.667 / 60) = 1/3; equal window totals: the balanced V is the same.
    assert result.cramers_v[0] == pytest.approx(1 / 3)
    assert result.balanced_v[0] == pytest.approx(1 / 3)


def test_balanced_v_ignores_the_window_size_ratio() -> None:
    # Same proportions as above, current window 10x smaller: V shrinks, the balanced V not.
    result = chi_square(rows([100, 200]), rows([2, 1]))
    assert result.balanced_v[0] == pytest.approx(1 / 3)
    assert result.cramers_v[0] < 0.15


def test_chi_square_excludes_empty_bins_and_handles_a_single_bin() -> None:
    result = chi_square(rows([10, 0, 20, 0], [5, 0, 0, 0]), rows([20, 0, 10, 0], [7, 0, 0, 0]))
    assert result.dof.tolist() == [1, 0]
    assert result.statistic[1] == 0 and result.p_value[1] == 1 and result.balanced_v[1] == 0


def test_effective_samples_by_hand() -> None:
    totals = effective_samples(np.array([100, 0, 50.5, math.nan]), np.array([300, 10, 0, 5]))
    assert totals.tolist() == [75, 0, 0, 0]


@pytest.mark.parametrize("name", list(EVERY))
def test_rows_without_data_are_nan(name: str) -> None:
    baseline = rows([0, 0, 0], [1, 2, 3], [math.nan, 1, 1])
    current = rows([1, 2, 3], [0, 0, 0], [1, 1, 1])
    assert np.isnan(EVERY[name](baseline, current)).all()


@pytest.mark.parametrize("name", list(EVERY))
def test_bad_shapes_and_negative_counts_raise(name: str) -> None:
    with pytest.raises(AnalysisError):
        EVERY[name](rows([1, 2]), rows([1, 2, 3]))
    with pytest.raises(AnalysisError):
        EVERY[name](rows([1, -2]), rows([1, 2]))


# --- scipy references --------------------------------------------------------------------


def random_counts(seed: int, series: int = 40, bins: int = 12) -> tuple[FloatArray, FloatArray]:
    """Fractional counts with empty bins, including bins empty in both windows."""
    rng = np.random.default_rng(seed)
    baseline = rng.gamma(0.7, 50.0, size=(series, bins)) * (rng.random((series, bins)) > 0.25)
    current = rng.gamma(0.7, 50.0, size=(series, bins)) * (rng.random((series, bins)) > 0.25)
    empty = rng.random((series, bins)) < 0.1
    baseline[empty] = 0
    current[empty] = 0
    return baseline, current


@pytest.mark.parametrize("seed", range(3))
def test_jensen_shannon_matches_scipy(seed: int) -> None:
    baseline, current = random_counts(seed)
    expected = [distance.jensenshannon(b, c, base=2) for b, c in zip(baseline, current, strict=True)]
    assert jensen_shannon(baseline, current) == pytest.approx(expected, rel=1e-9, abs=1e-12)


@pytest.mark.parametrize("seed", range(3))
def test_psi_and_ks_match_a_row_by_row_reference(seed: int) -> None:
    baseline, current = random_counts(seed)
    psi_expected, ks_expected = [], []
    for b, c in zip(baseline, current, strict=True):
        p, q = b / b.sum(), c / c.sum()
        used = (p > 0) | (q > 0)
        p_s = (p[used] + PSI_EPSILON) / (1 + used.sum() * PSI_EPSILON)
        q_s = (q[used] + PSI_EPSILON) / (1 + used.sum() * PSI_EPSILON)
        psi_expected.append(np.sum((q_s - p_s) * np.log(q_s / p_s)))
        ks_expected.append(np.max(np.abs(np.cumsum(p) - np.cumsum(q))))
    assert psi(baseline, current) == pytest.approx(psi_expected, rel=1e-9)
    assert ks_statistic(baseline, current) == pytest.approx(ks_expected, rel=1e-9)


@pytest.mark.parametrize("seed", range(3))
def test_wasserstein_matches_scipy(seed: int) -> None:
    baseline, current = random_counts(seed)
    rng = np.random.default_rng(seed + 100)
    bounds = np.append(np.sort(rng.choice(np.arange(-50.0, 50.0, 0.5), 11, replace=False)), INF)
    # Each row knows its own subset of bounds (always +Inf), as after alignment.
    known = rng.random(baseline.shape) > 0.3
    known[:, -1] = True
    baseline, current = baseline * known, current * known
    points = representative_points(bounds, known)
    expected = []
    for row in range(baseline.shape[0]):
        u, v, x = baseline[row], current[row], points[row]
        if u.sum() == 0 or v.sum() == 0:
            expected.append(math.nan)
            continue
        spread = np.sqrt(np.cov(x, aweights=u, bias=True))
        expected.append(stats.wasserstein_distance(x, x, u, v) / spread)
    assert wasserstein(baseline, current, bounds, known) == pytest.approx(expected, rel=1e-9, nan_ok=True)


@pytest.mark.parametrize("seed", range(3))
def test_chi_square_matches_scipy(seed: int) -> None:
    baseline, current = random_counts(seed)
    result = chi_square(baseline, current)
    for row in range(baseline.shape[0]):
        used = (baseline[row] + current[row]) > 0
        table = np.vstack([baseline[row, used], current[row, used]])
        reference = stats.chi2_contingency(table, correction=False)
        assert result.statistic[row] == pytest.approx(reference.statistic, rel=1e-9)
        assert result.p_value[row] == pytest.approx(reference.pvalue, rel=1e-6, abs=1e-300)
        assert result.dof[row] == reference.dof
        assert result.cramers_v[row] == pytest.approx(math.sqrt(reference.statistic / table.sum()), rel=1e-9)
        proportions = table / table.sum(axis=1, keepdims=True)
        balanced = stats.chi2_contingency(proportions, correction=False).statistic
        assert result.balanced_v[row] == pytest.approx(math.sqrt(balanced / 2), rel=1e-9)


# --- properties --------------------------------------------------------------------------

counts = st.one_of(st.just(0.0), st.floats(min_value=1e-3, max_value=1e6))
shapes = st.tuples(st.integers(1, 4), st.integers(1, 8))


@st.composite
def count_pairs(draw: st.DrawFn) -> tuple[FloatArray, FloatArray]:
    shape = draw(shapes)
    baseline = draw(hnp.arrays(np.float64, shape, elements=counts))
    current = draw(hnp.arrays(np.float64, shape, elements=counts))
    return baseline, current


def has_data(*arrays: FloatArray) -> BoolArray:
    data: BoolArray = np.logical_and.reduce([a.sum(axis=1) > 0 for a in arrays])
    return data


@settings(max_examples=80, deadline=None)
@given(count_pairs())
def test_identical_histograms_score_zero(pair: tuple[FloatArray, FloatArray]) -> None:
    baseline, _ = pair
    data = has_data(baseline)
    for name, statistic in EVERY.items():
        score = statistic(baseline, baseline.copy())
        assert np.all(score[data] == 0), name
        assert np.isnan(score[~data]).all(), name


@settings(max_examples=80, deadline=None)
@given(count_pairs())
def test_symmetric_statistics_are_symmetric(pair: tuple[FloatArray, FloatArray]) -> None:
    baseline, current = pair
    for name in SYMMETRIC:
        forward, backward = EVERY[name](baseline, current), EVERY[name](current, baseline)
        assert forward == pytest.approx(backward, rel=1e-9, abs=1e-12, nan_ok=True), name
    p_forward = chi_square(baseline, current).p_value
    p_backward = chi_square(current, baseline).p_value
    assert p_forward == pytest.approx(p_backward, rel=1e-6, abs=1e-12, nan_ok=True)


def test_wasserstein_is_not_symmetric() -> None:
    bounds = np.array([1, 2, 3, INF])
    # Distances are in units of the baseline's spread: a narrow baseline inflates them.
    narrow, wide = rows([0, 9, 1, 0]), rows([5, 0, 0, 5])
    assert wasserstein(narrow, wide, bounds)[0] != pytest.approx(wasserstein(wide, narrow, bounds)[0])


@settings(max_examples=80, deadline=None)
@given(count_pairs())
def test_statistics_stay_in_their_ranges(pair: tuple[FloatArray, FloatArray]) -> None:
    baseline, current = pair
    data = has_data(baseline, current)
    for name, statistic in EVERY.items():
        score = statistic(baseline, current)
        assert np.isnan(score[~data]).all(), name
        assert np.all(score[data] >= 0), name
        if name in UNIT_INTERVAL:
            assert np.all(score[data] <= 1), name
    p_value = chi_square(baseline, current).p_value[data]
    assert np.all((p_value >= 0) & (p_value <= 1))


@settings(max_examples=80, deadline=None)
@given(count_pairs(), st.floats(min_value=1e-3, max_value=1e3))
def test_proportion_based_statistics_ignore_window_size(
    pair: tuple[FloatArray, FloatArray], factor: float
) -> None:
    baseline, current = pair
    # abs=1e-6: a square root (JS, V) turns 1e-16 rounding noise of equal shapes into 1e-8.
    for name in PROPORTION_BASED:
        statistic = EVERY[name]
        assert statistic(baseline, current * factor) == pytest.approx(
            statistic(baseline, current), rel=1e-6, abs=1e-6, nan_ok=True
        ), name
        assert statistic(baseline * factor, current) == pytest.approx(
            statistic(baseline, current), rel=1e-6, abs=1e-6, nan_ok=True
        ), name
    # Plain Cramér's V depends on the window ratio only: scaling both windows keeps it.
    assert cramers_v(baseline * factor, current * factor) == pytest.approx(
        cramers_v(baseline, current), rel=1e-6, abs=1e-6, nan_ok=True
    )


@settings(max_examples=40, deadline=None)
@given(count_pairs(), st.integers(0, 3))
def test_zero_totals_give_nan_never_zero(pair: tuple[FloatArray, FloatArray], row: int) -> None:
    baseline, current = pair
    row %= baseline.shape[0]
    silent_baseline, silent_current = baseline.copy(), current.copy()
    silent_baseline[row] = 0
    silent_current[row] = 0
    for name, statistic in EVERY.items():
        assert math.isnan(statistic(silent_baseline, current)[row]), name
        assert math.isnan(statistic(baseline, silent_current)[row]), name
    assert math.isnan(chi_square(silent_baseline, current).p_value[row])


# --- drift_scores ------------------------------------------------------------------------


def aligned_of(baseline: FloatArray, current: FloatArray, known: np.ndarray) -> AlignedHistograms:
    series, bins = baseline.shape
    return AlignedHistograms(
        keys=tuple(SeriesKey(f"f{i}") for i in range(series)),
        upper_bounds=np.append(np.arange(1.0, bins), INF),
        baseline=baseline,
        current=current,
        baseline_total=baseline.sum(axis=1),
        current_total=current.sum(axis=1),
        known_bounds=known,
    )


def test_drift_scores_for_every_method_with_p_values() -> None:
    baseline = rows([10, 20, 30], [10, 20, 30], [0, 0, 0], [0, 0, 5])
    current = rows([30, 20, 10], [10, 20, 30], [1, 2, 3], [0, 0, 5])
    known = np.ones(baseline.shape, dtype=bool)
    known[3, :2] = False  # only +Inf in common: nothing to compare
    aligned = aligned_of(baseline, current, known)
    references = {
        DriftMethod.PSI: psi,
        DriftMethod.JENSENSHANNON: jensen_shannon,
        DriftMethod.KS: ks_statistic,
        DriftMethod.WASSERSTEIN: wasserstein_on_own_bounds,
        DriftMethod.CHISQUARE: balanced_v,
    }
    p_value = chi_square(baseline, current).p_value
    for method, reference in references.items():
        scores = drift_scores(method, aligned)
        assert scores.method is method
        assert scores.score[:2] == pytest.approx(reference(baseline, current)[:2])
        assert scores.score[1] == 0
        assert np.isnan(scores.score[2:]).all()
        assert scores.p_value[:2] == pytest.approx(p_value[:2])
        assert np.isnan(scores.p_value[2:]).all()
        assert scores.no_data.tolist() == [False, False, True, True]
        assert scores.bins.tolist() == [3, 3, 3, 1]
    assert drift_scores("ks", aligned).method is DriftMethod.KS
    samples = drift_scores("ks", aligned).effective_samples
    assert samples.tolist() == pytest.approx([30, 30, 0, 2.5])


def test_unknown_method_raises() -> None:
    aligned = aligned_of(rows([1, 1]), rows([1, 1]), np.ones((1, 2), dtype=bool))
    with pytest.raises(AnalysisError, match="unknown drift method 'kl'"):
        drift_scores("kl", aligned)


def test_top_returns_the_highest_scores_without_nan() -> None:
    baseline = rows([8, 8], [8, 8], [0, 0], [8, 8], [8, 8])
    current = rows([8, 8], [12, 4], [1, 1], [4, 12], [10, 6])
    aligned = aligned_of(baseline, current, np.ones(baseline.shape, dtype=bool))
    scores = drift_scores(DriftMethod.KS, aligned)
    top = scores.top(3)
    assert [str(key) for key, _ in top] == ["f1:*", "f3:*", "f4:*"]
    assert [score for _, score in top] == [0.25, 0.25, 0.125]
    assert len(scores.top(10)) == 4
    assert scores.top(0) == []


# --- the shared-work shortcuts equal the plain formulas -----------------------------------


def plain_statistics(baseline: FloatArray, current: FloatArray) -> dict[str, FloatArray]:
    """PSI, balanced V and the chi-square p-value by the plain, one-array-per-step formulas."""
    b_total, c_total = baseline.sum(axis=1), current.sum(axis=1)
    no_data = ~((np.isfinite(b_total) & (b_total > 0)) & (np.isfinite(c_total) & (c_total > 0)))
    p = baseline / np.where(no_data, 1.0, b_total)[:, np.newaxis]
    q = current / np.where(no_data, 1.0, c_total)[:, np.newaxis]
    used = p + q > 0
    scale = 1 + np.count_nonzero(used, axis=1)[:, np.newaxis] * PSI_EPSILON
    p_s = np.where(used, (p + PSI_EPSILON) / scale, 1.0)
    q_s = np.where(used, (q + PSI_EPSILON) / scale, 1.0)
    column = baseline + current
    in_table = column > 0
    gap = (p - q) ** 2
    per_count = np.divide(gap, column, out=np.zeros_like(gap), where=in_table)
    statistic = b_total * c_total * np.sum(per_count, axis=1)
    per_share = np.divide(gap, p + q, out=np.zeros_like(gap), where=in_table)
    dof = np.maximum(np.count_nonzero(in_table, axis=1) - 1, 0)
    p_value = np.where(dof > 0, special.chdtrc(np.maximum(dof, 1), statistic), 1.0)
    return {
        "psi": np.where(no_data, math.nan, np.sum((q_s - p_s) * np.log(q_s / p_s), axis=1)),
        "balanced_v": np.where(no_data, math.nan, np.sqrt(np.clip(np.sum(per_share, axis=1) / 2, 0, 1))),
        "p_value": np.where(no_data, math.nan, p_value),
        "statistic": np.where(no_data, math.nan, statistic),
    }


@pytest.mark.parametrize("seed", range(4))
def test_statistics_equal_the_plain_formulas_bit_for_bit(seed: int) -> None:
    baseline, current = random_counts(seed)
    baseline[0] = 0  # a row without data
    baseline[1, 3] = math.nan  # a row with an unknown count
    expected = plain_statistics(baseline, current)
    windows = WindowPair(baseline, current)
    chi = windows.chi_square()
    actual = {
        "psi": windows.psi(),
        "balanced_v": windows.balanced_v(),
        "p_value": windows.chi_square_p_value(),
        "statistic": chi.statistic,
    }
    for name, values in expected.items():
        assert np.array_equal(actual[name], values, equal_nan=True), name
    assert np.array_equal(chi.p_value, expected["p_value"], equal_nan=True)
    assert np.array_equal(chi.balanced_v, expected["balanced_v"], equal_nan=True)


def test_window_pair_stacks_both_windows() -> None:
    baseline, current = rows([1, 2], [3, 4]), rows([5, 6], [7, 8])
    windows = WindowPair(baseline, current)
    assert windows.counts.shape == (2, 2, 2)
    assert windows.baseline.tolist() == baseline.tolist() and windows.current.tolist() == current.tolist()
    assert windows.totals.tolist() == [[3, 7], [11, 15]]
    assert windows.p == pytest.approx(np.array([[1 / 3, 2 / 3], [3 / 7, 4 / 7]]))
