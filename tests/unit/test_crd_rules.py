"""The CRD's CEL rules compile, and reject what pydantic rejects, in the same words.

The rules run in cel-python (with RE2 for ``matches``, as in the API server) over the same
malformed manifests the command line is tested with, after applying the schema's defaults the
way the API server does before it validates.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import celpy
import pytest
import yaml
from celpy.adapter import json_to_cel
from celpy.evaluation import CELEvalError

from evergreen.api.crd import custom_resource_definition
from evergreen.api.resource import parse_spec
from evergreen.errors import SpecError

ROOT = Path(__file__).parents[2]
CORPUS = sorted((Path(__file__).parent / "malformed_manifests").glob("*.yaml"))
Schema = dict[str, Any]

#: The functions of the Kubernetes strings and lists extensions the rules use.
_FUNCTIONS: dict[str, Callable[..., Any]] = {
    "lowerAscii": lambda text: celpy.celtypes.StringType(text.lower()),
    "isSorted": lambda items: celpy.celtypes.BoolType(list(items) == sorted(items)),
}
_ENVIRONMENT = celpy.Environment()


def spec_schema() -> Schema:
    version = custom_resource_definition()["spec"]["versions"][0]
    schema: Schema = version["schema"]["openAPIV3Schema"]["properties"]["spec"]
    return schema


def rules(node: Schema) -> list[dict[str, str]]:
    found = list(node.get("x-kubernetes-validations", []))
    for child in node.get("properties", {}).values():
        found += rules(child)
    for key in ("items", "additionalProperties"):
        if isinstance(node.get(key), dict):
            found += rules(node[key])
    return found


def _holds(rule: str, value: Any) -> bool:
    program = _ENVIRONMENT.program(_ENVIRONMENT.compile(rule), functions=_FUNCTIONS)
    try:
        result = program.evaluate({"self": json_to_cel(value)})
        return isinstance(result, celpy.celtypes.BoolType) and bool(result)
    except CELEvalError:
        return False


def failed_rules(node: Schema, value: Any, failures: list[str]) -> Any:
    """Default ``value`` as the API server does, then collect the messages of the rules it fails."""
    if isinstance(value, dict) and "properties" in node:
        properties = node["properties"]
        value = {**{k: p["default"] for k, p in properties.items() if "default" in p}, **value}
        value = {
            k: failed_rules(properties[k], v, failures) if k in properties else v for k, v in value.items()
        }
    elif isinstance(value, list) and "items" in node:
        value = [failed_rules(node["items"], item, failures) for item in value]
    elif isinstance(value, dict) and isinstance(node.get("additionalProperties"), dict):
        value = {k: failed_rules(node["additionalProperties"], v, failures) for k, v in value.items()}
    failures += [
        rule["message"]
        for rule in node.get("x-kubernetes-validations", [])
        if not _holds(rule["rule"], value)
    ]
    return value


def test_every_rule_compiles() -> None:
    found = rules(spec_schema())
    assert len(found) >= 20
    for rule in found:
        _ENVIRONMENT.compile(rule["rule"])


def _spec_of(path: Path) -> Any:
    documents = yaml.safe_load_all(path.read_bytes().decode("utf-8"))
    return next(d for d in documents if isinstance(d, dict) and d.get("kind") == "ModelMonitor")["spec"]


def test_a_valid_monitor_passes_every_rule() -> None:
    failures: list[str] = []
    failed_rules(spec_schema(), _spec_of(ROOT / "examples" / "fraud-detector.yaml"), failures)
    assert failures == []


def _pydantic_message(spec: Any) -> str | None:
    try:
        parse_spec(spec)
    except SpecError as error:
        return error.message
    return None


def _rule_cases() -> list[tuple[Path, str]]:
    """Corpus manifests that pydantic rejects with the message of a CEL rule."""
    cel_messages = {rule["message"] for rule in rules(spec_schema())}
    cases = []
    for path in CORPUS:
        try:
            spec = _spec_of(path)
        except (UnicodeDecodeError, yaml.YAMLError, StopIteration, KeyError, TypeError):
            continue  # not a document the API server could receive
        message = _pydantic_message(spec) if isinstance(spec, dict) else None
        cases += [(path, m) for m in cel_messages if message is not None and message.startswith(m)]
    return cases


RULE_CASES = _rule_cases()


def test_every_rule_is_exercised_by_the_corpus() -> None:
    assert {message for _, message in RULE_CASES} == {rule["message"] for rule in rules(spec_schema())}


@pytest.mark.parametrize(("path", "message"), RULE_CASES, ids=lambda case: getattr(case, "stem", ""))
def test_the_api_server_rejects_in_the_words_the_operator_uses(path: Path, message: str) -> None:
    failures: list[str] = []
    failed_rules(spec_schema(), _spec_of(path), failures)
    assert message in failures


@pytest.mark.parametrize(
    ("key", "valid"),
    [
        ("env", True),
        ("_private", True),
        ("Region9", True),
        ("app-name", False),
        ("9lives", False),
        ('env"} or vector(1) #', False),
        ("a" * 128, True),
        ("a" * 129, False),
        ("", False),
    ],
)
def test_label_name_keys_agree(key: str, valid: bool) -> None:
    spec = {"model": "m", "drift": {"histogram": "h", "matchLabels": {key: "v"}}}
    failures: list[str] = []
    failed_rules(spec_schema(), spec, failures)
    assert (not failures) is valid
    assert (_pydantic_message(spec) is None) is valid


@pytest.mark.parametrize(
    "interval",
    ["0s", "999ms", "0999ms", "1000ms", "01000ms", "1s", "0m500ms", "0w0d0h0m0s999ms", "5m", "1m0s", "0h1ms"],
)
def test_the_minimum_interval_agrees(interval: str) -> None:
    spec = {"model": "m", "kpis": [{"name": "k", "query": "up", "min": 1}], "interval": interval}
    failures: list[str] = []
    failed_rules(spec_schema(), spec, failures)
    assert ("interval must be at least 1s" in failures) == (_pydantic_message(spec) is not None)
