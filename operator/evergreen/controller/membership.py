"""This replica's membership of its shard group: renew its Lease, list the others, and keep the
:class:`~evergreen.controller.sharding.Ownership` the scheduler asks up to date.

Every ``renew_seconds``: list the group's Leases, renew (or create) this replica's own, then
update the view of the members. A replica that could not renew for ``fence_seconds`` acts on
nothing until it renews again. Leases that expired (their replica killed, or cut off) are
deleted, guarded by the version seen expired, so a replica that comes back re-creates its own.
On a clean stop the replica deletes its Lease after its last reconcile ended, and peers take
its monitors over at their next listing.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Collection

from evergreen.controller.settings import ShardSettings
from evergreen.controller.sharding import Key, LeaseLiveness, Ownership
from evergreen.errors import ClusterError
from evergreen.kube.leases import LeaseApi, LeaseLost, LeaseRecord
from evergreen.telemetry import Telemetry

log = logging.getLogger(__name__)


class Membership:
    """This replica's Lease and its view of the others."""

    def __init__(
        self,
        leases: LeaseApi,
        settings: ShardSettings,
        telemetry: Telemetry,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.leases = leases
        self.settings = settings
        self.telemetry = telemetry
        self.clock = clock
        self.identity = settings.replica
        # A monitor whose previous owner is still a member waits one Lease duration: by then
        # the previous owner has seen this replica's Lease (it lists every renew period).
        self.ownership = Ownership(self.identity, grace=settings.lease_seconds, now=clock())
        self.liveness = LeaseLiveness()
        self._own: LeaseRecord | None = None
        self._renewed_at: float | None = None  # when the last successful renewal was sent

    # What the scheduler asks -----------------------------------------------------------------

    def owns(self, key: Key) -> bool:
        """Whether this replica may reconcile the monitor now (never while fenced, even if the
        loop is stuck in a renewal that hangs)."""
        now = self.clock()
        return not self._fenced(now) and self.ownership.owns(key, now)

    def _fenced(self, now: float) -> bool:
        """Whether this replica's Lease may have expired in a peer's eyes."""
        return self._renewed_at is None or now - self._renewed_at >= self.settings.fence_seconds

    # The loop --------------------------------------------------------------------------------

    async def run(
        self,
        monitors: Callable[[], Collection[Key]],
        release: Callable[[Key], None],
        adopt: Callable[[Key], None] = lambda key: None,
    ) -> None:
        """Renew and observe every ``renew_seconds`` until cancelled. ``monitors`` are all
        known monitors (to count those owned); ``release`` is called with each one that
        stopped being this replica's (its metrics go: the new owner exports them), ``adopt``
        with each one that became this replica's (so it is stepped now, not when next asked)."""
        owned: set[Key] = set()
        while True:
            try:
                await self.step()
            except Exception:  # a bug must not stop the renewals (the replica would fence itself)
                log.exception("membership: a round failed")
            now = self.clock()
            mine = {
                key for key in list(monitors()) if not self._fenced(now) and self.ownership.owns(key, now)
            }
            for key in owned - mine:
                release(key)
            for key in mine - owned:
                adopt(key)
            owned = mine
            self.telemetry.shard_monitors_owned.set(len(owned))
            await asyncio.sleep(self.settings.renew_seconds)

    async def step(self) -> None:
        """One round: list, renew, update the view, delete expired Leases."""
        try:
            listed = await self.leases.list()
        except ClusterError as error:
            log.warning("membership: %s", error)
        else:
            peers = [lease for lease in listed if lease.holder and lease.holder != self.identity]
            self.liveness.update(peers, self.clock())
            mine = next((lease for lease in listed if lease.name == self.identity), None)
            known = self._own
            if mine is not None and (known is None or mine.resource_version != known.resource_version):
                if known is not None:
                    log.warning("membership: Lease %s was changed by someone else", self.identity)
                self._own = mine
        await self._renew()
        now = self.clock()
        if self._fenced(now):
            if self.ownership.members:
                log.error(
                    "membership: Lease %s not renewed for %.0f s: acting on no monitor until it is",
                    self.identity,
                    self.settings.fence_seconds,
                )
            self.ownership.fence(now)
        else:
            before = self.ownership.members
            self.ownership.observe(self.liveness.live(now), now)
            if self.ownership.members != before:
                log.info("membership: members are %s", ", ".join(sorted(self.ownership.members)))
        self.telemetry.shard_members.set(len(self.ownership.members))
        for lease in self.liveness.expired(now):
            await self._delete(lease)

    async def _renew(self) -> None:
        sent = self.clock()
        duration = self.settings.lease_seconds
        try:
            if self._own is None:
                self._own = await self.leases.create(self.identity, duration)
            else:
                self._own = await self.leases.renew(self._own, duration)
        except LeaseLost as error:
            # Deleted by a peer that saw it expire, or written by another process under this
            # name: the next listing says which, the next round writes again.
            log.warning("membership: %s", error)
            self._own = None
        except ClusterError as error:
            log.warning("membership: %s", error)
        else:
            if self._fenced(sent):
                # Back after a lapse: peers may have taken this replica's monitors meanwhile, so
                # it starts over like a newcomer (the next view waits the grace period).
                if self._renewed_at is not None:
                    log.warning(
                        "membership: Lease %s renewed %.1f s after the previous renewal: starting"
                        " over like a new replica",
                        self.identity,
                        sent - self._renewed_at,
                    )
                self.ownership.fence(sent)
            self._renewed_at = sent

    async def _delete(self, lease: LeaseRecord) -> None:
        try:
            if await self.leases.delete(lease):
                log.info("membership: deleted the expired Lease of %s", lease.holder)
        except ClusterError as error:
            log.warning("membership: %s", error)

    async def leave(self) -> None:
        """Delete this replica's Lease (its reconciles have ended): peers take over at once."""
        self.ownership.fence(self.clock())
        self._renewed_at = None
        own = self._own
        try:
            for _ in range(_LEAVE_ATTEMPTS):
                if own is None or await self.leases.delete(own):
                    break
                # A renewal cut short by the stop may still have landed: delete what is there.
                await asyncio.sleep(0.2)
                own = next((lease for lease in await self.leases.list() if lease.name == self.identity), None)
        except ClusterError as error:
            log.warning("membership: %s (peers take over once the Lease expires)", error)
        self._own = None


#: Tries to delete this replica's Lease on a clean stop (each after reading it again).
_LEAVE_ATTEMPTS = 3
