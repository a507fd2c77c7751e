"""When each ModelMonitor is reconciled: a watch-fed cache of the objects and one ticking loop.

kopf's watch delivers every change of every ModelMonitor (:meth:`Scheduler.seen`); the loop
reconciles each known monitor once per tick from that cache, so an idle monitor costs no read
of its own, and a change (a new spec, a deletion) is reconciled at once. The operator's own
status writes go back into the cache as soon as they are answered, so the next tick does not
act on the object as it was before them.

A monitor is reconciled by one task at a time; at most ``concurrency`` run at once. With
replicas sharing the monitors, only those ``owns`` accepts are reconciled (docs/scaling.md).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Collection, Mapping
from typing import Any

from evergreen.controller.reconciler import MonitorReconciler
from evergreen.errors import EvergreenError

log = logging.getLogger(__name__)

Key = tuple[str, str]


def _newer(candidate: Mapping[str, Any], known: Mapping[str, Any] | None) -> bool:
    """Whether ``candidate`` is at least as recent as ``known`` (resourceVersions of one object
    are etcd revisions: comparable as integers, though clients should treat them as opaque, so
    anything unparsable counts as newer)."""
    if known is None:
        return True
    try:
        return int(candidate["metadata"]["resourceVersion"]) >= int(known["metadata"]["resourceVersion"])
    except (KeyError, TypeError, ValueError):
        return True


class Scheduler:
    """Reconciles every known monitor each tick, and a changed one at once."""

    def __init__(
        self,
        reconciler: MonitorReconciler,
        *,
        tick_seconds: float,
        concurrency: int = 32,
        owns: Callable[[Key], bool] | None = None,
    ) -> None:
        self.reconciler = reconciler
        self.tick_seconds = tick_seconds
        self.owns = owns or (lambda key: True)
        self._bodies: dict[Key, dict[str, Any]] = {}
        self._urgent: set[Key] = set()
        self._running: dict[Key, asyncio.Task[None]] = {}
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
        self._bodies[key] = dict(body)
        changed = known is None or known["metadata"].get("generation") != meta.get("generation")
        if changed or meta.get("deletionTimestamp"):
            self._urgent.add(key)
            self._wake.set()

    def gone(self, namespace: str, name: str) -> None:
        """The object no longer exists."""
        self._bodies.pop((namespace, name), None)
        self._urgent.discard((namespace, name))
        self.reconciler.forget(namespace, name)

    def monitors(self) -> Collection[Key]:
        """Every known monitor, owned or not."""
        return self._bodies.keys()

    # The loop ------------------------------------------------------------------------------------

    async def run(self) -> None:
        """Reconcile until cancelled: everything each tick, urgent monitors at once."""
        loop = asyncio.get_running_loop()
        next_tick = loop.time()
        try:
            while True:
                timeout = max(next_tick - loop.time(), 0.0)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), timeout)
                self._wake.clear()
                if loop.time() >= next_tick:
                    due = list(self._bodies)
                    next_tick = loop.time() + self.tick_seconds
                else:
                    due = list(self._urgent)
                self._urgent.clear()
                for key in due:
                    if key in self._bodies and key not in self._running and self.owns(key):
                        self._running[key] = asyncio.create_task(self._reconcile(key))
        finally:
            for task in self._running.values():
                task.cancel()
            await asyncio.gather(*self._running.values(), return_exceptions=True)

    async def _reconcile(self, key: Key) -> None:
        try:
            async with self._slots:
                body = self._bodies.get(key)
                if body is None or not self.owns(key):  # ownership may move while waiting
                    return
                if body["metadata"].get("deletionTimestamp"):
                    await self.reconciler.release(body)
                    return
                written = await self.reconciler.reconcile(*key, body)
                if written is not None and key in self._bodies and _newer(written, self._bodies[key]):
                    self._bodies[key] = written
        except EvergreenError as error:
            # The next tick retries (a temporary API failure, a Deployment not ready yet).
            log.warning("%s/%s: %s", *key, error)
        except Exception:  # a bug must fail this monitor's tick, never the loop
            log.exception("reconciling %s/%s failed", *key)
        finally:
            self._running.pop(key, None)
