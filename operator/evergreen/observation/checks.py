"""Data-quality checks and KPIs: is every returned series within its bounds?"""

from __future__ import annotations

import math
from collections.abc import Mapping

from evergreen.api.spec import BoundedQuery, Kpi, NoDataPolicy
from evergreen.api.status import CheckOutcome, CheckSeries, CheckState
from evergreen.signals.samples import QueryResult


def _violation(value: float, check: BoundedQuery) -> float:
    """How far outside the bounds a value lies (0 inside; larger is worse)."""
    below = check.min - value if check.min is not None else -math.inf
    above = value - check.max if check.max is not None else -math.inf
    return max(below, above, 0.0)


def _margin(value: float, check: BoundedQuery) -> float:
    """Distance to the nearest bound from inside (smaller is closer to breaching)."""
    distances = []
    if check.min is not None:
        distances.append(value - check.min)
    if check.max is not None:
        distances.append(check.max - value)
    return min(distances)


def _reported(value: float) -> float | None:
    """The value as status can hold it: JSON has no infinity (the message says it instead)."""
    return value if math.isfinite(value) else None


#: Series kept per outcome (the worst first): enough for attribution and hysteresis.
MAX_SERIES = 20

#: Labels of one series, as a key that matches another query's series with the same labels.
SeriesLabels = frozenset[tuple[str, str]]


def series_key(labels: Mapping[str, str]) -> SeriesLabels:
    return frozenset((k, v) for k, v in labels.items() if k != "__name__")


def widened(check: BoundedQuery, samples: float | None) -> BoundedQuery:
    """The check's bounds for a series resting on ``samples`` observations.

    Below ``minSamples`` the bounds move away from the acceptable range by a factor of
    ``sqrt(minSamples / n)`` (a max grows, a min shrinks), the tolerance drift gets: noise in
    a rate over ``n`` observations shrinks like ``1 / sqrt(n)``. Without a count, as declared.
    """
    if samples is None or samples >= check.min_samples:
        return check
    factor = math.sqrt(check.min_samples / max(samples, 1.0))
    update: dict[str, float | None] = {}
    if check.max is not None:
        update["max"] = check.max * factor if check.max > 0 else check.max / factor
    if check.min is not None:
        update["min"] = check.min / factor if check.min > 0 else check.min * factor
    return check.model_copy(update=update)


#: A series resting on fewer observations says nothing (a precision over one label is 0 or 1):
#: it is not judged at all.
MIN_OBSERVATIONS = 10

_Value = tuple[float, dict[str, str], BoundedQuery, float | None]


def _series(values: list[_Value]) -> list[CheckSeries]:
    """Every series, breached ones first (worst first), then the closest to a bound."""
    ordered = sorted(values, key=lambda item: (-_violation(item[0], item[2]), _margin(item[0], item[2])))
    return [
        CheckSeries(
            labels=labels, value=_reported(value), breached=_violation(value, bounds) > 0, samples=samples
        )
        for value, labels, bounds, samples in ordered[:MAX_SERIES]
    ]


def check_outcome(
    check: BoundedQuery, result: QueryResult, samples: Mapping[SeriesLabels, float] | None = None
) -> CheckOutcome:
    """Judge every series of ``result``; report the worst one.

    A NaN value (for example a ratio over zero traffic) is missing data for that series, never
    a number, so ``0/0`` can neither breach nor pass a check. An infinite value (a p99 in the
    +Inf bucket, ``x/0``) is judged like any number; status shows it in the message.
    ``samples`` (from ``samplesQuery``) widens the bounds of thin series (:func:`widened`).
    """
    counts = samples or {}
    judged: list[_Value] = []
    for sample in result.samples:
        if math.isnan(sample.value):
            continue
        n = counts.get(series_key(sample.labels), 0.0) if samples is not None else None
        if n is not None and n < MIN_OBSERVATIONS:
            continue
        judged.append((sample.value, dict(sample.labels), widened(check, n), n))
    values = [(value, labels) for value, labels, _, _ in judged]
    if not values:
        state = CheckState.NO_DATA
        message = "the query returned no data"
        if isinstance(check, Kpi) and check.on_no_data is NoDataPolicy.BREACH:
            state, message = CheckState.BREACHED, "no data, counted as breached (onNoData: Breach)"
        return CheckOutcome(name=check.name, state=state, min=check.min, max=check.max, message=message)

    breached = [(v, labels, bounds) for v, labels, bounds, _ in judged if _violation(v, bounds) > 0]
    if breached:
        value, labels, bounds = max(breached, key=lambda item: _violation(item[0], item[2]))
        if bounds.min is not None and value < bounds.min:
            bound = f"min {bounds.min:g}"
        else:
            bound = f"max {bounds.max:g}"
        if bounds is not check:
            bound += " (widened: few samples)"
        message = f"{value:.6g} is outside {bound}"
        if len(values) > 1:
            message += f" ({len(breached)} of {len(values)} series breached)"
        return CheckOutcome(
            name=check.name,
            state=CheckState.BREACHED,
            value=_reported(value),
            labels=labels,
            min=check.min,
            max=check.max,
            breached_series=len(breached),
            message=message,
            series=_series(judged),
        )
    value, labels, _, _ = min(judged, key=lambda item: _margin(item[0], item[2]))
    if not math.isfinite(value):
        return CheckOutcome(
            name=check.name,
            state=CheckState.OK,
            labels=labels,
            min=check.min,
            max=check.max,
            message=f"{value} within bounds",
            series=_series(judged),
        )
    return CheckOutcome(
        name=check.name,
        state=CheckState.OK,
        value=value,
        labels=labels,
        min=check.min,
        max=check.max,
        series=_series(judged),
    )


def errored_outcome(check: BoundedQuery, message: str) -> CheckOutcome:
    """A check whose query could not be evaluated (rejected or unreachable)."""
    return CheckOutcome(
        name=check.name, state=CheckState.ERROR, min=check.min, max=check.max, message=message
    )


def counts_for_conditions(check: BoundedQuery, outcome: CheckOutcome) -> bool:
    """Whether an outcome takes part in conditions (an ignored KPI without data does not)."""
    return not (
        isinstance(check, Kpi)
        and check.on_no_data is NoDataPolicy.IGNORE
        and outcome.state is CheckState.NO_DATA
    )
