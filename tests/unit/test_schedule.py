"""When a monitor is due: new specs at once, then on schedule, invalid specs never by themselves."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from evergreen.api.status import ModelMonitorStatus
from evergreen.controller.reconciler import is_due

NOW = datetime(2026, 1, 12, tzinfo=UTC)


def test_a_new_monitor_is_due() -> None:
    assert is_due(ModelMonitorStatus(), 1, NOW)


def test_a_spec_change_is_due_at_once() -> None:
    status = ModelMonitorStatus(observed_generation=1, next_evaluation_time=NOW + timedelta(hours=1))
    assert is_due(status, 2, NOW)
    assert not is_due(status, 1, NOW)


def test_scheduled_time() -> None:
    status = ModelMonitorStatus(observed_generation=3, next_evaluation_time=NOW)
    assert is_due(status, 3, NOW)
    assert not is_due(status, 3, NOW - timedelta(seconds=1))


def test_an_invalid_spec_waits_for_the_next_generation() -> None:
    status = ModelMonitorStatus(observed_generation=3, next_evaluation_time=None)
    assert not is_due(status, 3, NOW + timedelta(days=1))
    assert is_due(status, 4, NOW)
