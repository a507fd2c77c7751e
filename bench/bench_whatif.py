"""Benchmark: what-if over the built-in scenarios, every retraining policy priced on one history each.

Each four-day catalog scenario is backfilled into a real Prometheus (cached) and replayed once
with ``examples/scenario-monitor.yaml`` (the decision suite's monitor with retraining
guardrails and a cost), from ``--before`` the incident to the end of the scenario, then priced
under every policy with :func:`evergreen.whatif.compare` -- exactly what

    evergreen backtest -f examples/scenario-monitor.yaml --scenario NAME \\
        --start INCIDENT-2h --end END --compare POLICIES

prints for one scenario. The report gives a total per policy over all scenarios, then each
scenario's table, then the assumption every number rests on.

    PYTHONPATH=operator python bench/bench_whatif.py --output bench/results/whatif.txt
"""

from __future__ import annotations

import argparse
import os
import platform
import shlex
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

from evergreen import whatif
from evergreen.api.durations import parse_duration
from evergreen.api.manifest import load_manifest
from evergreen.api.spec import ModelMonitorSpec
from evergreen.backtest import evaluation_times
from evergreen.simulation import catalog
from evergreen.simulation.suite import replay_scenario

MONITOR = Path(__file__).parents[1] / "examples" / "scenario-monitor.yaml"
POLICIES = "monitor,every=12h,every=1d,every=7d,every=30d,naive-psi=0.2"
HOUR = timedelta(hours=1)


@dataclass(frozen=True)
class ScenarioComparison:
    name: str
    comparison: whatif.Comparison
    seconds: float


def run(
    name: str, spec: ModelMonitorSpec, policies: str, before: timedelta, cache_dir: Path | None
) -> ScenarioComparison:
    scenario = catalog.scenario(name)
    times = evaluation_times(catalog.INCIDENT_AT - before, scenario.end, parse_duration(spec.interval))
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix=f"whatif-{name}-") as workdir:
        steps = replay_scenario(scenario, spec, times, Path(workdir) / "prometheus", cache_dir=cache_dir)
    assumptions = whatif.assumptions_for(spec, None)
    comparison = whatif.compare(spec, steps, whatif.parse_policies(policies), assumptions)
    return ScenarioComparison(name, comparison, time.perf_counter() - started)


def totals(results: Sequence[ScenarioComparison]) -> list[str]:
    """Per policy, summed over every scenario."""
    header = (
        f"{'policy':<16} {'retrains':>8} {'scoped':>6} {'unscoped':>8} {'cost':>6} {'KPI outside (h)':>15} "
        f"{'KPI series-h':>12} {'incidents held':>14} {'retrained on':>12}"
    )
    lines = [header, "-" * len(header)]
    names = [o.name for o in results[0].comparison.outcomes]
    for index, name in enumerate(names):
        rows = [r.comparison.outcomes[index] for r in results]
        cost = sum(o.cost or 0 for o in rows)
        lines.append(
            f"{name:<16} {sum(o.started for o in rows):>8} {sum(o.scoped for o in rows):>6} "
            f"{sum(o.unscoped for o in rows):>8} {cost:>6g} "
            f"{sum(o.kpi_outside / HOUR for o in rows):>15.1f} "
            f"{sum(o.kpi_series_outside / HOUR for o in rows):>12.1f} "
            f"{sum(o.incidents_held for o in rows):>14} {sum(o.incidents_retrained_on for o in rows):>12}"
        )
    recorded = sum(r.comparison.recorded_outside / HOUR for r in results)
    incidents = sum(r.comparison.incidents for r in results)
    lines.append(f"{'as recorded':<16} {'':>8} {'':>6} {'':>8} {'':>6} {recorded:>15.1f}")
    lines.append(f"({len(results)} scenarios; {incidents} data incidents the monitor held for)")
    return lines


def report(args: argparse.Namespace, results: Sequence[ScenarioComparison], wall: float) -> str:
    first = results[0].comparison
    lines = [
        "What-if over the built-in scenarios: retraining policies priced on one replay each "
        "(bench/bench_whatif.py)",
        f"python {platform.python_version()}, {platform.machine()}, "
        f"cores visible: {len(os.sched_getaffinity(0))}",
        f"monitor: examples/scenario-monitor.yaml; replay: incident - {args.before} .. end of scenario, "
        f"every 5m ({sum(r.comparison.evaluations for r in results)} evaluations in all)",
        f"policies: {args.policies}",
        "",
        "Totals over every scenario:",
        *totals(results),
        "",
        "KPI outside = hours with at least one KPI series (measured or estimated) outside its bounds; "
        "KPI series-h = the same summed per series",
        "(a run that restores one segment of three shows there); blocked = evaluations a wanted run "
        "was stopped by a guardrail.",
        "",
        "The assumption behind every number:",
        *(f"  {note}" for note in first.notes),
    ]
    for result in results:
        table = whatif.render(result.comparison).split("\n\nAssumption")[0]
        lines += ["", f"== {result.name} ==", table]
    lines += ["", "Timings (backfill cached, serve + replay + compare):"]
    lines += [
        f"  {r.name:<27} {r.seconds:6.2f} s for {r.comparison.evaluations} evaluations" for r in results
    ]
    lines.append(f"  total wall {wall:.1f} s")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--before", default="2h", help="replay from this long before the incident")
    parser.add_argument("--policies", default=POLICIES, help=f"as --compare takes them (default: {POLICIES})")
    parser.add_argument("--scenario", action="append", help="only this scenario (repeatable)")
    parser.add_argument(
        "--cache-dir", type=Path, default=None, help="backfill cache (default: $EVERGREEN_CACHE_DIR)"
    )
    parser.add_argument("--output", type=Path, help="also write the report (and this command) to this file")
    args = parser.parse_args(argv)

    spec = load_manifest(MONITOR).spec()
    # The showcase spans two weeks with several incidents; the four-day scenarios have one each.
    names = args.scenario or sorted(name for name in catalog.SCENARIOS if name != "showcase")
    started = time.perf_counter()
    results = []
    for name in names:
        result = run(name, spec, args.policies, parse_duration(args.before), args.cache_dir)
        print(f"{name}: {result.seconds:.1f} s", file=sys.stderr)
        results.append(result)
    text = report(args, results, time.perf_counter() - started)
    print(text)
    if args.output:
        command = shlex.join(["python", "bench/bench_whatif.py", *(sys.argv[1:] if argv is None else argv)])
        args.output.write_text(f"$ PYTHONPATH=operator {command}\n\n{text}\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
