"""Named scenarios shared by tests, benchmarks, the demo and the backtest.

All use the same model (``fraud-detector`` version ``v1``), five features, four segments (one
carrying 0.1% of traffic) and a fixed past start, so their data never changes. Single-incident
scenarios last four days: three healthy days (a baseline of up to ``offset: 1d, window: 2d``)
and the incident at :data:`INCIDENT_AT`, 00:00 UTC on day four. ``showcase`` lasts 14 days and
strings several incidents together; :data:`SHOWCASE_TIMES` names its moments.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import replace
from datetime import datetime, timedelta
from types import MappingProxyType

from evergreen.simulation.scenario import (
    Beta,
    BreakMode,
    CalibrationShift,
    Feature,
    GradualDrift,
    Incident,
    Kpi,
    KpiDrop,
    LabelOutage,
    LogNormal,
    Normal,
    NullSpike,
    PredictionShift,
    Scenario,
    ScenarioError,
    ScoreCalibration,
    Segment,
    SegmentBreak,
    Spike,
    UnitChange,
    UpstreamJump,
    utc,
)

MODEL = "fraud-detector"
VERSION = "v1"
#: Monday 2026-01-05 00:00 UTC: every catalog scenario starts here.
START = utc(2026, 1, 5)
#: When the incident of each four-day scenario starts.
INCIDENT_AT = START + timedelta(days=3)
#: Requests per second over all segments: the 0.1% segment still gets ~2,000 requests per hour.
RATE = 600.0
SMALL_SEGMENT = "firefox-beta"

FEATURES: tuple[Feature, ...] = (
    Feature(
        "amount",
        (5, 10, 20, 35, 50, 75, 100, 150, 250, 500, 1000, 2500),
        LogNormal(median=45.0, sigma=0.9),
        null_rate=0.001,
    ),
    Feature(
        "age",
        (18, 22, 26, 30, 35, 40, 45, 50, 55, 60, 70, 80),
        Normal(mean=41.0, std=13.0),
        null_rate=0.01,
    ),
    Feature(
        "temperature_c",
        # Wide enough for the same values in °F: a unit change stays measurable, not overflow.
        (-10, -5, 0, 5, 10, 15, 20, 25, 30, 35, 40, 50, 60, 70, 80, 90, 100, 120),
        Normal(mean=21.0, std=6.0),
        null_rate=0.002,
    ),
    Feature(
        "session_length",
        (10, 30, 60, 120, 180, 300, 450, 600, 900, 1800, 3600, 7200),
        LogNormal(median=180.0, sigma=1.0),
        null_rate=0.001,
    ),
    Feature(
        "distance_km",
        (0.5, 1, 2, 3, 5, 8, 12, 20, 35, 60, 100, 250),
        LogNormal(median=8.0, sigma=1.1),
        null_rate=0.005,
    ),
)

SEGMENTS: tuple[Segment, ...] = (
    Segment("web", 0.6),
    Segment("ios", 0.25),
    Segment("android", 0.149),
    Segment(SMALL_SEGMENT, 0.001),
)

BASELINE_KPI = Kpi(precision=0.92, recall=0.85, positive_rate=0.04)


def _four_days(
    name: str,
    description: str,
    *incidents: Incident,
    features: tuple[Feature, ...] = FEATURES,
    segments: tuple[Segment, ...] = SEGMENTS,
    duration: timedelta = timedelta(days=4),
) -> Scenario:
    return Scenario(
        name=name,
        description=description,
        model=MODEL,
        version=VERSION,
        start=START,
        duration=duration,
        features=features,
        segments=segments,
        rate=RATE,
        kpi=BASELINE_KPI,
        incidents=incidents,
    )


def stable() -> Scenario:
    """Healthy traffic: daily seasonality and sampling noise only."""
    return _four_days("stable", "Four healthy days: seasonality and noise only.")


def gradual_drift_kpi_decline() -> Scenario:
    """``amount`` drifts over a day while precision and recall decline with it."""
    end = INCIDENT_AT + timedelta(days=1)
    return _four_days(
        "gradual_drift_kpi_decline",
        "amount drifts up over day 4; precision and recall decline with it (retrain).",
        GradualDrift("amount", INCIDENT_AT, end, mean_shift=45.0, std_scale=1.4),
        KpiDrop(INCIDENT_AT, precision=0.8, recall=0.72, ramp=end - INCIDENT_AT),
    )


def gradual_drift_healthy_kpis() -> Scenario:
    """``age`` drifts over a day but the KPIs stay healthy (watch, do not retrain)."""
    return _four_days(
        "gradual_drift_healthy_kpis",
        "age drifts up over day 4 while KPIs stay healthy.",
        GradualDrift("age", INCIDENT_AT, INCIDENT_AT + timedelta(days=1), mean_shift=8.0),
    )


def unit_change() -> Scenario:
    """``temperature_c`` starts arriving in Fahrenheit (a data-quality incident)."""
    return _four_days(
        "unit_change",
        "temperature_c arrives in °F from day 4 (x1.8 + 32): a pipeline break.",
        UnitChange("temperature_c", INCIDENT_AT, scale=1.8, offset=32.0),
    )


def segment_break() -> Scenario:
    """``session_length`` collapses to 0 inside the 0.1% ``firefox-beta`` segment only."""
    return _four_days(
        "segment_break",
        "A browser beta breaks the session cookie: session_length is 0 for 0.1% of traffic.",
        SegmentBreak(SMALL_SEGMENT, "session_length", INCIDENT_AT, BreakMode.CONSTANT, 0.0),
    )


def null_spike() -> Scenario:
    """``distance_km`` is missing for 30% of requests for six hours, then recovers."""
    return _four_days(
        "null_spike",
        "distance_km goes missing for 30% of requests for six hours on day 4.",
        NullSpike("distance_km", INCIDENT_AT, INCIDENT_AT + timedelta(hours=6), null_rate=0.3),
    )


def upstream_jump() -> Scenario:
    """Four features jump by one standard deviation at once (an upstream schema change)."""
    return _four_days(
        "upstream_jump",
        "An upstream change shifts amount, age, session_length and distance_km at once.",
        UpstreamJump(("amount", "age", "session_length", "distance_km"), INCIDENT_AT, shift_in_std=1.0),
    )


def kpi_drop_no_drift() -> Scenario:
    """Precision and recall drop while every input looks healthy."""
    return _four_days(
        "kpi_drop_no_drift",
        "Precision 0.92→0.75 and recall 0.85→0.70 on day 4 with healthy inputs.",
        KpiDrop(INCIDENT_AT, precision=0.75, recall=0.70),
    )


def short_spike() -> Scenario:
    """``amount`` spikes for 30 minutes and recovers (should not trigger any action)."""
    return _four_days(
        "short_spike",
        "amount doubles its mean for 30 minutes on day 4, then recovers.",
        Spike("amount", INCIDENT_AT, INCIDENT_AT + timedelta(minutes=30), mean_shift=60.0),
    )


def kpi_at_threshold() -> Scenario:
    """Precision settles exactly at the suite's minimum (0.88): it must not flap."""
    return _four_days(
        "kpi_at_threshold",
        "Precision drops to 0.88 on day 4, the suite monitor's minimum, and stays there.",
        KpiDrop(INCIDENT_AT, precision=0.88),
    )


def segment_null_spike() -> Scenario:
    """``distance_km`` goes missing for 30% of ``ios`` requests only."""
    return _four_days(
        "segment_null_spike",
        "distance_km is missing in 30% of ios requests from day 4: a segment's data-quality breach.",
        NullSpike("distance_km", INCIDENT_AT, None, null_rate=0.3, only_segments=("ios",)),
    )


def late_labels() -> Scenario:
    """Confirmed positives stall for six hours, then arrive at once; inputs stay healthy."""
    return _four_days(
        "late_labels",
        "The fraud-confirmation job stalls for six hours on day 4, then catches up at once.",
        LabelOutage(INCIDENT_AT, INCIDENT_AT + timedelta(hours=6), outcomes=("tp", "fn")),
    )


def segment_kpi_drop() -> Scenario:
    """Precision drops in ``android`` only, where ``amount`` and the scores drift too."""
    # A drift over half a day: gradual, not a step (a step confined to one segment is a break).
    hours = timedelta(hours=12)
    return _four_days(
        "segment_kpi_drop",
        "android (15% of traffic) converts worse from day 4 while its amount and scores drift.",
        KpiDrop(INCIDENT_AT, precision=0.72, only_segments=("android",)),
        GradualDrift("amount", INCIDENT_AT, INCIDENT_AT + hours, mean_shift=30.0, only_segments=("android",)),
        PredictionShift(INCIDENT_AT, Beta(2.0, 9.0), only_segments=("android",)),
    )


#: A segment so small that an hour of it holds a few dozen observations, below minSamples.
TINY_SEGMENT = "smart-tv"


def shift_beside_tiny_segment() -> Scenario:
    """``amount`` jumps in every segment; one segment is too thin to show it."""
    segments = (
        Segment("web", 0.6),
        Segment("ios", 0.25),
        Segment("android", 0.14898),
        Segment(SMALL_SEGMENT, 0.001),
        Segment(TINY_SEGMENT, 0.00002),
    )
    return _four_days(
        "shift_beside_tiny_segment",
        "amount jumps by one standard deviation everywhere; smart-tv carries 0.002% of traffic.",
        UpstreamJump(("amount",), INCIDENT_AT, shift_in_std=1.0),
        segments=segments,
    )


def long_unit_change() -> Scenario:
    """A unit change that outlasts the baseline offset: the rolling baseline must not absorb it."""
    return _four_days(
        "long_unit_change",
        "temperature_c arrives in °F from day 4 for three days, longer than the 1d baseline offset.",
        UnitChange("temperature_c", INCIDENT_AT, scale=1.8, offset=32.0),
        duration=timedelta(days=6),
    )


#: A price-like feature whose exporter clamps at its top bound (5000).
PRICE = Feature(
    "price",
    (1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000),
    LogNormal(median=20.0, sigma=0.8),
    null_rate=0.001,
)


def clipped_unit_change() -> Scenario:
    """``price`` arrives in cents (x100) and the exporter clamps values at its top bucket."""
    return _four_days(
        "clipped_unit_change",
        "price arrives in cents from day 4; about an eighth of the values clamp at the top bucket.",
        UnitChange("price", INCIDENT_AT, scale=100.0, clamp=True),
        features=(*FEATURES, PRICE),
    )


#: Scores of the calibrated scenarios: twenty buckets over [0, 1], as a model exporting
#: probabilities would declare them; the decision threshold 0.5 is one of the bounds.
CALIBRATED_SCORE_BOUNDS: tuple[float, ...] = tuple(round(0.05 * i, 2) for i in range(1, 21))
#: About 6.6% of requests score above 0.5; calibrated, precision there is 0.65.
CALIBRATED_SCORES = Beta(0.3, 2.0)
#: How late the calibrated scenarios' labels are (chargebacks): their monitors' labelDelay.
LABEL_DELAY = timedelta(hours=6)


def _calibrated(name: str, description: str, *incidents: Incident) -> Scenario:
    return Scenario(
        name=name,
        description=description,
        model=MODEL,
        version=VERSION,
        start=START,
        duration=timedelta(days=4),
        features=FEATURES,
        segments=SEGMENTS,
        rate=RATE,
        score_distribution=CALIBRATED_SCORES,
        score_bounds=CALIBRATED_SCORE_BOUNDS,
        calibration=ScoreCalibration(threshold=0.5),
        incidents=incidents,
    )


def calibrated_late_labels() -> Scenario:
    """A calibrated model's scores fall on day 4: precision at 0.5 drops from 0.65 to 0.57.

    Its labels come six hours late, so the measured precision sees the drop six hours after
    the scores do; an estimate from the scores sees it at once.
    """
    return _calibrated(
        "calibrated_late_labels",
        "A calibrated model's scores fall on day 4 (precision 0.65 -> 0.57); labels come 6h late.",
        PredictionShift(INCIDENT_AT, Beta(0.5, 6.0)),
    )


def miscalibrated_model() -> Scenario:
    """From day 4 the scores stop meaning what they say: P(positive | s) = s^2.

    The score distribution does not move, so an estimate from the scores stays at 0.65 while
    the labels measure 0.44: calibration drift.
    """
    return _calibrated(
        "miscalibrated_model",
        "From day 4 the model is overconfident (P(positive | s) = s^2): precision 0.65 -> 0.44 "
        "with unchanged scores.",
        CalibrationShift(INCIDENT_AT, power=2.0),
    )


#: Ground truth of :func:`showcase`. Days 0-8 are healthy, so a monitor whose baseline is
#: "the same day last week" (``offset: 7d, window: 1d``) has a clean baseline from day 8 on.
SHOWCASE_TIMES: Mapping[str, datetime] = MappingProxyType(
    {
        "healthy": START + timedelta(days=8, hours=6),  # 2026-01-13 06:00, a clean evaluation
        "drift_start": START + timedelta(days=8, hours=12),  # 2026-01-13 12:00
        "drift_end": START + timedelta(days=10),  # 2026-01-15 00:00, stays drifted
        "unit_change": START + timedelta(days=10, hours=12),  # 2026-01-15 12:00
        "unit_change_fixed": START + timedelta(days=11, hours=12),  # 2026-01-16 12:00
        "segment_break": START + timedelta(days=12, hours=6),  # 2026-01-17 06:00
        "kpi_drop": START + timedelta(days=13),  # 2026-01-18 00:00
        "end": START + timedelta(days=14),  # 2026-01-19 00:00
    }
)


def showcase() -> Scenario:
    """Fourteen days at 5-minute steps with well separated incidents (see SHOWCASE_TIMES).

    1. days 0-6: healthy;
    2. ``amount`` drifts from day 7 to day 9 (mean +45, spread x1.4), then stays drifted;
    3. ``temperature_c`` arrives in °F for 24 hours from day 9 12:00, then is fixed;
    4. ``session_length`` collapses to 0 in ``firefox-beta`` (0.1%) from day 11 06:00 on;
    5. precision 0.92→0.78 and recall 0.85→0.72 from day 12 12:00 on.
    """
    times = SHOWCASE_TIMES
    return replace(
        stable(),
        name="showcase",
        description="Two healthy weeks broken by drift, a unit change, a segment break and a "
        "KPI drop at known times.",
        duration=times["end"] - START,
        incidents=(
            GradualDrift("amount", times["drift_start"], times["drift_end"], mean_shift=45.0, std_scale=1.4),
            UnitChange(
                "temperature_c",
                times["unit_change"],
                scale=1.8,
                offset=32.0,
                until=times["unit_change_fixed"],
            ),
            SegmentBreak(SMALL_SEGMENT, "session_length", times["segment_break"]),
            KpiDrop(times["kpi_drop"], precision=0.78, recall=0.72),
        ),
    )


#: Every named scenario.
SCENARIOS: Mapping[str, Callable[[], Scenario]] = MappingProxyType(
    {
        factory.__name__: factory
        for factory in (
            stable,
            gradual_drift_kpi_decline,
            gradual_drift_healthy_kpis,
            unit_change,
            segment_break,
            null_spike,
            upstream_jump,
            kpi_drop_no_drift,
            short_spike,
            kpi_at_threshold,
            segment_kpi_drop,
            segment_null_spike,
            late_labels,
            shift_beside_tiny_segment,
            long_unit_change,
            clipped_unit_change,
            calibrated_late_labels,
            miscalibrated_model,
            showcase,
        )
    }
)


def scenario(name: str) -> Scenario:
    """The catalog scenario called ``name``."""
    try:
        return SCENARIOS[name]()
    except KeyError:
        known = ", ".join(sorted(SCENARIOS))
        raise ScenarioError(f"unknown scenario {name!r}; known: {known}") from None
