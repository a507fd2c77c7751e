"""What ``evaluate`` and ``backtest`` exit with, derived from what the evaluations report.

``evaluate``:

    0  evaluated every signal; nothing at critical (warnings are reported, not failed)
    1  Prometheus could not be read (unreachable, timeout, refused credentials)
    3  evaluated; at least one finding at critical: a judged drift series at or above its
       critical threshold, or a data-quality check or KPI out of its bounds
    4  could not evaluate everything, and nothing evaluated is critical: a query was rejected,
       returned no data, histograms could not be compared, or the decision is ``Unknown``
       (a baseline still warming up, feature drift that could not be judged); the report and
       the decision name what is missing

``backtest``: 0 when at least one evaluation evaluated something, 1 when Prometheus could not
be read at any of them, 4 when every one could be read but none evaluated anything.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from evergreen.api.decisions import Action, Decision
from evergreen.api.status import CheckState, Severity
from evergreen.cli_errors import ExitCode
from evergreen.observation.evaluate import Evaluation, ProblemKind


@dataclass(frozen=True)
class Outcome:
    """An exit code and the one line that explains it (empty when there is nothing to say)."""

    code: ExitCode
    message: str = ""


def critical_findings(evaluation: Evaluation) -> list[str]:
    """Every finding at critical, as ``field: what``."""
    findings = []
    for result in (evaluation.drift, evaluation.prediction_drift):
        if result is None:
            continue
        for row in result.judged():
            if row.severity is Severity.CRITICAL:
                findings.append(f"{result.field}: {row.feature} [{row.segment}] {row.score:g}")
    for field, outcomes in (("spec.dataQuality", evaluation.data_quality), ("spec.kpis", evaluation.kpis)):
        for outcome in outcomes:
            if outcome.state is CheckState.BREACHED:
                value = "out of bounds" if outcome.value is None else f"= {outcome.value:g}"
                findings.append(f"{field}: {outcome.name} {value}")
    return findings


def evaluated_signals(evaluation: Evaluation) -> int:
    """How many configured signals produced a result (drift families, checks, KPIs)."""
    checks = (*evaluation.data_quality, *evaluation.kpis)
    answered = sum(o.state in (CheckState.OK, CheckState.BREACHED) for o in checks)
    return answered + (evaluation.drift is not None) + (evaluation.prediction_drift is not None)


def evaluate_outcome(evaluation: Evaluation, decision: Decision | None = None) -> Outcome:
    """The exit code of a one-shot ``evaluate`` and of the decision it alone leads to.

    A critical finding outranks an ``Unknown`` decision: what was judged critical is a finding
    whatever else could not be judged.
    """
    if evaluation.unavailable:
        problem = next(p for p in evaluation.problems if p.kind is ProblemKind.UNAVAILABLE)
        return Outcome(ExitCode.ENVIRONMENT, problem.message)
    if (
        decision is not None
        and decision.action is Action.UNKNOWN
        and decision.reason == "PrometheusUnavailable"
    ):
        return Outcome(ExitCode.ENVIRONMENT, decision.message)
    findings = critical_findings(evaluation)
    if findings:
        more = f" (and {len(findings) - 1} more)" if len(findings) > 1 else ""
        return Outcome(ExitCode.CRITICAL, f"critical: {findings[0]}{more}")
    if evaluation.problems:
        first = evaluation.problems[0]
        more = f" (and {len(evaluation.problems) - 1} more)" if len(evaluation.problems) > 1 else ""
        return Outcome(ExitCode.NOT_EVALUATED, f"not evaluated: {first.field}: {first.message}{more}")
    if decision is not None and decision.action is Action.UNKNOWN:
        return Outcome(ExitCode.NOT_EVALUATED, f"decision Unknown ({decision.reason}): {decision.message}")
    return Outcome(ExitCode.OK)


def backtest_outcome(evaluations: Sequence[Evaluation]) -> Outcome:
    """The exit code of a ``backtest``: did at least one evaluation evaluate something?"""
    if any(not e.unavailable and evaluated_signals(e) > 0 for e in evaluations):
        return Outcome(ExitCode.OK)
    if not evaluations:
        return Outcome(ExitCode.NOT_EVALUATED, "no evaluation time in the span")
    if all(e.unavailable for e in evaluations):
        return Outcome(
            ExitCode.ENVIRONMENT, f"Prometheus could not be read at all: {evaluations[0].problems[0].message}"
        )
    problems = [p for e in evaluations for p in e.problems if p.kind is not ProblemKind.UNAVAILABLE]
    detail = f": {problems[0].field}: {problems[0].message}" if problems else ""
    return Outcome(ExitCode.NOT_EVALUATED, f"no evaluation evaluated any signal{detail}")
