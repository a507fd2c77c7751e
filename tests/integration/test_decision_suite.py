"""The decision suite against a real Prometheus: every catalog scenario decided right.

Each single-incident catalog scenario is backfilled (cached across runs) and replayed through
:func:`evergreen.backtest.replay` with the suite's monitor, from half an hour before the incident
to the expectation's horizon, then judged against its expectation in
:mod:`evergreen.simulation.suite`. ``bench/bench_decisions.py`` runs the same suite over
whole scenarios.

Cadence: sudden incidents are replayed at the monitor's own 5-minute interval, because one
evaluation can change their outcome (a window half full of broken data, a detection delay
counted in evaluations). Gradual drifts develop over many hours, so their long spans are
replayed every 15 minutes to keep the file fast.

The last section checks the judging rules themselves on hand-made replays (no Prometheus).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from pathlib import Path

import pytest

from evergreen import backtest
from evergreen.api.decisions import Action, Decision, Scope
from evergreen.api.durations import parse_duration
from evergreen.backtest import Step
from evergreen.observation.evaluate import Evaluation
from evergreen.simulation import BinaryNotFoundError, catalog
from evergreen.simulation.prometheus import PROMETHEUS_ENV, PROMTOOL_ENV, find_binary
from evergreen.simulation.suite import (
    BY_SCENARIO,
    EXPECTATIONS,
    Expectation,
    SuiteError,
    Verdict,
    expectation_spec,
    judge,
    replay_scenario,
    scenario_of,
    suite_spec,
    suite_times,
)

#: Horizons longer than this are gradual drifts, replayed at :data:`GRADUAL_STEP`.
LONG_HORIZON = timedelta(hours=6)
GRADUAL_STEP = timedelta(minutes=15)


class SuiteReplays:
    """Replays of the suite's scenarios, each run once per module and shared by the tests."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.interval = parse_duration(suite_spec().interval)
        self._done: dict[str, tuple[Verdict, list[Step]]] = {}

    def step_of(self, expectation: Expectation) -> timedelta:
        return GRADUAL_STEP if expectation.horizon > LONG_HORIZON else self.interval

    def run(self, expectation: Expectation) -> tuple[Verdict, list[Step]]:
        """The expectation's scenario replayed up to its horizon, and judged."""
        if expectation.name not in self._done:
            scenario = scenario_of(expectation)
            spec = expectation_spec(expectation)
            times = suite_times(expectation, self.step_of(expectation))
            steps = replay_scenario(scenario, spec, times, self.workdir / expectation.name)
            self._done[expectation.name] = (judge(expectation, scenario, spec, steps), steps)
        return self._done[expectation.name]


def explain(verdict: Verdict, steps: list[Step]) -> str:
    """A failure message: what went wrong, then the timeline of decisions."""
    problems = "\n".join(f"  - {text}" for text in verdict.violations)
    return f"{verdict.expectation.name}:\n{problems}\n{backtest.render(steps)}"


@pytest.fixture(scope="module")
def replays(tmp_path_factory: pytest.TempPathFactory) -> SuiteReplays:
    try:
        find_binary("prometheus", PROMETHEUS_ENV)
        find_binary("promtool", PROMTOOL_ENV)
    except BinaryNotFoundError as error:
        pytest.skip(str(error))
    return SuiteReplays(tmp_path_factory.mktemp("decision-suite"))


def test_the_suite_covers_every_single_incident_scenario() -> None:
    assert {e.scenario for e in EXPECTATIONS} == set(catalog.SCENARIOS) - {"showcase"}
    assert len(BY_SCENARIO) == len(EXPECTATIONS) == 20


@pytest.mark.parametrize("expectation", EXPECTATIONS, ids=lambda e: e.name)
@pytest.mark.prometheus
@pytest.mark.slow
def test_scenario_is_decided_right(replays: SuiteReplays, expectation: Expectation) -> None:
    verdict, steps = replays.run(expectation)
    assert verdict.right, explain(verdict, steps)


@pytest.mark.prometheus
@pytest.mark.slow
def test_no_retrain_on_healthy_noise_or_breakage_scenarios(replays: SuiteReplays) -> None:
    retrains = {e.name: replays.run(e)[0].retrains for e in EXPECTATIONS if e.category.must_not_retrain}
    assert set(retrains) == {
        "stable",
        "short_spike",
        "unit_change",
        "segment_break",
        "null_spike",
        "upstream_jump",
        "no_data",
        "baseline_warmup",
        "segment_null_spike",
        "late_labels",
        "long_unit_change",
        "clipped_unit_change",
    }
    assert retrains == dict.fromkeys(retrains, 0)


@pytest.mark.prometheus
@pytest.mark.slow
def test_retrains_where_retraining_helps(replays: SuiteReplays) -> None:
    # The other side of "zero retrains": an engine that never retrains passes the test above.
    for name in ("gradual_drift_kpi_decline", "kpi_drop_no_drift"):
        verdict, steps = replays.run(BY_SCENARIO[name])
        assert verdict.retrains == 1, explain(verdict, steps)


@pytest.mark.prometheus
@pytest.mark.slow
def test_tenth_of_a_percent_segment_break_is_held_within_two_evaluations(replays: SuiteReplays) -> None:
    expectation = BY_SCENARIO["segment_break"]
    assert expectation.within == 2
    assert replays.step_of(expectation) == replays.interval == timedelta(minutes=5)
    verdict, steps = replays.run(expectation)
    assert verdict.delay is not None and verdict.delay <= 2, explain(verdict, steps)
    held = steps[verdict.reached_index or 0].decision
    assert held is not None and held.action is Action.HOLD_FOR_DATA_QUALITY
    assert held.scope is not None and held.scope.features == ["session_length"]
    assert f"segment={catalog.SMALL_SEGMENT}" in held.message


# --- the judging rules, on hand-made replays (no Prometheus) ---------------------------------

FIVE_MINUTES = timedelta(minutes=5)


def replay_of(*decisions: tuple[int, Action, str], scope: Sequence[str] = ()) -> list[Step]:
    """Steps every 5 minutes from the incident - 10 minutes; each decision holds from its index on."""
    start = catalog.INCIDENT_AT - 2 * FIVE_MINUTES
    steps = []
    for i in range(12):
        at = start + i * FIVE_MINUTES
        _, action, reason = max((d for d in decisions if d[0] <= i), key=lambda d: d[0])
        decision = Decision(
            action=action,
            reason=reason,
            message="",
            scope=Scope(features=list(scope)),
            time=at,
            since=at,
            enforced=True,
        )
        steps.append(Step(at, Evaluation(time=at, duration_seconds=0.0, queries=0), decision))
    return steps


def judged(name: str, steps: list[Step]) -> Verdict:
    expectation = BY_SCENARIO[name]
    return judge(expectation, scenario_of(expectation), expectation_spec(expectation), steps)


HEALTHY = (0, Action.NO_ACTION, "Healthy")


def visible_time(steps: list[Step], verdict: Verdict) -> datetime:
    assert verdict.visible_index is not None
    return steps[verdict.visible_index].time


def test_a_hold_reached_and_kept_is_right_and_its_delay_counts_from_the_first_broken_window() -> None:
    steps = replay_of(HEALTHY, (4, Action.HOLD_FOR_DATA_QUALITY, "SegmentBreak"))
    verdict = judged("segment_break", steps)
    # The incident starts at index 2; its first counts reach Prometheus 5 minutes later.
    assert visible_time(steps, verdict) == catalog.INCIDENT_AT + FIVE_MINUTES
    assert (verdict.right, verdict.delay, verdict.holds, verdict.retrains) == (True, 1, 1, 0)


def test_a_detection_later_than_its_target_is_wrong() -> None:
    verdict = judged("segment_break", replay_of(HEALTHY, (6, Action.HOLD_FOR_DATA_QUALITY, "SegmentBreak")))
    assert not verdict.right and verdict.delay == 3
    assert verdict.violations == ("decided 3 evaluations after the incident became visible; target <= 2",)


def test_a_reason_that_changes_while_the_incident_lasts_is_wrong() -> None:
    steps = replay_of(
        HEALTHY,
        (4, Action.HOLD_FOR_DATA_QUALITY, "UpstreamChange"),
        (7, Action.HOLD_FOR_DATA_QUALITY, "UnitChange"),
    )
    verdict = judged("upstream_jump", steps)
    assert verdict.reached and not verdict.right
    assert "not kept: 5 of 8 evaluations" in verdict.violations[0]


def test_a_retrain_on_a_breakage_is_wrong_even_after_the_right_hold() -> None:
    steps = replay_of(
        HEALTHY, (4, Action.HOLD_FOR_DATA_QUALITY, "UnitChange"), (10, Action.RETRAIN, "DriftHurtsKPIs")
    )
    verdict = judged("unit_change", steps)
    assert verdict.retrains == 1 and not verdict.right
    assert verdict.violations[0].startswith("Retrain must never happen: decided at 2 evaluations")


def test_a_retrain_must_name_the_drifted_feature() -> None:
    retrain = (5, Action.RETRAIN, "DriftHurtsKPIs")
    assert judged("gradual_drift_kpi_decline", replay_of(HEALTHY, retrain, scope=["amount"])).right
    assert not judged("gradual_drift_kpi_decline", replay_of(HEALTHY, retrain, scope=["age"])).right


def test_a_healthy_scenario_allows_no_other_decision() -> None:
    assert judged("stable", replay_of(HEALTHY)).right
    verdict = judged("stable", replay_of(HEALTHY, (5, Action.WATCH, "DriftWarning"), (6, *HEALTHY[1:])))
    assert not verdict.right
    assert "1 of 12 evaluations" in verdict.violations[0]


def test_a_transient_incident_must_settle_before_it_is_judged() -> None:
    # Settling takes the spike (30 min), the window (1h) and persistence: 12 steps are too few.
    with pytest.raises(SuiteError, match="ends before"):
        judged("short_spike", replay_of(HEALTHY, (3, Action.WATCH, "DriftWarning")))
