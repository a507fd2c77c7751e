"""What each policy's runs would have cost and bought (see :mod:`evergreen.whatif.restoration`
for the assumption the KPI time rests on)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timedelta

from evergreen.api.spec import ModelMonitorSpec
from evergreen.whatif.history import History, merged, total
from evergreen.whatif.restoration import SimulatedRun, outside
from evergreen.whatif.simulate import PolicyRuns


@dataclass(frozen=True)
class PolicyOutcome:
    """One row of the comparison."""

    runs: PolicyRuns
    #: None: the monitor declares no spec.retraining.cost.
    cost: float | None
    #: Time with at least one KPI series outside its bounds, after the restorations assumed.
    kpi_outside: timedelta
    #: The same summed over KPI series (a run that restores one segment of three shows here).
    kpi_series_outside: timedelta
    incidents_held: int
    incidents_retrained_on: int

    @property
    def name(self) -> str:
        return self.runs.policy.name

    @property
    def started(self) -> int:
        return len(self.runs.runs)

    @property
    def scoped(self) -> int:
        return sum(1 for run in self.runs.runs if run.scoped)

    @property
    def unscoped(self) -> int:
        return self.started - self.scoped

    @property
    def blocked(self) -> int:
        return sum(self.runs.blocked.values())


def kpi_outside(history: History, runs: Sequence[SimulatedRun]) -> tuple[timedelta, timedelta]:
    """(time with at least one KPI series outside its bounds, summed time of every series outside)
    once ``runs`` restored what they could."""
    left = outside(history, runs)
    return total(span for spans in left.values() for span in spans), sum(
        (total(spans) for spans in left.values()), timedelta(0)
    )


def outcome(spec: ModelMonitorSpec, history: History, runs: PolicyRuns) -> PolicyOutcome:
    """Count, price and account one policy's runs."""
    cost = spec.retraining.cost if spec.retraining is not None else None
    retrained_on = sum(
        1 for incident in history.incidents if any(incident.span.covers(run.start) for run in runs.runs)
    )
    union, series = kpi_outside(history, runs.runs)
    return PolicyOutcome(
        runs=runs,
        cost=cost.per_run * len(runs.runs) if cost is not None else None,
        kpi_outside=union,
        kpi_series_outside=series,
        incidents_held=len(history.incidents) - retrained_on,
        incidents_retrained_on=retrained_on,
    )


def recorded_kpi_outside(history: History) -> timedelta:
    """Time with a KPI outside its bounds as recorded (no run restored anything)."""
    return total(span for spans in history.outside().values() for span in spans)


def kpi_unknown(history: History) -> timedelta:
    return total(merged(history.kpi_unknown))
