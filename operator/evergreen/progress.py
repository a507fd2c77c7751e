"""A one-line progress bar for long commands, drawn on a terminal and silent anywhere else.

``evergreen backtest`` and ``evergreen record`` can run for a minute; on a terminal they show
how far they are, how fast they go and how long is left. Piped into a file or a CI log, a
bar redrawn with carriage returns is noise, so nothing is written there.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from types import TracebackType
from typing import Self, TextIO

#: Redraw at most this often (seconds): drawing costs more than an evaluation.
REDRAW_EVERY = 0.1
WIDTH = 24


def _duration(seconds: float) -> str:
    """``42s``, ``3m05s``, ``1h02m``."""
    whole = max(round(seconds), 0)
    if whole < 60:
        return f"{whole}s"
    minutes, seconds_left = divmod(whole, 60)
    if minutes < 60:
        return f"{minutes}m{seconds_left:02d}s"
    hours, minutes_left = divmod(minutes, 60)
    return f"{hours}h{minutes_left:02d}m"


def render(label: str, done: int, total: int, elapsed: float, unit: str) -> str:
    """One line: label, bar, ``done/total unit``, rate, and time left (once a rate is known)."""
    total = max(total, done, 1)
    filled = int(WIDTH * done / total)
    bar = "#" * filled + "-" * (WIDTH - filled)
    line = f"{label} [{bar}] {done:,}/{total:,} {unit}"
    if done and elapsed > 0:
        rate = done / elapsed
        line += f"  {rate:,.0f}/s" if rate >= 10 else f"  {rate:.1f}/s"
        line += f"  {_duration((total - done) / rate)} left" if done < total else f"  in {_duration(elapsed)}"
    return line


class ProgressBar:
    """``bar(done, total)`` redraws the line; leaving the ``with`` block ends it, and so does
    reaching ``total`` when ``total`` is known from the start (``fixed_total``).

    ``enabled`` defaults to whether ``stream`` is a terminal.
    """

    def __init__(
        self,
        label: str,
        stream: TextIO,
        *,
        unit: str = "evaluations",
        enabled: bool | None = None,
        fixed_total: bool = False,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.label = label
        self.stream = stream
        self.unit = unit
        self.enabled = stream.isatty() if enabled is None else enabled
        self.fixed_total = fixed_total
        self.clock = clock
        self.started = clock()
        self._drawn_at: float | None = None
        self._last: tuple[int, int] | None = None
        self._width = 0
        self._ended = False

    def __call__(self, done: int, total: int) -> None:
        self._last = (done, total)
        if not self.enabled or self._ended:
            return
        now = self.clock()
        if self._drawn_at is not None and now - self._drawn_at < REDRAW_EVERY and done < total:
            return
        self._draw(done, total, now)
        if self.fixed_total and done >= total:
            self._end()

    def _end(self) -> None:
        self.stream.write("\n")
        self.stream.flush()
        self._ended = True

    def _draw(self, done: int, total: int, now: float) -> None:
        line = render(self.label, done, total, now - self.started, self.unit)
        # Pad over what a longer previous line left behind.
        self.stream.write("\r" + line.ljust(self._width))
        self.stream.flush()
        self._width = len(line)
        self._drawn_at = now

    def __enter__(self) -> Self:
        self.started = self.clock()
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        if not self.enabled or self._drawn_at is None or self._ended:
            return
        if self._last is not None and kind is None:
            self._draw(*self._last, self.clock())  # the final count, even if throttled
        self._end()
