"""Prefetched replays decide exactly as step-by-step replays, against a real Prometheus.

Every case of the decision suite (:mod:`evergreen.simulation.suite`) is backfilled (cached)
and replayed twice from half an hour before its incident: with each query fetched once as
range queries (what ``evergreen backtest`` does) and with instant queries at every step.
Decisions (action, reason, message, scope, evidence) and evaluation summaries must be
identical. The cases cover holds that freeze baselines (their queries change at every
step and are asked live, ahead of time), KPIs, segment scopes, an empty answer and a
baseline warming up.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator, Sequence
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from evergreen.api.spec import ModelMonitorSpec
from evergreen.backtest import Step, evaluation_times, replay, sampled_times
from evergreen.signals.prefetch import PrefetchedSource
from evergreen.signals.prometheus import Endpoint, PrometheusSource
from evergreen.simulation import BinaryNotFoundError, catalog
from evergreen.simulation.prometheus import PrometheusServer
from evergreen.simulation.suite import (
    EXPECTATIONS,
    Expectation,
    expectation_spec,
    scenario_of,
    suite_namespace,
    suite_times,
)

pytestmark = [pytest.mark.slow, pytest.mark.prometheus]

#: Evaluations per case: past the incident's start, through detection and into any hold.
EVALUATIONS = 40
STEP = timedelta(minutes=5)


@pytest.fixture
def served(tmp_path: Path) -> Iterator[Any]:
    """``serve(scenario)`` -> a PrometheusSource on that scenario's backfilled history."""
    servers: list[PrometheusServer] = []
    sources: list[PrometheusSource] = []

    def serve(expectation: Expectation) -> PrometheusSource:
        try:
            server = PrometheusServer.from_scenario(scenario_of(expectation), tmp_path / expectation.name)
        except BinaryNotFoundError as error:
            pytest.skip(str(error))
        server.start()
        servers.append(server)
        sources.append(PrometheusSource(Endpoint(url=server.url, timeout_seconds=60)))
        return sources[-1]

    yield serve
    for source in sources:
        source.close()
    for server in servers:
        server.stop()


def outcome(steps: Sequence[Step]) -> list[tuple[Any, ...]]:
    """What a replay concluded at each step (the evaluation's duration aside)."""
    rows = []
    for step in steps:
        summary = step.evaluation.summary().model_dump(exclude={"duration_seconds"})
        rows.append((step.time, step.decision, summary, step.evaluation.problems))
    return rows


def both(
    spec: ModelMonitorSpec, source: PrometheusSource, times: Sequence[Any]
) -> tuple[list[Step], list[Step]]:
    namespace = suite_namespace()
    step_by_step = asyncio.run(replay(spec, source, times, namespace=namespace, prefetch=False))
    prefetched = asyncio.run(replay(spec, source, times, namespace=namespace))
    return step_by_step, prefetched


@pytest.mark.parametrize("expectation", EXPECTATIONS, ids=[e.name for e in EXPECTATIONS])
def test_prefetched_replay_decides_as_step_by_step(expectation: Expectation, served: Any) -> None:
    source = served(expectation)
    spec = expectation_spec(expectation)
    times = suite_times(expectation, STEP)[:EVALUATIONS]
    step_by_step, prefetched = both(spec, source, times)
    assert [s.decision for s in prefetched] == [s.decision for s in step_by_step]
    assert outcome(prefetched) == outcome(step_by_step)


def test_a_sampled_replay_is_prefetched_on_the_interval_grid_and_decides_the_same(served: Any) -> None:
    expectation = next(e for e in EXPECTATIONS if e.name == "long_unit_change")
    source = served(expectation)
    spec = expectation_spec(expectation)
    start = catalog.INCIDENT_AT - timedelta(hours=1)
    # Every 2 hours, each time preceded by the evaluations persistence needs at 5 minutes.
    times = sampled_times(
        start, start + timedelta(hours=30), timedelta(hours=2), STEP, spec.policy.persistence.of
    )
    step_by_step, prefetched = both(spec, source, times)
    assert outcome(prefetched) == outcome(step_by_step)
    assert any(s.decision is not None and s.decision.action.value == "HoldForDataQuality" for s in prefetched)


def test_a_hold_asks_only_its_frozen_baselines_live(served: Any) -> None:
    from evergreen import backtest

    # A day after the unit change began, the rolling baseline (offset 1d) would reach the
    # broken data: the hold freezes it, with a query that changes at every evaluation.
    expectation = next(e for e in EXPECTATIONS if e.name == "long_unit_change")
    source = served(expectation)
    spec = expectation_spec(expectation)
    start = catalog.INCIDENT_AT - timedelta(minutes=30)
    times = evaluation_times(start, start + timedelta(hours=26), STEP)

    async def run() -> PrefetchedSource:
        memory = await backtest.prefetched(spec, source, times, namespace=suite_namespace())
        assert isinstance(memory, PrefetchedSource)
        steps = await replay(spec, memory, times, namespace=suite_namespace(), prefetch=False)
        assert any(s.decision is not None and s.decision.action.value == "HoldForDataQuality" for s in steps)
        return memory

    memory = asyncio.run(run())
    assert memory.failures == []
    assert memory.hits > 10 * (memory.ahead + memory.misses)
    assert memory.ahead > 0
