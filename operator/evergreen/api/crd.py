"""Generate the ModelMonitor CustomResourceDefinition from the pydantic models.

Pydantic emits JSON Schema 2020-12; the API server wants a *structural* OpenAPI v3 schema:
no ``$ref``, a ``type`` on every node, no ``additionalProperties: false`` beside
``properties``, and OpenAPI 3.0's boolean ``exclusiveMinimum``. This module converts one into
the other, so the schema the API server enforces is the one the operator validates with.
"""

from __future__ import annotations

from typing import Any

import yaml

from evergreen.api.resource import (
    API_VERSION,
    CATEGORIES,
    GROUP,
    KIND,
    PLURAL,
    SHORT_NAMES,
    SINGULAR,
    VERSION,
)
from evergreen.api.spec import ModelMonitorSpec
from evergreen.api.status import ModelMonitorStatus

Schema = dict[str, Any]

_KEPT_KEYWORDS = (
    "type",
    "format",
    "description",
    "enum",
    "default",
    "pattern",
    "minLength",
    "maxLength",
    "minimum",
    "maximum",
    "minItems",
    "maxItems",
    "minProperties",
    "maxProperties",
    "required",
)

#: Cross-field rules the API server checks with CEL. The operator checks the same in pydantic,
#: with a message that starts with the same words (tests hold each pair together). A rule about
#: one field names it in ``fieldPath``, so the server's refusal points at that field.
_CRITICAL_ABOVE_WARNING = {
    "rule": "self.critical >= self.warning",
    "message": "critical must be greater than or equal to warning",
}
_MIN_OR_MAX = [
    {"rule": "has(self.min) || has(self.max)", "message": "set min, max or both"},
    {
        "rule": "!has(self.min) || !has(self.max) || self.min <= self.max",
        "message": "min must not exceed max",
    },
]


def _unique_names(field: str, what: str) -> dict[str, str]:
    return {
        "rule": f"!has(self.{field}) || self.{field}.all(a, self.{field}.exists_one(b, b.name == a.name))",
        "message": f"{what} names must be unique",
        "fieldPath": f".{field}",
    }


_VALIDATIONS: dict[str, list[dict[str, str]]] = {
    "HistogramDrift": [_CRITICAL_ABOVE_WARNING],
    "FeatureDrift": [
        _CRITICAL_ABOVE_WARNING,
        {
            "rule": "!has(self.segmentBy) || !(self.featureLabel in self.segmentBy)",
            "message": "featureLabel cannot also be a segmentBy label",
        },
    ],
    "PredictionDrift": [_CRITICAL_ABOVE_WARNING],
    "TlsConfig": [
        {
            "rule": "!(has(self.caConfigMap) && has(self.caSecret))",
            "message": "set at most one of caConfigMap and caSecret",
        },
    ],
    "PrometheusEndpoint": [
        {
            "rule": "!(has(self.bearerTokenSecret) && has(self.basicAuth))",
            "message": "set at most one of bearerTokenSecret and basicAuth",
        },
        {
            "rule": "!has(self.headers) || !self.headers.exists(k, k.lowerAscii() == 'authorization')",
            "message": "put credentials in bearerTokenSecret or basicAuth, not in headers",
            "fieldPath": ".headers",
        },
    ],
    "DriftBaseline": [
        {
            "rule": "has(self.configMap) ? !has(self.offset) && !has(self.window) "
            ": has(self.offset) && has(self.window)",
            "message": "use either offset and window, or configMap",
        },
    ],
    "DataQualityCheck": _MIN_OR_MAX,
    "Kpi": [
        *_MIN_OR_MAX,
        {
            "rule": "!has(self.estimate) || has(self.labelDelay)",
            "message": "estimate needs labelDelay: the estimate covers the windows whose labels are "
            "not complete, and is checked against the KPI once they are",
        },
    ],
    "Persistence": [
        {"rule": "self.needed <= self.of", "message": "needed must not exceed of", "fieldPath": ".needed"},
    ],
    "CompletionRule": [
        {
            "rule": "has(self.conditionType) != has(self.fieldPath)",
            "message": "set exactly one of conditionType and fieldPath",
        },
        {
            "rule": "!has(self.fieldPath) || (has(self.values) && size(self.values) > 0)",
            "message": "fieldPath needs the values that mean this state",
            "fieldPath": ".values",
        },
    ],
    "VersionInjection": [
        {
            "rule": "(has(self.env) ? 1 : 0) + (has(self.imageTag) && self.imageTag ? 1 : 0)"
            " + (has(self.argPrefix) ? 1 : 0) == 1",
            "message": "set exactly one of env, imageTag and argPrefix",
        },
    ],
    "RolloutSpec": [
        {
            "rule": "!has(self.steps) || self.steps.all(step, step >= 1 && step <= 100)",
            "message": "steps are traffic percentages between 1 and 100",
            "fieldPath": ".steps",
        },
        {
            "rule": "!has(self.steps) || (self.steps.isSorted()"
            " && self.steps.all(step, self.steps.exists_one(other, other == step)))",
            "message": "steps must increase",
            "fieldPath": ".steps",
        },
        {
            "rule": "!has(self.steps) || self.steps[size(self.steps) - 1] == 100",
            "message": "the last step must be 100",
            "fieldPath": ".steps",
        },
        {
            "rule": "!(has(self.router) && self.router == 'GatewayAPI') || has(self.gateway)",
            "message": "router GatewayAPI needs gateway (the HTTPRoute to manage)",
        },
        {
            "rule": "(has(self.router) && self.router == 'GatewayAPI') || !has(self.gateway)",
            "message": "gateway is only used with router GatewayAPI",
            "fieldPath": ".gateway",
        },
    ],
    "ModelMonitorSpec": [
        {
            # Below 1s means: every part zero except at most 999ms (the duration grammar is fixed).
            "rule": "!self.interval.matches('^(0+w)?(0+d)?(0+h)?(0+m)?(0+s)?(0*[0-9]{1,3}ms)?$')",
            "message": "interval must be at least 1s",
            "fieldPath": ".interval",
        },
        {
            "rule": "has(self.drift) || has(self.predictionDrift) "
            "|| (has(self.dataQuality) && size(self.dataQuality) > 0) "
            "|| (has(self.kpis) && size(self.kpis) > 0)",
            "message": "nothing to monitor: set drift, predictionDrift, dataQuality or kpis",
        },
        _unique_names("dataQuality", "dataQuality check"),
        _unique_names("kpis", "KPI"),
        _unique_names("holds", "hold"),
        {
            "rule": "!has(self.holds) || size(self.holds) == 0 || has(self.rollout)",
            "message": "holds need spec.rollout (its target says how versions are served)",
            "fieldPath": ".holds",
        },
    ],
}


def _structural(node: Schema, defs: dict[str, Schema], name: str | None = None) -> Schema:
    if node.get("x-kubernetes-preserve-unknown-fields"):
        # Free-form objects (a workload template) are kept as written, not pruned.
        kept: Schema = {"type": "object", "x-kubernetes-preserve-unknown-fields": True}
        if "description" in node:
            kept["description"] = node["description"]
        return kept
    if "$ref" in node:
        ref = node["$ref"].rsplit("/", 1)[-1]
        merged = {**defs[ref], **{k: v for k, v in node.items() if k != "$ref"}}
        return _structural(merged, defs, ref)
    if "anyOf" in node:
        # Optional[X] arrives as anyOf [X, null]: absence already expresses "unset".
        options = [option for option in node["anyOf"] if option.get("type") != "null"]
        if len(options) != 1:
            raise ValueError(f"cannot express a union of {len(options)} types structurally")
        outer = {k: v for k, v in node.items() if k not in ("anyOf", "default")}
        if node.get("default") is not None:
            outer["default"] = node["default"]
        return _structural({**options[0], **outer}, defs, name)

    schema: Schema = {key: node[key] for key in _KEPT_KEYWORDS if key in node}
    if "exclusiveMinimum" in node:
        schema["minimum"] = node["exclusiveMinimum"]
        schema["exclusiveMinimum"] = True
    if "exclusiveMaximum" in node:
        schema["maximum"] = node["exclusiveMaximum"]
        schema["exclusiveMaximum"] = True
    if "properties" in node:
        schema["type"] = "object"
        schema["properties"] = {key: _structural(value, defs) for key, value in node["properties"].items()}
    elif isinstance(node.get("additionalProperties"), dict):
        schema["additionalProperties"] = _structural(node["additionalProperties"], defs)
    if "items" in node:
        schema["items"] = _structural(node["items"], defs)
    if "enum" in node and "type" not in schema:
        schema["type"] = "string"
    if "type" not in schema:
        raise ValueError(f"schema node without a type: {node}")
    rules = [*node.get("x-kubernetes-validations", []), *_VALIDATIONS.get(name or "", [])]
    if rules:
        schema["x-kubernetes-validations"] = rules
    return schema


def openapi_schema(model: type[Any]) -> Schema:
    """The structural OpenAPI v3 schema of a pydantic model, camelCase field names."""
    raw = model.model_json_schema(by_alias=True, mode="validation")
    return _structural(raw, raw.get("$defs", {}), raw.get("title"))


def _printer_columns() -> list[dict[str, Any]]:
    ready = '.status.conditions[?(@.type=="Ready")]'
    return [
        {"name": "Model", "type": "string", "jsonPath": ".spec.model"},
        {"name": "Mode", "type": "string", "jsonPath": ".spec.mode"},
        {"name": "Ready", "type": "string", "jsonPath": f"{ready}.status"},
        {"name": "Decision", "type": "string", "jsonPath": ".status.decision.action"},
        # The decision's reason beside the decision (the Ready reason shows with -o wide).
        {"name": "Reason", "type": "string", "jsonPath": ".status.decision.reason"},
        {"name": "Status", "type": "string", "jsonPath": f"{ready}.reason", "priority": 1},
        {
            "name": "Drift",
            "type": "number",
            "format": "float",
            "description": "Highest feature drift score of the last evaluation.",
            "jsonPath": ".status.lastEvaluation.drift.maxScore",
        },
        {
            "name": "Estimate",
            "type": "string",
            "description": "Whether KPI estimates are trusted (CalibrationDrift: not).",
            "jsonPath": '.status.conditions[?(@.type=="EstimateTrusted")].reason',
            "priority": 1,
        },
        {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"},
    ]


def custom_resource_definition() -> dict[str, Any]:
    """The ModelMonitor CRD as a Kubernetes object."""
    spec_schema = openapi_schema(ModelMonitorSpec)
    status_schema = openapi_schema(ModelMonitorStatus)
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {
            "name": f"{PLURAL}.{GROUP}",
            "labels": {"app.kubernetes.io/name": "evergreen", "app.kubernetes.io/part-of": "evergreen"},
        },
        "spec": {
            "group": GROUP,
            "scope": "Namespaced",
            "names": {
                "kind": KIND,
                "listKind": f"{KIND}List",
                "plural": PLURAL,
                "singular": SINGULAR,
                "shortNames": list(SHORT_NAMES),
                "categories": list(CATEGORIES),
            },
            "versions": [
                {
                    "name": VERSION,
                    "served": True,
                    "storage": True,
                    "subresources": {"status": {}},
                    "additionalPrinterColumns": _printer_columns(),
                    "schema": {
                        "openAPIV3Schema": {
                            "type": "object",
                            "description": "Keeps one production ML model healthy: drift, data "
                            "quality and KPIs from Prometheus, and what to do about them.",
                            "required": ["spec"],
                            "properties": {
                                "apiVersion": {"type": "string"},
                                "kind": {"type": "string"},
                                "metadata": {"type": "object"},
                                "spec": spec_schema,
                                "status": status_schema,
                            },
                        }
                    },
                }
            ],
        },
    }


class _PlainDumper(yaml.SafeDumper):
    """Writes repeated sub-schemas in full: anchors and aliases confuse readers and tools."""

    def ignore_aliases(self, data: Any) -> bool:
        return True


def render_crd_yaml() -> str:
    """The CRD as the YAML committed in ``crds/`` (stable key order, so diffs stay readable)."""
    header = (
        "# Generated by `evergreen crd` from the pydantic models in evergreen.api.\n"
        "# Do not edit by hand: change the models and regenerate.\n"
    )
    body = yaml.dump(custom_resource_definition(), Dumper=_PlainDumper, sort_keys=False, width=100)
    return header + body


__all__ = ["API_VERSION", "custom_resource_definition", "openapi_schema", "render_crd_yaml"]
