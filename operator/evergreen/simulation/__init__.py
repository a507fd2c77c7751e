"""Deterministic model traffic for tests, benchmarks, the demo and the backtest.

- :mod:`.scenario`: what a model's traffic looks like and which incidents happen when;
- :mod:`.traffic`: the scenario as per-step and cumulative counts (numpy);
- :mod:`.openmetrics`: those counters as OpenMetrics text for promtool;
- :mod:`.prometheus`: a throwaway Prometheus holding a scenario's history;
- :mod:`.live`: an exporter whose counters advance in real time;
- :mod:`.catalog`: named scenarios with known incident times.

Typical use::

    from evergreen.simulation import PrometheusServer, catalog

    with PrometheusServer.from_scenario(catalog.showcase(), tmp_path) as prometheus:
        prometheus.query("sum by (le) (increase(model_feature_value_bucket[1h]))", at=...)
"""

from evergreen.simulation import catalog
from evergreen.simulation.live import FeatureShift, LiveModelTraffic
from evergreen.simulation.openmetrics import write_openmetrics
from evergreen.simulation.prometheus import (
    Backfill,
    BackfillError,
    BinaryNotFoundError,
    PrometheusServer,
    PrometheusServerError,
    backfill,
)
from evergreen.simulation.scenario import (
    Beta,
    BreakMode,
    Distribution,
    Feature,
    GradualDrift,
    Incident,
    IncidentKind,
    Kpi,
    KpiDrop,
    LogNormal,
    Normal,
    NullSpike,
    PredictionShift,
    Scenario,
    ScenarioError,
    Segment,
    SegmentBreak,
    Spike,
    UnitChange,
    UpstreamJump,
    utc,
)
from evergreen.simulation.traffic import (
    OUTCOMES,
    Counters,
    StepCounts,
    bucket_probabilities,
    expected_step_counts,
    sampled_step_counts,
    simulate,
)

__all__ = [
    "OUTCOMES",
    "Backfill",
    "BackfillError",
    "Beta",
    "BinaryNotFoundError",
    "BreakMode",
    "Counters",
    "Distribution",
    "Feature",
    "FeatureShift",
    "GradualDrift",
    "Incident",
    "IncidentKind",
    "Kpi",
    "KpiDrop",
    "LiveModelTraffic",
    "LogNormal",
    "Normal",
    "NullSpike",
    "PredictionShift",
    "PrometheusServer",
    "PrometheusServerError",
    "Scenario",
    "ScenarioError",
    "Segment",
    "SegmentBreak",
    "Spike",
    "StepCounts",
    "UnitChange",
    "UpstreamJump",
    "backfill",
    "bucket_probabilities",
    "catalog",
    "expected_step_counts",
    "sampled_step_counts",
    "simulate",
    "utc",
    "write_openmetrics",
]
