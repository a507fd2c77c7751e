"""Guardrails: whether a retraining run may start now, and if not, why and until when.

Retraining costs money and can birth a bad model, so it is rationed like production deploys:

- **give up**: after ``giveUpAfter`` consecutive rejected or failed runs, automatic retraining
  stops until a person acts (a manual request with a new id);
- **concurrency**: at most ``maxConcurrent`` runs at once (a manual request waits too);
- **budget**: at most ``budget.runs`` runs started in any ``budget.per`` window;
- **cost**: with ``cost``, the runs started in any ``cost.per`` window may cost at most
  ``cost.budget``;
- **cooldown**: no automatic run within ``cooldown`` after the last run ended (a person's
  manual request is not held back by it).

A blocked Retrain is recorded with its reason and, when it is known, the time it may run.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from datetime import datetime, timedelta

from evergreen.api.durations import parse_duration
from evergreen.api.retraining import BlockedRetrain, RetrainingSpec, RetrainingStatus


def _window(starts: Sequence[datetime], now: datetime, length: timedelta) -> list[datetime]:
    return sorted(start for start in starts if start > now - length)


def recent_starts(spec: RetrainingSpec, starts: Sequence[datetime], now: datetime) -> list[datetime]:
    """The start times that still count in a budget window (the rest can be forgotten)."""
    longest = parse_duration(spec.budget.per)
    if spec.cost is not None:
        longest = max(longest, parse_duration(spec.cost.per))
    return _window(starts, now, longest)


def runs_in_window(spec: RetrainingSpec, status: RetrainingStatus, now: datetime) -> int:
    return len(_window(status.recent_starts, now, parse_duration(spec.budget.per)))


def cost_in_window(spec: RetrainingSpec, status: RetrainingStatus, now: datetime) -> float:
    if spec.cost is None:
        return 0.0
    return len(_window(status.recent_starts, now, parse_duration(spec.cost.per))) * spec.cost.per_run


def blocked(
    spec: RetrainingSpec, status: RetrainingStatus, now: datetime, *, manual: bool
) -> BlockedRetrain | None:
    """Why a run may not start now (None: it may), with when it may."""
    if status.gave_up and not manual:
        return BlockedRetrain(
            reason="GaveUp",
            message=f"{status.consecutive_failures} consecutive runs were rejected or failed: retraining "
            "is not helping; request a run manually (spec.retraining.request) once the cause is addressed",
            since=now,
        )
    active = [run for run in status.runs if not run.outcome.finished]
    if len(active) >= spec.max_concurrent:
        return BlockedRetrain(
            reason="Concurrency",
            message=f"{len(active)} run(s) active, maxConcurrent is {spec.max_concurrent}",
            since=now,
        )
    period = parse_duration(spec.budget.per)
    window = _window(status.recent_starts, now, period)
    if len(window) >= spec.budget.runs:
        until = window[len(window) - spec.budget.runs] + period
        return BlockedRetrain(
            reason="Budget",
            message=f"{len(window)} of {spec.budget.runs} runs used in the last {spec.budget.per}",
            since=now,
            until=until,
        )
    if spec.cost is not None:
        cost_period = parse_duration(spec.cost.per)
        cost_window = _window(status.recent_starts, now, cost_period)
        spent = len(cost_window) * spec.cost.per_run
        if spent + spec.cost.per_run > spec.cost.budget:
            affordable = max(math.floor(spec.cost.budget / spec.cost.per_run), 0)
            # It becomes affordable when enough old runs leave the window.
            leaving = len(cost_window) - affordable + 1
            affordable_at = (
                cost_window[leaving - 1] + cost_period if 0 < leaving <= len(cost_window) else None
            )
            return BlockedRetrain(
                reason="CostBudget",
                message=f"spent {spent:g} of {spec.cost.budget:g} in the last {spec.cost.per}; "
                f"a run costs {spec.cost.per_run:g}",
                since=now,
                until=affordable_at,
            )
    if not manual:
        ended = [run.finished for run in status.runs if run.finished is not None]
        if ended:
            until = max(ended) + parse_duration(spec.cooldown)
            if now < until:
                return BlockedRetrain(
                    reason="Cooldown",
                    message=f"the last run ended at {max(ended).isoformat()}; cooldown is {spec.cooldown}",
                    since=now,
                    until=until,
                )
    return None
