"""Replay the decision engine over history: what would Evergreen have decided, and when?

The backtest calls exactly what the live operator calls for every evaluation
(:func:`~evergreen.observation.evaluate.evaluate`, then
:func:`~evergreen.policy.engine.advance`); only the clock and the metric source differ.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from evergreen.api.decisions import Action, Decision
from evergreen.api.spec import ModelMonitorSpec
from evergreen.observation.evaluate import Evaluation, evaluate
from evergreen.policy.engine import PolicyState, advance
from evergreen.signals.samples import Sample
from evergreen.signals.source import MetricSource


@dataclass(frozen=True)
class Step:
    """One replayed evaluation and the decision it led to (None when Prometheus could not answer)."""

    time: datetime
    evaluation: Evaluation
    decision: Decision | None


@dataclass(frozen=True)
class Summary:
    """What the replay would have done."""

    evaluations: int
    unavailable: int
    #: Decisions entered (a decision that holds over many evaluations counts once).
    entered: Mapping[Action, int]
    #: When each action was first decided.
    first: Mapping[Action, datetime]
    #: Evaluations spent in each action.
    time_in: Mapping[Action, int] = field(default_factory=dict)

    @property
    def retrains(self) -> int:
        return self.entered.get(Action.RETRAIN, 0)

    @property
    def holds(self) -> int:
        return self.entered.get(Action.HOLD_FOR_DATA_QUALITY, 0)


def evaluation_times(start: datetime, end: datetime, step: timedelta) -> list[datetime]:
    """``start, start + step, ...`` up to and including ``end``: when a replay evaluates."""
    if step <= timedelta(0):
        raise ValueError(f"step must be positive, got {step}")
    times = []
    at = start
    while at <= end:
        times.append(at)
        at += step
    return times


async def replay(
    spec: ModelMonitorSpec,
    source: MetricSource,
    times: Sequence[datetime],
    *,
    namespace: str,
    references: Mapping[str, Sequence[Sample]] | None = None,
    concurrency: int = 8,
) -> list[Step]:
    """Evaluate at each time, then decide in order, carrying the engine's state along.

    Evaluations do not depend on earlier decisions, so they run concurrently (at most
    ``concurrency`` at a time); the engine then walks them in time order.
    """
    limit = asyncio.Semaphore(concurrency)

    async def evaluate_at(at: datetime) -> Evaluation:
        async with limit:
            return await evaluate(spec, source, at, namespace=namespace, references=references)

    evaluations = await asyncio.gather(*(evaluate_at(at) for at in times))
    state = PolicyState()
    steps = []
    for at, evaluation in zip(times, evaluations, strict=True):
        decision = None
        if not evaluation.unavailable:
            state = advance(spec, evaluation, state)
            decision = state.decision
        steps.append(Step(at, evaluation, decision))
    return steps


def changes(steps: Sequence[Step]) -> list[Step]:
    """The steps where the decision's action or reason changed."""
    result = []
    previous: Decision | None = None
    for step in steps:
        if step.decision is not None and not step.decision.same_as(previous):
            result.append(step)
            previous = step.decision
    return result


def summarize(steps: Sequence[Step]) -> Summary:
    entered: dict[Action, int] = {}
    first: dict[Action, datetime] = {}
    time_in: dict[Action, int] = {}
    previous: Action | None = None
    for step in steps:
        if step.decision is None:
            continue
        action = step.decision.action
        time_in[action] = time_in.get(action, 0) + 1
        if action is not previous:
            entered[action] = entered.get(action, 0) + 1
            first.setdefault(action, step.time)
        previous = action
    unavailable = sum(1 for step in steps if step.decision is None)
    return Summary(len(steps), unavailable, entered, first, time_in)


def render(steps: Sequence[Step], *, every: bool = False) -> str:
    """The timeline of decisions (changes only, unless ``every``) and a summary."""
    lines = ["time                  action               reason                  message"]
    shown = steps if every else changes(steps)
    for step in shown:
        stamp = step.time.strftime("%Y-%m-%d %H:%M")
        if step.decision is None:
            lines.append(f"{stamp}      (Prometheus unavailable: {step.evaluation.problems[0].message})")
            continue
        d = step.decision
        lines.append(f"{stamp}      {d.action.value:<20} {d.reason:<23} {d.message}")
    summary = summarize(steps)
    lines.append("")
    lines.append(
        f"{summary.evaluations} evaluations ({summary.unavailable} without Prometheus); "
        f"retrains that would have run: {summary.retrains}; holds: {summary.holds}; "
        f"escalations: {summary.entered.get(Action.ESCALATE, 0)}"
    )
    for action, at in sorted(summary.first.items(), key=lambda item: item[1]):
        lines.append(f"  first {action.value}: {at.isoformat()}")
    return "\n".join(lines)
