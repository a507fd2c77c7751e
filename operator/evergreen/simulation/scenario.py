"""The model of a simulated model's traffic: features, segments, KPIs and incidents.

A :class:`Scenario` is declarative and immutable: it says what a model's inputs, outputs and
outcomes look like over a period and which incidents happen when. :mod:`.traffic` turns it
into counts; the incidents double as ground truth for tests, the demo and the backtest
("what happened when, and what kind of problem was it").

Times are timezone-aware UTC datetimes. A step is affected by an incident when the step's
start lies in the incident's window ``[start, end)``; its counts appear in Prometheus at the
step's end.
"""

from __future__ import annotations

import dataclasses
import enum
import hashlib
import json
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import ClassVar, TypeAlias

import numpy as np
from numpy.typing import NDArray
from scipy import special

from evergreen.errors import EvergreenError

FloatArray: TypeAlias = NDArray[np.float64]

#: Part of every fingerprint: bump it when :mod:`.traffic` changes what a scenario generates,
#: so cached backfills built by older code are not reused.
GENERATOR_VERSION = 2

#: Prometheus' default lookback delta: a longer step would make instant queries miss samples.
MAX_STEP = timedelta(minutes=5)


class ScenarioError(EvergreenError, ValueError):
    """A scenario is inconsistent: unknown feature or segment, shares not summing to 1, ..."""

    permanent = True


def _either(value: float | None, default: float) -> float:
    return default if value is None else value


def _check_fraction(what: str, value: float) -> None:
    if not 0 <= value <= 1:
        raise ScenarioError(f"{what} must be in [0, 1], got {value}")


def _check_unique(what: str, names: Sequence[str]) -> None:
    if len(set(names)) != len(names):
        raise ScenarioError(f"{what} names must be unique, got {list(names)}")


def _check_utc(what: str, moment: datetime) -> None:
    if moment.utcoffset() != timedelta(0):
        raise ScenarioError(f"{what} must be a timezone-aware UTC datetime, got {moment!r}")


# --- distributions -------------------------------------------------------------------------


@dataclass(frozen=True)
class Normal:
    """Normal distribution with the given mean and standard deviation."""

    mean: float
    std: float

    def __post_init__(self) -> None:
        if not self.std > 0:
            raise ScenarioError(f"Normal std must be positive, got {self.std}")

    def cdf(self, x: FloatArray) -> FloatArray:
        """P(X <= x), element-wise."""
        return np.asarray(special.ndtr((x - self.mean) / self.std), dtype=np.float64)


@dataclass(frozen=True)
class LogNormal:
    """Log-normal distribution: ``log X ~ Normal(log median, sigma)``; positive values only."""

    median: float
    sigma: float

    def __post_init__(self) -> None:
        if not (self.median > 0 and self.sigma > 0):
            raise ScenarioError(f"LogNormal needs median > 0 and sigma > 0, got {self}")

    @property
    def mean(self) -> float:
        return self.median * math.exp(self.sigma**2 / 2)

    @property
    def std(self) -> float:
        return self.mean * math.sqrt(math.expm1(self.sigma**2))

    def cdf(self, x: FloatArray) -> FloatArray:
        """P(X <= x), element-wise (0 for x <= 0)."""
        with np.errstate(divide="ignore", invalid="ignore"):
            z = (np.log(np.where(x > 0, x, 1.0)) - math.log(self.median)) / self.sigma
        return np.where(x > 0, np.asarray(special.ndtr(z), dtype=np.float64), 0.0)


@dataclass(frozen=True)
class Beta:
    """Beta distribution on [0, 1]: the shape of prediction scores."""

    alpha: float
    beta: float

    def __post_init__(self) -> None:
        if not (self.alpha > 0 and self.beta > 0):
            raise ScenarioError(f"Beta needs alpha > 0 and beta > 0, got {self}")

    @property
    def mean(self) -> float:
        return self.alpha / (self.alpha + self.beta)

    @property
    def std(self) -> float:
        total = self.alpha + self.beta
        return math.sqrt(self.alpha * self.beta / (total**2 * (total + 1)))

    def cdf(self, x: FloatArray) -> FloatArray:
        """P(X <= x), element-wise."""
        clipped = np.clip(x, 0.0, 1.0)
        return np.asarray(special.betainc(self.alpha, self.beta, clipped), dtype=np.float64)


Distribution: TypeAlias = Normal | LogNormal | Beta


# --- what a model sees and does ------------------------------------------------------------


@dataclass(frozen=True)
class Feature:
    """An input feature: its histogram's finite upper bounds and its healthy distribution."""

    name: str
    bounds: tuple[float, ...]
    distribution: Distribution
    #: Fraction of requests where the value is missing, in a healthy pipeline.
    null_rate: float = 0.0

    def __post_init__(self) -> None:
        object.__setattr__(self, "bounds", tuple(float(b) for b in self.bounds))
        if not self.bounds or any(not math.isfinite(b) for b in self.bounds):
            raise ScenarioError(f"feature {self.name!r}: bounds must be finite and non-empty")
        if any(lo >= hi for lo, hi in zip(self.bounds, self.bounds[1:], strict=False)):
            raise ScenarioError(f"feature {self.name!r}: bounds must be strictly increasing")
        _check_fraction(f"feature {self.name!r} null_rate", self.null_rate)


@dataclass(frozen=True)
class Segment:
    """A slice of traffic (``segment`` label value) and its share of all requests."""

    name: str
    share: float


@dataclass(frozen=True)
class Kpi:
    """Quality of the model's decisions as delayed labels reveal it.

    ``positive_rate`` is the fraction of labelled predictions the model flags as positive.
    """

    precision: float
    recall: float
    positive_rate: float

    def __post_init__(self) -> None:
        for name in ("precision", "recall", "positive_rate"):
            _check_fraction(f"kpi {name}", getattr(self, name))
        if self.recall == 0:
            raise ScenarioError("kpi recall must be positive")
        if sum(self.outcome_rates()[i] for i in (0, 1, 3)) > 1 + 1e-9:
            raise ScenarioError(f"kpi {self} leaves no room for true negatives")

    def outcome_rates(self) -> tuple[float, float, float, float]:
        """Fractions of labelled predictions that are (tp, fp, tn, fn)."""
        tp = self.positive_rate * self.precision
        fp = self.positive_rate - tp
        fn = tp * (1 - self.recall) / self.recall
        return tp, fp, max(0.0, 1 - tp - fp - fn), fn


# --- incidents -----------------------------------------------------------------------------


class IncidentKind(enum.StrEnum):
    """What kind of problem an incident is: the classification the operator should reach."""

    #: The world changed: the model is stale and retraining may help.
    DRIFT = "drift"
    #: The data is broken upstream (units, a segment, nulls): alert and hold, never retrain.
    DATA_QUALITY = "data_quality"
    #: Outcomes got worse while inputs look healthy.
    KPI = "kpi"
    #: The model's output distribution moved.
    PREDICTION = "prediction"
    #: A short excursion that recovers by itself: should not trigger any action.
    TRANSIENT = "transient"


class BreakMode(enum.StrEnum):
    """How a feature breaks inside a segment."""

    #: Every value becomes ``value`` (e.g. 0 from a broken cookie, or a sentinel out of range).
    CONSTANT = "constant"
    #: The value is missing for every request.
    MISSING = "missing"


class _Incident:
    """Shared ground-truth accessors; subclasses are frozen dataclasses."""

    kind: ClassVar[IncidentKind]

    @property
    def visible_at(self) -> datetime:
        """First moment the generated data differs from a healthy model's."""
        raise NotImplementedError

    @property
    def resolved_at(self) -> datetime | None:
        """When the data is healthy again; None when the incident persists to the end."""
        raise NotImplementedError

    @property
    def features(self) -> tuple[str, ...]:
        """Features whose values change (empty for KPI and prediction incidents)."""
        return ()

    @property
    def segments(self) -> tuple[str, ...]:
        """Segments affected; empty means all of them."""
        return ()

    def active_at(self, moment: datetime) -> bool:
        """Whether the data generated at ``moment`` is affected."""
        end = self.resolved_at
        return self.visible_at <= moment and (end is None or moment < end)


@dataclass(frozen=True)
class GradualDrift(_Incident):
    """A feature's mean and spread move linearly from ``start`` to ``end``, then stay there.

    ``mean_shift`` is in the feature's own units; ``std_scale`` multiplies the spread around
    the healthy mean.
    """

    kind: ClassVar[IncidentKind] = IncidentKind.DRIFT
    feature: str
    start: datetime
    end: datetime
    mean_shift: float = 0.0
    std_scale: float = 1.0
    only_segments: tuple[str, ...] = ()

    @property
    def visible_at(self) -> datetime:
        return self.start

    @property
    def resolved_at(self) -> datetime | None:
        return None

    @property
    def features(self) -> tuple[str, ...]:
        return (self.feature,)

    @property
    def segments(self) -> tuple[str, ...]:
        return self.only_segments


@dataclass(frozen=True)
class UnitChange(_Incident):
    """From ``at`` a feature arrives as ``scale * value + offset`` (°C→°F: 1.8, 32)."""

    kind: ClassVar[IncidentKind] = IncidentKind.DATA_QUALITY
    feature: str
    at: datetime
    scale: float
    offset: float = 0.0
    until: datetime | None = None
    only_segments: tuple[str, ...] = ()
    #: The exporter clamps values at its top bound: overflow lands in the top finite bucket.
    clamp: bool = False

    @property
    def visible_at(self) -> datetime:
        return self.at

    @property
    def resolved_at(self) -> datetime | None:
        return self.until

    @property
    def features(self) -> tuple[str, ...]:
        return (self.feature,)

    @property
    def segments(self) -> tuple[str, ...]:
        return self.only_segments


@dataclass(frozen=True)
class SegmentBreak(_Incident):
    """From ``at`` a feature breaks inside one segment only (constant or missing values)."""

    kind: ClassVar[IncidentKind] = IncidentKind.DATA_QUALITY
    segment: str
    feature: str
    at: datetime
    mode: BreakMode = BreakMode.CONSTANT
    value: float = 0.0
    until: datetime | None = None

    @property
    def visible_at(self) -> datetime:
        return self.at

    @property
    def resolved_at(self) -> datetime | None:
        return self.until

    @property
    def features(self) -> tuple[str, ...]:
        return (self.feature,)

    @property
    def segments(self) -> tuple[str, ...]:
        return (self.segment,)


@dataclass(frozen=True)
class NullSpike(_Incident):
    """Between ``start`` and ``end`` a feature is missing in ``null_rate`` of all requests."""

    kind: ClassVar[IncidentKind] = IncidentKind.DATA_QUALITY
    feature: str
    start: datetime
    end: datetime | None
    null_rate: float
    only_segments: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        _check_fraction("NullSpike null_rate", self.null_rate)

    @property
    def visible_at(self) -> datetime:
        return self.start

    @property
    def resolved_at(self) -> datetime | None:
        return self.end

    @property
    def features(self) -> tuple[str, ...]:
        return (self.feature,)

    @property
    def segments(self) -> tuple[str, ...]:
        return self.only_segments


@dataclass(frozen=True)
class UpstreamJump(_Incident):
    """From ``at`` many features shift at once (an upstream pipeline or schema change).

    ``shift_in_std`` is in units of each feature's healthy standard deviation, so one incident
    can move features with different units.
    """

    kind: ClassVar[IncidentKind] = IncidentKind.DATA_QUALITY
    jumped_features: tuple[str, ...]
    at: datetime
    shift_in_std: float = 1.0
    std_scale: float = 1.0
    until: datetime | None = None
    only_segments: tuple[str, ...] = ()

    @property
    def visible_at(self) -> datetime:
        return self.at

    @property
    def resolved_at(self) -> datetime | None:
        return self.until

    @property
    def features(self) -> tuple[str, ...]:
        return self.jumped_features

    @property
    def segments(self) -> tuple[str, ...]:
        return self.only_segments


@dataclass(frozen=True)
class KpiDrop(_Incident):
    """From ``start`` the labelled outcomes show a worse precision and/or recall.

    The targets are reached linearly over ``ramp`` (zero: at once). Times are when the
    outcome counters change, i.e. when the delayed labels arrive.
    """

    kind: ClassVar[IncidentKind] = IncidentKind.KPI
    start: datetime
    end: datetime | None = None
    precision: float | None = None
    recall: float | None = None
    positive_rate: float | None = None
    ramp: timedelta = timedelta(0)
    only_segments: tuple[str, ...] = ()

    @property
    def visible_at(self) -> datetime:
        return self.start

    @property
    def resolved_at(self) -> datetime | None:
        return self.end

    @property
    def segments(self) -> tuple[str, ...]:
        return self.only_segments


@dataclass(frozen=True)
class PredictionShift(_Incident):
    """Between ``start`` and ``end`` prediction scores follow ``distribution`` instead."""

    kind: ClassVar[IncidentKind] = IncidentKind.PREDICTION
    start: datetime
    distribution: Distribution
    end: datetime | None = None
    only_segments: tuple[str, ...] = ()

    @property
    def visible_at(self) -> datetime:
        return self.start

    @property
    def resolved_at(self) -> datetime | None:
        return self.end

    @property
    def segments(self) -> tuple[str, ...]:
        return self.only_segments


@dataclass(frozen=True)
class Spike(_Incident):
    """A short excursion of one feature between ``start`` and ``end`` that recovers fully."""

    kind: ClassVar[IncidentKind] = IncidentKind.TRANSIENT
    feature: str
    start: datetime
    end: datetime
    mean_shift: float = 0.0
    std_scale: float = 1.0
    only_segments: tuple[str, ...] = ()

    @property
    def visible_at(self) -> datetime:
        return self.start

    @property
    def resolved_at(self) -> datetime | None:
        return self.end

    @property
    def features(self) -> tuple[str, ...]:
        return (self.feature,)

    @property
    def segments(self) -> tuple[str, ...]:
        return self.only_segments


@dataclass(frozen=True)
class CalibrationShift(_Incident):
    """Between ``start`` and ``end`` labels follow ``P(positive | s) = s ** power`` instead.

    Scores stay as they were: only what they mean changes (``power`` above 1: the model is
    overconfident, below 1: underconfident). Needs a scenario with :class:`ScoreCalibration`.
    """

    kind: ClassVar[IncidentKind] = IncidentKind.KPI
    start: datetime
    power: float
    end: datetime | None = None
    only_segments: tuple[str, ...] = ()

    @property
    def visible_at(self) -> datetime:
        return self.start

    @property
    def resolved_at(self) -> datetime | None:
        return self.end

    @property
    def segments(self) -> tuple[str, ...]:
        return self.only_segments


@dataclass(frozen=True)
class LabelOutage(_Incident):
    """Labels stop arriving in ``[start, end)`` and all arrive at ``end`` (a stalled label job).

    ``outcomes`` limits the outage to some outcomes (``("tp", "fn")``: confirmed positives
    come late while negatives keep arriving); empty means every label.
    """

    kind: ClassVar[IncidentKind] = IncidentKind.DATA_QUALITY
    start: datetime
    end: datetime
    outcomes: tuple[str, ...] = ()

    @property
    def visible_at(self) -> datetime:
        return self.start

    @property
    def resolved_at(self) -> datetime | None:
        return self.end


Incident: TypeAlias = (
    GradualDrift
    | UnitChange
    | SegmentBreak
    | NullSpike
    | UpstreamJump
    | KpiDrop
    | PredictionShift
    | Spike
    | LabelOutage
    | CalibrationShift
)

#: Healthy prediction scores: most requests score low (mean ~0.09).
DEFAULT_SCORE_DISTRIBUTION = Beta(1.2, 12.0)
#: Prediction score histogram bounds: ten buckets over [0, 1].
DEFAULT_SCORE_BOUNDS: tuple[float, ...] = tuple(round(0.1 * i, 1) for i in range(1, 11))


@dataclass(frozen=True)
class ScoreCalibration:
    """Labels that follow the scores: a request scored ``s`` is a positive with probability
    ``s ** power`` (1: calibrated), and is predicted positive when ``s > threshold``.

    Outcomes (tp, fp, tn, fn) are then derived from the score histogram's buckets, with the
    power applied to each bucket's exact mean score, instead of from ``Scenario.kpi``.
    """

    threshold: float
    power: float = 1.0

    def __post_init__(self) -> None:
        if not 0 < self.threshold < 1:
            raise ScenarioError(f"calibration threshold must be in (0, 1), got {self.threshold}")
        if not self.power > 0:
            raise ScenarioError(f"calibration power must be positive, got {self.power}")


# --- the scenario --------------------------------------------------------------------------


@dataclass(frozen=True)
class Scenario:
    """Deterministic traffic of one model version over ``[start, start + duration)``.

    ``rate`` is the mean number of requests per second over all segments; daily seasonality
    multiplies it by ``1 + seasonality * sin(...)``, peaking at 12:00 UTC. With ``noise``,
    counts are sampled (Poisson requests, multinomial splits) from a generator seeded with
    ``seed``; without it they are the expected values.
    """

    name: str
    description: str
    model: str
    version: str
    start: datetime
    duration: timedelta
    features: tuple[Feature, ...]
    segments: tuple[Segment, ...]
    step: timedelta = MAX_STEP
    rate: float = 600.0
    seasonality: float = 0.3
    noise: bool = True
    seed: int = 0
    kpi: Kpi = Kpi(precision=0.92, recall=0.85, positive_rate=0.04)
    #: Fraction of predictions whose label eventually arrives.
    labeled_fraction: float = 1.0
    score_distribution: Distribution = DEFAULT_SCORE_DISTRIBUTION
    score_bounds: tuple[float, ...] = DEFAULT_SCORE_BOUNDS
    incidents: tuple[Incident, ...] = field(default=())
    #: Outcomes that follow the scores (None: outcomes follow ``kpi``, whatever the scores).
    calibration: ScoreCalibration | None = None

    def __post_init__(self) -> None:
        for name in ("features", "segments", "incidents", "score_bounds"):
            object.__setattr__(self, name, tuple(getattr(self, name)))
        self._validate()

    # -- geometry of time

    @property
    def end(self) -> datetime:
        return self.start + self.duration

    @property
    def steps(self) -> int:
        """Number of steps; counters have ``steps + 1`` samples (the first is 0)."""
        return int(self.duration / self.step)

    @property
    def step_seconds(self) -> int:
        return int(self.step.total_seconds())

    def sample_times(self) -> NDArray[np.int64]:
        """Unix seconds of every counter sample: ``start, start + step, ..., end``."""
        first = int(self.start.timestamp())
        return first + self.step_seconds * np.arange(self.steps + 1, dtype=np.int64)

    # -- lookups

    @property
    def feature_names(self) -> tuple[str, ...]:
        return tuple(f.name for f in self.features)

    @property
    def segment_names(self) -> tuple[str, ...]:
        return tuple(s.name for s in self.segments)

    def feature(self, name: str) -> Feature:
        """The feature called ``name``."""
        for candidate in self.features:
            if candidate.name == name:
                return candidate
        raise ScenarioError(f"scenario {self.name!r} has no feature {name!r}")

    def segment(self, name: str) -> Segment:
        """The segment called ``name``."""
        for candidate in self.segments:
            if candidate.name == name:
                return candidate
        raise ScenarioError(f"scenario {self.name!r} has no segment {name!r}")

    # -- ground truth

    def active_incidents(self, moment: datetime) -> tuple[Incident, ...]:
        """Incidents whose effect is in the data generated at ``moment``."""
        return tuple(i for i in self.incidents if i.active_at(moment))

    def incidents_of(self, kind: IncidentKind) -> tuple[Incident, ...]:
        """Incidents of one kind, in declaration order."""
        return tuple(i for i in self.incidents if i.kind is kind)

    def fingerprint(self) -> str:
        """Stable hash of everything that affects the generated data (a cache key).

        Name and description are left out: they do not change a single sample.
        """
        content = {
            f.name: _canonical(getattr(self, f.name))
            for f in dataclasses.fields(self)
            if f.name not in ("name", "description")
            # Scenarios without calibration keep the keys (and caches) they always had.
            and not (f.name == "calibration" and self.calibration is None)
        }
        content["generator"] = GENERATOR_VERSION
        text = json.dumps(content, sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(text.encode()).hexdigest()[:24]

    # -- validation

    def _validate(self) -> None:
        _check_utc("start", self.start)
        if not (timedelta(0) < self.step <= MAX_STEP):
            raise ScenarioError(f"step must be in (0, {MAX_STEP}] (Prometheus lookback)")
        if self.step.total_seconds() % 1 or self.duration % self.step:
            raise ScenarioError("step must be whole seconds and divide the duration")
        if self.duration <= timedelta(0):
            raise ScenarioError("duration must be positive")
        if self.rate <= 0:
            raise ScenarioError("rate must be positive")
        if not 0 <= self.seasonality < 1:
            raise ScenarioError("seasonality must be in [0, 1)")
        _check_fraction("labeled_fraction", self.labeled_fraction)
        _check_unique("feature", self.feature_names)
        _check_unique("segment", self.segment_names)
        if not self.features or not self.segments:
            raise ScenarioError("a scenario needs at least one feature and one segment")
        shares = [s.share for s in self.segments]
        if min(shares) <= 0 or not math.isclose(sum(shares), 1.0, abs_tol=1e-6):
            raise ScenarioError(f"segment shares must be positive and sum to 1, got {shares}")
        if any(lo >= hi for lo, hi in zip(self.score_bounds, self.score_bounds[1:], strict=False)):
            raise ScenarioError("score_bounds must be strictly increasing")
        for incident in self.incidents:
            self._validate_incident(incident)
        self._validate_calibration()

    def _validate_calibration(self) -> None:
        shifts = [i for i in self.incidents if isinstance(i, CalibrationShift)]
        if self.calibration is None:
            if shifts:
                raise ScenarioError("CalibrationShift needs a scenario with calibration")
            return
        if not any(math.isclose(b, self.calibration.threshold) for b in self.score_bounds):
            raise ScenarioError("the calibration threshold must be one of score_bounds")
        if any(isinstance(i, KpiDrop) for i in self.incidents):
            raise ScenarioError(
                "with calibration, outcomes follow the scores: use CalibrationShift, not KpiDrop"
            )
        for shift in shifts:
            if not shift.power > 0:
                raise ScenarioError(f"CalibrationShift power must be positive, got {shift.power}")

    def _validate_incident(self, incident: Incident) -> None:
        label = type(incident).__name__
        _check_utc(f"{label} start", incident.visible_at)
        end = incident.resolved_at
        if end is not None:
            _check_utc(f"{label} end", end)
            if end <= incident.visible_at:
                raise ScenarioError(f"{label} ends before it starts")
        if isinstance(incident, GradualDrift) and incident.end <= incident.start:
            raise ScenarioError("GradualDrift end must be after its start")
        known_features = set(self.feature_names)
        known_segments = set(self.segment_names)
        for name in incident.features:
            if name not in known_features:
                raise ScenarioError(f"{label} refers to unknown feature {name!r}")
        for name in incident.segments:
            if name not in known_segments:
                raise ScenarioError(f"{label} refers to unknown segment {name!r}")
        if isinstance(incident, KpiDrop):
            # Check the targets form a consistent confusion matrix.
            Kpi(
                precision=_either(incident.precision, self.kpi.precision),
                recall=_either(incident.recall, self.kpi.recall),
                positive_rate=_either(incident.positive_rate, self.kpi.positive_rate),
            )


def utc(year: int, month: int, day: int, hour: int = 0, minute: int = 0) -> datetime:
    """A timezone-aware UTC datetime; scenarios only accept those."""
    return datetime(year, month, day, hour, minute, tzinfo=UTC)


def _canonical(value: object) -> object:
    """A JSON-able form that keeps type names (Normal(1, 2) differs from LogNormal(1, 2))."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        fields = {f.name: _canonical(getattr(value, f.name)) for f in dataclasses.fields(value)}
        return {"type": type(value).__name__, **fields}
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, datetime):
        return value.timestamp()
    if isinstance(value, timedelta):
        return value.total_seconds()
    if isinstance(value, tuple | list):
        return [_canonical(item) for item in value]
    if isinstance(value, bool | str) or value is None:
        return value
    if isinstance(value, int | float):
        # 600 and 600.0 generate the same data.
        return repr(float(value))
    raise TypeError(f"cannot fingerprint {type(value).__name__}")
