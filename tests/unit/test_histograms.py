"""Parsing Prometheus bucket samples and aligning two windows (evergreen.analysis)."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from evergreen.analysis import (
    DriftMethod,
    HistogramSet,
    SeriesKey,
    align,
    drift_scores,
    parsing,
    samples_from_vector,
)
from evergreen.analysis.parsing import Sample
from evergreen.errors import AnalysisError

pytestmark = pytest.mark.filterwarnings("error")

INF = math.inf
Series = Mapping[tuple[str, str | None], Sequence[tuple[str, float | str]]]


def family(series: Series) -> list[Sample]:
    """Samples of ``{(feature, segment or None): [(le, cumulative count), ...]}``."""
    samples: list[Sample] = []
    for (feature, segment), buckets in series.items():
        for le, value in buckets:
            labels = {"feature": feature, "le": le}
            if segment is not None:
                labels["segment"] = segment
            samples.append((labels, value))
    return samples


def parse(samples: list[Sample]) -> HistogramSet:
    return HistogramSet.from_samples(samples, feature_label="feature", segment_labels=["segment"])


def key(feature: str, segment: str | None = None) -> SeriesKey:
    return SeriesKey(feature, () if segment is None else (("segment", segment),))


def row(histograms: HistogramSet, series: SeriesKey) -> list[float]:
    values: list[float] = histograms.cumulative[histograms.keys.index(series)].tolist()
    return values


# --- SeriesKey ---------------------------------------------------------------------------


def test_series_key_renders_segment_and_population() -> None:
    segmented = SeriesKey("amount", (("browser", "firefox"), ("country", "de")))
    assert segmented.segment_text == "browser=firefox,country=de"
    assert str(segmented) == "amount:browser=firefox,country=de"
    assert SeriesKey("amount").segment_text == "*"
    assert SeriesKey("amount").is_population and not segmented.is_population


def test_series_keys_hash_and_order_population_first() -> None:
    keys = [key("b", "x"), key("a", "y"), key("b"), key("a", "x")]
    assert sorted(keys) == [key("a", "x"), key("a", "y"), key("b"), key("b", "x")]
    assert len({key("a", "x"), key("a", "x")}) == 1


def test_segment_pairs_are_sorted_by_label_name() -> None:
    samples: list[Sample] = [({"feature": "f", "le": "+Inf", "b": "2", "a": "1"}, 3)]
    parsed = HistogramSet.from_samples(samples, feature_label="feature", segment_labels=["b", "a"])
    assert parsed.keys == (SeriesKey("f", (("a", "1"), ("b", "2"))),)


# --- from_samples ------------------------------------------------------------------------


def test_groups_by_feature_and_segment_with_numeric_bound_order() -> None:
    parsed = parse(
        family(
            {
                ("age", "de"): [("+Inf", "10"), ("10", "4"), ("2.5", "1")],
                ("age", "fr"): [("2.5", 2.0), ("10", 3.0), ("+Inf", 5.0)],
            }
        )
    )
    assert parsed.keys == (key("age", "de"), key("age", "fr"))
    assert parsed.upper_bounds.tolist() == [2.5, 10, INF]
    assert parsed.cumulative.tolist() == [[1, 4, 10], [2, 3, 5]]


@pytest.mark.parametrize("texts", [("1", "1.0", "1e+00"), ("+Inf", "inf", "+inf")])
def test_le_spellings_of_one_number_are_one_bound_and_their_counts_add(
    texts: tuple[str, str, str],
) -> None:
    # Three client libraries spell the bound differently; sum by (le) keeps them apart.
    samples = family({("x", "s"): [(text, 1.5) for text in texts]})
    parsed = parse(samples)
    bound = float(texts[0])
    column = parsed.upper_bounds.tolist().index(bound)
    assert parsed.cumulative[0, column] == pytest.approx(4.5)


def test_bounds_end_with_inf_even_without_an_inf_sample() -> None:
    parsed = parse(family({("x", "s"): [("1", 3), ("2", 5)]}))
    assert parsed.upper_bounds.tolist() == [1, 2, INF]
    assert math.isnan(parsed.cumulative[0, 2])


def test_nan_and_infinite_values_are_unknown_counts() -> None:
    parsed = parse(family({("x", "s"): [("1", "NaN"), ("2", "+Inf"), ("+Inf", "7")]}))
    assert np.isnan(parsed.cumulative[0, :2]).all()
    assert parsed.cumulative[0, 2] == 7


def test_samples_without_le_or_feature_are_dropped_and_counted() -> None:
    samples: list[Sample] = [
        ({"feature": "x", "segment": "s", "le": "+Inf"}, 5),
        ({"feature": "x", "segment": "s"}, 5),
        ({"feature": "x"}, 1),
        ({"segment": "s", "le": "+Inf"}, 9),
    ]
    parsed = parse(samples)
    assert parsed.keys == (key("x", "s"),)
    assert parsed.samples_without_bound == 2
    assert parsed.samples_without_feature == 1


def test_a_missing_segment_label_is_the_empty_value() -> None:
    samples = family({("x", None): [("+Inf", 4)], ("x", "s"): [("+Inf", 2)]})
    assert parse(samples).keys == (key("x", ""), key("x", "s"))


def test_family_without_feature_label_uses_default_feature() -> None:
    samples: list[Sample] = [({"le": "0.5"}, 3), ({"le": "+Inf"}, 4)]
    parsed = HistogramSet.from_samples(samples, feature_label=None, default_feature="score")
    assert parsed.keys == (SeriesKey("score"),)
    assert parsed.cumulative.tolist() == [[3, 4]]


def test_unlisted_labels_are_summed_away() -> None:
    samples: list[Sample] = [
        ({"feature": "x", "le": "+Inf", "pod": "a"}, 1),
        ({"feature": "x", "le": "+Inf", "pod": "b"}, 2),
    ]
    parsed = HistogramSet.from_samples(samples, feature_label="feature")
    assert parsed.keys == (SeriesKey("x"),)
    assert parsed.cumulative.tolist() == [[3]]


def test_empty_result_is_an_empty_set() -> None:
    parsed = parse([])
    assert len(parsed) == 0 and parsed.cumulative.shape == (0, 1)
    assert parse([({"feature": "x"}, 1)]).samples_without_bound == 1


@pytest.mark.parametrize("le", ["one", "NaN", "-Inf", ""])
def test_unusable_le_raises_naming_it(le: str) -> None:
    with pytest.raises(AnalysisError, match=f"le='{le}'"):
        parse(family({("x", "s"): [(le, 1)]}))


def test_unparsable_value_raises_naming_it() -> None:
    with pytest.raises(AnalysisError, match=r"'lots' of .*'segment': 's'"):
        parse(family({("x", "s"): [("+Inf", "lots")]}))


@pytest.mark.parametrize(
    ("feature_label", "segments"), [("feature", ["le"]), ("seg", ["seg"]), (None, ["a", "a"])]
)
def test_contradictory_label_roles_raise(feature_label: str | None, segments: list[str]) -> None:
    with pytest.raises(AnalysisError):
        HistogramSet.from_samples([], feature_label=feature_label, segment_labels=segments)


def test_samples_from_prometheus_vector() -> None:
    result = [{"metric": {"feature": "x", "le": "+Inf"}, "value": [1700000000.0, "2.5"]}]
    assert samples_from_vector(result) == [({"feature": "x", "le": "+Inf"}, "2.5")]


def test_histogram_set_is_read_only() -> None:
    parsed = parse(family({("x", "s"): [("+Inf", 1)]}))
    with pytest.raises(ValueError, match="read-only"):
        parsed.cumulative[0, 0] = 2


# --- with_totals -------------------------------------------------------------------------


def test_totals_sum_the_segments_of_each_feature() -> None:
    parsed = parse(
        family(
            {
                ("a", "s1"): [("1", 1), ("+Inf", 2)],
                ("a", "s2"): [("1", 3), ("+Inf", 5)],
                ("b", "s1"): [("10", 4), ("+Inf", 4)],
            }
        )
    ).with_totals()
    assert parsed.keys == (key("a"), key("a", "s1"), key("a", "s2"), key("b"), key("b", "s1"))
    assert row(parsed, key("a")) == pytest.approx([4, math.nan, 7], nan_ok=True)
    assert row(parsed, key("b")) == pytest.approx([math.nan, 4, 4], nan_ok=True)


def test_a_bound_unknown_in_one_segment_is_unknown_in_the_total() -> None:
    parsed = parse(
        family({("a", "s1"): [("1", 1), ("+Inf", 2)], ("a", "s2"): [("1", "NaN"), ("+Inf", 5)]})
    ).with_totals()
    assert row(parsed, key("a")) == pytest.approx([math.nan, 7], nan_ok=True)


def test_totals_are_not_added_twice() -> None:
    unsegmented = HistogramSet.from_samples(family({("a", None): [("+Inf", 1)]}), feature_label="feature")
    assert unsegmented.with_totals() is unsegmented
    totalled = parse(family({("a", "s"): [("+Inf", 1)]})).with_totals()
    assert totalled.with_totals() is totalled


# --- align -------------------------------------------------------------------------------


def test_align_differences_cumulative_counts_into_bins() -> None:
    window = parse(family({("x", "s"): [("1", 2), ("2", 5), ("+Inf", 6)]}))
    aligned = align(window, window)
    assert aligned.baseline.tolist() == [[2, 3, 1]]
    assert aligned.current.tolist() == [[2, 3, 1]]
    assert aligned.baseline_total.tolist() == [6]
    assert aligned.bins.tolist() == [3]


def test_non_monotonic_cumulative_counts_are_repaired_by_a_running_maximum() -> None:
    # increase() extrapolates each bucket separately: 10.2 then 10.0 is one bucket's noise.
    window = parse(family({("x", "s"): [("1", 10.2), ("2", 10.0), ("+Inf", 15)]}))
    aligned = align(window, window)
    assert aligned.baseline[0].tolist() == pytest.approx([10.2, 0, 4.8])
    assert (aligned.baseline >= 0).all()


def test_negative_counts_from_counter_resets_are_clipped() -> None:
    window = parse(family({("x", "s"): [("1", -3), ("2", 4), ("+Inf", 4)]}))
    aligned = align(window, window)
    assert aligned.baseline[0].tolist() == [0, 4, 0]
    assert aligned.baseline_total.tolist() == [4]


def test_a_bucket_in_one_window_only_is_merged_with_the_next() -> None:
    with_extra = parse(family({("x", "s"): [("1", 2), ("2", 5), ("3", 9), ("+Inf", 10)]}))
    without = parse(family({("x", "s"): [("1", 2), ("3", 9), ("+Inf", 10)]}))
    current = parse(family({("x", "s"): [("1", 4), ("3", 6), ("+Inf", 10)]}))

    aligned = align(with_extra, current)
    assert aligned.upper_bounds.tolist() == [1, 2, 3, INF]
    assert aligned.known_bounds.tolist() == [[True, False, True, True]]
    # Bound 2 is unknown to the current window: (1, 2] and (2, 3] become one bin (1, 3].
    assert aligned.baseline.tolist() == [[2, 0, 7, 1]]
    assert aligned.current.tolist() == [[4, 0, 2, 4]]

    merged = align(without, current)
    for method in DriftMethod:
        assert drift_scores(method, aligned).score == pytest.approx(drift_scores(method, merged).score), (
            method
        )
    assert drift_scores("psi", aligned).p_value == pytest.approx(drift_scores("psi", merged).p_value)


def test_a_nan_bucket_is_merged_like_a_missing_one() -> None:
    baseline = parse(family({("x", "s"): [("1", 2), ("2", 5), ("+Inf", 10)]}))
    with_nan = parse(family({("x", "s"): [("1", 4), ("2", "NaN"), ("+Inf", 10)]}))
    without = parse(family({("x", "s"): [("1", 4), ("+Inf", 10)]}))
    assert align(baseline, with_nan).current.tolist() == align(baseline, without).current.tolist()
    assert align(baseline, with_nan).baseline.tolist() == [[2, 0, 8]]


def test_a_series_in_one_window_only_has_no_data() -> None:
    baseline = parse(family({("x", "gone"): [("1", 2), ("+Inf", 4)], ("x", "s"): [("+Inf", 1)]}))
    current = parse(family({("x", "new"): [("1", 1), ("+Inf", 3)], ("x", "s"): [("+Inf", 1)]}))
    aligned = align(baseline, current)
    assert aligned.keys == (key("x", "gone"), key("x", "new"), key("x", "s"))
    assert aligned.baseline_total.tolist() == [4, 0, 1]
    assert aligned.current_total.tolist() == [0, 3, 1]
    scores = drift_scores(DriftMethod.PSI, aligned)
    assert np.isnan(scores.score[:2]).all()
    assert np.isnan(scores.p_value[:2]).all()
    assert scores.effective_samples[:2].tolist() == [0, 0]


def test_features_with_different_layouts_share_one_array() -> None:
    layout_a: Series = {("a", "s"): [("1", 1), ("2", 4), ("+Inf", 6)]}
    layout_b: Series = {("b", "s"): [("100", 3), ("1000", 5), ("+Inf", 9)]}
    layout_b_now: Series = {("b", "s"): [("100", 1), ("1000", 8), ("+Inf", 9)]}
    layout_a_now: Series = {("a", "s"): [("1", 3), ("2", 3), ("+Inf", 6)]}

    together = align(parse(family({**layout_a, **layout_b})), parse(family({**layout_a_now, **layout_b_now})))
    assert together.upper_bounds.tolist() == [1, 2, 100, 1000, INF]
    alone = {
        "a": align(parse(family(layout_a)), parse(family(layout_a_now))),
        "b": align(parse(family(layout_b)), parse(family(layout_b_now))),
    }
    for method in DriftMethod:
        joint = drift_scores(method, together).score
        for position, feature in enumerate("ab"):
            assert joint[position] == pytest.approx(drift_scores(method, alone[feature]).score[0]), (
                method,
                feature,
            )


def test_align_of_empty_windows_is_empty() -> None:
    aligned = align(HistogramSet.empty(), HistogramSet.empty())
    assert len(aligned) == 0 and aligned.baseline.shape == (0, 1)
    assert len(drift_scores("ks", aligned)) == 0


@st.composite
def cumulative_rows(draw: st.DrawFn) -> tuple[list[float], list[float], int]:
    bins = draw(st.integers(2, 8))
    counts = st.lists(st.floats(0, 1e4), min_size=bins, max_size=bins)
    baseline, current = np.cumsum(draw(counts)).tolist(), np.cumsum(draw(counts)).tolist()
    dropped = draw(st.integers(0, bins - 2))
    return baseline, current, dropped


@settings(max_examples=60, deadline=None)
@given(cumulative_rows())
def test_dropping_a_bound_from_one_window_equals_dropping_it_from_both(
    rows: tuple[list[float], list[float], int],
) -> None:
    baseline, current, dropped = rows
    les = [str(i) for i in range(len(baseline) - 1)] + ["+Inf"]

    def window(values: list[float], skip: int | None) -> HistogramSet:
        buckets = [(le, v) for i, (le, v) in enumerate(zip(les, values, strict=True)) if i != skip]
        return parse(family({("x", "s"): buckets}))

    one_sided = align(window(baseline, None), window(current, dropped))
    both = align(window(baseline, dropped), window(current, dropped))
    for method in DriftMethod:
        # Equal up to rounding: the two alignments sum the same counts in a different order, and
        # Jensen-Shannon's square root magnifies that near zero (1e-9 divergence -> 3e-5 distance).
        assert drift_scores(method, one_sided).score == pytest.approx(
            drift_scores(method, both).score, nan_ok=True, rel=1e-6, abs=1e-9
        ), method


def test_many_segment_labels_with_a_huge_label_space() -> None:
    # 20 labels x 9 values each: more combinations than an int64 code can hold.
    names = [f"l{i:02d}" for i in range(20)]
    samples: list[Sample] = [
        ({"feature": "x", "le": "+Inf", **{name: str(row) for name in names}}, row) for row in range(9)
    ]
    parsed = HistogramSet.from_samples(samples, feature_label="feature", segment_labels=names)
    assert len(parsed) == 9
    assert parsed.keys[3] == SeriesKey("x", tuple((name, "3") for name in names))
    assert parsed.cumulative[:, 0].tolist() == list(range(9))


# --- parsing edge cases and a plain reference ---------------------------------------------


def test_more_than_256_distinct_label_values() -> None:
    samples: list[Sample] = [({"feature": f"f{i:03d}", "le": "+Inf"}, i) for i in range(300)]
    parsed = HistogramSet.from_samples(list(reversed(samples)), feature_label="feature")
    assert parsed.keys == tuple(SeriesKey(f"f{i:03d}") for i in range(300))
    assert parsed.cumulative[:, 0].tolist() == list(range(300))


def test_more_distinct_texts_than_character_codes(monkeypatch: pytest.MonkeyPatch) -> None:
    samples = family({(f, s): [("1", 1), ("+Inf", 2)] for f in "abc" for s in ("x", "y", None)})
    expected = parse(samples)
    monkeypatch.setattr(parsing, "CHARACTER_CODES", 2)
    fallback = parse(samples)
    assert fallback.keys == expected.keys
    assert np.array_equal(fallback.cumulative, expected.cumulative)


def test_a_sparse_label_space_keeps_keys_sorted() -> None:
    # 40 features x 40 segments could combine into 1,600 series; only 40 exist.
    names = [f"n{i:02d}" for i in range(40)]
    samples = family({(name, name[::-1]): [("+Inf", i)] for i, name in enumerate(reversed(names))})
    parsed = parse(samples)
    assert parsed.keys == tuple(sorted(key(name, name[::-1]) for name in names))
    assert parsed.cumulative[:, 0].tolist() == list(reversed(range(40)))


def test_with_totals_sorts_a_set_built_out_of_order() -> None:
    unsorted = HistogramSet(
        keys=(key("b", "s"), key("a", "t"), key("a", "s")),
        upper_bounds=np.array([1.0, INF]),
        cumulative=np.array([[1.0, 2.0], [3.0, 4.0], [5.0, 6.0]]),
    )
    totalled = unsorted.with_totals()
    assert totalled.keys == (key("a"), key("a", "s"), key("a", "t"), key("b"), key("b", "s"))
    assert totalled.cumulative.tolist() == [[8, 10], [5, 6], [3, 4], [1, 2], [1, 2]]


labels_of = st.fixed_dictionaries(
    {"le": st.sampled_from(["1", "1.0", "2.5", "+Inf"])},
    optional={
        "feature": st.sampled_from(["a", "b", ""]),
        "segment": st.sampled_from(["x", "y", ""]),
        "pod": st.sampled_from(["p", "q"]),
    },
)
values_of = st.one_of(st.floats(0, 1e6), st.just(math.nan), st.just(INF))


def reference_parse(samples: list[Sample]) -> dict[tuple[SeriesKey, float], float]:
    """Counts per (key, bound), summed one sample after the other; NaN for unknown."""
    cells: dict[tuple[SeriesKey, float], float] = {}
    for labels, value in samples:
        if "feature" not in labels or "le" not in labels:
            continue
        count = float(value) if math.isfinite(float(value)) else math.nan
        cell = (key(labels["feature"], labels.get("segment", "")), float(labels["le"]))
        cells[cell] = cells.get(cell, 0.0) + count
    return cells


@settings(max_examples=150, deadline=None)
@given(st.lists(st.tuples(labels_of, values_of), max_size=40))
def test_parsing_matches_a_plain_reference_exactly(samples: list[Sample]) -> None:
    parsed = parse(samples)
    expected = reference_parse(samples)
    assert list(parsed.keys) == sorted({series for series, _ in expected})
    assert parsed.samples_without_bound == 0
    assert parsed.samples_without_feature == sum("feature" not in labels for labels, _ in samples)
    bounds = parsed.upper_bounds.tolist()
    assert bounds == sorted({bound for _, bound in expected} | {INF})
    for row, series in enumerate(parsed.keys):
        for column, bound in enumerate(bounds):
            value = parsed.cumulative[row, column]
            want = expected.get((series, bound), math.nan)
            assert value == want or (math.isnan(value) and math.isnan(want))


def plain_align(baseline: HistogramSet, current: HistogramSet) -> tuple[np.ndarray, np.ndarray]:
    """align()'s per-bin counts by the plain formulas, for windows on the same keys and bounds."""
    known = ~np.isnan(baseline.cumulative) & ~np.isnan(current.cumulative)
    counts = []
    for window in (baseline, current):
        floored = np.where(known, np.maximum(window.cumulative, 0.0), 0.0)
        counts.append(np.diff(np.maximum.accumulate(floored, axis=1), axis=1, prepend=0.0))
    return counts[0], counts[1]


@settings(max_examples=60, deadline=None)
@given(hnp.arrays(np.float64, (2, 5, 6), elements=st.one_of(st.floats(-10, 1e6), st.just(math.nan))))
def test_align_equals_the_plain_formulas_bit_for_bit(cumulative: np.ndarray) -> None:
    keys = tuple(key(f"f{row}", "s") for row in range(5))
    bounds = np.array([0.5, 1, 2, 4, 8, INF])
    windows = [HistogramSet(keys=keys, upper_bounds=bounds, cumulative=part) for part in cumulative]
    aligned = align(*windows)
    baseline, current = plain_align(*windows)
    assert np.array_equal(aligned.baseline, baseline) and np.array_equal(aligned.current, current)
    assert np.array_equal(aligned.known_bounds, ~np.isnan(cumulative).any(axis=0))
