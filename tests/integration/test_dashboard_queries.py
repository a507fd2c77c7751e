"""The dashboard's queries on a real Prometheus scraping the operator's real metrics endpoint.

The operator's telemetry is fed the bundled scenario exactly as its reconciler records each
evaluation, served on ``/metrics``, and scraped by Prometheus; every panel query (Grafana's
variables filled in as with "All" selected) must run, label its series as its legend says, and
the three views must show the scenario's end state.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest
from prometheus_client import start_http_server

from evergreen.simulation import BinaryNotFoundError, PrometheusServer
from evergreen.simulation.prometheus import free_port
from tests.support.dashboard import dashboard, filled, legend_labels, targets, telemetry_after_showcase

pytestmark = [pytest.mark.slow, pytest.mark.prometheus]

Result = list[dict[str, Any]]


@pytest.fixture(scope="module")
def prometheus(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PrometheusServer]:
    telemetry = telemetry_after_showcase()
    port = free_port()
    server, thread = start_http_server(port, addr="127.0.0.1", registry=telemetry.registry)
    try:
        prometheus = PrometheusServer.empty(
            tmp_path_factory.mktemp("prometheus"), scrape_targets=[f"127.0.0.1:{port}"]
        )
    except BinaryNotFoundError as error:
        server.shutdown()
        pytest.skip(str(error))
    with prometheus:
        deadline = time.monotonic() + 30
        while not prometheus.query("evergreen_decision"):
            assert time.monotonic() < deadline, "Prometheus never scraped the operator's metrics"
            time.sleep(0.2)
        yield prometheus
    server.shutdown()
    thread.join(timeout=5)


def query(prometheus: PrometheusServer, title: str, ref: str = "A") -> Result:
    for panel, target in targets(dashboard()):
        if panel["title"] == title and target["refId"] == ref:
            return prometheus.query(filled(target["expr"]))
    raise AssertionError(f"no panel {title!r} with target {ref}")


def series(result: Result, *names: str) -> dict[tuple[str, ...], float]:
    return {tuple(r["metric"].get(n, "") for n in names): float(r["value"][1]) for r in result}


def test_every_query_runs_and_labels_its_series_as_the_legend_says(prometheus: PrometheusServer) -> None:
    answered = 0
    for panel, target in targets(dashboard()):
        result = prometheus.query(filled(target["expr"]))  # raises on a query Prometheus rejects
        answered += bool(result)
        for row in result:
            missing = legend_labels(target) - set(row["metric"])
            assert not missing, (panel["title"], target["refId"], missing)
    assert answered >= 15


def test_decision_per_monitor_shows_the_escalation(prometheus: PrometheusServer) -> None:
    lanes = series(query(prometheus, "Decision per monitor"), "namespace", "monitor", "action")
    assert lanes == {("ml", "fraud-detector", "Escalate"): 1.0}


def test_drift_per_feature_and_segment_is_coloured_by_the_monitors_thresholds(
    prometheus: PrometheusServer,
) -> None:
    states = series(query(prometheus, "Drift per feature and segment"), "signal", "feature", "segment")
    assert states[("feature", "session_length", "segment=firefox-beta")] == 2.0  # critical
    assert states[("feature", "amount", "*")] == 2.0
    assert set(states.values()) <= {0.0, 1.0, 2.0}
    assert 0.0 in states.values()
    scores = series(query(prometheus, "Drift scores against thresholds"), "signal", "feature", "segment")
    thresholds = series(query(prometheus, "Drift scores against thresholds", "B"), "signal", "level")
    critical = thresholds[("feature", "critical")]
    for key, state in states.items():
        assert (state == 2.0) == (scores[key] >= critical), key


def test_kpis_against_their_bounds_show_the_breach(prometheus: PrometheusServer) -> None:
    values = series(query(prometheus, "KPIs against their bounds"), "kpi")
    minimum = series(query(prometheus, "KPIs against their bounds", "B"), "kpi")
    assert set(values) == {("precision",), ("recall",)}
    for kpi, value in values.items():
        assert value < minimum[kpi], kpi
    assert query(prometheus, "KPIs against their bounds", "C") == []  # no upper bounds declared
