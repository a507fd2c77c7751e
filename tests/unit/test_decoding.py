"""Decoding Prometheus bodies: the array reader agrees with a plain JSON decode, bit for bit.

Bodies are written the way Prometheus writes them (compact JSON, labels in order); the array
reader must also hand any other layout to the general decoder and still give the same answer.
"""

from __future__ import annotations

import json
import math
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from evergreen.analysis.series import FloatArray
from evergreen.errors import MetricsUnavailable, QueryRejected
from evergreen.signals import tokens
from evergreen.signals.decoding import Asked, decode_instant, decode_range, error_detail
from evergreen.signals.samples import QueryResult, grid

ASKED = Asked("q", "spec.drift", "http://prometheus:9090")
SPECIAL = {math.inf: "+Inf", -math.inf: "-Inf"}


def text_of(value: float) -> str:
    """A value as Prometheus writes it."""
    if math.isnan(value):
        return "NaN"
    return SPECIAL.get(value, repr(value))


def body(data: dict[str, Any], *, ascii_only: bool = False, **extra: Any) -> bytes:
    return json.dumps(
        {"status": "success", "data": data, **extra}, separators=(",", ":"), ensure_ascii=ascii_only
    ).encode()


def vector_body(series: list[tuple[dict[str, str], float]], **options: Any) -> bytes:
    result = [{"metric": labels, "value": [1700000000.5, text_of(value)]} for labels, value in series]
    return body({"resultType": "vector", "result": result}, **options)


def grid_of(start: float, step: float, count: int) -> FloatArray:
    return start + step * np.arange(count, dtype=np.float64)


def assert_same(result: QueryResult, series: list[tuple[dict[str, str], float]]) -> None:
    assert result.labels() == [dict(sorted(labels.items())) for labels, _ in series]
    expected = np.array([value for _, value in series], dtype=np.float64)
    assert np.array_equal(result.values, expected, equal_nan=True)
    assert result.values.tobytes() == expected.tobytes() or np.isnan(expected).any()


def histogram(features: int, segments: int, bounds: list[str]) -> list[tuple[dict[str, str], float]]:
    rng = np.random.default_rng(features * 100 + segments)
    return [
        (
            {"feature": f"feature_{f}", "le": le, "segment": f"s{s}"},
            float(rng.random() * 10.0 ** rng.integers(-3, 9)),
        )
        for f in range(features)
        for s in range(segments)
        for le in bounds
    ]


def test_a_histogram_answer_is_read_as_arrays() -> None:
    series = histogram(7, 3, ["0.5", "1", "2.5", "+Inf"])
    raw = vector_body(series)
    assert tokens.vector(raw[raw.index(b"[{") : -2]) is not None  # the array reader took it
    result = decode_instant(raw, ASKED)
    assert_same(result, series)
    assert set(result.columns) == {"feature", "le", "segment"}
    assert len(result.columns["feature"].texts) == 7


def test_nan_and_infinities_are_values() -> None:
    series = [({"k": "a"}, math.nan), ({"k": "b"}, math.inf), ({"k": "c"}, -math.inf), ({"k": "d"}, -0.0)]
    result = decode_instant(vector_body(series), ASKED)
    assert_same(result, series)
    assert math.copysign(1, result.values[3]) == -1


label_text = st.text(alphabet=st.characters(codec="utf-8", exclude_categories=["Cs"]), max_size=12)
label_name = st.sampled_from(["feature", "le", "segment", "a", "metric", "value", "x_1"])
values = st.floats(allow_nan=True, allow_infinity=True) | st.sampled_from(
    [0.0, 1.0, 1e-300, 123456789.123456789]
)


@settings(max_examples=300, deadline=None)
@given(
    st.lists(st.tuples(st.dictionaries(label_name, label_text, max_size=4), values), max_size=30),
    st.booleans(),
)
def test_any_vector_decodes_like_json(series: list[tuple[dict[str, str], float]], ascii_only: bool) -> None:
    assert_same(decode_instant(vector_body(series, ascii_only=ascii_only), ASKED), series)


@settings(max_examples=100, deadline=None)
@given(st.lists(st.sampled_from(["f1", "f22", "a b", "é", "x" * 20, "1", ""]), min_size=1, max_size=40))
def test_uniform_answers_with_repeated_texts(texts: list[str]) -> None:
    series = [({"feature": text, "le": str(i % 3)}, float(i)) for i, text in enumerate(texts)]
    series = [(labels, value) for labels, value in series if labels["feature"]]
    assert_same(decode_instant(vector_body(series), ASKED), series)


@settings(max_examples=200, deadline=None)
@given(
    st.lists(st.tuples(label_text.filter(bool), label_text.filter(bool), values), min_size=1, max_size=40),
    st.booleans(),
)
def test_any_uniform_answer_decodes_like_json(rows: list[tuple[str, str, float]], ascii_only: bool) -> None:
    series = [({"feature": f, "le": str(i % 4), "segment": s}, v) for i, (f, s, v) in enumerate(rows)]
    assert_same(decode_instant(vector_body(series, ascii_only=ascii_only), ASKED), series)


def test_a_raw_control_character_is_not_json() -> None:
    raw = vector_body([({"feature": "a"}, 1.0), ({"feature": "b"}, 2.0)]).replace(b'"b"', b'"\x01"')
    with pytest.raises(MetricsUnavailable, match="not valid JSON"):
        decode_instant(raw, ASKED)


def test_other_layouts_give_the_same_answer() -> None:
    series = histogram(2, 2, ["1", "+Inf"])
    compact = decode_instant(vector_body(series), ASKED)
    result = [{"value": [1.0, text_of(v)], "metric": labels} for labels, v in series]
    spaced = json.dumps({"status": "success", "data": {"resultType": "vector", "result": result}}, indent=2)
    assert decode_instant(spaced.encode(), ASKED).same_answer(compact)


def test_a_scalar_is_one_unlabelled_series() -> None:
    result = decode_instant(body({"resultType": "scalar", "result": [1.5, "+Inf"]}), ASKED)
    assert result.labels() == [{}] and result.values.tolist() == [math.inf]


def test_an_empty_answer_is_empty() -> None:
    assert decode_instant(vector_body([]), ASKED).empty


def matrix_body(series: list[tuple[dict[str, str], list[tuple[float, float]]]]) -> bytes:
    result = [{"metric": labels, "values": [[t, text_of(v)] for t, v in points]} for labels, points in series]
    return body({"resultType": "matrix", "result": result})


@settings(max_examples=150, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.dictionaries(label_name, label_text, max_size=3),
            st.lists(st.tuples(st.integers(0, 9), values), max_size=10, unique_by=lambda p: p[0]),
        ),
        max_size=6,
        unique_by=lambda s: tuple(sorted(s[0].items())),
    )
)
def test_any_matrix_lands_on_its_grid(series: list[tuple[dict[str, str], list[tuple[int, float]]]]) -> None:
    start = 1_700_000_000.0
    times = grid_of(start, 60.0, 10)
    points = [(labels, [(start + 60 * k, v) for k, v in steps]) for labels, steps in series]
    answer = decode_range(matrix_body(points), ASKED, times)
    assert answer.values.shape == (len(series), 10)
    for row, (labels, steps) in enumerate(series):
        assert answer.labels[row] == dict(sorted(labels.items()))
        expected_present = np.zeros(10, dtype=bool)
        expected = np.full(10, np.nan)
        for k, v in steps:
            expected_present[k], expected[k] = True, v
        assert np.array_equal(answer.present[row], expected_present)
        assert np.array_equal(answer.values[row], expected, equal_nan=True)


def test_a_range_answer_is_read_as_arrays() -> None:
    start = 1_700_000_000.0
    series = [({"le": le, "segment": s}, [(start + 300 * k, float(k) + 0.25) for k in range(5)])
              for s in ("a", "b") for le in ("1", "+Inf")]  # fmt: skip
    raw = matrix_body(series)
    assert tokens.matrix(raw[raw.index(b"[{") : -2]) is not None
    answer = decode_range(raw, ASKED, grid_of(start, 300.0, 5))
    assert answer.present.all() and answer.values[0].tolist() == [0.25, 1.25, 2.25, 3.25, 4.25]


def test_the_grid_includes_both_ends() -> None:
    from datetime import UTC, datetime, timedelta

    start = datetime(2026, 1, 1, tzinfo=UTC)
    assert grid(start, start + timedelta(minutes=10), 300).tolist() == [
        start.timestamp() + s for s in (0, 300, 600)
    ]
    assert grid(start, start + timedelta(minutes=9), 300).size == 2


# --- bad answers: a named condition, never a crash ----------------------------------------


GOOD = vector_body(histogram(2, 2, ["1", "+Inf"]))


@pytest.mark.parametrize("cut", [1, 10, len(GOOD) // 2, len(GOOD) - 1])
def test_truncated_json_is_unavailable(cut: int) -> None:
    with pytest.raises(MetricsUnavailable, match=r"not valid JSON for spec\.drift.*truncated"):
        decode_instant(GOOD[:cut], ASKED)


def test_warnings_make_the_answer_unusable() -> None:
    raw = body({"resultType": "vector", "result": []}, warnings=["store eu-1 did not answer"])
    with pytest.raises(MetricsUnavailable, match=r"spec\.drift with warnings.*store eu-1 did not answer"):
        decode_instant(raw, ASKED)


def test_infos_are_not_warnings() -> None:
    raw = body({"resultType": "vector", "result": []}, infos=["metric might not be a counter"])
    assert decode_instant(raw, ASKED).empty


@pytest.mark.parametrize(
    ("kind", "result", "error", "message"),
    [
        ("matrix", [], QueryRejected, "range vector"),
        ("string", [1.0, "x"], QueryRejected, "'string' result"),
        ("streams", [], QueryRejected, "'streams' result"),
    ],
)
def test_unexpected_result_types_are_named(
    kind: str, result: Any, error: type[Exception], message: str
) -> None:
    with pytest.raises(error, match=message):
        decode_instant(body({"resultType": kind, "result": result}), ASKED)


def test_a_vector_for_a_range_query_is_unavailable() -> None:
    with pytest.raises(MetricsUnavailable, match="'vector' result, not a matrix"):
        decode_range(vector_body([]), ASKED, grid_of(0.0, 1.0, 3))


@pytest.mark.parametrize(
    "raw",
    [
        b'{"status":"success","data":{"resultType":"vector","result":[{"metric":{},"value":[1,"abc"]}]}}',
        b'{"status":"success","data":{"resultType":"vector","result":[{"metric":{},"value":[1,"NaX"]}]}}',
        b'{"status":"success","data":{"resultType":"vector","result":[{"metric":{"a":1},"value":[1,"1"]}]}}',
        b'{"status":"success","data":{"resultType":"vector","result":{"a":1}}}',
        b'{"status":"success"}',
        b"[1,2,3]",
        b'{"status":"success","data":{"resultType":"scalar","result":[1,"x"]}}',
    ],
)
def test_malformed_answers_are_unavailable_and_say_what_to_check(raw: bytes) -> None:
    with pytest.raises(MetricsUnavailable, match=r"spec\.drift|spec\.prometheus\.url"):
        decode_instant(raw, ASKED)


def test_a_native_histogram_is_rejected_with_the_fix() -> None:
    raw = body({"resultType": "vector", "result": [{"metric": {}, "histogram": [1, {"count": "2"}]}]})
    with pytest.raises(QueryRejected, match=r"native histograms.*classic _bucket"):
        decode_instant(raw, ASKED)


def test_an_error_answer_is_named_by_its_type() -> None:
    rejected = b'{"status":"error","errorType":"bad_data","error":"parse error at char 5"}'
    with pytest.raises(QueryRejected, match="bad_data: parse error at char 5"):
        decode_instant(rejected, ASKED)
    failed = b'{"status":"error","errorType":"timeout","error":"query timed out"}'
    with pytest.raises(MetricsUnavailable, match=r"could not answer spec\.drift: timeout: query timed out"):
        decode_instant(failed, ASKED)


def test_error_detail_of_json_and_of_other_bodies() -> None:
    assert error_detail(b'{"status":"error","errorType":"bad_data","error":"boom"}') == "bad_data: boom"
    assert (
        error_detail(b"<html>\n<h1>502 Bad Gateway</h1></html>") == "<html> <h1>502 Bad Gateway</h1></html>"
    )
    assert error_detail(b"") == "(empty body)"


def test_a_recorded_answer_replays_as_the_same_arrays(tmp_path: Any) -> None:
    import asyncio
    from datetime import UTC, datetime

    from evergreen.analysis import HistogramSet
    from evergreen.signals.recording import RecordedSource, Recorder, Recording

    series = [*histogram(3, 2, ["0.5", "+Inf"]), ({"feature": "x", "le": "1", "segment": "s0"}, math.nan)]
    live = decode_instant(vector_body(series), ASKED)
    at = datetime(2026, 1, 1, tzinfo=UTC)

    class Live:
        async def instant(self, query: str, when: datetime, *, field: str) -> QueryResult:
            return live

    recorder = Recorder(Live())
    asyncio.run(recorder.instant("q", at, field="spec.drift"))
    path = tmp_path / "answers.json.gz"
    recorder.recording({"spec": {}}).save(path)
    replayed = asyncio.run(RecordedSource(Recording.load(path)).instant("q", at, field="spec.drift"))

    assert replayed.same_answer(live) and replayed.labels() == live.labels()

    def histograms(result: QueryResult) -> HistogramSet:
        return HistogramSet.from_columns(
            result.columns, result.values, feature_label="feature", segment_labels=["segment"]
        ).with_totals()

    first, second = histograms(live), histograms(replayed)
    assert first.keys == second.keys
    assert np.array_equal(first.cumulative, second.cumulative, equal_nan=True)
