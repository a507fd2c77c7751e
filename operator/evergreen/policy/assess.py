"""Assess one evaluation: which series really moved, and is it the world or the pipeline?

Noise control comes first, then classification. Every rule is documented here because users
read these rules (docs/decisions.md quotes them):

**Significance.** A series counts as moved only if its chi-square homogeneity test survives
Benjamini-Hochberg at ``policy.falseDiscoveryRate`` across every series of the family in this
evaluation (features x segments x totals). Testing hundreds of series at once would otherwise
flag some by chance every evaluation.

**Small samples.** Below ``minSamples`` effective samples a series is judged with wider
tolerance, not ignored: its thresholds are multiplied by ``sqrt(minSamples / n_eff)`` (a
series with a quarter of the samples needs twice the score), because sampling noise in a
drift score shrinks like ``1 / sqrt(n)``.

**Hysteresis.** A series flagged in the previous evaluation stays flagged until its score
falls below ``(1 - policy.hysteresis)`` x its threshold, so a score hovering at a threshold
does not flap.

**Step.** A series *stepped* when the drift between the previous and the current window
(adjacent windows of the same length) is itself at or above ``critical``: real drift moves
a little between adjacent windows, a broken pipeline moves all at once. A series below
``minSamples`` never steps: between two thin windows that is mostly sampling noise.

**Pipeline breaks** (data-quality incidents: hold, do not retrain):

- *unit change*: the current quantiles are an affine transform of the baseline's
  (``r² >= 0.98`` over at least 4 quantile pairs) with a slope far from 1 (beyond x1.5 or
  /1.5) or matching a known unit conversion (°C→°F is slope 1.8, offset 32), and the series
  stepped;
- *collapsed*: at least 90% of the current mass in one bucket where the baseline never had
  more than 50% (a feature stuck at a constant or a default);
- *out of range*: at least half of the current mass where the baseline had (almost) none, and
  the series stepped;
- *segment break*: a feature breaks (stepped or collapsed) in some segments while its other
  segments and its whole population stay below warning: an incident of that segment (a
  browser beta breaking a cookie), not a model problem;
- *upstream change*: ``policy.upstreamFeatures`` or more features stepped in the same
  evaluation;
- a data-quality check out of bounds.

A break stays a break while the series stays beyond its (hysteresis-lowered) threshold, even
after the step has left both windows, and keeps its most specific explanation (upstream, then
segment, then unit change, collapse, out of range).

**Real drift** is what remains at critical: gradual (no step) and not a break. Stepped series
without a break signature are *sudden shifts*: watched, never acted on by themselves.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np

from evergreen.analysis import SeriesKey
from evergreen.analysis.multiple_testing import benjamini_hochberg
from evergreen.analysis.signatures import BreakSignatures, signatures
from evergreen.api.decisions import Assessment, BreakKind, Evidence, Finding
from evergreen.api.spec import BoundedQuery, HistogramDrift, ModelMonitorSpec, NoDataPolicy
from evergreen.api.status import CheckOutcome, CheckSeries, CheckState
from evergreen.observation.checks import widened
from evergreen.observation.evaluate import DriftResult, Evaluation, ProblemKind, SignalProblem

#: Affine fits at least this good describe a transform of the same values.
MIN_FIT = 0.98
MIN_FIT_POINTS = 4
#: A slope beyond this factor (either way) is a scale change, not drift. Real unit changes are
#: large (x1000, x100, x2.54, x1.8) and most match a known conversion anyway; a sudden 1-sigma
#: jump of a skewed feature already fits a slope of ~1.26, so the unnamed threshold stays wide.
SCALE_FACTOR = 1.5
#: How specific an explanation is: structural ones (many features, one segment) first.
_SPECIFICITY = {
    BreakKind.UPSTREAM_CHANGE: 5,
    BreakKind.SEGMENT_BREAK: 4,
    BreakKind.UNIT_CHANGE: 3,
    BreakKind.COLLAPSED: 2,
    BreakKind.OUT_OF_RANGE: 1,
    BreakKind.DATA_QUALITY: 0,
    BreakKind.LABELS_STOPPED: -1,
}
#: Share of mass in one bucket that means "collapsed to a constant".
COLLAPSED_SHARE = 0.9
#: The baseline's largest bucket share above which collapse cannot be told from the feature.
PEAKED_BASELINE = 0.5
#: Share of current mass outside the baseline's support that means "out of range".
OUT_OF_RANGE_SHARE = 0.5
#: Findings kept per list in status.
MAX_FINDINGS = 20


@dataclass(frozen=True)
class _Series:
    key: SeriesKey
    score: float
    samples: float
    step: float
    critical: float
    warning: float
    significant: bool


def _thresholds(
    config: HistogramDrift, samples: float, flagged: bool, hysteresis: float
) -> tuple[float, float]:
    factor = math.sqrt(config.min_samples / samples) if 0 < samples < config.min_samples else 1.0
    if flagged:
        factor *= 1 - hysteresis
    return config.critical * factor, config.warning * factor


def _series(result: DriftResult, flagged: set[str], hysteresis: float, rate: float) -> list[_Series]:
    scores = result.scores
    significant = benjamini_hochberg(scores.p_value, rate)
    ready = result.judgeable
    rows = []
    for i, key in enumerate(scores.keys):
        score = float(scores.score[i])
        if math.isnan(score) or not ready[i]:
            continue  # no data, or a baseline still warming up: not judged
        samples = float(scores.effective_samples[i])
        critical, warning = _thresholds(
            result.config, samples, f"{key.feature}|{key.segment_text}" in flagged, hysteresis
        )
        rows.append(
            _Series(key, score, samples, float(result.step[i]), critical, warning, bool(significant[i]))
        )
    return rows


def _finding(row: _Series, threshold: float, kind: BreakKind | None = None, detail: str = "") -> Finding:
    return Finding(
        feature=row.key.feature,
        segment=row.key.segment_text,
        score=round(min(row.score, 1e6), 6),
        threshold=round(threshold, 6),
        samples=round(row.samples, 1),
        step=None if math.isnan(row.step) else round(min(row.step, 1e6), 6),
        kind=kind,
        detail=detail,
    )


def _signature(sig: BreakSignatures, i: int, stepped: bool) -> tuple[BreakKind, str] | None:
    """The break signature of series ``i``, if it has one."""
    fit = sig.fit
    peak = sig.concentration
    # A constant is the degenerate affine transform (slope 0): name the more specific cause.
    if peak.current_max_share[i] >= COLLAPSED_SHARE and peak.baseline_max_share[i] <= PEAKED_BASELINE:
        return BreakKind.COLLAPSED, f"{peak.current_max_share[i]:.0%} of values in one bucket"
    slope, offset = float(fit.slope[i]), float(fit.offset[i])
    straight = fit.points[i] >= MIN_FIT_POINTS and float(fit.r_squared[i]) >= MIN_FIT
    conversion = str(sig.conversion[i])
    rescaled = slope > 0 and abs(math.log(slope)) >= math.log(SCALE_FACTOR)
    if stepped and straight and (conversion or rescaled):
        named = f", {conversion}" if conversion else ""
        sign = "+" if offset >= 0 else "-"
        error = float(fit.slope_error[i])
        spread = f" ± {error:.2g}" if math.isfinite(error) and error > 0 else ""
        return (
            BreakKind.UNIT_CHANGE,
            f"current = ({slope:.3g}{spread}) x baseline {sign} {abs(offset):.3g}{named}",
        )
    if stepped and sig.outside_support[i] >= OUT_OF_RANGE_SHARE:
        return BreakKind.OUT_OF_RANGE, f"{sig.outside_support[i]:.0%} of values outside the baseline's range"
    return None


def _findings_of_drift(
    result: DriftResult,
    previous: Assessment | None,
    spec: ModelMonitorSpec,
) -> tuple[list[Finding], list[Finding], list[Finding], list[Finding]]:
    """(breaks, real drift, warnings, sudden shifts) of one feature-drift family."""
    policy = spec.policy
    flagged = _flagged(previous)
    known_breaks = {f.key: f for f in previous.breaks} if previous else {}
    rows = _series(result, flagged, policy.hysteresis, policy.false_discovery_rate)
    index = {key: i for i, key in enumerate(result.scores.keys)}
    sig = signatures(result.aligned)

    critical = [r for r in rows if r.significant and r.score >= r.critical]
    warning = [r for r in rows if r.significant and r.warning <= r.score < r.critical]
    # A step between two thin adjacent windows is mostly sampling noise: only a series with
    # minSamples can have stepped (a thin one still counts as drift, with wider thresholds).
    stepped = {
        r.key
        for r in critical
        if not math.isnan(r.step)
        and r.step >= result.config.critical
        and r.samples >= result.config.min_samples
    }

    breaks: dict[SeriesKey, Finding] = {}
    for row in critical:
        found = _signature(sig, index[row.key], row.key in stepped)
        known = known_breaks.get(f"{row.key.feature}|{row.key.segment_text}")
        # An incident keeps its most specific explanation so far: a sticky upstream or segment
        # break is not renamed by a per-series signature seen later in the same incident.
        if (
            known is not None
            and known.kind is not None
            and (found is None or _SPECIFICITY[known.kind] >= _SPECIFICITY[found[0]])
        ):
            breaks[row.key] = _finding(row, row.critical, known.kind, known.detail)
        elif found is not None:
            breaks[row.key] = _finding(row, row.critical, *found)

    _segment_breaks(critical, warning, rows, stepped, breaks, result.config.min_samples)
    upstream = {r.key.feature for r in critical if r.key in stepped}
    if len(upstream) >= policy.upstream_features:
        detail = f"{len(upstream)} features changed at once: {', '.join(sorted(upstream))}"
        for row in critical:
            if row.key.feature in upstream:
                breaks[row.key] = _finding(row, row.critical, BreakKind.UPSTREAM_CHANGE, detail)

    drift = [_finding(r, r.critical) for r in critical if r.key not in breaks and r.key not in stepped]
    sudden = [
        _finding(r, r.critical, detail="stepped between consecutive windows")
        for r in critical
        if r.key not in breaks and r.key in stepped
    ]
    warnings = [_finding(r, r.warning) for r in warning]
    return _top(breaks.values()), _top(drift), _top(warnings), _top(sudden)


def _segment_breaks(
    critical: Sequence[_Series],
    warning: Sequence[_Series],
    rows: Sequence[_Series],
    stepped: set[SeriesKey],
    breaks: dict[SeriesKey, Finding],
    min_samples: float,
) -> None:
    """Reclassify breaks confined to some segments of a feature as segment breaks.

    Confined means: at least one other, well-sampled segment of the feature did not move at
    all. The feature's whole-population series then moves only because it contains the
    broken segments, so it is part of the same incident. An under-sampled segment that did
    not move proves nothing: its widened thresholds hide a change as large as the others'.
    """
    moved = {r.key for r in (*critical, *warning)}
    by_feature: dict[str, list[_Series]] = {}
    for row in rows:
        by_feature.setdefault(row.key.feature, []).append(row)
    for feature, series in by_feature.items():
        segments = [r for r in series if r.key.segment]
        broken = [r for r in segments if r in critical and (r.key in stepped or r.key in breaks)]
        healthy = [r for r in segments if r.key not in moved and r.samples >= min_samples]
        # A thin segment that did not move neither confirms nor vetoes: it is left out.
        drifting = [r for r in segments if r.key in moved and r not in broken]
        if len(segments) < 2 or not broken or not healthy or drifting:
            continue  # nothing broke, the whole feature moved, or other segments drift too
        names = ", ".join(r.key.segment_text for r in broken)
        for row in broken:
            known = breaks.get(row.key)
            if known is not None and known.kind is BreakKind.SEGMENT_BREAK:
                continue  # already explained (a sticky break from an earlier evaluation)
            how = (
                f"{known.kind.value}: {known.detail}"
                if known is not None and known.kind is not None
                else "stepped between consecutive windows"
            )
            breaks[row.key] = _finding(
                row, row.critical, BreakKind.SEGMENT_BREAK, f"only {names} of {feature} changed ({how})"
            )
        for row in series:
            if not row.key.segment and row in critical:
                breaks[row.key] = _finding(
                    row, row.critical, BreakKind.SEGMENT_BREAK, f"{feature} moved because {names} broke"
                )


def _flagged(previous: Assessment | None) -> set[str]:
    if previous is None:
        return set()
    return {f.key for f in (*previous.breaks, *previous.drift, *previous.warnings, *previous.sudden)}


def _top(findings: Iterable[Finding]) -> list[Finding]:
    return sorted(findings, key=lambda f: (-f.score, f.feature, f.segment))[:MAX_FINDINGS]


def _prediction_findings(
    result: DriftResult, previous: Assessment | None, spec: ModelMonitorSpec
) -> list[Finding]:
    flagged = {f.key for f in previous.prediction_drift} if previous else set()
    rows = _series(result, flagged, spec.policy.hysteresis, spec.policy.false_discovery_rate)
    return _top(_finding(r, r.critical) for r in rows if r.significant and r.score >= r.critical)


#: The reason code when nothing could be judged: the cause a person must act on first.
_UNKNOWN_REASONS = (
    (ProblemKind.UNAVAILABLE, "PrometheusUnavailable"),
    (ProblemKind.REJECTED, "QueryRejected"),
    (ProblemKind.INVALID, "UnusableMetrics"),
    (ProblemKind.BASELINE_NOT_READY, "BaselineNotReady"),
    (ProblemKind.NO_DATA, "NoData"),
)
_PROBLEM_WORDS = {
    ProblemKind.UNAVAILABLE: "Prometheus error",
    ProblemKind.REJECTED: "query rejected by Prometheus",
    ProblemKind.INVALID: "unusable answer",
    ProblemKind.BASELINE_NOT_READY: "baseline not ready",
    ProblemKind.NO_DATA: "empty answer",
}
_SIGNAL_OF_FIELD = (
    ("spec.predictionDrift", "predictionDrift"),
    ("spec.drift", "drift"),
    ("spec.dataQuality", "dataQuality"),
    ("spec.kpis", "kpi"),
)


def _missing(problem: SignalProblem) -> Evidence:
    """A signal without a value as evidence: which signal, which query, and why."""
    signal = next((name for prefix, name in _SIGNAL_OF_FIELD if problem.field.startswith(prefix)), "signal")
    words = _PROBLEM_WORDS[problem.kind]
    message = problem.message
    if message.startswith(f"{words}: "):
        message = message[len(words) + 2 :]
    return Evidence(signal="missing", detail=f"{signal} ({problem.field}): {words}: {message}")


def _informative(evaluation: Evaluation) -> bool:
    """Whether any signal produced a value to judge."""
    return bool(
        evaluation.drift
        or evaluation.prediction_drift
        or any(
            outcome.state in (CheckState.OK, CheckState.BREACHED)
            for outcome in (*evaluation.data_quality, *evaluation.kpis, *evaluation.estimates)
        )
    )


def _where(labels: dict[str, str], feature_label: str | None) -> tuple[str | None, str | None]:
    """(feature, segment) of a check series: the feature label, and every other label."""
    feature = labels.get(feature_label) if feature_label else None
    rest = ",".join(f"{k}={v}" for k, v in sorted(labels.items()) if k != feature_label)
    return feature, rest or None


def _recovered(value: float, check: BoundedQuery, margin: float) -> bool:
    """Whether a value is back inside its bounds by ``margin`` x the bound."""
    if check.min is not None and value < check.min + abs(check.min) * margin:
        return False
    return not (check.max is not None and value > check.max - abs(check.max) * margin)


def _breaches(
    signal: str,
    check: BoundedQuery,
    outcome: CheckOutcome,
    before: Sequence[Evidence],
    margin: float,
    feature_label: str | None,
) -> list[Evidence]:
    """Every breached series of a check, as evidence naming its feature and segment.

    Hysteresis: a series breached in the previous assessment stays breached until it is back
    inside its bound by ``margin`` x the bound, so a value sitting at a bound does not flap.
    """
    series_list = list(outcome.series)
    if not series_list and (outcome.value is not None or outcome.labels):
        # An outcome that carries only its worst series (recorded before series were kept).
        worst = CheckSeries(
            labels=outcome.labels, value=outcome.value, breached=outcome.state is CheckState.BREACHED
        )
        series_list = [worst]
    if outcome.state is CheckState.BREACHED and not series_list:
        # onNoData: Breach: no series to name.
        return [Evidence(signal=signal, check=check.name, detail=outcome.message or "breached")]
    held = {(e.feature, e.segment) for e in before if e.check == check.name}
    found = []
    for series in series_list:
        feature, segment = _where(series.labels, feature_label)
        value = series.value
        bounds = widened(check, series.samples)
        if series.breached:
            detail = (
                outcome.message if series.labels == outcome.labels and outcome.message else "outside bounds"
            )
        elif (feature, segment) in held and value is not None and not _recovered(value, bounds, margin):
            detail = f"not recovered yet (clears {margin:.0%} inside the bound)"
        else:
            continue
        low = bounds.min is not None and value is not None and value < bounds.min + abs(bounds.min) * margin
        found.append(
            Evidence(
                signal=signal,
                check=check.name,
                feature=feature,
                segment=segment,
                value=value,
                threshold=bounds.min if low or bounds.max is None else bounds.max,
                detail=detail,
            )
        )
    return found


def _labels(
    spec: ModelMonitorSpec, evaluation: Evaluation, previous: Assessment | None, *, moved: bool
) -> tuple[list[str], list[Evidence]]:
    """(KPIs whose labels arrive, label-pipeline incidents).

    A KPI's labels *stopped* when none arrive now, they did at the previous evaluation (or
    had already stopped), predictions keep flowing (the current drift window has traffic)
    and neither inputs nor outputs moved: the labels are late or lost, not the concept
    changed. A labels query that never saw labels arrive is not enough to call a stop.
    """
    flowing = [o.name for o in evaluation.kpis if o.label_rate is not None and o.label_rate > 0]
    before = set(previous.labels_flowing) if previous else set()
    before |= {e.check for e in previous.labels_stopped if e.check} if previous else set()
    traffic = evaluation.drift is not None or evaluation.prediction_drift is not None
    stopped = [
        Evidence(
            signal="labels",
            check=o.name,
            value=o.label_rate,
            threshold=0.0,
            detail="no labels arrive while predictions continue",
        )
        for o in evaluation.kpis
        if o.label_rate is not None and o.label_rate <= 0 and o.name in before and traffic and not moved
    ]
    return flowing, stopped


def _layouts(evaluation: Evaluation) -> list[Evidence]:
    """Bucket layout changes, reported for what they are: never drift."""
    return [
        Evidence(signal="layout", feature=key.feature, segment=key.segment_text, detail=change.describe())
        for result in (evaluation.drift, evaluation.prediction_drift)
        if result is not None
        for key, change in result.layouts.items()
    ]


def _judged_drift(signal: str, result: DriftResult | None) -> list[Evidence]:
    if result is None:
        return []
    ready = result.judgeable & ~np.isnan(result.scores.score)
    count = int(ready.sum())
    if not count:
        return []
    top = float(np.max(result.scores.score[ready]))
    warming = len(result.not_ready())
    detail = f"{count} series judged" + (f", {warming} with a baseline still filling" if warming else "")
    return [
        Evidence(
            signal=signal,
            value=round(min(top, 1e6), 6),
            threshold=result.config.critical,
            window=result.config.window,
            detail=detail,
        )
    ]


def _judged_checks(signal: str, outcomes: Iterable[CheckOutcome], label: str | None) -> list[Evidence]:
    return [
        Evidence(
            signal=signal,
            feature=outcome.labels.get(label) if label else None,
            value=outcome.value,
            threshold=outcome.min if outcome.min is not None else outcome.max,
            detail=outcome.display_name,
        )
        for outcome in outcomes
        if outcome.state is CheckState.OK
    ]


@dataclass(frozen=True)
class _Estimates:
    breaches: list[Evidence]
    judged: list[str]
    drift: list[Evidence]
    held: list[str]


def _estimates(spec: ModelMonitorSpec, evaluation: Evaluation, previous: Assessment | None) -> _Estimates:
    """Estimated KPIs judged like measured ones, and how their labelled windows compared.

    Breaches carry signal ``kpiEstimate`` so no surface can mistake them for measurements.
    """
    declared = {kpi.name: kpi for kpi in spec.kpis if kpi.estimate is not None}
    before = previous.estimate_breaches if previous else []
    breaches: list[Evidence] = []
    judged: list[str] = []
    drift: list[Evidence] = []
    held: list[str] = []
    for outcome in evaluation.estimates:
        kpi = declared.get(outcome.name)
        if kpi is None or kpi.estimate is None:
            continue
        if outcome.state in (CheckState.OK, CheckState.BREACHED):
            judged.append(kpi.name)
        found = _breaches("kpiEstimate", kpi, outcome, before, spec.policy.bound_hysteresis, None)
        threshold = kpi.estimate.threshold
        breaches += [
            e.model_copy(update={"detail": f"estimated from scores at threshold {threshold:g}: {e.detail}"})
            for e in found
        ]
        calibration = outcome.calibration
        if calibration is None or calibration.gap is None:
            continue
        if calibration.drifted:
            _, segment = _where(calibration.labels, None)
            drift.append(
                Evidence(
                    signal="calibration",
                    check=kpi.name,
                    segment=segment,
                    value=calibration.gap,
                    threshold=calibration.tolerance,
                    window=kpi.label_delay,
                    detail=calibration.message or "",
                )
            )
        else:
            held.append(kpi.name)
    return _Estimates(breaches, judged, drift, held)


def _unknown_reason(problems: Sequence[SignalProblem]) -> str:
    kinds = {problem.kind for problem in problems}
    return next((reason for kind, reason in _UNKNOWN_REASONS if kind in kinds), "NoData")


def _missing_reason(spec: ModelMonitorSpec, evaluation: Evaluation, informative: bool) -> str | None:
    """Why nothing, or the feature drift, could not be judged (None: it could)."""
    if not informative:
        return _unknown_reason(evaluation.problems)
    if spec.drift is not None and evaluation.drift is None:
        return _unknown_reason([p for p in evaluation.problems if p.field.startswith("spec.drift")])
    return None


def assess(spec: ModelMonitorSpec, evaluation: Evaluation, previous: Assessment | None) -> Assessment:
    """Classify what one evaluation shows (pure; ``previous`` gives hysteresis and sticky breaks)."""
    breaks: list[Finding] = []
    drift: list[Finding] = []
    warnings: list[Finding] = []
    sudden: list[Finding] = []
    if evaluation.drift is not None:
        breaks, drift, warnings, sudden = _findings_of_drift(evaluation.drift, previous, spec)
    prediction = (
        _prediction_findings(evaluation.prediction_drift, previous, spec)
        if evaluation.prediction_drift
        else []
    )
    feature_label = spec.drift.feature_label if spec.drift else None
    before_quality = previous.data_quality_breached if previous else []
    before_kpis = previous.kpi_breaches if previous else []
    quality = [
        evidence
        for check, outcome in zip(spec.data_quality, evaluation.data_quality, strict=True)
        for evidence in _breaches(
            "dataQuality", check, outcome, before_quality, spec.policy.bound_hysteresis, feature_label
        )
    ]
    moved = bool(drift or prediction or sudden or breaks)
    flowing, stopped = _labels(spec, evaluation, previous, moved=moved)
    silent = {e.check for e in stopped} | {
        o.name for o in evaluation.kpis if o.label_rate is not None and o.label_rate <= 0
    }
    kpi_breaches = [
        evidence
        for kpi, outcome in zip(spec.kpis, evaluation.kpis, strict=True)
        if kpi.name not in silent  # a KPI without labels arriving says nothing about the model
        for evidence in _breaches("kpi", kpi, outcome, before_kpis, spec.policy.bound_hysteresis, None)
    ]
    kpis_breached = list(dict.fromkeys(e.check for e in kpi_breaches if e.check is not None))
    kpis_unknown = [
        o.name
        for o, kpi in zip(evaluation.kpis, spec.kpis, strict=True)
        if (o.state in (CheckState.NO_DATA, CheckState.ERROR) and kpi.on_no_data is NoDataPolicy.HOLD)
        or o.name in silent
    ]
    informative = _informative(evaluation)
    estimated = _estimates(spec, evaluation, previous)
    return Assessment(
        time=evaluation.time,
        breaks=breaks,
        drift=drift,
        warnings=warnings,
        sudden=sudden,
        prediction_drift=prediction,
        kpis_breached=kpis_breached,
        kpi_breaches=kpi_breaches[:MAX_FINDINGS],
        kpis_unknown=kpis_unknown,
        data_quality_breached=quality[:MAX_FINDINGS],
        layout_changes=_layouts(evaluation)[:MAX_FINDINGS],
        labels_flowing=flowing,
        labels_stopped=stopped,
        drift_evaluated=evaluation.drift is not None or spec.drift is None,
        data_quality_evaluated=all(
            o.state in (CheckState.OK, CheckState.BREACHED) for o in evaluation.data_quality
        ),
        informative=informative,
        judged=[
            *_judged_drift("drift", evaluation.drift),
            *_judged_drift("predictionDrift", evaluation.prediction_drift),
            *_judged_checks("dataQuality", evaluation.data_quality, feature_label),
            *_judged_checks("kpi", evaluation.kpis, None),
            *_judged_checks("kpiEstimate", evaluation.estimates, None),
        ][:MAX_FINDINGS],
        missing=[_missing(problem) for problem in evaluation.problems],
        missing_reason=_missing_reason(spec, evaluation, informative),
        estimates_breached=list(dict.fromkeys(e.check for e in estimated.breaches if e.check is not None)),
        estimate_breaches=estimated.breaches[:MAX_FINDINGS],
        estimates_judged=estimated.judged,
        calibration_drift=estimated.drift,
        calibration_held=estimated.held,
    )
