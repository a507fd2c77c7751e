"""How long a review report of a month takes to draw, and how large the page is.

A synthetic month at a 5-minute interval (8,640 evaluations) of a large monitor: 50 features ×
4 segments plus totals (250 drift series) and 5 prediction series, 4 KPIs, 4 data-quality checks
and a decision change every few hours. Each figure is timed on its own, then the whole page.

    PYTHONPATH=operator python bench/bench_report.py --output bench/results/report.txt
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np

from evergreen.api.status import CheckState
from evergreen.review import charts, render
from evergreen.review.history import CheckSeries, DriftSeries, MonitorHistory, Period, Thresholds

ACTIONS = ["NoAction", "Watch", "HoldForDataQuality", "Retrain", "Escalate"]


def synthetic_month(evaluations: int, features: int, segments: int, seed: int = 7) -> MonitorHistory:
    rng = np.random.default_rng(seed)
    start = datetime(2026, 11, 1, tzinfo=UTC)
    times = tuple(start + timedelta(minutes=5 * i) for i in range(evaluations))
    drift = []
    for feature in range(features):
        for segment in ["*", *(f"segment=s{s}" for s in range(segments))]:
            walk = np.abs(np.cumsum(rng.normal(0, 0.004, evaluations)))
            scores = tuple(None if rng.random() < 0.01 else float(v) for v in walk)
            drift.append(DriftSeries("feature", f"feature_{feature:02d}", segment, scores))
    for segment in ["*", *(f"segment=s{s}" for s in range(segments))]:
        walk = np.abs(np.cumsum(rng.normal(0, 0.002, evaluations)))
        drift.append(DriftSeries("prediction", "prediction", segment, tuple(float(v) for v in walk)))

    def check(name: str, low: float | None, high: float | None, centre: float) -> CheckSeries:
        values = centre + np.cumsum(rng.normal(0, 0.002, evaluations))
        states = tuple(
            CheckState.BREACHED
            if (low is not None and v < low) or (high is not None and v > high)
            else CheckState.OK
            for v in values
        )
        return CheckSeries(
            name,
            states,
            tuple(float(v) for v in values),
            (low,) * evaluations,
            (high,) * evaluations,
        )

    periods = []
    at = 0
    while at < evaluations:
        length = int(rng.integers(12, 120))
        end = times[at + length] if at + length < evaluations else None
        action = ACTIONS[int(rng.integers(0, len(ACTIONS)))]
        periods.append(Period(times[at], end, action, f"{action}Reason", f"{action} for a while"))
        at += length
    return MonitorHistory(
        title="Backtest of ModelMonitor bench/large",
        subtitle="synthetic month",
        times=times,
        unavailable=frozenset(times[i] for i in range(0, evaluations, 997)),
        periods=tuple(periods),
        thresholds={
            "feature": Thresholds("psi", 0.1, 0.25),
            "prediction": Thresholds("jensenshannon", 0.05, 0.1),
        },
        drift=tuple(drift),
        kpis=tuple(check(f"kpi_{i}", 0.8, None, 0.9) for i in range(4)),
        data_quality=tuple(check(f"check_{i}", None, 0.05, 0.01) for i in range(4)),
        summary=(("Evaluations", str(evaluations)),),
    )


def timed(label: str, draw: Callable[[], str], lines: list[str]) -> str:
    started = time.perf_counter()
    text = draw()
    seconds = time.perf_counter() - started
    lines.append(f"  {label:<28} {seconds:7.2f} s  {len(text) / 1e6:6.2f} MB")
    return text


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--evaluations", type=int, default=8640)
    parser.add_argument("--features", type=int, default=50)
    parser.add_argument("--segments", type=int, default=4)
    parser.add_argument("--output", type=Path, default=None)
    args = parser.parse_args()
    history = synthetic_month(args.evaluations, args.features, args.segments)
    lines = [
        "$ PYTHONPATH=operator python bench/bench_report.py " + " ".join(sys.argv[1:]),
        f"load average at start: {os.getloadavg()[0]:.2f}",
        f"{len(history.times)} evaluations, {len(history.drift)} drift series, "
        f"{len(history.periods)} decisions, {len(history.kpis)} KPIs, {len(history.data_quality)} checks",
        "",
        "figure                          time      size",
    ]
    timed("decision timeline", lambda: charts.decision_timeline(history), lines)
    timed("drift heat map", lambda: charts.drift_heatmap(history), lines)
    timed("KPI lines", lambda: charts.kpi_lines(history), lines)
    timed("data-quality strip", lambda: charts.data_quality_strip(history), lines)
    timed("whole page", lambda: render(history, generated=datetime.now(UTC)), lines)
    lines.append(f"load average at end: {os.getloadavg()[0]:.2f}")
    text = "\n".join(lines) + "\n"
    print(text, end="")
    if args.output:
        args.output.write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
