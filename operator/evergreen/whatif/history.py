"""What a replayed history says, independently of any policy: its timeline, data incidents and
KPI readings.

Every policy is priced on the same replay (one set of evaluations), so these facts are taken
from it once. KPI readings are placed at the time they describe: a KPI with ``labelDelay``
judged at ``t`` describes the window that ended at ``t - labelDelay``; an estimated KPI the
window ending at ``t``. A measured and an estimated KPI are separate series.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import cached_property

from evergreen.api.decisions import Action, Decision
from evergreen.api.durations import parse_duration
from evergreen.api.spec import ModelMonitorSpec
from evergreen.api.status import CheckOutcome, CheckState
from evergreen.backtest import Step
from evergreen.observation.evaluate import Evaluation

#: A KPI series: the KPI's name and its labels (sorted), e.g. ("precision", (("segment", "ios"),)).
SeriesId = tuple[str, tuple[tuple[str, str], ...]]


@dataclass(frozen=True)
class Span:
    """A half-open stretch of time ``[start, end)``."""

    start: datetime
    end: datetime

    @property
    def length(self) -> timedelta:
        return self.end - self.start

    def covers(self, at: datetime) -> bool:
        return self.start <= at < self.end


def merged(spans: Iterable[Span]) -> list[Span]:
    """The union of ``spans`` as disjoint spans, in time order."""
    result: list[Span] = []
    for span in sorted(spans, key=lambda s: s.start):
        if span.end <= span.start:
            continue
        if result and span.start <= result[-1].end:
            if span.end > result[-1].end:
                result[-1] = Span(result[-1].start, span.end)
        else:
            result.append(span)
    return result


def total(spans: Iterable[Span]) -> timedelta:
    """How much time the union of ``spans`` covers."""
    return sum((span.length for span in merged(spans)), timedelta(0))


def minus(spans: Sequence[Span], removed: Sequence[Span]) -> list[Span]:
    """``spans`` with every part covered by ``removed`` cut out."""
    result = merged(spans)
    for cut in merged(removed):
        kept: list[Span] = []
        for span in result:
            if cut.end <= span.start or span.end <= cut.start:
                kept.append(span)
                continue
            if span.start < cut.start:
                kept.append(Span(span.start, cut.start))
            if cut.end < span.end:
                kept.append(Span(cut.end, span.end))
        result = kept
    return result


def kpi_outcomes(evaluation: Evaluation) -> tuple[CheckOutcome, ...]:
    """Every KPI outcome of an evaluation, measured or estimated: each is counted alike.

    Estimated KPIs (from prediction scores, while labels are late) travel beside the measured
    ones, in ``evaluation.estimates``.
    """
    return (*evaluation.kpis, *evaluation.estimates)


def _estimated(outcome: CheckOutcome) -> bool:
    """An estimate describes the current window; a measured KPI the one its labels complete."""
    return outcome.estimated


@dataclass(frozen=True)
class Incident:
    """A data incident: a pipeline break the monitor held for (retraining on it poisons a model)."""

    span: Span
    reason: str


@dataclass(frozen=True)
class Reading:
    """One KPI series as one evaluation saw it, placed at the time it describes."""

    series: SeriesId
    #: When it was evaluated, and the time it describes (earlier by the KPI's labelDelay).
    evaluated: datetime
    span: Span
    breached: bool
    #: Seen while a data incident was open: no retrain can restore it.
    during_incident: bool


@dataclass(frozen=True)
class History:
    """The facts of a replay every policy is priced on."""

    steps: tuple[Step, ...]
    #: The time each evaluation stands for: until the next one, at most :func:`longest_gap`.
    spans: tuple[Span, ...]
    incidents: tuple[Incident, ...]
    readings: tuple[Reading, ...]
    #: Where some KPI had no data, failed or had no labels arriving (counted neither way).
    kpi_unknown: tuple[Span, ...]
    #: A KPI series back within its bounds for less than this is still in the same episode (the
    #: monitor's persistence window: noise does not end a drift).
    tolerance: timedelta = timedelta(0)

    @property
    def start(self) -> datetime:
        return self.spans[0].start

    @property
    def end(self) -> datetime:
        return self.spans[-1].end

    def incident_at(self, at: datetime) -> Incident | None:
        return next((i for i in self.incidents if i.span.covers(at)), None)

    @cached_property
    def _outside(self) -> dict[SeriesId, list[Span]]:
        found: dict[SeriesId, list[Span]] = {}
        for reading in self.readings:
            if reading.breached:
                found.setdefault(reading.series, []).append(reading.span)
        return {series: merged(spans) for series, spans in found.items()}

    def outside(self) -> dict[SeriesId, list[Span]]:
        """Per KPI series, the time it was outside its bounds."""
        return self._outside

    @cached_property
    def _episodes(self) -> dict[SeriesId, list[Span]]:
        found: dict[SeriesId, list[Span]] = {}
        for series, spans in self.outside().items():
            episodes: list[Span] = []
            for span in spans:
                if episodes and span.start - episodes[-1].end < self.tolerance:
                    episodes[-1] = Span(episodes[-1].start, span.end)
                else:
                    episodes.append(span)
            found[series] = episodes
        return found

    def episodes(self) -> dict[SeriesId, list[Span]]:
        """Per KPI series, each drift episode: from leaving its bounds to being back within them
        for at least :attr:`tolerance` (shorter returns are noise, and do not end it)."""
        return self._episodes

    @cached_property
    def _breached(self) -> dict[datetime, list[Reading]]:
        found: dict[datetime, list[Reading]] = {}
        for reading in self.readings:
            if reading.breached:
                found.setdefault(reading.evaluated, []).append(reading)
        return found

    def breached_at(self, index: int) -> list[Reading]:
        """The KPI series the evaluation at ``index`` saw outside their bounds."""
        return self._breached.get(self.spans[index].start, [])


def _is_hold(decision: Decision | None) -> bool:
    return decision is not None and (
        decision.action is Action.HOLD_FOR_DATA_QUALITY
        or (decision.action, decision.reason) == (Action.ESCALATE, "HoldUnresolved")
    )


def longest_gap(times: Sequence[datetime], interval: timedelta, step: timedelta | None = None) -> timedelta:
    """The most time one evaluation stands for: the replay's step (or the monitor's interval),
    or the usual gap between evaluations if that is longer. A gap beyond it (between the spans
    of a recording, across an outage) is time nobody looked at, and counts for nothing."""
    gaps = sorted(later - earlier for earlier, later in itertools.pairwise(times))
    usual = gaps[len(gaps) // 2] if gaps else interval
    return max(step or interval, interval, usual)


def _spans(times: Sequence[datetime], longest: timedelta) -> list[Span]:
    ends = [*times[1:], times[-1] + longest]
    return [Span(start, min(end, start + longest)) for start, end in zip(times, ends, strict=True)]


def _incidents(steps: Sequence[Step], spans: Sequence[Span]) -> list[Incident]:
    """The monitor's data-quality holds, each from the start of its incident (the first broken
    data in a window) to the end of its last held evaluation."""
    incidents: list[Incident] = []
    current: tuple[datetime, datetime, str] | None = None
    for step, span in zip(steps, spans, strict=True):
        decision = step.decision
        if _is_hold(decision):
            assert decision is not None
            if current is None:
                current = (decision.incident_start or span.start, span.end, decision.reason)
            else:
                current = (current[0], span.end, current[2])
            continue
        if current is not None:
            incidents.append(Incident(Span(current[0], current[1]), current[2]))
            current = None
    if current is not None:
        incidents.append(Incident(Span(current[0], current[1]), current[2]))
    return incidents


def _series(outcome: CheckOutcome) -> Iterator[tuple[tuple[tuple[str, str], ...], bool]]:
    if outcome.series:
        for series in outcome.series:
            yield tuple(sorted(series.labels.items())), series.breached
    elif outcome.value is not None or outcome.labels:
        # An outcome that carries only its worst series (recorded before series were kept).
        yield tuple(sorted(outcome.labels.items())), outcome.state is CheckState.BREACHED


def read_history(spec: ModelMonitorSpec, steps: Sequence[Step], every: timedelta | None = None) -> History:
    """Timeline, incidents and KPI readings of a replay (``steps`` in time order, evaluated
    ``every`` so often: default the monitor's interval)."""
    if not steps:
        raise ValueError("a what-if comparison needs at least one replayed evaluation")
    interval = parse_duration(spec.interval)
    spans = _spans([s.time for s in steps], longest_gap([s.time for s in steps], interval, every))
    incidents = _incidents(steps, spans)
    delays = {
        kpi.name: parse_duration(kpi.label_delay) if kpi.label_delay else timedelta(0) for kpi in spec.kpis
    }
    readings: list[Reading] = []
    unknown: list[Span] = []
    for step, span in zip(steps, spans, strict=True):
        during = any(incident.span.covers(step.time) for incident in incidents)
        for outcome in kpi_outcomes(step.evaluation):
            estimated = _estimated(outcome)
            name = f"{outcome.name} (estimated)" if estimated else outcome.name
            delay = timedelta(0) if estimated else delays.get(outcome.name, timedelta(0))
            described = Span(span.start - delay, span.end - delay)
            silent = outcome.label_rate is not None and outcome.label_rate <= 0
            if outcome.state in (CheckState.NO_DATA, CheckState.ERROR) or silent:
                # No data, or labels that stopped arriving: the KPI says nothing about the model.
                unknown.append(described)
                continue
            for labels, breached in _series(outcome):
                readings.append(Reading((name, labels), step.time, described, breached, during))
    tolerance = interval * spec.policy.persistence.of
    return History(
        tuple(steps), tuple(spans), tuple(incidents), tuple(readings), tuple(merged(unknown)), tolerance
    )
