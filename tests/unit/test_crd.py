"""The generated CRD: current, structural, and enforcing the same rules as the models."""

from __future__ import annotations

import copy
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import yaml

from evergreen.api.crd import custom_resource_definition, render_crd_yaml

ROOT = Path(__file__).parents[2]
COMMITTED = [
    ROOT / "crds" / "modelmonitors.yaml",
    ROOT / "charts" / "evergreen" / "crds" / "modelmonitors.yaml",
]


@pytest.mark.parametrize("path", COMMITTED, ids=lambda p: str(p.relative_to(ROOT)))
def test_committed_crd_is_current(path: Path) -> None:
    assert path.read_text() == render_crd_yaml(), f"stale: run `make crds` to regenerate {path.name}"


def test_crd_is_a_valid_kubernetes_object() -> None:
    kubernetes_validate.validate(custom_resource_definition(), "1.35.0", strict=True)


def _nodes(schema: dict[str, Any], path: str = "") -> Iterator[tuple[str, dict[str, Any]]]:
    yield path, schema
    for name, child in schema.get("properties", {}).items():
        yield from _nodes(child, f"{path}.{name}")
    if isinstance(schema.get("additionalProperties"), dict):
        yield from _nodes(schema["additionalProperties"], f"{path}.*")
    if "items" in schema:
        yield from _nodes(schema["items"], f"{path}[]")


def schema() -> dict[str, Any]:
    version = custom_resource_definition()["spec"]["versions"][0]
    result = version["schema"]["openAPIV3Schema"]
    assert isinstance(result, dict)
    return result


def test_schema_is_structural() -> None:
    for path, node in _nodes(schema()):
        assert "type" in node, f"{path} has no type"
        assert "$ref" not in node and "anyOf" not in node and "oneOf" not in node, path
        assert not ("properties" in node and "additionalProperties" in node), path
        if node["type"] == "array":
            assert "items" in node, path
        if "exclusiveMinimum" in node:
            assert isinstance(node["exclusiveMinimum"], bool), path


def test_status_subresource_printer_columns_and_names() -> None:
    crd = custom_resource_definition()
    version = crd["spec"]["versions"][0]
    assert version["subresources"] == {"status": {}}
    columns = {c["name"]: c["jsonPath"] for c in version["additionalPrinterColumns"]}
    assert columns["Ready"] == '.status.conditions[?(@.type=="Ready")].status'
    assert columns["Drift"] == ".status.lastEvaluation.drift.maxScore"
    assert {"Reason", "Model", "Age"} <= set(columns)
    assert columns["Reason"] == ".status.decision.reason"  # beside Decision, not the Ready reason
    assert crd["spec"]["names"]["shortNames"] == ["mm"]
    assert crd["spec"]["names"]["categories"] == ["evergreen"]


def example() -> dict[str, Any]:
    document = yaml.safe_load((ROOT / "examples" / "fraud-detector.yaml").read_text())
    assert isinstance(document, dict)
    return document


def validator() -> jsonschema.Draft4Validator:
    # OpenAPI v3.0 schemas use draft-4 semantics (boolean exclusiveMinimum).
    return jsonschema.Draft4Validator(schema())


def test_example_is_accepted() -> None:
    errors = list(validator().iter_errors(example()))
    assert errors == []


def _set(document: dict[str, Any], path: str, value: Any) -> dict[str, Any]:
    changed = copy.deepcopy(document)
    node: Any = changed
    parts = path.split(".")
    for part in parts[:-1]:
        node = node[int(part)] if part.isdigit() else node[part]
    last = parts[-1]
    if value is _DELETE:
        del node[last]
    else:
        node[last] = value
    return changed


_DELETE = object()


@pytest.mark.parametrize(
    ("path", "value", "rule"),
    [
        ("spec.model", _DELETE, "required"),
        ("spec.mode", "Automatic", "enum"),
        ("spec.interval", "5 minutes", "pattern"),
        ("spec.drift.window", "1 hour", "pattern"),
        ("spec.drift.method", "kl", "enum"),
        ("spec.drift.warning", 0, "minimum"),
        ("spec.drift.minSamples", 0, "minimum"),
        ("spec.drift.minSamples", "many", "type"),
        ("spec.drift.segmentBy", ["a", "b", "c", "d", "e"], "maxItems"),
        ("spec.drift.segmentBy", ["bad-label"], "pattern"),
        ("spec.drift.histogram", "has space", "pattern"),
        ("spec.kpis.0.onNoData", "Zero", "enum"),
        ("spec.kpis.0.name", "Precision!", "pattern"),
        ("spec.kpis.0.query", "", "minLength"),
        ("spec.prometheus.url", "prometheus:9090", "pattern"),
        ("spec.prometheus.headers", {"X-Scope-OrgID": 7}, "type"),
    ],
)
def test_invalid_values_are_rejected(path: str, value: Any, rule: str) -> None:
    errors = list(validator().iter_errors(_set(example(), path, value)))
    assert errors, f"{path}={value!r} was accepted"
    assert any(error.validator == rule for error in errors), [e.message for e in errors]
