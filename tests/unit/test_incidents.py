"""An incident keeps its start while it is open; it ends on recovery or on acknowledgement."""

from __future__ import annotations

from datetime import timedelta

from evergreen.api.decisions import Action
from evergreen.policy.engine import PolicyState, advance, baseline_bounds
from tests.unit.test_policy import SPEC, STEP, T0, celsius_to_fahrenheit, evaluation, spec, world


def held_state() -> PolicyState:
    broken = celsius_to_fahrenheit()
    state = PolicyState()
    for at, previous in ((T0, world()), (T0 + STEP, broken)):
        state = advance(SPEC, evaluation(at, broken, previous), state)
    return state


def test_a_hold_freezes_baselines_at_the_start_of_its_incident() -> None:
    state = held_state()
    assert state.decision is not None and state.decision.action is Action.HOLD_FOR_DATA_QUALITY
    start = state.decision.incident_start
    # Broken data entered the 1h current window up to an hour before it was first seen.
    assert start == T0 - timedelta(hours=1)
    assert baseline_bounds(SPEC, state, None).until == start
    later = advance(SPEC, evaluation(T0 + 2 * STEP, celsius_to_fahrenheit(), celsius_to_fahrenheit()), state)
    assert later.decision is not None and later.decision.incident_start == start


def test_no_freeze_without_an_incident() -> None:
    state = advance(SPEC, evaluation(T0, world()), PolicyState())
    assert baseline_bounds(SPEC, state, None).until is None


def test_a_hold_ends_on_recovery_and_says_so() -> None:
    state = held_state()
    messages = []
    for i in range(2, 5):
        state = advance(SPEC, evaluation(T0 + i * STEP, world(), world()), state)
        assert state.decision is not None
        messages.append(state.decision.message)
    assert state.decision is not None and state.decision.action is Action.NO_ACTION
    ended = [m for m in messages if "the data recovered against the pre-incident baseline" in m]
    assert len(ended) == 1  # said once, when the hold ends


def test_an_acknowledged_change_ends_the_hold_and_restarts_baselines() -> None:
    state = held_state()
    acknowledged = spec(policy={"acknowledgedAt": (T0 + 2 * STEP).isoformat()})
    bounds = baseline_bounds(acknowledged, state, None)
    assert bounds.anchor == T0 + 2 * STEP
    broken = celsius_to_fahrenheit()
    after = advance(acknowledged, evaluation(T0 + 3 * STEP, broken, broken), state)
    assert after.decision is not None and after.decision.action is not Action.HOLD_FOR_DATA_QUALITY
    assert "the change was acknowledged at" in after.decision.message


def test_an_acknowledgement_before_the_incident_does_not_end_it() -> None:
    state = held_state()
    early = spec(policy={"acknowledgedAt": (T0 - timedelta(days=1)).isoformat()})
    broken = celsius_to_fahrenheit()
    after = advance(early, evaluation(T0 + 2 * STEP, broken, broken), state)
    assert after.decision is not None and after.decision.action is Action.HOLD_FOR_DATA_QUALITY
