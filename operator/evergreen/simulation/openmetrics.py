"""Write a scenario's counters as OpenMetrics text for ``promtool tsdb create-blocks-from``.

promtool silently drops out-of-order samples, so every series is written whole, in
timestamp order; timestamps are Unix seconds; the text has no blank lines and ends with
``# EOF``. The metric names and label sets here are the contract the rest of Evergreen reads:

- ``model_feature_value_{bucket,count,sum}{model, feature, segment[, le]}``
- ``model_feature_missing_total{model, feature, segment}``
- ``model_prediction_score_{bucket,count,sum}{model, version, segment[, le]}``
- ``model_predictions_total{model, version, segment}``
- ``model_label_outcomes_total{model, version, segment, outcome}`` (``tp``, ``fp``, ``tn``, ``fn``)
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from pathlib import Path
from typing import TextIO

import numpy as np
from prometheus_client.utils import floatToGoString

from evergreen.simulation.scenario import FloatArray, Scenario
from evergreen.simulation.traffic import OUTCOMES, Counters, simulate

FEATURE_VALUE = "model_feature_value"
FEATURE_MISSING = "model_feature_missing"
PREDICTION_SCORE = "model_prediction_score"
PREDICTIONS = "model_predictions"
LABEL_OUTCOMES = "model_label_outcomes"

HELP: dict[str, str] = {
    FEATURE_VALUE: "Observed values of each input feature.",
    FEATURE_MISSING: "Requests where the feature was missing or null.",
    PREDICTION_SCORE: "Scores the model returned.",
    PREDICTIONS: "Predictions served.",
    LABEL_OUTCOMES: "Delayed labels by confusion-matrix outcome.",
}


_go_float: Callable[[float], str] = floatToGoString


def le_label(bound: float) -> str:
    """The ``le`` label text for a bucket bound, as the Python client writes it (``10.0``)."""
    return _go_float(bound)


def write_openmetrics(source: Scenario | Counters, path: Path) -> int:
    """Stream the counters of ``source`` to ``path``; return the number of samples written."""
    counters = simulate(source).cumulative() if isinstance(source, Scenario) else source
    with path.open("w", encoding="utf-8") as out:
        written = _write(counters, out)
        out.write("# EOF\n")
    return written


def _write(counters: Counters, out: TextIO) -> int:
    scenario = counters.scenario
    stamps = [str(t) for t in counters.times.tolist()]
    integral = counters.integral

    def series(
        name: str, labels: Iterable[tuple[str, str]], values: FloatArray, whole: bool = integral
    ) -> int:
        prefix = f"{name}{{{','.join(f'{k}={_quote(v)}' for k, v in labels)}}} "
        numbers = values.astype(np.int64).tolist() if whole else values.tolist()
        out.write("".join(f"{prefix}{v} {t}\n" for v, t in zip(numbers, stamps, strict=True)))
        return len(stamps)

    def family(name: str, kind: str) -> None:
        out.write(f"# HELP {name} {HELP[name]}\n# TYPE {name} {kind}\n")

    model = ("model", scenario.model)
    version = ("version", scenario.version)
    written = 0

    family(FEATURE_VALUE, "histogram")
    for f, feature in enumerate(scenario.features):
        for s, segment in enumerate(scenario.segments):
            labels = [model, ("feature", feature.name), ("segment", segment.name)]
            for j, bound in enumerate(feature.bounds):
                written += series(
                    f"{FEATURE_VALUE}_bucket",
                    [*labels, ("le", le_label(bound))],
                    counters.feature_buckets[:, s, f, j],
                )
            count = counters.feature_count[:, s, f]
            written += series(f"{FEATURE_VALUE}_bucket", [*labels, ("le", "+Inf")], count)
            written += series(f"{FEATURE_VALUE}_count", labels, count)
            written += series(f"{FEATURE_VALUE}_sum", labels, counters.feature_sum[:, s, f], whole=False)

    family(FEATURE_MISSING, "counter")
    for f, feature in enumerate(scenario.features):
        for s, segment in enumerate(scenario.segments):
            labels = [model, ("feature", feature.name), ("segment", segment.name)]
            written += series(f"{FEATURE_MISSING}_total", labels, counters.feature_missing[:, s, f])

    family(PREDICTION_SCORE, "histogram")
    for s, segment in enumerate(scenario.segments):
        labels = [model, version, ("segment", segment.name)]
        for j, bound in enumerate(scenario.score_bounds):
            written += series(
                f"{PREDICTION_SCORE}_bucket",
                [*labels, ("le", le_label(bound))],
                counters.score_buckets[:, s, j],
            )
        written += series(f"{PREDICTION_SCORE}_bucket", [*labels, ("le", "+Inf")], counters.requests[:, s])
        written += series(f"{PREDICTION_SCORE}_count", labels, counters.requests[:, s])
        written += series(f"{PREDICTION_SCORE}_sum", labels, counters.score_sum[:, s], whole=False)

    family(PREDICTIONS, "counter")
    for s, segment in enumerate(scenario.segments):
        written += series(
            f"{PREDICTIONS}_total",
            [model, version, ("segment", segment.name)],
            counters.requests[:, s],
        )

    family(LABEL_OUTCOMES, "counter")
    for s, segment in enumerate(scenario.segments):
        for o, outcome in enumerate(OUTCOMES):
            written += series(
                f"{LABEL_OUTCOMES}_total",
                [model, version, ("segment", segment.name), ("outcome", outcome)],
                counters.outcomes[:, s, o],
            )
    return written


def _quote(value: str) -> str:
    escaped = value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')
    return f'"{escaped}"'
