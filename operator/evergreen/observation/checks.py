"""Data-quality checks and KPIs: is every returned series within its bounds?"""

from __future__ import annotations

import math

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


def _series(values: list[tuple[float, dict[str, str]]], check: BoundedQuery) -> list[CheckSeries]:
    """Every series, breached ones first (worst first), then the closest to a bound."""
    ordered = sorted(values, key=lambda item: (-_violation(item[0], check), _margin(item[0], check)))
    return [
        CheckSeries(labels=labels, value=_reported(value), breached=_violation(value, check) > 0)
        for value, labels in ordered[:MAX_SERIES]
    ]


def check_outcome(check: BoundedQuery, result: QueryResult) -> CheckOutcome:
    """Judge every series of ``result``; report the worst one.

    A NaN value (for example a ratio over zero traffic) is missing data for that series, never
    a number, so ``0/0`` can neither breach nor pass a check. An infinite value (a p99 in the
    +Inf bucket, ``x/0``) is judged like any number; status shows it in the message.
    """
    values = [(s.value, dict(s.labels)) for s in result.samples if not math.isnan(s.value)]
    if not values:
        state = CheckState.NO_DATA
        message = "the query returned no data"
        if isinstance(check, Kpi) and check.on_no_data is NoDataPolicy.BREACH:
            state, message = CheckState.BREACHED, "no data, counted as breached (onNoData: Breach)"
        return CheckOutcome(name=check.name, state=state, min=check.min, max=check.max, message=message)

    breached = [(v, labels) for v, labels in values if _violation(v, check) > 0]
    if breached:
        value, labels = max(breached, key=lambda item: _violation(item[0], check))
        bound = f"min {check.min:g}" if check.min is not None and value < check.min else f"max {check.max:g}"
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
            series=_series(values, check),
        )
    value, labels = min(values, key=lambda item: _margin(item[0], check))
    if not math.isfinite(value):
        return CheckOutcome(
            name=check.name,
            state=CheckState.OK,
            labels=labels,
            min=check.min,
            max=check.max,
            message=f"{value} within bounds",
            series=_series(values, check),
        )
    return CheckOutcome(
        name=check.name,
        state=CheckState.OK,
        value=value,
        labels=labels,
        min=check.min,
        max=check.max,
        series=_series(values, check),
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
