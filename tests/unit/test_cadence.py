"""Evaluation slots: a fixed phase per monitor, the next slot at least half an interval on."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from evergreen.controller.cadence import next_slot, phase

MINUTE = timedelta(minutes=1)
NOW = datetime(2026, 12, 8, 1, 0, 30, tzinfo=UTC)


def test_the_phase_is_stable_and_within_the_interval() -> None:
    assert phase("uid-1", MINUTE) == phase("uid-1", MINUTE)
    offsets = [phase(f"uid-{i}", MINUTE) for i in range(2000)]
    assert all(timedelta(0) <= offset < MINUTE for offset in offsets)
    # Spread evenly: every tenth of the interval holds about a tenth of the fleet.
    tenths = [sum(1 for o in offsets if i * MINUTE / 10 <= o < (i + 1) * MINUTE / 10) for i in range(10)]
    assert min(tenths) > 150 and max(tenths) < 250


def test_on_its_slot_the_next_evaluation_is_one_interval_later() -> None:
    offset = timedelta(seconds=30)
    assert next_slot(NOW, MINUTE, offset) == NOW + MINUTE
    # Late by less than half an interval: still the next slot, the schedule does not drift.
    assert next_slot(NOW + timedelta(seconds=20), MINUTE, offset) == NOW + MINUTE


def test_off_its_slot_the_next_evaluation_moves_onto_it() -> None:
    slot = NOW.replace(second=10)
    assert next_slot(NOW, MINUTE, timedelta(seconds=10)) == slot + MINUTE  # 40 s on
    assert next_slot(NOW, MINUTE, timedelta(seconds=59)) == NOW.replace(second=59) + MINUTE  # 89 s on
    for seconds in range(0, 60, 7):
        after = next_slot(NOW, MINUTE, timedelta(seconds=seconds)) - NOW
        assert MINUTE / 2 <= after < MINUTE * 3 / 2


def test_long_intervals_keep_their_slot_across_days() -> None:
    day = timedelta(days=1)
    offset = phase("nightly", day)
    first = next_slot(NOW, day, offset)
    assert next_slot(first, day, offset) == first + day
    assert (first - datetime(1970, 1, 1, tzinfo=UTC)) % day == offset
