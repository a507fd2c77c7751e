"""The canary state machine: pure transitions of ``status.rollout``.

One call per reconcile tick. Inputs say what the world looks like (the offered candidate,
whether it is ready, the checks run this tick, whether a data-quality hold is in force);
the output is the new status, the traffic weight to configure, and what happened.

- **Start**: a candidate that differs from the serving version and was not rolled back before
  starts at the first step — or waits at the Start gate with ``approval: Manual``.
- **Steps**: each step lasts ``stepInterval`` of checked, passing time; then the weight moves to
  the next step. A failed check counts; ``maxFailedChecks`` failures roll back at once.
- **Pauses**: no data (a metrics outage, too little candidate traffic) or a
  ``HoldForDataQuality`` decision pauses the rollout — neither a failure nor a success; the
  weight stays; it resumes when the cause clears (paused time does not count towards the
  step), and rolls back after ``noDataDeadline`` paused.
- **Promotion**: after the last step (100%), or the Promotion gate's approval, the candidate
  becomes the serving version. **Rollback** sends all traffic back to the stable version and
  remembers the candidate so it is not retried by itself.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from evergreen.api.delivery import (
    ApprovalMode,
    CheckRecord,
    Gate,
    RolloutCheck,
    RolloutPhase,
    RolloutRecord,
    RolloutSpec,
    RolloutStatus,
)
from evergreen.api.durations import parse_duration
from evergreen.api.status import ConditionStatus, ConditionType
from evergreen.conditions import ConditionDraft
from evergreen.transitions import EventRecord, EventType

#: Finished rollouts kept in status.
HISTORY = 20


@dataclass(frozen=True)
class RolloutInputs:
    """What the world looks like this tick."""

    spec: RolloutSpec
    serving: str
    offered: str | None
    now: datetime
    candidate_ready: bool = False
    #: The checks run this tick; None when none were due.
    checks: Sequence[CheckRecord] | None = None
    data_quality_hold: bool = False


@dataclass(frozen=True)
class RolloutResult:
    status: RolloutStatus
    draft: ConditionDraft
    events: list[EventRecord] = field(default_factory=list)
    #: The version that became the serving one this tick.
    promoted: str | None = None
    rolled_back: str | None = None


def _gated(spec: RolloutSpec, gate: Gate) -> bool:
    return spec.approval is ApprovalMode.MANUAL and gate in spec.gates


class _Machine:
    def __init__(self, status: RolloutStatus, inputs: RolloutInputs) -> None:
        self.status = status
        self.inputs = inputs
        self.spec = inputs.spec
        self.now = inputs.now
        self.events: list[EventRecord] = []
        self.promoted: str | None = None
        self.rolled_back: str | None = None

    def emit(self, kind: EventType, reason: str, message: str) -> None:
        self.events.append(EventRecord(kind, reason, message))

    def update(self, **changes: object) -> None:
        self.status = self.status.model_copy(update=changes)

    # -- entry ------------------------------------------------------------------------------

    def run(self) -> RolloutResult:
        status = self.status
        if status.phase is RolloutPhase.IDLE:
            self.maybe_start()
        elif self.spec.aborted_version is not None and self.spec.aborted_version == status.candidate:
            self.roll_back("Aborted", "aborted by a person (spec.rollout.abortedVersion)")
        elif self.inputs.offered is not None and self.inputs.offered != status.candidate:
            self.roll_back("Superseded", f"superseded by candidate {self.inputs.offered}")
        elif status.phase is RolloutPhase.AWAITING_APPROVAL:
            self.await_start()
        elif status.phase is RolloutPhase.AWAITING_PROMOTION:
            self.await_promotion()
        elif status.phase is RolloutPhase.PAUSED:
            self.paused()
        else:
            self.progress()
        return RolloutResult(self.status, self.draft(), self.events, self.promoted, self.rolled_back)

    def maybe_start(self) -> None:
        offered = self.inputs.offered
        if offered is None or offered == self.inputs.serving or offered in self.status.rejected_versions:
            return
        if self.inputs.data_quality_hold:
            # Rollouts are frozen during a data-quality incident: starting would only pause it
            # and, past the deadline, reject a candidate for something that is not its fault.
            self.update(message=f"{offered} waits: a HoldForDataQuality decision is in force")
            return
        waiting = _gated(self.spec, Gate.START) and self.spec.approved_version != offered
        self.update(
            phase=RolloutPhase.AWAITING_APPROVAL if waiting else RolloutPhase.PROGRESSING,
            candidate=offered,
            stable=self.inputs.serving,
            step=0,
            weight=0 if waiting else self.spec.steps[0],
            started=self.now,
            step_started=None,
            last_check_time=None,
            checks_passed=0,
            checks_failed=0,
            last_checks=[],
            paused_reason=None,
            paused_since=None,
            message="",
        )
        if waiting:
            self.emit(
                EventType.NORMAL,
                "RolloutAwaitingApproval",
                f"candidate {offered} waits for approval to start (spec.rollout.approvedVersion)",
            )
        else:
            self.emit(
                EventType.NORMAL,
                "RolloutStarted",
                f"candidate {offered} gets {self.spec.steps[0]}% of traffic next to {self.inputs.serving}",
            )

    def await_start(self) -> None:
        candidate = self.status.candidate
        if self.spec.approval is ApprovalMode.AUTO or self.spec.approved_version == candidate:
            self.update(phase=RolloutPhase.PROGRESSING, step=0, weight=self.spec.steps[0], step_started=None)
            self.emit(
                EventType.NORMAL,
                "RolloutStarted",
                f"candidate {candidate} approved: {self.spec.steps[0]}% of traffic",
            )

    def await_promotion(self) -> None:
        if (
            self.spec.approval is ApprovalMode.AUTO
            or self.spec.promotion_approved_version == self.status.candidate
        ):
            self.promote()

    # -- progressing ------------------------------------------------------------------------

    def progress(self) -> None:
        if self.inputs.data_quality_hold:
            self.pause("DataQualityHold", "a HoldForDataQuality decision is in force")
            return
        if self.status.step_started is None:
            # A step's clock starts once the candidate can actually take its share.
            if not self.inputs.candidate_ready:
                self.update(message=f"waiting for {self.status.candidate} to be ready")
                return
            self.update(step_started=self.now)
        checks = self.inputs.checks
        if checks is None:
            return
        self.update(last_checks=list(checks), last_check_time=self.now)
        failed = [c for c in checks if c.result is RolloutCheck.FAILED]
        missing = [c for c in checks if c.result is RolloutCheck.NO_DATA]
        if failed:
            self._count_failures(failed)
            return
        if missing:
            detail = "; ".join(f"{c.name}: {c.message}" for c in missing)
            self.pause("NoData", detail)
            return
        self._passed()

    def _passed(self) -> None:
        """Every check passed: count it, and move on when the step has lasted long enough."""
        self.update(checks_passed=self.status.checks_passed + 1, message="checks passing")
        started = self.status.step_started
        if started is not None and self.now - started >= parse_duration(self.spec.step_interval):
            self.next_step()

    def _count_failures(self, failed: Sequence[CheckRecord]) -> bool:
        """Count one failed check (whatever else is missing); True when it rolled back."""
        count = self.status.checks_failed + 1
        detail = "; ".join(f"{c.name}: {c.message}" for c in failed)
        self.update(checks_failed=count, message=detail)
        self.emit(
            EventType.WARNING,
            "RolloutCheckFailed",
            f"{self.status.candidate} at {self.status.weight}%: {detail} "
            f"({count} of {self.spec.max_failed_checks})",
        )
        if count >= self.spec.max_failed_checks:
            self.roll_back("RolledBack", f"{count} failed checks: {detail}")
            return True
        return False

    def next_step(self) -> None:
        step = self.status.step
        if step + 1 >= len(self.spec.steps):
            if (
                _gated(self.spec, Gate.PROMOTION)
                and self.spec.promotion_approved_version != self.status.candidate
            ):
                self.update(phase=RolloutPhase.AWAITING_PROMOTION, message="waiting for approval to promote")
                self.emit(
                    EventType.NORMAL,
                    "RolloutAwaitingPromotion",
                    f"{self.status.candidate} passed every step; promotion waits for approval "
                    "(spec.rollout.promotionApprovedVersion)",
                )
            else:
                self.promote()
            return
        weight = self.spec.steps[step + 1]
        self.update(step=step + 1, weight=weight, step_started=None)
        self.emit(EventType.NORMAL, "RolloutStep", f"{self.status.candidate} now gets {weight}% of traffic")

    # -- pauses -----------------------------------------------------------------------------

    def pause(self, reason: str, message: str) -> None:
        self.update(phase=RolloutPhase.PAUSED, paused_reason=reason, paused_since=self.now, message=message)
        self.emit(
            EventType.WARNING,
            "RolloutPaused",
            f"{self.status.candidate} at {self.status.weight}% paused ({reason}): {message}",
        )

    def paused(self) -> None:
        status = self.status
        since = status.paused_since or self.now
        if self.now - since >= parse_duration(self.spec.no_data_deadline):
            self.roll_back("RolledBack", f"paused ({status.paused_reason}) for {self.spec.no_data_deadline}")
            return
        checks = self.inputs.checks
        failed: list[CheckRecord] = []
        if checks is not None:
            # Checks still count while paused: a failure is a failure, whatever else is missing.
            self.update(last_checks=list(checks), last_check_time=self.now)
            failed = [c for c in checks if c.result is RolloutCheck.FAILED]
            if failed and self._count_failures(failed):
                return
        if status.paused_reason == "DataQualityHold":
            cleared = not self.inputs.data_quality_hold
        else:
            cleared = checks is not None and all(c.result is not RolloutCheck.NO_DATA for c in checks)
        if not cleared:
            return
        # Paused time does not count towards the step.
        step_started = status.step_started + (self.now - since) if status.step_started else None
        self.update(
            phase=RolloutPhase.PROGRESSING, paused_reason=None, paused_since=None, step_started=step_started
        )
        self.emit(EventType.NORMAL, "RolloutResumed", f"{status.candidate} resumes at {status.weight}%")
        if checks is not None and not failed:
            self._passed()

    # -- endings ----------------------------------------------------------------------------

    def _finish(self, outcome: str, reason: str) -> None:
        status = self.status
        assert status.candidate is not None and status.stable is not None
        record = RolloutRecord(
            candidate=status.candidate,
            stable=status.stable,
            outcome=outcome,
            started=status.started or self.now,
            finished=self.now,
            reason=reason,
        )
        self.update(
            phase=RolloutPhase.IDLE,
            candidate=None,
            step=0,
            weight=0,
            step_started=None,
            paused_reason=None,
            paused_since=None,
            message=reason,
            history=[*status.history, record][-HISTORY:],
        )

    def promote(self) -> None:
        candidate = self.status.candidate
        assert candidate is not None
        self._finish("Promoted", f"{candidate} passed {len(self.spec.steps)} steps")
        self.update(stable=candidate)
        self.promoted = candidate
        self.emit(EventType.NORMAL, "Promoted", f"{candidate} is now the serving version")

    def roll_back(self, outcome: str, reason: str) -> None:
        candidate = self.status.candidate
        assert candidate is not None
        rejected = [*self.status.rejected_versions, candidate][-HISTORY:]
        self._finish(outcome, reason)
        self.update(rejected_versions=rejected)
        self.rolled_back = candidate
        self.emit(
            EventType.WARNING,
            "RolledBack",
            f"{candidate} rolled back, all traffic to {self.status.stable}: {reason}",
        )

    # -- condition --------------------------------------------------------------------------

    def draft(self) -> ConditionDraft:
        status = self.status
        kind = ConditionType.ROLLOUT
        if status.phase is RolloutPhase.IDLE:
            last = status.history[-1] if status.history else None
            if last is not None and last.finished == self.now:
                return ConditionDraft(
                    kind, ConditionStatus.FALSE, last.outcome, f"{last.candidate}: {last.reason}"
                )
            return ConditionDraft(
                kind, ConditionStatus.FALSE, "Idle", f"serving {self.inputs.serving}; no rollout in progress"
            )
        steps = self.spec.steps
        where = f"{status.candidate} at {status.weight}% (step {status.step + 1} of {len(steps)})"
        checks = f"checks passed {status.checks_passed}, failed {status.checks_failed}"
        messages = {
            RolloutPhase.AWAITING_APPROVAL: (
                "AwaitingApproval",
                f"{status.candidate} waits for approval to start",
            ),
            RolloutPhase.AWAITING_PROMOTION: ("AwaitingPromotion", f"{where}: waits for approval to promote"),
            RolloutPhase.PAUSED: ("Paused", f"{where} paused ({status.paused_reason}): {status.message}"),
            RolloutPhase.PROGRESSING: ("Progressing", f"{where}; {checks}"),
        }
        reason, message = messages[status.phase]
        return ConditionDraft(kind, ConditionStatus.TRUE, reason, message)


def step_rollout(status: RolloutStatus, inputs: RolloutInputs) -> RolloutResult:
    """Advance the rollout by one tick (pure)."""
    return _Machine(status, inputs).run()


def checks_due(status: RolloutStatus, interval: timedelta, now: datetime) -> bool:
    """Whether the canary checks should run this tick."""
    if status.phase not in (RolloutPhase.PROGRESSING, RolloutPhase.PAUSED):
        return False
    return status.last_check_time is None or now - status.last_check_time >= interval
