"""Reconciler rules that need no cluster: what acts on stale state, what reaches status."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta

from evergreen.api.decisions import Action, Decision
from evergreen.api.resource import parse_spec
from evergreen.api.spec import DataQualityCheck
from evergreen.api.status import CheckState, ModelMonitorStatus
from evergreen.controller.reconciler import fresh_decision, sync_declared_version
from evergreen.kube.client import json_safe
from evergreen.observation.checks import check_outcome
from evergreen.signals.samples import QueryResult, Sample

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
