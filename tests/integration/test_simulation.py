"""The simulation against a real Prometheus: backfilled history and live traffic."""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from scipy import stats

from evergreen.simulation import (
    BackfillError,
    Kpi,
    PrometheusServer,
    PrometheusServerError,
    Scenario,
    StepCounts,
    backfill,
    catalog,
    expected_step_counts,
    simulate,
    write_openmetrics,
)
from evergreen.simulation import prometheus as prometheus_module
from evergreen.simulation.catalog import SHOWCASE_TIMES, SMALL_SEGMENT
from evergreen.simulation.prometheus import list_blocks
from tests.integration.conftest import LiveStack

pytestmark = pytest.mark.prometheus

HOUR = timedelta(hours=1)
Result = list[dict[str, Any]]


def by_label(result: Result, label: str) -> dict[str, float]:
    return {r["metric"].get(label, ""): float(r["value"][1]) for r in result}


def scalar(result: Result) -> float:
    assert len(result) == 1, result
    return float(result[0]["value"][1])


def histogram(result: Result) -> np.ndarray:
    """Per-bucket counts from a ``sum by (le)`` result, sorted by numeric ``le``."""
    cumulative = sorted((float(r["metric"]["le"]), float(r["value"][1])) for r in result)
    values = np.maximum.accumulate(np.array([v for _, v in cumulative]))
    return np.diff(np.concatenate([[0.0], values]))


def feature_histogram(
    prometheus: PrometheusServer, feature: str, at: datetime, segment: str | None = None
) -> np.ndarray:
    matchers = f'feature="{feature}"' + (f',segment="{segment}"' if segment else "")
    expr = f"sum by (le) (increase(model_feature_value_bucket{{{matchers}}}[1h]))"
    return histogram(prometheus.query(expr, at))


def feature_mean(prometheus: PrometheusServer, feature: str, at: datetime) -> float:
    expr = (
        f'sum(increase(model_feature_value_sum{{feature="{feature}"}}[1h])) / '
        f'sum(increase(model_feature_value_count{{feature="{feature}"}}[1h]))'
    )
    return scalar(prometheus.query(expr, at))


@pytest.fixture(scope="module")
def showcase_counts(showcase_prometheus: PrometheusServer) -> StepCounts:
    scenario = showcase_prometheus.scenario
    assert isinstance(scenario, Scenario)
    return simulate(scenario)


# --- backfilled history --------------------------------------------------------------------


def test_every_generated_sample_is_in_prometheus(showcase_prometheus: PrometheusServer) -> None:
    scenario = catalog.showcase()
    segments = len(scenario.segments)
    feature_series = sum(segments * (len(f.bounds) + 3) for f in scenario.features)
    outcome_series = segments * 4
    missing_series = len(scenario.features) * segments
    series = feature_series + missing_series + segments * (10 + 3) + segments + outcome_series
    history = showcase_prometheus.history
    assert history is not None
    assert (history.samples, history.series) == (series * (scenario.steps + 1), series)
    assert list_blocks(history.directory) == (history.samples, series)
    # Every sample of a series is queryable, from the first to the last.
    expr = 'count_over_time(model_predictions_total{segment="web"}[15d])'
    assert scalar(showcase_prometheus.query(expr, scenario.end)) == scenario.steps + 1
    count = showcase_prometheus.query("count by (__name__) ({model='fraud-detector'})", scenario.end)
    assert by_label(count, "__name__") == {
        "model_feature_value_bucket": sum(segments * (len(f.bounds) + 1) for f in scenario.features),
        "model_feature_value_count": 20,
        "model_feature_value_sum": 20,
        "model_feature_missing_total": 20,
        "model_prediction_score_bucket": 4 * 11,
        "model_prediction_score_count": 4,
        "model_prediction_score_sum": 4,
        "model_predictions_total": 4,
        "model_label_outcomes_total": 4 * 4,
    }


def test_label_sets_are_the_contract(showcase_prometheus: PrometheusServer) -> None:
    at = SHOWCASE_TIMES["end"]
    for name, labels in {
        "model_feature_value_bucket": {"model", "feature", "segment", "le"},
        "model_feature_missing_total": {"model", "feature", "segment"},
        "model_prediction_score_bucket": {"model", "version", "segment", "le"},
        "model_predictions_total": {"model", "version", "segment"},
        "model_label_outcomes_total": {"model", "version", "segment", "outcome"},
    }.items():
        result = showcase_prometheus.query(name, at)
        assert {frozenset(r["metric"]) - {"__name__"} for r in result} == {frozenset(labels)}


def test_hourly_histogram_matches_the_scenario(
    showcase_prometheus: PrometheusServer, showcase_counts: StepCounts
) -> None:
    at = SHOWCASE_TIMES["drift_start"] - timedelta(hours=12)  # healthy, noon
    observed = feature_histogram(showcase_prometheus, "age", at)
    # Exactly the generated counts: samples sit on the window's edges, nothing extrapolated.
    steps = showcase_counts.step_slice(at - HOUR, at)
    generated = showcase_counts.feature_bucket_counts("age")[steps].sum(axis=(0, 1))
    np.testing.assert_allclose(observed, generated, rtol=1e-9)
    # And the proportions of N(41, 13) within sampling noise.
    bounds = np.array([*catalog.showcase().feature("age").bounds, np.inf])
    expected = np.diff(np.concatenate([[0.0], stats.norm(41, 13).cdf(bounds)]))
    np.testing.assert_allclose(observed / observed.sum(), expected, atol=0.002)


def test_unit_change_shows_as_an_affine_shift(showcase_prometheus: PrometheusServer) -> None:
    change, fixed = SHOWCASE_TIMES["unit_change"], SHOWCASE_TIMES["unit_change_fixed"]
    assert feature_mean(showcase_prometheus, "temperature_c", change) == pytest.approx(21, abs=0.1)
    during = feature_mean(showcase_prometheus, "temperature_c", change + 2 * HOUR)
    assert during == pytest.approx(21 * 1.8 + 32, abs=0.1)
    after = feature_mean(showcase_prometheus, "temperature_c", fixed + 2 * HOUR)
    assert after == pytest.approx(21, abs=0.1)
    buckets = feature_histogram(showcase_prometheus, "temperature_c", change + 2 * HOUR)
    # Buckets are wide enough for °F: the mass moved within them, not into +Inf.
    bounds = catalog.showcase().feature("temperature_c").bounds
    assert buckets[-1] / buckets.sum() == pytest.approx(stats.norm(69.8, 10.8).sf(bounds[-1]), abs=0.002)
    # The first hour after the change is partly visible.
    partial = feature_mean(showcase_prometheus, "temperature_c", change + HOUR / 2)
    assert 40 < partial < 50


def test_break_in_the_small_segment_is_visible_within_an_hour(
    showcase_prometheus: PrometheusServer,
) -> None:
    at = SHOWCASE_TIMES["segment_break"] + HOUR
    small = feature_histogram(showcase_prometheus, "session_length", at, SMALL_SEGMENT)
    assert small.sum() > 1000
    assert small[0] == small.sum()  # every value collapsed to 0
    web = feature_histogram(showcase_prometheus, "session_length", at, "web")
    assert web[0] / web.sum() == pytest.approx(stats.lognorm(1.0, scale=180).cdf(10), abs=0.002)
    before = feature_histogram(
        showcase_prometheus, "session_length", SHOWCASE_TIMES["segment_break"], SMALL_SEGMENT
    )
    assert before[0] / before.sum() < 0.05


def test_kpi_drop_in_label_outcomes(showcase_prometheus: PrometheusServer) -> None:
    def precision_recall(at: datetime) -> tuple[float, float]:
        outcome = by_label(
            showcase_prometheus.query("sum by (outcome) (increase(model_label_outcomes_total[1h]))", at),
            "outcome",
        )
        tp = outcome["tp"]
        return tp / (tp + outcome["fp"]), tp / (tp + outcome["fn"])

    drop = SHOWCASE_TIMES["kpi_drop"]
    assert precision_recall(drop) == pytest.approx((0.92, 0.85), abs=0.005)
    assert precision_recall(drop + 2 * HOUR) == pytest.approx((0.78, 0.72), abs=0.005)


def test_drift_ramps_in_prometheus(showcase_prometheus: PrometheusServer) -> None:
    start, end = SHOWCASE_TIMES["drift_start"], SHOWCASE_TIMES["drift_end"]
    healthy = stats.lognorm(0.9, scale=45).mean()
    expected = expected_step_counts(catalog.showcase())
    middle = start + (end - start) / 2
    steps = expected.step_slice(middle - HOUR, middle)
    f = expected.scenario.feature_names.index("amount")
    predicted = expected.feature_sum[steps, :, f].sum() / expected.feature_count[steps, :, f].sum()
    observed = feature_mean(showcase_prometheus, "amount", middle)
    assert observed == pytest.approx(predicted, rel=0.01)
    assert feature_mean(showcase_prometheus, "amount", start) == pytest.approx(healthy, rel=0.01)
    assert feature_mean(showcase_prometheus, "amount", end + 6 * HOUR) == pytest.approx(
        healthy + 45, rel=0.01
    )


def test_stop_and_start_keep_port_and_data(showcase_prometheus: PrometheusServer) -> None:
    expr = 'sum(increase(model_predictions_total{segment="web"}[1d]))'
    at = SHOWCASE_TIMES["end"]
    before = scalar(showcase_prometheus.query(expr, at))
    url = showcase_prometheus.url
    showcase_prometheus.stop()
    assert not showcase_prometheus.running
    with pytest.raises(PrometheusServerError):
        showcase_prometheus.query(expr, at)
    showcase_prometheus.start()
    assert showcase_prometheus.url == url
    assert scalar(showcase_prometheus.query(expr, at)) == before


# --- live traffic --------------------------------------------------------------------------


@pytest.mark.slow
def test_live_values_appear_and_follow_settings(live_stack: LiveStack) -> None:
    result = live_stack.wait_until("model_predictions_total", lambda r: len(r) == 4)
    assert {r["metric"]["segment"] for r in result} == {"web", "ios", "android", SMALL_SEGMENT}
    assert {r["metric"]["job"] for r in result} == {"live"}

    mean = (
        'sum(rate(model_feature_value_sum{feature="temperature_c"}[3s])) / '
        'sum(rate(model_feature_value_count{feature="temperature_c"}[3s]))'
    )
    live_stack.wait_until(mean, lambda r: bool(r) and abs(scalar(r) - 21) < 0.1)
    live_stack.traffic.shift_feature("temperature_c", scale=1.8, offset=32)
    live_stack.wait_until(mean, lambda r: bool(r) and abs(scalar(r) - 69.8) < 0.1, timeout=8)


@pytest.mark.slow
def test_live_null_rate_per_segment(live_stack: LiveStack) -> None:
    live_stack.traffic.set_null_rate("age", 0.5, segment="ios")
    null_rate = (
        'sum by (segment) (rate(model_feature_missing_total{feature="age"}[3s])) / ('
        'sum by (segment) (rate(model_feature_missing_total{feature="age"}[3s])) + '
        'sum by (segment) (rate(model_feature_value_count{feature="age"}[3s])))'
    )

    def split(result: Result) -> bool:
        rates = by_label(result, "segment")
        return abs(rates.get("ios", 0) - 0.5) < 0.01 and abs(rates.get("web", 1) - 0.01) < 0.002

    live_stack.wait_until(null_rate, split, timeout=8)


@pytest.mark.slow
def test_live_versions_have_their_own_kpis(live_stack: LiveStack) -> None:
    traffic = live_stack.traffic
    traffic.set_versions({"v1": 0.9, "v2": 0.1})
    traffic.set_kpi("v2", Kpi(precision=0.6, recall=0.5, positive_rate=0.05))
    precision = (
        'sum by (version) (rate(model_label_outcomes_total{outcome="tp"}[3s])) / '
        'sum by (version) (rate(model_label_outcomes_total{outcome=~"tp|fp"}[3s]))'
    )

    def per_version(result: Result) -> bool:
        values = by_label(result, "version")
        return abs(values.get("v1", 0) - 0.92) < 0.005 and abs(values.get("v2", 0) - 0.6) < 0.005

    live_stack.wait_until(precision, per_version, timeout=8)
    traffic.set_versions({"v1": 1.0})
    live_stack.wait_until('model_predictions_total{version="v2"}', lambda r: not r, timeout=5)


@pytest.mark.slow
def test_live_series_vanish_on_pause_and_return_on_resume(live_stack: LiveStack) -> None:
    live_stack.wait_until("model_predictions_total", bool)
    live_stack.traffic.pause()
    live_stack.wait_until("model_predictions_total", lambda r: not r, timeout=5)
    live_stack.wait_until('up{job="live"}', lambda r: scalar(r) == 0, timeout=5)
    live_stack.traffic.resume()
    live_stack.wait_until("model_predictions_total", lambda r: len(r) == 4, timeout=5)


# --- backfill guards -----------------------------------------------------------------------


def test_backfill_is_cached_and_checked(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    small = replace(catalog.unit_change(), duration=timedelta(hours=2))
    first = backfill(small, tmp_path)
    again = backfill(small, tmp_path)
    assert (first.cached, again.cached) == (False, True)
    assert again.directory == first.directory
    assert again.samples == first.samples

    # promtool drops samples silently; the count check must catch any difference.
    def one_sample_lost(source: Scenario, path: Path) -> int:
        return write_openmetrics(source, path) + 1

    monkeypatch.setattr(prometheus_module, "write_openmetrics", one_sample_lost)
    with pytest.raises(BackfillError, match="blocks hold"):
        backfill(replace(small, seed=1), tmp_path)
    assert not (tmp_path / "tsdb" / replace(small, seed=1).fingerprint()).exists()
