"""PromQL construction with safe escaping.

Users write queries with ``{{model}}``-style variables; the operator writes histogram queries
itself. Either way values are escaped as PromQL string contents, and names are checked
against Prometheus' grammar, so a label value can never change the shape of a query.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence

from evergreen.errors import SpecError

_VARIABLE = re.compile(r"\{\{\s*([A-Za-z_][A-Za-z0-9_]*)\s*\}\}")
_LABEL_NAME = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_]*$")
_METRIC_NAME = re.compile(r"^[a-zA-Z_:][a-zA-Z0-9_:]*$")


def escape_string(value: str) -> str:
    """Escape a value for use between double quotes in PromQL."""
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n").replace("\r", "\\r")


def render_template(template: str, variables: Mapping[str, str], *, field: str) -> str:
    """Substitute ``{{name}}`` variables (escaped); unknown names are a SpecError on ``field``."""

    def substitute(match: re.Match[str]) -> str:
        name = match.group(1)
        if name not in variables:
            known = ", ".join("{{" + key + "}}" for key in sorted(variables))
            raise SpecError(field, f"unknown template variable {{{{{name}}}}}; use one of {known}")
        return escape_string(variables[name])

    return _VARIABLE.sub(substitute, template)


def selector(metric: str, matchers: Mapping[str, str]) -> str:
    """``metric{a="x",b="y"}`` with names checked and values escaped (sorted for stable text)."""
    if not _METRIC_NAME.match(metric):
        raise ValueError(f"not a metric name: {metric!r}")
    parts = []
    for name in sorted(matchers):
        if not _LABEL_NAME.match(name):
            raise ValueError(f"not a label name: {name!r}")
        parts.append(f'{name}="{escape_string(matchers[name])}"')
    return f"{metric}{{{','.join(parts)}}}"


def histogram_increase(
    family: str,
    *,
    matchers: Mapping[str, str],
    group_by: Sequence[str],
    window: str,
    offset: str | None = None,
) -> str:
    """Bucket increases of a histogram family over one window, every series in one query.

    ``increase`` runs before ``sum`` so counter resets of single series are repaired before
    series are added up (the reverse order cannot repair them).
    """
    for name in group_by:
        if not _LABEL_NAME.match(name):
            raise ValueError(f"not a label name: {name!r}")
    labels = ", ".join([*dict.fromkeys(group_by), "le"])
    shift = f" offset {offset}" if offset else ""
    return f"sum by ({labels}) (increase({selector(family + '_bucket', matchers)}[{window}]{shift}))"
