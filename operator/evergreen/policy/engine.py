"""One step of the decision engine, shared by the live operator and the backtest.

The state lives in the ModelMonitor's status (assessments for persistence, the decision, its
history), so an operator restart resumes exactly where status says, and a backtest that feeds
the same evaluations reaches the same decisions.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from evergreen.api.decisions import Assessment, Decision, DecisionRecord
from evergreen.api.durations import parse_duration
from evergreen.api.spec import ModelMonitorSpec
from evergreen.api.status import ModelMonitorStatus
from evergreen.observation.evaluate import Evaluation
from evergreen.policy.assess import assess
from evergreen.policy.calibration import untrusted_estimates
from evergreen.policy.decide import decide, frozen_baseline_end

#: Decisions kept in status.history (the current one is last).
HISTORY_LENGTH = 20


@dataclass(frozen=True)
class PolicyState:
    """What the engine remembers between evaluations."""

    assessments: tuple[Assessment, ...] = ()
    decision: Decision | None = None
    history: tuple[DecisionRecord, ...] = field(default_factory=tuple)

    @classmethod
    def from_status(cls, status: ModelMonitorStatus) -> PolicyState:
        return cls(tuple(status.assessments), status.decision, tuple(status.history))

    @property
    def assessment(self) -> Assessment | None:
        return self.assessments[-1] if self.assessments else None

    def changed_from(self, other: PolicyState) -> bool:
        """True when the decision's action or reason differs from ``other``'s."""
        if self.decision is None:
            return False
        return not self.decision.same_as(other.decision)


def _record(
    history: tuple[DecisionRecord, ...], previous: Decision | None, decision: Decision, now: datetime
) -> tuple[DecisionRecord, ...]:
    if decision.same_as(previous) and history:
        last = history[-1].model_copy(update={"message": decision.message})
        return (*history[:-1], last)
    closed = history
    if history and history[-1].until is None:
        closed = (*history[:-1], history[-1].model_copy(update={"until": now}))
    entry = DecisionRecord(
        action=decision.action, reason=decision.reason, message=decision.message, since=decision.since
    )
    return (*closed, entry)[-HISTORY_LENGTH:]


def advance(
    spec: ModelMonitorSpec, evaluation: Evaluation, state: PolicyState, *, retraining_gave_up: bool = False
) -> PolicyState:
    """Assess ``evaluation``, decide, and return the new state (pure).

    ``retraining_gave_up``: runs kept failing validation; a Retrain becomes an escalation.
    """
    now = evaluation.time
    earlier = state.assessments
    if earlier and now - earlier[-1].time < parse_duration(spec.interval) / 2:
        # An extra evaluation (a spec edit, an approval) replaces the recent one instead of
        # counting twice towards persistence.
        earlier = earlier[:-1]
    assessment = assess(spec, evaluation, earlier[-1] if earlier else None)
    assessments = (*earlier, assessment)[-spec.policy.persistence.of :]
    untrusted = untrusted_estimates(spec, assessments, earlier[-1] if earlier else None)
    if untrusted:
        assessments = (*assessments[:-1], assessment.model_copy(update={"estimates_untrusted": untrusted}))
    decision = decide(spec, assessments, state.decision, now, retraining_gave_up=retraining_gave_up)
    history = _record(state.history, state.decision, decision, now)
    return PolicyState(assessments, decision, history)


@dataclass(frozen=True)
class BaselineBounds:
    """Where the next evaluation's baselines may lie."""

    #: Not before: a promotion, or an acknowledged change (the new normal starts there).
    anchor: datetime | None
    #: Not after: the start of an incident still open (the baseline must not absorb it).
    until: datetime | None


def baseline_bounds(spec: ModelMonitorSpec, state: PolicyState, anchor: datetime | None) -> BaselineBounds:
    """The baseline bounds for the next evaluation, from the engine's state and the spec."""
    acknowledged = spec.policy.acknowledged_at
    anchors = [moment for moment in (anchor, acknowledged) if moment is not None]
    return BaselineBounds(max(anchors) if anchors else None, frozen_baseline_end(state.decision))
