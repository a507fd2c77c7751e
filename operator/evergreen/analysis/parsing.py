"""Turning ``_bucket`` samples of an instant query into a dense (series, bound) array.

An answer holds thousands of samples but only a few dozen distinct label texts. Everything
works on label columns (integer codes per series, see :mod:`evergreen.analysis.columns`) in
numpy, and per distinct text (parsing ``le``, building series keys) rather than per sample.
The decoder hands answers over in that form; samples built as dicts (references, tests) are
turned into columns first, touching each sample once per label through C-level iterators
(``map``, ``itemgetter``, a dict), never through a Python function call.
"""

from __future__ import annotations

import math
import sys
from collections.abc import Hashable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from itertools import repeat
from operator import itemgetter, methodcaller
from typing import Any, TypeAlias

import numpy as np

from evergreen.analysis.columns import ABSENT, LabelColumn, LabelColumns
from evergreen.analysis.series import FloatArray, IntArray, SeriesKey, series_keys
from evergreen.errors import AnalysisError

#: One sample of an instant vector: its labels and its value (Prometheus sends text).
Sample: TypeAlias = tuple[Mapping[str, str], float | str]

BOUND_LABEL = "le"

#: Series are grouped with a lookup table over every label combination while there are at
#: most this many combinations per sample, and by sorting beyond.
_TABLE_PER_SAMPLE = 8


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
    labels = list(map(itemgetter(0), rows))
    values = _parse_values(rows, labels)
    names = [BOUND_LABEL, *segments] + ([feature_label] if feature_label is not None else [])
    return parse_bucket_columns(
        label_columns(labels, names), values, feature_label, segments, default_feature
    )


def label_columns(labels: list[Mapping[str, str]], names: Iterable[str]) -> dict[str, LabelColumn]:
    """The columns of ``names`` over a list of label sets (a name no set has is left out)."""
    columns = {}
    for name in names:
        codes, texts = _factorise(labels, name, None)
        if texts == [None]:
            continue
        if None in texts:
            absent = texts.index(None)
            # Renumber so that the absent code becomes -1 and the others stay dense.
            shift = np.arange(len(texts), dtype=np.intp)
            shift[absent + 1 :] -= 1
            shift[absent] = ABSENT
            codes = shift[codes]
            del texts[absent]
        columns[name] = LabelColumn(codes, tuple(texts))
    return columns


def parse_bucket_columns(
    columns: LabelColumns,
    values: FloatArray,
    feature_label: str | None,
    segment_labels: Sequence[str],
    default_feature: str,
) -> ParsedBuckets:
    """:func:`parse_buckets` for an answer already in columns (the decoder's form).

    Non-finite values are unknown counts (NaN).
    """
    segments = tuple(segment_labels)
    _check_label_names(feature_label, segments)
    count = values.size
    values = np.where(np.isfinite(values), values, np.nan)

    bound_codes, bound_texts = _with_default(columns.get(BOUND_LABEL), None, count)
    bound_of_code = np.array([_parse_bound(text) for text in bound_texts], dtype=np.float64)
    keep = ~np.isnan(bound_of_code)[bound_codes]
    without_bound = int(np.count_nonzero(~keep))
    without_feature = 0
    if feature_label is not None:
        feature_codes, feature_texts = _with_default(columns.get(feature_label), None, count)
        if None in feature_texts:
            missing = keep & (feature_codes == feature_texts.index(None))
            without_feature = int(np.count_nonzero(missing))
            keep &= ~missing
        feature_ranks, feature_names = _ranked(feature_codes, feature_texts)
    else:
        feature_ranks, feature_names = np.zeros(count, dtype=np.intp), [default_feature]
    # Sorted by name so that each key's segment pairs come out sorted.
    segment_names = sorted(segments)
    segment_columns = [_ranked(*_with_default(columns.get(name), "", count)) for name in segment_names]

    index = np.flatnonzero(keep)
    # Ranks follow text order, so series in code order are series in key order.
    series, series_of_sample = _distinct(
        [feature_ranks[index], *(ranks[index] for ranks, _ in segment_columns)],
        [len(feature_names), *(len(texts) for _, texts in segment_columns)],
    )
    keys = _series_keys(feature_names, segment_names, [texts for _, texts in segment_columns], series)

    used = np.zeros(len(bound_texts), dtype=bool)
    used[bound_codes[index]] = True
    bounds = np.union1d(bound_of_code[used], [math.inf])
    column_of_code = np.searchsorted(bounds, bound_of_code)
    cell = series_of_sample * bounds.size + column_of_code[bound_codes[index]]
    cells = len(keys) * bounds.size
    # Duplicates (same series and bound) add up; a NaN among them leaves the bound unknown.
    sums = np.bincount(cell, weights=values[index], minlength=cells)
    present = np.bincount(cell, minlength=cells) > 0
    return ParsedBuckets(
        keys=keys,
        upper_bounds=bounds,
        cumulative=np.where(present, sums, np.nan).reshape(len(keys), bounds.size),
        samples_without_bound=without_bound,
        samples_without_feature=without_feature,
    )


def _with_default(column: LabelColumn | None, default: str | None, count: int) -> tuple[IntArray, list[Any]]:
    """A column's codes and texts with ``default`` standing for an absent label."""
    if column is None:
        return np.zeros(count, dtype=np.intp), [default]
    texts: list[Any] = list(column.texts)
    if not (column.codes == ABSENT).any():
        return column.codes, texts
    if default in texts:
        code = texts.index(default)
    else:
        code = len(texts)
        texts.append(default)
    return np.where(column.codes == ABSENT, code, column.codes), texts


def _check_label_names(feature_label: str | None, segment_labels: tuple[str, ...]) -> None:
    if BOUND_LABEL in segment_labels or feature_label == BOUND_LABEL:
        raise AnalysisError(f"{BOUND_LABEL!r} is the bucket bound, not a feature or segment label")
    if feature_label is not None and feature_label in segment_labels:
        raise AnalysisError(f"label {feature_label!r} cannot be both the feature and a segment")
    if len(set(segment_labels)) != len(segment_labels):
        raise AnalysisError(f"segment labels repeat: {list(segment_labels)}")


#: One character per code: chr() stops at U+10FFFF.
CHARACTER_CODES = 0x110000


class _TooManyTexts(Exception):
    """More distinct texts than one-character codes."""


class _CharacterCodes(dict[Hashable, str]):
    """Text -> its code as a one-character string; a new text gets the next character."""

    def __missing__(self, text: Hashable) -> str:
        if len(self) >= CHARACTER_CODES:
            raise _TooManyTexts
        code = chr(len(self))
        self[text] = code
        return code


def _factorise(labels: list[Mapping[str, str]], name: str, default: str | None) -> tuple[IntArray, list[Any]]:
    """Dense codes of one label's values (``default`` where absent), and the value of each code.

    Codes are given in order of first appearance. Each sample's code is looked up in a dict
    as one character and the characters are joined into one string, which numpy reads as an
    array: no Python function call per sample.
    """
    codes = _CharacterCodes()
    try:
        try:
            joined = "".join(map(codes.__getitem__, map(itemgetter(name), labels)))
        except KeyError:
            # Prometheus leaves out empty labels: the slower lookup fills in the default.
            codes.clear()
            joined = "".join(map(codes.__getitem__, map(methodcaller("get", name, default), labels)))
    except _TooManyTexts:
        return _factorise_by_number(labels, name, default)
    if len(codes) <= 256:
        array = np.frombuffer(joined.encode("latin-1"), dtype=np.uint8)
    else:
        # Surrogate code points are characters like any other here.
        array = np.frombuffer(joined.encode("utf-32-le", "surrogatepass"), dtype=np.uint32)
    return array.astype(np.intp), list(codes)


def _factorise_by_number(
    labels: list[Mapping[str, str]], name: str, default: str | None
) -> tuple[IntArray, list[Any]]:
    """:func:`_factorise` for any number of distinct texts, at a Python call per sample."""
    first_of: dict[Hashable, int] = {}
    values = map(methodcaller("get", name, default), labels)
    firsts = np.fromiter(
        map(first_of.setdefault, values, range(len(labels))), dtype=np.intp, count=len(labels)
    )
    distinct, codes = np.unique(firsts, return_inverse=True)
    return codes.reshape(-1), [labels[first].get(name, default) for first in distinct.tolist()]


def _ranked(codes: IntArray, texts: list[Any]) -> tuple[IntArray, list[str]]:
    """Recode so that codes follow text order; ``None`` (an absent label) sorts as ``""``.

    The texts are interned: keys of two windows then share their strings, and comparing the
    windows' keys in :func:`~evergreen.analysis.alignment.align` never reads the characters.
    """
    names = [_interned(text) for text in texts]
    order = sorted(range(len(names)), key=names.__getitem__)
    rank = np.empty(len(names), dtype=np.intp)
    rank[order] = np.arange(len(names))
    return rank[codes], [names[i] for i in order]


def _interned(text: Any) -> Any:
    if text is None:
        return ""
    return sys.intern(text) if type(text) is str else text


def _distinct(columns: list[IntArray], sizes: list[int]) -> tuple[list[IntArray], IntArray]:
    """The distinct rows of equally long code columns in sorted order, and each row's one.

    Returns one array per column with the distinct rows, and for every row the index of its
    distinct row.
    """
    size = columns[0].size
    space = math.prod(sizes)
    if space >= 2**62:
        stacked, inverse = np.unique(np.stack(columns, axis=1), axis=0, return_inverse=True)
        return list(stacked.T), inverse.reshape(-1)
    combined = np.ravel_multi_index(columns, sizes) if size else np.zeros(0, dtype=np.intp)
    if space <= _TABLE_PER_SAMPLE * size:
        seen = np.zeros(space, dtype=bool)
        seen[combined] = True
        distinct = np.flatnonzero(seen)
        row_of = np.cumsum(seen, dtype=np.intp) - 1
        inverse = row_of[combined]
    else:
        distinct, inverse = np.unique(combined, return_inverse=True)
    return list(np.unravel_index(distinct, sizes)), inverse


def _series_keys(
    features: list[str], segment_names: list[str], segment_texts: list[list[str]], series: list[IntArray]
) -> tuple[SeriesKey, ...]:
    """One key per distinct series; ``series`` holds its feature and segment codes."""
    feature_of = map(features.__getitem__, series[0].tolist())
    if not segment_names:
        return series_keys(feature_of, repeat((), series[0].size))
    if len(segment_names) == 1:
        # One segment tuple per value, shared by every key that has it.
        segments = [((segment_names[0], text),) for text in segment_texts[0]]
        return series_keys(feature_of, map(segments.__getitem__, series[1].tolist()))
    pairs = [
        [(name, text) for text in texts] for name, texts in zip(segment_names, segment_texts, strict=True)
    ]
    columns = [
        map(pairs_of.__getitem__, codes.tolist()) for pairs_of, codes in zip(pairs, series[1:], strict=True)
    ]
    return series_keys(feature_of, zip(*columns, strict=True))


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


def _parse_values(rows: list[Sample], labels: list[Mapping[str, str]]) -> FloatArray:
    """Sample values as floats; NaN for non-finite ones (an unknown count)."""
    try:
        values = np.fromiter(map(itemgetter(1), rows), dtype=np.float64, count=len(rows))
    except (TypeError, ValueError):
        bad = next((i for i, (_, value) in enumerate(rows) if not _is_number(value)), None)
        if bad is None:
            raise AnalysisError("sample values are not all numbers") from None
        raise AnalysisError(f"sample value {rows[bad][1]!r} of {dict(labels[bad])} is not a number") from None
    values[~np.isfinite(values)] = np.nan
    return values


def _is_number(value: object) -> bool:
    try:
        float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return False
    return True
