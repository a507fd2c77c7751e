"""The decision engine: pure functions from evaluations to explained decisions."""

from evergreen.policy.engine import PolicyState, advance

__all__ = ["PolicyState", "advance"]
