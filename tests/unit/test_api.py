"""The ModelMonitor contract: parsing, validation messages that name the field, durations."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml

from evergreen.api.durations import format_duration, parse_duration
from evergreen.api.resource import parse_spec, parse_status
from evergreen.api.spec import Mode, NoDataPolicy
from evergreen.errors import SpecError

EXAMPLE = Path(__file__).parents[2] / "examples" / "fraud-detector.yaml"


def example_spec() -> dict[str, Any]:
    document = yaml.safe_load(EXAMPLE.read_text())
    spec = document["spec"]
    assert isinstance(spec, dict)
    return spec


def test_example_parses_with_camel_case_fields() -> None:
    spec = parse_spec(example_spec())
    assert spec.model == "fraud-detector"
    assert spec.mode is Mode.OBSERVE
    assert spec.drift is not None and spec.drift.segment_by == ["segment"]
    assert spec.drift.min_samples == 500
    assert spec.prometheus is not None and spec.prometheus.headers == {"X-Scope-OrgID": "team-a"}
    assert spec.kpis[0].on_no_data is NoDataPolicy.HOLD


def test_defaults_fill_a_minimal_spec() -> None:
    spec = parse_spec({"model": "m", "drift": {"histogram": "x"}})
    assert spec.mode is Mode.ENFORCE and spec.interval == "5m"
    assert spec.drift is not None
    assert (spec.drift.baseline.offset, spec.drift.baseline.window) == ("7d", "7d")
    assert spec.drift.method.value == "psi"


@pytest.mark.parametrize(
    ("patch", "field", "words"),
    [
        ({"interval": "5 minutes"}, "spec.interval", "e.g. 90s, 5m, 1h30m"),
        ({"mode": "Auto"}, "spec.mode", "Enforce"),
        ({"drift": {"histogram": "x", "warning": 0.3, "critical": 0.2}}, "spec.drift", "critical"),
        ({"drift": {"histogram": "bad name"}}, "spec.drift.histogram", "metric name"),
        (
            {"drift": {"histogram": "x", "baseline": {"offset": "7d"}}},
            "spec.drift.baseline",
            "offset and window",
        ),
        ({"drift": {"histogram": "x", "segmentBy": ["feature"]}}, "spec.drift", "featureLabel"),
        ({"kpis": [{"name": "p", "query": "up"}]}, "spec.kpis[0]", "min, max"),
        ({"kpis": [{"name": "p", "query": "up", "min": 2, "max": 1}]}, "spec.kpis[0]", "min must not exceed"),
        (
            {"kpis": [{"name": "p", "query": "up", "min": 1}, {"name": "p", "query": "up", "min": 1}]},
            "spec",
            "KPI names must be unique",
        ),
        (
            {"kpis": [{"name": "p", "query": "up", "min": 1, "onNoData": "Zero"}]},
            "spec.kpis[0].onNoData",
            "Hold",
        ),
        ({"drift": {"histogram": "x", "windw": "1h"}}, "spec.drift.windw", "unknown field"),
        ({"prometheus": {"url": "prometheus:9090"}}, "spec.prometheus.url", "http:// or https:// URL"),
        (
            {"prometheus": {"url": "http://p", "headers": {"Authorization": "Bearer x"}}},
            "spec.prometheus",
            "bearerTokenSecret",
        ),
    ],
)
def test_bad_input_names_the_field_and_the_fix(patch: dict[str, Any], field: str, words: str) -> None:
    spec = {"model": "m", "drift": {"histogram": "x"}, **patch}
    with pytest.raises(SpecError) as caught:
        parse_spec(spec)
    assert caught.value.field == field
    assert words in caught.value.message


def test_missing_model_and_nothing_to_monitor() -> None:
    with pytest.raises(SpecError) as caught:
        parse_spec({"drift": {"histogram": "x"}})
    assert caught.value.field == "spec.model"
    assert "required" in caught.value.message
    with pytest.raises(SpecError, match="nothing to monitor"):
        parse_spec({"model": "m"})


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("90s", 90), ("5m", 300), ("1h30m", 5400), ("7d", 604800), ("2w", 1209600), ("250ms", 0.25)],
)
def test_durations_round_trip(text: str, seconds: float) -> None:
    assert parse_duration(text) == timedelta(seconds=seconds)
    assert parse_duration(format_duration(parse_duration(text))) == parse_duration(text)


def test_durations_format_with_the_largest_units() -> None:
    assert format_duration(timedelta(seconds=90)) == "1m30s"
    assert format_duration(timedelta(days=7)) == "1w"
    assert format_duration(timedelta(hours=25)) == "1d1h"


@pytest.mark.parametrize("text", ["", "5", "m", "1.5h", "5 m", "-5m", "1h-"])
def test_bad_durations_are_rejected(text: str) -> None:
    with pytest.raises(ValueError, match="not a duration"):
        parse_duration(text)


def test_status_ignores_unknown_fields_and_survives_garbage() -> None:
    status = parse_status({"observedGeneration": 3, "somethingNew": {"x": 1}})
    assert status.observed_generation == 3
    assert parse_status({"conditions": "not a list"}).conditions == []
    assert parse_status(None).conditions == []


@pytest.mark.parametrize("raw", [["model", "m"], "model: m", 42])
def test_a_spec_that_is_not_a_mapping_is_a_spec_error(raw: Any) -> None:
    with pytest.raises(SpecError) as caught:
        parse_spec(raw)
    assert caught.value.field == "spec"
    assert "expected a mapping" in caught.value.message
