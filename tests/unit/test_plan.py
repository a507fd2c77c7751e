"""The queries of one evaluation: windows, variables, and baselines re-anchored after a promotion."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from evergreen.api.resource import parse_spec
from evergreen.errors import SpecError
from evergreen.observation.plan import Window, plan

AT = datetime(2026, 2, 1, 12, tzinfo=UTC)
SPEC = parse_spec(
    {
        "model": "fraud",
        "currentVersion": "v12",
        "drift": {"histogram": "h", "window": "1h", "baseline": {"offset": "7d", "window": "1d"}},
        "kpis": [{"name": "p", "query": 'up{m="{{model}}",v="{{version}}",w="{{window}}"}', "min": 1}],
    }
)


def baseline(anchor: datetime | None) -> str:
    queries = {q.window: q.promql for q in plan(SPEC, "ml", at=AT, baseline_anchor=anchor).drift}
    return queries[Window.BASELINE]


def test_three_windows_per_family_whatever_the_features() -> None:
    queries = {q.window: q.promql for q in plan(SPEC, "ml", at=AT).drift}
    assert queries[Window.CURRENT] == 'sum by (feature, le) (increase(h_bucket{model="fraud"}[1h]))'
    assert (
        queries[Window.PREVIOUS] == 'sum by (feature, le) (increase(h_bucket{model="fraud"}[1h] offset 1h))'
    )
    assert (
        queries[Window.BASELINE] == 'sum by (feature, le) (increase(h_bucket{model="fraud"}[1d] offset 7d))'
    )


def test_version_and_window_variables() -> None:
    assert plan(SPEC, "ml").kpis[0].promql == 'up{m="fraud",v="v12",w="1h"}'
    assert plan(SPEC, "ml", version="v13").kpis[0].promql == 'up{m="fraud",v="v13",w="1h"}'
    unversioned = parse_spec(
        {"model": "m", "kpis": [{"name": "p", "query": "up{v='{{version}}'}", "min": 1}]}
    )
    with pytest.raises(SpecError, match="version"):
        plan(unversioned, "ml")


def test_an_old_anchor_changes_nothing() -> None:
    assert baseline(AT - timedelta(days=30)) == baseline(None)


def test_after_a_promotion_the_baseline_starts_at_it() -> None:
    # Promoted 2 days ago: last week's day would be the old version's; the baseline is the
    # promotion's first day instead, measured back from now.
    assert baseline(AT - timedelta(days=2)).endswith("[86400s] offset 86400s))")
    # Promoted 3 hours ago: everything since the promotion.
    assert baseline(AT - timedelta(hours=3)).endswith("[10800s]))")


def frozen(until: datetime, anchor: datetime | None = None) -> str:
    queries = plan(SPEC, "ml", at=AT, baseline_anchor=anchor, baseline_until=until).drift
    return {q.window: q.promql for q in queries}[Window.BASELINE]


def test_an_incident_after_the_baseline_changes_nothing() -> None:
    assert frozen(AT - timedelta(days=2)) == baseline(None)


def test_an_open_incident_keeps_the_baseline_before_it() -> None:
    # The incident began 8 days ago: last week's day would hold broken data; the baseline
    # stays the day that ended when the incident began.
    assert frozen(AT - timedelta(days=8)).endswith("[86400s] offset 691200s))")


def test_a_frozen_baseline_does_not_reach_before_its_anchor() -> None:
    # Promoted 9 days ago, incident 8 days ago: the day between them, nothing older.
    assert frozen(AT - timedelta(days=8), anchor=AT - timedelta(days=8, hours=6)).endswith(
        "[21600s] offset 691200s))"
    )
