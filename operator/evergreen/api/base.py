"""Conventions shared by every API model: camelCase on the wire, unknown fields rejected."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel

#: Label and metric names as Prometheus accepts them.
LABEL_NAME_PATTERN = r"^[a-zA-Z_][a-zA-Z0-9_]*$"
METRIC_NAME_PATTERN = r"^[a-zA-Z_:][a-zA-Z0-9_:]*$"
#: Kubernetes object names (DNS-1123 subdomain).
OBJECT_NAME_PATTERN = r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$"


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
