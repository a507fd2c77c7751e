"""A bucket layout change is reported as one, compared on a common support, never drift."""

from __future__ import annotations

import asyncio
import math
from datetime import datetime

from scipy import stats

from evergreen.api.decisions import Action
from evergreen.observation.evaluate import Evaluation, evaluate
from evergreen.policy.engine import PolicyState, advance
from evergreen.signals.samples import QueryResult, Sample
from evergreen.transitions import layout_events
from tests.unit.test_policy import STEP, T0, spec

OLD = [float(b) for b in range(0, 101, 10)]
NEW = [0.0, 20.0, 25.0, 40.0, 60.0, 75.0, 80.0, 100.0]
VALUES = stats.norm(50, 15)
SPEC = spec(
    drift={
        "histogram": "h",
        "window": "1h",
        "baseline": {"offset": "1d", "window": "1d"},
        "minSamples": 500,
    },
    kpis=[],
    dataQuality=[],
)


def layout(n_old: float, n_new: float) -> list[Sample]:
    """What ``sum by (feature, le) (increase(h_bucket[...]))`` returns when ``n_old``
    observations were exported with the old bounds and ``n_new`` with the new ones."""
    samples = []
    exported = {*(OLD if n_old else []), *(NEW if n_new else [])}
    for bound in sorted(exported):
        value = (n_old if bound in OLD else 0.0) + (n_new if bound in NEW else 0.0)
        samples.append(Sample({"feature": "amount", "le": repr(bound)}, value * VALUES.cdf(bound)))
    if n_old + n_new:
        samples.append(Sample({"feature": "amount", "le": "+Inf"}, n_old + n_new))
    return samples


class Windows:
    def __init__(self, baseline: list[Sample], previous: list[Sample], current: list[Sample]) -> None:
        self.answers = {"baseline": baseline, "previous": previous, "current": current}

    async def instant(self, query: str, at: datetime, *, field: str) -> QueryResult:
        window = "baseline" if "offset 1d" in query else "previous" if "offset 1h" in query else "current"
        return QueryResult(query, tuple(self.answers[window]))


def evaluated(windows: Windows, at: datetime = T0) -> Evaluation:
    return asyncio.run(evaluate(SPEC, windows, at, namespace="ml"))


def test_a_window_holding_both_layouts_is_not_judged_and_not_drift() -> None:
    # The exporter switched half-way through the current hour.
    mixed = Windows(layout(240_000, 0), layout(10_000, 0), layout(5_000, 5_000))
    evaluation = evaluated(mixed)
    assert evaluation.drift is not None
    change = evaluation.drift.layouts
    assert len(change) == 1 and next(iter(change.values())).mixed
    state = advance(SPEC, evaluation, PolicyState())
    state = advance(SPEC, evaluated(mixed, T0 + STEP), state)
    assessment = state.assessment
    assert assessment is not None
    assert not (assessment.drift or assessment.warnings or assessment.sudden or assessment.breaks)
    assert [e.signal for e in assessment.layout_changes] == ["layout"]
    assert "not judged until a window holds one layout" in assessment.layout_changes[0].detail
    assert state.decision is not None and state.decision.action is not Action.HOLD_FOR_DATA_QUALITY


def test_pure_layouts_are_compared_on_their_shared_bounds() -> None:
    changed = Windows(layout(240_000, 0), layout(0, 10_000), layout(0, 10_000))
    evaluation = evaluated(changed)
    assert evaluation.drift is not None
    score = float(evaluation.drift.scores.score[0])
    assert math.isfinite(score) and score < 0.01  # the same values on the shared bounds
    decision = advance(SPEC, evaluation, PolicyState()).decision
    assert decision is not None and (decision.action, decision.reason) == (Action.NO_ACTION, "Healthy")
    assert "bucket layout changed for amount (not drift)" in decision.message
    assert any("compared on the 6 bounds both layouts share" in e.detail for e in decision.evidence)


def test_a_layout_change_is_one_informational_event() -> None:
    changed = Windows(layout(240_000, 0), layout(0, 10_000), layout(0, 10_000))
    first = advance(SPEC, evaluated(changed), PolicyState())
    second = advance(SPEC, evaluated(changed, T0 + STEP), first)
    events = layout_events(None, first.assessment)
    assert [(e.type.value, e.reason) for e in events] == [("Normal", "BucketLayoutChanged")]
    assert layout_events(first.assessment, second.assessment) == []


def test_without_a_change_there_is_nothing_to_report() -> None:
    same = Windows(layout(240_000, 0), layout(10_000, 0), layout(10_000, 0))
    evaluation = evaluated(same)
    assert evaluation.drift is not None and not evaluation.drift.layouts
