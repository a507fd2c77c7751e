"""The operator's own Prometheus metrics.

Cardinality is bounded on purpose: per-monitor series only (never per query), and drift
scores only for each monitor's top N series, which are removed when they leave the top N or
the monitor is deleted.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable
from datetime import datetime

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server

from evergreen.api.decisions import Action, Decision
from evergreen.api.delivery import CheckRecord
from evergreen.api.status import CheckOutcome, Condition, ConditionStatus, SeriesDrift
from evergreen.observation.evaluate import Evaluation

_STATUSES = [s.value for s in ConditionStatus]


class Telemetry:
    """Every metric the operator exports, in its own registry."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
        self.evaluations = Counter(
            "evergreen_evaluations",
            "ModelMonitor evaluations by outcome.",
            ["namespace", "monitor", "outcome"],
            registry=r,
        )
        self.evaluation_duration = Histogram(
            "evergreen_evaluation_duration_seconds",
            "Wall time of one evaluation (queries and statistics).",
            buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
            registry=r,
        )
        self.evaluation_delay = Histogram(
            "evergreen_evaluation_delay_seconds",
            "From the time an evaluation was due (status.nextEvaluationTime) to its start.",
            buckets=(0.05, 0.1, 0.25, 0.5, 1, 2, 3, 5, 7.5, 10, 15, 20, 30, 60, 120, 300),
            registry=r,
        )
        self.queries = Counter(
            "evergreen_prometheus_queries",
            "Prometheus queries issued, by outcome.",
            ["outcome"],
            registry=r,
        )
        self.query_duration = Histogram(
            "evergreen_prometheus_query_duration_seconds",
            "Latency of one Prometheus query.",
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
            registry=r,
        )
        self.queries_per_evaluation = Gauge(
            "evergreen_queries_per_evaluation",
            "Queries issued by the last evaluation of a monitor.",
            ["namespace", "monitor"],
            registry=r,
        )
        self.drift_score = Gauge(
            "evergreen_drift_score",
            "Drift score of a monitor's top series (feature x segment).",
            ["namespace", "monitor", "signal", "feature", "segment"],
            registry=r,
        )
        self.drift_max = Gauge(
            "evergreen_drift_max_score",
            "Highest judged drift score of the last evaluation.",
            ["namespace", "monitor", "signal"],
            registry=r,
        )
        self.drift_threshold = Gauge(
            "evergreen_drift_threshold",
            "A monitor's drift thresholds (level warning or critical), to colour scores by.",
            ["namespace", "monitor", "signal", "level"],
            registry=r,
        )
        self.kpi_value = Gauge(
            "evergreen_kpi_value",
            "A KPI's worst value among its series at the last evaluation (NaN without data).",
            ["namespace", "monitor", "kpi"],
            registry=r,
        )
        self.kpi_min = Gauge(
            "evergreen_kpi_min",
            "A KPI's lowest acceptable value (absent when the KPI has no lower bound).",
            ["namespace", "monitor", "kpi"],
            registry=r,
        )
        self.kpi_max = Gauge(
            "evergreen_kpi_max",
            "A KPI's highest acceptable value (absent when the KPI has no upper bound).",
            ["namespace", "monitor", "kpi"],
            registry=r,
        )
        self.condition = Gauge(
            "evergreen_condition",
            "1 for the current status of each condition, 0 for the others.",
            ["namespace", "monitor", "type", "status"],
            registry=r,
        )
        self.last_evaluation = Gauge(
            "evergreen_last_evaluation_timestamp_seconds",
            "Time of the last evaluation that produced data.",
            ["namespace", "monitor"],
            registry=r,
        )
        self.decisions = Counter(
            "evergreen_decisions",
            "Decisions taken (counted when a monitor's decision changes), by action and reason.",
            ["namespace", "monitor", "action", "reason"],
            registry=r,
        )
        self.decision = Gauge(
            "evergreen_decision",
            "1 for each monitor's current decision action, 0 for the others.",
            ["namespace", "monitor", "action"],
            registry=r,
        )
        self.retrain_runs = Counter(
            "evergreen_retrain_runs",
            "Retraining runs by outcome (Started, Accepted, Rejected, Failed).",
            ["namespace", "monitor", "outcome"],
            registry=r,
        )
        self.retrain_budget_used = Gauge(
            "evergreen_retrain_budget_used",
            "Retraining runs started within the budget window.",
            ["namespace", "monitor"],
            registry=r,
        )
        self.retrain_budget_runs = Gauge(
            "evergreen_retrain_budget_runs",
            "Retraining runs the budget allows per window.",
            ["namespace", "monitor"],
            registry=r,
        )
        self.rollout_weight = Gauge(
            "evergreen_rollout_weight",
            "Percent of traffic on the candidate version being rolled out (0 when none).",
            ["namespace", "monitor"],
            registry=r,
        )
        self.rollouts = Counter(
            "evergreen_rollouts",
            "Finished rollouts by outcome.",
            ["namespace", "monitor", "outcome"],
            registry=r,
        )
        self.canary_checks = Counter(
            "evergreen_canary_checks",
            "Canary checks by result.",
            ["namespace", "monitor", "result"],
            registry=r,
        )
        self.shard_members = Gauge(
            "evergreen_shard_members",
            "Live replicas sharing the monitors, as this replica sees them (0 while it holds no Lease).",
            registry=r,
        )
        self.shard_monitors_owned = Gauge(
            "evergreen_shard_monitors_owned",
            "ModelMonitors this replica reconciles, when replicas share them (0 otherwise).",
            registry=r,
        )
        self.events = Counter(
            "evergreen_events",
            "Kubernetes Events posted, by reason.",
            ["reason"],
            registry=r,
        )
        self._drift_series: dict[tuple[str, str], set[tuple[str, str, str]]] = {}
        self._signals: dict[tuple[str, str], set[str]] = {}
        self._conditions: dict[tuple[str, str], set[str]] = {}
        self._decided: set[tuple[str, str]] = set()
        self._thresholds: dict[tuple[str, str], set[tuple[str, str]]] = {}
        self._kpis: dict[tuple[str, str], set[str]] = {}

    def serve(self, port: int, address: str = "0.0.0.0") -> None:
        """Expose ``/metrics`` on ``address:port`` from a background thread."""
        start_http_server(port, addr=address, registry=self.registry)

    def record_evaluation(
        self, namespace: str, monitor: str, outcome: str, seconds: float, queries: int
    ) -> None:
        self.evaluations.labels(namespace, monitor, outcome).inc()
        self.evaluation_duration.observe(seconds)
        self.queries_per_evaluation.labels(namespace, monitor).set(queries)

    def record_drift(
        self,
        namespace: str,
        monitor: str,
        signal: str,
        top: Iterable[SeriesDrift],
        max_score: float | None,
        at: datetime,
    ) -> None:
        key = (namespace, monitor)
        rows = list(top)
        fresh = {(signal, row.feature, row.segment) for row in rows}
        known = self._drift_series.setdefault(key, set())
        for stale in {s for s in known if s[0] == signal} - fresh:
            self.drift_score.remove(namespace, monitor, *stale)
            known.discard(stale)
        for row in rows:
            self.drift_score.labels(namespace, monitor, signal, row.feature, row.segment).set(row.score)
            known.add((signal, row.feature, row.segment))
        self._signals.setdefault(key, set()).add(signal)
        if max_score is None:
            self.drift_max.labels(namespace, monitor, signal).set(float("nan"))
        else:
            self.drift_max.labels(namespace, monitor, signal).set(max_score)
        self.last_evaluation.labels(namespace, monitor).set(at.timestamp())

    def record_drift_thresholds(
        self, namespace: str, monitor: str, signal: str, warning: float, critical: float
    ) -> None:
        for level, value in (("warning", warning), ("critical", critical)):
            self.drift_threshold.labels(namespace, monitor, signal, level).set(value)
            self._thresholds.setdefault((namespace, monitor), set()).add((signal, level))

    def record_signals(self, namespace: str, monitor: str, evaluation: Evaluation) -> None:
        """What dashboards draw scores and KPIs against: drift thresholds, KPI values and bounds."""
        for signal, result in (("feature", evaluation.drift), ("prediction", evaluation.prediction_drift)):
            if result is not None:
                self.record_drift_thresholds(
                    namespace, monitor, signal, result.config.warning, result.config.critical
                )
        # An estimate is a KPI series of its own, named as one: "precision (estimated)".
        estimates = [o.model_copy(update={"name": o.display_name}) for o in evaluation.estimates]
        self.record_kpis(namespace, monitor, [*evaluation.kpis, *estimates])

    def record_kpis(self, namespace: str, monitor: str, outcomes: Iterable[CheckOutcome]) -> None:
        """Each KPI's value and bounds; KPIs no longer in the spec are dropped."""
        kpis = list(outcomes)
        known = self._kpis.setdefault((namespace, monitor), set())
        fresh = {kpi.name for kpi in kpis}
        for stale in known - fresh:
            self._forget_kpi(namespace, monitor, stale)
        for kpi in kpis:
            self.kpi_value.labels(namespace, monitor, kpi.name).set(
                float("nan") if kpi.value is None else kpi.value
            )
            for gauge, bound in ((self.kpi_min, kpi.min), (self.kpi_max, kpi.max)):
                if bound is None:
                    with contextlib.suppress(KeyError):
                        gauge.remove(namespace, monitor, kpi.name)
                else:
                    gauge.labels(namespace, monitor, kpi.name).set(bound)
        known.clear()
        known.update(fresh)

    def _forget_kpi(self, namespace: str, monitor: str, kpi: str) -> None:
        for gauge in (self.kpi_value, self.kpi_min, self.kpi_max):
            with contextlib.suppress(KeyError):
                gauge.remove(namespace, monitor, kpi)

    def record_conditions(self, namespace: str, monitor: str, conditions: Iterable[Condition]) -> None:
        types = self._conditions.setdefault((namespace, monitor), set())
        for condition in conditions:
            types.add(condition.type)
            for status in _STATUSES:
                self.condition.labels(namespace, monitor, condition.type, status).set(
                    1.0 if condition.status.value == status else 0.0
                )

    def record_decision(self, namespace: str, monitor: str, decision: Decision, changed: bool) -> None:
        if changed:
            self.decisions.labels(namespace, monitor, decision.action.value, decision.reason).inc()
        for action in Action:
            self.decision.labels(namespace, monitor, action.value).set(
                1.0 if action is decision.action else 0.0
            )
        self._decided.add((namespace, monitor))

    def record_run(self, namespace: str, monitor: str, outcome: str) -> None:
        self.retrain_runs.labels(namespace, monitor, outcome).inc()

    def record_budget(self, namespace: str, monitor: str, used: int, allowed: int) -> None:
        self.retrain_budget_used.labels(namespace, monitor).set(used)
        self.retrain_budget_runs.labels(namespace, monitor).set(allowed)

    def record_rollout(
        self,
        namespace: str,
        monitor: str,
        weight: int,
        checks: Iterable[CheckRecord],
        promoted: str | None,
        rolled_back: str | None,
    ) -> None:
        self.rollout_weight.labels(namespace, monitor).set(weight)
        for check in checks:
            self.canary_checks.labels(namespace, monitor, check.result.value).inc()
        if promoted is not None:
            self.rollouts.labels(namespace, monitor, "Promoted").inc()
        if rolled_back is not None:
            self.rollouts.labels(namespace, monitor, "RolledBack").inc()

    def forget(self, namespace: str, monitor: str) -> None:
        """Drop every series of a deleted monitor."""
        key = (namespace, monitor)
        for series in self._drift_series.pop(key, set()):
            self.drift_score.remove(namespace, monitor, *series)
        for signal in self._signals.pop(key, set()):
            self.drift_max.remove(namespace, monitor, signal)
        for signal, level in self._thresholds.pop(key, set()):
            self.drift_threshold.remove(namespace, monitor, signal, level)
        for kpi in self._kpis.pop(key, set()):
            self._forget_kpi(namespace, monitor, kpi)
        for kind in self._conditions.pop(key, set()):
            for status in _STATUSES:
                self.condition.remove(namespace, monitor, kind, status)
        for gauge in (
            self.queries_per_evaluation,
            self.last_evaluation,
            self.retrain_budget_used,
            self.retrain_budget_runs,
            self.rollout_weight,
        ):
            with contextlib.suppress(KeyError):
                gauge.remove(namespace, monitor)
        if key in self._decided:
            self._decided.discard(key)
            for action in Action:
                self.decision.remove(namespace, monitor, action.value)
        for counter in (self.decisions, self.retrain_runs, self.rollouts, self.canary_checks):
            for labels in list(counter._metrics):  # no public API lists children
                if labels[:2] == key:
                    counter.remove(*labels)
        for outcome in list(self.evaluations._metrics):  # no public API lists children
            if outcome[:2] == key:
                self.evaluations.remove(*outcome)
