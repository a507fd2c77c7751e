"""What a query returns, independent of where it came from (live Prometheus or a recording)."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import numpy as np
import numpy.typing as npt


@dataclass(frozen=True)
class Sample:
    """One series of an instant-query result."""

    labels: Mapping[str, str]
    value: float

    def to_json(self) -> dict[str, Any]:
        value = "NaN" if math.isnan(self.value) else repr(self.value)
        return {"labels": dict(self.labels), "value": value}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Sample:
        return cls(labels=dict(data["labels"]), value=float(data["value"]))


@dataclass(frozen=True)
class QueryResult:
    """The samples of one instant query (a scalar result is one sample without labels)."""

    query: str
    samples: Sequence[Sample] = field(default_factory=tuple)

    @property
    def empty(self) -> bool:
        return not self.samples


@dataclass(frozen=True)
class RangeResult:
    """The answer to a range query: every series on the step grid ``times``."""

    query: str
    labels: tuple[Mapping[str, str], ...]
    #: Shape (T,): unix seconds, the step grid from start to end.
    times: npt.NDArray[np.float64]
    #: Shape (S, T); a value may be NaN or ±Inf as Prometheus sent it.
    values: npt.NDArray[np.float64]
    #: Shape (S, T); False where the series had no point at that step.
    present: npt.NDArray[np.bool_]

    def at(self, when: datetime) -> QueryResult:
        """The instant-query answer at one grid time (ValueError off the grid)."""
        stamp = when.timestamp()
        index = int(np.searchsorted(self.times, stamp))
        if index >= len(self.times) or abs(self.times[index] - stamp) > 1e-6:
            raise ValueError(f"{when.isoformat()} is not on the grid of this range result")
        column = self.values[:, index]
        return QueryResult(
            self.query,
            tuple(
                Sample(self.labels[row], float(column[row])) for row in np.flatnonzero(self.present[:, index])
            ),
        )
