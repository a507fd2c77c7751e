"""Why a signal has no value: the problems an evaluation reports, each naming a spec field."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

__all__ = ["ProblemKind", "SignalProblem"]


class ProblemKind(StrEnum):
    """Why a signal has no value: each leads to its own reason when nothing could be judged."""

    #: Prometheus could not be reached or answered with a server error.
    UNAVAILABLE = "Unavailable"
    #: Prometheus rejected the query (a syntax error, a zero offset): the spec must change.
    REJECTED = "Rejected"
    #: The query was answered, with no series (a model name that matches nothing, no traffic).
    NO_DATA = "NoData"
    #: The current window has data, the baseline does not hold ``minSamples`` yet (warm-up).
    BASELINE_NOT_READY = "BaselineNotReady"
    #: The answer cannot be used (malformed histograms).
    INVALID = "Invalid"


@dataclass(frozen=True)
class SignalProblem:
    """Why one signal could not be evaluated; ``field`` points at the spec."""

    field: str
    kind: ProblemKind
    message: str
