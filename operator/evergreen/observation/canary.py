"""Canary checks: the candidate version against its bounds and against the stable version.

- **KPIs**: each KPI query is rendered twice, ``{{version}}`` set to the candidate and to the
  stable version, ``{{window}}`` to the step interval. The candidate fails when its value is
  out of the KPI's bounds, or worse than the stable's by more than ``maxKpiDegradation``
  ("worse" is lower for a KPI with a minimum, higher for one with only a maximum).
- **Outputs**: with prediction drift configured, the candidate's score distribution is compared
  with the stable's over the same window (selected by ``predictionDrift.versionLabel``); the
  drift must stay below ``critical``.

A check without data — no candidate traffic yet, a metrics outage, a query Prometheus
rejects — is ``NoData``: neither a failure nor a success (the rollout pauses).
"""

from __future__ import annotations

import asyncio
import math
from datetime import datetime

from evergreen.analysis import HistogramSet, align, drift_scores
from evergreen.api.delivery import CheckRecord, RolloutCheck
from evergreen.api.spec import Kpi, ModelMonitorSpec, NoDataPolicy
from evergreen.api.status import CheckState
from evergreen.errors import EvergreenError
from evergreen.observation.checks import check_outcome
from evergreen.observation.plan import template_variables
from evergreen.signals.promql import histogram_increase, render_template
from evergreen.signals.samples import QueryResult
from evergreen.signals.source import MetricSource


async def _read(source: MetricSource, query: str, at: datetime, field: str) -> QueryResult | str:
    try:
        return await source.instant(query, at, field=field)
    except EvergreenError as error:
        return str(error)


def _worse_by(kpi: Kpi, candidate: float, stable: float) -> float:
    """How much worse the candidate is (positive) in the KPI's own direction."""
    return stable - candidate if kpi.min is not None else candidate - stable


async def _kpi_check(
    spec: ModelMonitorSpec,
    index: int,
    kpi: Kpi,
    source: MetricSource,
    at: datetime,
    namespace: str,
    candidate: str,
    stable: str,
    window: str,
    tolerance: float,
) -> CheckRecord:
    field = f"spec.kpis[{index}].query"
    queries = []
    for version in (candidate, stable):
        variables = {**template_variables(spec, namespace, version), "window": window}
        queries.append(render_template(kpi.query, variables, field=field))
    got_candidate, got_stable = await asyncio.gather(*(_read(source, q, at, field) for q in queries))
    name = f"kpi:{kpi.name}"
    if isinstance(got_candidate, str):
        return CheckRecord(name=name, result=RolloutCheck.NO_DATA, message=got_candidate)
    outcome = check_outcome(kpi, got_candidate)  # onNoData: Breach comes back as Breached
    if outcome.state is CheckState.NO_DATA:
        if kpi.on_no_data is NoDataPolicy.IGNORE:
            return CheckRecord(name=name, result=RolloutCheck.PASSED, message="no data (onNoData: Ignore)")
        return CheckRecord(name=name, result=RolloutCheck.NO_DATA, message=f"no data for {candidate}")
    stable_value = None
    if not isinstance(got_stable, str):
        stable_value = check_outcome(kpi, got_stable).value
    if outcome.state is CheckState.BREACHED:
        return CheckRecord(
            name=name,
            result=RolloutCheck.FAILED,
            candidate=outcome.value,
            stable=stable_value,
            message=f"{candidate}: {outcome.message}",
        )
    if outcome.value is None:  # infinite, yet within bounds: nothing to compare
        return CheckRecord(name=name, result=RolloutCheck.PASSED, message=outcome.message or "within bounds")
    # A relative slack absorbs float noise: 0.92 must not be "worse" than 0.9199999999999999.
    slack = 1e-9 * max(abs(outcome.value), abs(stable_value or 0.0), 1.0)
    if stable_value is not None and _worse_by(kpi, outcome.value, stable_value) > tolerance + slack:
        return CheckRecord(
            name=name,
            result=RolloutCheck.FAILED,
            candidate=outcome.value,
            stable=stable_value,
            message=f"{candidate} {outcome.value:.4g} is worse than {stable} {stable_value:.4g} "
            f"by more than {tolerance:g}",
        )
    return CheckRecord(
        name=name,
        result=RolloutCheck.PASSED,
        candidate=outcome.value,
        stable=stable_value,
        message=f"{outcome.value:.4g} within bounds",
    )


async def _output_check(
    spec: ModelMonitorSpec, source: MetricSource, at: datetime, candidate: str, stable: str, window: str
) -> CheckRecord:
    config = spec.prediction_drift
    assert config is not None
    answers = await asyncio.gather(
        *(
            _read(
                source,
                histogram_increase(
                    config.histogram,
                    matchers={
                        **config.match_labels,
                        config.model_label: spec.model,
                        config.version_label: version,
                    },
                    group_by=[],
                    window=window,
                ),
                at,
                "spec.predictionDrift",
            )
            for version in (candidate, stable)
        )
    )
    name = "predictionDrift"
    problems = [a for a in answers if isinstance(a, str)]
    if problems:
        return CheckRecord(name=name, result=RolloutCheck.NO_DATA, message=problems[0])
    results = [a for a in answers if isinstance(a, QueryResult)]
    if any(result.empty for result in results):
        return CheckRecord(
            name=name, result=RolloutCheck.NO_DATA, message="no score histogram for a version yet"
        )
    try:
        current, reference = (
            HistogramSet.from_columns(r.columns, r.values, feature_label=None) for r in results
        )
        score = float(drift_scores(config.method, align(reference, current)).score[0])
    except (EvergreenError, IndexError) as error:
        return CheckRecord(name=name, result=RolloutCheck.NO_DATA, message=str(error))
    if math.isnan(score):
        return CheckRecord(
            name=name, result=RolloutCheck.NO_DATA, message="no candidate traffic in the window"
        )
    method = config.method.value
    if score >= config.critical:
        return CheckRecord(
            name=name,
            result=RolloutCheck.FAILED,
            candidate=score,
            message=f"{candidate}'s scores differ from {stable}'s: {method} {score:.3g} "
            f">= {config.critical:g}",
        )
    return CheckRecord(
        name=name,
        result=RolloutCheck.PASSED,
        candidate=score,
        message=f"{method} {score:.3g} below {config.critical:g}",
    )


async def canary_checks(
    spec: ModelMonitorSpec,
    source: MetricSource,
    at: datetime,
    *,
    namespace: str,
    candidate: str,
    stable: str,
) -> list[CheckRecord]:
    """Every canary check of ``candidate`` against ``stable`` at ``at``."""
    rollout = spec.rollout
    assert rollout is not None
    window = rollout.step_interval
    checks = [
        _kpi_check(
            spec, i, kpi, source, at, namespace, candidate, stable, window, rollout.max_kpi_degradation
        )
        for i, kpi in enumerate(spec.kpis)
    ]
    if spec.prediction_drift is not None:
        checks.append(_output_check(spec, source, at, candidate, stable, window))
    return list(await asyncio.gather(*checks))
