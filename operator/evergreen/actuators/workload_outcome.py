"""Read a retraining workload back: has it finished, and which candidate did it report.

The workload and its pods are the JSON objects the API returns (camelCase dicts); nothing here
knows a kind's schema beyond the monitor's :class:`CompletionRule` and :class:`ResultSource`.

A run reports its result as a JSON object, by default through a container's termination
message (``/dev/termination-log``, at most 4096 bytes)::

    {"version": "v13", "metrics": {"auc": 0.91},
     "baseline": {"version": "v12", "metrics": {"auc": 0.89}}}

``baseline`` is optional: the current model evaluated on the same holdout, which the gate
prefers over any other reference. Numbers may be given as strings (``"0.91"``); booleans are
not numbers. Other top-level keys are ignored, so a trainer may report more.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from evergreen.api.retraining import METRIC_KEY_PATTERN, Candidate, CompletionRule, ResultSource
from evergreen.errors import ResultError

#: The pattern of ``spec.currentVersion``: a candidate's version may become the current one.
VERSION_PATTERN = re.compile(r"^[A-Za-z0-9]([A-Za-z0-9._-]*[A-Za-z0-9])?$")
MAX_VERSION_LENGTH = 63
#: A result lands in the monitor's status; a bound keeps a chatty trainer from bloating it.
MAX_METRICS = 64
_EXAMPLE = '{"version": "v13", "metrics": {"auc": 0.91}}'
_METRIC_NAME = re.compile(METRIC_KEY_PATTERN)
#: Where kinds record when they ended: Argo Workflow, Job / Kubeflow jobs, RayJob.
_END_FIELDS = ("status.finishedAt", "status.completionTime", "status.endTime")


class WorkloadPhase(StrEnum):
    RUNNING = "Running"
    SUCCEEDED = "Succeeded"
    FAILED = "Failed"


@dataclass(frozen=True)
class WorkloadState:
    """Where a workload stands by the monitor's completion rules."""

    state: WorkloadPhase
    message: str
    finished_at: datetime | None = None

    @property
    def finished(self) -> bool:
        return self.state is not WorkloadPhase.RUNNING


@dataclass(frozen=True)
class RunResult:
    """What a run reported: its candidate and, optionally, the current model on the same holdout."""

    candidate: Candidate
    baseline: Candidate | None = None


@dataclass(frozen=True)
class TerminationMessage:
    """A container's termination message and where it came from."""

    pod: str
    container: str
    message: str
    finished_at: datetime | None

    @property
    def source(self) -> str:
        return f"termination message of pod {self.pod}/{self.container}"


def read_field(obj: Mapping[str, Any], path: str) -> Any:
    """The value at a dotted path of mapping keys (``status.phase``), or None when absent.

    Only mapping keys are followed, no list indexes: completion rules and result fields point
    at scalars or objects a controller writes under ``status``.
    """
    value: Any = obj
    for key in path.split("."):
        if not isinstance(value, Mapping):
            return None
        value = value.get(key)
    return value


def parse_time(value: Any) -> datetime | None:
    """An RFC 3339 timestamp from the API (``2026-01-12T10:00:00Z``) in UTC, or None."""
    if not isinstance(value, str):
        return None
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        return None
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def workload_state(
    workload: Mapping[str, Any], success: CompletionRule, failure: CompletionRule
) -> WorkloadState:
    """Running, Succeeded or Failed by the rules; failure is checked first.

    A condition rule matches a ``status.conditions[]`` entry of its type with status
    ``"True"``; a field rule matches when the value at its path is one of its values. A
    workload without status is Running. ``finished_at`` is the matching condition's
    ``lastTransitionTime``, else the first of ``status.finishedAt``, ``status.completionTime``
    and ``status.endTime`` that is set.
    """
    for phase, rule in ((WorkloadPhase.FAILED, failure), (WorkloadPhase.SUCCEEDED, success)):
        matched = _match(workload, rule)
        if matched is not None:
            message, finished_at = matched
            if finished_at is None:
                finished_at = next(
                    (t for t in (parse_time(read_field(workload, f)) for f in _END_FIELDS) if t), None
                )
            return WorkloadState(phase, message, finished_at)
    return WorkloadState(WorkloadPhase.RUNNING, f"waiting for {_describe(success)} or {_describe(failure)}")


def _describe(rule: CompletionRule) -> str:
    if rule.condition_type is not None:
        return f"condition {rule.condition_type}"
    return f"{rule.field_path} in {', '.join(rule.values)}"


def _match(workload: Mapping[str, Any], rule: CompletionRule) -> tuple[str, datetime | None] | None:
    """The message and end time when the rule matches, else None."""
    if rule.condition_type is not None:
        conditions = read_field(workload, "status.conditions")
        for condition in conditions if isinstance(conditions, list) else []:
            if (
                isinstance(condition, Mapping)
                and condition.get("type") == rule.condition_type
                and condition.get("status") == "True"
            ):
                details = [str(condition[key]) for key in ("reason", "message") if condition.get(key)]
                return ": ".join([rule.condition_type, *details]), parse_time(
                    condition.get("lastTransitionTime")
                )
        return None
    assert rule.field_path is not None  # CompletionRule holds exactly one of the two
    value = read_field(workload, rule.field_path)
    if value is None or isinstance(value, Mapping | list):
        return None
    text = value if isinstance(value, str) else json.dumps(value)
    if text not in rule.values:
        return None
    detail = read_field(workload, "status.message")
    message = f"{rule.field_path} is {text}" + (f": {detail}" if isinstance(detail, str) and detail else "")
    return message, None


def latest_termination_message(pods: Sequence[Mapping[str, Any]]) -> TerminationMessage | None:
    """The termination message of the container that finished last among those that wrote one.

    Looks at ``state.terminated`` and ``lastState.terminated`` of init and regular containers;
    blank messages do not count. A message without ``finishedAt`` ranks oldest.
    """
    found: list[TerminationMessage] = []
    for pod in pods:
        pod_name = str(read_field(pod, "metadata.name") or "?")
        for list_key in ("initContainerStatuses", "containerStatuses"):
            statuses = read_field(pod, f"status.{list_key}")
            for status in statuses if isinstance(statuses, list) else []:
                if not isinstance(status, Mapping):
                    continue
                for state_key in ("state", "lastState"):
                    terminated = read_field(status, f"{state_key}.terminated")
                    message = terminated.get("message") if isinstance(terminated, Mapping) else None
                    if isinstance(message, str) and message.strip():
                        assert isinstance(terminated, Mapping)
                        found.append(
                            TerminationMessage(
                                pod_name,
                                str(status.get("name") or "?"),
                                message,
                                parse_time(terminated.get("finishedAt")),
                            )
                        )
    if not found:
        return None
    oldest = datetime.min.replace(tzinfo=UTC)
    # max() keeps the first of equals; reversed so the last listed wins a tie.
    return max(reversed(found), key=lambda item: item.finished_at or oldest)


def termination_message(pods: Sequence[Mapping[str, Any]]) -> str | None:
    """The message of :func:`latest_termination_message`, or None when no container wrote one."""
    latest = latest_termination_message(pods)
    return None if latest is None else latest.message


def parse_result(raw: str | Mapping[str, Any] | None, *, source: str) -> RunResult:
    """Validate what a run reported; raise :class:`ResultError` naming ``source`` and the problem."""
    if raw is None or (isinstance(raw, str) and not raw.strip()):
        raise ResultError(source, f"no result: the workload must report a JSON object like {_EXAMPLE}")
    report: Any = raw
    if isinstance(raw, str):
        try:
            report = json.loads(raw)
        except json.JSONDecodeError as error:
            raise ResultError(
                source,
                f"not JSON ({error.msg} at character {error.pos}): {raw.strip()[:80]!r}; expected {_EXAMPLE}",
            ) from None
    if not isinstance(report, Mapping):
        raise ResultError(source, f"expected a JSON object like {_EXAMPLE}, got {_json_type(report)}")
    candidate = _candidate(report, "", source)
    baseline = report.get("baseline")
    if baseline is None:
        return RunResult(candidate)
    if not isinstance(baseline, Mapping):
        raise ResultError(
            source, f"baseline must be an object with version and metrics, got {_json_type(baseline)}"
        )
    return RunResult(candidate, _candidate(baseline, "baseline.", source))


def _candidate(report: Mapping[str, Any], prefix: str, source: str) -> Candidate:
    version = report.get("version")
    if version is None:
        raise ResultError(source, f"{prefix}version is missing; expected {_EXAMPLE}")
    if not isinstance(version, str):
        raise ResultError(source, f"{prefix}version must be a string, got {_json_type(version)} {version!r}")
    if len(version) > MAX_VERSION_LENGTH or not VERSION_PATTERN.match(version):
        raise ResultError(
            source,
            f"{prefix}version {version[:80]!r} is not a model version: at most {MAX_VERSION_LENGTH} letters, "
            "digits, '.', '_' or '-', starting and ending with a letter or digit",
        )
    metrics = report.get("metrics")
    if metrics is None:
        raise ResultError(source, f"{prefix}metrics is missing; expected {_EXAMPLE}")
    if not isinstance(metrics, Mapping):
        raise ResultError(
            source, f"{prefix}metrics must be an object of name: number, got {_json_type(metrics)}"
        )
    if not metrics:
        raise ResultError(source, f"{prefix}metrics is empty: report at least the metric the gate compares")
    if len(metrics) > MAX_METRICS:
        raise ResultError(
            source, f"{prefix}metrics has {len(metrics)} entries; at most {MAX_METRICS} are kept"
        )
    values: dict[str, float] = {}
    for name, value in metrics.items():
        if not isinstance(name, str) or not _METRIC_NAME.match(name) or len(name) > 128:
            raise ResultError(
                source, f"{prefix}metrics: {name!r} is not a metric name (letters, digits, _ . -)"
            )
        number = _number(value)
        if number is None:
            raise ResultError(
                source, f"{prefix}metrics.{name} must be a finite number, got {_json_type(value)} {value!r}"
            )
        values[name] = number
    return Candidate(version=version, metrics=values)


def _number(value: Any) -> float | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        number = float(value)
    elif isinstance(value, str):
        try:
            number = float(value.strip())
        except ValueError:
            return None
    else:
        return None
    return number if math.isfinite(number) else None


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, Mapping):
        return "an object"
    return "an array" if isinstance(value, list | tuple) else type(value).__name__


def workload_result(
    workload: Mapping[str, Any], pods: Sequence[Mapping[str, Any]], rule: ResultSource
) -> RunResult:
    """The result of a finished workload, read where ``spec.retraining.result`` says.

    ``fieldPath`` wins over the termination message, as the spec describes it ("instead").
    """
    if rule.field_path is not None:
        kind = workload.get("kind", "workload")
        name = read_field(workload, "metadata.name") or "?"
        return parse_result(
            read_field(workload, rule.field_path), source=f"{rule.field_path} of {kind} {name}"
        )
    if not rule.termination_message:
        raise ResultError(
            "spec.retraining.result", "names no source: set terminationMessage: true or a fieldPath"
        )
    latest = latest_termination_message(pods)
    if latest is None:
        raise ResultError(
            f"termination messages of {len(pods)} pod(s)",
            f"no container wrote one: the trainer must write a JSON object like {_EXAMPLE} to "
            "/dev/termination-log (or its terminationMessagePath) before exiting",
        )
    return parse_result(latest.message, source=latest.source)
