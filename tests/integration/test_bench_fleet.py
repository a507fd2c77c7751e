"""The fleet benchmark's machinery, at a small size, so it cannot rot between runs.

The real operator process, the real control plane with the chart's RBAC, a backfilled real
Prometheus, and every figure the benchmark reports, for 50 monitors over about a minute and a
half.
"""

from __future__ import annotations

import importlib.util
import math
import sys
from pathlib import Path
from types import ModuleType
from urllib.parse import urlencode

import pytest

pytestmark = [pytest.mark.e2e, pytest.mark.prometheus, pytest.mark.helm, pytest.mark.slow]

BENCH = Path(__file__).parents[2] / "bench" / "bench_fleet.py"


def bench_module() -> ModuleType:
    spec = importlib.util.spec_from_file_location("bench_fleet", BENCH)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["bench_fleet"] = module
    spec.loader.exec_module(module)
    return module


def test_fifty_monitors_are_evaluated_on_schedule_and_measured(tmp_path: Path) -> None:
    bench = bench_module()
    result = bench.run_fleet(50, seconds=45, warmup_seconds=45, workdir=tmp_path, namespaces=3)
    report = "\n".join(bench.render(result))
    # Every monitor was evaluated at once, then on its slot within the next 1.5 intervals.
    assert set(result.outcomes) <= {"ok"}, report
    assert result.evaluations_per_second >= 0.4 * result.required_per_second, report
    assert result.delay_p99 < 10, report
    assert 0 < result.cores < 1, report
    assert 30 < result.final_rss_mib <= result.peak_rss_mib, report
    assert math.isclose(result.queries_per_evaluation, 7.0), report
    # Status writes only: the cache is the watch's, so no reads of the monitors.
    assert result.api_requests_by_verb.get("patch modelmonitors/status", 0) > 0, report
    assert result.api_requests_per_evaluation <= 1.1, report
    assert "get modelmonitors" not in result.api_requests_by_verb, report


def test_recorded_answers_replay_what_prometheus_answered(tmp_path: Path) -> None:
    bench = bench_module()
    history = bench.backfill_fleet(tmp_path, 2, 1_800_000_000 - 7200, 1_800_000_000)
    from evergreen.simulation.prometheus import PrometheusServer

    query = 'sum by (le) (increase(model_prediction_score_bucket{model="model-00001"}[15m]))'
    with (
        PrometheusServer(tmp_path / "prometheus", history=history) as prometheus,
        bench.RecordedAnswers(prometheus.url) as recorder,
    ):
        first = recorder.answer("/api/v1/query", urlencode({"query": query, "time": "1800000000"}))
        again = recorder.answer("/api/v1/query", urlencode({"query": query, "time": "1800000060"}))
    assert first == again and b'"le":"+Inf"' in first
    assert (recorder.forwarded, recorder.replayed) == (1, 1)
