"""A scenario's traffic as counts: per step, then as the cumulative counters a model exports.

Arrays follow the scenario's order of segments and features and are indexed
``(step, segment, feature, bucket)``. Histogram buckets of a feature with ``k`` bounds are
``(-inf, b0], (b0, b1], ..., (b[k-1], +inf)``; features with fewer bounds than the widest one
are padded with empty buckets after their overflow bucket, so all features share one array.

Every feature of every request is either missing or falls into one bucket, so per segment
``count + missing == requests`` holds exactly, with or without noise.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime

import numpy as np
from numpy.typing import NDArray

from evergreen.simulation.scenario import (
    BreakMode,
    CalibrationShift,
    Distribution,
    FloatArray,
    GradualDrift,
    KpiDrop,
    LabelOutage,
    NullSpike,
    PredictionShift,
    Scenario,
    SegmentBreak,
    Spike,
    UnitChange,
    UpstreamJump,
)

#: Order of the outcome axis and values of the ``outcome`` label.
OUTCOMES: tuple[str, ...] = ("tp", "fp", "tn", "fn")

BoolArray = NDArray[np.bool_]


def bucket_probabilities(
    distribution: Distribution,
    bounds: FloatArray,
    scale: FloatArray | float = 1.0,
    offset: FloatArray | float = 0.0,
) -> FloatArray:
    """Probability of each bucket for values ``scale * X + offset`` with ``X ~ distribution``.

    ``bounds`` are finite upper bounds (``+inf`` pads are allowed); the result has shape
    ``broadcast(scale, offset) + (len(bounds) + 1,)``, the last bucket being the overflow.
    ``scale == 0`` collapses every value onto ``offset``.
    """
    a = np.asarray(scale, dtype=np.float64)[..., None]
    b = np.asarray(offset, dtype=np.float64)[..., None]
    upper = np.asarray(bounds, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        z = (upper - b) / np.where(a == 0, 1.0, a)
    below = distribution.cdf(z)
    cdf = np.where(a > 0, below, np.where(a < 0, 1.0 - below, (upper >= b).astype(np.float64)))
    # Floating error must not make a cumulative distribution decrease.
    cdf = np.maximum.accumulate(np.clip(cdf, 0.0, 1.0), axis=-1)
    shape = (*cdf.shape[:-1], 1)
    edges = np.concatenate([np.zeros(shape), cdf, np.ones(shape)], axis=-1)
    return np.diff(edges, axis=-1)


@dataclass(frozen=True)
class Counters:
    """Cumulative counters as Prometheus sees them, sampled at ``times`` (first value 0).

    Histogram buckets are cumulative over ``le`` as well: ``feature_buckets[t, s, f, j]``
    counts values ``<= bound j`` up to ``times[t]``.
    """

    scenario: Scenario
    times: NDArray[np.int64]
    requests: FloatArray  # (t, segment): model_predictions_total
    feature_buckets: FloatArray  # (t, segment, feature, bucket), cumulative over le
    feature_count: FloatArray  # (t, segment, feature)
    feature_sum: FloatArray  # (t, segment, feature)
    feature_missing: FloatArray  # (t, segment, feature)
    score_buckets: FloatArray  # (t, segment, bucket), cumulative over le
    score_sum: FloatArray  # (t, segment)
    outcomes: FloatArray  # (t, segment, outcome) in OUTCOMES order

    @property
    def integral(self) -> bool:
        """Whether counts are whole numbers (sampled with noise)."""
        return self.scenario.noise


@dataclass(frozen=True)
class StepCounts:
    """What happened within each step of a scenario (not cumulative)."""

    scenario: Scenario
    requests: FloatArray  # (step, segment)
    feature_buckets: FloatArray  # (step, segment, feature, bucket), per bucket
    feature_missing: FloatArray  # (step, segment, feature)
    feature_sum: FloatArray  # (step, segment, feature)
    score_buckets: FloatArray  # (step, segment, bucket), per bucket
    score_sum: FloatArray  # (step, segment)
    outcomes: FloatArray  # (step, segment, outcome)

    @property
    def feature_count(self) -> FloatArray:
        """Non-missing values per (step, segment, feature)."""
        counts: FloatArray = self.feature_buckets.sum(axis=-1)
        return counts

    def feature_bucket_counts(self, feature: str) -> FloatArray:
        """Counts per (step, segment, bucket) of one feature, overflow bucket last."""
        index = self.scenario.feature_names.index(self.scenario.feature(feature).name)
        width = len(self.scenario.features[index].bounds) + 1
        return self.feature_buckets[:, :, index, :width]

    def step_slice(self, start: datetime, end: datetime) -> slice:
        """Steps whose start lies in ``[start, end)``.

        Their sum equals Prometheus' ``increase(x[end - start])`` evaluated at ``end`` when
        both are sample times.
        """
        origin = self.scenario.start.timestamp()
        size = self.scenario.step_seconds
        first = math.ceil((start.timestamp() - origin) / size)
        last = math.ceil((end.timestamp() - origin) / size)
        steps = self.scenario.steps
        return slice(min(max(first, 0), steps), min(max(last, 0), steps))

    def cumulative(self) -> Counters:
        """The counters a model exporting this traffic would show at each sample time."""

        def running(values: FloatArray) -> FloatArray:
            zeros = np.zeros((1, *values.shape[1:]))
            return np.concatenate([zeros, np.cumsum(values, axis=0)], axis=0)

        feature_buckets = running(self.feature_buckets)
        score_buckets = running(self.score_buckets)
        return Counters(
            scenario=self.scenario,
            times=self.scenario.sample_times(),
            requests=running(self.requests),
            feature_buckets=np.cumsum(feature_buckets, axis=-1),
            feature_count=feature_buckets.sum(axis=-1),
            feature_sum=running(self.feature_sum),
            feature_missing=running(self.feature_missing),
            score_buckets=np.cumsum(score_buckets, axis=-1),
            score_sum=running(self.score_sum),
            outcomes=running(self.outcomes),
        )


def simulate(scenario: Scenario) -> StepCounts:
    """Per-step counts: sampled when the scenario has noise, expected values otherwise."""
    return sampled_step_counts(scenario) if scenario.noise else expected_step_counts(scenario)


def expected_step_counts(scenario: Scenario) -> StepCounts:
    """Expected (noise-free, fractional) counts per step."""
    plan = _Plan.of(scenario)
    requests = plan.requests
    observed = requests[..., None] * (1.0 - plan.null_rate)
    feature_buckets = observed[..., None] * plan.feature_probabilities
    score_buckets = requests[..., None] * plan.score_probabilities
    labelled = requests * scenario.labeled_fraction
    return StepCounts(
        scenario=scenario,
        requests=requests,
        feature_buckets=feature_buckets,
        feature_missing=requests[..., None] * plan.null_rate,
        feature_sum=observed * plan.feature_mean,
        score_buckets=score_buckets,
        score_sum=requests * plan.score_mean,
        outcomes=_withhold_labels(scenario, labelled[..., None] * plan.outcome_rates),
    )


def sampled_step_counts(scenario: Scenario) -> StepCounts:
    """Counts drawn with ``np.random.default_rng(scenario.seed)``: the same on every run.

    Requests are Poisson per (step, segment); each feature splits them multinomially over
    its buckets and "missing"; scores split them over score buckets; labelled requests split
    over outcomes.
    """
    plan = _Plan.of(scenario)
    rng = np.random.default_rng(scenario.seed)
    requests = rng.poisson(plan.requests)
    segments, features = len(scenario.segments), len(scenario.features)
    width = plan.feature_probabilities.shape[-1]
    feature_buckets = np.empty((scenario.steps, segments, features, width))
    missing = np.empty((scenario.steps, segments, features))
    for index in range(features):
        null = plan.null_rate[..., index, None]
        categories = np.concatenate([(1.0 - null) * plan.feature_probabilities[:, :, index], null], axis=-1)
        draws = rng.multinomial(requests, _normalised(categories))
        feature_buckets[:, :, index] = draws[..., :-1]
        missing[:, :, index] = draws[..., -1]
    score_buckets = rng.multinomial(requests, _normalised(plan.score_probabilities))
    labelled = rng.binomial(requests, scenario.labeled_fraction)
    outcomes = rng.multinomial(labelled, _normalised(plan.outcome_rates))
    observed = feature_buckets.sum(axis=-1)
    return StepCounts(
        scenario=scenario,
        requests=requests.astype(np.float64),
        feature_buckets=feature_buckets,
        feature_missing=missing,
        feature_sum=observed * plan.feature_mean,
        score_buckets=score_buckets.astype(np.float64),
        score_sum=requests * plan.score_mean,
        outcomes=_withhold_labels(scenario, outcomes.astype(np.float64)),
    )


def _normalised(probabilities: FloatArray) -> FloatArray:
    clipped = np.clip(probabilities, 0.0, None)
    normalised: FloatArray = clipped / clipped.sum(axis=-1, keepdims=True)
    return normalised


@dataclass(frozen=True)
class _Plan:
    """Expected requests and every distribution in effect, per step and segment."""

    requests: FloatArray  # (step, segment)
    feature_probabilities: FloatArray  # (step, segment, feature, bucket)
    feature_mean: FloatArray  # (step, segment, feature)
    null_rate: FloatArray  # (step, segment, feature)
    score_probabilities: FloatArray  # (step, segment, bucket)
    score_mean: FloatArray  # (step, segment)
    outcome_rates: FloatArray  # (step, segment, outcome)

    @classmethod
    def of(cls, scenario: Scenario) -> _Plan:
        starts = scenario.sample_times()[:-1].astype(np.float64)
        scale, offset, null_rate = _feature_transforms(scenario, starts)
        probabilities, means = _feature_distributions(scenario, scale, offset)
        _clamp(scenario, starts, probabilities)
        score_probabilities, score_mean = _score_distributions(scenario, starts)
        return cls(
            requests=_expected_requests(scenario, starts),
            feature_probabilities=probabilities,
            feature_mean=means,
            null_rate=null_rate,
            score_probabilities=score_probabilities,
            score_mean=score_mean,
            outcome_rates=(
                _calibrated_outcome_rates(scenario, starts, score_probabilities)
                if scenario.calibration is not None
                else _outcome_rates(scenario, starts)
            ),
        )


def _expected_requests(scenario: Scenario, starts: FloatArray) -> FloatArray:
    middle = starts + scenario.step_seconds / 2
    # Busiest at 12:00 UTC, quietest at 00:00 UTC.
    day_phase = 2 * np.pi * ((middle % 86400) / 86400 - 0.25)
    season = 1.0 + scenario.seasonality * np.sin(day_phase)
    shares = np.array([s.share for s in scenario.segments])
    per_step = scenario.rate * scenario.step_seconds
    requests: FloatArray = per_step * season[:, None] * shares[None, :]
    return requests


def _window(starts: FloatArray, start: datetime, end: datetime | None) -> BoolArray:
    active = starts >= start.timestamp()
    if end is not None:
        active &= starts < end.timestamp()
    return active


def _segment_mask(scenario: Scenario, names: tuple[str, ...]) -> BoolArray:
    if not names:
        return np.ones(len(scenario.segments), dtype=np.bool_)
    return np.array([s.name in names for s in scenario.segments])


def _feature_transforms(scenario: Scenario, starts: FloatArray) -> tuple[FloatArray, FloatArray, FloatArray]:
    """Per (step, segment, feature): values are ``scale * X + offset``; and the null rate."""
    shape = (len(starts), len(scenario.segments), len(scenario.features))
    scale = np.ones(shape)
    offset = np.zeros(shape)
    null_rate = np.broadcast_to(np.array([f.null_rate for f in scenario.features]), shape).copy()
    position = {name: i for i, name in enumerate(scenario.feature_names)}

    def compose(
        feature: str,
        segments: tuple[str, ...],
        active: BoolArray,
        a: FloatArray | float,
        b: FloatArray | float,
    ) -> None:
        # Apply y -> a * y + b on top of what earlier incidents did.
        cells = active[:, None] & _segment_mask(scenario, segments)[None, :]
        a_cells = np.where(cells, np.broadcast_to(np.asarray(a), active.shape)[:, None], 1.0)
        b_cells = np.where(cells, np.broadcast_to(np.asarray(b), active.shape)[:, None], 0.0)
        f = position[feature]
        scale[:, :, f] *= a_cells
        offset[:, :, f] = a_cells * offset[:, :, f] + b_cells

    def shift(
        feature: str,
        segments: tuple[str, ...],
        active: BoolArray,
        mean_shift: FloatArray | float,
        std_scale: FloatArray | float,
    ) -> None:
        # Move the mean by mean_shift and scale the spread around the healthy mean.
        mean = scenario.feature(feature).distribution.mean
        a = np.asarray(std_scale, dtype=np.float64)
        compose(feature, segments, active, a, mean + mean_shift - a * mean)

    for incident in scenario.incidents:
        active = _window(starts, incident.visible_at, incident.resolved_at)
        match incident:
            case GradualDrift():
                span = (incident.end - incident.start).total_seconds()
                progress = np.clip((starts - incident.start.timestamp()) / span, 0.0, 1.0)
                shift(
                    incident.feature,
                    incident.segments,
                    active,
                    incident.mean_shift * progress,
                    1.0 + (incident.std_scale - 1.0) * progress,
                )
            case Spike():
                shift(
                    incident.feature,
                    incident.segments,
                    active,
                    incident.mean_shift,
                    incident.std_scale,
                )
            case UnitChange():
                compose(incident.feature, incident.segments, active, incident.scale, incident.offset)
            case UpstreamJump():
                for name in incident.jumped_features:
                    std = scenario.feature(name).distribution.std
                    shift(
                        name,
                        incident.segments,
                        active,
                        incident.shift_in_std * std,
                        incident.std_scale,
                    )
            case SegmentBreak(mode=BreakMode.CONSTANT):
                compose(incident.feature, incident.segments, active, 0.0, incident.value)
            case SegmentBreak(mode=BreakMode.MISSING) | NullSpike():
                rate = 1.0 if isinstance(incident, SegmentBreak) else incident.null_rate
                cells = active[:, None] & _segment_mask(scenario, incident.segments)[None, :]
                f = position[incident.feature]
                null_rate[:, :, f] = np.where(cells, rate, null_rate[:, :, f])
            case _:
                pass  # KPI and prediction incidents do not touch features.
    return scale, offset, null_rate


def _feature_distributions(
    scenario: Scenario, scale: FloatArray, offset: FloatArray
) -> tuple[FloatArray, FloatArray]:
    widest = max(len(f.bounds) for f in scenario.features)
    probabilities = np.empty((*scale.shape, widest + 1))
    means = np.empty(scale.shape)
    for index, feature in enumerate(scenario.features):
        bounds = np.full(widest, np.inf)
        bounds[: len(feature.bounds)] = feature.bounds
        probabilities[:, :, index] = bucket_probabilities(
            feature.distribution, bounds, scale[:, :, index], offset[:, :, index]
        )
        means[:, :, index] = scale[:, :, index] * feature.distribution.mean + offset[:, :, index]
    return probabilities, means


def _clamp(scenario: Scenario, starts: FloatArray, probabilities: FloatArray) -> None:
    """Exporters that clamp at their top bound count overflow in the top finite bucket."""
    position = {name: i for i, name in enumerate(scenario.feature_names)}
    for incident in scenario.incidents:
        if not (isinstance(incident, UnitChange) and incident.clamp):
            continue
        f = position[incident.feature]
        top = len(scenario.features[f].bounds)
        active = _window(starts, incident.visible_at, incident.resolved_at)
        cells = active[:, None] & _segment_mask(scenario, incident.segments)[None, :]
        overflow = np.where(cells, probabilities[:, :, f, top], 0.0)
        probabilities[:, :, f, top - 1] += overflow
        probabilities[:, :, f, top] -= overflow


def _withhold_labels(scenario: Scenario, outcomes: FloatArray) -> FloatArray:
    """Labels of a :class:`LabelOutage` arrive all at once in the step at its end."""
    starts = scenario.sample_times()[:-1].astype(np.float64)
    result = outcomes.copy()
    for incident in scenario.incidents:
        if not isinstance(incident, LabelOutage):
            continue
        held = np.broadcast_to(
            _window(starts, incident.start, incident.end)[:, None, None]
            & np.array([not incident.outcomes or outcome in incident.outcomes for outcome in OUTCOMES]),
            result.shape,
        )
        release = np.flatnonzero(starts >= incident.end.timestamp())
        total = np.where(held, result, 0.0).sum(axis=0)
        result[held] = 0.0
        if release.size:
            result[release[0]] += total
    return result


def _score_distributions(scenario: Scenario, starts: FloatArray) -> tuple[FloatArray, FloatArray]:
    shape = (len(starts), len(scenario.segments))
    bounds = np.asarray(scenario.score_bounds)
    baseline = bucket_probabilities(scenario.score_distribution, bounds)
    probabilities = np.broadcast_to(baseline, (*shape, len(baseline))).copy()
    means = np.full(shape, scenario.score_distribution.mean)
    for incident in scenario.incidents:
        if isinstance(incident, PredictionShift):
            active = _window(starts, incident.start, incident.end)
            cells = active[:, None] & _segment_mask(scenario, incident.segments)[None, :]
            probabilities[cells] = bucket_probabilities(incident.distribution, bounds)
            means[cells] = incident.distribution.mean
    return probabilities, means


def _outcome_rates(scenario: Scenario, starts: FloatArray) -> FloatArray:
    shape = (len(starts), len(scenario.segments))
    precision = np.full(shape, scenario.kpi.precision)
    recall = np.full(shape, scenario.kpi.recall)
    positive_rate = np.full(shape, scenario.kpi.positive_rate)
    for incident in scenario.incidents:
        if not isinstance(incident, KpiDrop):
            continue
        active = (
            _window(starts, incident.start, incident.end)[:, None]
            & _segment_mask(scenario, incident.segments)[None, :]
        )
        ramp = incident.ramp.total_seconds()
        elapsed = starts - incident.start.timestamp()
        progress = np.clip(elapsed / ramp, 0.0, 1.0) if ramp > 0 else np.ones(len(starts))
        for values, target in (
            (precision, incident.precision),
            (recall, incident.recall),
            (positive_rate, incident.positive_rate),
        ):
            if target is not None:
                values[:] = np.where(active, values + (target - values) * progress[:, None], values)
    tp = positive_rate * precision
    fp = positive_rate - tp
    fn = tp * (1.0 - recall) / recall
    tn = np.clip(1.0 - tp - fp - fn, 0.0, None)
    return np.stack([tp, fp, tn, fn], axis=-1)


#: Integration points per score bucket for its exact mean score.
_MEAN_GRID = 801


def bucket_means(distribution: Distribution, bounds: FloatArray) -> FloatArray:
    """The exact mean score within each bucket ``(b[j-1], b[j]]`` of scores in [0, 1].

    ``E[X | a < X <= b] = (b F(b) - a F(a) - integral_a^b F) / (F(b) - F(a))``; the overflow
    bucket ends at 1. A bucket without mass gets its midpoint (it holds no requests anyway).
    """
    upper = np.minimum(np.asarray([*bounds, 1.0], dtype=np.float64), 1.0)
    lower = np.concatenate([[0.0], upper[:-1]])
    means = np.empty(upper.size)
    for j, (low, high) in enumerate(zip(lower, upper, strict=True)):
        grid = np.linspace(low, high, _MEAN_GRID)
        cdf = distribution.cdf(grid)
        mass = float(cdf[-1] - cdf[0])
        if mass <= 1e-12 or high <= low:
            means[j] = (low + high) / 2
            continue
        area = float(np.sum((cdf[1:] + cdf[:-1]) * np.diff(grid)) / 2)
        means[j] = (high * cdf[-1] - low * cdf[0] - area) / mass
    return means


def _calibrated_outcome_rates(
    scenario: Scenario, starts: FloatArray, probabilities: FloatArray
) -> FloatArray:
    """Outcome rates that follow the scores: ``P(positive | bucket) = mean ** power``."""
    calibration = scenario.calibration
    assert calibration is not None
    shape = (len(starts), len(scenario.segments))
    bounds = np.asarray(scenario.score_bounds)
    means = np.broadcast_to(
        bucket_means(scenario.score_distribution, bounds), (*shape, bounds.size + 1)
    ).copy()
    power = np.full(shape, calibration.power)
    for incident in scenario.incidents:
        cells = (
            _window(starts, incident.visible_at, incident.resolved_at)[:, None]
            & _segment_mask(scenario, incident.segments)[None, :]
        )
        if isinstance(incident, PredictionShift):
            means[cells] = bucket_means(incident.distribution, bounds)
        elif isinstance(incident, CalibrationShift):
            power[cells] = incident.power
    positive = np.clip(means ** power[..., None], 0.0, 1.0)
    split = int(np.flatnonzero(np.isclose(bounds, calibration.threshold))[0]) + 1
    above = np.arange(bounds.size + 1) >= split
    tp = np.sum(np.where(above, probabilities * positive, 0.0), axis=-1)
    fp = np.sum(np.where(above, probabilities * (1.0 - positive), 0.0), axis=-1)
    fn = np.sum(np.where(above, 0.0, probabilities * positive), axis=-1)
    tn = np.sum(np.where(above, 0.0, probabilities * (1.0 - positive)), axis=-1)
    rates: FloatArray = np.stack([tp, fp, tn, fn], axis=-1)
    return rates
