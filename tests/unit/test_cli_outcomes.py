"""The exit code of ``evaluate`` folds in the decision its evaluation alone leads to."""

from __future__ import annotations

import dataclasses

from evergreen.api.decisions import Action
from evergreen.api.status import CheckState
from evergreen.cli_errors import ExitCode
from evergreen.cli_outcomes import evaluate_outcome
from evergreen.observation.evaluate import Evaluation, ProblemKind
from evergreen.policy.engine import PolicyState, advance
from tests.unit.test_policy import SPEC, T0, evaluation, world
from tests.unit.test_unknown import blind


def _decided(evaluated: Evaluation) -> tuple[str, ExitCode, str]:
    """The Unknown reason (empty when the decision is known), the exit code and its message."""
    decision = advance(SPEC, evaluated, PolicyState()).decision
    assert decision is not None
    outcome = evaluate_outcome(evaluated, decision)
    return (
        decision.reason if decision.action is Action.UNKNOWN else "",
        outcome.code,
        outcome.message,
    )


def test_an_unknown_decision_is_4_and_says_why() -> None:
    for kind, reason in (
        (ProblemKind.NO_DATA, "NoData"),
        (ProblemKind.REJECTED, "QueryRejected"),
        (ProblemKind.BASELINE_NOT_READY, "BaselineNotReady"),
    ):
        unknown, code, message = _decided(blind(T0, kind))
        assert (unknown, code) == (reason, ExitCode.NOT_EVALUATED)
        assert message.startswith("not evaluated: spec.drift")


def test_prometheus_unavailable_is_1() -> None:
    unknown, code, message = _decided(blind(T0, ProblemKind.UNAVAILABLE))
    assert (unknown, code) == ("PrometheusUnavailable", ExitCode.ENVIRONMENT)
    assert message


def test_an_unknown_decision_without_a_reported_problem_is_still_4() -> None:
    healthy = evaluation(T0, world())
    decision = advance(SPEC, blind(T0, ProblemKind.BASELINE_NOT_READY), PolicyState()).decision
    assert decision is not None and decision.action is Action.UNKNOWN
    outcome = evaluate_outcome(healthy, decision)
    assert outcome.code is ExitCode.NOT_EVALUATED
    assert outcome.message.startswith("decision Unknown (BaselineNotReady): ")


def test_a_critical_finding_outranks_unknown() -> None:
    blinded = blind(T0, ProblemKind.NO_DATA)
    breached = dataclasses.replace(
        blinded,
        kpis=tuple(o.model_copy(update={"state": CheckState.BREACHED, "value": 0.5}) for o in blinded.kpis),
    )
    decision = advance(SPEC, blinded, PolicyState()).decision
    assert decision is not None and decision.action is Action.UNKNOWN
    outcome = evaluate_outcome(breached, decision)
    assert outcome.code is ExitCode.CRITICAL
    assert outcome.message == "critical: spec.kpis: precision = 0.5"


def test_a_healthy_decision_on_a_full_evaluation_is_0() -> None:
    unknown, code, message = _decided(evaluation(T0, world()))
    assert (unknown, code, message) == ("", ExitCode.OK, "")
