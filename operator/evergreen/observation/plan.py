"""The queries one evaluation issues, derived from the spec alone.

One query per histogram family per window (current, previous, baseline) returns every feature
and segment at once, so the cost of an evaluation does not grow with the number of features;
each data-quality check and KPI is one query of its own.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum

from evergreen.api.durations import parse_duration
from evergreen.api.spec import HistogramDrift, Kpi, KpiEstimate, ModelMonitorSpec
from evergreen.signals.promql import histogram_increase, render_template


class Window(StrEnum):
    CURRENT = "current"
    #: The window just before the current one: a step between the two is a sudden change.
    PREVIOUS = "previous"
    BASELINE = "baseline"


@dataclass(frozen=True)
class HistogramQuery:
    """One window of one histogram family."""

    field: str
    window: Window
    promql: str


@dataclass(frozen=True)
class CheckQuery:
    """A data-quality check or KPI query, rendered."""

    field: str
    promql: str
    #: Evaluated this long before the evaluation (a KPI's label delay).
    delay: timedelta = timedelta(0)


def template_variables(spec: ModelMonitorSpec, namespace: str, version: str | None = None) -> dict[str, str]:
    """The ``{{name}}`` variables user queries may use.

    ``{{window}}`` is the drift window (the interval without drift); ``{{version}}`` is the
    serving version (the candidate or the stable one in canary checks), when one is known.
    """
    variables = {
        "model": spec.model,
        "namespace": namespace,
        "interval": spec.interval,
        "window": spec.drift.window if spec.drift else spec.interval,
    }
    version = version or spec.current_version
    if version is not None:
        variables["version"] = version
    return variables


def _anchored(
    window: str, offset: str, at: datetime | None, anchor: datetime | None
) -> tuple[str, str | None]:
    """The baseline ``(range, offset)``, moved so that it never reaches before ``anchor``.

    After a promotion the old version's traffic says nothing about the new one: the baseline
    restarts at the promotion and grows from there until the configured window fits after it.
    """
    if at is None or anchor is None:
        return window, offset
    length, shift = parse_duration(window), parse_duration(offset)
    if at - shift - length >= anchor:
        return window, offset
    end = min(at, max(at - shift, anchor + length))
    start = anchor
    seconds = max(int((end - start).total_seconds()), 1)
    back = int((at - end).total_seconds())
    return f"{seconds}s", (f"{back}s" if back > 0 else None)


def _frozen(
    window: str, offset: str | None, at: datetime | None, until: datetime | None, anchor: datetime | None
) -> tuple[str, str | None]:
    """The baseline ``(range, offset)``, moved so that it never reaches after ``until``.

    While an incident is open the baseline stays where it was before the incident began, so
    a rolling baseline does not absorb the broken data and call it normal.
    """
    if at is None or until is None:
        return window, offset
    length = parse_duration(window)
    shift = parse_duration(offset) if offset else timedelta(0)
    if at - shift <= until:
        return window, offset
    if anchor is not None and until - length < anchor:
        length = max(until - anchor, timedelta(seconds=1))
    back = int((at - until).total_seconds())
    return f"{int(length.total_seconds())}s", f"{back}s"


def histogram_queries(
    field: str,
    drift: HistogramDrift,
    model: str,
    group_by: list[str],
    *,
    at: datetime | None = None,
    anchor: datetime | None = None,
    until: datetime | None = None,
) -> list[HistogramQuery]:
    """The current and previous windows, and the baseline window unless it is a ConfigMap."""
    matchers = {**drift.match_labels, drift.model_label: model}
    queries = [
        HistogramQuery(
            field,
            Window.CURRENT,
            histogram_increase(drift.histogram, matchers=matchers, group_by=group_by, window=drift.window),
        ),
        HistogramQuery(
            field,
            Window.PREVIOUS,
            histogram_increase(
                drift.histogram,
                matchers=matchers,
                group_by=group_by,
                window=drift.window,
                offset=drift.window,
            ),
        ),
    ]
    baseline = drift.baseline
    if baseline.window is not None and baseline.offset is not None:
        window, offset = _anchored(baseline.window, baseline.offset, at, anchor)
        window, offset = _frozen(window, offset, at, until, anchor)
        queries.append(
            HistogramQuery(
                field,
                Window.BASELINE,
                histogram_increase(
                    drift.histogram,
                    matchers=matchers,
                    group_by=group_by,
                    window=window,
                    offset=offset,
                ),
            )
        )
    return queries


@dataclass(frozen=True)
class EstimateQuery:
    """A KPI's estimate: the score histogram, read now and at the end of the labelled window."""

    field: str
    promql: str
    #: The KPI's label delay: the latest window whose labels are complete ended this long ago.
    delay: timedelta


def estimate_query(field: str, estimate: KpiEstimate, model: str, delay: timedelta) -> EstimateQuery:
    matchers = {**estimate.match_labels, estimate.model_label: model}
    promql = histogram_increase(
        estimate.histogram, matchers=matchers, group_by=list(estimate.segment_by), window=estimate.window
    )
    return EstimateQuery(field, promql, delay)


@dataclass(frozen=True)
class QueryPlan:
    """Every query of one evaluation."""

    drift: list[HistogramQuery]
    prediction_drift: list[HistogramQuery]
    data_quality: list[CheckQuery]
    kpis: list[CheckQuery]
    #: Per KPI, the query for the rate at which its labels arrive (None: not declared).
    kpi_labels: list[CheckQuery | None] = field(default_factory=list)
    #: Per data-quality check, then per KPI: the query for each series' sample count.
    samples: list[CheckQuery | None] = field(default_factory=list)
    #: Per KPI, its estimate from prediction scores (None: not declared).
    estimates: list[EstimateQuery | None] = field(default_factory=list)

    @property
    def size(self) -> int:
        extra = sum(1 for query in (*self.kpi_labels, *self.samples) if query is not None)
        # An estimate reads its histogram twice: now, and at the end of the labelled window.
        extra += 2 * sum(1 for query in self.estimates if query is not None)
        return len(self.drift) + len(self.prediction_drift) + len(self.data_quality) + len(self.kpis) + extra


def plan(
    spec: ModelMonitorSpec,
    namespace: str,
    *,
    version: str | None = None,
    at: datetime | None = None,
    baseline_anchor: datetime | None = None,
    baseline_until: datetime | None = None,
) -> QueryPlan:
    """Build every query; raises SpecError for a template that cannot be rendered.

    ``version`` is the serving version; ``baseline_anchor`` (the last promotion) keeps drift
    baselines from reaching back to a version no longer served.
    """
    variables = template_variables(spec, namespace, version)
    drift = []
    if spec.drift is not None:
        drift = histogram_queries(
            "spec.drift",
            spec.drift,
            spec.model,
            [spec.drift.feature_label, *spec.drift.segment_by],
            at=at,
            anchor=baseline_anchor,
            until=baseline_until,
        )
    prediction = []
    if spec.prediction_drift is not None:
        prediction = histogram_queries(
            "spec.predictionDrift",
            spec.prediction_drift,
            spec.model,
            list(spec.prediction_drift.segment_by),
            at=at,
            anchor=baseline_anchor,
            until=baseline_until,
        )
    checks = [
        CheckQuery(
            f"spec.dataQuality[{i}].query",
            render_template(check.query, variables, field=f"spec.dataQuality[{i}].query"),
        )
        for i, check in enumerate(spec.data_quality)
    ]
    kpis = [
        CheckQuery(
            f"spec.kpis[{i}].query",
            render_template(kpi.query, variables, field=f"spec.kpis[{i}].query"),
            parse_duration(kpi.label_delay) if kpi.label_delay else timedelta(0),
        )
        for i, kpi in enumerate(spec.kpis)
    ]
    labels = [
        CheckQuery(
            f"spec.kpis[{i}].labelsQuery",
            render_template(kpi.labels_query, variables, field=f"spec.kpis[{i}].labelsQuery"),
        )
        if kpi.labels_query
        else None
        for i, kpi in enumerate(spec.kpis)
    ]
    samples: list[CheckQuery | None] = []
    for prefix, bounded in (("spec.dataQuality", spec.data_quality), ("spec.kpis", spec.kpis)):
        for i, check in enumerate(bounded):
            where = f"{prefix}[{i}].samplesQuery"
            delay = (
                parse_duration(check.label_delay) if isinstance(check, Kpi) and check.label_delay else None
            )
            samples.append(
                CheckQuery(
                    where, render_template(check.samples_query, variables, field=where), delay or timedelta(0)
                )
                if check.samples_query
                else None
            )
    estimates = [
        estimate_query(f"spec.kpis[{i}].estimate", kpi.estimate, spec.model, parse_duration(kpi.label_delay))
        if kpi.estimate is not None and kpi.label_delay is not None
        else None
        for i, kpi in enumerate(spec.kpis)
    ]
    return QueryPlan(drift, prediction, checks, kpis, labels, samples, estimates)
