"""A replica's membership loop over an in-memory Lease store with a manual clock: renewals,
fencing when renewals fail, expired Leases cleaned up, and the Lease deleted on a clean stop.
(The real API server's Leases are exercised end to end in tests/e2e/test_sharding.py.)"""

from __future__ import annotations

import asyncio
import itertools

from evergreen.controller.membership import Membership
from evergreen.controller.settings import ShardSettings
from evergreen.controller.sharding import Key, owner
from evergreen.errors import ClusterError
from evergreen.kube.leases import LeaseApi, LeaseLost, LeaseRecord
from evergreen.telemetry import Telemetry

KEYS: list[Key] = [("ml", f"model-{i}") for i in range(30)]


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class LeaseStore(LeaseApi):
    """The group's Leases, versioned like the API server's (no API behind it)."""

    def __init__(self) -> None:  # no KubeApi: every call is answered here
        self.leases: dict[str, LeaseRecord] = {}
        self.versions = itertools.count(1)
        self.down = False

    def _check(self) -> None:
        if self.down:
            raise ClusterError("listing Leases: connection refused")

    async def list(self) -> list[LeaseRecord]:
        self._check()
        return list(self.leases.values())

    async def create(self, holder: str, duration: float) -> LeaseRecord:
        self._check()
        if holder in self.leases:
            raise LeaseLost(f"Lease {holder} exists already")
        record = LeaseRecord(holder, holder, str(next(self.versions)), duration)
        self.leases[holder] = record
        return record

    async def renew(self, lease: LeaseRecord, duration: float) -> LeaseRecord:
        self._check()
        current = self.leases.get(lease.name)
        if current is None or current.resource_version != lease.resource_version:
            raise LeaseLost(f"Lease {lease.name} changed or vanished")
        record = LeaseRecord(lease.name, lease.holder, str(next(self.versions)), duration)
        self.leases[lease.name] = record
        return record

    async def delete(self, lease: LeaseRecord) -> bool:
        self._check()
        current = self.leases.get(lease.name)
        if current is not None and current.resource_version != lease.resource_version:
            return False
        self.leases.pop(lease.name, None)
        return True


LEASE, RENEW = 15.0, 5.0


def member(store: LeaseStore, clock: Clock, name: str) -> Membership:
    settings = ShardSettings(replica=name, namespace="evergreen", lease_seconds=LEASE, renew_seconds=RENEW)
    return Membership(store, settings, Telemetry(), clock=clock)


def rounds(clock: Clock, members: list[Membership], seconds: float) -> None:
    """Every member runs a round each renew period for ``seconds``."""

    async def run() -> None:
        end = clock.now + seconds
        while clock.now < end:
            for m in members:
                await m.step()
            clock.now += 5.0

    asyncio.run(run())


def test_two_members_split_the_monitors_after_the_grace_period() -> None:
    store, clock = LeaseStore(), Clock()
    a, b = member(store, clock, "a"), member(store, clock, "b")
    rounds(clock, [a, b], 10)
    assert not [key for key in KEYS if a.owns(key) or b.owns(key)]  # both still waiting
    rounds(clock, [a, b], 10)
    for key in KEYS:
        assert [m.identity for m in (a, b) if m.owns(key)] == [owner(key, {"a", "b"})]
    assert a.telemetry.shard_members._value.get() == 2


def test_a_member_that_cannot_renew_stops_acting_before_its_lease_can_expire() -> None:
    store, clock = LeaseStore(), Clock()
    a = member(store, clock, "a")
    rounds(clock, [a], 20)
    assert all(a.owns(key) for key in KEYS)
    store.down = True
    clock.now += LEASE - RENEW - 5.1
    assert all(a.owns(key) for key in KEYS)
    clock.now += 0.2  # fence_seconds since the last renewal was sent, no round needed
    assert not any(a.owns(key) for key in KEYS)
    store.down = False
    rounds(clock, [a], 5)
    assert not any(a.owns(key) for key in KEYS)  # back, but waits like a newcomer
    rounds(clock, [a], 15)
    assert all(a.owns(key) for key in KEYS)


def test_a_killed_members_lease_expires_its_monitors_move_and_its_lease_goes() -> None:
    store, clock = LeaseStore(), Clock()
    a, b = member(store, clock, "a"), member(store, clock, "b")
    rounds(clock, [a, b], 20)
    # a is killed: it renews no more. b takes a's monitors once a's Lease is 15 s unchanged.
    rounds(clock, [b], 10)
    assert not any(b.owns(key) for key in KEYS if owner(key, {"a", "b"}) == "a")
    rounds(clock, [b], 10)
    assert all(b.owns(key) for key in KEYS)
    assert set(store.leases) == {"b"}


def test_a_clean_stop_deletes_the_lease_and_the_others_take_over_at_once() -> None:
    store, clock = LeaseStore(), Clock()
    a, b = member(store, clock, "a"), member(store, clock, "b")
    rounds(clock, [a, b], 20)
    asyncio.run(a.leave())
    assert set(store.leases) == {"b"} and not any(a.owns(key) for key in KEYS)
    rounds(clock, [b], 5)
    assert all(b.owns(key) for key in KEYS)


def test_a_restarted_member_finds_its_old_lease_and_renews_it() -> None:
    store, clock = LeaseStore(), Clock()
    rounds(clock, [member(store, clock, "a")], 10)
    again = member(store, clock, "a")  # the same identity (a StatefulSet pod), its Lease still there
    rounds(clock, [again], 25)
    assert all(again.owns(key) for key in KEYS)
    assert set(store.leases) == {"a"}


def test_a_clean_stop_deletes_the_lease_even_after_a_renewal_it_did_not_see() -> None:
    store, clock = LeaseStore(), Clock()
    a = member(store, clock, "a")
    rounds(clock, [a], 10)
    # A renewal cut short by the stop landed on the server after all: the version a knows is stale.
    record = store.leases["a"]
    store.leases["a"] = LeaseRecord("a", "a", "999", record.duration_seconds)
    asyncio.run(a.leave())
    assert store.leases == {}


def test_the_run_loop_adopts_monitors_that_become_this_replicas_and_releases_the_others() -> None:
    store = LeaseStore()
    settings = ShardSettings(replica="a", namespace="evergreen", lease_seconds=0.3, renew_seconds=0.05)
    a = Membership(store, settings, Telemetry())
    adopted: list[tuple[str, str]] = []
    released: list[tuple[str, str]] = []

    async def run() -> None:
        await a.step()
        task = asyncio.create_task(a.run(lambda: KEYS, released.append, adopted.append))
        await asyncio.sleep(0.6)  # past the grace period of a starting replica
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)

    asyncio.run(run())
    assert sorted(adopted) == sorted(KEYS)  # alone, it adopts every monitor once
    assert released == []
