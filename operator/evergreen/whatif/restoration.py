"""What the runs would have restored, under the comparison's assumption.

History cannot say what a retrain would have fixed, so the comparison assumes:

- a run that starts during a KPI series' drift episode (it left its bounds, and has not been
  back within them for the monitor's persistence window) restores that series to within its
  bounds once the run's model serves all traffic (run duration, then rollout and approval),
  until the episode ends in the recorded history; a series that leaves its bounds later is a
  new drift, which needs a new run;
- a run restores the KPI series in its scope: every series when it is unscoped; with segments,
  those segments' series and the whole-population series (features do not limit it);
- a run started during a data incident (a pipeline break the monitor held for) is trained on
  broken data: it restores nothing and counts as a failed run towards ``giveUpAfter``; the harm
  of serving a poisoned model is not counted;
- no run restores a KPI reading taken while a data incident is open (the break is the
  pipeline's, not the model's).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from evergreen.api.decisions import Scope
from evergreen.whatif.history import History, SeriesId, Span, minus


@dataclass(frozen=True)
class SimulatedRun:
    """A run a policy would have started."""

    start: datetime
    #: When it finishes (cooldown counts from here).
    end: datetime
    #: When its model would serve all traffic (after the rollout and any approval).
    effective: datetime
    trigger: str
    scope: Scope | None = None
    #: Started while a data incident was open: trained on broken data, it restores nothing.
    on_incident: bool = False

    @property
    def scoped(self) -> bool:
        return self.scope is not None and bool(self.scope.features or self.scope.segments)

    @property
    def accepted(self) -> bool:
        """Whether it restores the model (a run on broken data does not, and counts as failed)."""
        return not self.on_incident


def _segment_matches(segment: str, labels: dict[str, str]) -> bool:
    """Whether a scope segment (``segment=ios`` or ``a=x,b=y``) names these series labels."""
    pairs = [part.partition("=") for part in segment.split(",")]
    return all(labels.get(key) == value for key, _, value in pairs)


def covers(run: SimulatedRun, series: SeriesId) -> bool:
    """Whether ``run`` restores this KPI series (its scope includes it)."""
    scope = run.scope
    labels = dict(series[1])
    if scope is None or not scope.segments or not labels:
        return True
    return any(_segment_matches(segment, labels) for segment in scope.segments)


def restored(history: History, runs: Sequence[SimulatedRun]) -> dict[SeriesId, list[Span]]:
    """Per KPI series, the time the runs would have brought it back within its bounds."""
    unfixable: dict[SeriesId, list[Span]] = {}
    for reading in history.readings:
        if reading.breached and reading.during_incident:
            unfixable.setdefault(reading.series, []).append(reading.span)
    result: dict[SeriesId, list[Span]] = {}
    for series, episodes in history.episodes().items():
        spans = [
            Span(run.effective, episode.end)
            for run in runs
            if run.accepted and covers(run, series)
            for episode in episodes
            if episode.start <= run.start and run.effective < episode.end
        ]
        result[series] = minus(spans, unfixable.get(series, []))
    return result


def still_outside(history: History, index: int, fixed: dict[SeriesId, list[Span]]) -> bool:
    """Whether the evaluation at ``index`` would still see a KPI series outside its bounds that
    the runs so far (``fixed``: what :func:`restored` says of them) do not restore (so a decision
    driven by KPIs would still stand)."""
    return any(minus([reading.span], fixed.get(reading.series, [])) for reading in history.breached_at(index))


def outside(history: History, runs: Sequence[SimulatedRun]) -> dict[SeriesId, list[Span]]:
    """Per KPI series, the time it would still have been outside its bounds despite ``runs``."""
    fixed = restored(history, runs)
    return {series: minus(spans, fixed.get(series, [])) for series, spans in history.outside().items()}
