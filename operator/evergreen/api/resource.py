"""The ModelMonitor resource's identity and the parsing of a raw object into typed parts."""

from __future__ import annotations

import reprlib
from collections.abc import Mapping
from typing import Any

from pydantic import ValidationError
from pydantic_core import ErrorDetails

from evergreen.api.base import PATTERN_DESCRIPTIONS
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
        if part == "[key]":
            continue
        path += f"[{part}]" if isinstance(part, int) else f".{part}"
    return path


_SHORT = reprlib.Repr()
_SHORT.maxlevel, _SHORT.maxlist, _SHORT.maxdict, _SHORT.maxstring, _SHORT.maxother = 2, 4, 4, 40, 40


def _shown(value: object) -> str:
    """A bounded rendering of the offending value (it may be megabytes long, or nested deep)."""
    text = _SHORT.repr(value)
    return text if len(text) <= 60 else f"{text[:57]}..."


def value_kind(value: object) -> str:
    """What a YAML value is, in the words an error message uses ("a list", "a mapping")."""
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "a mapping"
    return "empty" if value is None else f"a {type(value).__name__}"


def error_message(error: ErrorDetails) -> str:
    """One pydantic error as a sentence that says what is wrong and how to fix it."""
    kind, value = error["type"], error.get("input")
    ctx = error.get("ctx", {})
    if kind == "extra_forbidden":
        return "unknown field (check the spelling against `kubectl explain modelmonitor.spec`)"
    if kind == "missing":
        return "required field is missing"
    if kind == "string_type":
        hint = ": quote it" if isinstance(value, int | float | bool) else ""
        return f"expected a string, got {value_kind(value)} {_shown(value)}{hint}"
    if kind in ("float_type", "int_type", "int_from_float"):
        wanted = "an integer" if kind.startswith("int") else "a number"
        return f"expected {wanted}, got {value_kind(value)} {_shown(value)}: write it unquoted, e.g. 3"
    if kind == "bool_type":
        return f"expected true or false, got {value_kind(value)} {_shown(value)}"
    if kind == "finite_number":
        return "must be a finite number (not .inf or .nan)"
    if kind in ("dict_type", "model_type", "model_attributes_type"):
        return f"expected a mapping (key: value), got {value_kind(value)} {_shown(value)}"
    if kind == "list_type":
        return f"expected a list (- item), got {value_kind(value)} {_shown(value)}"
    if kind == "string_pattern_mismatch":
        described = PATTERN_DESCRIPTIONS.get(str(ctx.get("pattern")))
        if described:
            return f"{_shown(value)} is not {described}"
        return f"{_shown(value)} does not match {ctx.get('pattern')}"
    if kind == "too_long" and isinstance(value, dict | list):
        unit = "entries" if isinstance(value, dict) else "items"
        return f"has {len(value)} {unit}; at most {ctx.get('max_length')} are allowed"
    if kind == "string_too_long":
        return f"is {len(str(value))} characters long; at most {ctx.get('max_length')} are allowed"
    return str(error["msg"]).removeprefix("Value error, ")


def parse_spec(spec: Mapping[str, Any]) -> ModelMonitorSpec:
    """Validate a raw spec; raise SpecError naming the first offending field and the fix."""
    if not isinstance(spec, Mapping):
        raise SpecError("spec", f"expected a mapping of fields, got {value_kind(spec)}")
    try:
        return ModelMonitorSpec.model_validate(dict(spec))
    except ValidationError as error:
        errors = error.errors(include_url=False)
        message = error_message(errors[0])
        if len(errors) > 1:
            message += f" (and {len(errors) - 1} more)"
        raise SpecError(field_path("spec", tuple(errors[0]["loc"])), message) from error


def parse_status(status: Mapping[str, Any] | None) -> ModelMonitorStatus:
    """Read the status written earlier; an unreadable status (e.g. from an older version) starts fresh."""
    if not status:
        return ModelMonitorStatus()
    try:
        return ModelMonitorStatus.model_validate(dict(status))
    except ValidationError:
        # Status is the operator's own scratchpad; a fresh one only costs history, never safety.
        return ModelMonitorStatus()
