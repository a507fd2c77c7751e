"""Recordings replay exactly what was recorded, and never invent an answer."""

from __future__ import annotations

import asyncio
import math
from datetime import UTC, datetime
from pathlib import Path

import pytest

from evergreen.errors import MetricsUnavailable
from evergreen.signals.recording import RecordedSource, Recorder, Recording
from evergreen.signals.samples import QueryResult, Sample

AT = datetime(2026, 1, 12, 12, 0, tzinfo=UTC)


class StaticSource:
    async def instant(self, query: str, at: datetime, *, field: str) -> QueryResult:
        return QueryResult(query, (Sample({"le": "1", "q": query}, 2.5), Sample({"le": "+Inf"}, math.nan)))


@pytest.mark.parametrize("name", ["rec.json", "rec.json.gz"])
def test_round_trip(tmp_path: Path, name: str) -> None:
    recorder = Recorder(StaticSource())
    asyncio.run(recorder.instant("up", AT, field="spec.kpis[0].query"))
    path = tmp_path / name
    recorder.recording({"kind": "ModelMonitor"}, "a test").save(path)
    loaded = Recording.load(path)
    assert loaded.times == [AT]
    assert loaded.description == "a test"
    replayed = asyncio.run(RecordedSource(loaded).instant("up", AT, field="f"))
    assert replayed.samples[0] == Sample({"le": "1", "q": "up"}, 2.5)
    assert math.isnan(replayed.samples[1].value)


def test_gzip_recordings_are_reproducible(tmp_path: Path) -> None:
    recorder = Recorder(StaticSource())
    asyncio.run(recorder.instant("up", AT, field="f"))
    recorder.recording({}).save(tmp_path / "a.json.gz")
    recorder.recording({}).save(tmp_path / "b.json.gz")
    assert (tmp_path / "a.json.gz").read_bytes() == (tmp_path / "b.json.gz").read_bytes()


def test_unrecorded_query_is_unavailable_not_empty() -> None:
    source = RecordedSource(Recording({}, {}))
    with pytest.raises(MetricsUnavailable, match=r"spec\.kpis"):
        asyncio.run(source.instant("up", AT, field="spec.kpis[0].query"))


def test_foreign_files_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "x.json"
    path.write_text('{"format": "something-else"}')
    with pytest.raises(ValueError, match="not an Evergreen recording"):
        Recording.load(path)
