"""Which replica reconciles which ModelMonitor, so that no two work on one monitor at once.

Each replica holds a Lease of its own (:mod:`evergreen.controller.membership` renews it); the
members are the replicas whose Leases are not expired. A monitor belongs to the member chosen
by rendezvous hashing of ``namespace/name`` over the members: every replica computes the same
owner from the same members, and a member joining or leaving moves only the monitors it wins
or held (about 1/N of them), never reshuffles the rest.

Hand-over rules (times are each replica's own monotonic clock; only clock *rates* matter):

- A replica stops acting on a monitor as soon as it sees that the monitor is no longer its own.
- It starts acting on a monitor that became its own
  - at once when the previous owner has left (its Lease expired or was deleted: a replica
    fences itself before others can see its Lease expire, and deletes it only once stopped);
  - after ``grace`` seconds when the previous owner is still a member (a replica joined, or
    this one just started or lost and regained its Lease): time for the previous owner to see
    the new member and finish what it was doing.

Everything here is pure: time is passed in, nothing reads a clock or the API.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from evergreen.kube.leases import LeaseRecord

Key = tuple[str, str]


def weight(member: str, key: Key) -> int:
    """The rendezvous weight of ``member`` for ``key``: a stable hash (Python's ``hash`` is
    salted per process, so replicas would disagree)."""
    text = f"{member}\0{key[0]}/{key[1]}".encode()
    return int.from_bytes(hashlib.blake2b(text, digest_size=8).digest(), "big")


def owner(key: Key, members: Iterable[str]) -> str | None:
    """The member that owns ``key`` (the highest weight; ties by name), None without members."""
    return max(members, key=lambda member: (weight(member, key), member), default=None)


#: Owners remembered per view; a view outliving many deleted monitors starts over past this.
_MEMO_LIMIT = 200_000


@dataclass(frozen=True)
class View:
    """The members as seen from ``since`` on; ``members`` is None while unknown (before the
    first listing of Leases, or while this replica's own Lease may have expired)."""

    members: frozenset[str] | None
    since: float
    # The scheduler asks about every monitor each tick: hash each one once per view.
    _owners: dict[Key, str | None] = field(default_factory=dict, compare=False, repr=False)

    def owner(self, key: Key) -> str | None:
        if self.members is None:
            return None
        if key in self._owners:
            return self._owners[key]
        if len(self._owners) >= _MEMO_LIMIT:
            self._owners.clear()
        chosen = self._owners[key] = owner(key, self.members)
        return chosen


class Ownership:
    """One replica's views of the membership over time, and what it may act on now."""

    def __init__(self, identity: str, *, grace: float, now: float) -> None:
        self.identity = identity
        self.grace = grace
        self._views = [View(None, now)]

    @property
    def members(self) -> frozenset[str]:
        """The current members (empty while unknown or fenced)."""
        return self._views[-1].members or frozenset()

    def observe(self, members: Iterable[str], now: float) -> None:
        """The live members as of ``now`` (this replica among them: it just renewed its Lease)."""
        self._change(View(frozenset(members) | {self.identity}, now))

    def fence(self, now: float) -> None:
        """This replica's Lease may have expired in others' eyes: act on nothing."""
        self._change(View(None, now))

    def _change(self, view: View) -> None:
        if view.members != self._views[-1].members:
            self._views.append(view)
        self._forget_before(view.since - self.grace)

    def _forget_before(self, horizon: float) -> None:
        # A view is needed only while its successor began less than ``grace`` ago (it may still
        # say who held a monitor before a recent change).
        while len(self._views) > 1 and self._views[1].since <= horizon:
            del self._views[0]

    def owns(self, key: Key, now: float) -> bool:
        """Whether this replica may act on ``key`` now."""
        views = self._views
        if views[-1].owner(key) != self.identity:
            return False
        first = len(views) - 1  # the oldest view of the current unbroken run of ownership
        while first > 0 and views[first - 1].owner(key) == self.identity:
            first -= 1
        if first == 0:
            # Owned since before every remembered change, so for longer than ``grace`` (the
            # first view of all is unknown and owns nothing: this is a later one).
            return True
        before, taken = views[first - 1], views[first]
        assert taken.members is not None
        previous = before.owner(key)
        if previous is None or previous in taken.members:
            return now >= taken.since + self.grace
        return now >= taken.since


@dataclass
class _Sighting:
    record: LeaseRecord
    changed_at: float


class LeaseLiveness:
    """Which Leases are live, judged by when *this* replica saw each one change: a Lease not
    renewed for its duration is expired. The ``renewTime`` written in it is not compared with
    the local clock, so clock skew between nodes does not matter (as in client-go's leader
    election)."""

    def __init__(self) -> None:
        self._seen: dict[str, _Sighting] = {}

    def update(self, leases: Iterable[LeaseRecord], now: float) -> None:
        """The Leases listed at ``now``; one not listed any more is gone."""
        listed: dict[str, _Sighting] = {}
        for lease in leases:
            known = self._seen.get(lease.name)
            if known is not None and known.record.resource_version == lease.resource_version:
                listed[lease.name] = known
            else:
                listed[lease.name] = _Sighting(lease, now)
        self._seen = listed

    def live(self, now: float) -> frozenset[str]:
        """Holders of the Leases renewed less than their duration ago."""
        return frozenset(s.record.holder for s in self._seen.values() if not _expired(s, now))

    def expired(self, now: float) -> list[LeaseRecord]:
        return [s.record for s in self._seen.values() if _expired(s, now)]


def _expired(sighting: _Sighting, now: float) -> bool:
    return now - sighting.changed_at >= sighting.record.duration_seconds
