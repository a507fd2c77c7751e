"""The what-if table: every policy priced on one replayed history, with its assumption."""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from evergreen.api.spec import Mode, ModelMonitorSpec
from evergreen.backtest import Step
from evergreen.whatif.accounting import PolicyOutcome, kpi_unknown, outcome, recorded_kpi_outside
from evergreen.whatif.history import read_history
from evergreen.whatif.policies import Policy, PolicyKind
from evergreen.whatif.simulate import Assumptions, naive_threshold, simulate

HOUR = timedelta(hours=1)


@dataclass(frozen=True)
class Comparison:
    """Every policy's row, the history they share and the assumption they rest on."""

    start: datetime
    end: datetime
    evaluations: int
    #: The most time one evaluation stands for (longer gaps count for nothing).
    longest_gap: timedelta
    outcomes: tuple[PolicyOutcome, ...]
    assumptions: Assumptions
    #: Time with a KPI outside its bounds as recorded, and with a KPI unknown (not counted).
    recorded_outside: timedelta
    kpi_unknown: timedelta
    incidents: int
    #: Conditions behind the numbers, in words (the assumption first).
    notes: tuple[str, ...]


def _hours(value: timedelta) -> float:
    return round(value / HOUR, 2)


def _stamp(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


def _notes(spec: ModelMonitorSpec, assumptions: Assumptions, policies: Sequence[Policy]) -> list[str]:
    retraining = spec.retraining
    assert retraining is not None
    effect = [f"the run ({_duration(assumptions.run_duration)}, {assumptions.run_duration_source})"]
    if assumptions.rollout_duration:
        effect.append(f"the canary rollout ({_duration(assumptions.rollout_duration)}, spec.rollout)")
    if spec.rollout is not None and spec.rollout.approval.value == "Manual":
        effect.append(f"a Manual approval wait of {_duration(assumptions.approval_wait)} (--approval-wait)")
    budget = f"budget {retraining.budget.runs} per {retraining.budget.per}"
    cost = (
        f"cost {retraining.cost.per_run:g} per run, at most {retraining.cost.budget:g} "
        f"per {retraining.cost.per}"
        if retraining.cost
        else "no spec.retraining.cost: cost not priced"
    )
    notes = [
        "Assumption (history cannot say what a retrain would have fixed): a run started while a KPI "
        "is outside its bounds brings it back within them once its model serves all traffic, after "
        + " + ".join(effect)
        + f" = {_duration(assumptions.time_to_effect)}, until that KPI is back within its bounds in "
        "the recorded history; a KPI that leaves its bounds later is a new drift and needs a new run.",
        "A scoped run restores its segments' KPI series and the whole-population ones. A run started "
        "during a data incident (a pipeline break the monitor held for) is trained on broken data: it "
        "restores nothing and counts as failed towards giveUpAfter (the harm of a poisoned model is "
        "not counted). No run restores a KPI while a data incident is open.",
        f"Guardrails for every policy (spec.retraining): cooldown {retraining.cooldown}, {budget}, {cost}, "
        f"giveUpAfter {retraining.give_up_after}, one run or pending candidate at a time. Each trigger "
        "is served by one restoring run; a blocked scheduled run is skipped.",
        "The evaluations are the recorded ones: a simulated run does not change what the monitor "
        "would have measured or decided afterwards (except Retrain becoming Escalate once runs keep "
        "failing).",
    ]
    for policy in policies:
        if policy.kind is PolicyKind.SCHEDULE:
            assert policy.first is not None
            notes.append(
                f"{policy.name}: the first run {_duration(policy.first)} after the start of the replay "
                "(the model serving at the start counts as freshly trained)."
            )
        elif policy.kind is PolicyKind.NAIVE_PSI:
            notes.append(
                f"{policy.name}: a run when any feature's whole-population PSI is above "
                f"{naive_threshold(spec, policy):g}, unscoped."
            )
    if spec.mode is Mode.OBSERVE:
        notes.append("monitor: spec.mode is Observe; its runs are counted as if it enforced its decisions.")
    return notes


def _duration(value: timedelta) -> str:
    seconds = int(value.total_seconds())
    if seconds == 0:
        return "0s"
    parts = []
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        count, seconds = divmod(seconds, size)
        if count:
            parts.append(f"{count}{unit}")
    return "".join(parts)


def compare(
    spec: ModelMonitorSpec,
    steps: Sequence[Step],
    policies: Sequence[Policy],
    assumptions: Assumptions,
    *,
    step: timedelta | None = None,
) -> Comparison:
    """Price ``steps`` (one replay, evaluated every ``step``) under each policy; ValueError on a
    policy the spec cannot run."""
    history = read_history(spec, steps, step)
    notes = _notes(spec, assumptions, policies)
    outcomes = tuple(outcome(spec, history, simulate(spec, history, p, assumptions)) for p in policies)
    return Comparison(
        start=history.start,
        end=history.end,
        evaluations=len(steps),
        longest_gap=max(span.length for span in history.spans),
        outcomes=outcomes,
        assumptions=assumptions,
        recorded_outside=recorded_kpi_outside(history),
        kpi_unknown=kpi_unknown(history),
        incidents=len(history.incidents),
        notes=tuple(notes),
    )


HEADER = (
    "policy",
    "retrains",
    "scoped",
    "unscoped",
    "cost",
    "KPI outside (h)",
    "incidents held",
    "retrained on",
    "blocked",
)


def rows(comparison: Comparison) -> list[tuple[str, ...]]:
    """The table's cells as text, one row per policy (the header is :data:`HEADER`)."""
    return [
        (
            o.name,
            str(o.started),
            str(o.scoped),
            str(o.unscoped),
            "-" if o.cost is None else f"{o.cost:g}",
            f"{_hours(o.kpi_outside):.1f}",
            str(o.incidents_held),
            str(o.incidents_retrained_on),
            str(o.blocked),
        )
        for o in comparison.outcomes
    ]


def render(comparison: Comparison) -> str:
    """The comparison as a text table, the shared facts, then the assumption and conditions."""
    table = [HEADER, *rows(comparison)]
    widths = [max(len(row[i]) for row in table) for i in range(len(HEADER))]
    lines = [
        f"what-if over {_stamp(comparison.start)} .. {_stamp(comparison.end)} "
        f"({comparison.evaluations} evaluations, each standing for up to "
        f"{_duration(comparison.longest_gap)})",
        "",
    ]
    for index, row in enumerate(table):
        numbers = zip(row[1:], widths[1:], strict=True)
        cells = [row[0].ljust(widths[0]), *(cell.rjust(width) for cell, width in numbers)]
        lines.append("  ".join(cells).rstrip())
        if index == 0:
            lines.append("  ".join("-" * width for width in widths))
    for o in comparison.outcomes:
        if o.runs.gave_up is not None:
            escalated = (
                f"; Escalate (RetrainingNotHelping) entered {o.runs.escalations}x"
                if o.runs.escalations
                else ""
            )
            lines.append(f"{o.name}: gave up retraining at {_stamp(o.runs.gave_up)} (giveUpAfter){escalated}")
    lines += [
        "",
        f"as recorded (no run): a KPI outside its bounds for {_hours(comparison.recorded_outside):.1f} h; "
        f"{comparison.incidents} data incident(s); KPIs without data or labels for "
        f"{_hours(comparison.kpi_unknown):.1f} h (counted neither way)",
        "KPI outside = hours with at least one KPI series (measured or estimated) outside its bounds; "
        "blocked = evaluations a wanted run was stopped by a guardrail",
        "",
        *comparison.notes,
    ]
    return "\n".join(lines)


def policy_record(o: PolicyOutcome) -> dict[str, object]:
    """One policy's row as JSON."""
    return {
        "policy": o.name,
        "retrainsStarted": o.started,
        "scoped": o.scoped,
        "unscoped": o.unscoped,
        "cost": o.cost,
        "kpiOutsideHours": _hours(o.kpi_outside),
        "kpiSeriesOutsideHours": _hours(o.kpi_series_outside),
        "incidentsHeld": o.incidents_held,
        "incidentsRetrainedOn": o.incidents_retrained_on,
        "blocked": dict(sorted(o.runs.blocked.items())),
        "escalations": o.runs.escalations,
        "gaveUp": _stamp(o.runs.gave_up) if o.runs.gave_up else None,
        "runs": [
            {
                "start": _stamp(run.start),
                "end": _stamp(run.end),
                "effective": _stamp(run.effective),
                "trigger": run.trigger,
                "scope": (
                    {"features": list(run.scope.features), "segments": list(run.scope.segments)}
                    if run.scoped and run.scope is not None
                    else None
                ),
                "onIncident": run.on_incident,
            }
            for run in o.runs.runs
        ],
    }


def document(comparison: Comparison) -> dict[str, object]:
    """The whole comparison as one JSON document."""
    a = comparison.assumptions
    return {
        "start": _stamp(comparison.start),
        "end": _stamp(comparison.end),
        "evaluations": comparison.evaluations,
        "evaluationHoursAtMost": _hours(comparison.longest_gap),
        "assumptions": {
            "runDurationHours": _hours(a.run_duration),
            "runDurationSource": a.run_duration_source,
            "rolloutHours": _hours(a.rollout_duration),
            "approvalWaitHours": _hours(a.approval_wait),
            "timeToEffectHours": _hours(a.time_to_effect),
            "notes": list(comparison.notes),
        },
        "recorded": {
            "kpiOutsideHours": _hours(comparison.recorded_outside),
            "kpiUnknownHours": _hours(comparison.kpi_unknown),
            "incidents": comparison.incidents,
        },
        "policies": [policy_record(o) for o in comparison.outcomes],
    }


def jsonl(comparison: Comparison) -> Iterator[str]:
    """One JSON object per policy, each carrying the assumption's parameters and the recorded facts."""
    whole = document(comparison)
    for o in comparison.outcomes:
        record = {**policy_record(o), "assumptions": whole["assumptions"], "recorded": whole["recorded"]}
        yield json.dumps(record)
