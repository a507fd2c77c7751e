"""The progress bar: what one line says, and silence when the stream is not a terminal."""

from __future__ import annotations

import io

from evergreen.progress import ProgressBar, render


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_a_line_shows_the_count_the_rate_and_the_time_left() -> None:
    line = render("backtest", 2_000, 8_064, 10.0, "evaluations")
    assert line.startswith("backtest [#####-------------------] 2,000/8,064 evaluations")
    assert "200/s" in line and "30s left" in line


def test_a_finished_line_says_how_long_it_took() -> None:
    line = render("backtest", 8_064, 8_064, 125.0, "evaluations")
    assert "[########################]" in line and "in 2m05s" in line and "left" not in line


def test_slow_rates_and_long_waits_read_naturally() -> None:
    line = render("fetching", 1, 40, 4.0, "range queries")
    assert "0.2/s" in line and "2m36s left" in line
    assert "1h23m left" in render("x", 1, 5_000, 1.0, "evaluations")


def test_nothing_is_known_before_the_first_step() -> None:
    assert render("backtest", 0, 100, 0.0, "evaluations").endswith("0/100 evaluations")


def test_a_terminal_gets_redrawn_lines_and_a_final_newline() -> None:
    stream, clock = Terminal(), Clock()
    with ProgressBar("backtest", stream, clock=clock) as bar:
        for done in range(1, 11):
            clock.now += 0.05
            bar(done, 10)
    text = stream.getvalue()
    assert text.startswith("\r") and text.endswith("\n")
    # Redrawn at most every 0.1 s, and always at the end.
    assert 3 <= text.count("\r") <= 8
    assert "10/10 evaluations" in text.splitlines()[-1].split("\r")[-1]


def test_a_pipe_or_a_file_gets_nothing() -> None:
    stream = io.StringIO()
    with ProgressBar("backtest", stream) as bar:
        for done in range(1, 101):
            bar(done, 100)
    assert stream.getvalue() == ""


def test_a_known_total_ends_its_line_when_reached() -> None:
    stream, clock = Terminal(), Clock()
    with ProgressBar("fetching", stream, unit="range queries", fixed_total=True, clock=clock) as fetched:
        fetched(1, 2)
        clock.now += 1
        fetched(2, 2)
        ended = stream.getvalue()
        assert ended.endswith("\n") and "2/2 range queries" in ended
        fetched(2, 2)  # nothing more after the end
    assert stream.getvalue() == ended


def test_a_longer_line_is_wiped_by_the_next() -> None:
    stream, clock = Terminal(), Clock()
    bar = ProgressBar("b", stream, clock=clock)
    bar(1, 1_000_000)
    clock.now += 1
    bar(2, 3)
    first, second = stream.getvalue().split("\r")[1:]
    assert len(second) >= len(first)
