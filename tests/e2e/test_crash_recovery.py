"""The operator killed with SIGKILL at each phase of a retraining run and of a rollout, then
started again, on the real control plane: it resumes from what the cluster and the status say,
creates no second workload, takes no rollout step twice, and leaves holds in place."""

from __future__ import annotations

import functools
import time
from typing import Any

import pytest

from evergreen.retraining.runs import run_name
from evergreen.simulation import LiveModelTraffic, PrometheusServer
from tests.e2e.conftest import Cluster, OperatorSubprocess, wait_for
from tests.e2e.test_delivery import TEAM_REPLICAS, deployments, last_outcome, rollout
from tests.e2e.test_delivery import serving as serving  # noqa: PLC0414 (a fixture)
from tests.e2e.test_delivery import spec as rollout_spec
from tests.e2e.test_delivery import two_versions as two_versions  # noqa: PLC0414 (a fixture)
from tests.e2e.test_retraining import finish_job, jobs, result, retraining, run_outcome
from tests.e2e.test_retraining import spec as retraining_spec

pytestmark = [pytest.mark.e2e, pytest.mark.prometheus, pytest.mark.slow]


def test_killed_at_every_phase_of_a_retraining_run(
    cluster: Cluster, live_prometheus: PrometheusServer
) -> None:
    cluster.create_service_account("fraud-trainer")
    operator = OperatorSubprocess(cluster, live_prometheus.url)
    uid = cluster.create_monitor("fraud", retraining_spec())["metadata"]["uid"]
    job = run_name("fraud", uid, 1)

    # 1. Killed the moment the Job exists (its claim may or may not be written yet).
    operator.start()
    wait_for("a retraining Job", lambda: jobs(cluster, "fraud"), timeout=60)
    operator.kill()
    operator.start()
    wait_for("run 1 recorded as running", lambda: run_outcome_or_running(cluster, 1) == "Running", timeout=60)
    assert [j["metadata"]["name"] for j in jobs(cluster, "fraud")] == [job]

    # 2. Killed while the run finishes: the verdict is reached once, by the next process.
    finish_job(cluster, job, result("v2", 0.95))
    operator.kill()
    time.sleep(1)  # the Job completes while no operator runs
    operator.start()
    wait_for("run 1 accepted", lambda: run_outcome(cluster, "fraud", 1) == "Accepted", timeout=60)

    # 3. Killed again after the verdict: nothing is redone.
    operator.kill()
    operator.start()
    time.sleep(3)
    operator.kill()
    status = retraining(cluster, "fraud")
    assert [run["run"] for run in status["runs"]] == [1] and status["nextRun"] == 2
    assert [j["metadata"]["name"] for j in jobs(cluster, "fraud")] == [job]
    accepted = [e for e in cluster.events("fraud") if e[1] == "CandidateAccepted"]
    assert len(accepted) <= 1, accepted


def run_outcome_or_running(cluster: Cluster, run: int) -> str | None:
    for entry in retraining(cluster, "fraud").get("runs", []):
        if entry["run"] == run:
            return str(entry["outcome"])
    return None


def test_killed_at_every_step_of_a_rollout_with_a_hold(
    serving: Cluster,
    live_prometheus: PrometheusServer,
    two_versions: LiveModelTraffic,
) -> None:
    cluster = serving
    monitor: dict[str, Any] = rollout_spec(stepInterval="4s", steps=[25, 50, 100])
    monitor["holds"] = [
        {
            "name": "bank-a",
            "version": "v1",
            "until": "2099-01-01T00:00:00Z",
            "match": {"header": "x-customer-id", "values": ["bank-a"]},
            "replicas": 2,
        }
    ]
    cluster.create_monitor("fraud", monitor)
    operator = OperatorSubprocess(cluster, live_prometheus.url)
    weights: list[int] = []

    def at(weight: int | None = None) -> bool:
        """Note the weight now (to see every step taken); whether it is ``weight``."""
        now = int(rollout(cluster).get("weight") or 0)
        if now and (not weights or weights[-1] != now):
            weights.append(now)
        return now == weight

    for step in (25, 50):
        operator.start()
        wait_for(f"step {step}", functools.partial(at, step), timeout=60)
        operator.kill()
        # The hold's version keeps its replicas while no operator runs.
        assert deployments(cluster).get("fraud-v1", 0) >= 2
    operator.start()
    try:
        wait_for("the promotion", lambda: not at() and last_outcome(cluster) == "Promoted", timeout=90)
    finally:
        operator.kill()
    assert weights == [25, 50, 100], weights  # no step taken twice, none skipped
    replicas = deployments(cluster)
    assert replicas["fraud-v1"] == 2 and replicas["fraud-v2"] == TEAM_REPLICAS and replicas["fraud"] == 0
    steps = [e for e in cluster.events("fraud") if e[1] == "RolloutStep"]
    assert len(steps) <= 2, steps
    hold = cluster.monitor("fraud")["status"]["holds"][0]
    assert (hold["active"], hold["version"]) == (True, "v1")
