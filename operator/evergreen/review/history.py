"""A monitor's history as the review report draws it, from a backtest or from status.

Everything is aligned on one sequence of evaluation times: a drift series, a KPI or a check
has one value (or None) per time. Two sources fill it:

- :func:`from_backtest`: every replayed evaluation in full (every feature × segment, every
  KPI value).
- :func:`from_status`: what ``ModelMonitor.status`` keeps — the bounded decision history,
  the last few assessments (findings at warning and above, breached KPIs and checks) and the
  last evaluation's values. Cells status does not record stay None, never zero.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime

from evergreen import backtest
from evergreen.api.decisions import Action, Assessment, Finding, estimated_name
from evergreen.api.spec import HistogramDrift, ModelMonitorSpec
from evergreen.api.status import CheckOutcome, CheckState, ModelMonitorStatus
from evergreen.errors import ReportError
from evergreen.observation.evaluate import DriftResult
from evergreen.whatif import Comparison

#: The signals of a drift heat map, as status and metrics name them.
FEATURE_DRIFT = "feature"
PREDICTION_DRIFT = "prediction"


@dataclass(frozen=True)
class Period:
    """A decision held from ``start`` until ``end`` (None: still in force at the end)."""

    start: datetime
    end: datetime | None
    action: str
    reason: str
    message: str


@dataclass(frozen=True)
class Thresholds:
    method: str
    warning: float
    critical: float


@dataclass(frozen=True)
class DriftSeries:
    """One feature × segment's drift score at each time (None: not compared, or not recorded)."""

    signal: str
    feature: str
    segment: str
    scores: tuple[float | None, ...]

    @property
    def peak(self) -> float:
        return max((s for s in self.scores if s is not None), default=0.0)


@dataclass(frozen=True)
class CheckSeries:
    """A KPI or data-quality check at each time: its state, its worst value and its bounds."""

    name: str
    states: tuple[CheckState | None, ...]
    values: tuple[float | None, ...]
    minimum: tuple[float | None, ...]
    maximum: tuple[float | None, ...]


@dataclass(frozen=True)
class MonitorHistory:
    """Everything the report shows, aligned on ``times``."""

    title: str
    subtitle: str
    times: tuple[datetime, ...]
    #: Times at which Prometheus could not be read (no decision was taken).
    unavailable: frozenset[datetime]
    periods: tuple[Period, ...]
    thresholds: Mapping[str, Thresholds]
    drift: tuple[DriftSeries, ...]
    kpis: tuple[CheckSeries, ...]
    data_quality: tuple[CheckSeries, ...]
    summary: tuple[tuple[str, str], ...]
    notes: tuple[str, ...] = field(default_factory=tuple)
    #: The what-if table of retraining policies over the same history (backtest --compare).
    comparison: Comparison | None = None


def _thresholds(spec: ModelMonitorSpec | None) -> dict[str, Thresholds]:
    found: dict[str, Thresholds] = {}
    configs: list[tuple[str, HistogramDrift | None]] = [
        (FEATURE_DRIFT, spec.drift if spec else None),
        (PREDICTION_DRIFT, spec.prediction_drift if spec else None),
    ]
    for signal, config in configs:
        if config is not None:
            found[signal] = Thresholds(config.method.value, config.warning, config.critical)
    return found


def _periods(steps: Sequence[backtest.Step]) -> list[Period]:
    changes = backtest.changes(steps)
    periods = []
    for index, step in enumerate(changes):
        assert step.decision is not None  # changes() only returns decided steps
        end = changes[index + 1].time if index + 1 < len(changes) else None
        d = step.decision
        periods.append(Period(step.time, end, d.action.value, d.reason, d.message))
    return periods


def _drift_scores(result: DriftResult | None) -> dict[tuple[str, str], float | None]:
    """Judged scores by (feature, segment); series with too few samples are not judged: None."""
    if result is None:
        return {}
    return {(row.feature, row.segment): None if row.low_samples else row.score for row in result.series()}


def _series_of(signal: str, per_time: Sequence[Mapping[tuple[str, str], float | None]]) -> list[DriftSeries]:
    keys = sorted({key for scores in per_time for key in scores})
    return [
        DriftSeries(signal, feature, segment, tuple(scores.get((feature, segment)) for scores in per_time))
        for feature, segment in keys
    ]


def _check_series(names: Iterable[str], per_time: Sequence[Mapping[str, CheckOutcome]]) -> list[CheckSeries]:
    series = []
    for name in names:
        outcomes = [outcomes_at.get(name) for outcomes_at in per_time]
        series.append(
            CheckSeries(
                name=name,
                states=tuple(o.state if o else None for o in outcomes),
                values=tuple(o.value if o else None for o in outcomes),
                minimum=tuple(o.min if o else None for o in outcomes),
                maximum=tuple(o.max if o else None for o in outcomes),
            )
        )
    return series


def _name_order(spec: ModelMonitorSpec | None, kind: str, seen: Iterable[str]) -> list[str]:
    declared = [check.name for check in (spec.kpis if kind == "kpis" else spec.data_quality)] if spec else []
    return declared + sorted(set(seen) - set(declared))


def from_backtest(
    steps: Sequence[backtest.Step],
    spec: ModelMonitorSpec,
    *,
    name: str,
    namespace: str,
    source: str,
    comparison: Comparison | None = None,
) -> MonitorHistory:
    """The full history of a replay: every evaluation, every series (and, with ``comparison``,
    the what-if table of retraining policies over it)."""
    if not steps:
        raise ReportError("nothing to report: the replay made no evaluation")
    times = tuple(step.time for step in steps)
    kpis = [
        {o.display_name: o for o in (*step.evaluation.kpis, *step.evaluation.estimates)} for step in steps
    ]
    quality = [{o.name: o for o in step.evaluation.data_quality} for step in steps]
    summary = backtest.summarize(steps)
    rows: list[tuple[str, str]] = [
        ("Evaluations", f"{summary.evaluations} ({summary.unavailable} without Prometheus)"),
        ("From", times[0].isoformat()),
        ("To", times[-1].isoformat()),
        ("Retrains that would have run", str(summary.retrains)),
        ("Data-quality holds", str(summary.holds)),
        ("Escalations", str(summary.entered.get(Action.ESCALATE, 0))),
    ]
    rows += _estimate_rows(spec, steps)
    for action, first in sorted(summary.first.items(), key=lambda item: item[1]):
        spent = summary.time_in.get(action, 0)
        rows.append(
            (
                f"{action.value}",
                f"entered {summary.entered.get(action, 0)}x, first {first.isoformat()}, "
                f"{spent} evaluation{'s' if spent != 1 else ''}",
            )
        )
    return MonitorHistory(
        title=f"Backtest of ModelMonitor {namespace}/{name}",
        subtitle=f"model {spec.model}, {source}",
        times=times,
        unavailable=frozenset(step.time for step in steps if step.decision is None),
        periods=tuple(_periods(steps)),
        thresholds=_thresholds(spec),
        drift=tuple(
            _series_of(FEATURE_DRIFT, [_drift_scores(step.evaluation.drift) for step in steps])
            + _series_of(
                PREDICTION_DRIFT, [_drift_scores(step.evaluation.prediction_drift) for step in steps]
            )
        ),
        kpis=tuple(_check_series(_name_order(spec, "kpis", {k for at in kpis for k in at}), kpis)),
        data_quality=tuple(
            _check_series(_name_order(spec, "dataQuality", {k for at in quality for k in at}), quality)
        ),
        summary=tuple(rows),
        comparison=comparison,
    )


def _estimate_rows(spec: ModelMonitorSpec, steps: Sequence[backtest.Step]) -> list[tuple[str, str]]:
    """Per estimated KPI: how often it was judged, and how long calibration drift kept it untrusted."""
    rows = []
    for kpi in spec.kpis:
        if kpi.estimate is None:
            continue
        untrusted = [step.time for step in steps if kpi.name in step.estimates_untrusted]
        gaps = [
            o.calibration.gap
            for step in steps
            for o in step.evaluation.estimates
            if o.name == kpi.name and o.calibration is not None and o.calibration.gap is not None
        ]
        trust = (
            f"untrusted (calibration drift) in {len(untrusted)} evaluations, first {untrusted[0].isoformat()}"
            if untrusted
            else "trusted throughout"
        )
        largest = (
            f"; largest gap to the labels {max(gaps):.3g} (tolerance {kpi.estimate.tolerance:g})"
            if gaps
            else ""
        )
        rows.append((estimated_name(kpi.name), f"{kpi.estimate.metric.value} from scores, {trust}{largest}"))
    return rows


def _findings(assessment: Assessment) -> Iterable[tuple[str, Finding]]:
    for finding in (*assessment.breaks, *assessment.drift, *assessment.warnings, *assessment.sudden):
        yield FEATURE_DRIFT, finding
    for finding in assessment.prediction_drift:
        yield PREDICTION_DRIFT, finding


def from_status(
    status: ModelMonitorStatus, spec: ModelMonitorSpec | None, *, name: str, namespace: str
) -> MonitorHistory:
    """What status remembers: decisions, the last assessments and the last evaluation."""
    periods: list[Period] = []
    for record in status.history:
        # A new reason for the same action keeps the action's ``since``: it starts where the
        # previous record ends.
        start = max(record.since, periods[-1].end) if periods and periods[-1].end else record.since
        periods.append(Period(start, record.until, record.action.value, record.reason, record.message))
    if status.decision is not None and not any(p.end is None for p in periods):
        d = status.decision
        periods.append(Period(d.since, None, d.action.value, d.reason, d.message))
    last = status.last_evaluation
    moments = {a.time for a in status.assessments} | {p.start for p in periods}
    moments |= {p.end for p in periods if p.end is not None}
    if last is not None:
        moments.add(last.time)
    if status.decision is not None:
        moments.add(status.decision.time)
    times = tuple(sorted(moments))
    if not times:
        raise ReportError(f"ModelMonitor {namespace}/{name} has no history in status yet")

    # Drift: findings of the kept assessments, and the last evaluation's top series.
    drift: list[dict[tuple[str, str], float | None]] = [{} for _ in times]
    prediction: list[dict[tuple[str, str], float | None]] = [{} for _ in times]
    index = {t: i for i, t in enumerate(times)}
    for assessment in status.assessments:
        for signal, finding in _findings(assessment):
            cells = drift if signal == FEATURE_DRIFT else prediction
            cells[index[assessment.time]][(finding.feature, finding.segment)] = finding.score
    if last is not None:
        for cells, summary in ((drift, last.drift), (prediction, last.prediction_drift)):
            for row in summary.top if summary else []:
                cells[index[last.time]][(row.feature, row.segment)] = None if row.low_samples else row.score

    # Checks: the state at each assessment; values only where the last evaluation has them.
    kpis: list[dict[str, CheckOutcome]] = [{} for _ in times]
    quality: list[dict[str, CheckOutcome]] = [{} for _ in times]
    estimate_names = list(
        dict.fromkeys(
            [estimated_name(k.name) for k in (spec.kpis if spec else []) if k.estimate is not None]
            + [o.display_name for o in (last.estimates if last else [])]
        )
    )
    kpi_names = _name_order(spec, "kpis", [o.name for o in (last.kpis if last else [])]) + estimate_names
    check_names = _name_order(spec, "dataQuality", [o.name for o in (last.data_quality if last else [])])
    for assessment in status.assessments:
        at = index[assessment.time]
        for kpi in kpi_names:
            state = (
                CheckState.BREACHED
                if kpi in assessment.kpis_breached
                else CheckState.NO_DATA
                if kpi in assessment.kpis_unknown
                else CheckState.OK
            )
            kpis[at][kpi] = CheckOutcome(name=kpi, state=state)
        if assessment.data_quality_evaluated:
            breached = {e.detail.partition(":")[0] for e in assessment.data_quality_breached}
            for check in check_names:
                state = CheckState.BREACHED if check in breached else CheckState.OK
                quality[at][check] = CheckOutcome(name=check, state=state)
        for estimated in estimate_names:
            kpi = estimated.removesuffix(estimated_name(""))
            state = (
                CheckState.BREACHED
                if kpi in assessment.estimates_breached
                else CheckState.OK
                if kpi in assessment.estimates_judged
                else CheckState.NO_DATA
            )
            kpis[at][estimated] = CheckOutcome(name=kpi, state=state, estimated=True)
    if last is not None:
        kpis[index[last.time]].update({o.display_name: o for o in (*last.kpis, *last.estimates)})
        quality[index[last.time]].update({o.name: o for o in last.data_quality})

    decisions = len(status.history)
    return MonitorHistory(
        title=f"ModelMonitor {namespace}/{name}",
        subtitle=f"model {spec.model if spec else '?'}, from its status",
        times=times,
        unavailable=frozenset(),
        periods=tuple(periods),
        thresholds=_thresholds(spec),
        drift=tuple(_series_of(FEATURE_DRIFT, drift) + _series_of(PREDICTION_DRIFT, prediction)),
        kpis=tuple(_check_series(kpi_names, kpis)),
        data_quality=tuple(_check_series(check_names, quality)),
        summary=(
            (
                "Decision",
                f"{status.decision.action.value} ({status.decision.reason})" if status.decision else "-",
            ),
            ("Since", status.decision.since.isoformat() if status.decision else "-"),
            ("Decisions in history", str(decisions)),
            ("Serving version", status.current_version or "-"),
            ("Last evaluation", last.time.isoformat() if last else "-"),
        ),
        notes=(
            f"Status keeps the last {decisions} decisions and the last {len(status.assessments)} "
            "assessments: drift is shown only where a series reached warning or was among the last "
            "evaluation's top series, values only for the last evaluation. For the full picture, "
            "run `evergreen backtest --report` over the same period.",
        ),
    )
