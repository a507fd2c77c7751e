"""One reconcile step for one ModelMonitor: read it, evaluate if due, write status and Events.

Level-based: everything needed to decide what to do is in the object (spec, generation,
status). The step is safe to call any time, from any handler, any number of times; when
nothing is due it does nothing, so a restart resumes exactly where status says.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any

from pydantic import ValidationError

from evergreen.actuators.delivery import DeliveryActuator
from evergreen.actuators.retraining import REFUSALS, RetrainingActuator, RetrainingStep, validate_template
from evergreen.actuators.routing.base import ServingNotReady
from evergreen.api.decisions import Decision
from evergreen.api.delivery import RolloutSpec, RolloutStatus
from evergreen.api.durations import parse_duration
from evergreen.api.resource import parse_spec, parse_status
from evergreen.api.retraining import RetrainingStatus
from evergreen.api.spec import HistogramDrift, Mode, ModelMonitorSpec
from evergreen.api.status import CheckState, Condition, ConditionStatus, ConditionType, ModelMonitorStatus
from evergreen.conditions import (
    ConditionDraft,
    evaluation_drafts,
    merge_conditions,
    spec_error_drafts,
    unavailable_drafts,
)
from evergreen.controller.cadence import next_slot, phase
from evergreen.controller.endpoints import CaBundles, SourcePool, resolve_endpoint
from evergreen.controller.settings import OperatorSettings
from evergreen.errors import ClusterError, MissingReference, SpecError
from evergreen.kube.client import Conflict, KubeApi, ObjectRef
from evergreen.observation.evaluate import Evaluation, ProblemKind, evaluate
from evergreen.policy.engine import PolicyState, advance, baseline_bounds
from evergreen.signals.reference import parse_reference
from evergreen.signals.samples import Sample
from evergreen.signals.source import MetricSource
from evergreen.telemetry import Telemetry
from evergreen.transitions import (
    EventRecord,
    EventType,
    decision_events,
    layout_events,
    transition_events,
)

log = logging.getLogger(__name__)

#: Held only while Evergreen serves a monitor's versions (the team's Deployment scaled to 0): a
#: deletion then waits for serving to be given back. Nothing else needs it (what Evergreen
#: creates is owned by the monitor and garbage-collected), so other monitors delete at once,
#: with or without the operator running.
GIVE_BACK_FINALIZER = "evergreen.dev/give-back"
#: Retraining condition reasons that mean the configuration or the cluster keeps retraining from
#: ever running; they make the monitor not Ready.
RETRAINING_MISCONFIGURED = frozenset({"UnknownKind", "WorkloadRefused", "ServiceAccountNotFound"})
#: The finalizer earlier releases kept on every monitor; removed wherever it is seen.
LEGACY_FINALIZER = "evergreen.dev/finalizer"


@dataclass(frozen=True)
class Attempt:
    """What one evaluation attempt concluded, before it is written anywhere."""

    outcome: str
    drafts: Sequence[ConditionDraft]
    evaluation: Evaluation | None
    next_after: timedelta | None
    queries: int = 0
    #: The decision engine's state after this evaluation (None: nothing new to decide on).
    policy: PolicyState | None = None
    #: The next evaluation falls on the monitor's slot (a retry does not wait for it).
    on_schedule: bool = False


@dataclass(frozen=True, slots=True)
class Unwritten:
    """A status that differed from the stored one only in timestamps, kept instead of written.

    It stands for the object's status while the object stays at ``resource_version``; kept as
    compact JSON (a status model is several times larger), parsed when the monitor is stepped.
    """

    resource_version: str
    raw: bytes
    observed_generation: int | None
    next_evaluation_time: datetime | None
    #: ``lastAttemptTime`` of the status as stored.
    stored_attempt: datetime | None

    @classmethod
    def of(
        cls, resource_version: str, status: ModelMonitorStatus, stored_attempt: datetime | None
    ) -> Unwritten:
        raw = json.dumps(status.to_wire(), separators=(",", ":")).encode()
        return cls(
            resource_version, raw, status.observed_generation, status.next_evaluation_time, stored_attempt
        )

    @property
    def status(self) -> ModelMonitorStatus:
        return parse_status(json.loads(self.raw))


#: Timestamps that move on every evaluation; a status differing only in them is not written.
_TIMESTAMPS = ("lastAttemptTime", "nextEvaluationTime")
_NESTED_TIMESTAMPS = {"lastEvaluation": ("time", "durationSeconds"), "decision": ("time",)}


#: Status writes tried per step when only metadata the step does not read keeps changing.
_WRITE_ATTEMPTS = 5


def _same_inputs(read: Mapping[str, Any], fresh: Mapping[str, Any]) -> bool:
    """Whether ``fresh`` differs from ``read`` only in what a step does not depend on."""
    meta, fresh_meta = read["metadata"], fresh["metadata"]
    return (
        read.get("spec") == fresh.get("spec")
        and read.get("status") == fresh.get("status")
        and all(
            meta.get(key) == fresh_meta.get(key)
            for key in ("uid", "generation", "deletionTimestamp", "finalizers")
        )
    )


def _informative(evaluation: Evaluation) -> bool:
    """Whether any signal produced data (otherwise the last good evaluation is kept)."""
    return bool(
        evaluation.drift
        or evaluation.prediction_drift
        or any(
            outcome.state in (CheckState.OK, CheckState.BREACHED)
            for outcome in (*evaluation.data_quality, *evaluation.kpis)
        )
    )


def served_rollout(status: ModelMonitorStatus) -> RolloutSpec | None:
    """The rollout settings Evergreen last served versions by, if it serves any."""
    if not status.serving_rollout:
        return None
    try:
        return RolloutSpec.model_validate(status.serving_rollout)
    except ValidationError:
        log.warning("unreadable status.servingRollout: the team's objects must be given back by hand")
        return None


def fresh_decision(spec: ModelMonitorSpec, decision: Decision | None, now: datetime) -> Decision | None:
    """The decision, if an informative evaluation confirmed it recently enough to act on.

    During a metrics outage the last decision stays in status to explain what was known; it
    must not keep starting retraining runs hours later.
    """
    if decision is None:
        return None
    horizon = parse_duration(spec.interval) * (spec.policy.persistence.of + 1)
    return decision if now - decision.time <= horizon else None


def _fresh_spec_clears_refusal(
    retraining: RetrainingStatus, observed: int | None, generation: int | None
) -> RetrainingStatus:
    """A changed spec may have fixed what the cluster refused: try again at once."""
    blocked = retraining.blocked
    if observed == generation or blocked is None or blocked.reason not in REFUSALS:
        return retraining
    return retraining.model_copy(update={"blocked": None})


def _returned(rollout: RolloutSpec, version: str | None, why: str) -> EventRecord:
    """The Event of giving serving back: which Deployment serves which version now."""
    deployment = rollout.target.deployment
    serves = f" {version}" if version else " its own version"
    return EventRecord(
        EventType.NORMAL,
        "ServingReturned",
        f"{why}: Deployment {deployment} serves{serves} again with its replicas, and Evergreen's version "
        f"objects are gone; with GitOps, make its manifest say{serves}, or the tool rolls it back",
    )


def sync_declared_version(spec: ModelMonitorSpec, status: ModelMonitorStatus) -> ModelMonitorStatus:
    """A changed ``spec.currentVersion`` is a person's word on what serves now: it wins over
    what promotions recorded (until the next promotion)."""
    declared = spec.current_version
    if declared is None or declared == status.declared_version:
        return status
    return status.model_copy(update={"current_version": declared, "declared_version": declared})


def _coarse(value: Any) -> Any:
    """``value`` with every float to 9 significant digits: Prometheus extrapolates increases
    from the evaluation time, so a ratio of two of them moves in its last bits from one
    evaluation to the next while the data does not."""
    if isinstance(value, float):
        return float(f"{value:.9g}")
    if isinstance(value, dict):
        return {k: _coarse(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_coarse(v) for v in value]
    return value


def timeless(status: ModelMonitorStatus) -> dict[str, Any]:
    """The status as written, without the timestamps every evaluation moves on (the last and
    next attempt, when the summary and the decision were last confirmed, and each
    assessment's time) and with floats to 9 significant digits: what a person or a tool
    reading the object would see change."""
    wire: dict[str, Any] = status.to_wire()
    for key in _TIMESTAMPS:
        wire.pop(key, None)
    for key, inner in _NESTED_TIMESTAMPS.items():
        nested = wire.get(key)
        if isinstance(nested, dict):
            wire[key] = {k: v for k, v in nested.items() if k not in inner}
    assessments: list[dict[str, Any]] = wire.get("assessments") or []
    wire["assessments"] = [{k: v for k, v in item.items() if k != "time"} for item in assessments]
    coarse: dict[str, Any] = _coarse(wire)
    return coarse


def _active(spec: Mapping[str, Any], status: Mapping[str, Any]) -> bool:
    """Whether a monitor has work between evaluations (retraining runs to follow, rollouts
    and holds to step), so it is stepped every tick, not only when an evaluation is due."""
    retraining = status.get("retraining") or {}
    return (
        spec.get("retraining") is not None
        or spec.get("rollout") is not None
        or bool(retraining.get("runs"))
        or status.get("servingRollout") is not None
    )


def is_due(status: ModelMonitorStatus, generation: int | None, now: datetime) -> bool:
    """A new spec is evaluated at once; otherwise when the scheduled time has come.

    No scheduled time after the current generation was seen means the spec itself is invalid:
    nothing changes until the spec does, so re-reading it on every tick would only load the API.
    """
    if status.observed_generation != generation:
        return True
    return status.next_evaluation_time is not None and now >= status.next_evaluation_time


class MonitorReconciler:
    """Evaluates ModelMonitors and reports the result on each of them."""

    def __init__(
        self,
        kube: KubeApi,
        settings: OperatorSettings,
        telemetry: Telemetry,
        sources: SourcePool | None = None,
    ) -> None:
        self.kube = kube
        self.settings = settings
        self.telemetry = telemetry
        self.sources = sources or SourcePool(telemetry, settings.max_concurrent_queries)
        self.bundles = CaBundles()
        self.retraining = RetrainingActuator(
            kube,
            poll_seconds=settings.workload_poll_seconds,
            refusal_retry=timedelta(seconds=settings.retry_seconds),
        )
        self.delivery = DeliveryActuator(kube)
        self._locks: dict[tuple[str, str], asyncio.Lock] = {}
        self._unwritten: dict[tuple[str, str], Unwritten] = {}
        #: Monotonic time of the last completed reconcile step (for the liveness probe).
        self.last_step = time.monotonic()

    async def finalize(self, body: Mapping[str, Any]) -> None:
        """The monitor is being deleted: give the team's serving objects back (if any were taken).

        The rollout settings come from status (what Evergreen actually served by), so a removed
        or broken spec.rollout can never leave the team's Deployment scaled to zero.
        """
        meta = body["metadata"]
        async with self._locks.setdefault((meta["namespace"], meta["name"]), asyncio.Lock()):
            status = parse_status(body.get("status"))
            rollout = served_rollout(status)
            if rollout is not None:
                await self.delivery.finalize(body, rollout, status.current_version)
                await self._post_events(
                    body, [_returned(rollout, status.current_version, "the ModelMonitor is being deleted")]
                )

    async def release(self, body: Mapping[str, Any]) -> None:
        """The monitor is being deleted: give serving back if Evergreen serves, then drop
        Evergreen's finalizers so the deletion completes. Raises while it must wait (the
        team's Deployment not ready yet, the API failing): call again later."""
        finalizers = list(body["metadata"].get("finalizers") or [])
        ours = {GIVE_BACK_FINALIZER, LEGACY_FINALIZER}
        if not ours & set(finalizers):
            return
        await self.finalize(body)
        await self.kube.set_monitor_finalizers(body, [f for f in finalizers if f not in ours])

    async def _finalizers(self, body: Mapping[str, Any], *, hold: bool) -> Mapping[str, Any]:
        """Hold or drop the give-back finalizer (and drop the legacy one); the object as stored."""
        finalizers = list(body["metadata"].get("finalizers") or [])
        wanted = [f for f in finalizers if f not in (GIVE_BACK_FINALIZER, LEGACY_FINALIZER)]
        if hold:
            wanted.append(GIVE_BACK_FINALIZER)
        if wanted == finalizers:
            return body
        return await self.kube.set_monitor_finalizers(body, wanted)

    def forget(self, namespace: str, name: str) -> None:
        """The monitor is gone: drop its lock and metrics."""
        self._locks.pop((namespace, name), None)
        self._unwritten.pop((namespace, name), None)
        self.telemetry.forget(namespace, name)

    def due_at(self, body: Mapping[str, Any]) -> datetime | None:
        """When the monitor next needs a step: ``now`` (or earlier) for a new spec, a deletion
        or work between evaluations, its next evaluation otherwise, None when nothing is due
        until the object changes (an invalid spec). Read from the raw object, without parsing
        it, so a scheduler can ask after every change at any fleet size."""
        meta = body["metadata"]
        now = self.settings.clock()
        raw = body.get("status") or {}
        if meta.get("deletionTimestamp") or _active(body.get("spec") or {}, raw):
            return now
        kept = self._unwritten.get((meta.get("namespace", ""), meta.get("name", "")))
        if kept is not None and kept.resource_version == meta.get("resourceVersion"):
            if kept.observed_generation != meta.get("generation"):
                return now
            return kept.next_evaluation_time
        if raw.get("observedGeneration") != meta.get("generation"):
            return now
        planned = raw.get("nextEvaluationTime")
        if not planned:
            return None
        try:
            return datetime.fromisoformat(str(planned).replace("Z", "+00:00"))
        except ValueError:
            return now

    def _status(
        self, namespace: str, name: str, body: Mapping[str, Any]
    ) -> tuple[ModelMonitorStatus, datetime | None]:
        """The monitor's status as this replica knows it, and ``lastAttemptTime`` as stored."""
        kept = self._unwritten.get((namespace, name))
        if kept is not None:
            if kept.resource_version == body["metadata"].get("resourceVersion"):
                return kept.status, kept.stored_attempt
            del self._unwritten[(namespace, name)]  # the object changed since: it is the truth
        status = parse_status(body.get("status"))
        return status, status.last_attempt_time

    def forget_metrics(self, key: tuple[str, str]) -> None:
        """Another replica reconciles the monitor now: it exports the monitor's metrics."""
        self._unwritten.pop(key, None)
        self.telemetry.forget(*key)

    async def reconcile(
        self, namespace: str, name: str, body: Mapping[str, Any] | None = None
    ) -> dict[str, Any] | None:
        """Evaluate the monitor if it is due; safe to call concurrently and repeatedly.

        ``body`` is the object as the watch last delivered it (no read needed); after a
        conflict the object is read again. Returns the object as last written, if written.
        """
        lock = self._locks.setdefault((namespace, name), asyncio.Lock())
        async with lock:
            written = None
            for attempt in range(3):
                try:
                    current = body if body is not None else await self.kube.get_monitor(namespace, name)
                    written = await self._step(namespace, name, current)
                    break
                except Conflict:
                    # Somebody (a person, a second replica) wrote the object since it was read,
                    # or the watch had not delivered our own last write yet: read and redo.
                    body = None
                    if attempt == 2:
                        log.warning(
                            "%s/%s kept changing while reconciled; retrying next tick", namespace, name
                        )
            self.last_step = time.monotonic()
            return written

    async def _step(self, namespace: str, name: str, body: Mapping[str, Any] | None) -> dict[str, Any] | None:
        if body is None or body["metadata"].get("deletionTimestamp"):
            return None
        now = self.settings.clock()
        status, stored_attempt = self._status(namespace, name, body)
        generation = body["metadata"].get("generation")
        new_status = status
        events: list[EventRecord] = []
        attempt: Attempt | None = None
        retrained: tuple[RetrainingStep, ModelMonitorSpec] | None = None
        seconds = 0.0
        # Parsed once per step: validating a spec is a good part of an idle step's cost.
        checked = self._checked_spec(body)

        if is_due(status, generation, now):
            if status.observed_generation == generation and status.next_evaluation_time is not None:
                late = (now - status.next_evaluation_time).total_seconds()
                self.telemetry.evaluation_delay.observe(max(late, 0.0))
            started = time.perf_counter()
            attempt = await self._attempt(body, checked, status, now)
            seconds = time.perf_counter() - started
            uid = body["metadata"].get("uid") or f"{namespace}/{name}"
            new_status, events = self._evaluated(status, attempt, generation, now, uid)

        spec = checked if isinstance(checked, ModelMonitorSpec) else None
        if spec is not None:
            new_status = sync_declared_version(spec, new_status)
            # Before Evergreen may take the team's objects over, a deletion must wait for it.
            takes_over = spec.rollout is not None and spec.mode is Mode.ENFORCE
            body = await self._finalizers(body, hold=takes_over or status.serving_rollout is not None)
        # Retraining runs are tracked on every tick, not only when an evaluation is due.
        if spec is not None and (spec.retraining is not None or status.retraining.runs):
            try:
                step = await self.retraining.reconcile(
                    body,
                    spec,
                    _fresh_spec_clears_refusal(new_status.retraining, status.observed_generation, generation),
                    fresh_decision(spec, new_status.decision, now),
                    new_status.current_version,
                    now,
                    enforce=spec.mode is Mode.ENFORCE,
                )
            except Conflict:
                raise
            except Exception as error:
                # The evaluation still lands; the condition says why retraining could not proceed.
                new_status, failure = self._actuator_failed(
                    new_status, ConditionType.RETRAINING, error, generation, now
                )
                events += failure
            else:
                drafts = [step.draft]
                if step.draft.reason in RETRAINING_MISCONFIGURED:
                    # Retraining can never run as configured: the monitor is not ready, whatever
                    # its metrics say (the reason and message point at the fix).
                    drafts.append(replace(step.draft, type=ConditionType.READY))
                conditions = merge_conditions(new_status.conditions, drafts, now=now, generation=generation)
                events += step.events
                new_status = new_status.model_copy(
                    update={"retraining": step.status, "conditions": conditions}
                )
                retrained = (step, spec)

        served = served_rollout(new_status)
        if spec is not None and spec.rollout is None and served is not None:
            # Rolling out was switched off: give the team's objects back, once.
            try:
                await self.delivery.finalize(body, served, new_status.current_version)
            except Conflict:
                raise
            except Exception as error:  # one monitor's failure must not stop its evaluation
                new_status, failure = self._actuator_failed(
                    new_status, ConditionType.ROLLOUT, error, generation, now
                )
                events += failure
            else:
                new_status = new_status.model_copy(
                    update={"serving_rollout": None, "serving": {}, "rollout": RolloutStatus(), "holds": []}
                )
                events.append(_returned(served, new_status.current_version, "spec.rollout was removed"))
                body = await self._finalizers(body, hold=False)
        delivery_due = attempt is not None or new_status != status
        if (
            spec is not None
            and spec.rollout is not None
            and (delivery_due or self.delivery.due(spec, status, now))
        ):
            try:
                new_status, delivery_events = await self._deliver(body, spec, new_status, generation, now)
            except Conflict:
                raise
            except Exception as error:  # one monitor's failure must not stop its evaluation
                new_status, delivery_events = self._actuator_failed(
                    new_status, ConditionType.ROLLOUT, error, generation, now
                )
            events += delivery_events

        if new_status == status:
            return None
        if self._keeps(stored_attempt, status, new_status, now):
            # Only timestamps moved: nothing a reader acts on changed, so the API is spared the
            # write; this replica steps on from the status it kept (see docs/operations.md).
            self._unwritten[(namespace, name)] = Unwritten.of(
                body["metadata"]["resourceVersion"], new_status, stored_attempt
            )
            written = None
        else:
            written, body = await self._written(namespace, name, body, new_status)
            self._unwritten.pop((namespace, name), None)
        if attempt is not None:
            self._observe(
                namespace, name, attempt, seconds, new_status.conditions, new_status, status.decision
            )
        if retrained is not None:
            self._observe_retraining(namespace, name, *retrained)
        await self._post_events(body, events)
        return written

    def _keeps(
        self,
        stored_attempt: datetime | None,
        status: ModelMonitorStatus,
        new_status: ModelMonitorStatus,
        now: datetime,
    ) -> bool:
        """Whether ``new_status`` may stay unwritten: it differs only in timestamps, and the
        stored ``lastAttemptTime`` is not older than the refresh period."""
        refresh = timedelta(seconds=self.settings.status_refresh_seconds)
        if stored_attempt is None or now - stored_attempt >= refresh:
            return False
        return timeless(new_status) == timeless(status)

    async def _written(
        self, namespace: str, name: str, body: Mapping[str, Any], new_status: ModelMonitorStatus
    ) -> tuple[dict[str, Any], Mapping[str, Any]]:
        try:
            return await self._write_status(namespace, name, body, new_status)
        except Conflict:
            # A workload this step created may now be unrecorded: look for it again.
            self.retraining.recheck(body["metadata"].get("uid", ""))
            raise

    async def _write_status(
        self, namespace: str, name: str, body: Mapping[str, Any], new_status: ModelMonitorStatus
    ) -> tuple[dict[str, Any], Mapping[str, Any]]:
        """Write the status, guarded by the version this step read; the written object and the
        object as last read.

        A conflict with a write that changed nothing this step was computed from (an annotation
        or label from a GitOps tool or a person) does not make the step stale: it is written
        again on the fresh version instead of evaluated again, so a busy writer cannot starve
        evaluations. Any other change raises :class:`Conflict` and the step is redone.
        """
        for _ in range(_WRITE_ATTEMPTS - 1):
            try:
                written = await self.kube.replace_monitor_status(
                    namespace, name, new_status.to_wire(), body["metadata"]["resourceVersion"]
                )
                return written, body
            except Conflict:
                fresh = await self.kube.get_monitor(namespace, name)
                if fresh is None or not _same_inputs(body, fresh):
                    raise
                body = fresh
        written = await self.kube.replace_monitor_status(
            namespace, name, new_status.to_wire(), body["metadata"]["resourceVersion"]
        )
        return written, body

    def _observe_retraining(
        self, namespace: str, name: str, step: RetrainingStep, spec: ModelMonitorSpec
    ) -> None:
        for run in step.finished:
            self.telemetry.record_run(namespace, name, run.outcome.value)
        for _ in step.started:
            self.telemetry.record_run(namespace, name, "Started")
        if spec.retraining is not None:
            self.telemetry.record_budget(
                namespace, name, step.status.runs_in_window, spec.retraining.budget.runs
            )

    def _actuator_failed(
        self,
        status: ModelMonitorStatus,
        kind: ConditionType,
        error: Exception,
        generation: int | None,
        now: datetime,
    ) -> tuple[ModelMonitorStatus, list[EventRecord]]:
        """An actuator could not act this tick: say so on its condition; retried next tick."""
        if isinstance(error, ServingNotReady):
            reason = "Waiting"
        elif isinstance(error, ClusterError):
            reason = "ClusterError"
        else:
            reason = "InternalError"
            log.exception("%s failed", kind.value)
        log.warning("%s: %s", kind.value, error)
        draft = ConditionDraft(kind, ConditionStatus.FALSE, reason, str(error)[:1000])
        before = {c.type: c for c in status.conditions}.get(kind)
        conditions = merge_conditions(status.conditions, [draft], now=now, generation=generation)
        events = []
        if reason != "Waiting" and (before is None or before.reason != reason):
            events.append(EventRecord(EventType.WARNING, f"{kind.value}Failed", str(error)[:1000]))
        return status.model_copy(update={"conditions": conditions}), events

    async def _deliver(
        self,
        body: Mapping[str, Any],
        spec: ModelMonitorSpec,
        status: ModelMonitorStatus,
        generation: int | None,
        now: datetime,
    ) -> tuple[ModelMonitorStatus, list[EventRecord]]:
        """One tick of rollout and holds; a target that cannot work is a Rollout condition."""
        namespace = body["metadata"]["namespace"]

        async def source() -> MetricSource:
            endpoint = await resolve_endpoint(
                spec.prometheus, self.settings.default_endpoint, namespace, self.kube, self.bundles
            )
            return self.sources.source(endpoint)

        if spec.mode is Mode.OBSERVE:
            draft = ConditionDraft(
                ConditionType.ROLLOUT,
                ConditionStatus.FALSE,
                "ObserveMode",
                "mode Observe: rollouts and holds are explained, not acted on",
            )
            conditions = merge_conditions(status.conditions, [draft], now=now, generation=generation)
            return status.model_copy(update={"conditions": conditions}), []
        try:
            step = await self.delivery.reconcile(body, spec, status, source, now)
        except SpecError as error:
            draft = ConditionDraft(ConditionType.ROLLOUT, ConditionStatus.FALSE, "InvalidTarget", str(error))
            conditions = merge_conditions(status.conditions, [draft], now=now, generation=generation)
            before = {c.type: c for c in status.conditions}.get(ConditionType.ROLLOUT)
            events = []
            if before is None or before.message != str(error):
                events.append(EventRecord(EventType.WARNING, "InvalidTarget", str(error)))
            return status.model_copy(update={"conditions": conditions}), events
        conditions = merge_conditions(step.status.conditions, [step.draft], now=now, generation=generation)
        self.telemetry.record_rollout(
            body["metadata"]["namespace"],
            body["metadata"]["name"],
            step.status.rollout.weight,
            step.checks,
            step.promoted,
            step.rolled_back,
        )
        return step.status.model_copy(update={"conditions": conditions}), step.events

    def _checked_spec(self, body: Mapping[str, Any]) -> ModelMonitorSpec | SpecError:
        """The spec, or why it cannot be used."""
        try:
            spec = parse_spec(body.get("spec") or {})
            validate_template(spec, require_service_account=self.settings.require_service_account)
        except SpecError as error:
            return error
        return spec

    def _evaluated(
        self, status: ModelMonitorStatus, attempt: Attempt, generation: int | None, now: datetime, uid: str
    ) -> tuple[ModelMonitorStatus, list[EventRecord]]:
        """Status and Events after an evaluation attempt."""
        conditions = merge_conditions(status.conditions, attempt.drafts, now=now, generation=generation)
        if attempt.next_after is None:
            next_time = None
        elif attempt.on_schedule:
            next_time = next_slot(now, attempt.next_after, phase(uid, attempt.next_after))
        else:
            next_time = now + attempt.next_after
        new_status = status.model_copy(
            update={
                "observed_generation": generation,
                "conditions": conditions,
                "last_attempt_time": now,
                "next_evaluation_time": next_time,
            }
        )
        if attempt.evaluation is not None:
            new_status = new_status.model_copy(
                update={"last_evaluation": attempt.evaluation.summary(self.settings.top_series)}
            )
        events = transition_events(status.conditions, conditions)
        if attempt.policy is not None:
            new_status = new_status.model_copy(
                update={
                    "decision": attempt.policy.decision,
                    "history": list(attempt.policy.history),
                    "assessments": list(attempt.policy.assessments),
                }
            )
            events += decision_events(status.decision, attempt.policy.decision)
            before = status.assessments[-1] if status.assessments else None
            events += layout_events(before, attempt.policy.assessment)
        return new_status, events

    async def _attempt(
        self,
        body: Mapping[str, Any],
        spec: ModelMonitorSpec | SpecError,
        status: ModelMonitorStatus,
        now: datetime,
    ) -> Attempt:
        namespace = body["metadata"]["namespace"]
        retry = timedelta(seconds=self.settings.retry_seconds)
        if isinstance(spec, SpecError):
            return Attempt("invalid_spec", spec_error_drafts("InvalidSpec", str(spec)), None, None)
        interval = parse_duration(spec.interval)
        try:
            endpoint = await resolve_endpoint(
                spec.prometheus, self.settings.default_endpoint, namespace, self.kube, self.bundles
            )
            references = await self._references(spec, namespace)
            state = PolicyState.from_status(status)
            bounds = baseline_bounds(spec, state, status.baseline_anchor)
            evaluation = await evaluate(
                spec,
                self.sources.source(endpoint),
                now,
                namespace=namespace,
                references=references,
                version=status.current_version or spec.current_version,
                baseline_anchor=bounds.anchor,
                baseline_until=bounds.until,
            )
            # Every evaluation is decided on, including one without data: the decision then
            # says Unknown and why, instead of leaving an old decision standing as if current.
            policy = advance(spec, evaluation, state, retraining_gave_up=status.retraining.gave_up)
        except MissingReference as error:
            return Attempt(
                "missing_reference",
                spec_error_drafts("MissingReference", str(error)),
                None,
                min(retry, interval),
            )
        except SpecError as error:
            return Attempt("invalid_spec", spec_error_drafts("InvalidSpec", str(error)), None, None)
        except ClusterError:
            raise
        except Exception as error:  # a bug must fail this monitor, not the operator
            log.exception("evaluating %s/%s failed", namespace, body["metadata"]["name"])
            drafts = spec_error_drafts("InternalError", f"{type(error).__name__}: {error}")
            return Attempt("error", drafts, None, min(retry, interval))

        if evaluation.unavailable:
            return Attempt(
                "unavailable",
                unavailable_drafts(evaluation),
                None,
                min(retry, interval),
                evaluation.queries,
                policy,
            )
        kinds = {problem.kind for problem in evaluation.problems}
        outcome = (
            "invalid_query"
            if ProblemKind.REJECTED in kinds
            else "no_data"
            if ProblemKind.NO_DATA in kinds
            else "ok"
        )
        drafts = evaluation_drafts(spec, evaluation, policy.assessment)
        # An evaluation where nothing had data keeps the last good summary in status.
        kept = evaluation if _informative(evaluation) else None
        return Attempt(outcome, drafts, kept, interval, evaluation.queries, policy, on_schedule=True)

    async def _references(self, spec: ModelMonitorSpec, namespace: str) -> dict[str, list[Sample]]:
        """Reference histograms for drift signals whose baseline is a ConfigMap."""
        references: dict[str, list[Sample]] = {}
        signals: list[tuple[str, HistogramDrift | None, str | None]] = [
            ("spec.drift", spec.drift, spec.drift.feature_label if spec.drift else None),
            ("spec.predictionDrift", spec.prediction_drift, None),
        ]
        for field, config, feature_label in signals:
            if config is None or config.baseline.config_map is None:
                continue
            ref = config.baseline.config_map
            where = f"{field}.baseline.configMap"
            text = await self.kube.read_config_map_key(namespace, ref.name, ref.key, field=where)
            references[field] = parse_reference(text, feature_label=feature_label, field=where)
        return references

    def _observe(
        self,
        namespace: str,
        name: str,
        attempt: Attempt,
        seconds: float,
        conditions: Sequence[Condition],
        status: ModelMonitorStatus,
        previous_decision: Decision | None,
    ) -> None:
        self.telemetry.record_evaluation(namespace, name, attempt.outcome, seconds, attempt.queries)
        self.telemetry.record_conditions(namespace, name, conditions)
        if attempt.policy is not None and attempt.policy.decision is not None:
            changed = not attempt.policy.decision.same_as(previous_decision)
            self.telemetry.record_decision(namespace, name, attempt.policy.decision, changed)
        summary = status.last_evaluation
        if attempt.evaluation is not None and summary is not None:
            self.telemetry.record_signals(namespace, name, attempt.evaluation)
            for signal, drift in (("feature", summary.drift), ("prediction", summary.prediction_drift)):
                if drift is not None:
                    self.telemetry.record_drift(
                        namespace, name, signal, drift.top, drift.max_score, summary.time
                    )

    async def _post_events(self, body: Mapping[str, Any], events: Sequence[EventRecord]) -> None:
        about = ObjectRef.monitor(body)
        for event in events:
            try:
                await self.kube.post_event(about, event.type.value, event.reason, event.message)
                self.telemetry.events.labels(event.reason).inc()
            except ClusterError as error:
                # Events are best effort: the same facts are already in status.
                log.warning("%s", error)
