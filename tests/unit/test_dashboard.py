"""The Grafana dashboard's queries name only metrics the operator exports, and it has the three
views people look at: decision state per monitor, drift per feature and segment, KPIs against
their bounds. (tests/integration/test_dashboard_queries.py runs the queries on a real Prometheus.)"""

from __future__ import annotations

import math
from typing import Any

import pytest

from evergreen.api.decisions import Action
from evergreen.telemetry import Telemetry
from tests.support.dashboard import (
    SCRAPE_SERIES,
    dashboard,
    exported_sample_names,
    legend_labels,
    metric_names,
    targets,
    telemetry_after_showcase,
)


@pytest.mark.parametrize(
    ("expr", "names"),
    [
        (
            'sum by (outcome) (rate(evergreen_evaluations_total{job=~"$job"}[$__rate_interval]))',
            {"evergreen_evaluations_total"},
        ),
        ('count(evergreen_condition{type="x"} == 1) or vector(0)', {"evergreen_condition"}),
        (
            'a_total >= bool on (job, monitor) group_left () b{level="warning"} + 1e6',
            {"a_total", "b"},
        ),
        ("histogram_quantile(0.5, sum by (le) (rate(x_bucket[5m])))", {"x_bucket"}),
        ("time() - last_seconds offset 5m", {"last_seconds"}),
    ],
)
def test_metric_names_are_parsed_from_promql(expr: str, names: set[str]) -> None:
    assert metric_names(expr) == names


def test_every_query_names_only_exported_metrics() -> None:
    exported = exported_sample_names(Telemetry())
    used: set[str] = set()
    for panel, target in targets(dashboard()):
        names = metric_names(target["expr"])
        assert names, (panel["title"], target["expr"])
        assert names <= exported | SCRAPE_SERIES, (panel["title"], names - exported)
        used |= names
    # And every gauge and counter the operator exports is drawn somewhere.
    assert {n for n in exported if not n.endswith(("_created", "_count", "_sum"))} <= used


def _panels_using(*metrics: str) -> list[dict[str, Any]]:
    board = dashboard()
    return [
        panel
        for panel in board["panels"]
        if set(metrics) <= {m for t in panel.get("targets", []) for m in metric_names(t["expr"])}
    ]


def test_decision_state_per_monitor() -> None:
    (panel,) = [p for p in _panels_using("evergreen_decision") if p["type"] == "state-timeline"]
    (target,) = panel["targets"]
    assert {"namespace", "monitor", "action"} <= legend_labels(target)
    coloured = {o["matcher"]["options"] for o in panel["fieldConfig"]["overrides"]}
    assert {f".*: {action.value}$" for action in Action} <= coloured


def test_drift_per_feature_and_segment_against_thresholds() -> None:
    (panel,) = [
        p
        for p in _panels_using("evergreen_drift_score", "evergreen_drift_threshold")
        if p["type"] == "state-timeline"
    ]
    (target,) = panel["targets"]
    assert {"monitor", "feature", "segment"} <= legend_labels(target)
    assert 'level="warning"' in target["expr"] and 'level="critical"' in target["expr"]


def test_kpis_against_their_bounds() -> None:
    (panel,) = _panels_using("evergreen_kpi_value", "evergreen_kpi_min", "evergreen_kpi_max")
    assert all("kpi" in legend_labels(t) for t in panel["targets"])


def test_the_operator_exports_kpis_and_thresholds_from_its_evaluations() -> None:
    registry = telemetry_after_showcase().registry
    value = registry.get_sample_value
    labels = {"namespace": "ml", "monitor": "fraud-detector"}
    assert value("evergreen_kpi_min", {**labels, "kpi": "precision"}) == 0.88
    assert value("evergreen_kpi_max", {**labels, "kpi": "precision"}) is None  # no upper bound
    precision = value("evergreen_kpi_value", {**labels, "kpi": "precision"})
    assert precision is not None and not math.isnan(precision) and precision < 0.88
    assert value("evergreen_drift_threshold", {**labels, "signal": "feature", "level": "critical"}) == 0.25
    assert value("evergreen_decision", {**labels, "action": "Escalate"}) == 1.0


def test_a_deleted_monitor_leaves_no_kpi_or_threshold_series() -> None:
    telemetry = telemetry_after_showcase()
    telemetry.forget("ml", "fraud-detector")
    left = {
        sample.name
        for family in telemetry.registry.collect()
        for sample in family.samples
        if sample.labels.get("monitor") == "fraud-detector"
    }
    assert not {n for n in left if n.startswith(("evergreen_kpi_", "evergreen_drift_threshold"))}
