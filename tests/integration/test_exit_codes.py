"""The exit codes people gate on, against a real Prometheus holding the showcase's history.

``evaluate``: 0 evaluated and nothing critical, 3 a finding at critical, 4 not everything could
be evaluated (the decision may be Unknown), 1 Prometheus unreachable. ``backtest``: 0 when an
evaluation evaluated something, 4 when none did, 1 when Prometheus could not be read at all.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml

from evergreen.cli import main
from evergreen.simulation import PrometheusServer
from evergreen.simulation.catalog import SHOWCASE_TIMES

pytestmark = [pytest.mark.prometheus]

EXAMPLE = Path(__file__).parents[2] / "examples" / "fraud-detector.yaml"


def _at(moment: datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")


def _manifest(tmp_path: Path, **changes: Any) -> str:
    document = yaml.safe_load(EXAMPLE.read_text())
    document["spec"].pop("prometheus")
    document["spec"].update(changes)
    path = tmp_path / "monitor.yaml"
    path.write_text(yaml.safe_dump(document))
    return str(path)


def _evaluate(
    capsys: pytest.CaptureFixture[str], manifest: str, url: str, at: datetime
) -> tuple[int, str, str]:
    code = main(["evaluate", "-f", manifest, "--prometheus", url, "--at", _at(at)])
    captured = capsys.readouterr()
    assert "Traceback" not in captured.err
    return code, captured.out, captured.err


def test_healthy_is_0(
    showcase_prometheus: PrometheusServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = _evaluate(
        capsys, _manifest(tmp_path), showcase_prometheus.url, SHOWCASE_TIMES["healthy"]
    )
    assert code == 0, err
    assert err == ""
    assert "Drifting             False" in out


def test_critical_drift_is_3(
    showcase_prometheus: PrometheusServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    at = SHOWCASE_TIMES["drift_end"] + timedelta(hours=6)
    code, out, err = _evaluate(capsys, _manifest(tmp_path), showcase_prometheus.url, at)
    assert code == 3
    assert "critical: spec.drift: amount" in err
    assert "DriftCritical" in out


def test_a_rejected_query_is_4_and_names_its_field(
    showcase_prometheus: PrometheusServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    kpis = yaml.safe_load(EXAMPLE.read_text())["spec"]["kpis"]
    kpis[0]["query"] = "sum(rate(oops[5m]"
    manifest = _manifest(tmp_path, kpis=kpis)
    code, _, err = _evaluate(capsys, manifest, showcase_prometheus.url, SHOWCASE_TIMES["healthy"])
    assert code == 4
    assert "not evaluated: spec.kpis[0].query" in err


def test_a_signal_without_data_is_4_never_0(
    showcase_prometheus: PrometheusServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    drift = yaml.safe_load(EXAMPLE.read_text())["spec"]["drift"]
    manifest = _manifest(tmp_path, drift={**drift, "histogram": "no_such_histogram"})
    code, out, err = _evaluate(capsys, manifest, showcase_prometheus.url, SHOWCASE_TIMES["healthy"])
    assert code == 4
    assert "spec.drift" in err
    # Healthy KPIs do not make unjudged inputs healthy: the decision says so.
    assert "Decision: Unknown (NoData)" in out


def test_backtest_is_0_when_evaluations_succeed_and_4_when_none_evaluates_anything(
    showcase_prometheus: PrometheusServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    start = SHOWCASE_TIMES["healthy"]
    span = ["--start", _at(start), "--end", _at(start + timedelta(minutes=20)), "--step", "5m"]
    url = showcase_prometheus.url
    assert main(["backtest", "-f", _manifest(tmp_path), "--prometheus", url, *span]) == 0
    capsys.readouterr()
    nothing = _manifest(
        tmp_path,
        drift={"histogram": "no_such_histogram"},
        predictionDrift={"histogram": "no_such_score"},
        dataQuality=[{"name": "nulls", "query": "no_such_metric", "max": 1}],
        kpis=[{"name": "precision", "query": "no_such_kpi", "min": 0.5}],
    )
    assert main(["backtest", "-f", nothing, "--prometheus", url, *span]) == 4
    assert "no evaluation evaluated any signal" in capsys.readouterr().err


def test_backtest_is_1_when_prometheus_cannot_be_read(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    start = SHOWCASE_TIMES["healthy"]
    span = ["--start", _at(start), "--end", _at(start + timedelta(minutes=10)), "--step", "5m"]
    assert main(["backtest", "-f", _manifest(tmp_path), "--prometheus", "http://127.0.0.1:9", *span]) == 1
    err = capsys.readouterr().err
    assert "Prometheus could not be read at all" in err
    assert "connection refused" in err
