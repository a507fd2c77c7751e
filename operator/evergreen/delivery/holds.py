"""Version holds: which are in force, and the Events ahead of and at their expiry.

A hold pins named customers to a version until a date: consistency can beat accuracy. While a
hold is active its version keeps being served (its Deployment is never scaled down or deleted,
through any number of promotions); at ``until`` it is released. People hear about it twice:
``HoldExpiring`` once when less than ``notice`` remains, ``HoldExpired`` at expiry.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from evergreen.api.delivery import HoldStatus, VersionHold
from evergreen.transitions import EventRecord, EventType

#: How long before expiry people are told.
DEFAULT_NOTICE = timedelta(days=3)


@dataclass(frozen=True)
class HoldsResult:
    status: list[HoldStatus]
    active: list[VersionHold]
    events: list[EventRecord]


def reconcile_holds(
    holds: Sequence[VersionHold],
    previous: Sequence[HoldStatus],
    now: datetime,
    *,
    services: Mapping[str, str] | None = None,
    notice: timedelta = DEFAULT_NOTICE,
) -> HoldsResult:
    """The holds' status at ``now``; ``services`` maps versions to the Service serving them."""
    before = {hold.name: hold for hold in previous}
    statuses: list[HoldStatus] = []
    active: list[VersionHold] = []
    events: list[EventRecord] = []
    for hold in holds:
        old = before.get(hold.name)
        is_active = now < hold.until
        customers = f"{hold.match.header} in {', '.join(hold.match.values)}"
        if is_active:
            active.append(hold)
            if old is None or not old.active or old.version != hold.version:
                events.append(
                    EventRecord(
                        EventType.NORMAL,
                        "HoldActive",
                        f"{hold.name}: {customers} stay on {hold.version} until {hold.until.isoformat()}"
                        + (f" ({hold.reason})" if hold.reason else ""),
                    )
                )
        elif old is not None and old.active:
            events.append(
                EventRecord(
                    EventType.NORMAL,
                    "HoldExpired",
                    f"{hold.name} expired at {hold.until.isoformat()}: {customers} move to the serving "
                    "version; "
                    f"{hold.version} is released unless another hold needs it",
                )
            )
        notified = bool(old and old.expiring_notified and old.expires_at == hold.until)
        if is_active and not notified and hold.until - now <= notice:
            notified = True
            events.append(
                EventRecord(
                    EventType.WARNING,
                    "HoldExpiring",
                    f"{hold.name} expires at {hold.until.isoformat()}: {customers} "
                    f"will move off {hold.version}",
                )
            )
        statuses.append(
            HoldStatus(
                name=hold.name,
                version=hold.version,
                active=is_active,
                expires_at=hold.until,
                served_by=(services or {}).get(hold.version) if is_active else None,
                customers=list(hold.match.values),
                expiring_notified=notified,
            )
        )
    return HoldsResult(statuses, active, events)
