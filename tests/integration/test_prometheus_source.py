"""PrometheusSource against a real Prometheus: instant and range answers, decoded to arrays.

A range answer read at one of its grid times must be exactly the instant answer at that time
(same series, same order, bit-identical values): backtests replay evaluations from range
answers and must decide what a step-by-step replay decides.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Iterator
from datetime import datetime, timedelta

import numpy as np
import pytest

from evergreen.errors import MetricsUnavailable, QueryRejected
from evergreen.signals.prometheus import Endpoint, PrometheusSource
from evergreen.signals.promql import histogram_increase
from evergreen.simulation import PrometheusServer
from evergreen.simulation.catalog import SHOWCASE_TIMES, START

pytestmark = [pytest.mark.prometheus]

FEATURES = histogram_increase(
    "model_feature_value",
    matchers={"model": "fraud-detector"},
    group_by=["feature", "segment"],
    window="1h",
)


@pytest.fixture
def source(showcase_prometheus: PrometheusServer) -> Iterator[PrometheusSource]:
    client = PrometheusSource(Endpoint(url=showcase_prometheus.url, timeout_seconds=10))
    yield client
    client.close()


def test_range_at_a_grid_time_is_the_instant_answer(source: PrometheusSource) -> None:
    start = SHOWCASE_TIMES["drift_start"]
    step = timedelta(minutes=5)
    answer = asyncio.run(
        source.range(FEATURES, start, start + 2 * timedelta(hours=1), step, field="spec.drift")
    )

    assert answer.times.tolist() == [(start + k * step).timestamp() for k in range(25)]
    assert answer.values.shape == answer.present.shape == (len(answer.labels), 25)
    assert answer.present.all()
    assert len(answer.labels) > 100 and {"feature", "segment", "le"} <= set(answer.labels[0])
    for k in (0, 7, 24):
        when = start + k * step
        instant = asyncio.run(source.instant(FEATURES, when, field="spec.drift"))
        from_range = answer.at(when)
        assert from_range.same_answer(instant), when
        assert sorted(from_range.labels(), key=str) == sorted(instant.labels(), key=str)


def test_series_missing_at_a_step_are_absent_not_zero(source: PrometheusSource) -> None:
    # The backfilled data starts at START: earlier steps have no point at all.
    query = 'sum by (segment) (increase(model_predictions_total{model="fraud-detector"}[10m]))'
    begin = START - timedelta(minutes=30)
    answer = asyncio.run(
        source.range(query, begin, START + timedelta(hours=1), timedelta(minutes=10), field="f")
    )

    assert answer.labels and not answer.present[:, 0].any()
    assert np.isnan(answer.values[~answer.present]).all()
    assert answer.present[:, -1].all()
    assert answer.at(begin).empty
    assert not answer.at(START + timedelta(hours=1)).empty


def test_time_off_the_grid_is_unavailable(source: PrometheusSource) -> None:
    start = SHOWCASE_TIMES["healthy"]
    answer = asyncio.run(
        source.range("vector(1)", start, start + timedelta(hours=1), timedelta(minutes=5), field="f")
    )
    with pytest.raises(MetricsUnavailable, match="no step at"):
        answer.at(start + timedelta(minutes=2))


def test_nan_and_infinities_arrive_as_sent(source: PrometheusSource) -> None:
    at = SHOWCASE_TIMES["healthy"]
    query = (
        'label_replace(vector(0) / 0, "k", "nan", "", "") or label_replace(vector(1) / 0, "k", "inf", "", "")'
    )
    query += ' or label_replace(vector(-1) / 0, "k", "-inf", "", "")'
    instant = asyncio.run(source.instant(query, at, field="f"))
    values = {
        labels["k"]: value for labels, value in zip(instant.labels(), instant.values.tolist(), strict=True)
    }
    assert math.isnan(values["nan"]) and values["inf"] == math.inf and values["-inf"] == -math.inf

    ranged = asyncio.run(source.range(query, at, at + timedelta(minutes=10), timedelta(minutes=5), field="f"))
    assert ranged.present.all()
    assert ranged.at(at).same_answer(instant)


def test_scalar_is_one_series_without_labels(source: PrometheusSource) -> None:
    result = asyncio.run(source.instant("scalar(vector(2.5))", SHOWCASE_TIMES["healthy"], field="f"))
    assert result.labels() == [{}] and result.values.tolist() == [2.5]


@pytest.mark.parametrize(
    ("query", "message"),
    [
        ("sum(", "rejected the query"),
        ('model_predictions_total{model="fraud-detector"}[5m]', "range vector"),
        ('"text"', "'string' result"),
    ],
)
def test_unusable_instant_queries_are_rejected_naming_the_field(
    source: PrometheusSource, query: str, message: str
) -> None:
    with pytest.raises(QueryRejected, match=message) as caught:
        asyncio.run(source.instant(query, SHOWCASE_TIMES["healthy"], field="spec.kpis[0].query"))
    assert caught.value.field == "spec.kpis[0].query"


def test_bad_range_query_is_rejected(source: PrometheusSource) -> None:
    at = SHOWCASE_TIMES["healthy"]
    with pytest.raises(QueryRejected, match="rejected the query") as caught:
        asyncio.run(
            source.range("sum(", at, at + timedelta(hours=1), timedelta(minutes=5), field="spec.drift")
        )
    assert caught.value.field == "spec.drift"


def test_unreachable_prometheus_is_unavailable_for_ranges() -> None:
    closed = PrometheusSource(Endpoint(url="http://127.0.0.1:9", timeout_seconds=2))
    at = datetime.fromisoformat("2026-01-10T00:00:00+00:00")
    with pytest.raises(MetricsUnavailable, match="cannot reach"):
        asyncio.run(closed.range("vector(1)", at, at + timedelta(hours=1), timedelta(minutes=5), field="f"))
    closed.close()
