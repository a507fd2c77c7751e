"""The ModelMonitor resource's identity and the parsing of a raw object into typed parts."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pydantic import ValidationError

from evergreen.api.spec import ModelMonitorSpec
from evergreen.api.status import ModelMonitorStatus
from evergreen.errors import SpecError

GROUP = "evergreen.dev"
VERSION = "v1alpha1"
API_VERSION = f"{GROUP}/{VERSION}"
KIND = "ModelMonitor"
PLURAL = "modelmonitors"
SINGULAR = "modelmonitor"
SHORT_NAMES = ("mm",)
CATEGORIES = ("evergreen",)


def field_path(root: str, location: tuple[int | str, ...]) -> str:
    """Render a pydantic error location as ``spec.kpis[0].query``."""
    path = root
    for part in location:
        path += f"[{part}]" if isinstance(part, int) else f".{part}"
    return path


def parse_spec(spec: Mapping[str, Any]) -> ModelMonitorSpec:
    """Validate a raw spec; raise SpecError naming the first offending field and the fix."""
    try:
        return ModelMonitorSpec.model_validate(dict(spec))
    except ValidationError as error:
        first = error.errors(include_url=False)[0]
        message = first["msg"].removeprefix("Value error, ")
        if first["type"] == "extra_forbidden":
            message = "unknown field (check the spelling against `kubectl explain modelmonitor.spec`)"
        elif first["type"] == "missing":
            message = "required field is missing"
        raise SpecError(field_path("spec", tuple(first["loc"])), message) from error


def parse_status(status: Mapping[str, Any] | None) -> ModelMonitorStatus:
    """Read the status written earlier; an unreadable status (e.g. from an older version) starts fresh."""
    if not status:
        return ModelMonitorStatus()
    try:
        return ModelMonitorStatus.model_validate(dict(status))
    except ValidationError:
        # Status is the operator's own scratchpad; a fresh one only costs history, never safety.
        return ModelMonitorStatus()
