"""Durations in the Prometheus notation (``90s``, ``5m``, ``1h30m``, ``7d``, ``2w``).

The same text is used in the spec, in PromQL range selectors and in the CRD's pattern, so a
duration that the API server accepts is one Prometheus accepts too.
"""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Annotated

from pydantic import AfterValidator, Field

_UNITS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
_PART = re.compile(r"(\d+)(ms|s|m|h|d|w)")

#: The CRD pattern: one or more ``<integer><unit>`` parts, largest unit first by convention.
DURATION_PATTERN = r"^([0-9]+(ms|s|m|h|d|w))+$"


def parse_duration(text: str) -> timedelta:
    """Parse ``1h30m`` into a timedelta; raise ValueError naming the accepted units."""
    position = 0
    seconds = 0.0
    for match in _PART.finditer(text):
        if match.start() != position:
            break
        seconds += int(match.group(1)) * _UNITS[match.group(2)]
        position = match.end()
    if position != len(text) or not text:
        raise ValueError(
            f"{text!r} is not a duration: use integers with units ms, s, m, h, d, w (e.g. 90s, 1h30m, 7d)"
        )
    return timedelta(seconds=seconds)


def format_duration(value: timedelta) -> str:
    """Render a timedelta in the same notation, exact to the millisecond (``1h30m``, ``7d``)."""
    millis = round(value.total_seconds() * 1000)
    if millis <= 0:
        return "0s"
    parts = []
    for unit, size in (
        ("w", 604800000),
        ("d", 86400000),
        ("h", 3600000),
        ("m", 60000),
        ("s", 1000),
        ("ms", 1),
    ):
        count, millis = divmod(millis, size)
        if count:
            parts.append(f"{count}{unit}")
    return "".join(parts)


def _check(text: str) -> str:
    parse_duration(text)
    return text


#: A duration field: validated on load, kept as text so status and PromQL show what the user wrote.
Duration = Annotated[str, Field(pattern=DURATION_PATTERN), AfterValidator(_check)]
