"""Whether a KPI's estimate from prediction scores is still trusted for decisions.

Every evaluation compares the estimate of the latest labelled window with the KPI measured on
it. A gap beyond the estimate's ``tolerance`` in ``needed`` of the last ``of`` evaluations
(``policy.persistence``, the rule every decision follows) is **calibration drift**: the scores
no longer mean what they say, and the estimate stops counting towards decisions. It is trusted
again once the gap is seen within tolerance in ``needed`` of the last ``of`` evaluations:
evaluations without a comparison (no labelled data) are no evidence that it closed.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from evergreen.api.decisions import Assessment, Evidence
from evergreen.api.durations import parse_duration
from evergreen.api.spec import ModelMonitorSpec


def _recent(spec: ModelMonitorSpec, assessments: Sequence[Assessment], now: datetime) -> list[Assessment]:
    persistence = spec.policy.persistence
    horizon = parse_duration(spec.interval) * (persistence.of + 1)
    return [a for a in list(assessments)[-persistence.of :] if now - a.time <= horizon]


def untrusted_estimates(
    spec: ModelMonitorSpec, assessments: Sequence[Assessment], previous: Assessment | None
) -> list[str]:
    """The KPIs whose estimate is not trusted after the newest of ``assessments`` (oldest first).

    ``previous`` (the assessment before the newest) says whether an estimate was already
    untrusted; the newest one's own ``estimatesUntrusted`` is what this computes.
    """
    if not assessments:
        return []
    now = assessments[-1].time
    recent = _recent(spec, assessments, now)
    before = set(previous.estimates_untrusted) if previous is not None else set()
    needed = spec.policy.persistence.needed
    untrusted = []
    for kpi in spec.kpis:
        if kpi.estimate is None:
            continue
        drifted = sum(1 for a in recent if any(e.check == kpi.name for e in a.calibration_drift))
        closed = sum(1 for a in recent if kpi.name in a.calibration_held)
        if drifted >= needed or (kpi.name in before and closed < needed):
            untrusted.append(kpi.name)
    return untrusted


def calibration_evidence(assessments: Sequence[Assessment], name: str) -> Evidence | None:
    """The latest calibration gap beyond tolerance seen for one KPI's estimate."""
    for assessment in reversed(assessments):
        for evidence in assessment.calibration_drift:
            if evidence.check == name:
                return evidence
    return None
