"""Evaluate a ModelMonitor once: issue the planned queries, compute every signal.

Nothing here knows about Kubernetes: the live operator, the demo and the backtest all call
:func:`evaluate` with a different :class:`MetricSource`.
"""

from __future__ import annotations

import asyncio
import dataclasses
import math
import time
from collections.abc import Awaitable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum

import numpy as np

from evergreen.analysis import AlignedHistograms, HistogramSet, SeriesKey, align, drift_scores
from evergreen.analysis.drift import DriftScores
from evergreen.analysis.layouts import LayoutChange, layout_changes
from evergreen.analysis.series import BoolArray, FloatArray
from evergreen.api.spec import BoundedQuery, HistogramDrift, ModelMonitorSpec
from evergreen.api.status import (
    CheckOutcome,
    DriftSummary,
    EvaluationSummary,
    SeriesDrift,
    Severity,
)
from evergreen.errors import AnalysisError, MetricsUnavailable, QueryRejected
from evergreen.observation.checks import check_outcome, errored_outcome, series_key
from evergreen.observation.plan import CheckQuery, HistogramQuery, Window, plan
from evergreen.signals.samples import QueryResult, Sample
from evergreen.signals.source import MetricSource

#: The whole-population pseudo-feature name used for a prediction histogram.
PREDICTION = "prediction"
#: Scores are capped here in reports (status, metrics): JSON cannot carry +Inf.
MAX_SCORE = 1e6


class ProblemKind(StrEnum):
    """Why a signal has no value: each leads to its own reason when nothing could be judged."""

    #: Prometheus could not be reached or answered with a server error.
    UNAVAILABLE = "Unavailable"
    #: Prometheus rejected the query (a syntax error, a zero offset): the spec must change.
    REJECTED = "Rejected"
    #: The query was answered, with no series (a model name that matches nothing, no traffic).
    NO_DATA = "NoData"
    #: The current window has data, the baseline does not hold ``minSamples`` yet (warm-up).
    BASELINE_NOT_READY = "BaselineNotReady"
    #: The answer cannot be used (malformed histograms).
    INVALID = "Invalid"


@dataclass(frozen=True)
class SignalProblem:
    """Why one signal could not be evaluated; ``field`` points at the spec."""

    field: str
    kind: ProblemKind
    message: str


@dataclass(frozen=True)
class DriftResult:
    """Drift of one histogram family, every feature × segment (and per-feature totals).

    ``scores`` compare the baseline with the current window; ``step`` compares the previous
    window with the current one (NaN where either had no traffic), which tells a sudden
    change from a gradual one.
    """

    field: str
    config: HistogramDrift
    scores: DriftScores
    aligned: AlignedHistograms
    step: FloatArray
    #: Series whose baseline is ready to judge against (None: all of them). A baseline read
    #: from Prometheus must hold ``minSamples`` observations of the series; a reference from
    #: a ConfigMap is complete by definition.
    ready: BoolArray | None = None
    #: Series whose bucket layout differs between the baseline and the current window.
    layouts: Mapping[SeriesKey, LayoutChange] = dataclasses.field(default_factory=dict)

    @property
    def judgeable(self) -> BoolArray:
        """Series judged now: a ready baseline, and no window mixing two bucket layouts."""
        mixed = np.array([key in self.layouts and self.layouts[key].mixed for key in self.scores.keys])
        result: BoolArray = self.baseline_ready & ~mixed if mixed.size else self.baseline_ready
        return result

    @property
    def baseline_ready(self) -> BoolArray:
        """Series judged against their baseline (the rest are warming up)."""
        if self.ready is None:
            return np.ones(len(self.scores.keys), dtype=bool)
        return self.ready

    def not_ready(self) -> list[SeriesKey]:
        """Series with current data whose baseline is still filling (warm-up)."""
        return [
            key
            for key, ready, current in zip(
                self.scores.keys, self.baseline_ready, self.scores.current_total, strict=True
            )
            if not ready and current > 0
        ]

    def step_of(self) -> dict[SeriesKey, float]:
        return dict(zip(self.scores.keys, self.step.tolist(), strict=True))

    def severities(self) -> list[Severity]:
        severities = []
        for score, ready in zip(self.scores.score, self.judgeable, strict=True):
            if math.isnan(score) or not ready:  # no traffic in a window, or a baseline warming up
                severities.append(Severity.NO_DATA)
            elif score >= self.config.critical:
                severities.append(Severity.CRITICAL)
            elif score >= self.config.warning:
                severities.append(Severity.WARNING)
            else:
                severities.append(Severity.OK)
        return severities

    def series(self) -> list[SeriesDrift]:
        """Every compared series with a score, highest score first."""
        rows = []
        for key, score, samples, severity in zip(
            self.scores.keys,
            self.scores.score,
            self.scores.effective_samples,
            self.severities(),
            strict=True,
        ):
            if severity is Severity.NO_DATA:
                continue
            rows.append(
                SeriesDrift(
                    feature=key.feature,
                    segment=key.segment_text,
                    # A Wasserstein score is +Inf against a constant baseline; JSON has no
                    # infinity, and any score this large says the same thing.
                    score=round(min(float(score), MAX_SCORE), 6),
                    severity=severity,
                    samples=round(float(samples), 1),
                    low_samples=bool(samples < self.config.min_samples),
                )
            )
        rows.sort(key=lambda row: (-row.score, row.feature, row.segment))
        return rows

    def judged(self) -> list[SeriesDrift]:
        """Series with enough samples to be judged (the rest are reported, not acted on)."""
        return [row for row in self.series() if not row.low_samples]

    def summary(self, top: int) -> DriftSummary:
        rows = self.series()
        judged = [row for row in rows if not row.low_samples]
        severities = self.severities()
        return DriftSummary(
            method=self.config.method.value,
            series=len(severities),
            no_data=severities.count(Severity.NO_DATA) - len(self.not_ready()),
            baseline_not_ready=len(self.not_ready()),
            warning=sum(row.severity is Severity.WARNING for row in judged),
            critical=sum(row.severity is Severity.CRITICAL for row in judged),
            max_score=max((row.score for row in judged), default=None),
            top=rows[:top],
        )


@dataclass(frozen=True)
class Evaluation:
    """Everything one evaluation learned, in full (status gets a bounded summary)."""

    time: datetime
    duration_seconds: float
    queries: int
    drift: DriftResult | None = None
    prediction_drift: DriftResult | None = None
    data_quality: tuple[CheckOutcome, ...] = ()
    kpis: tuple[CheckOutcome, ...] = ()
    problems: tuple[SignalProblem, ...] = field(default_factory=tuple)

    @property
    def unavailable(self) -> bool:
        """Prometheus could not be read at all: the evaluation carries no information."""
        return any(problem.kind is ProblemKind.UNAVAILABLE for problem in self.problems)

    def summary(self, top: int = 10) -> EvaluationSummary:
        return EvaluationSummary(
            time=self.time,
            duration_seconds=round(self.duration_seconds, 4),
            queries=self.queries,
            drift=self.drift.summary(top) if self.drift else None,
            prediction_drift=self.prediction_drift.summary(top) if self.prediction_drift else None,
            data_quality=list(self.data_quality),
            kpis=list(self.kpis),
        )


def _histograms(
    answer: QueryResult, drift: HistogramDrift, feature_label: str | None, field: str
) -> HistogramSet:
    histograms = HistogramSet.from_columns(
        answer.columns,
        answer.values,
        feature_label=feature_label,
        segment_labels=list(drift.segment_by),
        default_feature=PREDICTION,
    )
    if not len(histograms) and histograms.samples_without_bound:
        raise AnalysisError(
            f"none of the {histograms.samples_without_bound} {drift.histogram}_bucket series has an le "
            f"label: {field}.histogram must name a classic Prometheus histogram (its _bucket series "
            "carry le); check recording rules or relabelling that drop it"
        )
    return histograms.with_totals() if drift.segment_by else histograms


class _Reader:
    """Runs queries concurrently and turns failures into SignalProblems."""

    def __init__(self, source: MetricSource, at: datetime) -> None:
        self.source = source
        self.at = at
        self.issued = 0

    async def read(
        self, query: str, field: str, delay: timedelta = timedelta(0)
    ) -> QueryResult | SignalProblem:
        self.issued += 1
        try:
            return await self.source.instant(query, self.at - delay, field=field)
        except QueryRejected as error:
            return SignalProblem(error.field, ProblemKind.REJECTED, error.message)
        except MetricsUnavailable as error:
            return SignalProblem(field, ProblemKind.UNAVAILABLE, str(error))


async def _drift(
    reader: _Reader,
    field: str,
    config: HistogramDrift,
    queries: list[HistogramQuery],
    feature_label: str | None,
    reference: Sequence[Sample] | None,
) -> DriftResult | SignalProblem:
    answers = await asyncio.gather(*(reader.read(q.promql, field) for q in queries))
    by_window: dict[Window, QueryResult] = {}
    for query, answer in zip(queries, answers, strict=True):
        if isinstance(answer, SignalProblem):
            return answer
        by_window[query.window] = answer
    current = by_window[Window.CURRENT]
    if Window.BASELINE in by_window:
        baseline = by_window[Window.BASELINE]
    elif reference is not None:
        baseline = QueryResult(f"{field}.baseline.configMap", reference)
    else:
        return SignalProblem(
            f"{field}.baseline.configMap", ProblemKind.NO_DATA, "reference histograms are missing"
        )
    if current.empty:
        return SignalProblem(
            field, ProblemKind.NO_DATA, f"no {config.histogram}_bucket series for the current window"
        )
    if baseline.empty:
        # The current window has data: the baseline window has not reached any yet (warm-up,
        # an offset beyond retention).
        return SignalProblem(
            f"{field}.baseline",
            ProblemKind.BASELINE_NOT_READY,
            f"baseline not ready: no {config.histogram}_bucket series in the baseline window yet",
        )
    try:
        current_histograms = _histograms(current, config, feature_label, field)
        baseline_histograms = _histograms(baseline, config, feature_label, field)
        layouts = layout_changes(baseline_histograms, current_histograms)
        aligned = align(baseline_histograms, current_histograms)
        scores = drift_scores(config.method, aligned)
        previous = by_window.get(Window.PREVIOUS)
        step = np.full(len(scores.keys), np.nan)
        if previous is not None and not previous.empty:
            previous_histograms = _histograms(previous, config, feature_label, field)
            step_scores = drift_scores(config.method, align(previous_histograms, current_histograms))
            # A window holding two layouts has no step to show; a pure change of layout is
            # compared on the shared bounds like any other.
            unsteppable = {
                k for k, c in layout_changes(previous_histograms, current_histograms).items() if c.mixed
            }
            by_key = dict(zip(step_scores.keys, step_scores.score.tolist(), strict=True))
            step = np.array(
                [np.nan if key in unsteppable else by_key.get(key, np.nan) for key in scores.keys]
            )
    except AnalysisError as error:
        return SignalProblem(field, ProblemKind.INVALID, str(error))
    from_prometheus = Window.BASELINE in by_window
    ready = scores.baseline_total >= config.min_samples if from_prometheus else None
    result = DriftResult(field, config, scores, aligned, step, ready, layouts)
    if not result.baseline_ready.any():
        most = float(np.max(scores.baseline_total, initial=0.0))
        return SignalProblem(
            f"{field}.baseline",
            ProblemKind.BASELINE_NOT_READY,
            f"baseline not ready: no {config.histogram} series has minSamples ({config.min_samples}) "
            f"observations in the baseline window yet (most: {most:.0f})",
        )
    return result


async def _check(
    reader: _Reader,
    check: BoundedQuery,
    query: CheckQuery,
    labels: CheckQuery | None = None,
    samples: CheckQuery | None = None,
) -> tuple[CheckOutcome, SignalProblem | None]:
    answer = await reader.read(query.promql, query.field, query.delay)
    if isinstance(answer, SignalProblem):
        return errored_outcome(check, answer.message), answer
    counts = None
    if samples is not None:
        counted = await reader.read(samples.promql, samples.field, samples.delay)
        if isinstance(counted, SignalProblem):
            return errored_outcome(check, counted.message), counted
        # A series without a count rests on no observations.
        counts = {series_key(s.labels): s.value for s in counted.samples if not math.isnan(s.value)}
    outcome = check_outcome(check, answer, counts)
    if labels is not None:
        arriving = await reader.read(labels.promql, labels.field)
        if isinstance(arriving, SignalProblem):
            return outcome, arriving
        # An empty answer is a counter without increase: no labels arrive.
        rate = sum(s.value for s in arriving.samples if not math.isnan(s.value))
        outcome = outcome.model_copy(update={"label_rate": rate})
    problem = None
    if answer.empty or outcome.message == "the query returned no data":
        problem = SignalProblem(query.field, ProblemKind.NO_DATA, f"{check.name}: the query returned no data")
    return outcome, problem


async def evaluate(
    spec: ModelMonitorSpec,
    source: MetricSource,
    at: datetime,
    *,
    namespace: str,
    references: Mapping[str, Sequence[Sample]] | None = None,
    version: str | None = None,
    baseline_anchor: datetime | None = None,
    baseline_until: datetime | None = None,
) -> Evaluation:
    """Evaluate every configured signal at ``at``.

    ``references`` holds reference histograms for ConfigMap baselines, keyed by the drift
    field (``spec.drift`` / ``spec.predictionDrift``). ``baseline_anchor`` keeps baselines
    from reaching before it (a promotion, an acknowledged change); ``baseline_until`` keeps
    them from reaching after it (an open incident). Template errors raise SpecError before
    any query is sent.
    """
    started = time.perf_counter()
    queries = plan(
        spec,
        namespace,
        version=version,
        at=at,
        baseline_anchor=baseline_anchor,
        baseline_until=baseline_until,
    )
    reader = _Reader(source, at)
    references = references or {}

    drift_tasks: list[Awaitable[DriftResult | SignalProblem]] = []
    if spec.drift is not None:
        drift_tasks.append(
            _drift(
                reader,
                "spec.drift",
                spec.drift,
                queries.drift,
                spec.drift.feature_label,
                references.get("spec.drift"),
            )
        )
    if spec.prediction_drift is not None:
        drift_tasks.append(
            _drift(
                reader,
                "spec.predictionDrift",
                spec.prediction_drift,
                queries.prediction_drift,
                None,
                references.get("spec.predictionDrift"),
            )
        )
    label_queries = queries.kpi_labels or [None] * len(queries.kpis)
    sample_queries = queries.samples or [None] * (len(queries.data_quality) + len(queries.kpis))
    check_tasks = [
        _check(reader, check, query, labels, samples)
        for check, query, labels, samples in zip(
            [*spec.data_quality, *spec.kpis],
            [*queries.data_quality, *queries.kpis],
            [None] * len(queries.data_quality) + list(label_queries),
            sample_queries,
            strict=True,
        )
    ]
    # One gather for everything: an evaluation costs its slowest query, not their sum.
    drift_answers, check_answers = await asyncio.gather(
        asyncio.gather(*drift_tasks), asyncio.gather(*check_tasks)
    )

    problems: list[SignalProblem] = []
    results: list[DriftResult | None] = []
    for answer in drift_answers:
        if isinstance(answer, SignalProblem):
            problems.append(answer)
            results.append(None)
        else:
            results.append(answer)
    drift = results.pop(0) if spec.drift is not None else None
    prediction = results.pop(0) if spec.prediction_drift is not None else None
    problems.extend(problem for _, problem in check_answers if problem is not None)
    outcomes = [outcome for outcome, _ in check_answers]
    quality_count = len(spec.data_quality)

    return Evaluation(
        time=at,
        duration_seconds=time.perf_counter() - started,
        queries=reader.issued,
        drift=drift,
        prediction_drift=prediction,
        data_quality=tuple(outcomes[:quality_count]),
        kpis=tuple(outcomes[quality_count:]),
        problems=tuple(problems),
    )
