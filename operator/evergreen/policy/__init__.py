"""The decision engine: pure functions from evaluations to explained decisions."""

from evergreen.policy.engine import BaselineBounds, PolicyState, advance, baseline_bounds

__all__ = ["BaselineBounds", "PolicyState", "advance", "baseline_bounds"]
