"""Replay the decision engine over history: what would Evergreen have decided, and when?

The backtest calls exactly what the live operator calls for every evaluation
(:func:`~evergreen.observation.evaluate.evaluate`, then
:func:`~evergreen.policy.engine.advance`); only the clock and the metric source differ.
Against a live Prometheus, each planned query is fetched once per span as a range query on
the replay's grid (:mod:`evergreen.signals.prefetch`), so an evaluation reads memory, not
the network, and gets the very answers its instant queries would.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from evergreen.api.decisions import Action, Decision
from evergreen.api.durations import parse_duration
from evergreen.api.spec import ModelMonitorSpec
from evergreen.observation.evaluate import Evaluation, evaluate
from evergreen.observation.plan import plan
from evergreen.policy.engine import BaselineBounds, PolicyState, advance, baseline_bounds
from evergreen.report import estimate_lines, estimates_json
from evergreen.signals.prefetch import Grid, Prefetch, PrefetchedSource, RangeQueries
from evergreen.signals.samples import Sample
from evergreen.signals.source import MetricSource

#: ``progress(done, total)``: called as evaluations complete (``total`` may grow while an
#: open incident makes the replay evaluate some times again).
Progress = Callable[[int, int], None]


@dataclass(frozen=True)
class Step:
    """One replayed evaluation and the decision it led to."""

    time: datetime
    evaluation: Evaluation
    decision: Decision | None
    #: KPIs whose estimate calibration drift kept out of this decision.
    estimates_untrusted: tuple[str, ...] = ()

    @property
    def judged(self) -> bool:
        """Whether any signal could be judged (otherwise the decision is Unknown)."""
        return self.decision is not None and self.decision.action is not Action.UNKNOWN


@dataclass(frozen=True)
class Summary:
    """What the replay would have done."""

    evaluations: int
    #: Evaluations Prometheus could not answer (their decision is Unknown).
    unavailable: int
    #: Decisions entered (a decision that holds over many evaluations counts once).
    entered: Mapping[Action, int]
    #: When each action was first decided.
    first: Mapping[Action, datetime]
    #: Evaluations spent in each action.
    time_in: Mapping[Action, int] = field(default_factory=dict)
    #: Evaluations where at least one signal could be judged.
    judged: int = 0
    #: Retraining runs the operator would have started: a Retrain decision starts one only when
    #: cooldown and budgets allow (None: the monitor has no spec.retraining).
    retrains_started: int | None = None

    @property
    def retrains(self) -> int:
        """Retrain decisions entered (not runs: see ``retrains_started``)."""
        return self.entered.get(Action.RETRAIN, 0)

    @property
    def holds(self) -> int:
        return self.entered.get(Action.HOLD_FOR_DATA_QUALITY, 0)

    @property
    def unknown(self) -> int:
        """Evaluations where nothing could be judged."""
        return self.time_in.get(Action.UNKNOWN, 0)


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


def sampled_times(
    start: datetime, end: datetime, step: timedelta, interval: timedelta, persistence_of: int
) -> list[datetime]:
    """Evaluation times for a replay sampled every ``step`` that judges like the operator.

    Persistence counts evaluations ``interval`` apart. With a ``step`` longer than the
    interval, every sampled time is preceded by the ``persistence_of - 1`` evaluations the
    operator would have made just before it, so a hold or an escalation shows at any step.
    """
    sampled = evaluation_times(start, end, step)
    if step <= interval:
        return sampled
    return sorted({at - interval * back for at in sampled for back in range(persistence_of)})


def planned_queries(
    spec: ModelMonitorSpec, namespace: str, times: Sequence[datetime], bounds: BaselineBounds
) -> list[Prefetch]:
    """The queries ``evaluate`` asks at ``times`` with ``bounds``, as :class:`Prefetch` items.

    A baseline anchored by an acknowledgement can differ at the first times, so the plan is
    taken at the first and the last time; a query asked at only some times is still right
    at those (the rest are never asked).
    """
    prefetches: list[Prefetch] = []
    for at in dict.fromkeys((times[0], times[-1])):
        queries = plan(spec, namespace, at=at, baseline_anchor=bounds.anchor, baseline_until=bounds.until)
        prefetches += [Prefetch(q.promql, q.field) for q in (*queries.drift, *queries.prediction_drift)]
        checks = (*queries.data_quality, *queries.kpis, *queries.kpi_labels, *queries.samples)
        prefetches += [Prefetch(q.promql, q.field, q.delay) for q in checks if q is not None]
    return list(dict.fromkeys(prefetches))


async def prefetched(
    spec: ModelMonitorSpec,
    source: MetricSource,
    times: Sequence[datetime],
    *,
    namespace: str,
    fetched: Progress | None = None,
) -> MetricSource:
    """``source`` with every planned query being fetched once over ``times`` (see the module
    doc); the fetch runs in the background, earliest times first, and ``fetched(done, total)``
    counts its range queries.

    Returns ``source`` itself when it cannot answer range queries (a recording) or when
    ``times`` lie on no grid worth fetching.
    """
    grid = Grid.covering(times)
    if not isinstance(source, RangeQueries) or grid is None:
        return source
    bounds = baseline_bounds(spec, PolicyState(), None)
    memory = PrefetchedSource(source)
    memory.start(source, planned_queries(spec, namespace, times, bounds), grid, fetched=fetched)
    return memory


async def replay(
    spec: ModelMonitorSpec,
    source: MetricSource,
    times: Sequence[datetime],
    *,
    namespace: str,
    references: Mapping[str, Sequence[Sample]] | None = None,
    concurrency: int = 8,
    prefetch: bool = True,
    progress: Progress | None = None,
) -> list[Step]:
    """Evaluate at each time, then decide in order, carrying the engine's state along.

    Evaluations do not depend on earlier decisions, so they run concurrently (at most
    ``concurrency`` at a time); the engine then walks them in time order. With ``prefetch``
    (and a source that answers range queries) the planned queries are fetched once per span,
    earliest times first, while the first evaluations run; ``progress(done, total)`` counts
    evaluations.
    """
    if prefetch and times:
        source = await prefetched(spec, source, times, namespace=namespace)
    first = baseline_bounds(spec, PolicyState(), None)
    count = _Count(len(times), progress)

    async def evaluate_at(at: datetime, bounds: BaselineBounds) -> Evaluation:
        evaluation = await evaluate(
            spec,
            source,
            at,
            namespace=namespace,
            references=references,
            baseline_anchor=bounds.anchor,
            baseline_until=bounds.until,
        )
        count.done()
        return evaluation

    if isinstance(source, PrefetchedSource):
        try:
            return await _in_order(spec, source, times, evaluate_at, namespace=namespace)
        finally:
            source.close()

    limit = asyncio.Semaphore(concurrency)

    async def limited(at: datetime) -> Evaluation:
        async with limit:
            return await evaluate_at(at, first)

    evaluations = await asyncio.gather(*(limited(at) for at in times))
    state = PolicyState()
    steps = []
    for at, unbounded in zip(times, evaluations, strict=True):
        bounds = baseline_bounds(spec, state, None)
        # While an incident is open its baseline stays before it, as in the operator: only
        # these evaluations depend on earlier decisions, and are evaluated again in order.
        if bounds == first:
            evaluation = unbounded
        else:
            count.total += 1
            evaluation = await evaluate_at(at, bounds)
        # Like the operator, decide on every evaluation: one without data decides Unknown.
        state = advance(spec, evaluation, state)
        untrusted = tuple(state.assessment.estimates_untrusted) if state.assessment else ()
        steps.append(Step(at, evaluation, state.decision, untrusted))
    return steps


class _Count:
    """Evaluations done out of ``total``, reported to ``progress``."""

    def __init__(self, total: int, progress: Progress | None) -> None:
        self.total = total
        self.progress = progress
        self.finished = 0

    def done(self) -> None:
        self.finished += 1
        if self.progress is not None:
            self.progress(self.finished, self.total)


#: While an incident is open, the frozen baseline queries of this many evaluations ahead are
#: asked from Prometheus while the current ones are computed.
ASK_AHEAD = 16


async def _in_order(
    spec: ModelMonitorSpec,
    source: PrefetchedSource,
    times: Sequence[datetime],
    evaluate_at: Callable[[datetime, BaselineBounds], Awaitable[Evaluation]],
    *,
    namespace: str,
) -> list[Step]:
    """Evaluate each time once, in order, with the bounds the engine's state sets.

    Answers come from memory, so evaluating ahead gains nothing; only a baseline frozen by an
    open incident is asked live (its query changes with each time), and is asked ahead.
    """
    first = baseline_bounds(spec, PolicyState(), None)
    state = PolicyState()
    steps = []
    asked: tuple[BaselineBounds, int] = (first, 0)  # bounds asked ahead, up to which index
    for index, at in enumerate(times):
        bounds = baseline_bounds(spec, state, None)
        if bounds != first:
            start = asked[1] if asked[0] == bounds else index
            for later in times[start : index + ASK_AHEAD]:
                queries = plan(
                    spec, namespace, at=later, baseline_anchor=bounds.anchor, baseline_until=bounds.until
                )
                for query in (*queries.drift, *queries.prediction_drift):
                    source.ask_ahead(query.promql, later, field=query.field)
            asked = (bounds, max(start, index + ASK_AHEAD))
        evaluation = await evaluate_at(at, bounds)
        # Like the operator, decide on every evaluation: one without data decides Unknown.
        state = advance(spec, evaluation, state)
        untrusted = tuple(state.assessment.estimates_untrusted) if state.assessment else ()
        steps.append(Step(at, evaluation, state.decision, untrusted))
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


def retrains_started(spec: ModelMonitorSpec, steps: Sequence[Step]) -> int | None:
    """Runs a Retrain decision would have started once cooldown and budgets are applied.

    Run durations are unknown in a replay: a run is taken to end as it starts, so the cooldown
    counts from its start (the operator waits at least this long). None without retraining.
    """
    config = spec.retraining
    if config is None:
        return None
    cooldown = parse_duration(config.cooldown)
    budget_per = parse_duration(config.budget.per)
    starts: list[datetime] = []
    for step in steps:
        decision = step.decision
        if decision is None or decision.action is not Action.RETRAIN:
            continue
        at = step.time
        if starts and at < starts[-1] + cooldown:
            continue
        if sum(1 for s in starts if s > at - budget_per) >= config.budget.runs:
            continue
        if config.cost is not None:
            cost_per = parse_duration(config.cost.per)
            spent = sum(1 for s in starts if s > at - cost_per) * config.cost.per_run
            if spent + config.cost.per_run > config.cost.budget:
                continue
        starts.append(at)
    return len(starts)


def summarize(steps: Sequence[Step], spec: ModelMonitorSpec | None = None) -> Summary:
    """Counts over a replay; with ``spec``, also the retraining runs guardrails would allow."""
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
    unavailable = sum(1 for step in steps if step.decision is None or step.evaluation.unavailable)
    judged = sum(1 for step in steps if step.judged)
    started = retrains_started(spec, steps) if spec is not None else None
    return Summary(len(steps), unavailable, entered, first, time_in, judged, started)


def _scope_text(decision: Decision) -> str:
    scope = decision.scope
    if scope is None:
        return ""
    features = ", ".join(scope.features) or "all features"
    segments = f" in {', '.join(scope.segments)}" if scope.segments else ""
    return f"scope: {features}{segments}"


def render(steps: Sequence[Step], *, every: bool = False, spec: ModelMonitorSpec | None = None) -> str:
    """The timeline of decisions (changes only, unless ``every``) with scope and evidence, and a
    summary."""
    lines = ["time                  action               reason                  message"]
    shown = steps if every else changes(steps)
    for step in shown:
        stamp = step.time.strftime("%Y-%m-%d %H:%M")
        d = step.decision
        if d is None:
            continue
        lines.append(f"{stamp}      {d.action.value:<20} {d.reason:<23} {d.message}")
        if scope := _scope_text(d):
            lines.append(f"{'':22}{scope}")
        lines += [f"{'':22}- {item.render()}" for item in d.evidence]
    summary = summarize(steps, spec)
    lines.append("")
    lines.append(
        f"{summary.evaluations} evaluations: {summary.judged} judged, {summary.unknown} Unknown "
        f"({summary.unavailable} without Prometheus)"
    )
    if summary.retrains_started is None:
        started = "no spec.retraining, none would start"
    else:
        started = f"{summary.retrains_started} would start after cooldown and budgets"
    lines.append(
        f"retrain decisions: {summary.retrains} ({started}); holds: {summary.holds}; "
        f"escalations: {summary.entered.get(Action.ESCALATE, 0)}"
    )
    for action, at in sorted(summary.first.items(), key=lambda item: item[1]):
        lines.append(f"  first {action.value}: {at.isoformat()}")
    lines += estimate_lines(steps)
    return "\n".join(lines)


def jsonl(steps: Sequence[Step]) -> Iterator[str]:
    """One JSON object per evaluation: time (RFC 3339), decision, reason, message, scope
    (``{features, segments}`` or null), evidence (strings) and enforced."""
    for step in steps:
        d = step.decision
        record: dict[str, object] = {
            "time": step.time.astimezone(UTC).isoformat().replace("+00:00", "Z"),
            "decision": d.action.value if d else None,
            "reason": d.reason if d else None,
            "message": d.message if d else None,
            "scope": (
                {"features": list(d.scope.features), "segments": list(d.scope.segments)}
                if d is not None and d.scope is not None
                else None
            ),
            "evidence": [item.render() for item in d.evidence] if d else [],
        }
        if step.evaluation.estimates:
            record["estimates"] = estimates_json(step)
        yield json.dumps(record, sort_keys=False)
