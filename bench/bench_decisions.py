"""Benchmark: the decision suite, Evergreen's decisions against a naive retraining policy.

Every single-incident catalog scenario (:mod:`evergreen.simulation.suite`) is backfilled into
a real Prometheus (cached) and replayed at the suite monitor's interval through
:func:`evergreen.backtest.replay`, the code the operator runs, from ``--before`` the incident
to the end of the scenario. Each replay is judged against its expectation: the decision
reached, the detection delay in evaluations, retrains and holds entered, and anything that
must never happen. A naive policy, "retrain whenever any feature's whole-population PSI
exceeds 0.2", is computed from the very same evaluations and counted side by side.

    PYTHONPATH=operator python bench/bench_decisions.py --output bench/results/decisions.txt
"""

from __future__ import annotations

import argparse
import math
import os
import platform
import shlex
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

from evergreen import backtest
from evergreen.api.decisions import Action
from evergreen.api.durations import parse_duration
from evergreen.api.spec import DriftMethod, ModelMonitorSpec
from evergreen.backtest import Step, evaluation_times
from evergreen.simulation import backfill, catalog
from evergreen.simulation.suite import (
    EXPECTATIONS,
    Category,
    Expectation,
    Verdict,
    expectation_spec,
    judge,
    replay_scenario,
    scenario_of,
    suite_spec,
)

#: The naive policy's trigger: any feature's whole-population PSI above this.
NAIVE_THRESHOLD = 0.2


@dataclass(frozen=True)
class NaiveOutcome:
    """What "retrain whenever any population PSI > threshold" would have done."""

    #: Rising edges: consecutive triggering evaluations count as one retrain.
    retrains: int
    #: Evaluations at which it triggered.
    triggered: int
    first: datetime | None


def naive_retrains(steps: Sequence[Step], threshold: float = NAIVE_THRESHOLD) -> NaiveOutcome:
    """The naive policy over the replay's own evaluations (PSI of the ``*`` rows)."""
    retrains = triggered = 0
    first: datetime | None = None
    previous = False
    for step in steps:
        drift = step.evaluation.drift
        firing = False
        if drift is not None:
            scores = drift.scores
            firing = any(
                key.is_population and not math.isnan(score) and score > threshold
                for key, score in zip(scores.keys, scores.score.tolist(), strict=True)
            )
        if firing:
            triggered += 1
            first = first or step.time
            retrains += not previous
        previous = firing
    return NaiveOutcome(retrains, triggered, first)


@dataclass(frozen=True)
class ScenarioRun:
    """One scenario replayed and judged."""

    verdict: Verdict
    naive: NaiveOutcome
    steps: list[Step]
    backfill_seconds: float
    backfill_cached: bool
    replay_seconds: float


def run_scenario(
    expectation: Expectation,
    spec: ModelMonitorSpec,
    *,
    before: timedelta,
    after: timedelta | None,
    step: timedelta,
    concurrency: int,
    cache_dir: Path | None,
) -> ScenarioRun:
    """Backfill, serve, replay and judge one scenario."""
    scenario = scenario_of(expectation)
    end = scenario.end if after is None else min(scenario.end, catalog.INCIDENT_AT + after)
    times = evaluation_times(catalog.INCIDENT_AT - before, end, step)
    started = time.perf_counter()
    history = backfill(scenario, cache_dir)
    backfill_seconds = time.perf_counter() - started
    with tempfile.TemporaryDirectory(prefix=f"bench-{scenario.name}-") as workdir:
        started = time.perf_counter()
        steps = replay_scenario(
            scenario, spec, times, Path(workdir) / "prometheus", cache_dir=cache_dir, concurrency=concurrency
        )
        replay_seconds = time.perf_counter() - started
    return ScenarioRun(
        verdict=judge(expectation, scenario, spec, steps),
        naive=naive_retrains(steps),
        steps=steps,
        backfill_seconds=backfill_seconds,
        backfill_cached=history.cached,
        replay_seconds=replay_seconds,
    )


# --- the report ----------------------------------------------------------------------------


def _delay(verdict: Verdict) -> str:
    if verdict.delay is None:
        return "-"
    return str(verdict.delay)


def _naive_delay(run: ScenarioRun) -> str:
    verdict = run.verdict
    if run.naive.first is None or verdict.visible_index is None:
        return "-"
    first = next(i for i, step in enumerate(run.steps) if step.time == run.naive.first)
    return str(first - verdict.visible_index)


def table(runs: Sequence[ScenarioRun]) -> list[str]:
    """One row per scenario: Evergreen's outcome, then the naive policy's."""
    header = (
        f"{'scenario':<27} {'category':<9} {'expected':<42} {'result':<6} {'delay':>5} "
        f"{'retrains':>8} {'holds':>5} {'never':>5} | {'naive retrains':>14} {'delay':>5}"
    )
    lines = [header, "-" * len(header)]
    for run in runs:
        v, e = run.verdict, run.verdict.expectation
        expected = e.label + (f" [{', '.join(e.scope)}]" if e.scope else "")
        never = sum(1 for text in v.violations if "must never happen" in text)
        lines.append(
            f"{e.name:<27} {e.category.value:<9} {expected:<42} {'right' if v.right else 'WRONG':<6} "
            f"{_delay(v):>5} {v.retrains:>8} {v.holds:>5} {never:>5} | {run.naive.retrains:>14} "
            f"{_naive_delay(run):>5}"
        )
    return lines


def summary(runs: Sequence[ScenarioRun]) -> list[str]:
    """The headline figures."""
    right = sum(run.verdict.right for run in runs)
    quiet = [run for run in runs if run.verdict.expectation.category.must_not_retrain]
    categories = [
        c.value
        for c in Category
        if c.must_not_retrain and any(r.verdict.expectation.category is c for r in quiet)
    ]
    unwanted = [run for run in runs if run.verdict.expectation.action is not Action.RETRAIN]
    wanted = [run for run in runs if run.verdict.expectation.action is Action.RETRAIN]
    segment = next((run.verdict for run in runs if run.verdict.expectation.scenario == "segment_break"), None)
    segment_text = "n/a"
    if segment is not None:
        unit = "evaluation" if segment.delay == 1 else "evaluations"
        segment_text = f"{_delay(segment)} {unit} (target <= {segment.expectation.within})"
    return [
        f"Retrains where none is wanted (every scenario not expecting Retrain): Evergreen "
        f"{sum(r.verdict.retrains for r in unwanted)}, naive {sum(r.naive.retrains for r in unwanted)}; "
        f"scenarios expecting Retrain left without one: Evergreen "
        f"{sum(r.verdict.retrains == 0 for r in wanted)}, naive {sum(r.naive.retrains == 0 for r in wanted)} "
        f"of {len(wanted)}.",
        "",
        f"scenarios decided right: {right}/{len(runs)}; "
        f"retrains on {'/'.join(categories)} scenarios: Evergreen {sum(r.verdict.retrains for r in quiet)} "
        f"vs naive {sum(r.naive.retrains for r in quiet)}; "
        f"segment-break detection delay: {segment_text}",
    ]


def report(args: argparse.Namespace, spec: ModelMonitorSpec, runs: Sequence[ScenarioRun], wall: float) -> str:
    step = args.step or spec.interval
    span_end = "end of scenario" if args.after is None else f"incident + {args.after}"
    lines = [
        "Decision suite: Evergreen's decisions per scenario, and a naive policy (bench/bench_decisions.py)",
        f"python {platform.python_version()}, {platform.machine()}, "
        f"cores visible: {len(os.sched_getaffinity(0))}",
        f"monitor: evergreen.simulation.suite.SUITE_MANIFEST (psi 0.1/0.25, window 1h, baseline 1d/1d, "
        f"persistence {spec.policy.persistence.needed} of {spec.policy.persistence.of})",
        f"replay: incident - {args.before} .. {span_end}, every {step} "
        f"({sum(len(r.steps) for r in runs)} evaluations in all); "
        f"naive policy: retrain when any feature's whole-population PSI > {NAIVE_THRESHOLD}",
        "right = the expected decision reached once the incident is visible and kept until it resolves "
        "(stable: at every",
        "evaluation; short_spike: at every evaluation once it has resolved and left the window), and "
        "nothing that must never happen",
        "delay = evaluations from the first one whose window holds affected data to the first with the "
        "expected decision",
        "never = violations of what must never happen (see below); naive retrains count rising edges",
        "",
        *table(runs),
        "",
    ]
    wrong = [run for run in runs if run.verdict.violations]
    if wrong:
        lines.append("Violations:")
        for run in wrong:
            for text in run.verdict.violations:
                lines.append(f"  {run.verdict.expectation.name}: {text}")
        lines.append("")
    lines.append("Timelines (decision changes only):")
    for run in runs:
        lines += ["", f"== {run.verdict.expectation.name} ==", backtest.render(run.steps)]
    lines += ["", "Timings:"]
    for run in runs:
        how = "cached" if run.backfill_cached else "built"
        lines.append(
            f"  {run.verdict.expectation.name:<27} backfill {run.backfill_seconds:6.2f} s ({how}), "
            f"serve + replay {run.replay_seconds:6.2f} s for {len(run.steps)} evaluations"
        )
    lines += [f"  total wall {wall:.1f} s", "", *summary(runs)]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--before", default="2h", help="replay from this long before the incident")
    parser.add_argument(
        "--after", default=None, help="replay until this long after the incident (default: scenario end)"
    )
    parser.add_argument("--step", default=None, help="evaluation step (default: the monitor's interval)")
    parser.add_argument("--scenario", action="append", help="only this scenario (repeatable)")
    parser.add_argument("--concurrency", type=int, default=8, help="evaluations in flight inside replay")
    parser.add_argument(
        "--cache-dir", type=Path, default=None, help="backfill cache (default: $EVERGREEN_CACHE_DIR)"
    )
    parser.add_argument("--output", type=Path, help="also write the report (and this command) to this file")
    args = parser.parse_args(argv)

    spec = suite_spec()
    if spec.drift is None or spec.drift.method is not DriftMethod.PSI:
        parser.error("the naive policy reads PSI: the suite monitor must use method psi")
    expectations = [e for e in EXPECTATIONS if not args.scenario or e.name in args.scenario]
    if args.scenario and len(expectations) != len(set(args.scenario)):
        known = ", ".join(e.name for e in EXPECTATIONS)
        parser.error(f"unknown scenario in {args.scenario}; known: {known}")
    step = parse_duration(args.step or spec.interval)
    after = None if args.after is None else parse_duration(args.after)
    started = time.perf_counter()
    runs = []
    for expectation in expectations:
        run = run_scenario(
            expectation,
            expectation_spec(expectation),
            before=parse_duration(args.before),
            after=after,
            step=step,
            concurrency=args.concurrency,
            cache_dir=args.cache_dir,
        )
        print(f"{expectation.name}: {'right' if run.verdict.right else 'WRONG'}", file=sys.stderr)
        runs.append(run)
    text = report(args, spec, runs, time.perf_counter() - started)
    print(text)
    if args.output:
        command = shlex.join(
            ["python", "bench/bench_decisions.py", *(sys.argv[1:] if argv is None else argv)]
        )
        args.output.write_text(f"$ PYTHONPATH=operator {command}\n\n{text}\n", encoding="utf-8")
    return 0 if all(run.verdict.right for run in runs) else 1


if __name__ == "__main__":
    sys.exit(main())
