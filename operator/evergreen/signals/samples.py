"""What a query returns, independent of where it came from (live Prometheus or a recording)."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any


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
