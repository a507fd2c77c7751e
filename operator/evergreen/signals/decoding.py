"""Prometheus HTTP API bodies -> columnar answers, without a Python object per sample.

The envelope (``status``, ``data.resultType``, ``error``, ``warnings``) is decoded with msgspec,
which also checks that the whole body is well-formed JSON; ``data.result`` stays raw bytes.
Those bytes are then read by :mod:`evergreen.signals.tokens` with numpy (a pass over the
quote positions, label texts factorised per distinct text, every value parsed in one call).
An answer laid out in any other way than Prometheus lays it out (whitespace, other key
orders, a proxy that reformats) is decoded by msgspec into objects instead: slower, same
result. Every failure is a :class:`MetricsUnavailable` or :class:`QueryRejected` that names
the query's spec field and what to do.
"""

from __future__ import annotations

from dataclasses import dataclass

import msgspec
import numpy as np

from evergreen.analysis.columns import LabelColumn
from evergreen.analysis.series import FloatArray
from evergreen.errors import MetricsUnavailable, QueryRejected
from evergreen.signals import tokens
from evergreen.signals.samples import QueryResult, RangeResult, columns_from_labels


class _Data(msgspec.Struct):
    resultType: str  # noqa: N815 (the API's spelling)
    result: msgspec.Raw


class _Envelope(msgspec.Struct):
    status: str
    data: _Data | None = None
    errorType: str | None = None  # noqa: N815
    error: str | None = None
    warnings: list[str] = []
    infos: list[str] = []


class _VectorItem(msgspec.Struct):
    metric: dict[str, str] = {}
    value: tuple[float, str] | None = None
    #: A native histogram sample, in place of ``value`` (empty when absent).
    histogram: msgspec.Raw = msgspec.Raw(b"")


class _MatrixItem(msgspec.Struct):
    metric: dict[str, str] = {}
    values: list[tuple[float, str]] = []
    #: Native histograms: not read by Evergreen, but named when that is all a series has.
    histograms: list[msgspec.Raw] = []


_ENVELOPE = msgspec.json.Decoder(_Envelope)
_VECTOR = msgspec.json.Decoder(list[_VectorItem])
_MATRIX = msgspec.json.Decoder(list[_MatrixItem])
_SCALAR = msgspec.json.Decoder(tuple[float, str])


@dataclass(frozen=True)
class Asked:
    """What was asked, for error messages: the query, its spec field, and the server."""

    query: str
    field: str
    url: str


def error_detail(body: bytes) -> str:
    """The ``error`` of a Prometheus error body, or its text when it is not one (a proxy page)."""
    try:
        envelope = _ENVELOPE.decode(body)
    except (msgspec.DecodeError, msgspec.ValidationError):
        text = body.decode("utf-8", "replace")
        return " ".join(text.split())[:300] or "(empty body)"
    kind = f"{envelope.errorType}: " if envelope.errorType else ""
    return f"{kind}{envelope.error or '(no error message)'}"


def _envelope(body: bytes, asked: Asked) -> _Data:
    try:
        envelope = _ENVELOPE.decode(body)
    except msgspec.DecodeError as error:
        raise MetricsUnavailable(
            f"Prometheus at {asked.url} sent a body that is not valid JSON for {asked.field} "
            f"({error}; {len(body)} bytes): a proxy between the operator and Prometheus may cut or "
            "rewrite answers; check it, or point spec.prometheus.url at Prometheus itself"
        ) from None
    except msgspec.ValidationError as error:
        raise MetricsUnavailable(
            f"Prometheus at {asked.url} sent an answer for {asked.field} that is not a Prometheus "
            f"API answer ({error}); check that spec.prometheus.url points at a Prometheus-compatible API"
        ) from None
    if envelope.status != "success" or envelope.data is None:
        detail = f"{envelope.errorType or 'error'}: {envelope.error or '(no error message)'}"
        if envelope.errorType == "bad_data":
            raise QueryRejected(asked.field, f"Prometheus rejected the query: {detail}")
        raise MetricsUnavailable(f"Prometheus at {asked.url} could not answer {asked.field}: {detail}")
    if envelope.warnings:
        # A warning says the answer may be incomplete (a store that did not answer) or wrong
        # (a histogram without le): acting on it could act on missing data.
        raise MetricsUnavailable(
            f"Prometheus answered {asked.field} with warnings, so the answer may be partial or wrong: "
            f"{'; '.join(envelope.warnings)[:500]}; fix what the warning names (the query, or a "
            "store behind Prometheus that did not answer)"
        )
    return envelope.data


def decode_instant(body: bytes, asked: Asked) -> QueryResult:
    """An ``/api/v1/query`` body as a columnar answer."""
    canonical = tokens.canonical_vector(body)
    if canonical is not None:
        values = canonical.values()
        if values is not None:
            return QueryResult.from_columns(asked.query, canonical.columns, values)
    data = _envelope(body, asked)
    kind = data.resultType
    if kind == "scalar":
        try:
            _, text = _SCALAR.decode(data.result)
            value = _number(text, asked, "the scalar")
        except msgspec.ValidationError as error:
            raise _malformed(asked, error) from None
        return QueryResult.from_columns(asked.query, {}, np.array([value], dtype=np.float64))
    if kind == "matrix":
        raise QueryRejected(
            asked.field,
            "the query returns a range vector (resultType matrix) where a single value per series "
            "is needed: wrap the [range] selector in a function such as rate(), increase() or "
            "avg_over_time()",
        )
    if kind != "vector":
        raise QueryRejected(
            asked.field,
            f"the query returns a {kind!r} result where an instant vector or a scalar is needed; "
            "write an expression over metrics",
        )
    fast = tokens.vector(bytes(data.result))
    values = fast.values() if fast is not None else None
    if fast is not None and values is not None:
        return QueryResult.from_columns(asked.query, fast.columns, values)
    try:
        items = _VECTOR.decode(data.result)
    except msgspec.ValidationError as error:
        raise _malformed(asked, error) from None
    if any(item.value is None for item in items):
        raise _native_histograms(asked)
    columns = columns_from_labels([item.metric for item in items])
    values = np.array(
        [_number(item.value[1], asked, "a value") for item in items if item.value], dtype=np.float64
    )
    return QueryResult.from_columns(asked.query, columns, values)


def decode_range(body: bytes, asked: Asked, times: FloatArray) -> RangeResult:
    """An ``/api/v1/query_range`` body on the grid ``times`` the query was asked for."""
    data = _envelope(body, asked)
    if data.resultType != "matrix":
        raise MetricsUnavailable(
            f"Prometheus at {asked.url} answered the range query for {asked.field} with a "
            f"{data.resultType!r} result, not a matrix; check that spec.prometheus.url points at a "
            "Prometheus-compatible API"
        )
    fast = tokens.matrix(bytes(data.result))
    if fast is not None:
        values, stamps = fast.values(), fast.stamps()
        if values is not None and stamps is not None and fast.series_of_point is not None:
            return _on_grid(asked, fast.columns, fast.series, fast.series_of_point, stamps, values, times)
    try:
        items = _MATRIX.decode(data.result)
    except msgspec.ValidationError as error:
        raise _malformed(asked, error) from None
    if any(item.histograms for item in items):
        raise _native_histograms(asked)
    columns = columns_from_labels([item.metric for item in items])
    count = len(items)
    series_of_point = np.repeat(np.arange(count), [len(item.values) for item in items])
    stamps = np.array([t for item in items for t, _ in item.values], dtype=np.float64)
    values = np.array([_number(v, asked, "a value") for item in items for _, v in item.values])
    return _on_grid(asked, columns, count, series_of_point, stamps, values, times)


def _on_grid(
    asked: Asked,
    columns: dict[str, LabelColumn],
    count: int,
    series_of_point: np.ndarray,
    stamps: FloatArray,
    values: FloatArray,
    times: FloatArray,
) -> RangeResult:
    step = float(times[1] - times[0]) if times.size > 1 else 1.0
    position = (stamps - times[0]) / step if times.size else stamps
    column = np.rint(position).astype(np.intp) if stamps.size else np.zeros(0, dtype=np.intp)
    off_grid = (column < 0) | (column >= times.size) | (np.abs(position - column) > 1e-3 / step)
    if off_grid.any():
        first = float(stamps[np.argmax(off_grid)])
        raise MetricsUnavailable(
            f"Prometheus at {asked.url} answered the range query for {asked.field} with a point at "
            f"{first:.3f}, off the requested grid; check that spec.prometheus.url points at a "
            "Prometheus-compatible API"
        )
    shape = (count, times.size)
    grid_values = np.full(shape, np.nan)
    present = np.zeros(shape, dtype=bool)
    grid_values[series_of_point, column] = values
    present[series_of_point, column] = True
    labels = tuple(QueryResult.from_columns(asked.query, columns, np.zeros(count)).labels())
    return RangeResult(asked.query, labels, times.copy(), grid_values, present, columns)


def _number(text: str, asked: Asked, what: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise MetricsUnavailable(
            f"Prometheus at {asked.url} answered {asked.field} with {what} {text!r}, which is not a "
            "number; check that spec.prometheus.url points at a Prometheus-compatible API"
        ) from None


def _malformed(asked: Asked, error: msgspec.ValidationError) -> MetricsUnavailable:
    return MetricsUnavailable(
        f"Prometheus at {asked.url} answered {asked.field} in an unexpected shape ({error}); check "
        "that spec.prometheus.url points at a Prometheus-compatible API"
    )


def _native_histograms(asked: Asked) -> QueryRejected:
    return QueryRejected(
        asked.field,
        "the query returns native histograms; Evergreen reads classic _bucket series: query the "
        "classic histogram, or reduce the native one with histogram_count() or histogram_fraction()",
    )
