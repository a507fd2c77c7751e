"""Retraining rules without a cluster: guardrails, the validation gate, and the life of a run."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from evergreen.api.decisions import Scope
from evergreen.api.retraining import (
    Candidate,
    RetrainingSpec,
    RetrainingStatus,
    RetrainRun,
    RunOutcome,
    Validation,
)
from evergreen.retraining.gate import judge, reference_for
from evergreen.retraining.guardrails import blocked
from evergreen.retraining.runs import Observed, advance_run, claim, newly_finished, run_name, settle

NOW = datetime(2026, 3, 2, 12, tzinfo=UTC)
JOB = {
    "apiVersion": "batch/v1",
    "kind": "Job",
    "spec": {"template": {"spec": {"containers": [{"name": "train", "image": "trainer:1"}]}}},
}


def spec(**changes: Any) -> RetrainingSpec:
    raw: dict[str, Any] = {
        "template": JOB,
        "validation": {"metric": "auc", "minImprovement": 0.01},
        "cooldown": "1h",
        "budget": {"runs": 2, "per": "24h"},
    }
    raw.update(changes)
    return RetrainingSpec.model_validate(raw)


def finished_run(number: int, ended: datetime, outcome: RunOutcome = RunOutcome.REJECTED) -> RetrainRun:
    return RetrainRun(
        run=number,
        name=f"m-rt{number}-x",
        trigger="DriftHurtsKPIs",
        outcome=outcome,
        created=ended - timedelta(minutes=30),
        started=ended - timedelta(minutes=30),
        finished=ended,
    )


def test_a_fresh_monitor_may_run() -> None:
    assert blocked(spec(), RetrainingStatus(), NOW, manual=False) is None


def test_cooldown_blocks_automatic_runs_but_not_people() -> None:
    status = RetrainingStatus(runs=[finished_run(1, NOW - timedelta(minutes=20))], recent_starts=[NOW])
    reason = blocked(spec(), status, NOW, manual=False)
    assert reason is not None and reason.reason == "Cooldown"
    assert reason.until == NOW + timedelta(minutes=40)
    assert blocked(spec(), status, NOW, manual=True) is None


def test_budget_says_when_a_run_frees_up() -> None:
    starts = [NOW - timedelta(hours=20), NOW - timedelta(hours=2)]
    status = RetrainingStatus(recent_starts=starts)
    reason = blocked(spec(cooldown="0s"), status, NOW, manual=True)
    assert reason is not None and reason.reason == "Budget"
    assert reason.until == starts[0] + timedelta(hours=24)
    assert "2 of 2 runs" in reason.message


def test_concurrency() -> None:
    running = RetrainRun(run=1, name="m-rt1-x", trigger="t", outcome=RunOutcome.RUNNING, created=NOW)
    reason = blocked(spec(), RetrainingStatus(runs=[running]), NOW, manual=True)
    assert reason is not None and reason.reason == "Concurrency"


def test_cost_budget() -> None:
    costly = spec(
        cost={"perRun": 40, "budget": 100, "per": "30d"}, budget={"runs": 10, "per": "30d"}, cooldown="0s"
    )
    starts = [NOW - timedelta(days=10), NOW - timedelta(days=1)]
    reason = blocked(costly, RetrainingStatus(recent_starts=starts), NOW, manual=False)
    assert reason is not None and reason.reason == "CostBudget"
    assert reason.until == starts[0] + timedelta(days=30)


def test_giving_up_blocks_until_a_person_asks() -> None:
    status = RetrainingStatus(gave_up=True, consecutive_failures=3)
    reason = blocked(spec(), status, NOW, manual=False)
    assert reason is not None and reason.reason == "GaveUp"
    assert blocked(spec(), status, NOW, manual=True) is None


VALIDATION = Validation(metric="auc", min_improvement=0.01, floors={"precision": 0.8})


def test_gate_prefers_the_runs_own_baseline() -> None:
    reported = Candidate(version="v1", metrics={"auc": 0.90})
    serving = Candidate(version="v1", metrics={"auc": 0.80})
    assert reference_for(reported, serving, VALIDATION) is reported
    assert reference_for(None, serving, VALIDATION) is serving
    declared = Validation(metric="auc", current_metrics={"auc": 0.85})
    reference = reference_for(None, Candidate(version="v1"), declared)
    assert reference is not None and reference.metrics == {"auc": 0.85}


@pytest.mark.parametrize(
    ("metrics", "accepted", "words"),
    [
        ({"auc": 0.92, "precision": 0.9}, True, "+0.02"),
        ({"auc": 0.905, "precision": 0.9}, False, "needs +0.01"),
        ({"auc": 0.95, "precision": 0.7}, False, "precision 0.7 is below the floor 0.8"),
        ({"precision": 0.9}, False, "no 'auc' metric"),
    ],
)
def test_gate_verdicts(metrics: dict[str, float], accepted: bool, words: str) -> None:
    verdict = judge(
        Candidate(version="v2", metrics=metrics), Candidate(version="v1", metrics={"auc": 0.9}), VALIDATION
    )
    assert verdict.accepted is accepted
    assert words in verdict.reason


def test_gate_without_reference_rejects() -> None:
    verdict = judge(Candidate(version="v2", metrics={"auc": 0.99, "precision": 0.9}), None, VALIDATION)
    assert not verdict.accepted and "no reference" in verdict.reason


def test_lower_is_better_and_zero_margin_needs_a_strict_gain() -> None:
    latency = Validation(metric="loss", higher_is_better=False)
    reference = Candidate(version="v1", metrics={"loss": 0.3})
    assert judge(Candidate(version="v2", metrics={"loss": 0.25}), reference, latency).accepted
    assert not judge(Candidate(version="v2", metrics={"loss": 0.3}), reference, latency).accepted


def test_run_names_are_deterministic_and_short() -> None:
    assert run_name("fraud", "3f2a1c9e-aaaa", 7) == "fraud-rt7-3f2a1c"
    long = run_name("m" * 80, "uid", 12)
    assert len(long) <= 63 and long.endswith("-rt12-uid")
    assert run_name("fraud", "3f2a1c9e", 7) == run_name("fraud", "3f2a1c9e", 7)


def test_claim_takes_the_next_number_once() -> None:
    status, run = claim(
        RetrainingStatus(next_run=4),
        spec(),
        monitor="fraud",
        uid="abcdef12",
        trigger="DriftHurtsKPIs",
        scope=Scope(features=["amount"]),
        now=NOW,
    )
    assert (run.run, run.name, run.outcome) == (4, "fraud-rt4-abcdef", RunOutcome.PENDING)
    assert status.next_run == 5 and status.recent_starts == [NOW]
    assert run.scope_features == ["amount"]


def job(conditions: list[dict[str, str]]) -> dict[str, Any]:
    return {"metadata": {"name": "fraud-rt1-x"}, "status": {"conditions": conditions}}


def pod(message: str) -> dict[str, Any]:
    terminated = {"message": message, "finishedAt": NOW.isoformat(), "exitCode": 0}
    return {
        "metadata": {"name": "p"},
        "status": {"containerStatuses": [{"name": "train", "state": {"terminated": terminated}}]},
    }


COMPLETE = [{"type": "Complete", "status": "True", "lastTransitionTime": NOW.isoformat()}]


def test_run_lifecycle_to_accepted() -> None:
    run = RetrainRun(run=1, name="fraud-rt1-x", trigger="t", created=NOW)
    assert advance_run(run, Observed(None), spec(), None, NOW) == run  # still to be created
    running = advance_run(run, Observed(job([])), spec(), None, NOW)
    assert running.outcome is RunOutcome.RUNNING
    result = {
        "version": "v2",
        "metrics": {"auc": 0.93},
        "baseline": {"version": "v1", "metrics": {"auc": 0.9}},
    }
    done = advance_run(running, Observed(job(COMPLETE), [pod(json.dumps(result))]), spec(), None, NOW)
    assert done.outcome is RunOutcome.ACCEPTED
    assert done.candidate is not None and done.candidate.version == "v2" and done.candidate.run == 1
    assert done.reference is not None and done.reference.version == "v1"


def test_run_failures() -> None:
    running = RetrainRun(
        run=1, name="fraud-rt1-x", trigger="t", created=NOW, started=NOW, outcome=RunOutcome.RUNNING
    )
    failed = [{"type": "Failed", "status": "True", "message": "BackoffLimitExceeded"}]
    assert advance_run(running, Observed(job(failed)), spec(), None, NOW).outcome is RunOutcome.FAILED
    gone = advance_run(running, Observed(None), spec(), None, NOW)
    assert gone.outcome is RunOutcome.FAILED and "disappeared" in gone.reason
    late = advance_run(running, Observed(job([])), spec(timeout="1h"), None, NOW + timedelta(hours=2))
    assert late.outcome is RunOutcome.FAILED and "timeout" in late.reason
    malformed = advance_run(running, Observed(job(COMPLETE), [pod("not json")]), spec(), None, NOW)
    assert malformed.outcome is RunOutcome.FAILED and "no usable result" in malformed.reason
    foreign = advance_run(running, Observed(None, foreign=True), spec(), None, NOW)
    assert foreign.outcome is RunOutcome.FAILED and "not this monitor's" in foreign.reason


def test_settle_counts_failures_in_a_row_and_gives_up() -> None:
    first = finished_run(1, NOW, RunOutcome.REJECTED)
    second = finished_run(2, NOW, RunOutcome.FAILED)
    before = RetrainingStatus(
        runs=[
            first.model_copy(update={"outcome": RunOutcome.RUNNING}),
            second.model_copy(update={"outcome": RunOutcome.RUNNING}),
        ]
    )
    after = settle(before, spec(giveUpAfter=2), [first, second], NOW)
    assert after.consecutive_failures == 2 and after.gave_up
    assert [r.run for r in newly_finished(before.runs, after.runs)] == [1, 2]
    accepted = finished_run(3, NOW, RunOutcome.ACCEPTED).model_copy(
        update={"candidate": Candidate(version="v3", metrics={"auc": 1.0}, run=3)}
    )
    pending = accepted.model_copy(update={"outcome": RunOutcome.RUNNING})
    recovered = settle(
        after.model_copy(update={"runs": [*after.runs, pending]}), spec(), [*after.runs, accepted], NOW
    )
    assert recovered.consecutive_failures == 0
    assert recovered.candidate is not None and recovered.candidate.version == "v3"


def test_a_request_comes_from_the_spec_or_an_annotation() -> None:
    from evergreen.actuators.retraining import REQUEST_ANNOTATION, Monitor, RetrainingActuator
    from evergreen.api.resource import parse_spec

    def monitor(annotations: dict[str, str]) -> Monitor:
        return Monitor("ml", "fraud", "uid", annotations)

    base = {"model": "m", "kpis": [{"name": "p", "query": "q", "min": 1}], "retraining": spec().to_wire()}
    plain = parse_spec(base)
    assert RetrainingActuator._request(plain, monitor({})) == (None, "")
    assert RetrainingActuator._request(plain, monitor({REQUEST_ANNOTATION: " r-7 "})) == ("r-7", "")
    requested = parse_spec(
        {**base, "retraining": {**spec().to_wire(), "request": {"id": "r-8", "reason": "labels"}}}
    )
    assert RetrainingActuator._request(requested, monitor({REQUEST_ANNOTATION: "r-7"})) == ("r-8", "labels")
