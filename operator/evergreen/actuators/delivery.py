"""Progressive delivery on the cluster: one tick of rollout and holds for one ModelMonitor.

Each tick: converge the router to what status says (so a restart resumes at the same step
with the same objects), run the canary checks when due, advance the state machine, and
converge the router again if the plan changed. Everything decided goes into the returned
status; the reconciler writes it with the rest.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from evergreen.actuators.routing import router_for
from evergreen.actuators.routing.base import MonitorRef, ServingPlan, ServingState, held_versions
from evergreen.api.decisions import Action, Decision
from evergreen.api.delivery import CheckRecord, RolloutCheck, RolloutPhase, RolloutSpec
from evergreen.api.durations import parse_duration
from evergreen.api.spec import ModelMonitorSpec
from evergreen.api.status import ModelMonitorStatus
from evergreen.conditions import ConditionDraft
from evergreen.delivery.holds import DEFAULT_NOTICE, reconcile_holds
from evergreen.delivery.rollout import RolloutInputs, checks_due, step_rollout
from evergreen.errors import SpecError
from evergreen.kube.client import KubeApi
from evergreen.observation.canary import canary_checks
from evergreen.signals.source import MetricSource
from evergreen.transitions import EventRecord

#: Resolves the monitor's metric source lazily: only ticks that run checks need Prometheus.
SourceFactory = Callable[[], Awaitable[MetricSource]]


@dataclass
class DeliveryStep:
    """The status after one tick, its Rollout condition, Events and what changed."""

    status: ModelMonitorStatus
    draft: ConditionDraft
    events: list[EventRecord] = field(default_factory=list)
    checks: list[CheckRecord] = field(default_factory=list)
    promoted: str | None = None
    rolled_back: str | None = None


def serving_version(spec: ModelMonitorSpec, status: ModelMonitorStatus) -> str:
    version = status.current_version or spec.current_version
    if version is None:
        raise SpecError("spec.currentVersion", "required with spec.rollout: name the version serving now")
    return version


def _held_for_data_quality(decision: Decision | None) -> bool:
    if decision is None:
        return False
    return decision.action is Action.HOLD_FOR_DATA_QUALITY or (
        decision.action is Action.ESCALATE and decision.reason == "HoldUnresolved"
    )


def _offered(spec: ModelMonitorSpec, status: ModelMonitorStatus, serving: str) -> str | None:
    """The version to roll out: the spec's, unless it is served already or was rolled back
    (a candidate left in the spec after its rollout must not hide retraining's next one)."""
    assert spec.rollout is not None
    done = {serving, *status.rollout.rejected_versions}
    if spec.rollout.candidate is not None and spec.rollout.candidate not in done:
        return spec.rollout.candidate
    candidate = status.retraining.candidate
    return candidate.version if candidate is not None and candidate.version not in done else None


class DeliveryActuator:
    """Rolls candidates out and keeps holds served, through the configured router."""

    def __init__(self, kube: KubeApi, *, hold_notice: timedelta = DEFAULT_NOTICE) -> None:
        self.kube = kube
        self.hold_notice = hold_notice

    def router(self, body: Mapping[str, Any], spec: ModelMonitorSpec) -> Any:
        assert spec.rollout is not None
        meta = body["metadata"]
        monitor = MonitorRef(meta["namespace"], meta["name"], meta.get("uid", ""))
        return router_for(spec.rollout.router, self.kube, monitor, spec.rollout)

    def due(self, spec: ModelMonitorSpec, status: ModelMonitorStatus, now: datetime) -> bool:
        """Whether a tick without an evaluation has delivery work: a rollout under way, or a
        hold starting, expiring or ending. An idle monitor then costs the API nothing between
        its evaluations (each evaluation still reconciles the serving objects)."""
        if status.rollout.phase is not RolloutPhase.IDLE:
            return True
        holds = reconcile_holds(spec.holds, status.holds, now, notice=self.hold_notice)
        return bool(holds.events)

    async def reconcile(
        self,
        body: Mapping[str, Any],
        spec: ModelMonitorSpec,
        status: ModelMonitorStatus,
        source: SourceFactory,
        now: datetime,
    ) -> DeliveryStep:
        rollout = spec.rollout
        assert rollout is not None
        serving = serving_version(spec, status)
        router = self.router(body, spec)
        namespace = body["metadata"]["namespace"]

        holds = reconcile_holds(spec.holds, status.holds, now, notice=self.hold_notice)
        held = held_versions(spec.holds, now)
        before = status.rollout
        state: ServingState = await router.reconcile(
            ServingPlan(serving, before.candidate, before.weight if before.candidate else 0, held)
        )

        checks: list[CheckRecord] | None = None
        if before.candidate is not None and checks_due(before, parse_duration(spec.interval), now):
            checks = await self._checks(
                spec, source, now, namespace, before.candidate, before.stable or serving
            )
        result = step_rollout(
            before,
            RolloutInputs(
                spec=rollout,
                serving=serving,
                offered=_offered(spec, status, serving),
                now=now,
                candidate_ready=bool(before.candidate and state.ready.get(before.candidate)),
                checks=checks,
                data_quality_hold=_held_for_data_quality(status.decision),
            ),
        )
        after = result.status
        new_serving = result.promoted or serving
        plan = ServingPlan(new_serving, after.candidate, after.weight if after.candidate else 0, held)
        if (plan.stable, plan.candidate, plan.weight) != (serving, before.candidate, before.weight) or (
            after.candidate is not None and after.candidate not in state.replicas
        ):
            state = await router.reconcile(plan)

        holds = reconcile_holds(
            spec.holds, status.holds, now, services=state.services, notice=self.hold_notice
        )
        updates: dict[str, Any] = {
            "rollout": after,
            "holds": holds.status,
            "serving": dict(state.replicas),
            "serving_rollout": rollout.to_wire(),
        }
        if result.promoted is not None:
            updates.update(current_version=result.promoted, previous_version=serving, baseline_anchor=now)
        retrained = status.retraining.candidate
        if (
            result.rolled_back is not None
            and retrained is not None
            and retrained.version == result.rolled_back
        ):
            # A rolled-back candidate no longer blocks retraining as "awaiting rollout".
            updates["retraining"] = status.retraining.model_copy(update={"candidate": None})
        new_status = status.model_copy(update=updates)
        if new_status.current_version is None:
            new_status = new_status.model_copy(update={"current_version": serving})
        return DeliveryStep(
            new_status,
            result.draft,
            [*result.events, *holds.events],
            checks or [],
            result.promoted,
            result.rolled_back,
        )

    async def _checks(
        self,
        spec: ModelMonitorSpec,
        source: SourceFactory,
        now: datetime,
        namespace: str,
        candidate: str,
        stable: str,
    ) -> list[CheckRecord]:
        try:
            metrics = await source()
        except SpecError as error:
            return [CheckRecord(name="prometheus", result=RolloutCheck.NO_DATA, message=str(error))]
        return await canary_checks(
            spec, metrics, now, namespace=namespace, candidate=candidate, stable=stable
        )

    async def finalize(self, body: Mapping[str, Any], rollout: RolloutSpec, serving: str | None) -> None:
        """Give the team's serving objects back (the monitor is deleted, or stopped rolling out),
        serving ``serving``: the version that serves now, so nothing is rolled back."""
        meta = body["metadata"]
        monitor = MonitorRef(meta["namespace"], meta["name"], meta.get("uid", ""))
        await router_for(rollout.router, self.kube, monitor, rollout).finalize(serving)


__all__ = ["DeliveryActuator", "DeliveryStep", "serving_version"]
