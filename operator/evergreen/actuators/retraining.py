"""Retraining on the cluster: start runs the decisions and requests ask for, track them to a verdict.

Everything this module decides goes into the returned status; the reconciler writes that
status in one guarded patch. Workloads are created *before* that write: the name comes from
the run number in status, so a retry after a lost write (a restart, a racing replica) creates
the same name again, gets 409, and adopts the workload — one claim, one workload.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from evergreen.actuators.workload_outcome import WorkloadPhase, parse_time, workload_state
from evergreen.actuators.workload_template import RunContext, render_workload, run_selector
from evergreen.api.decisions import Action, Decision, Scope
from evergreen.api.durations import parse_duration
from evergreen.api.retraining import (
    BlockedRetrain,
    Candidate,
    RetrainingSpec,
    RetrainingStatus,
    RetrainRun,
    RunOutcome,
)
from evergreen.api.spec import ModelMonitorSpec
from evergreen.api.status import ConditionStatus, ConditionType
from evergreen.conditions import ConditionDraft
from evergreen.errors import SpecError
from evergreen.kube.client import (
    KubeApi,
    Resource,
    ResourceNotServed,
    WorkloadApi,
    WorkloadRejected,
)
from evergreen.retraining.guardrails import blocked, cost_in_window, recent_starts, runs_in_window
from evergreen.retraining.runs import (
    RUN_HISTORY,
    Observed,
    advance_run,
    claim,
    newly_finished,
    run_name,
    settle,
)
from evergreen.transitions import EventRecord, EventType

log = logging.getLogger(__name__)

#: Annotation people can set (kubectl annotate) to request a run, like spec.retraining.request.
REQUEST_ANNOTATION = "evergreen.dev/retrain-request"

#: Blocked reasons that are configuration errors (the cluster refused the run), not guardrails:
#: they never spend budget or count as a failed run; the run is tried again after a pause.
REFUSALS = frozenset({"WorkloadRefused", "ServiceAccountNotFound"})
#: How long a refused creation waits before it is tried again (RBAC or a ServiceAccount fixed).
REFUSAL_RETRY = timedelta(minutes=5)


@dataclass
class RetrainingStep:
    """What one pass concluded: the new status, the Retraining condition, Events to post."""

    status: RetrainingStatus
    draft: ConditionDraft
    events: list[EventRecord] = field(default_factory=list)
    finished: list[RetrainRun] = field(default_factory=list)
    started: list[RetrainRun] = field(default_factory=list)


@dataclass(frozen=True)
class Monitor:
    """The parts of the ModelMonitor object the actuator needs."""

    namespace: str
    name: str
    uid: str
    annotations: Mapping[str, str]

    @classmethod
    def of(cls, body: Mapping[str, Any]) -> Monitor:
        meta = body["metadata"]
        return cls(meta["namespace"], meta["name"], meta.get("uid", ""), dict(meta.get("annotations") or {}))


def validate_template(spec: ModelMonitorSpec, *, require_service_account: bool) -> None:
    """Reject a template that can never run, before any decision needs it (raises SpecError)."""
    retraining = spec.retraining
    if retraining is None:
        return
    if require_service_account and spec.service_account_name is None:
        raise SpecError(
            "spec.serviceAccountName",
            "required for retraining by this operator's settings: name the identity the "
            "workloads run as (the operator never lends its own)",
        )
    context = RunContext(
        namespace="validation",
        monitor="validation",
        monitor_uid="00000000",
        model=spec.model,
        run=1,
        workload_name="validation",
        trigger="Validation",
        now=datetime(2000, 1, 1, tzinfo=UTC),
        service_account=spec.service_account_name,
    )
    render_workload(retraining.template, context)


def serving_model(
    spec: ModelMonitorSpec, status_version: str | None, retraining: RetrainingStatus
) -> Candidate | None:
    """The version serving now, with its metrics when a run produced it."""
    version = status_version or spec.current_version
    if version is None:
        return None
    for run in reversed(retraining.runs):
        if run.candidate is not None and run.candidate.version == version:
            return run.candidate
    return Candidate(version=version)


class RetrainingActuator:
    """Runs the retraining workloads of every monitor."""

    def __init__(
        self, kube: KubeApi, *, refusal_retry: timedelta = REFUSAL_RETRY, poll_seconds: float = 0.0
    ) -> None:
        self.workloads = WorkloadApi(kube)
        self.kube = kube
        self.refusal_retry = refusal_retry
        #: (monitor uid, run number) whose workload was looked for as an orphan since start.
        self._orphans_checked: set[tuple[str, int]] = set()
        #: A running workload is read at most every ``poll_seconds`` (monotonic time of the last).
        self.poll_seconds = poll_seconds
        self._polled: dict[str, float] = {}

    def recheck(self, uid: str) -> None:
        """A status write was lost (a conflict): look for an orphaned workload again."""
        self._orphans_checked = {key for key in self._orphans_checked if key[0] != uid}

    async def reconcile(
        self,
        body: Mapping[str, Any],
        spec: ModelMonitorSpec,
        status: RetrainingStatus,
        decision: Decision | None,
        current_version: str | None,
        now: datetime,
        *,
        enforce: bool = True,
    ) -> RetrainingStep:
        """Track runs; start the ones a decision or request asks for (never with ``enforce`` off:
        mode Observe explains and never acts)."""
        monitor = Monitor.of(body)
        retraining = spec.retraining
        if retraining is None:
            return RetrainingStep(status, self._idle_draft(status, configured=False))
        in_flight = any(not run.outcome.finished for run in status.runs)
        if not enforce and not in_flight:
            # Observe: decide and explain without a single request to the cluster.
            events: list[EventRecord] = []
            observed = self._observe_only(spec, monitor, status, decision, now, events)
            return RetrainingStep(observed, self._draft(observed, spec), events)
        try:
            resource = await self.workloads.resource(
                str(retraining.template["apiVersion"]), str(retraining.template["kind"])
            )
        except ResourceNotServed as error:
            draft = ConditionDraft(
                ConditionType.RETRAINING,
                ConditionStatus.FALSE,
                "UnknownKind",
                f"spec.retraining.template.kind: {error}",
            )
            return RetrainingStep(status, draft)

        serving = serving_model(spec, current_version, status)
        events = []
        if enforce:
            status = await self._adopt_orphan(status, resource, monitor, retraining, now, events)
        runs = [await self._track(run, resource, monitor, spec, serving, now) for run in status.runs]
        finished = newly_finished(status.runs, runs)
        settled = settle(status, retraining, runs, now)
        events += [_verdict_event(run) for run in finished]
        if settled.gave_up and not status.gave_up:
            events.append(
                EventRecord(
                    EventType.WARNING,
                    "RetrainingNotHelping",
                    f"{settled.consecutive_failures} consecutive runs were rejected or failed: retraining "
                    "is not helping (the concept may have moved beyond it); stopped until a person "
                    "requests a run",
                )
            )

        started: list[RetrainRun] = []
        unclaimed = settled
        request_id, request_reason = self._request(spec, monitor)
        if not enforce:
            settled = self._observe_only(spec, monitor, settled, decision, now, events)
        elif _new_request(request_id, settled):
            settled, run = self._start(
                settled,
                retraining,
                monitor,
                now,
                events,
                trigger=f"Manual:{request_id}",
                scope=None,
                request_id=request_id,
            )
            if run is not None:
                # A person acting is what giving up waits for.
                settled = settled.model_copy(update={"gave_up": False, "consecutive_failures": 0})
                started.append(run)
        elif self._wants_run(decision, settled, serving):
            assert decision is not None
            settled, run = self._start(
                settled, retraining, monitor, now, events, trigger=decision.reason, scope=decision.scope
            )
            if run is not None:
                started.append(run)
        elif not (decision is not None and decision.action is Action.RETRAIN):
            settled = settled.model_copy(update={"blocked": None})
        elif (
            settled.candidate is not None
            and serving is not None
            and settled.candidate.version != serving.version
        ):
            settled = self._record_blocked(
                settled,
                BlockedRetrain(
                    reason="CandidatePending",
                    message=f"candidate {settled.candidate.version} passed validation and awaits rollout",
                    since=now,
                ),
                events,
            )

        for run in started:
            created = await self._create(run, resource, monitor, spec, current_version, now)
            if isinstance(created, BlockedRetrain):
                # The cluster refused the run: a configuration error, not a failed run. The claim
                # is undone (no budget spent, no failure counted) and retried after a pause.
                settled = self._record_blocked(unclaimed, created, events)
                break
            settled = settle(
                settled, retraining, [created if r.run == run.run else r for r in settled.runs], now
            )
            if created.outcome is RunOutcome.FAILED:
                events.append(_verdict_event(created))
            else:
                why = (
                    f" ({request_reason})" if request_reason and created.trigger.startswith("Manual:") else ""
                )
                events.append(
                    EventRecord(
                        EventType.NORMAL,
                        "RetrainStarted",
                        f"run {created.run} ({created.name}) for {created.trigger}{why}"
                        + _scope_text(created),
                    )
                )
        settled = _windows(settled, spec, now)
        return RetrainingStep(settled, self._draft(settled, spec), events, finished, started)

    def _observe_only(
        self,
        spec: ModelMonitorSpec,
        monitor: Monitor,
        status: RetrainingStatus,
        decision: Decision | None,
        now: datetime,
        events: list[EventRecord],
    ) -> RetrainingStatus:
        """Mode Observe: a run that would start is recorded as blocked, never started."""
        request_id, _ = self._request(spec, monitor)
        wanted = _new_request(request_id, status) or (
            decision is not None and decision.action is Action.RETRAIN
        )
        if not wanted:
            return status.model_copy(update={"blocked": None})
        observe = BlockedRetrain(
            reason="Observe",
            message="mode Observe: retraining is decided and explained, never run",
            since=now,
        )
        return self._record_blocked(status, observe, events)

    async def _adopt_orphan(
        self,
        status: RetrainingStatus,
        resource: Resource,
        monitor: Monitor,
        retraining: RetrainingSpec,
        now: datetime,
        events: list[EventRecord],
    ) -> RetrainingStatus:
        """Record a run whose workload exists but whose claim was never written.

        A workload is created before the status that records it; if that write was lost (a
        crash, a conflict) and the run was then no longer wanted, the workload would run
        untracked and outside the budget. Names are derived from run numbers, so such a run is
        the workload named after ``nextRun``: one GET by name after each start or lost write,
        never a LIST (and no ``list`` permission on anyone's workloads).
        """
        key = (monitor.uid, status.next_run)
        if key in self._orphans_checked:
            return status
        name = run_name(monitor.name, monitor.uid, status.next_run)
        item = await self.workloads.get(resource, monitor.namespace, name)
        self._orphans_checked.add(key)
        if item is None or not _owned_by(item, monitor.uid):
            return status
        number = status.next_run
        meta = item["metadata"]
        annotations = meta.get("annotations") or {}
        created = (
            parse_time(annotations.get("evergreen.dev/created-at"))
            or parse_time(meta.get("creationTimestamp"))
            or now
        )
        features = annotations.get("evergreen.dev/features", "")
        run = RetrainRun(
            run=number,
            name=meta["name"],
            trigger=annotations.get("evergreen.dev/trigger", "Unknown"),
            scope_features=[f for f in features.split(",") if f],
            outcome=RunOutcome.RUNNING,
            created=created,
            started=created,
        )
        events.append(
            EventRecord(
                EventType.NORMAL,
                "RetrainAdopted",
                f"run {number} ({run.name}) was created but not recorded (a lost status write): tracked now",
            )
        )
        adopted = status.model_copy(
            update={
                "next_run": number + 1,
                "runs": [*status.runs, run][-RUN_HISTORY:],
                "recent_starts": recent_starts(retraining, [*status.recent_starts, created], now),
            }
        )
        # The next number may have an orphan too (two lost writes in a row).
        return await self._adopt_orphan(adopted, resource, monitor, retraining, now, events)

    def _start(
        self,
        status: RetrainingStatus,
        retraining: RetrainingSpec,
        monitor: Monitor,
        now: datetime,
        events: list[EventRecord],
        *,
        trigger: str,
        scope: Scope | None,
        request_id: str | None = None,
    ) -> tuple[RetrainingStatus, RetrainRun | None]:
        """Claim a run if the guardrails allow it (a person's request skips the cooldown)."""
        refused = status.blocked
        if refused is not None and refused.reason in REFUSALS and refused.until and now < refused.until:
            return status, None  # the cluster refused it moments ago: wait before asking again
        reason = blocked(retraining, status, now, manual=request_id is not None)
        if reason is not None:
            return self._record_blocked(status, reason, events), None
        return claim(
            status,
            retraining,
            monitor=monitor.name,
            uid=monitor.uid,
            trigger=trigger,
            scope=scope,
            now=now,
            request_id=request_id,
        )

    @staticmethod
    def _request(spec: ModelMonitorSpec, monitor: Monitor) -> tuple[str | None, str]:
        assert spec.retraining is not None
        if spec.retraining.request is not None:
            return spec.retraining.request.id, spec.retraining.request.reason
        annotated = monitor.annotations.get(REQUEST_ANNOTATION)
        return (annotated.strip() or None) if annotated else None, ""

    @staticmethod
    def _wants_run(decision: Decision | None, status: RetrainingStatus, serving: Candidate | None) -> bool:
        """An enforced Retrain with nothing already under way for it."""
        if decision is None or decision.action is not Action.RETRAIN or not decision.enforced:
            return False
        if any(not run.outcome.finished for run in status.runs):
            return False
        pending = status.candidate is not None and (
            serving is None or status.candidate.version != serving.version
        )
        return not pending

    @staticmethod
    def _record_blocked(
        status: RetrainingStatus, reason: BlockedRetrain, events: list[EventRecord]
    ) -> RetrainingStatus:
        previous = status.blocked
        if previous is not None and previous.reason == reason.reason:
            reason = reason.model_copy(update={"since": previous.since})
        else:
            until = f"; may run at {reason.until.isoformat()}" if reason.until else ""
            events.append(
                EventRecord(EventType.NORMAL, "RetrainBlocked", f"{reason.reason}: {reason.message}{until}")
            )
        return status.model_copy(update={"blocked": reason})

    async def _track(
        self,
        run: RetrainRun,
        resource: Resource,
        monitor: Monitor,
        spec: ModelMonitorSpec,
        serving: Candidate | None,
        now: datetime,
    ) -> RetrainRun:
        if run.outcome.finished:
            self._polled.pop(run.name, None)
            return run
        assert spec.retraining is not None
        last = self._polled.get(run.name)
        if last is not None and time.monotonic() - last < self.poll_seconds:
            return run
        self._polled[run.name] = time.monotonic()
        workload = await self.workloads.get(resource, monitor.namespace, run.name)
        foreign = workload is not None and not _owned_by(workload, monitor.uid)
        pods: list[dict[str, Any]] = []
        # Pods are read once the workload has finished (its result, or why it failed).
        finished = workload is not None and (
            workload_state(workload, spec.retraining.success, spec.retraining.failure).state
            is not WorkloadPhase.RUNNING
        )
        if workload is not None and not foreign and finished:
            selector = ",".join(f"{k}={v}" for k, v in run_selector(monitor.name, run.run).items())
            pods = await self.workloads.pods(monitor.namespace, selector)
            if not pods and resource.group == "batch" and resource.kind == "Job":
                pods = await self.workloads.pods(monitor.namespace, f"job-name={run.name}")
        return advance_run(
            run, Observed(None if foreign else workload, pods, foreign), spec.retraining, serving, now
        )

    async def _create(
        self,
        run: RetrainRun,
        resource: Resource,
        monitor: Monitor,
        spec: ModelMonitorSpec,
        current_version: str | None,
        now: datetime,
    ) -> RetrainRun | BlockedRetrain:
        """Create the run's workload; a :class:`BlockedRetrain` when the cluster refuses it."""
        assert spec.retraining is not None
        if spec.service_account_name is not None:
            exists = await self.kube.service_account_exists(monitor.namespace, spec.service_account_name)
            if not exists:
                return BlockedRetrain(
                    reason="ServiceAccountNotFound",
                    message=f"spec.serviceAccountName: ServiceAccount {monitor.namespace}/"
                    f"{spec.service_account_name} does not exist; create it (the run's pods would never "
                    "start) or name another",
                    since=now,
                    until=now + self.refusal_retry,
                )
        window_start = window_end = baseline_start = baseline_end = None
        if spec.drift is not None:
            window_end = now
            window_start = now - parse_duration(spec.drift.window)
            baseline = spec.drift.baseline
            if baseline.offset is not None and baseline.window is not None:
                baseline_end = now - parse_duration(baseline.offset)
                baseline_start = baseline_end - parse_duration(baseline.window)
        context = RunContext(
            namespace=monitor.namespace,
            monitor=monitor.name,
            monitor_uid=monitor.uid,
            model=spec.model,
            run=run.run,
            workload_name=run.name,
            trigger=run.trigger,
            now=now,
            current_version=current_version or spec.current_version,
            features=tuple(run.scope_features),
            segments=tuple(run.scope_segments),
            window_start=window_start,
            window_end=window_end,
            baseline_start=baseline_start,
            baseline_end=baseline_end,
            request_id=run.trigger.removeprefix("Manual:") if run.trigger.startswith("Manual:") else None,
            service_account=spec.service_account_name,
        )
        body = render_workload(spec.retraining.template, context)
        try:
            created = await self.workloads.create(resource, monitor.namespace, body)
        except WorkloadRejected as error:
            hint = (
                " (the operator's RBAC does not allow it: grant create on this kind, see the chart's "
                "rbac.workloads)"
                if error.status == 403
                else ""
            )
            return BlockedRetrain(
                reason="WorkloadRefused",
                message=f"the API server refused run {run.run}'s {resource.kind}: {error}{hint}",
                since=now,
                until=now + self.refusal_retry,
            )
        if not created:
            log.info("adopting existing workload %s/%s", monitor.namespace, run.name)
        return run.model_copy(update={"outcome": RunOutcome.RUNNING, "started": now})

    @staticmethod
    def _idle_draft(status: RetrainingStatus, *, configured: bool) -> ConditionDraft:
        if not configured:
            return ConditionDraft(
                ConditionType.RETRAINING,
                ConditionStatus.FALSE,
                "NotConfigured",
                "no spec.retraining: Retrain decisions are explained, not run",
            )
        return ConditionDraft(ConditionType.RETRAINING, ConditionStatus.FALSE, "Idle", "no run in progress")

    def _draft(self, status: RetrainingStatus, spec: ModelMonitorSpec) -> ConditionDraft:
        active = [run for run in status.runs if not run.outcome.finished]
        if active:
            run = active[-1]
            return ConditionDraft(
                ConditionType.RETRAINING,
                ConditionStatus.TRUE,
                "Running",
                f"run {run.run} ({run.name}) for {run.trigger}",
            )
        if status.gave_up:
            return ConditionDraft(
                ConditionType.RETRAINING,
                ConditionStatus.FALSE,
                "RetrainingNotHelping",
                f"{status.consecutive_failures} consecutive runs rejected or failed; stopped until a person "
                "requests a run (spec.retraining.request)",
            )
        if status.blocked is not None and status.blocked.reason in REFUSALS:
            return ConditionDraft(
                ConditionType.RETRAINING,
                ConditionStatus.FALSE,
                status.blocked.reason,
                f"{status.blocked.message}; tried again at {_when(status.blocked.until)}",
            )
        if status.blocked is not None:
            until = f" until {status.blocked.until.isoformat()}" if status.blocked.until else ""
            return ConditionDraft(
                ConditionType.RETRAINING,
                ConditionStatus.FALSE,
                "Blocked",
                f"{status.blocked.reason}{until}: {status.blocked.message}",
            )
        return self._idle_draft(status, configured=True)


def _when(time: datetime | None) -> str:
    return time.isoformat() if time is not None else "the next decision"


def _new_request(request_id: str | None, status: RetrainingStatus) -> bool:
    handled = {*status.handled_requests, status.handled_request}
    return request_id is not None and request_id not in handled


def _owned_by(workload: Mapping[str, Any], uid: str) -> bool:
    owners = workload.get("metadata", {}).get("ownerReferences") or []
    return any(owner.get("uid") == uid for owner in owners)


def _windows(status: RetrainingStatus, spec: ModelMonitorSpec, now: datetime) -> RetrainingStatus:
    assert spec.retraining is not None
    reason = status.blocked
    return status.model_copy(
        update={
            "runs_in_window": runs_in_window(spec.retraining, status, now),
            "cost_in_window": cost_in_window(spec.retraining, status, now),
            "next_allowed_time": reason.until if reason is not None else None,
        }
    )


def _scope_text(run: RetrainRun) -> str:
    if not run.scope_features and not run.scope_segments:
        return ""
    text = ", targeting " + (", ".join(run.scope_features) or "all features")
    if run.scope_segments:
        text += " in " + ", ".join(run.scope_segments)
    return text


def _verdict_event(run: RetrainRun) -> EventRecord:
    if run.outcome is RunOutcome.ACCEPTED:
        version = run.candidate.version if run.candidate else "?"
        return EventRecord(
            EventType.NORMAL, "CandidateAccepted", f"run {run.run}: {version} passed: {run.reason}"
        )
    if run.outcome is RunOutcome.REJECTED:
        version = run.candidate.version if run.candidate else "?"
        return EventRecord(
            EventType.WARNING, "CandidateRejected", f"run {run.run}: {version} rejected: {run.reason}"
        )
    return EventRecord(EventType.WARNING, "RetrainFailed", f"run {run.run} ({run.name}) failed: {run.reason}")


__all__ = ["REQUEST_ANNOTATION", "RetrainingActuator", "RetrainingStep", "validate_template"]
