"""Live model traffic: an exporter whose counters advance in real time as a test dictates.

:class:`LiveModelTraffic` serves the same metric families as a backfilled scenario (see
:mod:`.openmetrics`) on a free 127.0.0.1 port. A background thread adds *expected* counts
every ``tick`` seconds from the current settings, so what Prometheus scrapes follows the
settings exactly, without sampling noise. Tests change the settings (rate, feature shifts,
null rates, versions, KPIs, score distributions) and pause or resume the exporter.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from types import TracebackType
from typing import Self, TypeVar
from wsgiref.simple_server import WSGIServer

import numpy as np
from prometheus_client import CollectorRegistry, start_http_server
from prometheus_client.core import CounterMetricFamily, Metric
from prometheus_client.registry import Collector
from prometheus_client.samples import Sample

from evergreen.errors import EvergreenError
from evergreen.simulation import catalog
from evergreen.simulation.openmetrics import (
    FEATURE_MISSING,
    FEATURE_VALUE,
    HELP,
    LABEL_OUTCOMES,
    PREDICTION_SCORE,
    PREDICTIONS,
    le_label,
)
from evergreen.simulation.scenario import (
    DEFAULT_SCORE_BOUNDS,
    DEFAULT_SCORE_DISTRIBUTION,
    Distribution,
    Feature,
    FloatArray,
    Kpi,
    Scenario,
    ScenarioError,
    Segment,
)
from evergreen.simulation.traffic import OUTCOMES, bucket_probabilities

_T = TypeVar("_T")


class LiveTrafficError(EvergreenError):
    """The live exporter was used in a state that does not allow it (e.g. not started)."""


@dataclass(frozen=True)
class FeatureShift:
    """How a live feature deviates from its healthy distribution ``X``.

    Values are ``scale * Y + offset`` where ``Y`` is ``X`` with its mean moved by
    ``mean_shift`` and its spread around the healthy mean scaled by ``std_scale``. A unit
    change is ``scale=1.8, offset=32``; a constant value ``v`` is ``scale=0, offset=v``.
    """

    mean_shift: float = 0.0
    std_scale: float = 1.0
    scale: float = 1.0
    offset: float = 0.0

    def affine(self, healthy_mean: float) -> tuple[float, float]:
        """``(a, b)`` such that values are ``a * X + b``."""
        drift_offset = healthy_mean + self.mean_shift - self.std_scale * healthy_mean
        return self.scale * self.std_scale, self.scale * drift_offset + self.offset


@dataclass
class _VersionCounters:
    predictions: FloatArray  # (segment,)
    score_buckets: FloatArray  # (segment, bucket), per bucket
    score_sum: FloatArray  # (segment,)
    outcomes: FloatArray  # (outcome,)


@dataclass
class _Settings:
    rate: float
    versions: dict[str, float]
    kpis: dict[str, Kpi] = field(default_factory=dict)
    scores: dict[str, Distribution] = field(default_factory=dict)
    shifts: dict[tuple[str, str | None], FeatureShift] = field(default_factory=dict)
    null_rates: dict[tuple[str, str | None], float] = field(default_factory=dict)


class LiveModelTraffic:
    """A model exporting its metrics live; settings change what the next ticks add.

    Per-segment settings (``segment="ios"``) override the ones for all segments.
    """

    def __init__(
        self,
        *,
        model: str = catalog.MODEL,
        features: Sequence[Feature] = catalog.FEATURES,
        segments: Sequence[Segment] = catalog.SEGMENTS,
        versions: Mapping[str, float] | None = None,
        rate: float = catalog.RATE,
        kpi: Kpi = catalog.BASELINE_KPI,
        score_distribution: Distribution | None = None,
        score_bounds: Sequence[float] = DEFAULT_SCORE_BOUNDS,
        labeled_fraction: float = 1.0,
        tick: float = 0.25,
    ) -> None:
        """Describe the model; nothing runs until :meth:`start` (or ``with``)."""
        self.model = model
        self.features = tuple(features)
        self.segments = tuple(segments)
        self.score_bounds = tuple(float(b) for b in score_bounds)
        self.labeled_fraction = labeled_fraction
        self.tick = tick
        self._healthy_kpi = kpi
        self._healthy_score = score_distribution or DEFAULT_SCORE_DISTRIBUTION
        self._healthy_rate = rate
        self._healthy_versions = dict(versions or {catalog.VERSION: 1.0})
        self._shares = np.array([s.share for s in self.segments])
        self._lock = threading.Lock()
        self._settings = self._healthy_settings()
        self._zero_counters()
        self._registry = CollectorRegistry(auto_describe=False)
        self._registry.register(_Exposition(self._families))
        self._server: WSGIServer | None = None
        self._port = 0
        self._paused = False
        self._stopping = threading.Event()
        self._ticker: threading.Thread | None = None

    @classmethod
    def from_scenario(cls, scenario: Scenario, *, tick: float = 0.25) -> LiveModelTraffic:
        """Live traffic shaped like ``scenario``'s healthy state (its incidents are ignored)."""
        return cls(
            model=scenario.model,
            features=scenario.features,
            segments=scenario.segments,
            versions={scenario.version: 1.0},
            rate=scenario.rate,
            kpi=scenario.kpi,
            score_distribution=scenario.score_distribution,
            score_bounds=scenario.score_bounds,
            labeled_fraction=scenario.labeled_fraction,
            tick=tick,
        )

    # -- lifecycle

    @property
    def port(self) -> int:
        if not self._port:
            raise LiveTrafficError("live traffic has not been started yet")
        return self._port

    @property
    def target(self) -> str:
        """``host:port`` for a Prometheus scrape config."""
        return f"127.0.0.1:{self.port}"

    @property
    def metrics_url(self) -> str:
        return f"http://{self.target}/metrics"

    @property
    def paused(self) -> bool:
        return self._paused

    def start(self) -> None:
        """Serve metrics and start advancing the counters."""
        if self._ticker is not None:
            return
        self._serve()
        self._stopping.clear()
        self._ticker = threading.Thread(target=self._run, name="live-model-traffic", daemon=True)
        self._ticker.start()

    def stop(self) -> None:
        """Stop the ticker and the HTTP server; idempotent."""
        self._stopping.set()
        if self._ticker is not None:
            self._ticker.join()
            self._ticker = None
        self._unserve()

    def pause(self) -> None:
        """The model goes away: no traffic, and the endpoint stops answering."""
        with self._lock:
            self._paused = True
        self._unserve()

    def resume(self, *, restart: bool = False) -> None:
        """Serve again on the same port; with ``restart`` counters start from zero (a reset)."""
        if restart:
            with self._lock:
                self._zero_counters()
        self._serve()
        with self._lock:
            self._paused = False

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()

    # -- settings

    def reset(self) -> None:
        """Back to healthy settings; counters keep their values."""
        with self._lock:
            self._settings = self._healthy_settings()
            self._sync_versions()

    def set_rate(self, per_second: float) -> None:
        """Requests per second over all segments."""
        if per_second < 0:
            raise ScenarioError("rate must not be negative")
        with self._lock:
            self._settings.rate = per_second

    def shift_feature(
        self,
        feature: str,
        *,
        segment: str | None = None,
        mean_shift: float = 0.0,
        std_scale: float = 1.0,
        scale: float = 1.0,
        offset: float = 0.0,
    ) -> None:
        """Replace how ``feature`` deviates (in one segment, or all); see :class:`FeatureShift`."""
        self._check(feature, segment)
        with self._lock:
            self._settings.shifts[feature, segment] = FeatureShift(mean_shift, std_scale, scale, offset)

    def set_null_rate(self, feature: str, rate: float, *, segment: str | None = None) -> None:
        """Fraction of requests where ``feature`` is missing."""
        self._check(feature, segment)
        if not 0 <= rate <= 1:
            raise ScenarioError(f"null rate must be in [0, 1], got {rate}")
        with self._lock:
            self._settings.null_rates[feature, segment] = rate

    def set_versions(self, weights: Mapping[str, float]) -> None:
        """Traffic split between versions; versions left out disappear with their series."""
        total = sum(weights.values())
        if not weights or total <= 0 or min(weights.values()) < 0:
            raise ScenarioError(f"version weights must be >= 0 with a positive sum: {weights}")
        with self._lock:
            self._settings.versions = {v: w / total for v, w in weights.items()}
            self._sync_versions()

    def set_kpi(self, version: str, kpi: Kpi) -> None:
        """Outcome rates of ``version``'s delayed labels."""
        with self._lock:
            self._settings.kpis[version] = kpi

    def set_score_distribution(self, version: str, distribution: Distribution) -> None:
        """Distribution of ``version``'s prediction scores."""
        with self._lock:
            self._settings.scores[version] = distribution

    # -- expectations for tests

    def feature_probabilities(self, feature: str, segment: str) -> FloatArray:
        """Bucket probabilities (overflow last) of observed values under the current settings."""
        self._check(feature, segment)
        index = [f.name for f in self.features].index(feature)
        s = [g.name for g in self.segments].index(segment)
        with self._lock:
            a, b = self._affine(index)
        definition = self.features[index]
        return bucket_probabilities(definition.distribution, np.asarray(definition.bounds), a[s], b[s])

    def requests_total(self) -> float:
        """Requests served so far over all versions and segments."""
        with self._lock:
            return float(sum(c.predictions.sum() for c in self._versions.values()))

    def advance(self, seconds: float) -> None:
        """Add the expected traffic of ``seconds`` under the current settings."""
        with self._lock:
            if self._paused or seconds <= 0:
                return
            settings = self._settings
            requests = settings.rate * seconds * self._shares
            for index, feature in enumerate(self.features):
                a, b = self._affine(index)
                null = self._null_rates(index)
                probabilities = bucket_probabilities(feature.distribution, np.asarray(feature.bounds), a, b)
                observed = requests * (1.0 - null)
                self._feature_buckets[index] += observed[:, None] * probabilities
                self._feature_missing[index] += requests * null
                self._feature_sum[index] += observed * (a * feature.distribution.mean + b)
            for version, weight in settings.versions.items():
                counters = self._versions[version]
                served = requests * weight
                score = settings.scores.get(version, self._healthy_score)
                kpi = settings.kpis.get(version, self._healthy_kpi)
                counters.predictions += served
                counters.score_buckets += served[:, None] * bucket_probabilities(
                    score, np.asarray(self.score_bounds)
                )
                counters.score_sum += served * score.mean
                labelled = served.sum() * self.labeled_fraction
                counters.outcomes += labelled * np.asarray(kpi.outcome_rates())

    # -- internals

    def _healthy_settings(self) -> _Settings:
        return _Settings(rate=self._healthy_rate, versions=dict(self._healthy_versions))

    def _zero_counters(self) -> None:
        segments = len(self.segments)
        self._feature_buckets = [np.zeros((segments, len(f.bounds) + 1)) for f in self.features]
        self._feature_missing = [np.zeros(segments) for _ in self.features]
        self._feature_sum = [np.zeros(segments) for _ in self.features]
        self._versions: dict[str, _VersionCounters] = {}
        self._sync_versions()

    def _sync_versions(self) -> None:
        segments, width = len(self.segments), len(self.score_bounds) + 1
        for version in list(self._versions):
            if version not in self._settings.versions:
                del self._versions[version]
        for version in self._settings.versions:
            self._versions.setdefault(
                version,
                _VersionCounters(
                    np.zeros(segments),
                    np.zeros((segments, width)),
                    np.zeros(segments),
                    np.zeros(len(OUTCOMES)),
                ),
            )

    def _affine(self, index: int) -> tuple[FloatArray, FloatArray]:
        feature = self.features[index]
        pairs = [
            self._lookup(self._settings.shifts, feature.name, s.name, FeatureShift()).affine(
                feature.distribution.mean
            )
            for s in self.segments
        ]
        return np.array([p[0] for p in pairs]), np.array([p[1] for p in pairs])

    def _null_rates(self, index: int) -> FloatArray:
        feature = self.features[index]
        return np.array(
            [
                self._lookup(self._settings.null_rates, feature.name, s.name, feature.null_rate)
                for s in self.segments
            ]
        )

    @staticmethod
    def _lookup(table: Mapping[tuple[str, str | None], _T], feature: str, segment: str, default: _T) -> _T:
        if (feature, segment) in table:
            return table[feature, segment]
        return table.get((feature, None), default)

    def _check(self, feature: str, segment: str | None) -> None:
        if feature not in {f.name for f in self.features}:
            raise ScenarioError(f"unknown feature {feature!r}")
        if segment is not None and segment not in {s.name for s in self.segments}:
            raise ScenarioError(f"unknown segment {segment!r}")

    def _serve(self) -> None:
        if self._server is not None:
            return
        server, _ = start_http_server(self._port, addr="127.0.0.1", registry=self._registry)
        self._server = server
        self._port = server.server_port

    def _unserve(self) -> None:
        server, self._server = self._server, None
        if server is not None:
            server.shutdown()
            server.server_close()

    def _run(self) -> None:
        last = time.monotonic()
        while not self._stopping.wait(self.tick):
            now = time.monotonic()
            self.advance(now - last)
            last = now

    def _families(self) -> Iterator[Metric]:
        """The current counters as metric families (called on every scrape)."""
        with self._lock:
            feature_buckets = [b.cumsum(axis=-1) for b in self._feature_buckets]
            missing = [m.copy() for m in self._feature_missing]
            sums = [s.copy() for s in self._feature_sum]
            versions = {
                v: _VersionCounters(
                    c.predictions.copy(),
                    c.score_buckets.cumsum(axis=-1),
                    c.score_sum.copy(),
                    c.outcomes.copy(),
                )
                for v, c in self._versions.items()
            }
        values = Metric(FEATURE_VALUE, HELP[FEATURE_VALUE], "histogram")
        nulls = CounterMetricFamily(
            FEATURE_MISSING, HELP[FEATURE_MISSING], labels=["model", "feature", "segment"]
        )
        for f, feature in enumerate(self.features):
            les = [*(le_label(b) for b in feature.bounds), "+Inf"]
            for s, segment in enumerate(self.segments):
                labels = {"model": self.model, "feature": feature.name, "segment": segment.name}
                _add_histogram(values, labels, les, feature_buckets[f][s], float(sums[f][s]))
                nulls.add_metric(list(labels.values()), float(missing[f][s]))
        version_labels = ["model", "version", "segment"]
        scores = Metric(PREDICTION_SCORE, HELP[PREDICTION_SCORE], "histogram")
        predictions = CounterMetricFamily(PREDICTIONS, HELP[PREDICTIONS], labels=version_labels)
        outcomes = CounterMetricFamily(
            LABEL_OUTCOMES, HELP[LABEL_OUTCOMES], labels=["model", "version", "outcome"]
        )
        les = [*(le_label(b) for b in self.score_bounds), "+Inf"]
        for version, counters in versions.items():
            for s, segment in enumerate(self.segments):
                labels = {"model": self.model, "version": version, "segment": segment.name}
                _add_histogram(scores, labels, les, counters.score_buckets[s], float(counters.score_sum[s]))
                predictions.add_metric(list(labels.values()), float(counters.predictions[s]))
            for o, outcome in enumerate(OUTCOMES):
                outcomes.add_metric([self.model, version, outcome], float(counters.outcomes[o]))
        yield from (values, nulls, scores, predictions, outcomes)


def _add_histogram(
    metric: Metric, labels: dict[str, str], les: list[str], cumulative: FloatArray, total: float
) -> None:
    # HistogramMetricFamily drops _count and _sum when a bound is negative (temperature_c):
    # the contract promises both, so samples are added directly.
    for le, value in zip(les, cumulative.tolist(), strict=True):
        metric.samples.append(Sample(f"{metric.name}_bucket", {**labels, "le": le}, value))
    metric.samples.append(Sample(f"{metric.name}_count", labels, float(cumulative[-1])))
    metric.samples.append(Sample(f"{metric.name}_sum", labels, total))


class _Exposition(Collector):
    """Adapter: prometheus_client asks it for families on every scrape."""

    def __init__(self, families: Callable[[], Iterator[Metric]]) -> None:
        self._families = families

    def collect(self) -> Iterator[Metric]:
        return self._families()
