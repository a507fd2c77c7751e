"""Cumulative Prometheus histograms, grouped by feature and segment, as dense arrays.

A query such as ``sum by (feature, segment, le) (increase(x_bucket[1h]))`` returns one sample
per (feature, segment, bucket bound). :class:`HistogramSet` holds such a result as one
``(series, bound)`` array so that every statistic downstream is a handful of numpy calls,
whatever the number of features and segments.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from itertools import count, repeat
from operator import itemgetter

import numpy as np

from evergreen.analysis.columns import LabelColumns
from evergreen.analysis.parsing import (
    ParsedBuckets,
    Sample,
    parse_bucket_columns,
    parse_buckets,
    samples_from_vector,
)
from evergreen.analysis.series import BoolArray, FloatArray, IntArray, SeriesKey, series_keys
from evergreen.errors import AnalysisError

__all__ = [
    "BoolArray",
    "FloatArray",
    "HistogramSet",
    "IntArray",
    "Sample",
    "SeriesKey",
    "samples_from_vector",
]


@dataclass(frozen=True, eq=False)
class HistogramSet:
    """Cumulative bucket counts of many series over one union of bucket bounds.

    ``cumulative[i, j]`` is the count of series ``keys[i]`` at or below ``upper_bounds[j]``;
    NaN where that series has no sample for that bound (or the sample was NaN). Keys are
    sorted; bounds are sorted ascending and the last one is always +Inf. The arrays are
    read-only.
    """

    keys: tuple[SeriesKey, ...]
    upper_bounds: FloatArray
    cumulative: FloatArray
    #: Samples dropped because they carried no ``le`` label (a malformed family).
    samples_without_bound: int = 0
    #: Samples dropped because they lacked the feature label.
    samples_without_feature: int = 0

    def __post_init__(self) -> None:
        bounds = np.array(self.upper_bounds, dtype=np.float64)
        cumulative = np.array(self.cumulative, dtype=np.float64)
        if bounds.ndim != 1 or bounds.size == 0 or bounds[-1] != math.inf:
            raise AnalysisError("upper bounds must be a non-empty 1-D array ending with +Inf")
        if not np.all(np.diff(bounds) > 0):
            raise AnalysisError("upper bounds must be strictly increasing")
        expected = (len(self.keys), bounds.size)
        if cumulative.shape != expected:
            raise AnalysisError(f"cumulative counts have shape {cumulative.shape}, not {expected}")
        bounds.setflags(write=False)
        cumulative.setflags(write=False)
        object.__setattr__(self, "upper_bounds", bounds)
        object.__setattr__(self, "cumulative", cumulative)

    def __len__(self) -> int:
        return len(self.keys)

    @classmethod
    def empty(cls) -> HistogramSet:
        """A set without series (a query that returned nothing)."""
        return cls(keys=(), upper_bounds=np.array([math.inf]), cumulative=np.empty((0, 1)))

    @classmethod
    def from_samples(
        cls,
        samples: Iterable[Sample],
        *,
        feature_label: str | None,
        segment_labels: Sequence[str] = (),
        default_feature: str = "prediction",
    ) -> HistogramSet:
        """Group ``_bucket`` samples into one cumulative histogram per feature and segment.

        ``feature_label`` names the label holding the feature; ``None`` for a family with a
        single implicit feature (prediction scores), which is then called ``default_feature``.
        A segment label missing from a sample counts as the empty value, as in PromQL.
        Samples that differ only in labels not listed here, or whose ``le`` texts parse to
        the same number (``"1"`` and ``"1.0"``), are summed. Samples without ``le`` (or
        without the feature label) are dropped and counted. NaN and infinite values are
        unknown counts.

        Raises :class:`AnalysisError` when an ``le`` or a value is not a number, or when the
        label roles contradict each other (``le`` as a segment, the feature as a segment).
        """
        parsed = parse_buckets(samples, feature_label, segment_labels, default_feature)
        return cls._of(parsed)

    @classmethod
    def from_columns(
        cls,
        columns: LabelColumns,
        values: FloatArray,
        *,
        feature_label: str | None,
        segment_labels: Sequence[str] = (),
        default_feature: str = "prediction",
    ) -> HistogramSet:
        """:meth:`from_samples` for an answer in label columns (one value per series)."""
        parsed = parse_bucket_columns(columns, values, feature_label, segment_labels, default_feature)
        return cls._of(parsed)

    @classmethod
    def _of(cls, parsed: ParsedBuckets) -> HistogramSet:
        return cls(
            keys=parsed.keys,
            upper_bounds=parsed.upper_bounds,
            cumulative=parsed.cumulative,
            samples_without_bound=parsed.samples_without_bound,
            samples_without_feature=parsed.samples_without_feature,
        )

    def with_totals(self) -> HistogramSet:
        """Add a whole-population series per feature, the sum of the feature's segments.

        A bound is known for the total only where every segment of that feature knows it (a
        sum over partly unknown counts is unknown). Series with no known bound at all do not
        take part. Features that already have a whole-population series are left alone.
        """
        keys = self.keys
        features = list(map(itemgetter(0), keys))
        names = list(dict.fromkeys(features))
        group_of = dict(zip(names, count()))
        groups = np.fromiter(map(group_of.__getitem__, features), dtype=np.intp, count=len(keys))
        if (groups.size and (np.diff(groups) < 0).any()) or sorted(names) != names:
            # Keys not in feature order (a set built by hand): sort first, as the result must be.
            order = sorted(range(len(keys)), key=keys.__getitem__)
            return replace(
                self, keys=tuple(keys[i] for i in order), cumulative=self.cumulative[order]
            ).with_totals()
        segmented = np.fromiter(map(bool, map(itemgetter(1), keys)), dtype=bool, count=len(keys))
        needs_total = np.ones(len(names), dtype=bool)
        needs_total[groups[~segmented]] = False
        if not needs_total.any():
            return self

        members = needs_total[groups] & ~np.isnan(self.cumulative).all(axis=1)
        sums = np.zeros((len(names), self.upper_bounds.size))
        # add.at adds one row after the other, in key order.
        np.add.at(sums, groups[members], self.cumulative[members])
        sums[np.bincount(groups[members], minlength=len(names)) == 0] = np.nan

        # Keys are sorted, so a feature's rows are consecutive and its total goes right before
        # the first of them: number the rows, then the totals, and interleave.
        totalled = np.flatnonzero(needs_total)
        interleaved = np.insert(
            np.arange(len(keys)),
            np.searchsorted(groups, totalled),
            np.arange(len(keys), len(keys) + totalled.size),
        )
        total_keys = series_keys(map(names.__getitem__, totalled.tolist()), repeat((), totalled.size))
        return replace(
            self,
            keys=itemgetter(*interleaved.tolist())((*keys, *total_keys)),
            cumulative=np.concatenate([self.cumulative, sums[totalled]])[interleaved],
        )
