"""Data-quality checks and KPIs: bounds, worst series, and no data that is never a number."""

from __future__ import annotations

import math

from evergreen.api.spec import DataQualityCheck, Kpi, NoDataPolicy
from evergreen.api.status import CheckState
from evergreen.observation.checks import check_outcome, counts_for_conditions, series_key
from evergreen.signals.samples import QueryResult, Sample


def result(*values: tuple[dict[str, str], float]) -> QueryResult:
    return QueryResult("q", tuple(Sample(labels, value) for labels, value in values))


NULL_RATE = DataQualityCheck(name="null-rate", query="q", max=0.05)
PRECISION = Kpi(name="precision", query="q", min=0.9)


def test_worst_breaching_series_is_reported() -> None:
    outcome = check_outcome(
        NULL_RATE,
        result(({"feature": "a"}, 0.01), ({"feature": "b"}, 0.3), ({"feature": "c"}, 0.07)),
    )
    assert outcome.state is CheckState.BREACHED
    assert outcome.value == 0.3 and outcome.labels == {"feature": "b"}
    assert outcome.breached_series == 2
    assert "max 0.05" in (outcome.message or "") and "2 of 3" in (outcome.message or "")


def test_within_bounds_reports_the_series_closest_to_its_bound() -> None:
    outcome = check_outcome(PRECISION, result(({"v": "1"}, 0.97), ({"v": "2"}, 0.91)))
    assert outcome.state is CheckState.OK
    assert outcome.value == 0.91


def test_nan_is_missing_data_not_a_value() -> None:
    # 0/0 over zero traffic comes back as NaN: neither a pass nor a breach.
    outcome = check_outcome(PRECISION, result(({}, math.nan)))
    assert outcome.state is CheckState.NO_DATA
    assert outcome.value is None


def test_empty_result_follows_on_no_data() -> None:
    assert check_outcome(PRECISION, result()).state is CheckState.NO_DATA
    breach = Kpi(name="p", query="q", min=0.9, on_no_data=NoDataPolicy.BREACH)
    assert check_outcome(breach, result()).state is CheckState.BREACHED
    ignore = Kpi(name="p", query="q", min=0.9, on_no_data=NoDataPolicy.IGNORE)
    outcome = check_outcome(ignore, result())
    assert outcome.state is CheckState.NO_DATA
    assert not counts_for_conditions(ignore, outcome)
    assert counts_for_conditions(PRECISION, check_outcome(PRECISION, result()))


def test_both_bounds() -> None:
    band = DataQualityCheck(name="mean", query="q", min=10, max=20)
    assert check_outcome(band, result(({}, 9.0))).state is CheckState.BREACHED
    assert check_outcome(band, result(({}, 21.0))).state is CheckState.BREACHED
    assert check_outcome(band, result(({}, 15.0))).state is CheckState.OK
    assert check_outcome(band, result(({}, 10.0))).state is CheckState.OK


def test_a_thin_series_is_judged_with_widened_bounds() -> None:
    check = DataQualityCheck.model_validate(
        {"name": "null-rate", "query": "q", "max": 0.05, "samplesQuery": "n", "minSamples": 400}
    )
    thin = {"feature": "age", "segment": "tv"}
    thick = {"feature": "age", "segment": "web"}
    result = QueryResult("q", (Sample(thin, 0.08), Sample(thick, 0.06)))
    counts = {series_key(thin): 25.0, series_key(thick): 10_000.0}
    outcome = check_outcome(check, result, counts)
    # 25 of 400 samples: the bound is 0.05 x 4 = 0.2 for tv; web breaches at 0.05.
    assert outcome.state is CheckState.BREACHED
    assert [(s.labels["segment"], s.breached, s.samples) for s in outcome.series] == [
        ("web", True, 10_000.0),
        ("tv", False, 25.0),
    ]
    alone = check_outcome(check, QueryResult("q", (Sample(thin, 0.08),)), counts)
    assert alone.state is CheckState.OK
    very = check_outcome(check, QueryResult("q", (Sample(thin, 0.3),)), counts)
    assert very.state is CheckState.BREACHED and "widened: few samples" in (very.message or "")
