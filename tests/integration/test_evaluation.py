"""Evaluations against a real Prometheus holding the showcase's two weeks of history.

Each incident of the showcase happened at a known time; an evaluation shortly after must
name the feature and segment that broke, say roughly how much, and stay quiet about the rest.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml

from evergreen.api.resource import parse_spec
from evergreen.api.spec import ModelMonitorSpec
from evergreen.api.status import CheckState, Severity
from evergreen.observation.evaluate import DriftResult, Evaluation, ProblemKind, evaluate
from evergreen.signals.prometheus import Endpoint, PrometheusSource
from evergreen.simulation import PrometheusServer
from evergreen.simulation.catalog import FEATURES, SHOWCASE_TIMES, SMALL_SEGMENT

pytestmark = [pytest.mark.prometheus]

EXAMPLE = Path(__file__).parents[2] / "examples" / "fraud-detector.yaml"
HOUR = timedelta(hours=1)
OTHER_FEATURES = {f.name for f in FEATURES}


def example_spec(**changes: Any) -> ModelMonitorSpec:
    raw = yaml.safe_load(EXAMPLE.read_text())["spec"]
    raw.pop("prometheus")
    raw.update(changes)
    return parse_spec(raw)


@pytest.fixture
def source(showcase_prometheus: PrometheusServer) -> Iterator[PrometheusSource]:
    client = PrometheusSource(Endpoint(url=showcase_prometheus.url, timeout_seconds=10))
    yield client
    client.close()


def run(spec: ModelMonitorSpec, source: PrometheusSource, at: datetime) -> Evaluation:
    return asyncio.run(evaluate(spec, source, at, namespace="ml"))


def flagged(result: DriftResult | None) -> dict[tuple[str, str], Severity]:
    """Judged series at warning or above."""
    assert result is not None
    return {
        (row.feature, row.segment): row.severity
        for row in result.judged()
        if row.severity in (Severity.WARNING, Severity.CRITICAL)
    }


def score(result: DriftResult | None, feature: str, segment: str) -> float:
    assert result is not None
    rows = {(row.feature, row.segment): row.score for row in result.series()}
    return rows[(feature, segment)]


def test_healthy_traffic_reports_nothing(source: PrometheusSource) -> None:
    evaluation = run(example_spec(), source, SHOWCASE_TIMES["healthy"])
    assert evaluation.problems == ()
    # 3 feature windows (current, previous, baseline) + 3 prediction windows + 1 data-quality
    # check + 2 KPIs, for 5 features x 4 segments (+ totals): the count does not grow with them.
    assert evaluation.queries == 9
    assert evaluation.drift is not None
    assert len(evaluation.drift.scores.keys) == len(FEATURES) * 5
    assert flagged(evaluation.drift) == {}
    assert flagged(evaluation.prediction_drift) == {}
    assert [o.state for o in evaluation.data_quality] == [CheckState.OK]
    assert [o.state for o in evaluation.kpis] == [CheckState.OK, CheckState.OK]
    precision = evaluation.kpis[0].value
    assert precision is not None and precision == pytest.approx(0.92, abs=0.01)


def test_gradual_drift_grows_and_is_confined_to_its_feature(source: PrometheusSource) -> None:
    start, end = SHOWCASE_TIMES["drift_start"], SHOWCASE_TIMES["drift_end"]
    spec = example_spec()
    scores = [
        score(run(spec, source, at).drift, "amount", "*") for at in (start + 6 * HOUR, start + 18 * HOUR, end)
    ]
    assert scores[0] < scores[1] < scores[2]
    evaluation = run(spec, source, end)
    flags = flagged(evaluation.drift)
    assert {feature for feature, _ in flags} == {"amount"}
    assert flags[("amount", "*")] is Severity.CRITICAL
    for segment in ("segment=web", "segment=ios", "segment=android"):
        assert flags[("amount", segment)] is Severity.CRITICAL
    assert scores[2] > 0.25


def test_unit_change_is_critical_for_that_feature(source: PrometheusSource) -> None:
    evaluation = run(example_spec(), source, SHOWCASE_TIMES["unit_change"] + HOUR + timedelta(minutes=5))
    flags = flagged(evaluation.drift)
    assert flags[("temperature_c", "*")] is Severity.CRITICAL
    # °C read as °F moves nearly all mass into the top buckets: a huge PSI, not a nudge.
    assert score(evaluation.drift, "temperature_c", "*") > 2.0
    assert {feature for feature, _ in flags} <= {"temperature_c", "amount"}
    assert not any(feature in ("age", "session_length", "distance_km") for feature, _ in flags)


def test_break_in_a_segment_with_a_tenth_of_a_percent_of_traffic_is_seen(source: PrometheusSource) -> None:
    at = SHOWCASE_TIMES["segment_break"] + HOUR + timedelta(minutes=5)
    evaluation = run(example_spec(), source, at)
    broken = ("session_length", f"segment={SMALL_SEGMENT}")
    flags = flagged(evaluation.drift)
    assert flags[broken] is Severity.CRITICAL
    assert evaluation.drift is not None
    row = next(r for r in evaluation.drift.series() if (r.feature, r.segment) == broken)
    assert 500 <= row.samples < 5000  # ~2,000 requests an hour: judged, not ignored
    # The same feature across the whole population barely moves: 0.1% cannot shift a total.
    assert score(evaluation.drift, "session_length", "*") < 0.1
    others = {key for key in flags if key[0] == "session_length"}
    assert others == {broken}
    # A condition message would name it first among session_length series.
    top_session = next(r for r in evaluation.drift.judged() if r.feature == "session_length")
    assert (top_session.feature, top_session.segment) == broken


def test_kpi_drop_breaches_precision_and_recall(source: PrometheusSource) -> None:
    evaluation = run(example_spec(), source, SHOWCASE_TIMES["kpi_drop"] + 7 * HOUR)
    precision, recall = evaluation.kpis
    assert precision.state is CheckState.BREACHED and recall.state is CheckState.BREACHED
    assert precision.value == pytest.approx(0.78, abs=0.01)
    assert recall.value == pytest.approx(0.72, abs=0.01)
    before = run(example_spec(), source, SHOWCASE_TIMES["kpi_drop"] - HOUR)
    assert [k.state for k in before.kpis] == [CheckState.OK, CheckState.OK]


def test_bad_promql_fails_only_its_own_check(source: PrometheusSource) -> None:
    spec = example_spec(kpis=[{"name": "precision", "query": "sum(rate(x[5m]) by", "min": 0.9}])
    evaluation = run(spec, source, SHOWCASE_TIMES["healthy"])
    assert [(p.field, p.kind) for p in evaluation.problems] == [("spec.kpis[0].query", ProblemKind.REJECTED)]
    assert "parse error" in evaluation.problems[0].message
    assert evaluation.kpis[0].state is CheckState.ERROR
    assert evaluation.drift is not None and evaluation.data_quality[0].state is CheckState.OK


def test_empty_family_is_no_data_never_zero(source: PrometheusSource) -> None:
    spec = example_spec(drift={"histogram": "no_such_histogram", "segmentBy": ["segment"]})
    evaluation = run(spec, source, SHOWCASE_TIMES["healthy"])
    assert evaluation.drift is None
    assert ("spec.drift", ProblemKind.NO_DATA) in [(p.field, p.kind) for p in evaluation.problems]


def test_no_traffic_in_the_window_is_no_data(source: PrometheusSource) -> None:
    # Before the first sample + window, there is no current traffic for any series.
    spec = example_spec(
        drift={
            "histogram": "model_feature_value",
            "segmentBy": ["segment"],
            "baseline": {"offset": "1h", "window": "1h"},
        }
    )
    before_history = SHOWCASE_TIMES["healthy"] - timedelta(days=30)
    evaluation = run(spec, source, before_history)
    assert evaluation.drift is None
    assert any(p.kind is ProblemKind.NO_DATA for p in evaluation.problems)


def test_unreachable_prometheus_is_unavailable(showcase_prometheus: PrometheusServer) -> None:
    closed = PrometheusSource(Endpoint(url="http://127.0.0.1:9", timeout_seconds=2))
    evaluation = run(example_spec(), closed, SHOWCASE_TIMES["healthy"])
    assert evaluation.unavailable
    assert all(p.kind is ProblemKind.UNAVAILABLE for p in evaluation.problems)
    assert "cannot reach Prometheus" in evaluation.problems[0].message
