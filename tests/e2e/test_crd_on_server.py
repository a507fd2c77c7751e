"""The ModelMonitor CRD the chart installs, judged by a real API server.

Every rule the schema states is a row: a spec that breaks it is refused with HTTP 422 and a
cause that names the field. The rows for patterns, bounds, lengths, enums, list sizes, formats,
required fields and types are derived from the installed CRD itself, so a rule added to the
models gets its row without anyone remembering to write it; the CEL rules are written out by
hand, and a guard fails when one has no row. Good specs are accepted, the server fills the same
defaults the operator's models do, unknown fields are pruned (or refused under strict field
validation) except inside the workload template, and ``kubectl get mm`` shows the printer
columns. All but the printer-column test use server-side dry run: nothing is stored.
"""

from __future__ import annotations

import copy
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import kubernetes.client
import pytest
import yaml
from kubernetes.client.exceptions import ApiException

from evergreen.api.base import PATTERN_DESCRIPTIONS
from evergreen.api.reference import DURATION_RULE
from evergreen.api.resource import GROUP, KIND, PLURAL, VERSION, parse_spec
from evergreen.errors import SpecError
from tests.e2e.conftest import Plane
from tests.support.cluster import CHART, kubectl

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

NAMESPACE = "crd-on-server"
INSTALLED_CRD = CHART / "crds" / "modelmonitors.yaml"
EXAMPLE = Path(__file__).parents[2] / "examples" / "fraud-detector.yaml"
#: A marker for "remove this field" in a row's changes.
ABSENT = object()

#: A spec that sets every object the schema has (so each nested rule can be reached), valid for
#: the API server and for the operator's own models alike.
FULL_SPEC: dict[str, Any] = {
    "model": "fraud-detector",
    "mode": "Enforce",
    "interval": "5m",
    "currentVersion": "v12",
    "serviceAccountName": "fraud-trainer",
    "prometheus": {
        "url": "https://prometheus.monitoring.svc:9090",
        "headers": {"X-Scope-OrgID": "team-a"},
        "bearerTokenSecret": {"name": "prometheus-token", "key": "token"},
        "tls": {"caConfigMap": {"name": "prometheus-ca", "key": "ca.crt"}, "insecureSkipVerify": False},
        "timeout": "20s",
    },
    "drift": {
        "histogram": "model_feature_value",
        "modelLabel": "model",
        "matchLabels": {"env": "prod"},
        "segmentBy": ["segment"],
        "baseline": {"offset": "7d", "window": "1d"},
        "window": "1h",
        "method": "psi",
        "warning": 0.1,
        "critical": 0.25,
        "minSamples": 500,
        "featureLabel": "feature",
    },
    "predictionDrift": {
        "histogram": "model_prediction_score",
        "modelLabel": "model",
        "matchLabels": {"env": "prod"},
        "segmentBy": ["segment"],
        "baseline": {"configMap": {"name": "training-histograms", "key": "scores.json"}},
        "window": "1h",
        "method": "jensenshannon",
        "warning": 0.05,
        "critical": 0.1,
        "minSamples": 500,
        "versionLabel": "version",
    },
    "dataQuality": [{"name": "null-rate", "query": 'max(null_rate{model="{{model}}"})', "max": 0.05}],
    "kpis": [
        {
            "name": "precision",
            "query": 'avg(precision{model="{{model}}"})',
            "min": 0.88,
            "onNoData": "Hold",
            "labelDelay": "6h",
            "labelsQuery": 'sum(rate(model_label_outcomes_total{model="{{model}}"}[15m]))',
            "samplesQuery": 'sum(increase(model_label_outcomes_total{model="{{model}}"}[1h]))',
            "minSamples": 100,
            "estimate": {
                "histogram": "model_prediction_score",
                "metric": "precision",
                "threshold": 0.5,
                "modelLabel": "model",
                "matchLabels": {"env": "prod"},
                "segmentBy": ["segment"],
                "window": "1h",
                "tolerance": 0.05,
            },
        }
    ],
    "policy": {
        "persistence": {"of": 3, "needed": 2},
        "falseDiscoveryRate": 0.01,
        "hysteresis": 0.2,
        "upstreamFeatures": 3,
        "escalateHoldAfter": "24h",
    },
    "retraining": {
        "template": {
            "apiVersion": "batch/v1",
            "kind": "Job",
            "spec": {"template": {"spec": {"containers": [{"name": "train", "image": "trainer:1"}]}}},
        },
        "success": {"conditionType": "Complete"},
        "failure": {"fieldPath": "status.phase", "values": ["Failed", "Error"]},
        "result": {"terminationMessage": True},
        "timeout": "6h",
        "cooldown": "24h",
        "budget": {"runs": 3, "per": "168h"},
        "maxConcurrent": 1,
        "cost": {"perRun": 40, "budget": 200, "per": "720h"},
        "validation": {
            "metric": "auc",
            "minImprovement": 0.005,
            "higherIsBetter": True,
            "floors": {"precision": 0.85},
            "ceilings": {"latency_p99_ms": 40},
            "currentMetrics": {"auc": 0.9},
        },
        "giveUpAfter": 3,
        "request": {"id": "run-1", "reason": "new labels"},
    },
    "rollout": {
        "router": "GatewayAPI",
        "target": {
            "deployment": "fraud-detector",
            "service": "fraud-detector",
            "version": {"container": "server", "env": "MODEL_VERSION"},
        },
        "gateway": {
            "name": "fraud-detector",
            "parentRefs": [{"name": "public", "namespace": "gateways", "sectionName": "https"}],
            "hostnames": ["fraud.example.com"],
            "port": 8080,
        },
        "candidate": "v13",
        "steps": [5, 25, 50, 100],
        "stepInterval": "10m",
        "maxFailedChecks": 2,
        "maxKpiDegradation": 0.01,
        "noDataDeadline": "1h",
        "approval": "Manual",
        "gates": ["Promotion"],
        "approvedVersion": "v13",
        "promotionApprovedVersion": "v13",
        "abortedVersion": "v9",
        "candidateReplicas": 2,
    },
    "holds": [
        {
            "name": "bank-a",
            "version": "v11",
            "match": {"header": "x-customer-id", "values": ["bank-a"]},
            "until": "2027-03-31T00:00:00Z",
            "reason": "contract",
            "replicas": 2,
        }
    ],
}


# The server ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Refusal:
    status: int
    message: str
    #: (field, message) of each cause the server gave.
    causes: list[tuple[str, str]]

    def names(self, field: str, fragment: str) -> bool:
        return any(f == field and fragment in m for f, m in self.causes)


@dataclass(frozen=True)
class MonitorServer:
    api: kubernetes.client.ApiClient
    namespace: str

    @property
    def custom(self) -> kubernetes.client.CustomObjectsApi:
        return kubernetes.client.CustomObjectsApi(self.api)

    def body(self, spec: Any, name: str = "probe", **extra: Any) -> dict[str, Any]:
        return {
            "apiVersion": f"{GROUP}/{VERSION}",
            "kind": KIND,
            "metadata": {"name": name, "namespace": self.namespace},
            "spec": spec,
            **extra,
        }

    def dry_run(self, body: dict[str, Any], validation: str = "Strict") -> dict[str, Any]:
        """Create ``body`` with server-side dry run: admitted, defaulted and pruned, not stored."""
        created = self.custom.create_namespaced_custom_object(
            GROUP, VERSION, self.namespace, PLURAL, body, dry_run="All", field_validation=validation
        )
        assert isinstance(created, dict)
        return created

    def refusal(self, body: dict[str, Any], validation: str = "Strict") -> Refusal:
        try:
            created = self.dry_run(body, validation)
        except ApiException as error:
            answer = json.loads(error.body or "{}")
            causes = [
                (c.get("field", ""), c.get("message", ""))
                for c in answer.get("details", {}).get("causes", [])
            ]
            return Refusal(error.status, answer.get("message", ""), causes)
        pytest.fail(f"the API server accepted it: {json.dumps(created.get('spec'))[:400]}")


@pytest.fixture(scope="module")
def server(plane: Plane) -> Iterator[MonitorServer]:
    """One namespace for the whole module: every row is a dry run in it."""
    core = kubernetes.client.CoreV1Api(plane.api)
    core.create_namespace(
        kubernetes.client.V1Namespace(metadata=kubernetes.client.V1ObjectMeta(name=NAMESPACE))
    )
    yield MonitorServer(plane.api, NAMESPACE)
    core.delete_namespace(NAMESPACE)


# Editing specs by path -------------------------------------------------------------------------

_STEP = re.compile(r"([^.\[\]]+)|\[(\d+)\]")


def _steps(path: str) -> list[str | int]:
    """``spec.kpis[0].name`` -> ["kpis", 0, "name"] (relative to spec)."""
    steps: list[str | int] = [int(i) if i else key for key, i in _STEP.findall(path)]
    assert steps[0] == "spec", path
    return steps[1:]


def changed(spec: dict[str, Any], changes: dict[str, Any]) -> dict[str, Any]:
    """A copy of ``spec`` with each path set (ABSENT removes it); missing objects are created."""
    result = copy.deepcopy(spec)
    for path, value in changes.items():
        *parents, last = _steps(path)
        node: Any = result
        for step, following in zip(parents, [*parents[1:], last], strict=False):
            if isinstance(step, str) and step not in node:
                node[step] = [] if isinstance(following, int) else {}
            node = node[step]
        if value is ABSENT:
            node.pop(last, None)
        elif isinstance(last, int) and last == len(node):
            node.append(value)
        else:
            node[last] = value
    return result


def lookup(spec: dict[str, Any], path: str) -> Any:
    node: Any = spec
    for step in _steps(path):
        if isinstance(step, str) and (not isinstance(node, dict) or step not in node):
            return ABSENT
        if isinstance(step, int) and (not isinstance(node, list) or step >= len(node)):
            return ABSENT
        node = node[step]
    return node


# Rows derived from the installed schema --------------------------------------------------------


def _spec_schema() -> dict[str, Any]:
    crd = yaml.safe_load(INSTALLED_CRD.read_text())
    schema: dict[str, Any] = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]
    return schema


def _walk(node: dict[str, Any], path: str) -> Iterator[tuple[str, dict[str, Any], dict[str, Any] | None]]:
    """(path, schema, parent object schema) of every node below spec; list items at index 0."""
    for name, child in node.get("properties", {}).items():
        yield f"{path}.{name}", child, node
        yield from _walk(child, f"{path}.{name}")
    if isinstance(node.get("items"), dict):
        yield f"{path}[0]", node["items"], None
        yield from _walk(node["items"], f"{path}[0]")
    if isinstance(node.get("additionalProperties"), dict):
        yield f"{path}.someKey", node["additionalProperties"], None


_NOT_MATCHING = ("has space", "UPPER_and-lower!", "-", "0")
_WRONG_TYPE = {
    "string": 5,
    "integer": "five",
    "number": "five",
    "boolean": "yes",
    "object": "text",
    "array": "text",
}


def _not_matching(pattern: str, max_length: int | None) -> str:
    for candidate in _NOT_MATCHING:
        if not re.search(pattern, candidate) and (max_length is None or len(candidate) <= max_length):
            return candidate
    raise AssertionError(f"no sample breaks {pattern}")


@dataclass(frozen=True)
class Row:
    """One way to break the spec, the field the server must name, and what it must say."""

    id: str
    changes: dict[str, Any]
    field: str
    says: str
    base: dict[str, Any] | None = None


def schema_rows() -> list[Row]:
    rows: list[Row] = []
    for path, node, parent in _walk(_spec_schema(), "spec"):
        kind = node.get("type")

        def at(value: Any, path: str = path) -> dict[str, Any]:
            return {path: value}

        if kind in _WRONG_TYPE and not path.endswith(".template"):
            rows.append(Row(f"{path}:type", at(_WRONG_TYPE[kind]), path, "must be of type"))
        if "enum" in node:
            rows.append(Row(f"{path}:enum", at("NotInTheEnum"), path, "Unsupported value"))
        if "pattern" in node:
            bad = _not_matching(node["pattern"], node.get("maxLength"))
            rows.append(Row(f"{path}:pattern", at(bad), path, "should match"))
        if "maxLength" in node:
            rows.append(Row(f"{path}:maxLength", at("a" * (node["maxLength"] + 1)), path, "Too long"))
        if "minLength" in node:
            rows.append(Row(f"{path}:minLength", at(""), path, "should be at least"))
        if node.get("format") == "date-time":
            rows.append(Row(f"{path}:format", at("next spring"), path, "date-time"))
        if "minimum" in node:
            low = node["minimum"] if node.get("exclusiveMinimum") else node["minimum"] - 1
            rows.append(Row(f"{path}:minimum", at(low), path, "should be greater than"))
        if "maximum" in node:
            high = node["maximum"] if node.get("exclusiveMaximum") else node["maximum"] + 1
            rows.append(Row(f"{path}:maximum", at(high), path, "should be less than"))
        if "maxItems" in node:
            present = lookup(FULL_SPEC, path)
            item = present[0] if present is not ABSENT else "value"
            rows.append(Row(f"{path}:maxItems", at([item] * (node["maxItems"] + 1)), path, "Too many"))
        if "minItems" in node:
            rows.append(Row(f"{path}:minItems", at([]), path, "should have at least"))
        if "maxProperties" in node:
            present = lookup(FULL_SPEC, path)
            value = next(iter(present.values())) if present is not ABSENT else "value"
            entries = {f"k{i}": value for i in range(node["maxProperties"] + 1)}
            rows.append(Row(f"{path}:maxProperties", at(entries), path, "Too many"))
        if parent is not None and path.rsplit(".", 1)[1] in parent.get("required", []):
            parent_path = path.rsplit(".", 1)[0]
            base = changed(FULL_SPEC, {parent_path: {}}) if lookup(FULL_SPEC, parent_path) is ABSENT else None
            rows.append(Row(f"{path}:required", at(ABSENT), path, "Required value", base))
    return rows


#: The CEL rules (x-kubernetes-validations), each broken where it applies.
CEL_ROWS = [
    Row(
        "drift critical below warning",
        {"spec.drift.critical": 0.05},
        "spec.drift",
        "critical must be greater than or equal to warning",
    ),
    Row(
        "predictionDrift critical below warning",
        {"spec.predictionDrift.critical": 0.01},
        "spec.predictionDrift",
        "critical must be greater than or equal to warning",
    ),
    Row(
        "featureLabel among segmentBy",
        {"spec.drift.segmentBy": ["segment", "feature"]},
        "spec.drift",
        "featureLabel cannot also be a segmentBy label",
    ),
    Row(
        "bearer token and basic auth",
        {
            "spec.prometheus.basicAuth": {
                "username": {"name": "prometheus-auth", "key": "user"},
                "password": {"name": "prometheus-auth", "key": "password"},
            }
        },
        "spec.prometheus",
        "set at most one of bearerTokenSecret and basicAuth",
    ),
    Row(
        "drift baseline window and configMap",
        {"spec.drift.baseline.configMap": {"name": "training-histograms", "key": "features.json"}},
        "spec.drift.baseline",
        "use either offset and window, or configMap",
    ),
    Row(
        "drift baseline offset without window",
        {"spec.drift.baseline": {"offset": "7d"}},
        "spec.drift.baseline",
        "use either offset and window, or configMap",
    ),
    Row(
        "drift baseline empty",
        {"spec.drift.baseline": {}},
        "spec.drift.baseline",
        "use either offset and window, or configMap",
    ),
    Row(
        "predictionDrift baseline both",
        {"spec.predictionDrift.baseline.window": "1d", "spec.predictionDrift.baseline.offset": "7d"},
        "spec.predictionDrift.baseline",
        "use either offset and window, or configMap",
    ),
    Row(
        "data-quality check without bounds",
        {"spec.dataQuality[0].max": ABSENT},
        "spec.dataQuality[0]",
        "set min, max or both",
    ),
    Row("KPI without bounds", {"spec.kpis[0].min": ABSENT}, "spec.kpis[0]", "set min, max or both"),
    Row("KPI min above max", {"spec.kpis[0].max": 0.5}, "spec.kpis[0]", "min must not exceed max"),
    Row(
        "KPI estimate without labelDelay",
        {"spec.kpis[0].labelDelay": ABSENT},
        "spec.kpis[0]",
        "estimate needs labelDelay: the estimate covers the windows whose labels are not complete, "
        "and is checked against the KPI once they are",
    ),
    Row(
        "data-quality min above max",
        {"spec.dataQuality[0].min": 0.5},
        "spec.dataQuality[0]",
        "min must not exceed max",
    ),
    Row(
        "two CAs",
        {"spec.prometheus.tls.caSecret": {"name": "ca", "key": "ca.crt"}},
        "spec.prometheus.tls",
        "set at most one of caConfigMap and caSecret",
    ),
    Row(
        "credentials in headers",
        {"spec.prometheus.headers": {"AUTHORIZATION": "Bearer x"}},
        "spec.prometheus.headers",
        "put credentials in bearerTokenSecret or basicAuth, not in headers",
    ),
    Row(
        "persistence needs more than it looks at",
        {"spec.policy.persistence": {"of": 3, "needed": 4}},
        "spec.policy.persistence.needed",
        "needed must not exceed of",
    ),
    Row(
        "persistence needs more than the default window",
        {"spec.policy.persistence": {"needed": 4}},
        "spec.policy.persistence.needed",
        "needed must not exceed of",
    ),
    Row(
        "completion by condition and field",
        {"spec.retraining.success.fieldPath": "status.phase", "spec.retraining.success.values": ["Done"]},
        "spec.retraining.success",
        "set exactly one of conditionType and fieldPath",
    ),
    Row(
        "completion by nothing",
        {"spec.retraining.success": {}},
        "spec.retraining.success",
        "set exactly one of conditionType and fieldPath",
    ),
    Row(
        "failure by condition and field",
        {"spec.retraining.failure.conditionType": "Failed"},
        "spec.retraining.failure",
        "set exactly one of conditionType and fieldPath",
    ),
    Row(
        "success field with no values",
        {"spec.retraining.success": {"fieldPath": "status.phase", "values": []}},
        "spec.retraining.success.values",
        "fieldPath needs the values that mean this state",
    ),
    Row(
        "completion field without values",
        {"spec.retraining.failure.values": ABSENT},
        "spec.retraining.failure.values",
        "fieldPath needs the values that mean this state",
    ),
    Row(
        "version by env and image tag",
        {"spec.rollout.target.version.imageTag": True},
        "spec.rollout.target.version",
        "set exactly one of env, imageTag and argPrefix",
    ),
    Row(
        "version by no means",
        {"spec.rollout.target.version.env": ABSENT},
        "spec.rollout.target.version",
        "set exactly one of env, imageTag and argPrefix",
    ),
    Row(
        "a step of 0%",
        {"spec.rollout.steps": [0, 50, 100]},
        "spec.rollout.steps",
        "steps are traffic percentages between 1 and 100",
    ),
    Row(
        "a step over 100%",
        {"spec.rollout.steps": [50, 100, 101]},
        "spec.rollout.steps",
        "steps are traffic percentages between 1 and 100",
    ),
    Row(
        "steps going down", {"spec.rollout.steps": [50, 25, 100]}, "spec.rollout.steps", "steps must increase"
    ),
    Row(
        "a repeated step", {"spec.rollout.steps": [50, 50, 100]}, "spec.rollout.steps", "steps must increase"
    ),
    Row(
        "steps short of 100",
        {"spec.rollout.steps": [10, 50]},
        "spec.rollout.steps",
        "the last step must be 100",
    ),
    Row(
        "GatewayAPI without a gateway",
        {"spec.rollout.gateway": ABSENT},
        "spec.rollout",
        "router GatewayAPI needs gateway (the HTTPRoute to manage)",
    ),
    Row(
        "a gateway with the Replicas router",
        {"spec.rollout.router": "Replicas"},
        "spec.rollout.gateway",
        "gateway is only used with router GatewayAPI",
    ),
    Row(
        "a gateway with the default router",
        {"spec.rollout.router": ABSENT},
        "spec.rollout.gateway",
        "gateway is only used with router GatewayAPI",
    ),
    Row(
        "interval under 1s",
        {"spec.interval": "500ms"},
        "spec.interval",
        "interval must be at least 1s",
    ),
    *(
        Row(
            f"{field} key not a label name",
            {field: {"app-name": "x"}},
            field,
            "keys must be Prometheus label names (letters, digits and _, not starting with a digit), "
            "at most 128 characters",
        )
        for field in (
            "spec.drift.matchLabels",
            "spec.predictionDrift.matchLabels",
            "spec.kpis[0].estimate.matchLabels",
        )
    ),
    Row(
        "header name with a space",
        {"spec.prometheus.headers": {"X Scope": "team-a"}},
        "spec.prometheus.headers",
        "keys must be HTTP header names, at most 256 characters",
    ),
    *(
        Row(
            f"{field} key not a metric name",
            {field: {"9 lives": 1.0}},
            field,
            "keys must be metric names (letters, digits, _, . and -, not starting with a digit), "
            "at most 128 characters",
        )
        for field in (
            "spec.retraining.validation.floors",
            "spec.retraining.validation.ceilings",
            "spec.retraining.validation.currentMetrics",
        )
    ),
    Row(
        "nothing to monitor",
        {"spec.drift": ABSENT, "spec.predictionDrift": ABSENT, "spec.dataQuality": [], "spec.kpis": []},
        "spec",
        "nothing to monitor: set drift, predictionDrift, dataQuality or kpis",
    ),
    Row(
        "two KPIs of one name",
        {"spec.kpis[1]": {"name": "precision", "query": "q", "min": 0.1}},
        "spec.kpis",
        "KPI names must be unique",
    ),
    Row(
        "two data-quality checks of one name",
        {"spec.dataQuality[1]": {"name": "null-rate", "query": "q", "max": 0.1}},
        "spec.dataQuality",
        "dataQuality check names must be unique",
    ),
    Row(
        "two holds of one name",
        {
            "spec.holds[1]": {
                "name": "bank-a",
                "version": "v10",
                "match": {"header": "x", "values": ["y"]},
                "until": "2027-01-01T00:00:00Z",
            }
        },
        "spec.holds",
        "hold names must be unique",
    ),
    Row(
        "holds without a rollout",
        {"spec.rollout": ABSENT},
        "spec.holds",
        "holds need spec.rollout (its target says how versions are served)",
    ),
]

ROWS = schema_rows() + CEL_ROWS


# Bad specs -------------------------------------------------------------------------------------


def test_the_table_reaches_every_rule_of_the_schema() -> None:
    """Every CEL rule has a row, and the derived rows cover every kind of keyword the schema uses."""
    messages = {rule["message"] for rule in _spec_schema()["x-kubernetes-validations"]}
    for _, node, _ in _walk(_spec_schema(), "spec"):
        messages |= {rule["message"] for rule in node.get("x-kubernetes-validations", [])}
    assert messages == {row.says for row in CEL_ROWS}
    kinds = {row.id.rsplit(":", 1)[1] for row in ROWS if ":" in row.id}
    assert kinds >= {"type", "enum", "pattern", "maxLength", "minLength", "format", "minimum", "maximum"}
    assert kinds >= {"maxItems", "minItems", "maxProperties", "required"}
    assert len(ROWS) > 250


DOCS = Path(__file__).parents[2] / "docs" / "modelmonitor.md"
_DOC_RULES = [
    (re.compile(r"^pattern `"), "pattern"),
    (
        re.compile("^(" + "|".join(map(re.escape, [DURATION_RULE, *PATTERN_DESCRIPTIONS.values()])) + ")$"),
        "pattern",
    ),
    (re.compile(r"^format "), "format"),
    (re.compile(r"^[>≥] "), "minimum"),
    (re.compile(r"^[<≤] "), "maximum"),
    (re.compile(r"^(not empty|at least \d+ characters)$"), "minLength"),
    (re.compile(r"^at most \d+ characters$"), "maxLength"),
    (re.compile(r"^at least (one|\d+) items?$"), "minItems"),
    (re.compile(r"^at most \d+ items$"), "maxItems"),
    (re.compile(r"^at most \d+ entries$"), "maxProperties"),
]


def documented_rules() -> Iterator[tuple[str, str]]:
    """(field, keyword or CEL message) of every rule in the reference's table; list items at [0]."""
    for line in DOCS.read_text().splitlines():
        if not line.startswith("| `spec"):
            continue
        cells = [cell.strip() for cell in re.split(r"(?<!\\)\|", line)[1:-1]]
        field = cells[0].strip("`").replace("[]", "[0]")
        if field != "spec":  # a missing spec: test_a_monitor_without_a_spec_is_refused
            if cells[2] == "yes":
                yield field, "required"
            if not field.endswith(".template"):  # any workload: an object of any shape
                yield field, "type"
        if "`" in cells[1]:
            yield (f"{field}[0]" if cells[1].startswith("list of") else field), "enum"
        for text in filter(None, cells[4].replace("\\|", "|").split("; ")):
            if text.startswith("default `"):
                continue  # the defaults test covers them
            at = f"{field}[0]" if text.startswith("each item: ") else field
            rule = text.removeprefix("each item: ")
            yield at, next((kind for pattern, kind in _DOC_RULES if pattern.search(rule)), rule)


def test_every_rule_the_reference_documents_has_a_row() -> None:
    """docs/modelmonitor.md lists each field's rules: each one is a row of this table."""
    covered = {(row.field, row.id.rsplit(":", 1)[1]) for row in ROWS if ":" in row.id}
    covered |= {(row.field, row.says) for row in CEL_ROWS}
    documented = list(documented_rules())
    assert len(documented) > 350
    missing = [rule for rule in documented if rule not in covered]
    assert not missing, f"documented rules without a row: {missing}"


def _documented_inclusive_bounds() -> Iterator[tuple[str, float]]:
    for line in DOCS.read_text().splitlines():
        if line.startswith("| `spec."):
            field = line.split("`")[1].replace("[]", "[0]")
            for bound in re.findall(r"[≥≤] (-?[0-9.]+)", line):
                yield field, float(bound)


@pytest.mark.parametrize(("field", "bound"), list(_documented_inclusive_bounds()))
def test_a_documented_inclusive_bound_is_accepted(server: MonitorServer, field: str, bound: float) -> None:
    """'≥ 1' in the reference means 1 is accepted (and '< 1' that it is not: the rows above)."""
    value = int(bound) if _spec_node(field).get("type") == "integer" else bound
    persistence = ["spec.policy.persistence.of", "spec.policy.persistence.needed"]
    # needed <= of: an edge of one of them is set on both
    fields = persistence if field in persistence else [field]
    server.dry_run(server.body(changed(FULL_SPEC, dict.fromkeys(fields, value))))


def _spec_node(path: str) -> dict[str, Any]:
    return next(node for at, node, _ in _walk(_spec_schema(), "spec") if at == path)


@pytest.mark.parametrize("row", ROWS, ids=lambda row: row.id)
def test_the_server_refuses_a_broken_rule_naming_the_field(server: MonitorServer, row: Row) -> None:
    spec = changed(row.base or FULL_SPEC, row.changes)
    refusal = server.refusal(server.body(spec))
    assert refusal.status == 422, refusal
    assert refusal.names(row.field, row.says), f"expected {row.field}: …{row.says}…, got {refusal.causes}"
    assert row.field in refusal.message
    if row in CEL_ROWS:  # a cross-field rule: the operator's models refuse the same spec
        with pytest.raises(SpecError):
            parse_spec(spec)


def test_a_monitor_without_a_spec_is_refused(server: MonitorServer) -> None:
    body = server.body({})
    del body["spec"]
    refusal = server.refusal(body)
    assert refusal.status == 422
    assert refusal.names("spec", "Required value")


#: What the reference says only the operator checks: the server stores these specs, the operator
#: refuses them naming the field.
OPERATOR_ONLY = {
    "template without a spec": ({"spec.retraining.template.spec": ABSENT}, "spec.retraining.template"),
    "template of the core group": ({"spec.retraining.template.apiVersion": "v1"}, "spec.retraining.template"),
}


@pytest.mark.parametrize(("changes", "field"), OPERATOR_ONLY.values(), ids=list(OPERATOR_ONLY))
def test_what_only_the_operator_checks_is_stored_and_refused_by_it(
    server: MonitorServer, changes: dict[str, Any], field: str
) -> None:
    spec = changed(FULL_SPEC, changes)
    server.dry_run(server.body(spec))
    with pytest.raises(SpecError) as refused:
        parse_spec(spec)
    assert refused.value.field == field


# Good specs, defaults, pruning -----------------------------------------------------------------

GOOD_SPECS = {
    "the full spec": FULL_SPEC,
    "the documented example": yaml.safe_load(EXAMPLE.read_text())["spec"],
    "a model and a KPI": {"model": "m", "kpis": [{"name": "ctr", "query": "avg(ctr)", "min": 0.01}]},
    "a drift baseline from a ConfigMap": changed(
        FULL_SPEC, {"spec.drift.baseline": {"configMap": {"name": "h", "key": "features.json"}}}
    ),
    "basic auth and a CA Secret": changed(
        FULL_SPEC,
        {
            "spec.prometheus.bearerTokenSecret": ABSENT,
            "spec.prometheus.basicAuth": {
                "username": {"name": "a", "key": "u"},
                "password": {"name": "a", "key": "p"},
            },
            "spec.prometheus.tls": {"caSecret": {"name": "ca", "key": "ca.crt"}},
        },
    ),
    "a custom workload with a status field": changed(
        FULL_SPEC,
        {
            "spec.retraining.template": {
                "apiVersion": "argoproj.io/v1alpha1",
                "kind": "Workflow",
                "spec": {},
            },
            "spec.retraining.success": {"fieldPath": "status.phase", "values": ["Succeeded"]},
            "spec.retraining.result": {"terminationMessage": False, "fieldPath": "status.outputs.parameters"},
        },
    ),
    "the edges of every bound": changed(
        FULL_SPEC,
        {
            "spec.model": "m" * 253,
            "spec.drift.warning": 0.25,
            "spec.drift.segmentBy": ["a", "b", "c", "d"],
            "spec.policy.persistence": {"of": 20, "needed": 20},
            "spec.policy.hysteresis": 0,
            "spec.policy.falseDiscoveryRate": 0.999,
            "spec.rollout.gateway.port": 65535,
            "spec.holds[0].replicas": 1000,
        },
    ),
}


@pytest.mark.parametrize("spec", GOOD_SPECS.values(), ids=list(GOOD_SPECS))
def test_the_server_and_the_operator_accept_a_good_spec(server: MonitorServer, spec: dict[str, Any]) -> None:
    parse_spec(spec)  # the operator's own models agree that it is good
    created = server.dry_run(server.body(spec))
    assert created["metadata"]["name"] == "probe"
    for path in _set_paths(spec, "spec"):
        assert lookup(created["spec"], path) == lookup(spec, path), f"{path} changed on the way in"


def _set_paths(value: Any, path: str) -> Iterator[str]:
    if isinstance(value, dict) and value:
        for key, child in value.items():
            yield from _set_paths(child, f"{path}.{key}")
    elif isinstance(value, list) and value and isinstance(value[0], dict):
        for index, child in enumerate(value):
            yield from _set_paths(child, f"{path}[{index}]")
    else:
        yield path


def test_the_server_fills_the_documented_defaults_as_the_operator_does(server: MonitorServer) -> None:
    """Every defaulted field left out of the full spec comes back with the CRD's default, which
    is also the default the operator's models use."""
    defaults = {path: node["default"] for path, node, _ in _walk(_spec_schema(), "spec") if "default" in node}
    assert len(defaults) > 40
    # The router's default (Replicas) takes no gateway: it is left out of a spec without one.
    replicas_spec = changed(
        FULL_SPEC, {"spec.rollout.gateway": ABSENT, "spec.rollout.candidateReplicas": ABSENT}
    )
    router = "spec.rollout.router"
    for base, left_out in [
        (FULL_SPEC, {path: value for path, value in defaults.items() if path != router}),
        (replicas_spec, {router: defaults[router]}),
    ]:
        stripped = changed(base, dict.fromkeys(left_out, ABSENT))
        created = server.dry_run(server.body(stripped))["spec"]
        operator = parse_spec(stripped).model_dump(mode="json", by_alias=True, exclude_none=True)
        for path, default in left_out.items():
            assert lookup(stripped, path) is ABSENT
            assert lookup(created, path) == default, f"{path}: server filled {lookup(created, path)!r}"
            assert lookup(operator, path) == default, (
                f"{path}: the operator defaults to {lookup(operator, path)!r}"
            )


def test_the_server_prunes_unknown_fields_but_keeps_the_workload_template(server: MonitorServer) -> None:
    unknown = {
        "spec.colour": "green",
        "spec.drift.threshold": 0.3,
        "spec.kpis[0].weight": 2,
        "spec.rollout.gateway.parentRefs[0].port": 443,
        "spec.holds[0].match.regex": "bank-.*",
    }
    body = server.body(changed(FULL_SPEC, unknown), extra_top_level="dropped")
    created = server.dry_run(body, validation="Ignore")
    assert "extra_top_level" not in created
    for path in unknown:
        assert lookup(created["spec"], path) is ABSENT, f"{path} was stored"
    template = created["spec"]["retraining"]["template"]
    assert template == FULL_SPEC["retraining"]["template"], "the template is any workload: kept verbatim"

    custom_template = {"apiVersion": "ray.io/v1", "kind": "RayJob", "spec": {"entrypoint": "python t.py"}}
    kept = server.dry_run(server.body(changed(FULL_SPEC, {"spec.retraining.template": custom_template})))
    assert kept["spec"]["retraining"]["template"] == custom_template


def test_strict_field_validation_names_each_unknown_field(server: MonitorServer) -> None:
    body = server.body(changed(FULL_SPEC, {"spec.colour": "green", "spec.drift.threshold": 0.3}))
    try:
        server.dry_run(body, validation="Strict")
    except ApiException as error:
        message = json.loads(error.body or "{}")["message"]
        assert 'unknown field "spec.colour"' in message
        assert 'unknown field "spec.drift.threshold"' in message
    else:
        pytest.fail("strict field validation accepted unknown fields")


# Printer columns -------------------------------------------------------------------------------


def test_kubectl_get_mm_shows_the_printer_columns(plane: Plane, server: MonitorServer) -> None:
    name = "columns"
    server.custom.create_namespaced_custom_object(
        GROUP, VERSION, NAMESPACE, PLURAL, server.body(FULL_SPEC, name)
    )
    try:
        status = {
            "conditions": [
                {
                    "type": "Ready",
                    "status": "True",
                    "reason": "Evaluated",
                    "message": "",
                    "lastTransitionTime": "2026-12-07T10:00:00Z",
                },
                {
                    "type": "EstimateTrusted",
                    "status": "False",
                    "reason": "CalibrationDrift",
                    "message": "precision: gap 0.21 beyond tolerance 0.05",
                    "lastTransitionTime": "2026-12-07T10:00:00Z",
                },
            ],
            "decision": {
                "action": "Retrain",
                "reason": "CriticalDrift",
                "message": "amount drifted",
                "time": "2026-12-07T10:00:00Z",
                "since": "2026-12-07T10:00:00Z",
                "enforced": True,
            },
            "lastEvaluation": {
                "time": "2026-12-07T10:00:00Z",
                "durationSeconds": 0.2,
                "queries": 4,
                "drift": {
                    "method": "psi",
                    "series": 8,
                    "noData": 0,
                    "warning": 1,
                    "critical": 1,
                    "maxScore": 0.31,
                },
            },
        }
        server.custom.patch_namespaced_custom_object_status(
            GROUP, VERSION, NAMESPACE, PLURAL, name, {"status": status}
        )
        table = kubectl(plane.tools, plane.kubeconfig, "get", "mm", "-n", NAMESPACE)
        header, row = table.splitlines()
        assert header.split() == ["NAME", "MODEL", "MODE", "READY", "DECISION", "REASON", "DRIFT", "AGE"]
        assert row.split()[:7] == [
            name,
            "fraud-detector",
            "Enforce",
            "True",
            "Retrain",
            "CriticalDrift",
            "0.31",
        ]
        wide = kubectl(plane.tools, plane.kubeconfig, "get", "mm", "-n", NAMESPACE, "-o", "wide")
        header, row = wide.splitlines()
        assert header.split() == [
            "NAME",
            "MODEL",
            "MODE",
            "READY",
            "DECISION",
            "REASON",
            "STATUS",
            "DRIFT",
            "ESTIMATE",
            "AGE",
        ]
        assert row.split()[5:9] == ["CriticalDrift", "Evaluated", "0.31", "CalibrationDrift"]
        by_category = kubectl(
            plane.tools, plane.kubeconfig, "get", "evergreen", "-n", NAMESPACE, "-o", "name"
        )
        assert by_category.split() == [f"modelmonitor.{GROUP}/{name}"]
    finally:
        server.custom.delete_namespaced_custom_object(GROUP, VERSION, NAMESPACE, PLURAL, name)
