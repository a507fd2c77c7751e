"""The scheduler against a fake of the reconciler's narrow interface (no cluster)."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, cast

from evergreen.controller.reconciler import MonitorReconciler
from evergreen.controller.scheduler import DueQueue, Scheduler


@dataclass
class FakeSettings:
    def clock(self) -> datetime:
        return datetime.now(UTC)


class FakeReconciler:
    """Says each monitor is due ``after[name]`` seconds after its last step (None: never)."""

    def __init__(self, after: Mapping[str, float | None] | None = None) -> None:
        self.settings = FakeSettings()
        self.after = dict(after or {})
        self.reconciled: list[tuple[str, str, str]] = []
        self.released: list[str] = []
        self.forgotten: list[str] = []
        self.asked = 0

    async def reconcile(self, namespace: str, name: str, body: Mapping[str, Any]) -> dict[str, Any] | None:
        self.reconciled.append((namespace, name, body["metadata"]["resourceVersion"]))
        return None

    async def release(self, body: Mapping[str, Any]) -> None:
        self.released.append(body["metadata"]["name"])

    def forget(self, namespace: str, name: str) -> None:
        self.forgotten.append(name)

    def due_at(self, body: Mapping[str, Any]) -> datetime | None:
        self.asked += 1
        after = self.after.get(body["metadata"]["name"], 0.0)
        return None if after is None else self.settings.clock() + timedelta(seconds=after)


def body(name: str, version: int, generation: int = 1, deleting: bool = False) -> dict[str, Any]:
    meta: dict[str, Any] = {
        "namespace": "ml",
        "name": name,
        "resourceVersion": str(version),
        "generation": generation,
    }
    if deleting:
        meta["deletionTimestamp"] = "2026-12-07T00:00:00Z"
    return {"metadata": meta}


async def run_for(scheduler: Scheduler, seconds: float) -> None:
    task = asyncio.create_task(scheduler.run())
    await asyncio.sleep(seconds)
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)


def scheduler_with(fake: FakeReconciler, tick: float = 0.05) -> Scheduler:
    return Scheduler(cast(MonitorReconciler, fake), tick_seconds=tick)


def names(fake: FakeReconciler) -> list[str]:
    return [name for _, name, _ in fake.reconciled]


def test_a_monitor_is_reconciled_when_due_not_every_tick() -> None:
    async def scenario() -> None:
        fake = FakeReconciler({"often": 0.1, "rare": 10.0, "never": None})
        scheduler = scheduler_with(fake, tick=0.02)
        for index, name in enumerate(("often", "rare", "never")):
            scheduler.seen(body(name, 10 + index))
        await run_for(scheduler, 0.55)
        # New monitors are stepped at once; then each when the reconciler says it is due.
        assert 4 <= names(fake).count("often") <= 7
        assert names(fake).count("rare") == 1
        assert names(fake).count("never") == 1

    asyncio.run(scenario())


def test_what_is_due_at_once_after_a_step_waits_a_tick() -> None:
    async def scenario() -> None:
        fake = FakeReconciler({"busy": 0.0})  # work between evaluations, or a failed step
        scheduler = scheduler_with(fake, tick=0.1)
        scheduler.seen(body("busy", 10))
        await run_for(scheduler, 0.35)
        assert 3 <= names(fake).count("busy") <= 5

    asyncio.run(scenario())


def test_an_older_copy_never_replaces_a_newer_one() -> None:
    async def scenario() -> None:
        fake = FakeReconciler({"a": None})
        scheduler = scheduler_with(fake)
        scheduler.seen(body("a", 12))
        scheduler.seen(body("a", 11))  # a late watch event
        await run_for(scheduler, 0.08)
        assert {version for _, _, version in fake.reconciled} == {"12"}

    asyncio.run(scenario())


def test_a_new_generation_is_reconciled_at_once_and_a_deletion_released() -> None:
    async def scenario() -> None:
        fake = FakeReconciler({"a": 3600.0})
        scheduler = scheduler_with(fake, tick=60)  # no tick during the test
        task = asyncio.create_task(scheduler.run())
        scheduler.seen(body("a", 19))
        await asyncio.sleep(0.05)
        fake.reconciled.clear()
        scheduler.seen(body("a", 20))  # a status or metadata change: not urgent
        await asyncio.sleep(0.05)
        assert fake.reconciled == []
        scheduler.seen(body("a", 21, generation=2))
        await asyncio.sleep(0.05)
        assert [(name, version) for _, name, version in fake.reconciled] == [("a", "21")]
        scheduler.seen(body("a", 22, generation=2, deleting=True))
        await asyncio.sleep(0.05)
        assert fake.released == ["a"]
        scheduler.gone("ml", "a")
        assert fake.forgotten == ["a"]
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)

    asyncio.run(scenario())


def test_an_idle_fleet_costs_nothing_between_due_times() -> None:
    async def scenario() -> None:
        fake = FakeReconciler({f"m{i}": 3600.0 for i in range(2000)})
        scheduler = scheduler_with(fake, tick=0.01)
        for i in range(2000):
            scheduler.seen(body(f"m{i}", i + 1))
        task = asyncio.create_task(scheduler.run())
        await asyncio.sleep(0.5)  # the first round
        stepped, asked = len(fake.reconciled), fake.asked
        await asyncio.sleep(0.3)  # thirty ticks
        assert stepped == 2000
        assert (len(fake.reconciled), fake.asked) == (stepped, asked)
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)

    asyncio.run(scenario())


def test_the_due_queue_keeps_the_earliest_time_per_key_and_pops_in_order() -> None:
    queue = DueQueue()
    queue.schedule(("ml", "b"), 5.0)
    queue.schedule(("ml", "a"), 7.0)
    queue.schedule(("ml", "a"), 3.0)  # earlier wins
    queue.schedule(("ml", "b"), 9.0)  # later is ignored
    assert len(queue) == 2 and queue.next_time() == 3.0
    assert queue.pop_due(4.0) == [("ml", "a")]
    queue.discard(("ml", "b"))
    assert queue.next_time() is None and queue.pop_due(100.0) == []
    queue.schedule(("ml", "c"), 1.0)
    queue.schedule(("ml", "d"), 1.0)
    assert queue.pop_due(1.0) == [("ml", "c"), ("ml", "d")]


def test_only_owned_monitors_are_reconciled_and_the_others_asked_again() -> None:
    async def scenario() -> None:
        fake = FakeReconciler({"mine": 0.05, "theirs": 0.05})
        owned = {("ml", "mine")}
        scheduler = Scheduler(
            cast(MonitorReconciler, fake),
            tick_seconds=0.05,
            owns=lambda key: key in owned,
            recheck_seconds=0.05,
        )
        scheduler.seen(body("mine", 10))
        scheduler.seen(body("theirs", 11))
        assert set(scheduler.monitors()) == {("ml", "mine"), ("ml", "theirs")}
        task = asyncio.create_task(scheduler.run())
        await asyncio.sleep(0.2)
        assert "theirs" not in names(fake) and "mine" in names(fake)
        owned.add(("ml", "theirs"))  # the other replica left
        await asyncio.sleep(0.2)
        assert "theirs" in names(fake)
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)

    asyncio.run(scenario())


def test_an_adopted_monitor_is_stepped_without_waiting_for_the_recheck() -> None:
    async def scenario() -> None:
        fake = FakeReconciler({"theirs": 0.05})
        owned: set[tuple[str, str]] = set()
        scheduler = Scheduler(
            cast(MonitorReconciler, fake),
            tick_seconds=0.05,
            owns=lambda key: key in owned,
            recheck_seconds=3600,
        )
        scheduler.seen(body("theirs", 11))
        task = asyncio.create_task(scheduler.run())
        await asyncio.sleep(0.2)
        assert "theirs" not in names(fake)  # asked once, then left for an hour
        owned.add(("ml", "theirs"))  # the membership loop sees it became this replica's
        scheduler.adopt(("ml", "theirs"))
        await asyncio.sleep(0.2)
        assert "theirs" in names(fake)
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)

    asyncio.run(scenario())
