"""Benchmark: one evaluation round of the drift statistics, vectorised vs. a scipy loop.

Every monitor has ``features x segments`` histograms of ``buckets`` bounds in two windows.
Each window arrives as the HTTP body of a Prometheus instant-vector answer, written as
Prometheus writes it. One round = for each monitor: turn both bodies into arrays (the
decoder, then ``HistogramSet.from_columns`` with the per-feature totals), align them, and
score every series with the configured method plus the chi-square p-value, one call per
monitor. The same bodies also go through the previous parser (stdlib ``json``, a ``Sample``
per series, ``HistogramSet.from_samples``), timed side by side and checked equal. The same
statistics are then computed series by series with scipy calls on a subset of monitors,
checked equal, and the loop's time is extrapolated linearly to the whole round. Finally,
the number of Prometheus queries one evaluation issues is taken from the query plan and
from ``evaluate()`` itself.

    PYTHONPATH=operator python bench/bench_drift.py --output bench/results/drift.txt
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import platform
import shlex
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime

import numpy as np
import scipy
from scipy import stats
from scipy.spatial import distance

from evergreen.analysis import (
    AlignedHistograms,
    DriftMethod,
    HistogramSet,
    WindowPair,
    align,
    drift_scores,
    representative_points,
)
from evergreen.analysis.statistics import PSI_EPSILON
from evergreen.api.resource import parse_spec
from evergreen.api.spec import ModelMonitorSpec
from evergreen.observation.evaluate import evaluate
from evergreen.observation.plan import plan
from evergreen.signals.decoding import Asked, decode_instant
from evergreen.signals.samples import QueryResult
from evergreen.signals.samples import Sample as SignalSample

#: The statistics target of the issue, CPU seconds per round.
TARGET_SECONDS = 1.0
#: The body-to-arrays target, CPU nanoseconds per bucket sample.
TARGET_NS_PER_SAMPLE = 150
Scores = dict[str, np.ndarray]
METHODS = [method.value for method in DriftMethod]


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


# --- data --------------------------------------------------------------------------------


def bucket_texts(buckets: int) -> list[str]:
    """``le`` texts as a Prometheus client writes them: ``-3``, ``-2.667``, ..., ``+Inf``."""
    return [f"{bound:g}" for bound in np.round(np.linspace(-3, 3, buckets - 1), 3)] + ["+Inf"]


def prometheus_answer(cumulative: np.ndarray, texts: list[str]) -> bytes:
    """The HTTP body of an instant-vector answer, as Prometheus writes it (compact JSON)."""
    features, segments, buckets = cumulative.shape
    values = cumulative.tolist()
    result = [
        {
            "metric": {"feature": f"f{f}", "le": texts[b], "segment": f"s{s}"},
            "value": [1700000000.123, repr(values[f][s][b])],
        }
        for f in range(features)
        for s in range(segments)
        for b in range(buckets)
    ]
    answer = {"status": "success", "data": {"resultType": "vector", "result": result}}
    return json.dumps(answer, separators=(",", ":")).encode()


def todays_parser(body: bytes) -> HistogramSet:
    """The previous path from body to arrays, step by step as the operator took it.

    prometheus-api-client's ``custom_query`` decoded the body with ``json`` and returned
    ``data.result``; the source made a ``Sample`` per series; the observation layer handed
    ``(labels, value)`` tuples to ``HistogramSet.from_samples``.
    """
    result = json.loads(body)["data"]["result"]
    samples = [SignalSample(dict(item.get("metric", {})), float(item["value"][1])) for item in result]
    return HistogramSet.from_samples(
        [(s.labels, s.value) for s in samples], feature_label="feature", segment_labels=["segment"]
    ).with_totals()


ASKED = Asked("sum by (feature, segment, le) (increase(...))", "spec.drift", "bench")


def decoder(body: bytes) -> HistogramSet:
    """The path the operator takes now: the decoder's columns straight into a HistogramSet."""
    answer = decode_instant(body, ASKED)
    return HistogramSet.from_columns(
        answer.columns, answer.values, feature_label="feature", segment_labels=["segment"]
    ).with_totals()


def same_histograms(first: HistogramSet, second: HistogramSet) -> bool:
    return (
        first.keys == second.keys
        and first.upper_bounds.tobytes() == second.upper_bounds.tobytes()
        and np.array_equal(first.cumulative, second.cumulative, equal_nan=True)
        and first.cumulative[~np.isnan(first.cumulative)].tobytes()
        == second.cumulative[~np.isnan(second.cumulative)].tobytes()
    )


def monitor_windows(
    rng: np.random.Generator, features: int, segments: int, buckets: int
) -> tuple[bytes, bytes]:
    """Baseline (7 days) and current (1 hour) answers of one monitor, with some drift.

    Counts are fractional with 0.1 % multiplicative noise per bucket, as ``increase()``
    extrapolation produces (so cumulative counts are slightly non-monotonic at times).
    """
    edges = np.append(np.linspace(-3, 3, buckets - 1), np.inf)
    location = rng.normal(0, 0.3, size=(features, 1, 1))
    shifted = rng.random((features, segments, 1)) < 0.1  # ~10 % of series drift
    segment_sizes = np.array([50_000, 10_000, 2_000, 100, 20][:segments] + [500] * max(0, segments - 5))

    def window(scale: float, shift: np.ndarray) -> np.ndarray:
        probability = stats.norm.cdf(edges[np.newaxis, np.newaxis, :] - location - shift)
        totals = segment_sizes[np.newaxis, :, np.newaxis] * scale
        noise = 1 + rng.normal(0, 1e-3, size=probability.shape)
        cumulative: np.ndarray = probability * totals * noise
        return cumulative

    texts = bucket_texts(buckets)
    baseline = window(1.0, np.zeros((features, segments, 1)))
    current = window(1 / 168, np.where(shifted, 0.5, 0.0))
    return prometheus_answer(baseline, texts), prometheus_answer(current, texts)


# --- the scipy loop ------------------------------------------------------------------------


@dataclass
class Series:
    """One aligned series on its own known bins."""

    baseline: np.ndarray
    current: np.ndarray
    points: np.ndarray


def comparable_series(aligned: AlignedHistograms) -> Iterator[tuple[int, Series]]:
    """Rows with traffic in both windows and at least two known bins."""
    for row in range(len(aligned)):
        known = aligned.known_bounds[row]
        b, c = aligned.baseline[row][known], aligned.current[row][known]
        if b.sum() > 0 and c.sum() > 0 and known.sum() >= 2:
            points = representative_points(aligned.upper_bounds, known[np.newaxis, :])[0][known]
            yield row, Series(b, c, points)


def loop_psi(s: Series) -> float:
    p, q = s.baseline / s.baseline.sum(), s.current / s.current.sum()
    used = (s.baseline + s.current) > 0
    smoothed_p = (p[used] + PSI_EPSILON) / (1 + used.sum() * PSI_EPSILON)
    smoothed_q = (q[used] + PSI_EPSILON) / (1 + used.sum() * PSI_EPSILON)
    return float(np.sum((smoothed_q - smoothed_p) * np.log(smoothed_q / smoothed_p)))


def loop_jensen_shannon(s: Series) -> float:
    return float(distance.jensenshannon(s.baseline, s.current, base=2))


def loop_ks(s: Series) -> float:
    p, q = s.baseline / s.baseline.sum(), s.current / s.current.sum()
    return float(np.max(np.abs(np.cumsum(p) - np.cumsum(q))))


def loop_wasserstein(s: Series) -> float:
    spread = math.sqrt(np.cov(s.points, aweights=s.baseline, bias=True))
    moved = stats.wasserstein_distance(s.points, s.points, s.baseline, s.current)
    return moved / spread if spread > 0 else (math.inf if moved > 0 else 0.0)


def loop_chisquare(s: Series) -> float:
    used = (s.baseline + s.current) > 0
    p, q = s.baseline[used] / s.baseline.sum(), s.current[used] / s.current.sum()
    return math.sqrt(np.sum((p - q) ** 2 / (p + q)) / 2)


def loop_p_value(s: Series) -> float:
    used = (s.baseline + s.current) > 0
    if used.sum() < 2:
        return 1.0
    table = np.vstack([s.baseline[used], s.current[used]])
    return float(stats.chi2_contingency(table, correction=False).pvalue)


LOOPS: dict[str, Callable[[Series], float]] = {
    "psi": loop_psi,
    "jensenshannon": loop_jensen_shannon,
    "ks": loop_ks,
    "wasserstein": loop_wasserstein,
    "chisquare": loop_chisquare,
    "p_value": loop_p_value,
}


def loop_scores(aligned: AlignedHistograms, clock: Clock) -> Scores:
    """Every score and the p-value, series by series, one statistic after the other."""
    scores: Scores = {}
    for name, statistic in LOOPS.items():
        values = np.full(len(aligned), math.nan)
        with clock.phase(name):
            for row, series in comparable_series(aligned):
                values[row] = statistic(series)
        scores[name] = values
    return scores


# --- queries per evaluation ----------------------------------------------------------------


def benchmark_spec() -> ModelMonitorSpec:
    """Feature drift per segment against a window baseline, prediction drift, 1 check, 2 KPIs."""
    return parse_spec(
        {
            "model": "bench",
            "drift": {
                "histogram": "model_feature_value",
                "segmentBy": ["segment"],
                "baseline": {"offset": "7d", "window": "1d"},
            },
            "predictionDrift": {"histogram": "model_prediction_score"},
            "dataQuality": [{"name": "null-rate", "query": "null_rate", "max": 0.05}],
            "kpis": [
                {"name": "precision", "query": "precision", "min": 0.9},
                {"name": "conversion", "query": "conversion", "min": 0.01},
            ],
        }
    )


@dataclass
class SyntheticPrometheus:
    """A MetricSource answering every query: histograms of ``features`` x 4 segments."""

    features: int
    queries: list[str] = field(default_factory=list)

    async def instant(self, query: str, at: datetime, *, field: str) -> QueryResult:
        self.queries.append(query)
        if field == "spec.drift":
            labels = [
                {"feature": f"f{f}", "segment": f"s{s}"} for f in range(self.features) for s in range(4)
            ]
        elif field == "spec.predictionDrift":
            labels = [{}]
        else:
            return QueryResult(query, (SignalSample({}, 0.5),))
        samples = [
            SignalSample({**series, "le": le}, count)
            for series in labels
            for le, count in (("0.5", 40.0), ("1", 90.0), ("+Inf", 100.0))
        ]
        return QueryResult(query, tuple(samples))


def queries_per_evaluation(spec: ModelMonitorSpec, features: Sequence[int]) -> list[tuple[int, int]]:
    """Queries ``evaluate()`` issues for the spec when the family holds ``features`` features."""
    issued = []
    for count in features:
        source = SyntheticPrometheus(count)
        evaluation = asyncio.run(evaluate(spec, source, datetime(2024, 1, 1, tzinfo=UTC), namespace="bench"))
        issued.append((count, evaluation.queries))
    return issued


# --- the round -----------------------------------------------------------------------------


def timed(function: Callable[[], object]) -> float:
    cpu = time.process_time()
    function()
    return time.process_time() - cpu


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
    clock, subset_clock, loop_clock = Clock(), Clock(), Clock()
    aligned_parts: list[AlignedHistograms] = []
    series = samples = body_bytes = 0
    mismatches: list[str] = []
    for monitor in range(args.monitors):
        bodies = monitor_windows(rng, args.features, args.segments, args.buckets)
        samples += 2 * args.features * args.segments * args.buckets
        body_bytes += sum(map(len, bodies))
        with clock.phase("today"):
            previous = [todays_parser(body) for body in bodies]
        with clock.phase("parse"):
            windows = [decoder(body) for body in bodies]
        with clock.phase("decode"):
            for body in bodies:
                decode_instant(body, ASKED)
        if not all(same_histograms(a, b) for a, b in zip(previous, windows, strict=True)):
            mismatches.append(f"monitor {monitor}: decoder")
        with clock.phase("align"):
            aligned = align(*windows)
        scores: Scores = {}
        for method in METHODS:
            with clock.phase(method):
                result = drift_scores(method, aligned)
            scores[method], scores["p_value"] = result.score, result.p_value
        series += len(aligned)
        aligned_parts.append(aligned)
        if monitor < args.loop_monitors:
            for name in ("align", *METHODS):
                subset_clock.cpu[name] = clock.cpu[name]
            reference = loop_scores(aligned, loop_clock)
            for name, values in reference.items():
                if not np.allclose(scores[name], values, rtol=1e-9, atol=1e-12, equal_nan=True):
                    mismatches.append(f"monitor {monitor}: {name}")
    assert not mismatches, f"results differ: {mismatches}"

    batch = AlignedHistograms(
        keys=tuple(key for part in aligned_parts for key in part.keys),
        upper_bounds=aligned_parts[0].upper_bounds,
        baseline=np.concatenate([part.baseline for part in aligned_parts]),
        current=np.concatenate([part.current for part in aligned_parts]),
        baseline_total=np.concatenate([part.baseline_total for part in aligned_parts]),
        current_total=np.concatenate([part.current_total for part in aligned_parts]),
        known_bounds=np.concatenate([part.known_bounds for part in aligned_parts]),
    )
    batch_cpu = timed(lambda: drift_scores(DriftMethod.PSI, batch))
    batch_pair = WindowPair(batch.baseline, batch.current)
    batch_all_cpu = timed(
        lambda: (
            batch_pair.chi_square(),
            batch_pair.psi(),
            batch_pair.jensen_shannon(),
            batch_pair.ks(),
            batch_pair.wasserstein(batch.upper_bounds, batch.known_bounds),
        )
    )
    spec = benchmark_spec()
    planned = plan(spec, "bench").size
    issued = queries_per_evaluation(spec, [5, args.features] if args.features != 5 else [5, 50])

    report = render(
        args, clock, subset_clock, loop_clock, series=series, samples=samples, body_bytes=body_bytes,
        load_before=load_before,
        batch=(len(batch), batch_cpu, batch_all_cpu), planned=planned, issued=issued,
    )  # fmt: skip
    print(report)
    if args.output:
        command = shlex.join(["python", "bench/bench_drift.py", *sys.argv[1:]])
        with open(args.output, "w", encoding="utf-8") as out:
            out.write(f"$ PYTHONPATH=operator {command}\n\n{report}\n")


def render(
    args: argparse.Namespace,
    clock: Clock,
    subset_clock: Clock,
    loop_clock: Clock,
    *,
    series: int,
    samples: int,
    body_bytes: int,
    load_before: float,
    batch: tuple[int, float, float],
    planned: int,
    issued: list[tuple[int, int]],
) -> str:
    """The report: (a) statistics, (b) parsing, (c) the loop ratios, (d) queries."""
    cpu = clock.cpu
    share = args.loop_monitors / args.monitors
    default = DriftMethod.PSI.value
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
        "(a) Statistics per round as the operator runs them: align + the method's score + the",
        "    chi-square p-value, one call per monitor; CPU s summed over the round (target < 1 s).",
        f"    {'method':<20} {'align':>7} {'score+p':>8} {'total':>7}  target",
    ]
    for method in METHODS:
        total = cpu["align"] + cpu[method]
        verdict = "PASS" if total < TARGET_SECONDS else "FAIL"
        name = f"{method} (default)" if method == default else method
        lines.append(f"    {name:<20} {cpu['align']:7.3f} {cpu[method]:8.3f} {total:7.3f}  {verdict} (< 1 s)")
    statistics_cpu = cpu["align"] + cpu[default]
    verdict_b = "PASS" if cpu["parse"] / samples * 1e9 <= TARGET_NS_PER_SAMPLE else "FAIL"
    lines += [
        "",
        "(b) Body to arrays per round, separately: the HTTP bodies Prometheus returned (both windows,",
        f"    {body_bytes / samples:.0f} bytes per bucket sample) to HistogramSets with per-feature totals,",
        "    JSON decoding included; the previous parser and the decoder on the same bodies, same run.",
        f"    {'path':<62} {'CPU s':>7} {'ns/sample':>9}",
        f"    {'previous: json.loads, a Sample per series, from_samples':<62} {cpu['today']:7.3f} "
        f"{cpu['today'] / samples * 1e9:9.0f}",
        f"    {'decoder: msgspec envelope, numpy reader, from_columns':<62} {cpu['parse']:7.3f} "
        f"{cpu['parse'] / samples * 1e9:9.0f}  {verdict_b} (<= {TARGET_NS_PER_SAMPLE} ns)",
        f"    {'  of which the body to columns and values (decode_instant)':<62} {cpu['decode']:7.3f} "
        f"{cpu['decode'] / samples * 1e9:9.0f}",
        f"    ratio previous / decoder: {cpu['today'] / cpu['parse']:.1f}x ; identical HistogramSets "
        "(keys, bounds, counts bit for bit): yes",
        f"    round total with the default method (decoder + statistics): "
        f"{cpu['parse'] + statistics_cpu:.3f} s CPU",
        "",
        f"(c) The same metrics series by series with scipy / numpy calls in a loop, on the first "
        f"{args.loop_monitors} monitors,",
        f"    extrapolated x{1 / share:g}; vectorised = align + score + p-value as in (a). CPU s per round.",
        f"    {'method':<20} {'loop':>9} {'vectorised':>10} {'ratio':>7}",
    ]
    loop_p = loop_clock.cpu["p_value"] / share
    for method in METHODS:
        loop_round = loop_clock.cpu[method] / share + loop_p
        vectorised = (subset_clock.cpu["align"] + subset_clock.cpu[method]) / share
        lines.append(
            f"    {method + ' + p':<20} {loop_round:9.2f} {vectorised:10.3f} {loop_round / vectorised:6.0f}x"
        )
    loop_all = sum(loop_clock.cpu.values()) / share
    vectorised_all = sum(subset_clock.cpu.values()) / share
    loop_default = loop_clock.cpu[default] / share + loop_p
    whole_loop = cpu["parse"] + cpu["align"] + loop_default
    whole = cpu["parse"] + statistics_cpu
    lines += [
        f"    {'all five + p':<20} {loop_all:9.2f} {vectorised_all:10.3f} {loop_all / vectorised_all:6.0f}x",
        f"    whole round with the default method (parse + align + {default} + p): loop-based "
        f"{whole_loop:.1f} s / vectorised {whole:.2f} s = {whole_loop / whole:.0f}x",
        "    vectorised == loop on the subset: yes (rtol 1e-9; every method and the p-value)",
        f"    for scale: {default} + p-value in one call over all {batch[0]:,} series of the round: "
        f"{batch[1]:.3f} s; all five: {batch[2]:.3f} s",
        "",
        "(d) Prometheus queries per evaluation, for a monitor with feature drift (segmentBy one label,",
        "    window baseline), prediction drift, one data-quality check and two KPIs:",
        f"    plan(spec, namespace).size = {planned}",
    ]
    for features, queries in issued:
        lines.append(f"    issued by evaluate() with {features} features x 4 segments: {queries}")
    lines.append(
        "    One query per histogram family per window returns every feature and segment: the count "
        "does not grow with them."
    )
    return "\n".join(lines)


if __name__ == "__main__":
    main()
