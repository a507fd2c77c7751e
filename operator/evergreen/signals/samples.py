"""What a query returns, independent of where it came from (live Prometheus or a recording).

Answers are columnar: each label is one column of integer codes into its distinct texts, and
the values are one float array. A histogram answer holds thousands of series that share a
few dozen label texts, so the analysis reads codes and never a dict per series; the
:attr:`QueryResult.samples` view (one :class:`Sample` per series) is built on demand for the
small answers of checks and KPIs.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import numpy as np

from evergreen.analysis.columns import LabelColumn, LabelColumns
from evergreen.analysis.parsing import label_columns
from evergreen.analysis.series import BoolArray, FloatArray, IntArray
from evergreen.errors import MetricsUnavailable


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


def columns_from_labels(labels: Sequence[Mapping[str, str]]) -> dict[str, LabelColumn]:
    """Columns of a list of label sets (for answers built from samples, such as recordings)."""
    names = sorted({name for series in labels for name in series})
    return label_columns(list(labels), names)


class QueryResult:
    """The series of one instant query (a scalar result is one series without labels).

    Built either from :class:`Sample` objects (tests, recordings, references) or from label
    columns and a value array (the decoder); each form is derived from the other on demand.
    """

    __slots__ = ("_columns", "_samples", "_values", "query")

    def __init__(self, query: str, samples: Sequence[Sample] = ()) -> None:
        """An answer holding ``samples``; see :meth:`from_columns` for the decoder's form."""
        self.query = query
        self._samples: tuple[Sample, ...] | None = tuple(samples)
        self._columns: Mapping[str, LabelColumn] | None = None
        self._values: FloatArray | None = None

    @classmethod
    def from_columns(cls, query: str, columns: LabelColumns, values: FloatArray) -> QueryResult:
        """An answer of ``len(values)`` series; every column holds one code per series."""
        for name, column in columns.items():
            if column.codes.shape != values.shape:
                raise ValueError(f"label column {name!r} has {column.codes.shape}, values {values.shape}")
        result = cls(query)
        result._samples = None
        result._columns = dict(columns)
        values = np.asarray(values, dtype=np.float64)
        values.setflags(write=False)
        result._values = values
        return result

    def __len__(self) -> int:
        return len(self._samples) if self._samples is not None else len(self.values)

    def __repr__(self) -> str:
        return f"QueryResult({self.query!r}, {len(self)} series)"

    @property
    def empty(self) -> bool:
        return len(self) == 0

    @property
    def columns(self) -> LabelColumns:
        if self._columns is None:
            assert self._samples is not None
            self._columns = columns_from_labels([sample.labels for sample in self._samples])
        return self._columns

    @property
    def values(self) -> FloatArray:
        if self._values is None:
            assert self._samples is not None
            values = np.array([sample.value for sample in self._samples], dtype=np.float64)
            values.setflags(write=False)
            self._values = values
        return self._values

    def labels(self) -> list[dict[str, str]]:
        """One label dict per series (the texts are shared between series)."""
        if self._samples is not None:
            return [dict(sample.labels) for sample in self._samples]
        count = len(self.values)
        rows: list[dict[str, str]] = [{} for _ in range(count)]
        for name, column in self.columns.items():
            texts = column.texts
            for row, code in zip(rows, column.codes.tolist(), strict=True):
                if code >= 0:
                    row[name] = texts[code]
        return [dict(sorted(row.items())) for row in rows]

    @property
    def samples(self) -> tuple[Sample, ...]:
        if self._samples is None:
            self._samples = tuple(
                Sample(labels, value)
                for labels, value in zip(self.labels(), self.values.tolist(), strict=True)
            )
        return self._samples

    def take(self, rows: IntArray | BoolArray) -> QueryResult:
        """The answer restricted to some series."""
        columns = {name: column.take(rows) for name, column in self.columns.items()}
        return QueryResult.from_columns(self.query, columns, self.values[rows])

    def same_answer(self, other: QueryResult) -> bool:
        """The same series with bit-identical values (NaN equal to NaN), in any order.

        Prometheus sorts the series of a range answer by labels but not those of an instant
        answer, so the two forms of one answer may list them differently.
        """
        if len(self) != len(other):
            return False

        def rows(result: QueryResult) -> list[tuple[list[tuple[str, str]], bytes]]:
            values = result.values.tolist()
            pairs = [
                (sorted(labels.items()), np.float64(v).tobytes())
                for labels, v in zip(result.labels(), values, strict=True)
            ]
            return sorted(pairs)

        return rows(self) == rows(other)


@dataclass(frozen=True, eq=False)
class RangeResult:
    """A range query's answer on its step grid: every series, every step.

    ``values[s, t]`` is series ``labels[s]`` at ``times[t]`` as Prometheus sent it (NaN and
    ±Inf included); ``present[s, t]`` is False where the series had no point at that step
    (``values`` holds NaN there). The arrays are read-only.
    """

    query: str
    labels: tuple[Mapping[str, str], ...]
    times: FloatArray
    values: FloatArray
    present: BoolArray
    #: The labels as columns (the decoder's form); derived from ``labels`` when not given.
    columns: Mapping[str, LabelColumn] | None = None

    def __post_init__(self) -> None:
        shape = (len(self.labels), self.times.size)
        if self.times.ndim != 1 or self.values.shape != shape or self.present.shape != shape:
            raise ValueError(
                f"a range result of {shape[0]} series x {shape[1]} steps needs values and present "
                f"of that shape, not {self.values.shape} and {self.present.shape}"
            )
        for array in (self.times, self.values, self.present):
            array.setflags(write=False)
        if self.columns is None:
            object.__setattr__(self, "columns", columns_from_labels(self.labels))

    def index_of(self, when: datetime) -> int | None:
        """The grid step at ``when`` (within a millisecond), or None off the grid."""
        at = when.timestamp()
        step = int(np.searchsorted(self.times, at - 5e-4))
        if step < self.times.size and abs(self.times[step] - at) <= 5e-4:
            return step
        return None

    def at(self, when: datetime) -> QueryResult:
        """The instant-query answer at one grid time: the series that had a point there.

        Raises ``MetricsUnavailable`` for a time off the grid: the range never asked for it.
        """
        step = self.index_of(when)
        if step is None:
            first, last = (self.times[0], self.times[-1]) if self.times.size else (math.nan, math.nan)
            raise MetricsUnavailable(
                f"the range answer to {self.query!r} has no step at {when.isoformat()} "
                f"(its grid runs {first:.3f}..{last:.3f})"
            )
        assert self.columns is not None
        rows = np.flatnonzero(self.present[:, step])
        columns = {name: column.take(rows) for name, column in self.columns.items()}
        return QueryResult.from_columns(self.query, columns, self.values[rows, step])


def grid(start: datetime, end: datetime, step_seconds: float) -> FloatArray:
    """The evaluation times of a range query: ``start``, ``start + step``, ... up to ``end``."""
    first, last = start.timestamp(), end.timestamp()
    if step_seconds <= 0:
        raise ValueError("a range query needs a positive step")
    count = math.floor((last - first) / step_seconds + 1e-9) + 1 if last >= first else 0
    times: FloatArray = first + step_seconds * np.arange(count, dtype=np.float64)
    return times
