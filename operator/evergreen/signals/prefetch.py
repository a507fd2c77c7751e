"""Answer a replay's instant queries from range queries fetched once per span.

Prometheus evaluates a range query at ``start, start + step, ...`` exactly as it evaluates an
instant query at each of those times, so a range query answers thousands of instant queries
at once with the same values. :class:`PrefetchedSource` holds those answers and serves
``instant(query, at)`` from memory when ``query`` was fetched and ``at`` is on its grid.
Anything else (another query, a time off the grid, a query whose range fetch failed) is
asked from the live source, so every answer is the one the instant query would get.
"""

from __future__ import annotations

import asyncio
import itertools
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Protocol, runtime_checkable

import numpy as np

from evergreen.errors import MetricsUnavailable, QueryRejected
from evergreen.signals.samples import QueryResult, RangeResult
from evergreen.signals.source import MetricSource

#: Prometheus refuses a range query with more than 11,000 points per series.
MAX_POINTS = 11_000
#: Chunks of a day at a 5-minute step: the first evaluations wait for one chunk, not the span.
CHUNK_POINTS = 288
#: A grid may hold at most this many times as many points as there are evaluations: a sparse
#: sample of a long span is cheaper to ask point by point than to fetch whole.
MAX_SPARSENESS = 4


@runtime_checkable
class RangeQueries(Protocol):
    """A metric source that also answers range queries (a live Prometheus)."""

    async def range(
        self, query: str, start: datetime, end: datetime, step: timedelta, *, field: str
    ) -> RangeResult:
        """Evaluate ``query`` at every ``step`` from ``start`` to ``end`` (both included)."""
        ...


def _millis(moment: datetime | float) -> int:
    """A time as whole milliseconds: the resolution of Prometheus' ``time`` parameters."""
    seconds = moment.timestamp() if isinstance(moment, datetime) else moment
    return round(seconds * 1000)


@dataclass(frozen=True)
class Grid:
    """Evenly spaced times: ``start``, ``start + step``, ... (``count`` of them)."""

    start: datetime
    step: timedelta
    count: int

    def __post_init__(self) -> None:
        if self.step <= timedelta(0) or self.count < 1:
            raise ValueError(f"a grid needs a positive step and at least one time, got {self}")

    @property
    def end(self) -> datetime:
        return self.start + self.step * (self.count - 1)

    @classmethod
    def covering(cls, times: Sequence[datetime], max_sparseness: int = MAX_SPARSENESS) -> Grid | None:
        """The coarsest grid through every time, in whole milliseconds; None when there is no
        worthwhile one (no times, or more than ``max_sparseness`` points per time)."""
        stamps = sorted({_millis(at) for at in times})
        if not stamps:
            return None
        step = 0
        for before, after in itertools.pairwise(stamps):
            step = math.gcd(step, after - before)
        step = step or 1000  # one time: any step
        count = (stamps[-1] - stamps[0]) // step + 1
        if count > max_sparseness * len(stamps):
            return None
        first = min(times, key=_millis)
        return cls(first, timedelta(milliseconds=step), count)

    def shifted(self, by: timedelta) -> Grid:
        """The same grid ``by`` earlier (a KPI asked ``labelDelay`` before the evaluation)."""
        return Grid(self.start - by, self.step, self.count)

    def chunks(self, max_points: int = MAX_POINTS) -> list[Grid]:
        """Consecutive grids of at most ``max_points`` times that together are this one."""
        if max_points < 1:
            raise ValueError(f"max_points must be at least 1, got {max_points}")
        return [
            Grid(self.start + self.step * first, self.step, min(max_points, self.count - first))
            for first in range(0, self.count, max_points)
        ]


@dataclass(frozen=True)
class Prefetch:
    """One query to fetch over the grid, as the evaluation will ask it."""

    query: str
    #: The spec field that asks (errors name it).
    field: str
    #: The query is asked this long before each evaluation (a KPI's label delay).
    delay: timedelta = timedelta(0)


@dataclass(frozen=True)
class FetchFailure:
    """A query whose range fetch failed: it is asked point by point, and fails there as it will."""

    prefetch: Prefetch
    message: str


@dataclass(frozen=True)
class _Point:
    """One grid time of a range result."""

    result: RangeResult
    index: int
    #: Every series of the result has a point here.
    complete: bool

    def answer(self) -> QueryResult:
        """The instant answer at this time (:meth:`RangeResult.at`, without selecting rows
        when every series is there: the common case, and the one evaluations repeat)."""
        result = self.result
        if not self.complete or result.columns is None:
            return result.at(datetime.fromtimestamp(float(result.times[self.index]), UTC))
        values = np.ascontiguousarray(result.values[:, self.index])
        return QueryResult.from_columns(result.query, result.columns, values)


@dataclass(frozen=True)
class _Coming:
    """A grid being fetched in chunks of ``size`` times; ``ready[i]`` is set once chunk i is in."""

    grid: Grid
    size: int
    ready: list[asyncio.Event]

    def ready_at(self, stamp: int) -> asyncio.Event | None:
        """The event of the chunk holding time ``stamp`` (ms), or None off this grid."""
        offset = stamp - _millis(self.grid.start)
        step = _millis(self.grid.step.total_seconds())
        if offset < 0 or offset % step:
            return None
        index = offset // step
        return self.ready[index // self.size] if index < self.grid.count else None


class PrefetchedSource:
    """A :class:`MetricSource` that answers from range results, else from ``live``."""

    def __init__(self, live: MetricSource) -> None:
        self.live = live
        #: query -> grid time (ms) -> where the range results hold its answer.
        self._answers: dict[str, dict[int, _Point]] = {}
        self.failures: list[FetchFailure] = []
        #: query -> the grids being fetched for it, with an event per chunk.
        self._coming: dict[str, list[_Coming]] = {}
        self._fetching: asyncio.Future[None] | None = None
        self._broken: Exception | None = None
        #: (query, time in ms) -> an instant query asked ahead of time (see ``ask_ahead``).
        self._ahead: dict[tuple[str, int], asyncio.Task[QueryResult]] = {}
        self._ahead_limit = asyncio.Semaphore(2)
        #: Instant queries answered from memory, asked ahead, and asked when needed.
        self.hits = 0
        self.ahead = 0
        self.misses = 0

    def holds(self, query: str, at: datetime) -> bool:
        """Whether ``instant(query, at)`` is answered from memory."""
        return _millis(at) in self._answers.get(query, {})

    def add(self, result: RangeResult) -> None:
        """Answer ``result.query`` at every time of ``result`` from it."""
        by_time = self._answers.setdefault(result.query, {})
        complete = [bool(every) for every in np.all(result.present, axis=0)]  # no series: complete
        for index, (stamp, every) in enumerate(zip(result.times.tolist(), complete, strict=True)):
            by_time[_millis(stamp)] = _Point(result, index, every)

    def start(
        self,
        source: RangeQueries,
        prefetches: Sequence[Prefetch],
        grid: Grid,
        *,
        max_points: int = CHUNK_POINTS,
        concurrency: int = 2,
        fetched: Callable[[int, int], None] | None = None,
    ) -> None:
        """Start fetching every query over ``grid`` (shifted by its delay), earliest chunks of
        ``max_points`` first; ``instant`` waits for the chunk it needs, so the caller can
        compute while Prometheus works on later chunks.

        ``fetched(done, total)`` is called after each range query. A query Prometheus cannot
        answer as a range (too many samples, a timeout) is recorded in ``failures`` and its
        remaining times are left to the live source.
        """
        unique = list(dict.fromkeys(prefetches))
        chunked = {prefetch: grid.shifted(prefetch.delay).chunks(max_points) for prefetch in unique}
        events = {prefetch: [asyncio.Event() for _ in chunks] for prefetch, chunks in chunked.items()}
        for prefetch in unique:
            coming = _Coming(grid.shifted(prefetch.delay), max_points, events[prefetch])
            self._coming.setdefault(prefetch.query, []).append(coming)
        count = len(next(iter(chunked.values()), []))
        work = [(p, chunked[p][index], events[p][index]) for index in range(count) for p in unique]
        self._fetching = asyncio.ensure_future(self._fetch(source, work, concurrency, fetched))

    async def _fetch(
        self,
        source: RangeQueries,
        work: list[tuple[Prefetch, Grid, asyncio.Event]],
        concurrency: int,
        fetched: Callable[[int, int], None] | None,
    ) -> None:
        limit = asyncio.Semaphore(concurrency)  # FIFO: chunks start in time order
        failed: set[Prefetch] = set()
        done = 0

        async def one(prefetch: Prefetch, chunk: Grid, ready: asyncio.Event) -> None:
            nonlocal done
            try:
                async with limit:
                    if prefetch not in failed:
                        result = await source.range(
                            prefetch.query, chunk.start, chunk.end, chunk.step, field=prefetch.field
                        )
                        self.add(result)
            except (MetricsUnavailable, QueryRejected) as error:
                if prefetch not in failed:  # chunks in flight together may all fail
                    failed.add(prefetch)
                    self.failures.append(FetchFailure(prefetch, str(error)))
            except Exception as error:  # a defect: every waiting evaluation must see it
                self._broken = error
                raise
            finally:
                ready.set()
            done += 1
            if fetched is not None:
                fetched(done, len(work))

        try:
            await asyncio.gather(*(one(prefetch, chunk, ready) for prefetch, chunk, ready in work))
        finally:
            for _, _, ready in work:
                ready.set()  # nobody waits for a chunk that will not come

    async def fetch(
        self,
        source: RangeQueries,
        prefetches: Sequence[Prefetch],
        grid: Grid,
        *,
        max_points: int = MAX_POINTS,
        concurrency: int = 2,
        fetched: Callable[[int, int], None] | None = None,
    ) -> None:
        """:meth:`start`, then wait until every chunk has been fetched."""
        self.start(source, prefetches, grid, max_points=max_points, concurrency=concurrency, fetched=fetched)
        assert self._fetching is not None
        await self._fetching

    async def _arrived(self, query: str, at: datetime) -> None:
        """Wait for the chunk that will answer ``query`` at ``at``, if one is coming."""
        stamp = _millis(at)
        for coming in self._coming.get(query, ()):
            ready = coming.ready_at(stamp)
            if ready is not None:
                await ready.wait()
        if self._broken is not None:
            raise self._broken

    def ask_ahead(self, query: str, at: datetime, *, field: str) -> None:
        """Start asking the live source now for an answer ``instant`` is likely to need soon.

        Prometheus then works while the caller computes. History does not change, so the
        answer is the one asking later would get; errors surface when it is used.
        """
        key = (query, _millis(at))
        if key in self._ahead or self.holds(query, at):
            return

        async def ask() -> QueryResult:
            async with self._ahead_limit:
                return await self.live.instant(query, at, field=field)

        task = asyncio.ensure_future(ask())
        # An answer never used must not log "exception never retrieved".
        task.add_done_callback(lambda done: done.cancelled() or done.exception())
        self._ahead[key] = task

    def close(self) -> None:
        """Stop fetching, and cancel answers asked ahead that were not used."""
        if self._fetching is not None:
            self._fetching.cancel()
        for coming in (coming for comings in self._coming.values() for coming in comings):
            for ready in coming.ready:
                ready.set()  # what was not fetched is asked live
        for task in self._ahead.values():
            task.cancel()
        self._ahead.clear()

    async def instant(self, query: str, at: datetime, *, field: str) -> QueryResult:
        """The prefetched answer when there is one, else the live source's."""
        result = self._answers.get(query, {}).get(_millis(at))
        if result is None and query in self._coming:
            await self._arrived(query, at)
            result = self._answers.get(query, {}).get(_millis(at))
        if result is not None:
            self.hits += 1
            return result.answer()
        asked = self._ahead.pop((query, _millis(at)), None)
        if asked is not None:
            self.ahead += 1
            return await asked
        self.misses += 1
        return await self.live.instant(query, at, field=field)
