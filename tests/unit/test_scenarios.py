"""Scenarios, their traffic and the OpenMetrics writer, without Prometheus."""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import replace
from datetime import timedelta
from pathlib import Path

import numpy as np
import pytest
from scipy import stats

from evergreen.simulation import (
    OUTCOMES,
    Beta,
    Feature,
    GradualDrift,
    IncidentKind,
    KpiDrop,
    LiveModelTraffic,
    LogNormal,
    Normal,
    PredictionShift,
    Scenario,
    ScenarioError,
    Segment,
    Spike,
    StepCounts,
    UnitChange,
    catalog,
    expected_step_counts,
    sampled_step_counts,
    simulate,
    write_openmetrics,
)
from evergreen.simulation.catalog import INCIDENT_AT, SHOWCASE_TIMES, SMALL_SEGMENT
from evergreen.simulation.prometheus import BinaryNotFoundError, find_binary

HOUR = timedelta(hours=1)


def feature_index(scenario: Scenario, name: str) -> int:
    return scenario.feature_names.index(name)


def segment_index(scenario: Scenario, name: str) -> int:
    return scenario.segment_names.index(name)


def window_mean(counts: StepCounts, feature: str, start_offset: timedelta, width: timedelta) -> float:
    """Mean value of ``feature`` over all segments in [INCIDENT_AT + offset, ... + width)."""
    start = INCIDENT_AT + start_offset
    steps = counts.step_slice(start, start + width)
    f = feature_index(counts.scenario, feature)
    return float(counts.feature_sum[steps, :, f].sum() / counts.feature_count[steps, :, f].sum())


def changed_cells(a: StepCounts, b: StepCounts) -> np.ndarray:
    """(step, segment, feature) cells where the feature histograms or nulls differ."""
    buckets = ~np.isclose(a.feature_buckets, b.feature_buckets, rtol=1e-12, atol=1e-9).all(-1)
    nulls = ~np.isclose(a.feature_missing, b.feature_missing, rtol=1e-12, atol=1e-9)
    return np.argwhere(buckets | nulls)


# --- fingerprint ---------------------------------------------------------------------------


def test_fingerprint_is_the_same_in_another_process() -> None:
    code = "from evergreen.simulation import catalog; print(catalog.showcase().fingerprint())"
    env = {**os.environ, "PYTHONHASHSEED": "12345"}
    other = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, env=env)
    assert other.stdout.strip() == catalog.showcase().fingerprint()


def test_fingerprint_ignores_names_and_follows_everything_else() -> None:
    base = catalog.unit_change()
    assert replace(base, name="x", description="y").fingerprint() == base.fingerprint()
    variants = [
        replace(base, seed=1),
        replace(base, rate=601.0),
        replace(base, noise=False),
        replace(base, incidents=(UnitChange("temperature_c", INCIDENT_AT, scale=1.8, offset=31),)),
        replace(base, score_distribution=Beta(1.2, 12.5)),
    ]
    prints = {v.fingerprint() for v in variants}
    assert base.fingerprint() not in prints
    assert len(prints) == len(variants)
    # Same parameters, different family: different data, different key.
    a = Feature("x", (1, 2), Normal(1.0, 2.0))
    b = Feature("x", (1, 2), LogNormal(1.0, 2.0))
    assert (
        replace(base, features=(a,), incidents=()).fingerprint()
        != replace(base, features=(b,), incidents=()).fingerprint()
    )


def test_integers_and_floats_fingerprint_alike() -> None:
    base = catalog.stable()
    assert replace(base, rate=600).fingerprint() == replace(base, rate=600.0).fingerprint()


# --- counters ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def stable_counts() -> StepCounts:
    return simulate(catalog.stable())


def test_sampling_is_deterministic(stable_counts: StepCounts) -> None:
    again = sampled_step_counts(catalog.stable())
    np.testing.assert_array_equal(again.feature_buckets, stable_counts.feature_buckets)
    np.testing.assert_array_equal(again.outcomes, stable_counts.outcomes)
    other_seed = sampled_step_counts(replace(catalog.stable(), seed=7))
    assert not np.array_equal(other_seed.requests, stable_counts.requests)


def test_counters_are_cumulative_and_monotone(stable_counts: StepCounts) -> None:
    counters = stable_counts.cumulative()
    scenario = counters.scenario
    assert counters.times[0] == scenario.start.timestamp()
    assert np.all(np.diff(counters.times) == 300)
    assert counters.times[-1] == scenario.end.timestamp()
    for name in (
        "requests",
        "feature_buckets",
        "feature_count",
        "feature_missing",
        "score_buckets",
        "outcomes",
        "feature_sum",
    ):
        values = getattr(counters, name)
        assert values.shape[0] == scenario.steps + 1, name
        assert np.all(values[0] == 0), name
        assert np.all(np.diff(values, axis=0) >= 0), f"{name} decreases over time"
    # Cumulative over le as well, ending at the count.
    assert np.all(np.diff(counters.feature_buckets, axis=-1) >= 0)
    np.testing.assert_array_equal(counters.feature_buckets[..., -1], counters.feature_count)
    np.testing.assert_array_equal(counters.score_buckets[..., -1], counters.requests)
    # Every request either has the feature or counts it as missing.
    np.testing.assert_array_equal(
        counters.feature_count + counters.feature_missing,
        np.broadcast_to(counters.requests[..., None], counters.feature_count.shape),
    )
    # Counts are whole numbers when sampled.
    assert np.all(counters.feature_buckets == np.round(counters.feature_buckets))


def test_bucket_proportions_follow_the_distribution(stable_counts: StepCounts) -> None:
    scenario = stable_counts.scenario
    f = feature_index(scenario, "age")
    observed = stable_counts.feature_bucket_counts("age").sum(axis=(0, 1))
    age = scenario.feature("age")
    cdf = stats.norm(41.0, 13.0).cdf(np.array([*age.bounds, np.inf]))
    expected = np.diff(np.concatenate([[0.0], cdf])) * observed.sum()
    chi2 = float(((observed - expected) ** 2 / expected).sum())
    assert chi2 < stats.chi2(len(expected) - 1).ppf(0.999)
    # And lognormal features: median of amount at 45.
    amount = stable_counts.feature_bucket_counts("amount").sum(axis=(0, 1))
    le_50 = amount[: scenario.feature("amount").bounds.index(50.0) + 1].sum() / amount.sum()
    assert le_50 == pytest.approx(stats.lognorm(0.9, scale=45.0).cdf(50.0), abs=0.002)
    # Null rate as declared.
    missing = stable_counts.feature_missing[:, :, f].sum()
    assert missing / stable_counts.requests.sum() == pytest.approx(0.01, rel=0.02)


def test_small_segment_carries_a_thousandth_and_is_visible_within_an_hour(
    stable_counts: StepCounts,
) -> None:
    s = segment_index(stable_counts.scenario, SMALL_SEGMENT)
    share = stable_counts.requests[:, s].sum() / stable_counts.requests.sum()
    assert share == pytest.approx(0.001, rel=0.02)
    quietest_hour = stable_counts.requests[:, s].reshape(-1, 12).sum(axis=1).min()
    assert quietest_hour > 1000


def test_daily_seasonality_peaks_at_noon() -> None:
    counts = expected_step_counts(catalog.stable())
    per_hour = counts.requests.sum(axis=1).reshape(-1, 12).sum(axis=1)[:24]
    assert int(np.argmax(per_hour)) in (11, 12)
    assert int(np.argmin(per_hour)) in (23, 0)
    assert per_hour.max() / per_hour.min() == pytest.approx(1.3 / 0.7, rel=0.02)


def test_step_slice_matches_increase_semantics() -> None:
    counts = expected_step_counts(catalog.stable())
    steps = counts.step_slice(INCIDENT_AT - HOUR, INCIDENT_AT)
    assert (steps.start, steps.stop) == (3 * 288 - 12, 3 * 288)
    counters = counts.cumulative()
    increase = counters.requests[steps.stop] - counters.requests[steps.start]
    np.testing.assert_allclose(increase, counts.requests[steps].sum(axis=0))


# --- incidents change what they claim, when they claim ------------------------------------


@pytest.fixture(scope="module")
def stable_expected() -> StepCounts:
    return expected_step_counts(catalog.stable())


def test_unit_change_is_affine_and_only_touches_its_feature(stable_expected: StepCounts) -> None:
    changed = expected_step_counts(catalog.unit_change())
    before = window_mean(changed, "temperature_c", -HOUR, HOUR)
    after = window_mean(changed, "temperature_c", timedelta(0), HOUR)
    assert before == pytest.approx(21.0)
    assert after == pytest.approx(21.0 * 1.8 + 32.0)
    cells = changed_cells(stable_expected, changed)
    f = feature_index(changed.scenario, "temperature_c")
    first = changed.step_slice(INCIDENT_AT, INCIDENT_AT).start
    assert set(cells[:, 2]) == {f}
    assert cells[:, 0].min() == first
    # The histogram is that of N(21 * 1.8 + 32, 6 * 1.8).
    bounds = np.array([*changed.scenario.feature("temperature_c").bounds, np.inf])
    expected = np.diff(np.concatenate([[0.0], stats.norm(69.8, 10.8).cdf(bounds)]))
    buckets = changed.feature_bucket_counts("temperature_c")[first].sum(axis=0)
    np.testing.assert_allclose(buckets / buckets.sum(), expected, atol=1e-9)


def test_segment_break_touches_only_its_segment(stable_expected: StepCounts) -> None:
    broken = expected_step_counts(catalog.segment_break())
    cells = changed_cells(stable_expected, broken)
    s = segment_index(broken.scenario, SMALL_SEGMENT)
    f = feature_index(broken.scenario, "session_length")
    assert {(int(c[1]), int(c[2])) for c in cells} == {(s, f)}
    after = broken.step_slice(INCIDENT_AT, INCIDENT_AT + HOUR)
    buckets = broken.feature_bucket_counts("session_length")[after, s].sum(axis=0)
    assert buckets[0] == pytest.approx(buckets.sum())  # every value is 0 <= 10
    share = broken.requests[after, s].sum() / broken.requests[after].sum()
    assert share == pytest.approx(0.001)


def test_null_spike_sets_the_null_rate_inside_its_window_only() -> None:
    counts = expected_step_counts(catalog.null_spike())
    f = feature_index(counts.scenario, "distance_km")

    def null_rate(start: timedelta, end: timedelta) -> float:
        steps = counts.step_slice(INCIDENT_AT + start, INCIDENT_AT + end)
        return float(counts.feature_missing[steps, :, f].sum() / counts.requests[steps].sum())

    assert null_rate(-HOUR, timedelta(0)) == pytest.approx(0.005)
    assert null_rate(timedelta(0), timedelta(hours=6)) == pytest.approx(0.3)
    assert null_rate(timedelta(hours=6), timedelta(hours=7)) == pytest.approx(0.005)


def test_gradual_drift_ramps_linearly_then_stays() -> None:
    longer = replace(catalog.gradual_drift_kpi_decline(), duration=timedelta(days=5))
    counts = expected_step_counts(longer)
    healthy = LogNormal(45.0, 0.9).mean
    five_min = timedelta(minutes=5)
    assert window_mean(counts, "amount", -five_min, five_min) == pytest.approx(healthy)
    assert window_mean(counts, "amount", timedelta(hours=12), five_min) == pytest.approx(healthy + 22.5)
    assert window_mean(counts, "amount", timedelta(hours=30), five_min) == pytest.approx(healthy + 45.0)


def test_upstream_jump_moves_listed_features_by_one_std(stable_expected: StepCounts) -> None:
    jumped = expected_step_counts(catalog.upstream_jump())
    scenario = jumped.scenario
    for feature in ("amount", "age", "session_length", "distance_km"):
        distribution = scenario.feature(feature).distribution
        after = window_mean(jumped, feature, timedelta(0), HOUR)
        assert after == pytest.approx(distribution.mean + distribution.std), feature
    touched = {int(c[2]) for c in changed_cells(stable_expected, jumped)}
    assert feature_index(scenario, "temperature_c") not in touched
    assert len(touched) == 4


def test_spike_recovers_after_its_end(stable_expected: StepCounts) -> None:
    spiked = expected_step_counts(catalog.short_spike())
    cells = changed_cells(stable_expected, spiked)
    incident = spiked.scenario.incidents[0]
    assert isinstance(incident, Spike)
    window = spiked.step_slice(incident.start, incident.end)
    assert set(cells[:, 0]) == set(range(window.start, window.stop))
    assert incident.kind is IncidentKind.TRANSIENT


def outcome_kpis(counts: StepCounts, start: timedelta, width: timedelta) -> tuple[float, float]:
    steps = counts.step_slice(INCIDENT_AT + start, INCIDENT_AT + start + width)
    tp, fp, _, fn = counts.outcomes[steps].sum(axis=(0, 1))
    return float(tp / (tp + fp)), float(tp / (tp + fn))


def test_kpi_drop_changes_outcomes_but_no_feature(stable_expected: StepCounts) -> None:
    dropped = expected_step_counts(catalog.kpi_drop_no_drift())
    assert outcome_kpis(dropped, -HOUR, HOUR) == pytest.approx((0.92, 0.85))
    assert outcome_kpis(dropped, timedelta(0), HOUR) == pytest.approx((0.75, 0.70))
    assert len(changed_cells(stable_expected, dropped)) == 0
    assert list(OUTCOMES) == ["tp", "fp", "tn", "fn"]
    np.testing.assert_allclose(dropped.outcomes.sum(axis=-1), dropped.requests)


def test_kpi_ramp_declines_gradually() -> None:
    declining = expected_step_counts(catalog.gradual_drift_kpi_decline())
    precision_mid, _ = outcome_kpis(declining, timedelta(hours=12), timedelta(minutes=5))
    assert precision_mid == pytest.approx((0.92 + 0.8) / 2, abs=0.003)


def test_prediction_shift_changes_scores_in_its_window() -> None:
    shifted = replace(
        catalog.stable(),
        incidents=(PredictionShift(INCIDENT_AT, Beta(3.0, 3.0), end=INCIDENT_AT + HOUR),),
    )
    counts = expected_step_counts(shifted)
    during = counts.step_slice(INCIDENT_AT, INCIDENT_AT + HOUR)
    after = counts.step_slice(INCIDENT_AT + HOUR, INCIDENT_AT + 2 * HOUR)
    mean = counts.score_sum[during].sum() / counts.requests[during].sum()
    assert mean == pytest.approx(0.5)
    mean = counts.score_sum[after].sum() / counts.requests[after].sum()
    assert mean == pytest.approx(1.2 / 13.2)


def test_ground_truth_times_and_kinds() -> None:
    showcase = catalog.showcase()
    kinds = [i.kind for i in showcase.incidents]
    assert kinds == [
        IncidentKind.DRIFT,
        IncidentKind.DATA_QUALITY,
        IncidentKind.DATA_QUALITY,
        IncidentKind.KPI,
    ]
    assert showcase.active_incidents(SHOWCASE_TIMES["drift_start"] - HOUR) == ()
    at_break = showcase.active_incidents(SHOWCASE_TIMES["segment_break"])
    assert [type(i).__name__ for i in at_break] == ["GradualDrift", "SegmentBreak"]
    assert showcase.steps == 14 * 288
    for moment in SHOWCASE_TIMES.values():
        assert (moment - showcase.start) % showcase.step == timedelta(0)


# --- validation ----------------------------------------------------------------------------


def test_invalid_scenarios_are_rejected() -> None:
    base = catalog.stable()
    with pytest.raises(ScenarioError, match="unknown feature 'nope'"):
        replace(base, incidents=(GradualDrift("nope", INCIDENT_AT, INCIDENT_AT + HOUR),))
    with pytest.raises(ScenarioError, match="sum to 1"):
        replace(base, segments=(Segment("a", 0.5), Segment("b", 0.4)))
    with pytest.raises(ScenarioError, match="lookback"):
        replace(base, step=timedelta(minutes=10))
    with pytest.raises(ScenarioError, match="UTC"):
        replace(base, start=base.start.replace(tzinfo=None))
    with pytest.raises(ScenarioError, match="true negatives"):
        replace(base, incidents=(KpiDrop(INCIDENT_AT, recall=0.01),))
    with pytest.raises(ScenarioError, match="unknown scenario"):
        catalog.scenario("nope")


def test_every_catalog_scenario_builds() -> None:
    for name, factory in catalog.SCENARIOS.items():
        scenario = factory()
        assert scenario.name == name
        assert catalog.scenario(name) == scenario
        assert scenario.start == catalog.START


# --- the OpenMetrics writer ----------------------------------------------------------------


def test_openmetrics_text_is_what_promtool_needs(tmp_path: Path) -> None:
    scenario = replace(catalog.unit_change(), duration=timedelta(hours=2))
    path = tmp_path / "history.om"
    written = write_openmetrics(scenario, path)
    lines = path.read_text().splitlines()
    assert lines[-1] == "# EOF"
    assert "" not in lines
    samples = [line for line in lines if not line.startswith("#")]
    assert len(samples) == written
    segments = len(scenario.segments)
    # Per feature and segment: buckets (+Inf included), _count and _sum; missing counters;
    # prediction buckets (10 + Inf), _count and _sum per segment; predictions; four outcomes per segment.
    feature_series = sum(segments * (len(f.bounds) + 3) for f in scenario.features)
    outcome_series = segments * 4
    series_count = feature_series + len(scenario.features) * segments + segments * 14 + outcome_series
    assert written == series_count * (scenario.steps + 1)
    # Each series in timestamp order, timestamps in seconds.
    last: dict[str, int] = {}
    for line in samples:
        series, _, stamp = line.rpartition(" ")
        name = series.rpartition(" ")[0]
        assert int(stamp) > last.get(name, 0)
        last[name] = int(stamp)
    assert max(last.values()) == int(scenario.end.timestamp())
    types = [line for line in lines if line.startswith("# TYPE")]
    assert types == [
        "# TYPE model_feature_value histogram",
        "# TYPE model_feature_missing counter",
        "# TYPE model_prediction_score histogram",
        "# TYPE model_predictions counter",
        "# TYPE model_label_outcomes counter",
    ]
    first = next(line for line in samples if "_bucket" in line)
    assert first == (
        'model_feature_value_bucket{model="fraud-detector",feature="amount",segment="web",'
        f'le="5.0"}} 0 {int(scenario.start.timestamp())}'
    )
    assert any('outcome="fn"' in line for line in samples)


def test_missing_binaries_are_reported_clearly(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EVERGREEN_PROMTOOL_BIN", "/nonexistent/promtool")
    with pytest.raises(BinaryNotFoundError, match="EVERGREEN_PROMTOOL_BIN"):
        find_binary("promtool", "EVERGREEN_PROMTOOL_BIN")
    monkeypatch.delenv("EVERGREEN_PROMTOOL_BIN")
    monkeypatch.setenv("PATH", "/nonexistent")
    with pytest.raises(BinaryNotFoundError, match="not found on PATH"):
        find_binary("promtool", "EVERGREEN_PROMTOOL_BIN")


# --- live traffic without a server ---------------------------------------------------------


def test_live_traffic_follows_its_settings() -> None:
    live = LiveModelTraffic(rate=1000.0)
    live.advance(10.0)
    assert live.requests_total() == pytest.approx(10_000.0)
    healthy = live.feature_probabilities("temperature_c", "web")
    live.shift_feature("temperature_c", segment="web", scale=1.8, offset=32.0)
    shifted = live.feature_probabilities("temperature_c", "web")
    assert shifted[-1] == pytest.approx(1 - stats.norm(69.8, 10.8).cdf(120.0))
    np.testing.assert_allclose(live.feature_probabilities("temperature_c", "ios"), healthy)
    live.reset()
    np.testing.assert_allclose(live.feature_probabilities("temperature_c", "web"), healthy)
    live.pause()
    live.advance(10.0)
    assert live.requests_total() == pytest.approx(10_000.0)
    with pytest.raises(ScenarioError, match="unknown feature"):
        live.set_null_rate("nope", 0.5)
