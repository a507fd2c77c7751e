"""The command line: the README's demo works and evaluates exactly the documented example."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from evergreen.cli import bundled_recording, main

ROOT = Path(__file__).parents[2]


def test_bundled_recording_is_the_documented_example() -> None:
    example = yaml.safe_load((ROOT / "examples" / "fraud-detector.yaml").read_text())
    assert bundled_recording().monitor == example, "re-record with `make recording`"


def test_demo_reports_each_incident_and_decides(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["demo"]) == 0
    out = capsys.readouterr().out
    sections = out.split("=== ")[1:]
    assert len(sections) == 6
    healthy, drifting, unit_change, segment_break, kpi_drop, timeline = sections
    assert "Drifting             False   WithinThresholds" in healthy
    assert "Decision: NoAction (Healthy)" in healthy
    assert "DriftCritical       amount" in drifting
    assert "Decision: Watch (DriftWithoutImpact)" in drifting  # KPIs are healthy: no retrain
    assert "temperature_c [segment=" in unit_change
    assert "Decision: HoldForDataQuality (UnitChange)" in unit_change
    assert "celsius_to_fahrenheit" in unit_change
    assert "session_length [segment=firefox-beta]" in segment_break
    assert "Decision: HoldForDataQuality (SegmentBreak)" in segment_break
    # KPIs drop while the segment is still broken: no retraining on broken data.
    assert "KPIBreached          True    KPIOutOfBounds" in kpi_drop
    assert "Decision: Escalate (HoldUnresolved)" in kpi_drop
    assert "retrain decisions: 0" in timeline


def test_crd_check_detects_a_stale_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["crd", "--check", str(ROOT / "crds" / "modelmonitors.yaml")]) == 0
    stale = tmp_path / "crd.yaml"
    stale.write_text("old")
    assert main(["crd", "--check", str(stale)]) == 1
    assert "stale" in capsys.readouterr().err


def test_invalid_manifest_is_a_clear_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    manifest = tmp_path / "m.yaml"
    manifest.write_text(
        "apiVersion: evergreen.dev/v1alpha1\nkind: ModelMonitor\nspec: {model: m, interval: soon, kpis: []}\n"
    )
    assert main(["evaluate", "-f", str(manifest), "--prometheus", "http://127.0.0.1:9"]) == 2
    assert "spec.interval" in capsys.readouterr().err


def test_field_reference_is_current() -> None:
    assert main(["reference", "--check", str(ROOT / "docs" / "modelmonitor.md")]) == 0, "run `make crds`"


def test_run_documents_the_sharding_flags(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["run", "--help"]) == 0
    text = capsys.readouterr().out
    for flag in ("--replica-id", "--lease-namespace", "--shard-group", "--lease-duration", "--lease-renew"):
        assert flag in text


@pytest.mark.parametrize(
    ("arguments", "mentions"),
    [
        (["--replica-id", "evergreen-0", "--lease-namespace", "ops", "--lease-renew", "8s"], "--lease-renew"),
        (["--replica-id", "Evergreen_0"], "--replica-id"),
        (["--replica-id", "evergreen-0", "--shard-group", "-bad-"], "--shard-group"),
    ],
)
def test_bad_sharding_flags_name_the_flag(
    arguments: list[str], mentions: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("evergreen.cli.POD_NAMESPACE_FILE", Path("/nonexistent"))
    assert main(["run", *arguments, "--kubeconfig", "/nonexistent"]) == 2
    assert mentions in capsys.readouterr().err


def test_sharding_needs_the_lease_namespace_outside_a_pod(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("evergreen.cli.POD_NAMESPACE_FILE", Path("/nonexistent"))
    monkeypatch.delenv("EVERGREEN_LEASE_NAMESPACE", raising=False)
    assert main(["run", "--replica-id", "evergreen-0", "--kubeconfig", "/nonexistent"]) == 2
    assert "--lease-namespace" in capsys.readouterr().err
