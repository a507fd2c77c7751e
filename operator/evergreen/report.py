"""Plain-text rendering of an evaluation, for terminals (demo, evaluate, backtest)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from evergreen.api.decisions import Decision, DecisionRecord, estimated_name
from evergreen.api.status import CheckOutcome, CheckState, Condition, ModelMonitorStatus, Severity
from evergreen.observation.evaluate import DriftResult, Evaluation

if TYPE_CHECKING:
    from evergreen.backtest import Step

_MARK = {Severity.CRITICAL: "!!", Severity.WARNING: "! ", Severity.OK: "  ", Severity.NO_DATA: "??"}


def _table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(headers)]
    lines = ["  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True)).rstrip()]
    lines += ["  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() for row in rows]
    return lines


def render_drift(title: str, result: DriftResult, *, top: int, include_ok: bool = False) -> list[str]:
    config = result.config
    series = result.series()
    severities = result.severities()
    no_data = severities.count(Severity.NO_DATA)
    lines = [
        f"{title}: {config.histogram} by {config.method.value} "
        f"(warning {config.warning:g}, critical {config.critical:g}, minSamples {config.min_samples})",
        f"  {len(severities)} series compared, {no_data} without data in one window",
    ]
    shown = [row for row in series if include_ok or row.severity is not Severity.OK][:top]
    if not shown:
        lines.append("  no series at or above the warning threshold")
        shown = series[: min(3, top)]
        if shown:
            lines.append("  highest scores:")
    rows = [
        [
            _MARK[row.severity] + " " + row.severity.value,
            row.feature,
            row.segment,
            f"{row.score:.4f}",
            f"{row.samples:,.0f}" + (" (low)" if row.low_samples else ""),
        ]
        for row in shown
    ]
    lines += ["  " + line for line in _table(["severity", "feature", "segment", "score", "n_eff"], rows)]
    return lines


def _check_rows(outcomes: Sequence[CheckOutcome]) -> list[list[str]]:
    rows = []
    for outcome in outcomes:
        bounds = " ".join(
            part
            for part in (
                f"min {outcome.min:g}" if outcome.min is not None else "",
                f"max {outcome.max:g}" if outcome.max is not None else "",
            )
            if part
        )
        value = "-" if outcome.value is None else f"{outcome.value:.4g}"
        labels = ",".join(f"{k}={v}" for k, v in sorted(outcome.labels.items())) or "*"
        note = outcome.message or ""
        if outcome.calibration is not None and outcome.calibration.message:
            note = "; ".join(part for part in (note, outcome.calibration.message) if part)
        rows.append([outcome.state.value, outcome.display_name, value, bounds, labels, note])
    return rows


#: The heading of estimated KPIs wherever they are listed: what they are, and what they assume.
ESTIMATES_TITLE = "Estimated KPIs (from prediction scores, assuming calibrated scores; not measured):"


def render_evaluation(
    evaluation: Evaluation,
    *,
    conditions: Sequence[Condition] = (),
    top: int = 10,
    title: str | None = None,
) -> str:
    """A human-readable report of one evaluation."""
    lines = [title or f"Evaluation at {evaluation.time.isoformat()}"]
    lines.append(f"  {evaluation.queries} Prometheus queries, {evaluation.duration_seconds * 1000:.1f} ms")
    if evaluation.drift is not None:
        lines += render_drift("Feature drift", evaluation.drift, top=top)
    if evaluation.prediction_drift is not None:
        lines += render_drift("Prediction drift", evaluation.prediction_drift, top=top)
    headers = ["state", "name", "value", "bounds", "series", "note"]
    if evaluation.data_quality:
        lines.append("Data quality:")
        lines += ["  " + line for line in _table(headers, _check_rows(evaluation.data_quality))]
    if evaluation.kpis:
        lines.append("KPIs:")
        lines += ["  " + line for line in _table(headers, _check_rows(evaluation.kpis))]
    if evaluation.estimates:
        lines.append(ESTIMATES_TITLE)
        lines += ["  " + line for line in _table(headers, _check_rows(evaluation.estimates))]
    if evaluation.problems:
        lines.append("Problems:")
        lines += [f"  {p.kind.value}: {p.field}: {p.message}" for p in evaluation.problems]
    if conditions:
        lines.append("Conditions:")
        rows = [[c.type, c.status.value, c.reason, c.message] for c in conditions]
        lines += ["  " + line for line in _table(["type", "status", "reason", "message"], rows)]
    return "\n".join(lines)


def render_decision(decision: Decision, *, history: Sequence[DecisionRecord] = ()) -> str:
    """A decision with its evidence, and (optionally) the decisions before it."""
    mode = "" if decision.enforced else "  (Observe mode: decided and explained, not acted on)"
    lines = [f"Decision: {decision.action.value} ({decision.reason}){mode}", f"  {decision.message}"]
    lines.append(f"  since {decision.since.isoformat()}, confirmed {decision.time.isoformat()}")
    if decision.scope is not None and (decision.scope.features or decision.scope.segments):
        scope = ", ".join(decision.scope.features) or "all features"
        if decision.scope.segments:
            scope += " in " + ", ".join(decision.scope.segments)
        lines.append(f"  scope: {scope}")
    if decision.evidence:
        lines.append("  evidence:")
        lines += [f"    - {item.render()}" for item in decision.evidence]
    if history:
        lines.append("History:")
        for record in history:
            until = record.until.isoformat() if record.until else "now"
            lines.append(f"  {record.since.isoformat()} .. {until}  {record.action.value} ({record.reason})")
    return "\n".join(lines)


def render_status(name: str, namespace: str, spec_model: str, mode: str, status: ModelMonitorStatus) -> str:
    """What ``evergreen explain`` prints: conditions, the last evaluation, the decision."""
    lines = [f"ModelMonitor {namespace}/{name} (model {spec_model}, mode {mode})"]
    if status.conditions:
        lines.append("Conditions:")
        rows = [[c.type, c.status.value, c.reason, c.message] for c in status.conditions]
        lines += ["  " + line for line in _table(["type", "status", "reason", "message"], rows)]
    evaluation = status.last_evaluation
    if evaluation is not None:
        lines.append(f"Last evaluation: {evaluation.time.isoformat()} ({evaluation.queries} queries)")
        for title, drift in (
            ("feature drift", evaluation.drift),
            ("prediction drift", evaluation.prediction_drift),
        ):
            if drift is None:
                continue
            lines.append(
                f"  {title} ({drift.method}): {drift.series} series, {drift.critical} critical, "
                f"{drift.warning} warning, {drift.no_data} without data"
                + (
                    f", {drift.baseline_not_ready} with a baseline not ready"
                    if drift.baseline_not_ready
                    else ""
                )
            )
            rows = [
                [row.severity.value, row.feature, row.segment, f"{row.score:.4f}", f"{row.samples:,.0f}"]
                for row in drift.top[:5]
            ]
            lines += [
                "    " + line for line in _table(["severity", "feature", "segment", "score", "n_eff"], rows)
            ]
        checks = [*evaluation.data_quality, *evaluation.kpis]
        headers = ["state", "name", "value", "bounds", "series", "note"]
        if checks:
            lines += ["  " + line for line in _table(headers, _check_rows(checks))]
        if evaluation.estimates:
            lines.append("  " + ESTIMATES_TITLE)
            lines += ["    " + line for line in _table(headers, _check_rows(evaluation.estimates))]
    if status.decision is not None:
        lines.append(render_decision(status.decision, history=status.history))
    else:
        lines.append("No decision yet.")
    return "\n".join(lines)


def estimates_json(step: Step) -> list[dict[str, Any]]:
    """A replayed evaluation's estimated KPIs, for ``--output jsonl`` (``estimated`` is always true)."""
    records = []
    for outcome in step.evaluation.estimates:
        calibration = outcome.calibration
        records.append(
            {
                "kpi": outcome.name,
                "estimated": True,
                "state": outcome.state.value,
                "value": outcome.value,
                "labels": dict(outcome.labels),
                "trusted": outcome.name not in step.estimates_untrusted,
                "calibrationGap": calibration.gap if calibration is not None else None,
                "calibrationTolerance": calibration.tolerance if calibration is not None else None,
            }
        )
    return records


def estimate_lines(steps: Sequence[Step]) -> list[str]:
    """The backtest summary's lines about estimated KPIs: how often breached, how long untrusted."""
    names = list(dict.fromkeys(o.name for step in steps for o in step.evaluation.estimates))
    lines = []
    for name in names:
        outcomes = [(step, o) for step in steps for o in step.evaluation.estimates if o.name == name]
        breached = sum(1 for _, o in outcomes if o.state is CheckState.BREACHED)
        untrusted = [step.time for step, _ in outcomes if name in step.estimates_untrusted]
        gaps = [o.calibration.gap for _, o in outcomes if o.calibration and o.calibration.gap is not None]
        trust = (
            f"untrusted (calibration drift) in {len(untrusted)}, first {untrusted[0].isoformat()}"
            if untrusted
            else "trusted throughout"
        )
        largest = f"; largest gap to the labels {max(gaps):.3g}" if gaps else "; no labelled window compared"
        lines.append(
            f"{estimated_name(name)}: estimated from prediction scores (assumed calibrated), breached "
            f"in {breached} of {len(outcomes)} evaluations; {trust}{largest}"
        )
    return lines
