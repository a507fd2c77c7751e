"""False discovery rate control (evergreen.analysis.multiple_testing)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from scipy import stats

from evergreen.analysis.multiple_testing import benjamini_hochberg, fdr_adjusted
from evergreen.analysis.series import FloatArray
from evergreen.errors import AnalysisError

pytestmark = pytest.mark.filterwarnings("error")

NAN = math.nan


def p(*values: float) -> FloatArray:
    return np.array(values, dtype=np.float64)


# --- hand-computed -----------------------------------------------------------------------


def test_rejects_up_to_the_last_p_value_under_its_threshold() -> None:
    # m = 4, thresholds k * 0.05 / 4 = 0.0125, 0.025, 0.0375, 0.05.
    assert benjamini_hochberg(p(0.01, 0.02, 0.2, 0.9), 0.05).tolist() == [True, True, False, False]
    assert benjamini_hochberg(p(0.04, 0.01, 0.03, 0.005), 0.05).tolist() == [True, True, True, True]


def test_step_up_rejects_small_p_values_above_their_own_threshold() -> None:
    # 0.03 > 0.0125, but the largest p-value passes its threshold 0.05: all four are rejected.
    assert benjamini_hochberg(p(0.03, 0.031, 0.032, 0.04), 0.05).all()
    # Without the last one passing, none does.
    assert not benjamini_hochberg(p(0.03, 0.031, 0.04, 0.06), 0.05).any()


def test_nan_p_values_are_never_discoveries_and_do_not_count() -> None:
    # m = 2 (thresholds 0.025, 0.05): both pass. Counting the NaNs (m = 4) would reject none.
    assert benjamini_hochberg(p(0.02, NAN, 0.04, NAN), 0.05).tolist() == [True, False, True, False]
    assert not benjamini_hochberg(p(NAN, NAN), 0.05).any()
    assert benjamini_hochberg(p(), 0.05).shape == (0,)


def test_adjusted_p_values_by_hand() -> None:
    # Scaled p * m / k: 0.04, 0.04, 0.2667, 0.9; then the running minimum from the right.
    adjusted = fdr_adjusted(p(0.01, 0.02, 0.2, 0.9, NAN))
    assert adjusted[:4] == pytest.approx([0.04, 0.04, 0.2 * 4 / 3, 0.9])
    assert math.isnan(adjusted[4])


def test_the_shape_is_kept() -> None:
    values = np.array([[0.001, 0.5], [NAN, 0.002]])
    assert benjamini_hochberg(values, 0.05).tolist() == [[True, False], [False, True]]
    assert fdr_adjusted(values).shape == (2, 2)


def test_arbitrary_dependence_is_more_conservative() -> None:
    # m = 4: Benjamini-Yekutieli divides q by 1 + 1/2 + 1/3 + 1/4 = 2.083, so the thresholds
    # are k * 0.006 instead of k * 0.0125.
    values = p(0.001, 0.02, 0.2, 0.9)
    assert benjamini_hochberg(values, 0.05).tolist() == [True, True, False, False]
    assert benjamini_hochberg(values, 0.05, arbitrary_dependence=True).tolist() == [True, False, False, False]


@pytest.mark.parametrize("q", [0.0, -0.1, 1.5, NAN])
def test_rejects_a_rate_outside_the_unit_interval(q: float) -> None:
    with pytest.raises(AnalysisError):
        benjamini_hochberg(p(0.1), q)


@pytest.mark.parametrize("bad", [-0.01, 1.01, math.inf])
def test_rejects_p_values_outside_the_unit_interval(bad: float) -> None:
    with pytest.raises(AnalysisError):
        benjamini_hochberg(p(0.1, bad), 0.05)
    with pytest.raises(AnalysisError):
        fdr_adjusted(p(0.1, bad))


# --- scipy reference ---------------------------------------------------------------------


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("dependent", [False, True])
def test_matches_scipy_false_discovery_control(seed: int, dependent: bool) -> None:
    rng = np.random.default_rng(seed)
    m = int(rng.integers(1, 300))
    # A mix of true effects (tiny p-values) and nulls (uniform), some ties, some NaNs.
    values = np.where(rng.random(m) < 0.2, rng.random(m) * 1e-3, rng.random(m))
    values[rng.random(m) < 0.05] = values[0]
    values[rng.random(m) < 0.1] = NAN
    tested = ~np.isnan(values)
    reference = stats.false_discovery_control(values[tested], method="by" if dependent else "bh")
    adjusted = fdr_adjusted(values, arbitrary_dependence=dependent)
    assert adjusted[tested] == pytest.approx(reference, rel=1e-12)
    assert np.isnan(adjusted[~tested]).all()
    for q in (0.01, 0.05, 0.1, 0.25):
        found = benjamini_hochberg(values, q, arbitrary_dependence=dependent)
        assert found[tested].tolist() == (reference <= q).tolist()
        assert not found[~tested].any()


# --- properties --------------------------------------------------------------------------

p_values = hnp.arrays(
    np.float64,
    st.integers(0, 40),
    elements=st.one_of(st.just(NAN), st.floats(min_value=0.0, max_value=1.0)),
)


@settings(max_examples=60, deadline=None)
@given(p_values, st.floats(min_value=1e-4, max_value=1.0), st.floats(min_value=1e-4, max_value=1.0))
def test_discoveries_grow_with_q_and_are_the_smallest_p_values(
    values: FloatArray, q1: float, q2: float
) -> None:
    low, high = sorted((q1, q2))
    fewer, more = benjamini_hochberg(values, low), benjamini_hochberg(values, high)
    assert not np.any(fewer & ~more)
    if more.any():
        # Every p-value up to the largest discovery is a discovery.
        assert np.all(more[values <= values[more].max()])
    assert not more[np.isnan(values)].any()
