"""When each ModelMonitor is reconciled: a watch-fed cache of the objects and a due-time queue.

kopf's watch delivers every change of every ModelMonitor (:meth:`Scheduler.seen`); the cache
is the watch's, so an idle monitor costs no read of its own. Each monitor waits in a heap
ordered by the time it is next due (its next evaluation, asked of the reconciler after every
step), so the loop wakes for what is due and a wake-up costs O(due · log n), not a pass over
the fleet. A change (a new spec, a deletion) is reconciled at once. Monitors with work between
evaluations (retraining runs, rollouts) are stepped every tick. The operator's own status
writes go back into the cache as soon as they are answered, so the next step does not act on
the object as it was before them.

A monitor is reconciled by one task at a time; at most ``concurrency`` run at once. Only
monitors ``owns`` accepts are reconciled (all of them unless replicas share the fleet); one
that is not this replica's is asked again when it would be due.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import itertools
import json
import logging
import time
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass
from typing import Any

from evergreen.controller.reconciler import MonitorReconciler
from evergreen.errors import EvergreenError

log = logging.getLogger(__name__)

Key = tuple[str, str]


def _newer(candidate: Mapping[str, Any], known: Cached | None) -> bool:
    """Whether ``candidate`` is at least as recent as ``known`` (resourceVersions of one object
    are etcd revisions: comparable as integers, though clients should treat them as opaque, so
    anything unparsable counts as newer)."""
    if known is None:
        return True
    try:
        return int(candidate["metadata"]["resourceVersion"]) >= int(known.resource_version)
    except (KeyError, TypeError, ValueError):
        return True


@dataclass(frozen=True, slots=True)
class Cached:
    """One object as the watch (or our own write) last delivered it, kept as compact JSON: a
    fifth of the memory of the decoded dicts, decoded again only when the monitor is stepped."""

    resource_version: str
    generation: int | None
    raw: bytes

    @classmethod
    def of(cls, body: Mapping[str, Any]) -> Cached:
        meta = body["metadata"]
        raw = json.dumps(dict(body), separators=(",", ":")).encode()
        return cls(str(meta.get("resourceVersion", "")), meta.get("generation"), raw)

    def body(self) -> dict[str, Any]:
        decoded: dict[str, Any] = json.loads(self.raw)
        return decoded


class DueQueue:
    """Keys by the loop time they are due at: one entry per key, the earliest wins.

    A heap with lazy deletion: rescheduling pushes a new entry, and an entry that no longer
    matches its key's due time is dropped when it reaches the top.
    """

    def __init__(self) -> None:
        self._heap: list[tuple[float, int, Key]] = []
        self._due: dict[Key, float] = {}
        self._order = itertools.count()

    def __len__(self) -> int:
        return len(self._due)

    def __contains__(self, key: object) -> bool:
        return key in self._due

    def at(self, key: Key) -> float | None:
        return self._due.get(key)

    def schedule(self, key: Key, when: float) -> None:
        """Due at ``when``, or earlier if it already was."""
        known = self._due.get(key)
        if known is not None and known <= when:
            return
        self._due[key] = when
        heapq.heappush(self._heap, (when, next(self._order), key))

    def discard(self, key: Key) -> None:
        self._due.pop(key, None)

    def next_time(self) -> float | None:
        """When the earliest key is due (None: nothing scheduled)."""
        self._drop_stale()
        return self._heap[0][0] if self._heap else None

    def pop_due(self, now: float) -> list[Key]:
        """Every key due at or before ``now``, earliest first; they leave the queue."""
        due: list[Key] = []
        while True:
            self._drop_stale()
            if not self._heap or self._heap[0][0] > now:
                return due
            _, _, key = heapq.heappop(self._heap)
            del self._due[key]
            due.append(key)

    def _drop_stale(self) -> None:
        while self._heap and self._due.get(self._heap[0][2]) != self._heap[0][0]:
            heapq.heappop(self._heap)


class Scheduler:
    """Reconciles each known monitor when it is due, and a changed one at once."""

    def __init__(
        self,
        reconciler: MonitorReconciler,
        *,
        tick_seconds: float,
        concurrency: int = 32,
        owns: Callable[[Key], bool] | None = None,
        recheck_seconds: float = 30.0,
    ) -> None:
        self.reconciler = reconciler
        self.tick_seconds = tick_seconds
        self.owns = owns or (lambda key: True)
        # Another replica's monitor is asked again this often (its status, possibly kept
        # unwritten by its owner, says nothing about when it is due); a takeover does not
        # wait for it: the membership loop calls ``adopt`` as soon as it sees one.
        self.recheck_seconds = max(recheck_seconds, tick_seconds)
        self._bodies: dict[Key, Cached] = {}
        self._queue = DueQueue()
        self._running: dict[Key, asyncio.Task[None]] = {}
        self._again: set[Key] = set()
        self._slots = asyncio.Semaphore(concurrency)
        self._wake = asyncio.Event()

    # Fed by the watch ----------------------------------------------------------------------------

    def seen(self, body: Mapping[str, Any]) -> None:
        """The watch delivered the object (created, changed, or being deleted)."""
        meta = body["metadata"]
        key = (meta["namespace"], meta["name"])
        known = self._bodies.get(key)
        if not _newer(body, known):
            return
        self._bodies[key] = Cached.of(body)
        changed = known is None or known.generation != meta.get("generation")
        if changed or meta.get("deletionTimestamp"):
            self._schedule(key, 0.0)
        elif key not in self._queue and key not in self._running:
            self._plan(key, body=body)

    def gone(self, namespace: str, name: str) -> None:
        """The object no longer exists."""
        self._bodies.pop((namespace, name), None)
        self._queue.discard((namespace, name))
        self._again.discard((namespace, name))
        self.reconciler.forget(namespace, name)

    def monitors(self) -> Collection[Key]:
        """Every known monitor, owned or not."""
        return self._bodies.keys()

    def adopt(self, key: Key) -> None:
        """The monitor became this replica's: step it when it is due, without waiting for the
        next recheck of monitors that were another's."""
        if key in self._bodies and key not in self._running:
            self._queue.discard(key)
            self._plan(key)

    # The loop ------------------------------------------------------------------------------------

    async def run(self) -> None:
        """Reconcile until cancelled: each monitor when it is due, changed ones at once."""
        try:
            while True:
                upcoming = self._queue.next_time()
                timeout = None if upcoming is None else max(upcoming - time.monotonic(), 0.0)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), timeout)
                self._wake.clear()
                for key in self._queue.pop_due(time.monotonic()):
                    if key in self._running:
                        self._again.add(key)  # changed while being reconciled: once more after
                    elif key in self._bodies and self.owns(key):
                        self._running[key] = asyncio.create_task(self._reconcile(key))
                    elif key in self._bodies:
                        self._schedule(key, self.recheck_seconds)  # another replica's, for now
        finally:
            for task in self._running.values():
                task.cancel()
            await asyncio.gather(*self._running.values(), return_exceptions=True)

    def _schedule(self, key: Key, delay: float) -> None:
        """Due ``delay`` seconds from now (or earlier if it already was)."""
        when = time.monotonic() + delay
        upcoming = self._queue.next_time()
        self._queue.schedule(key, when)
        if upcoming is None or when < upcoming:
            self._wake.set()  # the loop sleeps until the earliest due time: wake it earlier

    def _plan(self, key: Key, *, after_step: bool = False, body: Mapping[str, Any] | None = None) -> None:
        """Queue ``key`` for when the reconciler says it is next due. Right after a step, what
        is due already (work between evaluations, or a step that failed) waits a tick.
        ``body`` is the cached object when the caller holds it decoded already."""
        cached = self._bodies.get(key)
        if cached is None:
            return
        due = self.reconciler.due_at(body if body is not None else cached.body())
        if due is None:
            return  # nothing to do until the object changes
        delay = (due - self.reconciler.settings.clock()).total_seconds()
        if after_step and delay <= 0:
            delay = self.tick_seconds
        self._schedule(key, max(delay, 0.0))

    async def _reconcile(self, key: Key) -> None:
        stored: tuple[Cached, dict[str, Any]] | None = None  # our write, as cached and decoded
        try:
            async with self._slots:
                cached = self._bodies.get(key)
                if cached is None or not self.owns(key):  # ownership may move while waiting
                    return
                body = cached.body()
                if body["metadata"].get("deletionTimestamp"):
                    await self.reconciler.release(body)
                    return
                written = await self.reconciler.reconcile(*key, body)
                if written is not None and key in self._bodies and _newer(written, self._bodies[key]):
                    stored = (Cached.of(written), written)
                    self._bodies[key] = stored[0]
        except EvergreenError as error:
            # The next tick retries (a temporary API failure, a Deployment not ready yet).
            log.warning("%s/%s: %s", *key, error)
        except Exception:  # a bug must fail this monitor's tick, never the loop
            log.exception("reconciling %s/%s failed", *key)
        finally:
            self._running.pop(key, None)
            try:
                if key in self._again:
                    self._again.discard(key)
                    self._schedule(key, 0.0)
                else:
                    # Planned from our own write while the watch has brought nothing newer.
                    fresh = stored is not None and self._bodies.get(key) is stored[0]
                    self._plan(key, after_step=True, body=stored[1] if stored and fresh else None)
            except Exception:  # an unreadable object must not stop the loop: retried next tick
                log.exception("scheduling %s/%s failed", *key)
                self._schedule(key, self.tick_seconds)
