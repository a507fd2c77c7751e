"""The one interface the evaluation reads metrics through: live, recorded, or recording."""

from __future__ import annotations

from datetime import datetime
from typing import Protocol

from evergreen.signals.samples import QueryResult


class MetricSource(Protocol):
    """Anything that answers PromQL instant queries at a given time."""

    async def instant(self, query: str, at: datetime, *, field: str) -> QueryResult:
        """Evaluate ``query`` at ``at``. ``field`` names the spec field that asked, for errors.

        Raises ``MetricsUnavailable`` when the source cannot answer and ``QueryRejected``
        when the query itself is invalid.
        """
        ...
