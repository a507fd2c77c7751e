"""Reconciler rules that need no cluster: what acts on stale state, what reaches status."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta
from typing import Any, cast

from evergreen.api.decisions import Action, Decision
from evergreen.api.resource import parse_spec
from evergreen.api.spec import DataQualityCheck
from evergreen.api.status import CheckOutcome, CheckState, EvaluationSummary, ModelMonitorStatus
from evergreen.controller.reconciler import (
    MonitorReconciler,
    Unwritten,
    fresh_decision,
    sync_declared_version,
    timeless,
)
from evergreen.controller.settings import OperatorSettings
from evergreen.kube.client import KubeApi, json_safe
from evergreen.observation.checks import check_outcome
from evergreen.signals.samples import QueryResult, Sample
from evergreen.telemetry import Telemetry

NOW = datetime(2026, 6, 1, tzinfo=UTC)
SPEC = parse_spec(
    {"model": "m", "interval": "5m", "currentVersion": "v2", "kpis": [{"name": "p", "query": "q", "min": 1}]}
)


def decision(at: datetime) -> Decision:
    return Decision(
        action=Action.RETRAIN, reason="ConceptDrift", message="m", time=at, since=at, enforced=True
    )


def test_only_a_recently_confirmed_decision_is_acted_on() -> None:
    assert fresh_decision(SPEC, decision(NOW - timedelta(minutes=15)), NOW) is not None
    assert fresh_decision(SPEC, decision(NOW - timedelta(minutes=25)), NOW) is None
    assert fresh_decision(SPEC, None, NOW) is None


def test_a_changed_declared_version_wins_once() -> None:
    promoted = ModelMonitorStatus(current_version="v3", declared_version="v2")
    assert sync_declared_version(SPEC, promoted).current_version == "v3"  # declaration unchanged
    fresh = sync_declared_version(SPEC, ModelMonitorStatus())
    assert (fresh.current_version, fresh.declared_version) == ("v2", "v2")
    changed = parse_spec({**SPEC.to_wire(), "currentVersion": "v9"})
    assert sync_declared_version(changed, promoted).current_version == "v9"


def test_non_finite_numbers_never_reach_the_api() -> None:
    body = {"a": [1.0, math.inf, {"b": math.nan}], "c": "x", "d": None}
    assert json_safe(body) == {"a": [1.0, None, {"b": None}], "c": "x", "d": None}


def test_an_infinite_value_is_judged_but_not_stored() -> None:
    latency = DataQualityCheck(name="p99", query="q", max=40)
    outcome = check_outcome(latency, QueryResult("q", (Sample({}, math.inf),)))
    assert outcome.state is CheckState.BREACHED
    assert outcome.value is None and "inf" in (outcome.message or "")


# When a monitor is next due, and which status changes are not written ---------------------------


def reconciler(now: datetime = NOW) -> MonitorReconciler:
    settings = OperatorSettings(metrics_port=None, health_port=None, clock=lambda: now)
    return MonitorReconciler(cast(KubeApi, None), settings, Telemetry())


def monitor(status: dict[str, Any] | None = None, **spec: Any) -> dict[str, Any]:
    meta = {"namespace": "ml", "name": "m", "uid": "u", "generation": 2, "resourceVersion": "7"}
    return {"metadata": meta, "spec": {"model": "m", "interval": "5m", **spec}, "status": status or {}}


def test_due_at_reads_the_next_evaluation_from_the_raw_object() -> None:
    later = NOW + timedelta(minutes=3)
    due = reconciler().due_at
    assert due(monitor({"observedGeneration": 2, "nextEvaluationTime": "2026-06-01T00:03:00Z"})) == later
    assert due(monitor({"observedGeneration": 1, "nextEvaluationTime": "2026-06-01T00:03:00Z"})) == NOW
    assert due(monitor({"observedGeneration": 2})) is None  # an invalid spec waits for a new one
    assert due(monitor()) == NOW  # never evaluated
    # Work between evaluations is stepped every tick.
    assert (
        due(monitor({"observedGeneration": 2, "nextEvaluationTime": "2026-06-01T00:03:00Z"}, rollout={}))
        == NOW
    )
    running = {
        "observedGeneration": 2,
        "nextEvaluationTime": "2026-06-01T00:03:00Z",
        "retraining": {"runs": [{}]},
    }
    assert due(monitor(running)) == NOW


def summary(kpi: float) -> EvaluationSummary:
    outcome = CheckOutcome(name="precision", state=CheckState.OK, value=kpi)
    return EvaluationSummary(time=NOW, duration_seconds=0.1, queries=7, kpis=[outcome])


def test_only_timestamps_moving_is_no_change() -> None:
    before = ModelMonitorStatus(
        observed_generation=2,
        last_attempt_time=NOW,
        next_evaluation_time=NOW + timedelta(minutes=5),
        decision=decision(NOW),
    )
    moved = before.model_copy(
        update={
            "last_attempt_time": NOW + timedelta(minutes=5),
            "next_evaluation_time": NOW + timedelta(minutes=10),
            "decision": decision(NOW + timedelta(minutes=5)).model_copy(update={"since": NOW}),
        }
    )
    assert timeless(moved) == timeless(before)
    jitter = before.model_copy(update={"last_evaluation": summary(0.8571428571428571)})
    assert timeless(jitter) == timeless(
        jitter.model_copy(update={"last_evaluation": summary(0.857142857142857)})
    )
    assert timeless(jitter) != timeless(jitter.model_copy(update={"last_evaluation": summary(0.8571)}))
    other = moved.model_copy(update={"decision": moved.decision.model_copy(update={"reason": "DataDrift"})})  # type: ignore[union-attr]
    assert timeless(other) != timeless(before)


def test_a_kept_status_stands_for_the_object_until_the_object_changes() -> None:
    later = NOW + timedelta(minutes=5)
    rec = reconciler()
    kept = ModelMonitorStatus(observed_generation=2, last_attempt_time=NOW, next_evaluation_time=later)
    rec._unwritten[("ml", "m")] = Unwritten.of("7", kept, NOW - timedelta(minutes=5))
    stored = {"observedGeneration": 2, "nextEvaluationTime": "2026-06-01T00:00:00Z"}
    assert rec.due_at(monitor(stored)) == later
    changed = monitor(stored)
    changed["metadata"]["resourceVersion"] = "8"
    assert rec.due_at(changed) == NOW


def test_an_unchanged_status_is_written_again_only_after_the_refresh_period() -> None:
    rec = reconciler()
    status = ModelMonitorStatus(observed_generation=2, last_attempt_time=NOW - timedelta(minutes=1))
    moved = status.model_copy(update={"last_attempt_time": NOW})
    assert rec._keeps(NOW - timedelta(minutes=1), status, moved, NOW)
    assert not rec._keeps(NOW - timedelta(minutes=10), status, moved, NOW)
    assert not rec._keeps(None, status, moved, NOW)
    assert not rec._keeps(NOW, status, moved.model_copy(update={"observed_generation": 3}), NOW)
