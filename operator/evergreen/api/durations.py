"""Durations in the Prometheus notation (``90s``, ``5m``, ``1h30m``, ``7d``, ``2w``).

The same text is used in the spec, in PromQL range selectors and in the CRD's pattern, so a
duration that the API server accepts is one Prometheus accepts too: units largest first, each
at most once. Every part has a bounded number of digits, so the longest duration (about 477
years) can be subtracted from any evaluation time without overflowing.
"""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Annotated

from pydantic import AfterValidator, Field

_UNITS = {"w": 604800, "d": 86400, "h": 3600, "m": 60, "s": 1, "ms": 0.001}
#: Digits allowed per unit: 9999w + 99999d + ... stays far from datetime's limits.
_DIGITS = {"w": 4, "d": 5, "h": 5, "m": 5, "s": 5, "ms": 5}

#: The CRD pattern (and the only syntax rule): ``<integer><unit>`` parts, largest unit first.
DURATION_PATTERN = "^" + "".join(f"([0-9]{{1,{n}}}{unit})?" for unit, n in _DIGITS.items()) + "$"
#: The longest text the pattern allows (the CRD's maxLength, which also bounds CEL costs).
DURATION_MAX_LENGTH = sum(n + len(unit) for unit, n in _DIGITS.items())
_PARTS = re.compile("^" + "".join(f"(?:([0-9]{{1,{n}}}){unit})?" for unit, n in _DIGITS.items()) + "$")
_SYNTAX = (
    "use an integer and a unit, e.g. 90s, 5m, 1h30m, 7d; units w, d, h, m, s, ms, largest first, "
    "each at most once, up to 4 digits for w and 5 for the others"
)


def parse_duration(text: str) -> timedelta:
    """Parse ``1h30m`` into a timedelta; raise ValueError with examples of what is accepted."""
    match = _PARTS.match(text) if isinstance(text, str) and text else None
    if match is None:
        shown = text if len(text) <= 40 else f"{text[:37]}..."
        raise ValueError(f"{shown!r} is not a duration: {_SYNTAX}")
    seconds = sum(
        int(count) * size for count, size in zip(match.groups(), _UNITS.values(), strict=True) if count
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
#: The pattern is checked by ``_check`` (for a message with examples) and published in the schema.
Duration = Annotated[
    str,
    Field(json_schema_extra={"pattern": DURATION_PATTERN, "minLength": 2, "maxLength": DURATION_MAX_LENGTH}),
    AfterValidator(_check),
]
