"""Command-line values: each parser accepts one documented format and explains a bad value.

argparse turns :class:`argparse.ArgumentTypeError` into ``evergreen <command>: error:
argument --step: ...`` and exit code 2, so every message here says what was given, what is
accepted and gives an example.
"""

from __future__ import annotations

import argparse
import math
import re
from datetime import UTC, datetime, timedelta

from evergreen.api.base import HEADER_NAME_PATTERN, OBJECT_NAME_PATTERN, VERSION_PATTERN
from evergreen.api.durations import format_duration, parse_duration
from evergreen.errors import InputError

#: What ``--at``, ``--start`` and ``--end`` accept, for help texts.
TIME_FORMAT = "RFC 3339 (2026-01-13T05:35:00Z), 'now' or 'now-<duration>' (now-2h)"
#: What duration options accept, for help texts.
DURATION_FORMAT = "a duration such as 90s, 5m, 1h30m, 7d"
#: Prometheus stores no sample before the Unix epoch.
EARLIEST = datetime(1970, 1, 1, tzinfo=UTC)
#: A replay or recording never runs more evaluations than this (a span divided by the step).
MAX_EVALUATIONS = 10_000


def _shown(text: str) -> str:
    return repr(text if len(text) <= 60 else f"{text[:57]}...")


def duration(text: str) -> timedelta:
    """A duration in the spec's notation (``5m``, ``1h30m``); zero is allowed."""
    try:
        return parse_duration(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def positive_duration(text: str) -> timedelta:
    """A duration greater than zero."""
    value = duration(text)
    if value <= timedelta(0):
        raise argparse.ArgumentTypeError(f"{_shown(text)} must be longer than zero, e.g. 5m or 1h30m")
    return value


def timeout(text: str) -> float:
    """Seconds, from a duration (``30s``, ``2m``) or a plain number of seconds (``30``, ``2.5``)."""
    try:
        seconds = float(text)
    except ValueError:
        seconds = duration(text).total_seconds()
    if not math.isfinite(seconds) or seconds <= 0 or seconds > 3600:
        raise argparse.ArgumentTypeError(
            f"{_shown(text)} is not a timeout: use a duration between 1ms and 1h, e.g. 30s or 2m"
        )
    return seconds


def seconds(text: str) -> float:
    """A positive number of seconds (``10``, ``2.5``)."""
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not math.isfinite(value) or value <= 0:
        raise argparse.ArgumentTypeError(f"{_shown(text)} is not a number of seconds above 0, e.g. 10")
    return value


def count(text: str) -> int:
    """A whole number of at least 1."""
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"{_shown(text)} is not a whole number of at least 1, e.g. 10")
    return value


def port(text: str) -> int:
    """A TCP port, or 0 to switch the listener off."""
    try:
        value = int(text)
    except ValueError:
        value = -1
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"{_shown(text)} is not a port: use 1-65535, or 0 to switch it off")
    return value


def url(text: str) -> str:
    """An http(s) base URL."""
    if not re.match(r"^https?://[^\s/]+", text):
        raise argparse.ArgumentTypeError(
            f"{_shown(text)} is not a URL: use http:// or https://, e.g. http://prometheus:9090"
        )
    return text


def _pattern(described: str, pattern: str, max_length: int) -> argparse._TypeFunc:  # type: ignore[name-defined]
    compiled = re.compile(pattern)

    def check(text: str) -> str:
        if len(text) > max_length or not compiled.match(text):
            raise argparse.ArgumentTypeError(f"{_shown(text)} is not {described}")
        return text

    return check


object_name = _pattern(
    "a Kubernetes object name (lowercase letters, digits, '-' and '.'), e.g. fraud-detector",
    OBJECT_NAME_PATTERN,
    253,
)
namespace = _pattern(
    "a namespace name (lowercase letters, digits and '-'), e.g. ml", r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$", 63
)
label_value = _pattern(
    "a label value (at most 63 letters, digits, '-', '_' and '.', starting and ending with a letter "
    "or digit), e.g. evergreen",
    r"^[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$",
    63,
)
version = _pattern("a version (letters, digits, '.', '_' and '-'), e.g. v13", VERSION_PATTERN, 63)


def header(text: str) -> tuple[str, str]:
    """``NAME=VALUE``: an HTTP header sent with every Prometheus query."""
    name, separator, value = text.partition("=")
    name = name.strip()
    if not separator or not re.match(HEADER_NAME_PATTERN, name):
        raise argparse.ArgumentTypeError(f"{_shown(text)} is not NAME=VALUE, e.g. X-Scope-OrgID=team-a")
    return name, value.strip()


def moment(text: str, *, now: datetime | None = None) -> datetime:
    """An evaluation time: RFC 3339, ``now`` or ``now-<duration>``; naive times are UTC."""
    now = now or datetime.now(UTC)
    try:
        if text == "now":
            return now
        if text.startswith("now-"):
            return now - parse_duration(text[4:])
        value = datetime.fromisoformat(text.replace("Z", "+00:00").replace("z", "+00:00"))
        value = value if value.tzinfo else value.replace(tzinfo=UTC)
    except (ValueError, OverflowError):
        raise argparse.ArgumentTypeError(f"{_shown(text)} is not a time: use {TIME_FORMAT}") from None
    if value < EARLIEST:
        raise argparse.ArgumentTypeError(f"{_shown(text)} is before 1970: Prometheus holds no data then")
    return value


def time(text: str) -> datetime:
    """:func:`moment` as an argparse type."""
    return moment(text)


def span(text: str) -> tuple[datetime, datetime]:
    """``START..END``, each a :func:`moment`."""
    first, separator, last = text.partition("..")
    if not separator:
        raise argparse.ArgumentTypeError(
            f"{_shown(text)} is not START..END, e.g. 2026-01-13T05:35:00Z..2026-01-13T06:00:00Z"
        )
    return moment(first), moment(last)


def check_evaluations(flag: str, start: datetime, end: datetime, step: timedelta, already: int = 0) -> int:
    """How many evaluations ``start..end`` every ``step`` makes; an InputError above the limit."""
    if end < start:
        raise InputError(flag, f"the end ({end.isoformat()}) is before the start ({start.isoformat()})")
    if step <= timedelta(0):
        raise InputError("--step", "must be longer than zero, e.g. 5m")
    total = int((end - start) / step) + 1 + already
    if total > MAX_EVALUATIONS:
        needed = (end - start) / max(MAX_EVALUATIONS - 1 - already, 1)
        at_least = format_duration(timedelta(seconds=math.ceil(needed.total_seconds())))
        raise InputError(
            flag,
            f"{format_duration(end - start)} every {format_duration(step)} is {total:,} evaluations"
            + (f" (with {already:,} others)" if already else "")
            + f"; at most {MAX_EVALUATIONS:,} are allowed: use --step {at_least} or more, or a shorter span",
        )
    return total


def check_sampled_evaluations(flag: str, total: int, step: timedelta, interval: timedelta) -> None:
    """A sampled replay (``step`` above ``interval``) adds the evaluations persistence needs."""
    if total > MAX_EVALUATIONS:
        raise InputError(
            flag,
            f"every {format_duration(step)}, each sample with the evaluations persistence needs "
            f"at spec.interval ({format_duration(interval)}) before it, is {total:,} evaluations; "
            f"at most {MAX_EVALUATIONS:,} are allowed: use a longer --step or a shorter span",
        )
