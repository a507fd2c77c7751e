"""The prefetching source: grids, chunks, and answers equal to the instant queries'.

Prometheus is replaced here by a small source that evaluates a table of values the way
Prometheus evaluates a range query (the integration test replays against the real server).
"""

from __future__ import annotations

import asyncio
import itertools
import math
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta

import numpy as np
import pytest

from evergreen.errors import MetricsUnavailable, QueryRejected
from evergreen.signals.prefetch import MAX_POINTS, Grid, Prefetch, PrefetchedSource
from evergreen.signals.samples import QueryResult, RangeResult, Sample

T0 = datetime(2026, 1, 5, tzinfo=UTC)
STEP = timedelta(minutes=5)


def at(index: int) -> datetime:
    return T0 + STEP * index


#: Per series: its labels and its value at each grid index (absent: no point there).
TABLE: dict[str, tuple[Mapping[str, str], dict[int, float]]] = {
    "a": ({"feature": "amount"}, {i: float(i) for i in range(20)}),
    # Absent at some steps: the instant answer there has no such series.
    "b": ({"feature": "age"}, {i: 10.0 + i for i in range(20) if i % 3 != 0}),
    # NaN and infinities come back as Prometheus sent them.
    "c": ({"feature": "odd"}, {1: math.nan, 2: math.inf, 3: -math.inf, 4: 0.5}),
}


def instant_answer(query: str, when: datetime) -> QueryResult:
    """What an instant query answers at ``when``."""
    index = round((when - T0) / STEP)
    return QueryResult(
        query, tuple(Sample(labels, points[index]) for labels, points in TABLE.values() if index in points)
    )


class TableSource:
    """Answers instant and range queries from :data:`TABLE`; counts what it was asked."""

    def __init__(self, failing: frozenset[str] = frozenset(), fail_after: datetime | None = None) -> None:
        self.ranges: list[tuple[str, datetime, datetime, timedelta]] = []
        self.instants: list[tuple[str, datetime]] = []
        self.failing = failing
        #: Range queries reaching past this time fail (a chunk Prometheus cannot answer).
        self.fail_after = fail_after

    async def instant(self, query: str, at: datetime, *, field: str) -> QueryResult:
        self.instants.append((query, at))
        if query in self.failing:
            raise MetricsUnavailable(f"{query} cannot be answered ({field})")
        return instant_answer(query, at)

    async def range(
        self, query: str, start: datetime, end: datetime, step: timedelta, *, field: str
    ) -> RangeResult:
        self.ranges.append((query, start, end, step))
        await asyncio.sleep(0.01)  # answers take time: callers must wait for theirs
        if query in self.failing or (self.fail_after is not None and end > self.fail_after):
            raise QueryRejected(field, "query processing would load too many samples into memory")
        count = round((end - start) / step) + 1
        times = np.array([(start + step * i).timestamp() for i in range(count)])
        first = round((start - T0) / STEP)
        labels, rows, present = [], [], []
        for series_labels, points in TABLE.values():
            row = [points.get(first + i, math.nan) for i in range(count)]
            mask = [first + i in points for i in range(count)]
            if any(mask):
                labels.append(series_labels)
                rows.append(row)
                present.append(mask)
        return RangeResult(
            query,
            tuple(labels),
            times,
            np.array(rows, dtype=np.float64).reshape(len(labels), count),
            np.array(present, dtype=bool).reshape(len(labels), count),
        )


def same(left: QueryResult, right: QueryResult) -> bool:
    return left.same_answer(right)


async def prefetched(
    grid: Grid, prefetches: list[Prefetch], live: TableSource, max_points: int = MAX_POINTS
) -> PrefetchedSource:
    source = PrefetchedSource(live)
    await source.fetch(live, prefetches, grid, max_points=max_points)
    return source


# --- grids ---------------------------------------------------------------------------------


def test_the_grid_through_regular_times_is_their_step() -> None:
    grid = Grid.covering([at(i) for i in range(10)])
    assert grid == Grid(T0, STEP, 10)
    assert grid.end == at(9)


def test_sampled_times_lie_on_the_grid_of_their_common_step() -> None:
    # Every hour, each preceded by two evaluations 5 minutes apart (a sampled replay).
    times = sorted({at(12 * hour - back) for hour in range(1, 6) for back in range(3)})
    grid = Grid.covering(times)
    assert grid is not None and grid.step == STEP
    assert {round((t - grid.start) / grid.step) for t in times} <= set(range(grid.count))


def test_times_too_sparse_for_their_grid_get_none() -> None:
    assert Grid.covering([at(0), at(1), at(100)]) is None
    assert Grid.covering([]) is None


def test_one_time_is_a_grid_of_one() -> None:
    grid = Grid.covering([at(3)])
    assert grid is not None and grid.count == 1 and grid.start == at(3)


def test_chunks_cover_the_grid_without_overlap_or_gap() -> None:
    chunks = Grid(T0, STEP, 25).chunks(10)
    assert [chunk.count for chunk in chunks] == [10, 10, 5]
    assert chunks[0].start == T0 and chunks[-1].end == at(24)
    for before, after in itertools.pairwise(chunks):
        assert after.start == before.end + STEP
    with pytest.raises(ValueError, match="max_points"):
        Grid(T0, STEP, 3).chunks(0)


def test_a_grid_needs_a_positive_step_and_a_time() -> None:
    with pytest.raises(ValueError, match="positive step"):
        Grid(T0, timedelta(0), 3)
    with pytest.raises(ValueError, match="at least one time"):
        Grid(T0, STEP, 0)


# --- answers -------------------------------------------------------------------------------


def test_every_grid_time_is_answered_from_memory_as_the_instant_query_would() -> None:
    live = TableSource()
    source = asyncio.run(prefetched(Grid(T0, STEP, 20), [Prefetch("q", "spec.drift")], live))
    for index in range(20):
        answer = asyncio.run(source.instant("q", at(index), field="spec.drift"))
        assert same(answer, instant_answer("q", at(index))), index
    assert live.instants == [] and source.hits == 20 and source.misses == 0


def test_a_series_absent_at_a_step_is_absent_from_that_answer() -> None:
    source = asyncio.run(prefetched(Grid(T0, STEP, 20), [Prefetch("q", "f")], TableSource()))
    answer = asyncio.run(source.instant("q", at(3), field="f"))
    assert {labels["feature"] for labels in answer.labels()} == {"amount", "odd"}
    assert asyncio.run(source.instant("q", at(7), field="f")).labels() == [
        {"feature": "amount"},
        {"feature": "age"},
    ]


def test_nan_and_infinities_are_kept_as_sent() -> None:
    source = asyncio.run(prefetched(Grid(T0, STEP, 20), [Prefetch("q", "f")], TableSource()))
    odd = {
        index: next(
            s.value for s in asyncio.run(source.instant("q", at(index), field="f")).samples
            if s.labels["feature"] == "odd"
        )
        for index in (1, 2, 3)
    }  # fmt: skip
    assert math.isnan(odd[1]) and odd[2] == math.inf and odd[3] == -math.inf


def test_chunk_boundaries_answer_like_the_middle() -> None:
    live = TableSource()
    source = asyncio.run(prefetched(Grid(T0, STEP, 20), [Prefetch("q", "f")], live, max_points=6))
    assert [(start, end) for _, start, end, _ in live.ranges] == [
        (at(0), at(5)),
        (at(6), at(11)),
        (at(12), at(17)),
        (at(18), at(19)),
    ]
    for index in (5, 6, 11, 12, 17, 18, 19):
        assert same(asyncio.run(source.instant("q", at(index), field="f")), instant_answer("q", at(index)))
    assert live.instants == []


def test_a_time_off_the_grid_falls_through_to_the_live_source() -> None:
    live = TableSource()
    source = asyncio.run(prefetched(Grid(T0, STEP, 20), [Prefetch("q", "f")], live))
    between = at(4) + timedelta(seconds=30)
    assert same(asyncio.run(source.instant("q", between, field="f")), instant_answer("q", between))
    after = at(25)
    asyncio.run(source.instant("q", after, field="f"))
    assert live.instants == [("q", between), ("q", after)] and source.misses == 2


def test_a_query_not_fetched_falls_through_to_the_live_source() -> None:
    live = TableSource()
    source = asyncio.run(prefetched(Grid(T0, STEP, 20), [Prefetch("q", "f")], live))
    asyncio.run(source.instant("other", at(2), field="f"))
    assert live.instants == [("other", at(2))]


def test_a_delayed_query_is_fetched_on_the_grid_shifted_by_its_delay() -> None:
    live = TableSource()
    delay = STEP * 2
    source = asyncio.run(prefetched(Grid(at(4), STEP, 10), [Prefetch("kpi", "f", delay)], live))
    assert [(start, end) for _, start, end, _ in live.ranges] == [(at(2), at(11))]
    assert same(asyncio.run(source.instant("kpi", at(4) - delay, field="f")), instant_answer("kpi", at(2)))
    assert live.instants == []


def test_a_query_whose_range_fails_is_asked_point_by_point_and_fails_there() -> None:
    live = TableSource(failing=frozenset({"heavy"}))
    source = asyncio.run(prefetched(Grid(T0, STEP, 20), [Prefetch("heavy", "spec.kpis[0].query")], live, 6))
    assert [failure.prefetch.query for failure in source.failures] == ["heavy"]
    assert "too many samples" in source.failures[0].message
    with pytest.raises(MetricsUnavailable, match="cannot be answered"):
        asyncio.run(source.instant("heavy", at(1), field="spec.kpis[0].query"))
    assert live.instants == [("heavy", at(1))]


def test_an_answer_asked_ahead_is_the_live_answer_and_is_used_once() -> None:
    live = TableSource(failing=frozenset({"broken"}))

    async def scenario() -> None:
        source = PrefetchedSource(live)
        source.ask_ahead("frozen", at(3), field="f")
        source.ask_ahead("frozen", at(3), field="f")  # asked once
        source.ask_ahead("broken", at(3), field="f")
        assert same(await source.instant("frozen", at(3), field="f"), instant_answer("frozen", at(3)))
        assert source.ahead == 1 and live.instants.count(("frozen", at(3))) == 1
        with pytest.raises(MetricsUnavailable):
            await source.instant("broken", at(3), field="f")  # the error surfaces when used
        await source.instant("frozen", at(3), field="f")  # used up: asked again
        assert live.instants.count(("frozen", at(3))) == 2
        source.ask_ahead("never-used", at(9), field="f")
        source.close()

    asyncio.run(scenario())


def test_an_evaluation_waits_for_its_chunk_while_later_ones_are_fetched() -> None:
    live = TableSource()

    async def scenario() -> None:
        source = PrefetchedSource(live)
        source.start(live, [Prefetch("q", "f")], Grid(T0, STEP, 20), max_points=5, concurrency=1)
        first = await source.instant("q", at(0), field="f")
        # The first chunk is in; later ones are still being fetched, none asked point by point.
        assert len(live.ranges) < 4 and live.instants == []
        assert same(first, instant_answer("q", at(0)))
        last = await source.instant("q", at(19), field="f")
        assert same(last, instant_answer("q", at(19))) and len(live.ranges) == 4
        assert live.instants == [] and source.hits == 2
        source.close()

    asyncio.run(scenario())


def test_a_chunk_that_fails_leaves_its_times_and_the_rest_to_the_live_source() -> None:
    live = TableSource(fail_after=at(7))
    source = asyncio.run(prefetched(Grid(T0, STEP, 20), [Prefetch("q", "f")], live, max_points=5))
    assert len(source.failures) == 1 and len(live.ranges) == 2  # later chunks are not asked
    for index in (4, 5, 10, 19):
        assert same(asyncio.run(source.instant("q", at(index), field="f")), instant_answer("q", at(index)))
    assert live.instants == [("q", at(5)), ("q", at(10)), ("q", at(19))]


def test_closing_stops_the_fetch_and_nobody_waits_forever() -> None:
    live = TableSource()

    async def scenario() -> None:
        source = PrefetchedSource(live)
        source.start(live, [Prefetch("q", "f")], Grid(T0, STEP, 20), max_points=2, concurrency=1)
        source.close()
        await asyncio.sleep(0)
        answer = await asyncio.wait_for(source.instant("q", at(19), field="f"), timeout=5)
        assert same(answer, instant_answer("q", at(19)))

    asyncio.run(scenario())
