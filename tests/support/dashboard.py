"""The chart's Grafana dashboard as tests read it: its queries, the metrics they name, and the
operator's real metrics after a replay of the bundled scenario."""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from evergreen import backtest
from evergreen.api.resource import parse_spec
from evergreen.cli import bundled_recording
from evergreen.conditions import evaluation_drafts, merge_conditions
from evergreen.signals.recording import RecordedSource
from evergreen.telemetry import Telemetry

DASHBOARD = Path(__file__).parents[2] / "charts" / "evergreen" / "files" / "dashboard.json"
#: Grafana's variables as a dashboard with "All" selected fills them in.
VARIABLES = {"$__rate_interval": "1m", "$job": ".*", "$namespace": ".*", "$monitor": ".*"}
#: Series Prometheus itself adds to every scrape, not exported by the operator.
SCRAPE_SERIES = {"up", "scrape_duration_seconds", "scrape_samples_scraped"}

_STRINGS = re.compile(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'')
_MATCHERS = re.compile(r"\{[^{}]*\}")
_RANGES = re.compile(r"\[[^\]]*\]")
_GROUPING = re.compile(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^()]*\)")
_IDENTIFIER = re.compile(r"(?<![\w:.$])([a-zA-Z_:][a-zA-Z0-9_:]*)\b(?!\s*\()")
_KEYWORDS = {"bool", "and", "or", "unless", "offset", "by", "without", "on", "ignoring", "inf", "nan"}
_LEGEND_LABEL = re.compile(r"\{\{\s*([a-zA-Z_][a-zA-Z0-9_]*)\s*\}\}")


def dashboard() -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(DASHBOARD.read_text())
    return loaded


def targets(board: dict[str, Any]) -> Iterator[tuple[dict[str, Any], dict[str, Any]]]:
    """Every (panel, target) pair, rows excluded."""
    for panel in board["panels"]:
        for target in panel.get("targets", []):
            yield panel, target


def metric_names(expr: str) -> set[str]:
    """The metric names a PromQL expression selects (functions, keywords and labels removed)."""
    text = _STRINGS.sub('""', expr)
    text = _MATCHERS.sub("", text)
    text = _RANGES.sub("", text)
    text = _GROUPING.sub("", text)
    return {name for name in _IDENTIFIER.findall(text) if name not in _KEYWORDS}


def legend_labels(target: dict[str, Any]) -> set[str]:
    return set(_LEGEND_LABEL.findall(target.get("legendFormat", "")))


def filled(expr: str) -> str:
    for variable, value in VARIABLES.items():
        expr = expr.replace(variable, value)
    return expr


def exported_sample_names(telemetry: Telemetry) -> set[str]:
    """Every sample name the operator's /metrics can expose, read from its registry."""
    suffixes = {
        "counter": ["_total", "_created"],
        "histogram": ["_bucket", "_count", "_sum", "_created"],
        "gauge": [""],
    }
    names: set[str] = set()
    for family in telemetry.registry.collect():
        names.update(family.name + suffix for suffix in suffixes[family.type])
    return names


def telemetry_after_showcase(namespace: str = "ml", monitor: str = "fraud-detector") -> Telemetry:
    """The operator's metrics after it evaluated the bundled scenario, recorded as its reconciler
    records each evaluation (outcome, conditions, decision, drift, KPIs and thresholds)."""
    recording = bundled_recording()
    spec = parse_spec(recording.monitor["spec"])
    steps = asyncio.run(
        backtest.replay(spec, RecordedSource(recording), recording.times, namespace=namespace)
    )
    telemetry = Telemetry()
    previous = None
    conditions: list[Any] = []
    for step in steps:
        evaluation = step.evaluation
        telemetry.record_evaluation(namespace, monitor, "ok", evaluation.duration_seconds, evaluation.queries)
        conditions = merge_conditions(
            conditions, evaluation_drafts(spec, evaluation), now=step.time, generation=1
        )
        telemetry.record_conditions(namespace, monitor, conditions)
        if step.decision is not None:
            telemetry.record_decision(namespace, monitor, step.decision, not step.decision.same_as(previous))
            previous = step.decision
        summary = evaluation.summary()
        telemetry.record_signals(namespace, monitor, evaluation)
        for signal, drift in (("feature", summary.drift), ("prediction", summary.prediction_drift)):
            if drift is not None:
                telemetry.record_drift(namespace, monitor, signal, drift.top, drift.max_score, summary.time)
    return telemetry
