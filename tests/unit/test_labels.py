"""Late labels: a KPI judged on a window that can be complete; a label stop is a pipeline incident."""

from __future__ import annotations

import asyncio
import dataclasses
from datetime import datetime, timedelta

from evergreen.api.decisions import Action
from evergreen.observation.evaluate import Evaluation, evaluate
from evergreen.signals.samples import QueryResult, Sample
from tests.unit.test_policy import T0, decisions, evaluation, run, spec, times, world


class Clock:
    """Answers every query with one sample and remembers when each query was asked for."""

    def __init__(self, labels: float = 5.0) -> None:
        self.asked: dict[str, datetime] = {}
        self.labels = labels

    async def instant(self, query: str, at: datetime, *, field: str) -> QueryResult:
        self.asked[field] = at
        value = self.labels if field.endswith("labelsQuery") else 0.95
        return QueryResult(query, (Sample({}, value),))


def test_a_kpi_with_a_label_delay_is_judged_on_the_window_that_ended_that_long_ago() -> None:
    config = spec(
        drift=None,
        dataQuality=[],
        kpis=[
            {"name": "conversion", "query": "q", "min": 0.5, "labelDelay": "6h", "labelsQuery": "l"},
            {"name": "precision", "query": "p", "min": 0.5},
        ],
    )
    clock = Clock()
    evaluated = asyncio.run(evaluate(config, clock, T0, namespace="ml"))
    assert clock.asked["spec.kpis[0].query"] == T0 - timedelta(hours=6)
    assert clock.asked["spec.kpis[1].query"] == T0
    assert clock.asked["spec.kpis[0].labelsQuery"] == T0  # labels arrive (or not) now
    assert evaluated.kpis[0].label_rate == 5.0
    assert evaluated.queries == 3


def with_labels(item: Evaluation, rate: float) -> Evaluation:
    """The evaluation, with labels arriving at ``rate`` for its KPI."""
    return dataclasses.replace(item, kpis=(item.kpis[0].model_copy(update={"label_rate": rate}),))


LABELLED = spec(kpis=[{"name": "precision", "query": "q", "min": 0.9, "labelsQuery": "l"}])


def test_labels_stopping_while_inputs_are_stable_holds_instead_of_retraining() -> None:
    # Labels flow, then stop; the KPI computed over the stopped window collapses.
    flowing = [with_labels(evaluation(at, world(), spec_=LABELLED), 40.0) for at in times(2)]
    stopped = [
        with_labels(evaluation(at, world(), precision=0.2, spec_=LABELLED), 0.0) for at in times(8)[2:]
    ]
    states = run([*flowing, *stopped], LABELLED)
    seen = decisions(states)
    assert all(action != "Retrain" for action, _ in seen)
    assert seen[-1] == ("HoldForDataQuality", "LabelPipelineStopped")
    decision = states[-1].decision
    assert decision is not None
    assert "labels of precision stopped arriving" in decision.message
    assert any(e.signal == "labels" and e.check == "precision" for e in decision.evidence)


def test_the_hold_ends_when_labels_catch_up() -> None:
    flowing = [with_labels(evaluation(at, world(), spec_=LABELLED), 40.0) for at in times(2)]
    stopped = [with_labels(evaluation(at, world(), spec_=LABELLED), 0.0) for at in times(5)[2:]]
    back = [with_labels(evaluation(at, world(), spec_=LABELLED), 400.0) for at in times(9)[5:]]
    states = run([*flowing, *stopped, *back], LABELLED)
    assert ("HoldForDataQuality", "LabelPipelineStopped") in decisions(states)
    assert decisions(states)[-1] == ("NoAction", "Healthy")


def test_a_labels_query_that_never_saw_labels_is_not_a_stop() -> None:
    states = run(
        [with_labels(evaluation(at, world(), spec_=LABELLED), 0.0) for at in times(4)],
        LABELLED,
    )
    assert all(action is not Action.HOLD_FOR_DATA_QUALITY.value for action, _ in decisions(states))
