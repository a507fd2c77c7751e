"""When a monitor's evaluations fall: each at a fixed offset within its interval.

Monitors created together (or all of them after an operator restart) would otherwise be due
together forever, every interval a burst as large as the fleet. As Prometheus spreads scrapes
of its targets, each monitor gets a phase derived from its uid, so a fleet's evaluations are
spread evenly over the interval and stay where they are across restarts and replicas.
"""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime, timedelta

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def phase(uid: str, interval: timedelta) -> timedelta:
    """The monitor's offset within every interval, stable for its lifetime."""
    digest = int.from_bytes(hashlib.blake2b(uid.encode(), digest_size=8).digest(), "big")
    return interval * (digest / 2**64)


def next_slot(now: datetime, interval: timedelta, offset: timedelta) -> datetime:
    """The first time ``epoch + offset + k * interval`` at least half an interval after ``now``.

    Evaluated on its slot (or late by less than half an interval), the next evaluation is one
    interval later; a first evaluation off its slot moves onto it, at least half an interval on.
    """
    earliest = now + interval / 2
    since = earliest - _EPOCH - offset
    steps = -(-since // interval)  # ceiling
    return _EPOCH + offset + steps * interval
