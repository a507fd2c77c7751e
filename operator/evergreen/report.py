"""Plain-text rendering of an evaluation, for terminals (demo, evaluate, backtest)."""

from __future__ import annotations

from collections.abc import Sequence

from evergreen.api.status import CheckOutcome, Condition, Severity
from evergreen.observation.evaluate import DriftResult, Evaluation

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
        rows.append([outcome.state.value, outcome.name, value, bounds, labels, outcome.message or ""])
    return rows


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
    if evaluation.problems:
        lines.append("Problems:")
        lines += [f"  {p.kind.value}: {p.field}: {p.message}" for p in evaluation.problems]
    if conditions:
        lines.append("Conditions:")
        rows = [[c.type, c.status.value, c.reason, c.message] for c in conditions]
        lines += ["  " + line for line in _table(["type", "status", "reason", "message"], rows)]
    return "\n".join(lines)
