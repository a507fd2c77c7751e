"""Conventions shared by every API model: camelCase on the wire, unknown fields rejected.

Spec fields use :data:`Number`, :data:`Integer` and :data:`Flag` rather than bare ``float``,
``int`` and ``bool``: the API server's schema types are strict (``true`` is not a number, ``"3"``
is not an integer), so the operator and the command line must be too. Maps whose keys end up
in PromQL or HTTP use :func:`keyed_map`, which checks the keys with one rule written once for
pydantic and once, with the same message, as CEL for the CRD.
"""

from __future__ import annotations

import re
from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, Strict
from pydantic.alias_generators import to_camel

#: Label and metric names as Prometheus accepts them.
LABEL_NAME_PATTERN = r"^[a-zA-Z_][a-zA-Z0-9_]*$"
METRIC_NAME_PATTERN = r"^[a-zA-Z_:][a-zA-Z0-9_:]*$"
#: Kubernetes object names (DNS-1123 subdomain).
OBJECT_NAME_PATTERN = r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$"
#: Kubernetes namespace and Service names (DNS-1123 label).
DNS_LABEL_PATTERN = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"
#: HTTP header field names (RFC 9110 tokens).
HEADER_NAME_PATTERN = r"^[A-Za-z0-9!#$%&'*+.^_`|~-]+$"
#: An HTTP(S) base URL.
URL_PATTERN = r"^https?://[^\s]+$"
#: A versions and ids: letters, digits, '.', '_' and '-', starting and ending alphanumeric.
VERSION_PATTERN = r"^[A-Za-z0-9]([A-Za-z0-9._-]*[A-Za-z0-9])?$"
#: Check names (they appear in conditions, metrics and events).
CHECK_NAME_PATTERN = r"^[a-z0-9]([-a-z0-9_]*[a-z0-9])?$"
#: Text without whitespace (a model name as it appears in labels).
NO_SPACE_PATTERN = r"^[^\s]+$"
#: Environment variable names.
ENV_NAME_PATTERN = r"^[A-Za-z_][A-Za-z0-9_]*$"
#: A dotted path into an object (status.phase).
DOTTED_PATH_PATTERN = r"^[A-Za-z0-9_]+(\.[A-Za-z0-9_]+)*$"

#: What each pattern means, for error messages (a regular expression is not an explanation).
PATTERN_DESCRIPTIONS: dict[str, str] = {
    LABEL_NAME_PATTERN: "a Prometheus label name (letters, digits and _, not starting with a digit), "
    "e.g. env",
    METRIC_NAME_PATTERN: "a Prometheus metric name (letters, digits, _ and :), e.g. model_input_bucket",
    OBJECT_NAME_PATTERN: "a Kubernetes object name (lowercase letters, digits, '-' and '.'), e.g. fraud-v2",
    DNS_LABEL_PATTERN: "a Kubernetes name (lowercase letters, digits and '-'), e.g. fraud-serving",
    HEADER_NAME_PATTERN: "an HTTP header name, e.g. X-Customer",
    URL_PATTERN: "an http:// or https:// URL, e.g. http://prometheus.monitoring:9090",
    VERSION_PATTERN: "a version or id (letters, digits, '.', '_' and '-'), e.g. v13",
    CHECK_NAME_PATTERN: "a check name (lowercase letters, digits, '-' and '_'), e.g. null-rate",
    NO_SPACE_PATTERN: "a name without spaces, e.g. fraud-detector",
    ENV_NAME_PATTERN: "an environment variable name, e.g. MODEL_VERSION",
    DOTTED_PATH_PATTERN: "a dotted path, e.g. status.phase",
}

#: A finite number; ``true`` is not one, nor is ``"0.5"`` (the CRD's ``type: number`` agrees).
Number = Annotated[float, Strict(), Field(allow_inf_nan=False)]
#: A whole number; ``3.0``, ``"3"`` and ``true`` are not.
Integer = Annotated[int, Strict()]
#: ``true`` or ``false``; ``"yes"`` and ``1`` are not.
Flag = Annotated[bool, Strict()]


def _cel_string(text: str) -> str:
    """A CEL raw string literal holding ``text`` (a regular expression)."""
    quote = '"' if "'" in text else "'"
    return f"r{quote}{text}{quote}"


def map_keys(
    *, key_pattern: str, key_max_length: int, described: str, max_entries: int
) -> tuple[Any, AfterValidator]:
    """Metadata for ``Annotated[dict[str, V], *map_keys(...)]``: bounded entries, checked keys.

    The key rule is emitted twice from one definition: a pydantic validator and a CEL rule for
    the CRD with the same message, so ``kubectl apply`` and the operator reject the same keys
    in the same words (pydantic adds the offending key).
    """
    message = f"keys must be {described}, at most {key_max_length} characters"
    compiled = re.compile(key_pattern)

    def check_keys(mapping: dict[str, Any]) -> dict[str, Any]:
        for key in mapping:
            if len(key) > key_max_length or not compiled.match(key):
                shown = key if len(key) <= 60 else f"{key[:57]}..."
                raise ValueError(f"{message} (not {shown!r})")
        return mapping

    rule = f"self.all(k, size(k) <= {key_max_length} && k.matches({_cel_string(key_pattern)}))"
    field = Field(
        max_length=max_entries,
        json_schema_extra={"x-kubernetes-validations": [{"rule": rule, "message": message}]},
    )
    return field, AfterValidator(check_keys)


_LABEL_KEYS = map_keys(
    key_pattern=LABEL_NAME_PATTERN,
    key_max_length=128,
    described="Prometheus label names (letters, digits and _, not starting with a digit)",
    max_entries=16,
)
#: Label matchers that become PromQL: keys are label names, values are quoted by the planner.
LabelMap = Annotated[dict[str, Annotated[str, Field(max_length=1024)]], _LABEL_KEYS[0], _LABEL_KEYS[1]]

_HEADER_KEYS = map_keys(
    key_pattern=HEADER_NAME_PATTERN, key_max_length=256, described="HTTP header names", max_entries=16
)
#: Extra HTTP headers.
HeaderMap = Annotated[dict[str, Annotated[str, Field(max_length=4096)]], _HEADER_KEYS[0], _HEADER_KEYS[1]]


class ApiModel(BaseModel):
    """A part of the ModelMonitor resource as it appears in YAML (camelCase keys)."""

    model_config = ConfigDict(
        alias_generator=to_camel,
        populate_by_name=True,
        extra="forbid",
        frozen=True,
        use_enum_values=False,
    )

    def to_wire(self) -> dict[str, object]:
        """The JSON-compatible form with camelCase keys, omitting unset optional fields."""
        return self.model_dump(mode="json", by_alias=True, exclude_none=True)


class SecretKeyRef(ApiModel):
    """A key of a Secret in the ModelMonitor's namespace."""

    name: str = Field(pattern=OBJECT_NAME_PATTERN, max_length=253, description="Secret name.")
    key: str = Field(min_length=1, max_length=253, description="Key inside the Secret's data.")


class ConfigMapKeyRef(ApiModel):
    """A key of a ConfigMap in the ModelMonitor's namespace."""

    name: str = Field(pattern=OBJECT_NAME_PATTERN, max_length=253, description="ConfigMap name.")
    key: str = Field(min_length=1, max_length=253, description="Key inside the ConfigMap's data.")


class StatusModel(ApiModel):
    """Status parts tolerate fields they do not know (written by newer or older versions)."""

    model_config = ConfigDict(extra="ignore")
