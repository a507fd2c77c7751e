"""Benchmark: a 28-day backtest of one monitor at a 5-minute step, against a real Prometheus.

The showcase scenario's incidents (a gradual drift that stays, a day-long unit change, a
segment break that never ends, a KPI drop) stretched to 30 days are backfilled into a real
Prometheus (cached under ``$EVERGREEN_CACHE_DIR``). The suite's monitor is replayed through
:func:`evergreen.backtest.replay` from day 2 to day 30: 8,064 evaluations.

Two ways in the same run:
- **prefetched** (what ``evergreen backtest`` does): each planned query is fetched once per
  span as range queries, evaluations read memory; timed in full, target under 60 s;
- **step by step** (instant queries per evaluation, as before): timed on ``--sample``
  evaluations spread evenly over the span and extrapolated to the span, unless
  ``--full-step-by-step`` (then both replays' decisions are compared too).

    PYTHONPATH=operator python bench/bench_backtest.py --output bench/results/backtest.txt
"""

from __future__ import annotations

import argparse
import asyncio
import math
import os
import platform
import resource
import shlex
import sys
import tempfile
import time
from dataclasses import replace
from datetime import timedelta
from pathlib import Path

from evergreen import backtest
from evergreen.backtest import Step, evaluation_times, summarize
from evergreen.signals.prefetch import PrefetchedSource
from evergreen.signals.prometheus import Endpoint, PrometheusSource
from evergreen.simulation import catalog
from evergreen.simulation.prometheus import PrometheusServer
from evergreen.simulation.scenario import Scenario
from evergreen.simulation.suite import suite_namespace, suite_spec

TARGET_SECONDS = 60.0
DAYS = 28
STEP = timedelta(minutes=5)
#: The baseline (offset 1d, window 1d) needs two days of history before the first evaluation.
LEAD = timedelta(days=2)


def scenario() -> Scenario:
    """The showcase's incidents over 30 days (the segment break lasts to the end)."""
    return replace(catalog.showcase(), name="showcase-30d", duration=LEAD + timedelta(days=DAYS))


def load() -> str:
    one, five, _ = os.getloadavg()
    return f"load average {one:.2f} (1 min), {five:.2f} (5 min)"


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--days", type=int, default=DAYS, help="span replayed (default 28)")
    parser.add_argument(
        "--sample", type=int, default=576, help="step-by-step evaluations timed (default 576, 2 days' worth)"
    )
    parser.add_argument("--full-step-by-step", action="store_true", help="replay the whole span step by step")
    parser.add_argument("--output", type=Path, default=None, help="also write the report here")
    args = parser.parse_args(argv)

    lines: list[str] = []

    def say(text: str = "") -> None:
        print(text, flush=True)
        lines.append(text)

    say("$ PYTHONPATH=operator python bench/bench_backtest.py " + shlex.join(sys.argv[1:]))
    say()
    say("Backtest speed: one monitor, 5-minute step, real Prometheus (bench/bench_backtest.py)")
    say(f"python {platform.python_version()}, {platform.machine()}, cores visible: {os.cpu_count()}")
    say(f"at start: {load()}")
    spec = suite_spec()
    data = scenario()
    start = catalog.START + LEAD
    times = evaluation_times(start, start + timedelta(days=args.days) - STEP, STEP)
    say(
        f"scenario: showcase incidents over {data.duration.days} days; replay {start:%Y-%m-%d} + "
        f"{args.days} days = {len(times):,} evaluations"
    )
    say(
        "monitor: evergreen.simulation.suite.SUITE_MANIFEST "
        "(2 histogram families x 3 windows, 1 check, 3 KPIs)"
    )

    with tempfile.TemporaryDirectory(prefix="bench-backtest-") as workdir:
        began = time.perf_counter()
        server = PrometheusServer.from_scenario(data, Path(workdir))
        say(f"Prometheus with the backfilled history ready in {time.perf_counter() - began:.1f} s")
        with server:
            live = PrometheusSource(Endpoint(url=server.url, timeout_seconds=120))
            namespace = suite_namespace()

            async def prefetched() -> tuple[list[Step], float, float, float, PrefetchedSource]:
                began = time.perf_counter()
                fetched = math.nan

                def count(done: int, total: int) -> None:
                    nonlocal fetched
                    if done == total:
                        fetched = time.perf_counter() - began

                source = await backtest.prefetched(spec, live, times, namespace=namespace, fetched=count)
                assert isinstance(source, PrefetchedSource)
                cpu = time.process_time()
                steps = await backtest.replay(spec, source, times, namespace=namespace, prefetch=False)
                cpu = time.process_time() - cpu
                return steps, fetched, time.perf_counter() - began, cpu, source

            steps, fetch_s, wall, cpu_s, memory = asyncio.run(prefetched())
            rate = len(times) / wall
            say()
            say("prefetched (range queries once per span, a day per chunk, evaluations from memory):")
            failed = len(memory.failures)
            say(
                f"  range queries: all in {fetch_s:6.1f} s after the start, fetched while the first "
                f"days were evaluated ({failed} failed and asked point by point)"
            )
            say(
                f"  evaluations:   CPU of this process {cpu_s:.1f} s, "
                f"{cpu_s / len(times) * 1000:.2f} ms per evaluation"
            )
            say(f"  wall:          {wall:6.1f} s  = {rate:,.0f} evaluations/s")
            say(
                f"  instant queries answered from memory {memory.hits:,}, asked ahead {memory.ahead:,} "
                f"(frozen baselines of open incidents), asked when needed {memory.misses:,}"
            )
            say(f"  peak RSS of the process so far: {peak_rss_mib():,.0f} MiB")
            summary = summarize(steps, spec)
            entered = ", ".join(f"{a.value} {n}" for a, n in sorted(summary.entered.items()))
            say(f"  decisions entered: {entered}")

            sample = times if args.full_step_by_step else times[:: max(len(times) // args.sample, 1)]
            began = time.perf_counter()
            slow = asyncio.run(backtest.replay(spec, live, sample, namespace=namespace, prefetch=False))
            slow_s = time.perf_counter() - began
            slow_rate = len(sample) / slow_s
            say()
            if args.full_step_by_step:
                say("step by step (instant queries per evaluation), the whole span:")
                say(f"  wall:          {slow_s:6.1f} s  = {slow_rate:,.1f} evaluations/s")
                same = [a.decision for a in slow] == [b.decision for b in steps]
                say(f"  decisions identical to the prefetched replay: {'yes' if same else 'NO'}")
                slow_total = slow_s
            else:
                slow_total = len(times) / slow_rate
                say(
                    f"step by step (instant queries per evaluation), timed on {len(sample):,} evaluations "
                    f"spread over the span (every {len(times) // len(sample)}th), extrapolated:"
                )
                say(f"  sample wall:   {slow_s:6.1f} s  = {slow_rate:,.1f} evaluations/s")
                say(f"  whole span:    {slow_total:6.0f} s  (extrapolated, not run)")
            live.close()

    say()
    say(f"at end: {load()}")
    verdict = "PASS" if wall < TARGET_SECONDS else "FAIL"
    say(
        f"{len(times):,} evaluations over {args.days} days: {wall:.1f} s prefetched vs "
        f"{slow_total:.0f} s step by step ({slow_total / wall:.0f}x); "
        f"target < {TARGET_SECONDS:.0f} s: {verdict}"
    )
    if args.output is not None:
        args.output.write_text("\n".join(lines) + "\n")
    return 0 if verdict == "PASS" else 1


if __name__ == "__main__":
    raise SystemExit(main())
