"""The canary state machine and version holds, tick by tick, without a cluster."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from evergreen.api.delivery import (
    CheckRecord,
    HoldStatus,
    RolloutCheck,
    RolloutPhase,
    RolloutSpec,
    RolloutStatus,
    VersionHold,
)
from evergreen.delivery.holds import reconcile_holds
from evergreen.delivery.rollout import RolloutInputs, RolloutResult, checks_due, step_rollout

T0 = datetime(2026, 5, 4, 9, tzinfo=UTC)
MINUTE = timedelta(minutes=1)
PASS = [CheckRecord(name="kpi:precision", result=RolloutCheck.PASSED, candidate=0.93, stable=0.92)]
FAIL = [
    CheckRecord(name="kpi:precision", result=RolloutCheck.FAILED, candidate=0.7, stable=0.92, message="bad")
]
NO_DATA = [CheckRecord(name="kpi:precision", result=RolloutCheck.NO_DATA, message="no data for v13")]


def spec(**changes: Any) -> RolloutSpec:
    raw: dict[str, Any] = {
        "target": {
            "deployment": "fraud",
            "service": "fraud",
            "version": {"container": "server", "env": "MODEL_VERSION"},
        },
        "steps": [10, 50, 100],
        "stepInterval": "10m",
        "maxFailedChecks": 2,
        "noDataDeadline": "30m",
    }
    raw.update(changes)
    return RolloutSpec.model_validate(raw)


class Driver:
    """Feeds the machine a tick at a time, like the reconciler does."""

    def __init__(self, rollout: RolloutSpec, serving: str = "v12") -> None:
        self.spec = rollout
        self.status = RolloutStatus()
        self.serving = serving
        self.now = T0
        self.results: list[RolloutResult] = []

    def tick(
        self,
        *,
        after: timedelta = MINUTE,
        offered: str | None = "v13",
        checks: list[CheckRecord] | None = None,
        ready: bool = True,
        hold: bool = False,
        rollout: RolloutSpec | None = None,
    ) -> RolloutResult:
        self.now += after
        result = step_rollout(
            self.status,
            RolloutInputs(
                spec=rollout or self.spec,
                serving=self.serving,
                offered=offered,
                now=self.now,
                candidate_ready=ready,
                checks=checks,
                data_quality_hold=hold,
            ),
        )
        self.status = result.status
        if result.promoted:
            self.serving = result.promoted
        self.results.append(result)
        return result

    def phase(self) -> RolloutPhase:
        return self.status.phase

    def reasons(self) -> list[str]:
        return [e.reason for r in self.results for e in r.events]


def weight_timeline(drive: Driver, ticks: int, every: timedelta, **inputs: Any) -> list[tuple[int, int]]:
    """(minute, weight) each time the weight changes, ticking every ``every``."""
    changes: list[tuple[int, int]] = []
    for _ in range(ticks):
        drive.tick(after=every, **inputs)
        minute = int((drive.now - T0) / MINUTE)
        if not changes or changes[-1][1] != drive.status.weight:
            changes.append((minute, drive.status.weight))
        if drive.phase() is RolloutPhase.IDLE:
            break
    return changes


def test_a_good_candidate_walks_every_step_and_is_promoted() -> None:
    drive = Driver(spec())
    drive.tick()
    assert (drive.phase(), drive.status.weight) == (RolloutPhase.PROGRESSING, 10)
    # Each step's clock starts at the first tick the candidate is ready: 10 minutes per step.
    timeline = weight_timeline(drive, 20, 5 * MINUTE, checks=PASS)
    assert timeline == [(6, 10), (16, 50), (31, 100), (46, 0)]
    assert drive.results[-1].promoted == "v13"
    assert drive.phase() is RolloutPhase.IDLE and drive.status.stable == "v13"
    assert drive.status.history[-1].outcome == "Promoted"
    assert drive.reasons() == ["RolloutStarted", "RolloutStep", "RolloutStep", "Promoted"]
    assert drive.tick(checks=PASS).events == []  # the promoted version is serving: nothing to do


def test_failed_checks_roll_back_at_max() -> None:
    drive = Driver(spec())
    drive.tick()
    drive.tick(checks=FAIL)
    assert drive.phase() is RolloutPhase.PROGRESSING and drive.status.checks_failed == 1
    result = drive.tick(checks=FAIL)
    assert result.rolled_back == "v13"
    assert drive.phase() is RolloutPhase.IDLE and drive.status.weight == 0
    assert drive.status.rejected_versions == ["v13"]
    assert "2 failed checks" in drive.status.history[-1].reason
    # A rolled-back version is not retried by itself.
    assert drive.tick(checks=PASS).status.phase is RolloutPhase.IDLE


def test_no_data_pauses_without_counting_and_resumes() -> None:
    drive = Driver(spec())
    drive.tick()
    drive.tick(checks=PASS)  # the step clock starts
    drive.tick(after=7 * MINUTE, checks=PASS)
    drive.tick(checks=NO_DATA)
    assert drive.phase() is RolloutPhase.PAUSED and drive.status.paused_reason == "NoData"
    assert (drive.status.checks_failed, drive.status.weight) == (0, 10)
    drive.tick(after=15 * MINUTE, checks=NO_DATA)
    assert drive.phase() is RolloutPhase.PAUSED
    drive.tick(checks=PASS)
    assert drive.phase() is RolloutPhase.PROGRESSING
    # The 16 paused minutes did not count towards the 10-minute step: 8 minutes so far.
    assert drive.status.weight == 10
    drive.tick(after=2 * MINUTE, checks=PASS)
    assert drive.status.weight == 50
    assert "RolloutPaused" in drive.reasons() and "RolloutResumed" in drive.reasons()


def test_a_pause_past_the_deadline_rolls_back() -> None:
    drive = Driver(spec())
    drive.tick()
    drive.tick(checks=NO_DATA)
    drive.tick(after=31 * MINUTE, checks=NO_DATA)
    assert drive.results[-1].rolled_back == "v13"
    assert "paused (NoData) for 30m" in drive.status.history[-1].reason


def test_a_data_quality_hold_pauses_any_rollout() -> None:
    drive = Driver(spec())
    drive.tick()
    drive.tick(checks=PASS, hold=True)
    assert drive.status.paused_reason == "DataQualityHold"
    drive.tick(after=20 * MINUTE, checks=PASS, hold=True)
    assert drive.phase() is RolloutPhase.PAUSED
    drive.tick(checks=PASS, hold=False)
    assert drive.phase() is RolloutPhase.PROGRESSING


def test_the_step_clock_waits_for_the_candidate_to_be_ready() -> None:
    drive = Driver(spec())
    drive.tick(ready=False)
    drive.tick(after=30 * MINUTE, checks=PASS, ready=False)
    assert drive.status.weight == 10
    drive.tick(checks=PASS)
    assert drive.status.weight == 10


def test_manual_gates_wait_for_approval() -> None:
    manual = spec(approval="Manual")
    drive = Driver(manual)
    drive.tick()
    assert (drive.phase(), drive.status.weight) == (RolloutPhase.AWAITING_APPROVAL, 0)
    drive.tick(after=time(60))
    assert drive.phase() is RolloutPhase.AWAITING_APPROVAL
    approved = spec(approval="Manual", approvedVersion="v13")
    drive.tick(rollout=approved)
    assert drive.phase() is RolloutPhase.PROGRESSING
    weight_timeline(drive, 12, 5 * MINUTE, checks=PASS, rollout=approved)
    assert drive.phase() is RolloutPhase.AWAITING_PROMOTION and drive.status.weight == 100
    drive.tick(after=time(60), rollout=approved)
    assert drive.phase() is RolloutPhase.AWAITING_PROMOTION
    promoted = spec(approval="Manual", approvedVersion="v13", promotionApprovedVersion="v13")
    assert drive.tick(rollout=promoted).promoted == "v13"


def time(minutes: int) -> timedelta:
    return minutes * MINUTE


def test_abort_and_supersede() -> None:
    drive = Driver(spec())
    drive.tick()
    drive.tick(rollout=spec(abortedVersion="v13"))
    assert drive.status.history[-1].outcome == "Aborted"
    other = Driver(spec())
    other.tick()
    other.tick(offered="v14")
    assert other.status.history[-1].outcome == "Superseded"
    other.tick(offered="v14")
    assert other.status.candidate == "v14"


def test_checks_are_due_once_per_interval() -> None:
    status = RolloutStatus(phase=RolloutPhase.PROGRESSING, last_check_time=T0)
    assert not checks_due(status, 5 * MINUTE, T0 + MINUTE)
    assert checks_due(status, 5 * MINUTE, T0 + 5 * MINUTE)
    assert not checks_due(RolloutStatus(), 5 * MINUTE, T0)


HOLD = VersionHold.model_validate(
    {
        "name": "bank-a",
        "version": "v11",
        "match": {"header": "x-customer-id", "values": ["bank-a"]},
        "until": (T0 + timedelta(days=10)).isoformat(),
        "reason": "contract",
    }
)


def test_holds_are_active_until_expiry_with_notice_ahead() -> None:
    first = reconcile_holds([HOLD], [], T0, services={"v11": "fraud-v11"})
    assert [h.active for h in first.status] == [True] and first.status[0].served_by == "fraud-v11"
    assert [e.reason for e in first.events] == ["HoldActive"]
    quiet = reconcile_holds([HOLD], first.status, T0 + timedelta(days=1))
    assert quiet.events == []
    notice = reconcile_holds([HOLD], quiet.status, T0 + timedelta(days=8))
    assert [e.reason for e in notice.events] == ["HoldExpiring"]
    again = reconcile_holds([HOLD], notice.status, T0 + timedelta(days=9))
    assert again.events == []
    expired = reconcile_holds([HOLD], again.status, T0 + timedelta(days=10))
    assert [e.reason for e in expired.events] == ["HoldExpired"]
    assert expired.active == [] and expired.status[0].active is False
    assert reconcile_holds([HOLD], expired.status, T0 + timedelta(days=11)).events == []


def test_a_changed_hold_is_announced_again() -> None:
    previous = [HoldStatus(name="bank-a", version="v10", active=True, expires_at=HOLD.until)]
    assert [e.reason for e in reconcile_holds([HOLD], previous, T0).events] == ["HoldActive"]


def test_no_rollout_starts_during_a_data_quality_hold() -> None:
    drive = Driver(spec())
    drive.tick(hold=True)
    assert drive.phase() is RolloutPhase.IDLE and "HoldForDataQuality" in drive.status.message
    drive.tick(hold=False)
    assert drive.phase() is RolloutPhase.PROGRESSING


def test_failed_checks_count_while_paused() -> None:
    mixed = [*FAIL, CheckRecord(name="predictionDrift", result=RolloutCheck.NO_DATA, message="no traffic")]
    drive = Driver(spec())
    drive.tick()
    drive.tick(checks=NO_DATA)
    assert drive.phase() is RolloutPhase.PAUSED
    drive.tick(checks=mixed)
    assert drive.status.checks_failed == 1 and drive.phase() is RolloutPhase.PAUSED
    assert drive.status.last_checks == mixed
    result = drive.tick(checks=mixed)
    assert result.rolled_back == "v13"
