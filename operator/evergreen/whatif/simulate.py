"""Which retraining runs each policy would have started over a replayed history.

Every policy goes through the monitor's retraining guardrails (``spec.retraining``: give up,
budget, cost, cooldown, one run or candidate under way at a time), evaluated by the same
:func:`~evergreen.retraining.guardrails.blocked` the operator calls. What each policy *wants*:

- ``monitor``: the decision engine's Retrain, re-decided on the replay's evaluations with the
  simulated runs' give-up state, so runs that keep failing turn Retrain into Escalate
  (``RetrainingNotHelping``) as in the operator; holds on pipeline breaks come first as always;
- ``every=P``: a run at each scheduled time (one period after the start, then every period);
- ``naive-psi``: a run whenever any feature's whole-population PSI is above the threshold.

A trigger (a Retrain decision, a stretch of evaluations above the PSI threshold, a scheduled
time) is served by one run that restores the model: under the comparison's assumption
(:mod:`evergreen.whatif.restoration`) the trigger would have cleared. The monitor's Retrain
rests on KPIs, so it stands while a KPI series stays outside its bounds that no run restores
(a scoped run leaves the other segments' breaches): it asks again, and the guardrails decide.
A blocked trigger is tried again at each evaluation while it holds (a scheduled time holds for
one evaluation: a blocked scheduled run is skipped).
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from evergreen.api.decisions import Action, Decision, Scope
from evergreen.api.durations import parse_duration
from evergreen.api.retraining import RetrainingSpec, RetrainingStatus, RetrainRun, RunOutcome
from evergreen.api.spec import DriftMethod, ModelMonitorSpec
from evergreen.policy.engine import PolicyState, advance
from evergreen.retraining.guardrails import blocked, recent_starts
from evergreen.whatif.history import History
from evergreen.whatif.policies import Policy, PolicyKind
from evergreen.whatif.restoration import SimulatedRun, restored, still_outside


@dataclass(frozen=True)
class Assumptions:
    """What a retrain is taken to do, since history cannot say."""

    #: How long a run takes, and where that figure comes from.
    run_duration: timedelta
    run_duration_source: str
    #: The canary rollout's length (spec.rollout: steps x stepInterval; zero without one).
    rollout_duration: timedelta = timedelta(0)
    #: How long a person takes to approve a Manual rollout gate.
    approval_wait: timedelta = timedelta(0)

    @property
    def time_to_effect(self) -> timedelta:
        """From a run's start to its candidate serving all traffic."""
        return self.run_duration + self.rollout_duration + self.approval_wait


@dataclass(frozen=True)
class PolicyRuns:
    """What one policy would have done."""

    policy: Policy
    runs: tuple[SimulatedRun, ...]
    #: Evaluations at which the policy wanted a run a guardrail stopped, by reason.
    blocked: dict[str, int] = field(default_factory=dict)
    #: Monitor only: Escalate (RetrainingNotHelping) decisions entered after giving up.
    escalations: int = 0
    #: When automatic retraining gave up (giveUpAfter failed runs in a row), if it did.
    gave_up: datetime | None = None


def assumptions_for(
    spec: ModelMonitorSpec, run_duration: timedelta | None, approval_wait: timedelta = timedelta(0)
) -> Assumptions:
    """The assumption's parameters: a run lasts ``run_duration`` (default: the spec's timeout, the
    longest a run may take), then the spec's rollout and, with Manual approval, the wait."""
    config = _retraining(spec)
    if run_duration is None:
        duration, source = parse_duration(config.timeout), "spec.retraining.timeout"
    else:
        duration, source = run_duration, "--run-duration"
    rollout = spec.rollout
    rollout_duration = parse_duration(rollout.step_interval) * len(rollout.steps) if rollout else timedelta(0)
    manual = rollout is not None and rollout.approval.value == "Manual" and bool(rollout.gates)
    return Assumptions(duration, source, rollout_duration, approval_wait if manual else timedelta(0))


class MissingRetraining(ValueError):
    """The monitor declares no retraining: no guardrails or cost to price policies with."""


def _retraining(spec: ModelMonitorSpec) -> RetrainingSpec:
    if spec.retraining is None:
        raise MissingRetraining(
            "a what-if comparison prices every policy with the monitor's retraining guardrails and "
            "cost: add spec.retraining (timeout, cooldown, budget, cost) to the manifest"
        )
    return spec.retraining


class _Guardrails:
    """The runs started so far, seen as the operator's retraining status at a moment."""

    def __init__(self, config: RetrainingSpec, assumptions: Assumptions) -> None:
        self.config = config
        self.assumptions = assumptions
        self.runs: list[SimulatedRun] = []
        self.gave_up: datetime | None = None

    def failures(self, now: datetime) -> int:
        """Consecutive failed runs among those finished by ``now``."""
        count = 0
        for run in self.runs:
            if run.end <= now:
                count = 0 if run.accepted else count + 1
        return count

    def giving_up(self, now: datetime) -> bool:
        if self.gave_up is None and self.failures(now) >= self.config.give_up_after:
            self.gave_up = now
        return self.gave_up is not None

    def busy(self, now: datetime) -> str | None:
        """A run under way, or an accepted candidate not yet serving: the operator waits."""
        for run in self.runs:
            if now < run.end:
                return "Concurrency"
            if run.accepted and now < run.effective:
                return "CandidatePending"
        return None

    def status(self, now: datetime) -> RetrainingStatus:
        runs = [
            RetrainRun(
                run=number,
                name=f"whatif-{number}",
                trigger=run.trigger,
                outcome=(
                    (RunOutcome.ACCEPTED if run.accepted else RunOutcome.REJECTED)
                    if run.end <= now
                    else RunOutcome.RUNNING
                ),
                created=run.start,
                started=run.start,
                finished=run.end if run.end <= now else None,
            )
            for number, run in enumerate(self.runs, start=1)
        ]
        failures = self.failures(now)
        return RetrainingStatus(
            next_run=len(runs) + 1,
            runs=runs,
            recent_starts=recent_starts(self.config, [run.start for run in self.runs], now),
            consecutive_failures=failures,
            gave_up=self.giving_up(now),
        )

    def attempt(self, now: datetime, trigger: str, scope: Scope | None, history: History) -> str | None:
        """Start a run now if the guardrails allow; otherwise the reason it is blocked."""
        if reason := self.busy(now):
            return reason
        refused = blocked(self.config, self.status(now), now, manual=False)
        if refused is not None:
            return refused.reason
        end = now + self.assumptions.run_duration
        effective = now + self.assumptions.time_to_effect
        incident = history.incident_at(now)
        self.runs.append(SimulatedRun(now, end, effective, trigger, scope, on_incident=incident is not None))
        return None


def _population_psi_above(history: History, index: int, threshold: float) -> bool:
    drift = history.steps[index].evaluation.drift
    if drift is None:
        return False
    scores = drift.scores
    return any(
        key.is_population and not math.isnan(score) and score > threshold
        for key, score in zip(scores.keys, scores.score.tolist(), strict=True)
    )


def _scheduled(policy: Policy, history: History) -> Iterator[datetime]:
    assert policy.period is not None and policy.first is not None
    at = history.start + policy.first
    while at < history.end:
        yield at
        at += policy.period


def naive_threshold(spec: ModelMonitorSpec, policy: Policy) -> float:
    """The PSI a naive policy retrains above: its own, or the monitor's drift critical level."""
    if spec.drift is None:
        raise ValueError(f"{policy.name} retrains on feature drift, and the monitor has no spec.drift")
    if spec.drift.method is not DriftMethod.PSI:
        raise ValueError(
            f"{policy.name} needs PSI scores, and spec.drift.method is {spec.drift.method.value}: "
            "compare against the monitor's own policy, or set spec.drift.method: psi"
        )
    return policy.threshold if policy.threshold is not None else spec.drift.critical


#: Retrain reasons that rest on KPIs outside their bounds.
_ON_KPIS = frozenset({"DriftHurtsKPIs", "ConceptDrift"})


def _monitor_decision(
    spec: ModelMonitorSpec, history: History, index: int, gave_up: bool, state: PolicyState | None
) -> tuple[Decision, PolicyState | None]:
    """The monitor's decision at ``index``, and the engine state carried on (None until needed).

    The replay's own decision until retraining gives up; from then on the engine decides again
    knowing it (Retrain becomes Escalate), as the operator does. Deciding again only from there
    keeps a long history cheap to price.
    """
    step = history.steps[index]
    if state is None and not gave_up and step.decision is not None:
        return step.decision, None
    if state is None:
        state = PolicyState()
        for earlier in history.steps[:index]:
            state = advance(spec, earlier.evaluation, state)
    state = advance(spec, step.evaluation, state, retraining_gave_up=gave_up)
    assert state.decision is not None
    return state.decision, state


def simulate(
    spec: ModelMonitorSpec, history: History, policy: Policy, assumptions: Assumptions
) -> PolicyRuns:
    """The runs ``policy`` would have started over ``history``, guardrails applied."""
    config = _retraining(spec)
    guard = _Guardrails(config, assumptions)
    refusals: dict[str, int] = {}
    escalations = 0

    def want(at: datetime, trigger: str, scope: Scope | None) -> bool:
        reason = guard.attempt(at, trigger, scope, history)
        if reason is not None:
            refusals[reason] = refusals.get(reason, 0) + 1
        return reason is None

    if policy.kind is PolicyKind.MONITOR:
        served: datetime | None = None  # the Retrain decision (its since) a restoring run served
        previous: Action | None = None
        fixed = restored(history, ())
        state: PolicyState | None = None
        for index, step in enumerate(history.steps):
            decision, state = _monitor_decision(spec, history, index, guard.giving_up(step.time), state)
            if decision.action is Action.ESCALATE and decision.reason == "RetrainingNotHelping":
                escalations += previous is not Action.ESCALATE
            previous = decision.action
            if decision.action is not Action.RETRAIN:
                continue
            served_before = served == decision.since or (guard.runs and decision.reason in _ON_KPIS)
            if served_before and not still_outside(history, index, fixed):
                # The KPIs it rests on are restored by a run: the decision would have cleared.
                continue
            if want(step.time, decision.reason, decision.scope):
                fixed = restored(history, guard.runs)
                if guard.runs[-1].accepted:
                    served = decision.since
    elif policy.kind is PolicyKind.SCHEDULE:
        due = list(_scheduled(policy, history))
        for step in history.steps:
            reached = [at for at in due if at <= step.time]
            if reached:
                due = due[len(reached) :]
                want(step.time, f"Schedule:{policy.name}", None)
    else:
        threshold = naive_threshold(spec, policy)
        firing_served = False
        for index, step in enumerate(history.steps):
            if not _population_psi_above(history, index, threshold):
                firing_served = False
                continue
            if not firing_served and want(step.time, f"PSI>{threshold:g}", None):
                firing_served = guard.runs[-1].accepted
    return PolicyRuns(policy, tuple(guard.runs), refusals, escalations, guard.gave_up)
