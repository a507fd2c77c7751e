"""A KPI estimated from prediction scores, judged like the KPI, and checked against its labels.

The estimate of the current window (whose labels are not complete) is judged with the KPI's
bounds and noise control. The estimate of the latest labelled window (``labelDelay`` ago) is
compared with the KPI measured on that same window: the gap says whether the scores are still
calibrated (see :mod:`evergreen.analysis.estimation` for the estimator and its assumptions).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from datetime import datetime, timedelta

from evergreen.analysis.estimation import ConfusionEstimate, ThresholdNotABound, expected_confusion
from evergreen.analysis.histograms import HistogramSet
from evergreen.api.spec import Kpi, KpiEstimate
from evergreen.api.status import CalibrationCheck, CheckOutcome, CheckState
from evergreen.errors import AnalysisError
from evergreen.observation.checks import SeriesLabels, check_outcome, series_key
from evergreen.observation.problems import ProblemKind, SignalProblem
from evergreen.signals.samples import QueryResult, Sample


def _confusion(field: str, estimate: KpiEstimate, answer: QueryResult) -> ConfusionEstimate | SignalProblem:
    """The expected confusion matrix per segment, or why there is none."""
    if answer.empty:
        return SignalProblem(
            field, ProblemKind.NO_DATA, f"no {estimate.histogram}_bucket series in the window"
        )
    try:
        histograms = HistogramSet.from_samples(
            [(s.labels, s.value) for s in answer.samples],
            feature_label=None,
            segment_labels=list(estimate.segment_by),
        )
        return expected_confusion(histograms, estimate.threshold)
    except ThresholdNotABound as error:
        return SignalProblem(
            f"{field}.threshold",
            ProblemKind.REJECTED,
            f"{error}; set {field}.threshold to one of them",
        )
    except AnalysisError as error:
        return SignalProblem(field, ProblemKind.INVALID, str(error))


def _values(estimate: KpiEstimate, confusion: ConfusionEstimate) -> list[tuple[dict[str, str], float, float]]:
    """(labels, estimated value, predictions) per series: the segments, or the population alone."""
    values = confusion.metric(estimate.metric)
    count = confusion.count
    return [
        (dict(key.segment), float(value), float(n))
        for key, value, n in zip(confusion.keys, values, count, strict=True)
    ]


def _judged(kpi: Kpi, rows: list[tuple[dict[str, str], float, float]]) -> CheckOutcome:
    """The estimate judged like the KPI: its bounds, widened for thin segments."""
    result = QueryResult(query="", samples=tuple(Sample(labels, value) for labels, value, _ in rows))
    counts = {series_key(labels): n for labels, _, n in rows}
    outcome = check_outcome(kpi, result, counts)
    if outcome.state is CheckState.NO_DATA or (outcome.state is CheckState.BREACHED and not outcome.series):
        # onNoData speaks of the labels; an estimate without scores is simply missing.
        outcome = outcome.model_copy(
            update={"state": CheckState.NO_DATA, "message": "no scored requests to estimate from"}
        )
    return outcome.model_copy(update={"estimated": True})


def _where(labels: Mapping[str, str]) -> str:
    return f" [{','.join(f'{k}={v}' for k, v in sorted(labels.items()))}]" if labels else ""


def calibration_check(
    estimate: KpiEstimate,
    kpi: Kpi,
    estimated: list[tuple[dict[str, str], float, float]],
    measured: QueryResult,
    measured_counts: Mapping[SeriesLabels, float] | None,
    window_end: datetime,
) -> CalibrationCheck:
    """Compare the estimate of a labelled window with the KPI measured on it, series by series.

    Only series resting on ``minSamples`` predictions (and labels, with ``samplesQuery``) are
    compared: below that the measured KPI's own sampling noise would read as a gap.
    """
    truth = {series_key(s.labels): s.value for s in measured.samples if math.isfinite(s.value)}
    compared: list[tuple[float, dict[str, str], float, float]] = []
    for labels, value, predictions in estimated:
        key = series_key(labels)
        if key not in truth or not math.isfinite(value) or predictions < kpi.min_samples:
            continue
        if measured_counts is not None and measured_counts.get(key, 0.0) < kpi.min_samples:
            continue
        compared.append((abs(value - truth[key]), labels, value, truth[key]))
    if not compared:
        segments = f" by {', '.join(estimate.segment_by)}" if estimate.segment_by else ""
        return CalibrationCheck(
            window_end=window_end,
            tolerance=estimate.tolerance,
            message=f"nothing to compare: no series of the estimate{segments} with minSamples "
            f"({kpi.min_samples}) matches a series of the KPI query with data",
        )
    gap, labels, value, truth_value = max(compared, key=lambda row: row[0])
    drifted = gap > estimate.tolerance
    verdict = "beyond" if drifted else "within"
    return CalibrationCheck(
        window_end=window_end,
        gap=round(gap, 6),
        tolerance=estimate.tolerance,
        labels=labels,
        estimate=round(value, 6),
        measured=round(truth_value, 6),
        series=len(compared),
        message=f"labelled window to {window_end:%Y-%m-%dT%H:%MZ}{_where(labels)}: estimated "
        f"{value:.4g}, measured {truth_value:.4g}, gap {gap:.3g} {verdict} tolerance {estimate.tolerance:g}",
    )


def estimate_outcome(
    kpi: Kpi,
    field: str,
    now: QueryResult | SignalProblem,
    labelled: QueryResult | SignalProblem,
    measured: QueryResult | None,
    measured_counts: Mapping[SeriesLabels, float] | None,
    at: datetime,
    delay: timedelta,
) -> tuple[CheckOutcome, list[SignalProblem]]:
    """The estimated KPI now, with its calibration check on the labelled window."""
    estimate = kpi.estimate
    assert estimate is not None
    problems: list[SignalProblem] = []
    current = now if isinstance(now, SignalProblem) else _confusion(field, estimate, now)
    if isinstance(current, SignalProblem):
        problems.append(current)
        state = CheckState.NO_DATA if current.kind is ProblemKind.NO_DATA else CheckState.ERROR
        outcome = CheckOutcome(
            name=kpi.name, state=state, min=kpi.min, max=kpi.max, message=current.message, estimated=True
        )
    else:
        outcome = _judged(kpi, _values(estimate, current))
    past = labelled if isinstance(labelled, SignalProblem) else _confusion(field, estimate, labelled)
    if isinstance(past, SignalProblem):
        # The same broken threshold or histogram is reported once.
        if not any(p.field == past.field and p.kind is past.kind for p in problems):
            problems.append(past)
        return outcome, problems
    if measured is None:
        return outcome, problems
    check = calibration_check(estimate, kpi, _values(estimate, past), measured, measured_counts, at - delay)
    return outcome.model_copy(update={"calibration": check}), problems
