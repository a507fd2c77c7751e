"""Estimated KPIs on a real control plane: status, conditions and Events say "estimated".

The live traffic's labels do not follow its scores (its outcomes come from fixed KPI rates), so
an estimate of precision from the scores is far from the measured one: the estimate breaches
first (marked as an estimate), then calibration drift makes it untrusted, and the monitor says
so with a condition and an Event.
"""

from __future__ import annotations

from typing import Any

import pytest

from evergreen.simulation import PrometheusServer
from tests.e2e.conftest import Cluster, OperatorProcess, operator_settings, wait_for

pytestmark = [pytest.mark.e2e, pytest.mark.prometheus, pytest.mark.slow]

OUTCOMES = 'model_label_outcomes_total{model="{{model}}"'


def estimating_monitor() -> dict[str, Any]:
    return {
        "model": "fraud-detector",
        "interval": "2s",
        "kpis": [
            {
                "name": "precision",
                "query": f'sum(increase({OUTCOMES},outcome="tp"}}[10s]))'
                f' / sum(increase({OUTCOMES},outcome=~"tp|fp"}}[10s]))',
                "min": 0.85,
                "labelDelay": "4s",
                "estimate": {
                    "histogram": "model_prediction_score",
                    "metric": "precision",
                    # The live scores are low (mean ~0.09): 0.1 is a bound with scores above it.
                    "threshold": 0.1,
                    "window": "10s",
                    "tolerance": 0.05,
                },
            }
        ],
    }


@pytest.mark.usefixtures("traffic")
def test_status_and_events_mark_the_estimate_and_its_calibration_drift(
    cluster: Cluster, live_prometheus: PrometheusServer
) -> None:
    with OperatorProcess(cluster, operator_settings(live_prometheus.url)):
        cluster.create_monitor("estimated", estimating_monitor())
        estimates = wait_for(
            "an estimated KPI in status",
            lambda: cluster.monitor("estimated").get("status", {}).get("lastEvaluation", {}).get("estimates"),
        )
        assert estimates[0]["name"] == "precision" and estimates[0]["estimated"] is True
        assert estimates[0]["state"] == "Breached"  # the scores say ~0.2 above 0.1
        # The breach is named as an estimate in the KPIBreached Event, before calibration drift
        # takes the estimate out of decisions.
        breached = cluster.wait_event("estimated", "Warning", "KPIBreached")
        assert "precision (estimated)" in breached
        message = cluster.wait_event("estimated", "Warning", "CalibrationDrift")
        assert "precision: labelled window to" in message and "beyond tolerance 0.05" in message
        trusted = cluster.condition("estimated", "EstimateTrusted")
        assert trusted is not None and (trusted["status"], trusted["reason"]) == ("False", "CalibrationDrift")
        decision = wait_for(
            "a decision that names the untrusted estimate",
            lambda: (
                (d := cluster.monitor("estimated")["status"].get("decision"))
                and "not used (calibration drift" in d["message"]
                and d
            ),
        )
        assert "precision (estimated)" in decision["message"]
        assert any(e["signal"] == "calibration" for e in decision["evidence"])
