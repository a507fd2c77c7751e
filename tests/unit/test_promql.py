"""PromQL construction: escaping and templates can never change the shape of a query."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from evergreen.errors import SpecError
from evergreen.signals.promql import escape_string, histogram_increase, render_template, selector


def test_histogram_query_groups_every_feature_and_segment_in_one_query() -> None:
    query = histogram_increase(
        "model_feature_value", matchers={"model": "fraud"}, group_by=["feature", "segment"], window="1h"
    )
    assert query == (
        'sum by (feature, segment, le) (increase(model_feature_value_bucket{model="fraud"}[1h]))'
    )


def test_baseline_query_uses_offset_and_sorted_matchers() -> None:
    query = histogram_increase(
        "h", matchers={"model": "m", "env": "prod"}, group_by=["feature"], window="7d", offset="7d"
    )
    assert query == 'sum by (feature, le) (increase(h_bucket{env="prod",model="m"}[7d] offset 7d))'


def test_templates_escape_values() -> None:
    rendered = render_template('up{model="{{ model }}"}', {"model": 'a"b\\c'}, field="spec.kpis[0].query")
    assert rendered == 'up{model="a\\"b\\\\c"}'


def test_unknown_template_variable_names_the_field() -> None:
    with pytest.raises(SpecError) as caught:
        render_template("up{x='{{modle}}'}", {"model": "m"}, field="spec.kpis[2].query")
    assert caught.value.field == "spec.kpis[2].query"
    assert "{{modle}}" in caught.value.message and "{{model}}" in caught.value.message


@pytest.mark.parametrize("name", ["bad-name", "1x", "a b", ""])
def test_names_are_checked(name: str) -> None:
    with pytest.raises(ValueError):
        selector(name, {})
    with pytest.raises(ValueError):
        selector("ok", {name: "v"})


@given(st.text())
def test_escaped_values_stay_inside_their_quotes(value: str) -> None:
    escaped = escape_string(value)
    # Every quote is escaped: an odd number of backslashes precedes it.
    for index, char in enumerate(escaped):
        if char == '"':
            run = len(escaped[:index]) - len(escaped[:index].rstrip("\\"))
            assert run % 2 == 1
    assert "\n" not in escaped
