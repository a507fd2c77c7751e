"""Recordings: the answers a monitor's queries got, saved to a file and replayed later.

``evergreen record`` wraps a live source in a :class:`Recorder`; the demo and ``evergreen
backtest --recording`` read the file back through a :class:`RecordedSource`. Replays run
the exact code a live evaluation runs, only the source differs.
"""

from __future__ import annotations

import gzip
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, cast

from evergreen.errors import MetricsUnavailable
from evergreen.signals.samples import QueryResult, Sample
from evergreen.signals.source import MetricSource

FORMAT = "evergreen.dev/recording/v1"


def _instant_key(at: datetime) -> int:
    # Whole seconds: evaluation times are scheduled on second boundaries.
    return round(at.timestamp())


@dataclass(frozen=True)
class Recording:
    """A monitor manifest and the answers its queries got, per evaluation time."""

    monitor: Mapping[str, Any]
    results: Mapping[tuple[int, str], QueryResult]
    description: str = ""

    @property
    def times(self) -> list[datetime]:
        """Every recorded evaluation time, ascending."""
        return [datetime.fromtimestamp(t, UTC) for t in sorted({t for t, _ in self.results})]

    def save(self, path: Path) -> None:
        entries = [
            {
                "time": datetime.fromtimestamp(t, UTC).isoformat(),
                "query": query,
                "samples": [sample.to_json() for sample in result.samples],
            }
            for (t, query), result in sorted(self.results.items())
        ]
        document = {
            "format": FORMAT,
            "description": self.description,
            "monitor": dict(self.monitor),
            "results": entries,
        }
        text = json.dumps(document, separators=(",", ":"))
        if path.suffix == ".gz":
            # mtime=0 keeps the file byte-identical when re-recorded from the same data.
            path.write_bytes(gzip.compress(text.encode(), mtime=0))
        else:
            path.write_text(text)

    @classmethod
    def load(cls, path: Path) -> Recording:
        raw = path.read_bytes()
        if raw[:2] == b"\x1f\x8b":
            raw = gzip.decompress(raw)
        document = json.loads(raw)
        if document.get("format") != FORMAT:
            raise ValueError(f"{path}: not an Evergreen recording (format {FORMAT!r} expected)")
        results: dict[tuple[int, str], QueryResult] = {}
        for entry in cast(Iterable[dict[str, Any]], document["results"]):
            at = datetime.fromisoformat(entry["time"])
            query = entry["query"]
            results[(_instant_key(at), query)] = QueryResult(
                query, tuple(Sample.from_json(s) for s in entry["samples"])
            )
        return cls(document["monitor"], results, document.get("description", ""))


class RecordedSource:
    """Answers queries from a recording; a query it never saw is 'unavailable', not empty."""

    def __init__(self, recording: Recording) -> None:
        self.recording = recording

    async def instant(self, query: str, at: datetime, *, field: str) -> QueryResult:
        try:
            return self.recording.results[(_instant_key(at), query)]
        except KeyError:
            raise MetricsUnavailable(f"the recording has no answer for {field} at {at.isoformat()}") from None


class Recorder:
    """Passes queries to a live source and keeps every answer."""

    def __init__(self, source: MetricSource) -> None:
        self.source = source
        self.results: dict[tuple[int, str], QueryResult] = {}

    async def instant(self, query: str, at: datetime, *, field: str) -> QueryResult:
        result = await self.source.instant(query, at, field=field)
        self.results[(_instant_key(at), query)] = result
        return result

    def recording(self, monitor: Mapping[str, Any], description: str = "") -> Recording:
        return Recording(monitor, dict(self.results), description)
