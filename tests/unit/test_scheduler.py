"""The scheduler against a fake of the reconciler's narrow interface (no cluster)."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Any, cast

from evergreen.controller.reconciler import MonitorReconciler
from evergreen.controller.scheduler import Scheduler


class FakeReconciler:
    def __init__(self) -> None:
        self.reconciled: list[tuple[str, str, str]] = []
        self.released: list[str] = []
        self.forgotten: list[str] = []

    async def reconcile(self, namespace: str, name: str, body: Mapping[str, Any]) -> dict[str, Any] | None:
        self.reconciled.append((namespace, name, body["metadata"]["resourceVersion"]))
        return None

    async def release(self, body: Mapping[str, Any]) -> None:
        self.released.append(body["metadata"]["name"])

    def forget(self, namespace: str, name: str) -> None:
        self.forgotten.append(name)


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


def test_each_known_monitor_is_reconciled_every_tick_from_the_cache() -> None:
    fake = FakeReconciler()
    scheduler = scheduler_with(fake)
    scheduler.seen(body("a", 10))
    scheduler.seen(body("b", 11))
    asyncio.run(run_for(scheduler, 0.27))
    names = [name for _, name, _ in fake.reconciled]
    assert names.count("a") >= 4 and names.count("b") >= 4


def test_an_older_copy_never_replaces_a_newer_one() -> None:
    fake = FakeReconciler()
    scheduler = scheduler_with(fake)
    scheduler.seen(body("a", 12))
    scheduler.seen(body("a", 11))  # a late watch event
    asyncio.run(run_for(scheduler, 0.08))
    assert {version for _, _, version in fake.reconciled} == {"12"}


def test_a_new_generation_is_reconciled_at_once_and_a_deletion_released() -> None:
    async def scenario() -> None:
        fake = FakeReconciler()
        scheduler = scheduler_with(fake, tick=60)  # no tick during the test
        task = asyncio.create_task(scheduler.run())
        await asyncio.sleep(0.05)  # the first tick passed
        fake.reconciled.clear()
        scheduler.seen(body("a", 20, generation=2))
        await asyncio.sleep(0.05)
        assert [(name, version) for _, name, version in fake.reconciled] == [("a", "20")]
        scheduler.seen(body("a", 21, generation=2, deleting=True))
        await asyncio.sleep(0.05)
        assert fake.released == ["a"]
        scheduler.gone("ml", "a")
        assert fake.forgotten == ["a"]
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)

    asyncio.run(scenario())


def test_only_monitors_this_replica_owns_are_reconciled_or_released() -> None:
    fake = FakeReconciler()
    owned = {("ml", "mine")}
    scheduler = Scheduler(cast(MonitorReconciler, fake), tick_seconds=0.05, owns=owned.__contains__)
    scheduler.seen(body("mine", 10))
    scheduler.seen(body("theirs", 11))
    scheduler.seen(body("theirs-going", 12, deleting=True))
    asyncio.run(run_for(scheduler, 0.2))
    assert {name for _, name, _ in fake.reconciled} == {"mine"}
    assert fake.released == []  # the owner releases a deleted monitor, no one else
    assert set(scheduler.monitors()) == {("ml", "mine"), ("ml", "theirs"), ("ml", "theirs-going")}
    # Ownership moves (a peer left): the next tick takes the monitor on.
    owned.add(("ml", "theirs"))
    asyncio.run(run_for(scheduler, 0.12))
    assert "theirs" in {name for _, name, _ in fake.reconciled}
