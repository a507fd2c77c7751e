"""The retraining policies a what-if comparison prices, as named on the command line.

``monitor`` is this monitor's own decision engine; ``every=7d`` a fixed schedule (optionally
``every=7d@2d``: the first run two days after the start of the replay instead of one period);
``naive-psi`` (or ``naive-psi=0.2``) retrains whenever any feature's whole-population PSI is
above a threshold (default: the monitor's ``spec.drift.critical``).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from enum import StrEnum

from evergreen.api.durations import parse_duration

#: What ``--compare`` alone compares.
DEFAULT_POLICIES = "monitor,every=7d,every=30d,naive-psi"

_SYNTAX = "monitor, every=DURATION[@FIRST] (e.g. every=7d, every=30d@2d) or naive-psi[=THRESHOLD]"


class PolicyKind(StrEnum):
    MONITOR = "monitor"
    SCHEDULE = "every"
    NAIVE_PSI = "naive-psi"


@dataclass(frozen=True)
class Policy:
    """One policy to replay the history under."""

    kind: PolicyKind
    #: Schedules: time between runs, and when the first one comes after the replay's start.
    period: timedelta | None = None
    first: timedelta | None = None
    #: naive-psi: the PSI above which it retrains (None: the monitor's spec.drift.critical).
    threshold: float | None = None
    #: How the policy was written, shown as its name.
    text: str = ""

    @property
    def name(self) -> str:
        return self.text or self.kind.value

    @property
    def scoped(self) -> bool:
        """Whether its runs can be scoped (only the monitor knows what drifted where)."""
        return self.kind is PolicyKind.MONITOR


def _schedule(text: str, value: str) -> Policy:
    period_text, _, first_text = value.partition("@")
    try:
        period = parse_duration(period_text)
        first = parse_duration(first_text) if first_text else period
    except ValueError as error:
        raise ValueError(f"{text!r}: {error}") from None
    if period <= timedelta(0):
        raise ValueError(f"{text!r}: the period must be longer than zero")
    return Policy(PolicyKind.SCHEDULE, period=period, first=first, text=text)


def _naive(text: str, value: str) -> Policy:
    if not value:
        return Policy(PolicyKind.NAIVE_PSI, text=text)
    try:
        threshold = float(value)
    except ValueError:
        raise ValueError(f"{text!r}: the threshold must be a number, e.g. naive-psi=0.2") from None
    if not threshold > 0 or threshold == float("inf"):
        raise ValueError(f"{text!r}: the threshold must be a positive number, e.g. naive-psi=0.2")
    return Policy(PolicyKind.NAIVE_PSI, threshold=threshold, text=text)


def parse_policies(text: str) -> list[Policy]:
    """``monitor,every=7d,naive-psi=0.2`` -> policies; ValueError naming the bad one."""
    policies: list[Policy] = []
    for item in (part.strip() for part in text.split(",")):
        if not item:
            raise ValueError(f"an empty policy in {text!r}: name each one ({_SYNTAX})")
        key, _, value = item.partition("=")
        if key == PolicyKind.MONITOR and not value:
            policy = Policy(PolicyKind.MONITOR, text=item)
        elif key == PolicyKind.SCHEDULE and value:
            policy = _schedule(item, value)
        elif key == PolicyKind.NAIVE_PSI:
            policy = _naive(item, value)
        else:
            raise ValueError(f"unknown policy {item!r}: use {_SYNTAX}")
        if any(p.name == policy.name for p in policies):
            raise ValueError(f"{item!r} is named twice")
        policies.append(policy)
    return policies
