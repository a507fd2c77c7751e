"""Backtests that mean what the operator would do: counts, sampling, JSON lines, exit codes."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from evergreen import backtest
from evergreen.api.decisions import Action, Decision, Evidence, Scope
from evergreen.api.resource import parse_spec
from evergreen.backtest import Step
from evergreen.cli import bundled_recording, main
from evergreen.observation.evaluate import Evaluation, evaluate
from evergreen.signals.recording import Recorder
from evergreen.signals.samples import QueryResult

T0 = datetime(2026, 3, 2, tzinfo=UTC)
MINUTE = timedelta(minutes=1)


def spec(**retraining: Any) -> Any:
    raw: dict[str, Any] = {
        "model": "m",
        "interval": "5m",
        "drift": {"histogram": "h", "minSamples": 500},
    }
    if retraining:
        raw["retraining"] = {
            "template": {
                "apiVersion": "batch/v1",
                "kind": "Job",
                "spec": {"template": {"spec": {"containers": [{"name": "t", "image": "trainer:1"}]}}},
            },
            "validation": {"metric": "auc"},
            **retraining,
        }
    return parse_spec(raw)


def step(at: datetime, action: Action, reason: str = "DriftHurtsKPIs") -> Step:
    decision = Decision(
        action=action,
        reason=reason,
        message="m",
        evidence=[
            Evidence(signal="drift", feature="amount", segment="segment=ios", value=0.4, threshold=0.25)
        ],
        scope=Scope(features=["amount"], segments=["segment=ios"]) if action is Action.RETRAIN else None,
        time=at,
        since=at,
        enforced=True,
    )
    return Step(at, Evaluation(time=at, duration_seconds=0, queries=1), decision)


def test_retrain_decisions_are_told_from_runs_guardrails_allow() -> None:
    config = spec(cooldown="24h", budget={"runs": 2, "per": "168h"})
    # A Retrain in force for three days, every hour: one run a day at most.
    steps = [step(T0 + timedelta(hours=h), Action.RETRAIN) for h in range(72)]
    summary = backtest.summarize(steps, config)
    assert summary.retrains == 1
    assert summary.retrains_started == 2  # cooldown lets one a day, the budget stops the third
    assert "retrain decisions: 1 (2 would start after cooldown and budgets)" in backtest.render(
        steps, spec=config
    )


def test_without_retraining_no_run_would_start() -> None:
    steps = [step(T0, Action.RETRAIN)]
    assert backtest.summarize(steps, spec()).retrains_started is None
    assert "no spec.retraining, none would start" in backtest.render(steps, spec=spec())


def test_scope_and_evidence_are_printed() -> None:
    text = backtest.render([step(T0, Action.RETRAIN)])
    assert "scope: amount in segment=ios" in text
    assert "- drift: amount [segment=ios] 0.4 vs 0.25" in text


def test_jsonl_has_one_object_per_evaluation() -> None:
    steps = [step(T0, Action.NO_ACTION, "Healthy"), step(T0 + 5 * MINUTE, Action.RETRAIN)]
    lines = [json.loads(line) for line in backtest.jsonl(steps)]
    assert lines[0] == {
        "time": "2026-03-02T00:00:00Z",
        "decision": "NoAction",
        "reason": "Healthy",
        "message": "m",
        "scope": None,
        "evidence": ["drift: amount [segment=ios] 0.4 vs 0.25"],
    }
    assert lines[1]["scope"] == {"features": ["amount"], "segments": ["segment=ios"]}


def test_a_long_step_keeps_the_evaluations_persistence_needs() -> None:
    times = backtest.sampled_times(T0, T0 + 60 * MINUTE, 30 * MINUTE, 5 * MINUTE, 3)
    assert times == [
        T0 - 10 * MINUTE,
        T0 - 5 * MINUTE,
        T0,
        T0 + 20 * MINUTE,
        T0 + 25 * MINUTE,
        T0 + 30 * MINUTE,
        T0 + 50 * MINUTE,
        T0 + 55 * MINUTE,
        T0 + 60 * MINUTE,
    ]
    assert backtest.sampled_times(T0, T0 + 10 * MINUTE, 5 * MINUTE, 5 * MINUTE, 3) == [
        T0,
        T0 + 5 * MINUTE,
        T0 + 10 * MINUTE,
    ]


def test_bundled_recording_as_jsonl(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["backtest", "--recording", str(_bundled_path()), "--output", "jsonl"]) == 0
    records = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert len(records) == len(bundled_recording().times)
    assert all(set(r) >= {"time", "decision", "reason", "scope", "evidence"} for r in records)
    assert any(r["decision"] == "HoldForDataQuality" and r["scope"] for r in records)


class Empty:
    """A Prometheus that answers every query with no series (a model name matching nothing)."""

    async def instant(self, query: str, at: datetime, *, field: str) -> QueryResult:
        return QueryResult(query)


def test_a_backtest_where_nothing_was_judged_exits_4(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    manifest: dict[str, Any] = {"apiVersion": "evergreen.dev/v1alpha1", "kind": "ModelMonitor"}
    manifest["spec"] = {"model": "nothing-matches", "interval": "5m", "drift": {"histogram": "h"}}
    config = parse_spec(manifest["spec"])
    recorder = Recorder(Empty())

    async def record() -> list[Evaluation]:
        return [await evaluate(config, recorder, T0 + i * 5 * MINUTE, namespace="ml") for i in range(3)]

    asyncio.run(record())
    path = tmp_path / "empty.json.gz"
    recorder.recording(manifest).save(path)
    assert main(["backtest", "--recording", str(path)]) == 4
    captured = capsys.readouterr()
    assert "Unknown" in captured.out and "NoData" in captured.out
    assert "3 evaluations: 0 judged, 3 Unknown" in captured.out
    assert "no evaluation evaluated any signal: spec.drift" in captured.err
    assert "(exit 4)" in captured.err


def _bundled_path() -> Path:
    from importlib import resources

    from evergreen.cli import DEMO_RECORDING

    return Path(str(resources.files("evergreen").joinpath("data", DEMO_RECORDING)))
