"""The life of a retraining run, as pure transitions of status.

Exactly once: a run is *claimed* in status (its number taken from ``status.retraining.nextRun``)
before its workload exists, and the workload's name is derived from that number. Whatever
happens next — a restart between claim and create, two replicas racing — creating the same
name again answers 409 and the existing workload is adopted, so one claim is one workload.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from evergreen.actuators.workload_outcome import (
    WorkloadPhase,
    termination_message,
    workload_result,
    workload_state,
)
from evergreen.api.decisions import Scope
from evergreen.api.durations import parse_duration
from evergreen.api.retraining import (
    Candidate,
    RetrainingSpec,
    RetrainingStatus,
    RetrainRun,
    RunOutcome,
)
from evergreen.errors import ResultError
from evergreen.retraining.gate import judge, reference_for
from evergreen.retraining.guardrails import recent_starts

#: Runs kept in status.retraining.runs.
RUN_HISTORY = 20


def run_name(monitor: str, uid: str, run: int) -> str:
    """``<monitor>-rt<n>-<uid>``: unique per monitor object, at most 63 characters (a label value)."""
    suffix = f"-rt{run}-{re.sub(r'[^a-z0-9]', '', uid.lower())[:6] or 'x'}"
    prefix = monitor[: 63 - len(suffix)].rstrip("-.")
    return prefix + suffix


@dataclass(frozen=True)
class Observed:
    """What the cluster says about one run's workload."""

    workload: Mapping[str, Any] | None
    pods: Sequence[Mapping[str, Any]] = field(default_factory=tuple)
    #: Set when the workload exists but belongs to another object (a name collision).
    foreign: bool = False


def claim(
    status: RetrainingStatus,
    spec: RetrainingSpec,
    *,
    monitor: str,
    uid: str,
    trigger: str,
    scope: Scope | None,
    now: datetime,
    request_id: str | None = None,
) -> tuple[RetrainingStatus, RetrainRun]:
    """Take the next run number; the workload is created from the returned run."""
    number = status.next_run
    run = RetrainRun(
        run=number,
        name=run_name(monitor, uid, number),
        trigger=trigger,
        scope_features=list(scope.features) if scope else [],
        scope_segments=list(scope.segments) if scope else [],
        outcome=RunOutcome.PENDING,
        created=now,
    )
    updated = status.model_copy(
        update={
            "next_run": number + 1,
            "runs": [*status.runs, run][-RUN_HISTORY:],
            "recent_starts": recent_starts(spec, [*status.recent_starts, now], now),
            "handled_request": request_id if request_id is not None else status.handled_request,
            "handled_requests": (
                [*status.handled_requests, request_id][-RUN_HISTORY:]
                if request_id is not None
                else status.handled_requests
            ),
            "blocked": None,
        }
    )
    return updated, run


def _finished(run: RetrainRun, outcome: RunOutcome, reason: str, now: datetime, **changes: Any) -> RetrainRun:
    return run.model_copy(update={"outcome": outcome, "reason": reason, "finished": now, **changes})


def advance_run(
    run: RetrainRun,
    observed: Observed,
    spec: RetrainingSpec,
    serving: Candidate | None,
    now: datetime,
) -> RetrainRun:
    """The run's next state given what the cluster shows (unchanged when nothing happened)."""
    if run.outcome.finished:
        return run
    if observed.foreign:
        return _finished(
            run, RunOutcome.FAILED, f"a workload named {run.name} exists but is not this monitor's", now
        )
    workload = observed.workload
    if workload is None:
        if run.outcome is RunOutcome.RUNNING:
            return _finished(run, RunOutcome.FAILED, f"the workload {run.name} disappeared", now)
        return run  # still to be created
    if run.outcome is RunOutcome.PENDING:
        run = run.model_copy(update={"outcome": RunOutcome.RUNNING, "started": run.started or now})
    state = workload_state(workload, spec.success, spec.failure)
    if state.state is WorkloadPhase.FAILED:
        said = termination_message(observed.pods)
        # What the training container said on its way out is usually the actual reason.
        detail = f"; its container said: {said.strip()[:500]}" if said else ""
        return _finished(
            run, RunOutcome.FAILED, f"the workload failed: {state.message}{detail}", state.finished_at or now
        )
    if state.state is not WorkloadPhase.SUCCEEDED:
        started = run.started or run.created
        if now - started > parse_duration(spec.timeout):
            return _finished(run, RunOutcome.FAILED, f"still running after the {spec.timeout} timeout", now)
        return run
    finished_at = state.finished_at or now
    try:
        result = workload_result(workload, observed.pods, spec.result)
    except ResultError as error:
        return _finished(run, RunOutcome.FAILED, f"no usable result: {error}", finished_at)
    candidate = result.candidate.model_copy(update={"run": run.run})
    verdict = judge(candidate, reference_for(result.baseline, serving, spec.validation), spec.validation)
    outcome = RunOutcome.ACCEPTED if verdict.accepted else RunOutcome.REJECTED
    return _finished(
        run, outcome, verdict.reason, finished_at, candidate=candidate, reference=verdict.reference
    )


def settle(
    status: RetrainingStatus, spec: RetrainingSpec, runs: Sequence[RetrainRun], now: datetime
) -> RetrainingStatus:
    """Fold newly finished runs into the counters: failures in a row, giving up, the candidate."""
    before = {run.run: run for run in status.runs}
    failures = status.consecutive_failures
    candidate = status.candidate
    for run in runs:
        old = before.get(run.run)
        if not run.outcome.finished or (old is not None and old.outcome.finished):
            continue
        if run.outcome is RunOutcome.ACCEPTED:
            failures = 0
            candidate = run.candidate
        else:
            failures += 1
    return status.model_copy(
        update={
            "runs": list(runs)[-RUN_HISTORY:],
            "consecutive_failures": failures,
            "gave_up": status.gave_up or failures >= spec.give_up_after,
            "candidate": candidate,
            "recent_starts": recent_starts(spec, status.recent_starts, now),
        }
    )


def newly_finished(before: Sequence[RetrainRun], after: Sequence[RetrainRun]) -> list[RetrainRun]:
    """Runs that reached a verdict between two states (for Events and metrics)."""
    old = {run.run: run for run in before}
    return [
        run
        for run in after
        if run.outcome.finished and not (run.run in old and old[run.run].outcome.finished)
    ]
