"""Reading a ModelMonitor manifest from a file, as the command line does.

Every way a file can be unusable — missing, a directory, too large, not UTF-8, not YAML, no
ModelMonitor in it, the wrong apiVersion, a spec that is not a mapping — ends in one
:class:`~evergreen.errors.InputError` that names the file, the place and the fix. The spec
itself is validated by :func:`~evergreen.api.resource.parse_spec`, like the operator does.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from evergreen.api.resource import API_VERSION, KIND, parse_spec, value_kind
from evergreen.api.spec import ModelMonitorSpec
from evergreen.errors import InputError, SpecError

#: The API server refuses requests above 3 MiB; a larger manifest could never be applied.
MAX_MANIFEST_BYTES = 3 * 1024 * 1024
_NAMESPACE = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_Loader: type[yaml.SafeLoader] = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


@dataclass(frozen=True)
class Manifest:
    """One ModelMonitor document of a file, checked as far as the API server would."""

    source: str
    body: Mapping[str, Any]
    name: str | None
    namespace: str | None
    raw_spec: Mapping[str, Any]

    def spec(self) -> ModelMonitorSpec:
        """The validated spec; an invalid field is an InputError naming this file."""
        try:
            return parse_spec(self.raw_spec)
        except SpecError as error:
            raise InputError(self.source, error.message, field=error.field) from error


def read_text(path: Path, what: str = "file") -> str:
    """A local file's text, or an InputError that says why it cannot be read."""
    if path.is_dir():
        raise InputError(str(path), f"is a directory: pass a {what}")
    try:
        with path.open("rb") as handle:
            data = handle.read(MAX_MANIFEST_BYTES + 1)
    except FileNotFoundError:
        raise InputError(str(path), "no such file: check the path") from None
    except OSError as error:
        raise InputError(str(path), f"cannot be read: {error.strerror or error}") from None
    if len(data) > MAX_MANIFEST_BYTES:
        raise InputError(
            str(path), f"is larger than {MAX_MANIFEST_BYTES // 1024 // 1024} MiB, the API server's limit"
        )
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as error:
        before = data[: error.start]
        line = before.count(b"\n") + 1
        column = error.start - (before.rfind(b"\n") + 1) + 1
        raise InputError(
            f"{path}:{line}:{column}",
            f"byte 0x{data[error.start]:02x} is not UTF-8: save the file as UTF-8",
        ) from None


def _documents(path: Path, text: str) -> list[Any]:
    try:
        return list(yaml.load_all(text, Loader=_Loader))
    except yaml.MarkedYAMLError as error:
        mark = error.problem_mark or error.context_mark
        where = f"{path}:{mark.line + 1}:{mark.column + 1}" if mark else str(path)
        problem = " ".join(part for part in (error.context, error.problem) if part)
        raise InputError(
            where, f"not valid YAML ({problem}): check the indentation and quoting there"
        ) from None
    except yaml.YAMLError as error:
        raise InputError(str(path), f"not valid YAML ({error})") from None


def load_manifest(path: Path) -> Manifest:
    """The first ModelMonitor document of a YAML file (other kinds in the file are skipped)."""
    documents = _documents(path, read_text(path, "ModelMonitor manifest (YAML)"))
    seen = []
    for index, document in enumerate(documents, start=1):
        if document is None:
            continue
        if not isinstance(document, dict):
            seen.append(f"document {index} is {value_kind(document)}, not a mapping")
            continue
        if document.get("kind") != KIND:
            seen.append(f"document {index} has kind {document.get('kind')!r}")
            continue
        return checked_document(str(path) if len(documents) == 1 else f"{path} (document {index})", document)
    found = "; ".join(seen) if seen else "the file is empty"
    raise InputError(
        str(path),
        f"no {KIND} found ({found}): a manifest starts with `apiVersion: {API_VERSION}` and `kind: {KIND}`",
    )


def checked_document(source: str, document: dict[Any, Any]) -> Manifest:
    """``document`` as a ModelMonitor: the apiVersion served, metadata and spec of the right shapes."""
    api_version = document.get("apiVersion")
    if api_version != API_VERSION:
        given = "is missing" if api_version is None else f"is {str(api_version)[:80]!r}"
        raise InputError(
            source,
            f"{given}; this version of Evergreen serves {API_VERSION}: set `apiVersion: {API_VERSION}`",
            field="apiVersion",
        )
    metadata = document.get("metadata", {})
    if metadata is None:
        metadata = {}
    if not isinstance(metadata, dict):
        raise InputError(
            source,
            f"is {value_kind(metadata)}; expected a mapping such as `{{name: fraud}}`",
            field="metadata",
        )
    for key in ("name", "namespace"):
        value = metadata.get(key)
        if value is not None and not isinstance(value, str):
            raise InputError(
                source, f"is {value_kind(value)}; expected a string: quote it", field=f"metadata.{key}"
            )
    namespace = metadata.get("namespace")
    if namespace is not None and not (_NAMESPACE.match(namespace) and len(namespace) <= 63):
        raise InputError(
            source,
            f"{namespace[:80]!r} is not a namespace name: lowercase letters, digits and '-', at most 63",
            field="metadata.namespace",
        )
    if "spec" not in document or document["spec"] is None:
        raise InputError(source, "is missing: a ModelMonitor needs at least spec.model", field="spec")
    spec = document["spec"]
    if not isinstance(spec, dict):
        raise InputError(source, f"is {value_kind(spec)}; expected a mapping of fields", field="spec")
    return Manifest(source, document, metadata.get("name"), namespace, spec)


__all__ = ["MAX_MANIFEST_BYTES", "Manifest", "checked_document", "load_manifest", "read_text"]
