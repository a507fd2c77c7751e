"""Turning ``_bucket`` samples of an instant query into a dense (series, bound) array.

Python touches each sample a few times through C-level iterators (``map``, ``itemgetter``,
``dict.setdefault``) to give every label text an integer code; grouping, sorting and summing
happen on those codes in numpy.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from operator import itemgetter, methodcaller
from typing import Any, TypeAlias

import numpy as np

from evergreen.analysis.series import FloatArray, IntArray, SeriesKey
from evergreen.errors import AnalysisError

#: One sample of an instant vector: its labels and its value (Prometheus sends text).
Sample: TypeAlias = tuple[Mapping[str, str], float | str]

BOUND_LABEL = "le"


def samples_from_vector(result: Iterable[Mapping[str, Any]]) -> list[Sample]:
    """Turn the ``result`` of a Prometheus instant-vector answer into samples.

    Each item looks like ``{"metric": {...labels...}, "value": [timestamp, "1.5"]}``.
    """
    return [(item["metric"], item["value"][1]) for item in result]


@dataclass(frozen=True, eq=False)
class ParsedBuckets:
    """Cumulative counts per sorted series key and ascending bound (NaN where absent)."""

    keys: tuple[SeriesKey, ...]
    upper_bounds: FloatArray
    cumulative: FloatArray
    samples_without_bound: int
    samples_without_feature: int


def parse_buckets(
    samples: Iterable[Sample],
    feature_label: str | None,
    segment_labels: Sequence[str],
    default_feature: str,
) -> ParsedBuckets:
    """See :meth:`evergreen.analysis.histograms.HistogramSet.from_samples`."""
    segments = tuple(segment_labels)
    _check_label_names(feature_label, segments)
    rows = samples if isinstance(samples, list) else list(samples)
    labels = [row[0] for row in rows]
    values = _parse_values([row[1] for row in rows], labels)

    bound_codes, bound_texts = _encode(labels, BOUND_LABEL, None)
    bound_of_code = np.array([_parse_bound(text) for text in bound_texts], dtype=np.float64)
    keep = ~np.isnan(bound_of_code)[bound_codes]
    without_bound = int(np.count_nonzero(~keep))
    without_feature = 0
    if feature_label is not None:
        feature_codes, feature_values = _encode(labels, feature_label, None)
        has_feature = np.array([value is not None for value in feature_values], dtype=bool)
        missing = keep & ~has_feature[feature_codes]
        without_feature = int(np.count_nonzero(missing))
        keep &= ~missing
        # Codes of absent features are never used: the rows holding them are dropped.
        feature_texts = [value or "" for value in feature_values]
    else:
        feature_codes, feature_texts = np.zeros(len(rows), dtype=np.intp), [default_feature]
    # Sorted by name so that each key's segment pairs come out sorted.
    segment_names = sorted(segments)
    segment_columns = [
        (codes, [value or "" for value in values])
        for codes, values in (_encode(labels, name, "") for name in segment_names)
    ]

    index = np.flatnonzero(keep)
    series, series_of_sample = _distinct(
        [feature_codes[index], *(codes[index] for codes, _ in segment_columns)],
        [len(feature_texts), *(len(texts) for _, texts in segment_columns)],
    )
    pairs = [
        [(name, text) for text in texts]
        for name, (_, texts) in zip(segment_names, segment_columns, strict=True)
    ]
    keys = [
        SeriesKey(feature_texts[feature], tuple(map(list.__getitem__, pairs, segment)))
        for feature, *segment in series
    ]
    order = sorted(range(len(keys)), key=keys.__getitem__)
    row_of_series = np.empty(len(keys), dtype=np.intp)
    row_of_series[order] = np.arange(len(keys))

    sample_bounds = bound_of_code[bound_codes[index]]
    bounds = np.union1d(sample_bounds, [math.inf])
    cell = row_of_series[series_of_sample] * bounds.size + np.searchsorted(bounds, sample_bounds)
    cells = len(keys) * bounds.size
    # Duplicates (same series and bound) add up; a NaN among them leaves the bound unknown.
    sums = np.bincount(cell, weights=values[index], minlength=cells)
    present = np.bincount(cell, minlength=cells) > 0
    return ParsedBuckets(
        keys=tuple(keys[i] for i in order),
        upper_bounds=bounds,
        cumulative=np.where(present, sums, np.nan).reshape(len(keys), bounds.size),
        samples_without_bound=without_bound,
        samples_without_feature=without_feature,
    )


def _check_label_names(feature_label: str | None, segment_labels: tuple[str, ...]) -> None:
    if BOUND_LABEL in segment_labels or feature_label == BOUND_LABEL:
        raise AnalysisError(f"{BOUND_LABEL!r} is the bucket bound, not a feature or segment label")
    if feature_label is not None and feature_label in segment_labels:
        raise AnalysisError(f"label {feature_label!r} cannot be both the feature and a segment")
    if len(set(segment_labels)) != len(segment_labels):
        raise AnalysisError(f"segment labels repeat: {list(segment_labels)}")


def _encode(
    labels: list[Mapping[str, str]], name: str, default: str | None
) -> tuple[IntArray, list[str | None]]:
    """Dense codes of one label's values (``default`` where absent) and the value of each code."""
    try:
        values: list[str | None] = list(map(itemgetter(name), labels))
    except KeyError:
        # Prometheus leaves out empty labels: the slower path fills in the default.
        values = list(map(methodcaller("get", name, default), labels))
    code_of = {value: code for code, value in enumerate(dict.fromkeys(values))}
    codes = np.fromiter(map(code_of.__getitem__, values), dtype=np.intp, count=len(values))
    return codes, list(code_of)


def _distinct(columns: list[IntArray], sizes: list[int]) -> tuple[list[list[int]], IntArray]:
    """The distinct rows of equally long code columns, and the distinct row of each row."""
    size = columns[0].size
    if math.prod(sizes) < 2**62:
        combined = np.ravel_multi_index(columns, sizes) if size else np.zeros(0, dtype=np.intp)
        distinct, inverse = np.unique(combined, return_inverse=True)
        rows: list[list[int]] = np.stack(np.unravel_index(distinct, sizes), axis=1).tolist()
        return rows, inverse
    stacked, inverse = np.unique(np.stack(columns, axis=1), axis=0, return_inverse=True)
    return stacked.tolist(), inverse.reshape(-1)


def _parse_bound(text: str | None) -> float:
    """The numeric bound of an ``le`` text; NaN stands for "no le label"."""
    if text is None:
        return math.nan
    try:
        bound = float(text)
    except (TypeError, ValueError):
        raise AnalysisError(f"bucket bound le={text!r} is not a number") from None
    if math.isnan(bound) or bound == -math.inf:
        raise AnalysisError(f"bucket bound le={text!r} is not a usable upper bound")
    return bound


def _parse_values(raw: list[float | str], labels: list[Mapping[str, str]]) -> FloatArray:
    """Sample values as floats; NaN for non-finite ones (an unknown count)."""
    try:
        values = np.array(raw, dtype=np.float64)
    except (TypeError, ValueError):
        bad = next(i for i, value in enumerate(raw) if not _is_number(value))
        raise AnalysisError(f"sample value {raw[bad]!r} of {dict(labels[bad])} is not a number") from None
    values[~np.isfinite(values)] = np.nan
    return values


def _is_number(value: object) -> bool:
    try:
        float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return False
    return True
