"""Benchmark: the drift statistics of one evaluation round, vectorised vs. a scipy loop.

Every monitor has ``features x segments`` histograms of ``buckets`` bounds in two windows,
arriving as bucket samples the way the observation layer passes them to
``HistogramSet.from_samples``. One round = for each monitor: parse both windows (with the
per-feature totals), align them, and score every series with every drift method (each
score call also computes the chi-square p-value). The same statistics are then computed
series by series with scipy calls on a subset of monitors, checked equal, and the loop's
time is extrapolated linearly to the whole round.

    python bench/bench_drift.py --output bench/results/drift.txt
"""

from __future__ import annotations

import argparse
import math
import os
import platform
import shlex
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import numpy as np
import scipy
from scipy import stats
from scipy.spatial import distance

from evergreen.analysis import (
    AlignedHistograms,
    DriftMethod,
    HistogramSet,
    Sample,
    WindowPair,
    align,
    drift_scores,
    representative_points,
)
from evergreen.analysis.statistics import PSI_EPSILON

Scores = dict[str, np.ndarray]


@dataclass
class Clock:
    """CPU and wall seconds accumulated per phase."""

    cpu: dict[str, float] = field(default_factory=dict)
    wall: dict[str, float] = field(default_factory=dict)

    @contextmanager
    def phase(self, name: str) -> Iterator[None]:
        cpu, wall = time.process_time(), time.perf_counter()
        try:
            yield
        finally:
            self.cpu[name] = self.cpu.get(name, 0.0) + time.process_time() - cpu
            self.wall[name] = self.wall.get(name, 0.0) + time.perf_counter() - wall

    def cpu_of(self, prefix: str) -> float:
        return sum(seconds for name, seconds in self.cpu.items() if name.startswith(prefix))


def bucket_texts(buckets: int) -> list[str]:
    """``le`` texts as a Prometheus client writes them: ``-3``, ``-2.667``, ..., ``+Inf``."""
    return [f"{bound:g}" for bound in np.round(np.linspace(-3, 3, buckets - 1), 3)] + ["+Inf"]


def monitor_windows(
    rng: np.random.Generator, features: int, segments: int, buckets: int
) -> tuple[list[Sample], list[Sample]]:
    """Baseline (7 days) and current (1 hour) samples of one monitor, with some drift.

    Counts are fractional with 0.1 % multiplicative noise per bucket, as ``increase()``
    extrapolation produces (so cumulative counts are slightly non-monotonic at times).
    Every label text is a fresh string, as after decoding a JSON answer.
    """
    edges = np.append(np.linspace(-3, 3, buckets - 1), np.inf)
    cdf = stats.norm.cdf
    location = rng.normal(0, 0.3, size=(features, 1, 1))
    shifted = rng.random((features, segments, 1)) < 0.1  # ~10 % of series drift
    segment_sizes = np.array([50_000, 10_000, 2_000, 100, 20][:segments] + [500] * max(0, segments - 5))

    def window(scale: float, shift: np.ndarray) -> np.ndarray:
        probability = cdf(edges[np.newaxis, np.newaxis, :] - location - shift)
        totals = segment_sizes[np.newaxis, :, np.newaxis] * scale
        noise = 1 + rng.normal(0, 1e-3, size=probability.shape)
        cumulative: np.ndarray = probability * totals * noise
        return cumulative

    baseline = window(1.0, np.zeros((features, segments, 1)))
    current = window(1 / 168, np.where(shifted, 0.5, 0.0))
    texts = bucket_texts(buckets)

    def samples(cumulative: np.ndarray) -> list[Sample]:
        values = cumulative.tolist()
        return [
            ({"feature": f"f{f}", "segment": f"s{s}", "le": str(texts[b])}, values[f][s][b])
            for f in range(features)
            for s in range(segments)
            for b in range(buckets)
        ]

    return samples(baseline), samples(current)


def vectorised(aligned: AlignedHistograms, clock: Clock) -> Scores:
    scores: Scores = {}
    for method in DriftMethod:
        with clock.phase(f"score {method.value} (+ p-value)"):
            result = drift_scores(method, aligned)
        scores[method.value] = result.score
        scores["p_value"] = result.p_value
    return scores


def loop(aligned: AlignedHistograms) -> Scores:
    """The same scores, one series at a time, with scipy and plain numpy."""
    names = [*(method.value for method in DriftMethod), "p_value"]
    scores = {name: np.full(len(aligned), math.nan) for name in names}
    bounds = aligned.upper_bounds
    for row in range(len(aligned)):
        known = aligned.known_bounds[row]
        b, c = aligned.baseline[row][known], aligned.current[row][known]
        if not (b.sum() > 0 and c.sum() > 0) or known.sum() < 2:
            continue
        p, q = b / b.sum(), c / c.sum()
        used = (b + c) > 0
        smoothed_p = (p[used] + PSI_EPSILON) / (1 + used.sum() * PSI_EPSILON)
        smoothed_q = (q[used] + PSI_EPSILON) / (1 + used.sum() * PSI_EPSILON)
        scores["psi"][row] = np.sum((smoothed_q - smoothed_p) * np.log(smoothed_q / smoothed_p))
        scores["jensenshannon"][row] = distance.jensenshannon(b, c, base=2)
        scores["ks"][row] = np.max(np.abs(np.cumsum(p) - np.cumsum(q)))
        points = representative_points(bounds, known[np.newaxis, :])[0][known]
        spread = math.sqrt(np.cov(points, aweights=b, bias=True))
        moved = stats.wasserstein_distance(points, points, b, c)
        scores["wasserstein"][row] = moved / spread if spread > 0 else (math.inf if moved > 0 else 0.0)
        table = np.vstack([b[used], c[used]])
        if used.sum() > 1:
            test = stats.chi2_contingency(table, correction=False)
            scores["p_value"][row] = test.pvalue
        else:
            scores["p_value"][row] = 1.0
        shares = p[used], q[used]
        scores["chisquare"][row] = math.sqrt(np.sum((shares[0] - shares[1]) ** 2 / sum(shares)) / 2)
    return scores


def concatenated(parts: list[AlignedHistograms]) -> AlignedHistograms:
    return AlignedHistograms(
        keys=tuple(key for part in parts for key in part.keys),
        upper_bounds=parts[0].upper_bounds,
        baseline=np.concatenate([part.baseline for part in parts]),
        current=np.concatenate([part.current for part in parts]),
        baseline_total=np.concatenate([part.baseline_total for part in parts]),
        current_total=np.concatenate([part.current_total for part in parts]),
        known_bounds=np.concatenate([part.known_bounds for part in parts]),
    )


def timed(function: Callable[[], object]) -> tuple[float, float]:
    cpu, wall = time.process_time(), time.perf_counter()
    function()
    return time.process_time() - cpu, time.perf_counter() - wall


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--monitors", type=int, default=1000)
    parser.add_argument("--features", type=int, default=50)
    parser.add_argument("--segments", type=int, default=4)
    parser.add_argument("--buckets", type=int, default=20, help="bounds per histogram, +Inf included")
    parser.add_argument("--loop-monitors", type=int, default=20, help="monitors the scipy loop runs on")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--output", help="also write the report (and this command) to this file")
    args = parser.parse_args()
    if not 1 <= args.loop_monitors <= args.monitors:
        parser.error("--loop-monitors must be between 1 and --monitors")

    load_before = os.getloadavg()[0]
    rng = np.random.default_rng(args.seed)
    clock = Clock()
    loop_clock = Clock()
    aligned_parts: list[AlignedHistograms] = []
    subset_stats_cpu = 0.0
    series = samples = 0
    mismatches: list[str] = []
    for monitor in range(args.monitors):
        baseline_samples, current_samples = monitor_windows(rng, args.features, args.segments, args.buckets)
        samples += len(baseline_samples) + len(current_samples)
        with clock.phase("parse both windows + totals"):
            windows = [
                HistogramSet.from_samples(
                    window, feature_label="feature", segment_labels=["segment"]
                ).with_totals()
                for window in (baseline_samples, current_samples)
            ]
        with clock.phase("align"):
            aligned = align(*windows)
        before = clock.cpu_of("score")
        scores = vectorised(aligned, clock)
        series += len(aligned)
        aligned_parts.append(aligned)
        if monitor < args.loop_monitors:
            subset_stats_cpu += clock.cpu_of("score") - before
            with loop_clock.phase("loop"):
                reference = loop(aligned)
            for name, values in reference.items():
                if not np.allclose(scores[name], values, rtol=1e-9, atol=1e-12, equal_nan=True):
                    mismatches.append(f"monitor {monitor}: {name}")
    assert not mismatches, f"vectorised and loop results differ: {mismatches}"

    batch = concatenated(aligned_parts)
    batch_pair = WindowPair(batch.baseline, batch.current)
    batch_cpu, batch_wall = timed(
        lambda: (
            batch_pair.chi_square(),
            batch_pair.psi(),
            batch_pair.jensen_shannon(),
            batch_pair.ks(),
            batch_pair.wasserstein(batch.upper_bounds, batch.known_bounds),
        )
    )
    psi_cpu, psi_wall = timed(lambda: drift_scores(DriftMethod.PSI, batch))

    total_cpu, total_wall = sum(clock.cpu.values()), sum(clock.wall.values())
    loop_cpu = loop_clock.cpu["loop"]
    loop_share = args.loop_monitors / args.monitors
    configured = clock.cpu["score psi (+ p-value)"]
    parse_align = clock.cpu["parse both windows + totals"] + clock.cpu["align"]

    lines = [
        "Drift statistics, one evaluation round (bench/bench_drift.py)",
        f"python {platform.python_version()}, numpy {np.__version__}, scipy {scipy.__version__}, "
        f"{platform.machine()}, cores visible: {len(os.sched_getaffinity(0))}",
        f"monitors {args.monitors} x features {args.features} x segments {args.segments} "
        f"x buckets {args.buckets} (+ a whole-population series per feature)",
        f"series per round {series:,} ; bucket samples parsed {samples:,} (both windows)",
        f"1-minute load average at start / end: {load_before:.2f} / {os.getloadavg()[0]:.2f} "
        "(other processes on the 2 cores slow every figure down)",
        "",
        "Vectorised, per monitor as the operator runs it (CPU s / wall s, summed over the round):",
    ]
    for name in clock.cpu:
        lines.append(f"  {name:<36} {clock.cpu[name]:8.3f}  {clock.wall[name]:8.3f}")
    lines += [
        f"  {'total (parse, align, all five)':<36} {total_cpu:8.3f}  {total_wall:8.3f}",
        f"  {'total (parse, align, psi + p-value)':<36} {parse_align + configured:8.3f}",
        f"  {'statistics only (align + psi + p)':<36} {clock.cpu['align'] + configured:8.3f}",
        "",
        f"Vectorised across the round (one call per method over all {len(batch):,} series):",
        f"  {'all five + p-value':<36} {batch_cpu:8.3f}  {batch_wall:8.3f}",
        f"  {'psi + p-value (drift_scores)':<36} {psi_cpu:8.3f}  {psi_wall:8.3f}",
        "",
        f"scipy loop, series by series, on {args.loop_monitors} monitors, extrapolated x{1 / loop_share:g}:",
        f"  {'loop CPU on the subset':<36} {loop_cpu:8.3f}  {loop_clock.wall['loop']:8.3f}",
        f"  {'loop CPU for the round (extrapolated)':<36} {loop_cpu / loop_share:8.3f}",
        f"  {'vectorised statistics CPU, same subset':<36} {subset_stats_cpu:8.3f}",
        f"  ratio, statistics (all five + p): loop / vectorised per monitor = "
        f"{loop_cpu / subset_stats_cpu:.0f}x",
        f"  ratio, statistics: loop / vectorised across the round = {loop_cpu / loop_share / batch_cpu:.0f}x",
        f"  ratio, whole round incl. parse + align: {(loop_cpu / loop_share + parse_align) / total_cpu:.1f}x",
        "  vectorised == loop on the subset: yes (rtol 1e-9; every method and the p-value)",
    ]
    report = "\n".join(lines)
    print(report)
    if args.output:
        command = shlex.join(["python", "bench/bench_drift.py", *sys.argv[1:]])
        with open(args.output, "w", encoding="utf-8") as out:
            out.write(f"$ PYTHONPATH=operator {command}\n\n{report}\n")


if __name__ == "__main__":
    main()
