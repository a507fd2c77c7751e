"""The validation gate: a candidate reaches no traffic unless it beats the current model.

The reference is, in order of preference:

1. the ``baseline`` the run itself reported — the current model evaluated on the same fresh
   holdout as the candidate, the only like-for-like comparison;
2. the metrics of the version serving now, as recorded when it was accepted or promoted;
3. ``validation.currentMetrics`` declared in the spec.

Without any reference the candidate is rejected: "better than unknown" is not a verdict.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from evergreen.api.retraining import Candidate, Validation


@dataclass(frozen=True)
class Verdict:
    accepted: bool
    reason: str
    reference: Candidate | None


def reference_for(
    reported: Candidate | None, serving: Candidate | None, validation: Validation
) -> Candidate | None:
    """The model the candidate is compared with (see the module docstring)."""
    metric = validation.metric
    for option in (reported, serving):
        if option is not None and metric in option.metrics:
            return option
    if metric in validation.current_metrics:
        return Candidate(version="declared", metrics=dict(validation.current_metrics))
    return None


def judge(candidate: Candidate, reference: Candidate | None, validation: Validation) -> Verdict:
    """Accept only a candidate that beats the reference by the margin and passes every floor."""
    metric = validation.metric
    value = candidate.metrics.get(metric)
    if value is None or not math.isfinite(value):
        return Verdict(False, f"the candidate reported no {metric!r} metric", reference)
    for name, floor in sorted(validation.floors.items()):
        got = candidate.metrics.get(name)
        if got is None or got < floor:
            shown = "missing" if got is None else f"{got:.4g}"
            return Verdict(False, f"{name} {shown} is below the floor {floor:g}", reference)
    for name, ceiling in sorted(validation.ceilings.items()):
        got = candidate.metrics.get(name)
        if got is None or got > ceiling:
            shown = "missing" if got is None else f"{got:.4g}"
            return Verdict(False, f"{name} {shown} is above the ceiling {ceiling:g}", reference)
    if reference is None:
        return Verdict(
            False,
            f"no reference for the current model's {metric}: report a baseline in the run's result "
            "or set spec.retraining.validation.currentMetrics",
            None,
        )
    current = reference.metrics[metric]
    gain = value - current if validation.higher_is_better else current - value
    comparison = (
        f"{metric} {value:.4g} vs {current:.4g} ({reference.version}): "
        f"{'+' if gain >= 0 else ''}{gain:.4g}, needs +{validation.min_improvement:g}"
    )
    if gain < validation.min_improvement or (validation.min_improvement == 0 and gain <= 0):
        return Verdict(False, comparison, reference)
    return Verdict(True, comparison, reference)
