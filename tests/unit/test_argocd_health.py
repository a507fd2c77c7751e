"""The Argo CD health check, run by a real Lua 5.1 interpreter over statuses the operator writes.

Every fixture is built by the operator's own code: conditions from ``evaluation_drafts`` and
``merge_conditions`` over a replay of the bundled scenario, decisions from the policy engine,
rollout conditions from the canary state machine, serialized by ``ModelMonitorStatus``. A
renamed reason or field breaks these tests instead of silently breaking Argo CD.
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
from collections.abc import Sequence
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml

from evergreen import backtest
from evergreen.api.decisions import Action
from evergreen.api.delivery import RolloutSpec
from evergreen.api.resource import API_VERSION, KIND, parse_spec
from evergreen.api.status import (
    CheckOutcome,
    CheckState,
    Condition,
    ConditionStatus,
    ConditionType,
    ModelMonitorStatus,
)
from evergreen.cli import bundled_recording
from evergreen.conditions import (
    ConditionDraft,
    evaluation_drafts,
    merge_conditions,
    spec_error_drafts,
    unavailable_drafts,
)
from evergreen.delivery.rollout import RolloutInputs, step_rollout
from evergreen.errors import SpecError
from evergreen.observation.evaluate import Evaluation, ProblemKind, SignalProblem
from evergreen.policy import PolicyState, advance
from evergreen.signals.recording import RecordedSource

lupa = pytest.importorskip("lupa.lua51")

ROOT = Path(__file__).parents[2]
SCRIPT = ROOT / "deploy" / "argocd" / "modelmonitor-health.lua"
CONFIG_MAP = ROOT / "deploy" / "argocd" / "argocd-cm.yaml"
GENERATION = 3


def health(resource: dict[str, Any]) -> tuple[str, str]:
    """Run the script as Argo CD does: ``obj`` is the resource, the chunk returns ``hs``."""
    lua = lupa.LuaRuntime(unpack_returned_tuples=False)
    assert lua.eval("_VERSION") == "Lua 5.1"
    lua.globals().obj = lua.table_from(resource, recursive=True)
    result = lua.execute(SCRIPT.read_text())
    return str(result["status"]), str(result["message"])


def resource(
    status: ModelMonitorStatus | None, *, mode: str = "Enforce", generation: int = GENERATION
) -> dict[str, Any]:
    body: dict[str, Any] = {
        "apiVersion": API_VERSION,
        "kind": KIND,
        "metadata": {"name": "fraud-detector", "namespace": "ml", "generation": generation},
        "spec": {"model": "fraud-detector", "mode": mode},
    }
    if status is not None:
        body["status"] = status.to_wire()
    return body


@functools.cache
def _replay() -> list[backtest.Step]:
    recording = bundled_recording()
    spec = parse_spec(recording.monitor["spec"])
    return asyncio.run(backtest.replay(spec, RecordedSource(recording), recording.times, namespace="ml"))


def evaluated(action: Action, *, reason: str | None = None) -> ModelMonitorStatus:
    """The status written after the first replayed evaluation that decided ``action``."""
    spec = parse_spec(bundled_recording().monitor["spec"])
    step = next(
        s
        for s in _replay()
        if s.decision is not None
        and s.decision.action is action
        and (reason is None or s.decision.reason == reason)
    )
    conditions = merge_conditions(
        [], evaluation_drafts(spec, step.evaluation), now=step.time, generation=GENERATION
    )
    return ModelMonitorStatus(
        observed_generation=GENERATION,
        conditions=conditions,
        decision=step.decision,
        last_evaluation=step.evaluation.summary(),
    )


def with_drafts(status: ModelMonitorStatus, drafts: Sequence[ConditionDraft]) -> ModelMonitorStatus:
    assert status.last_evaluation is not None
    now = status.last_evaluation.time + timedelta(minutes=1)
    conditions = merge_conditions(status.conditions, drafts, now=now, generation=GENERATION)
    return status.model_copy(update={"conditions": conditions})


def rollout_draft(*, approved: bool) -> ConditionDraft:
    """The Rollout condition the canary state machine writes when a candidate is offered."""
    raw = dict(bundled_recording().monitor["spec"]["rollout"])
    assert raw["approval"] == "Manual"
    raw["gates"] = ["Start", "Promotion"]
    if approved:
        raw["approvedVersion"] = "v13"
    status = evaluated(Action.NO_ACTION)
    assert status.last_evaluation is not None
    result = step_rollout(
        status.rollout,
        RolloutInputs(
            spec=RolloutSpec.model_validate(raw),
            serving="v12",
            offered="v13",
            now=status.last_evaluation.time,
        ),
    )
    return result.draft


def test_the_configmap_snippet_carries_the_script_verbatim() -> None:
    data = yaml.safe_load(CONFIG_MAP.read_text())["data"]
    assert data == {"resource.customizations.health.evergreen.dev_ModelMonitor": SCRIPT.read_text()}


def test_a_new_monitor_is_progressing() -> None:
    assert health(resource(None)) == ("Progressing", "Waiting for the first evaluation")
    assert health(resource(ModelMonitorStatus()))[0] == "Progressing"


def test_a_changed_spec_is_progressing_until_evaluated() -> None:
    status = evaluated(Action.ESCALATE)
    state, message = health(resource(status, generation=GENERATION + 1))
    assert (state, message) == ("Progressing", f"Waiting for the evaluation of generation {GENERATION + 1}")


@pytest.mark.parametrize("action", [Action.NO_ACTION, Action.WATCH])
def test_a_monitor_that_needs_nobody_is_healthy(action: Action) -> None:
    status = evaluated(action)
    assert status.decision is not None
    state, message = health(resource(status))
    assert state == "Healthy"
    assert message.startswith(f"{action.value} ({status.decision.reason}): ")


@pytest.mark.parametrize(
    ("action", "reason"),
    [
        (Action.HOLD_FOR_DATA_QUALITY, "UnitChange"),
        (Action.HOLD_FOR_DATA_QUALITY, "SegmentBreak"),
        (Action.ESCALATE, "HoldUnresolved"),
    ],
)
def test_holds_and_escalations_are_degraded_with_the_decision(action: Action, reason: str) -> None:
    status = evaluated(action, reason=reason)
    assert status.decision is not None
    state, message = health(resource(status))
    assert state == "Degraded"
    assert message == f"{action.value} ({reason}): {status.decision.message}"


def test_a_breached_kpi_is_degraded_with_the_condition_message() -> None:
    status = evaluated(Action.ESCALATE).model_copy(update={"decision": None})
    kpi = next(c for c in status.conditions if c.type == ConditionType.KPI_BREACHED)
    assert kpi.status is ConditionStatus.TRUE
    assert health(resource(status)) == ("Degraded", f"KPIBreached {kpi.reason}: {kpi.message}")


def test_an_invalid_spec_is_degraded_naming_the_field() -> None:
    with pytest.raises(SpecError) as error:
        parse_spec({"model": "fraud-detector", "interval": "often"})
    status = with_drafts(evaluated(Action.NO_ACTION), spec_error_drafts("InvalidSpec", str(error.value)))
    state, message = health(resource(status))
    assert state == "Degraded"
    assert message.startswith("Ready InvalidSpec: spec.interval")


def test_unreadable_prometheus_is_degraded() -> None:
    status = evaluated(Action.NO_ACTION)
    assert status.last_evaluation is not None
    outage = Evaluation(
        time=status.last_evaluation.time,
        duration_seconds=0.1,
        queries=4,
        problems=(SignalProblem("spec.drift", ProblemKind.UNAVAILABLE, "connection refused"),),
    )
    state, message = health(resource(with_drafts(status, unavailable_drafts(outage))))
    assert state == "Degraded"
    assert message.startswith("Ready PrometheusUnavailable: spec.drift: connection refused")


def decided_without(kind: ProblemKind, *, everything: bool) -> ModelMonitorStatus:
    """The status after an evaluation whose drift (or every signal) came back ``kind``.

    The decision comes from the policy engine and the conditions from ``evaluation_drafts``,
    as the reconciler writes them.
    """
    spec = parse_spec(bundled_recording().monitor["spec"])
    step = next(s for s in _replay() if s.decision is not None and s.decision.action is Action.NO_ACTION)
    fields = ["spec.drift", "spec.predictionDrift"]
    if everything:
        fields += [f"spec.dataQuality[{i}].query" for i in range(len(spec.data_quality))]
        fields += [f"spec.kpis[{i}].query" for i in range(len(spec.kpis))]

    def blank(outcomes: tuple[CheckOutcome, ...]) -> tuple[CheckOutcome, ...]:
        if not everything:
            return outcomes
        return tuple(
            CheckOutcome(name=o.name, state=CheckState.NO_DATA, min=o.min, max=o.max) for o in outcomes
        )

    evaluation = dataclasses.replace(
        step.evaluation,
        drift=None,
        prediction_drift=None,
        data_quality=blank(step.evaluation.data_quality),
        kpis=blank(step.evaluation.kpis),
        problems=tuple(SignalProblem(f, kind, "nothing to judge yet") for f in fields),
    )
    decision = advance(spec, evaluation, PolicyState()).decision
    assert decision is not None and decision.action is Action.UNKNOWN
    conditions = merge_conditions(
        [], evaluation_drafts(spec, evaluation), now=step.time, generation=GENERATION
    )
    return ModelMonitorStatus(
        observed_generation=GENERATION,
        conditions=conditions,
        decision=decision,
        last_evaluation=evaluation.summary(),
    )


@pytest.mark.parametrize("everything", [False, True], ids=["drift-warming", "all-warming"])
def test_baselines_warming_up_are_progressing_with_the_reason(everything: bool) -> None:
    status = decided_without(ProblemKind.BASELINE_NOT_READY, everything=everything)
    assert status.decision is not None and status.decision.reason == "BaselineNotReady"
    ready = next(c for c in status.conditions if c.type == ConditionType.READY)
    assert ready.status is (ConditionStatus.FALSE if everything else ConditionStatus.TRUE)
    state, message = health(resource(status))
    assert state == "Progressing"
    assert message == f"Unknown (BaselineNotReady): {status.decision.message}"


@pytest.mark.parametrize("everything", [False, True], ids=["drift-blind", "all-blind"])
def test_an_unknown_decision_for_any_other_reason_is_degraded(everything: bool) -> None:
    status = decided_without(ProblemKind.NO_DATA, everything=everything)
    assert status.decision is not None and status.decision.reason == "NoData"
    state, message = health(resource(status))
    assert state == "Degraded"
    if everything:
        ready = next(c for c in status.conditions if c.type == ConditionType.READY)
        assert message == f"Ready NoData: {ready.message}"
    else:
        assert message == f"Unknown (NoData): {status.decision.message}"
    # Observe mode does not hide a monitor that cannot judge its model either.
    assert health(resource(status, mode="Observe"))[0] == "Degraded"


def test_a_gate_waiting_for_approval_is_suspended() -> None:
    draft = rollout_draft(approved=False)
    assert draft.reason == "AwaitingApproval"
    state, message = health(resource(with_drafts(evaluated(Action.NO_ACTION), [draft])))
    assert (state, message) == ("Suspended", f"Rollout AwaitingApproval: {draft.message}")


def test_a_rollout_under_way_is_progressing() -> None:
    draft = rollout_draft(approved=True)
    assert draft.reason == "Progressing"
    state, message = health(resource(with_drafts(evaluated(Action.NO_ACTION), [draft])))
    assert (state, message) == ("Progressing", f"Rollout Progressing: {draft.message}")


def test_a_running_retraining_is_progressing() -> None:
    draft = ConditionDraft(ConditionType.RETRAINING, ConditionStatus.TRUE, "Running", "run 4 for drift")
    state, message = health(resource(with_drafts(evaluated(Action.NO_ACTION), [draft])))
    assert (state, message) == ("Progressing", "Retraining Running: run 4 for drift")


def test_observe_mode_is_suspended_unless_something_is_wrong() -> None:
    state, message = health(resource(evaluated(Action.WATCH), mode="Observe"))
    assert state == "Suspended"
    assert message.startswith("Observe mode: decisions are explained, not enforced; Watch (")
    # Observe mode does not hide a model that needs a person.
    assert health(resource(evaluated(Action.ESCALATE), mode="Observe"))[0] == "Degraded"


def test_the_fields_the_script_reads_keep_their_wire_names() -> None:
    """Fields the script reads exist on the status model under the names it uses."""
    wire = Condition(
        type=ConditionType.READY,
        status=ConditionStatus.TRUE,
        reason="Evaluated",
        message="ok",
        last_transition_time=_replay()[0].time,
    ).to_wire()
    assert {"type", "status", "reason", "message"} <= set(wire)
    assert "observedGeneration" in ModelMonitorStatus(observed_generation=1).to_wire()
