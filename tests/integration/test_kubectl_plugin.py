"""The real kubectl finds the installed ``kubectl-evergreen`` and hands it its words and flags.

The ModelMonitor is served over HTTP from a kubeconfig context, so the test shows that
``--kubeconfig``, ``--context`` and the context's namespace travel from the kubectl command
line through the plugin to the API request.
"""

from __future__ import annotations

import http.server
import json
import shutil
import subprocess
import sys
import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
import yaml

from evergreen.api.decisions import Action, Decision
from evergreen.api.resource import API_VERSION, GROUP, KIND, PLURAL, VERSION
from evergreen.api.status import ModelMonitorStatus
from tests.support.binaries import k8s_tools

pytestmark = pytest.mark.helm

NAMESPACE = "ml-staging"
MONITOR_PATH = f"/apis/{GROUP}/{VERSION}/namespaces/{NAMESPACE}/{PLURAL}/fraud-detector"
NOW = datetime(2026, 1, 15, 12, 40, tzinfo=UTC)


def monitor() -> dict[str, object]:
    decision = Decision(
        action=Action.HOLD_FOR_DATA_QUALITY,
        reason="UnitChange",
        message="UnitChange in temperature_c: a data or pipeline break, not drift",
        time=NOW,
        since=NOW,
        enforced=True,
    )
    return {
        "apiVersion": API_VERSION,
        "kind": KIND,
        "metadata": {"name": "fraud-detector", "namespace": NAMESPACE, "generation": 1},
        "spec": {"model": "fraud-detector", "mode": "Enforce"},
        "status": ModelMonitorStatus(observed_generation=1, decision=decision).to_wire(),
    }


class _ApiServer(http.server.BaseHTTPRequestHandler):
    paths: list[str] = []

    def do_GET(self) -> None:
        self.paths.append(self.path)
        found = self.path == MONITOR_PATH
        body = json.dumps(monitor() if found else {"kind": "Status", "code": 404, "reason": "NotFound"})
        self.send_response(200 if found else 404)
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        self.wfile.write(body.encode())

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def api_server() -> Iterator[str]:
    _ApiServer.paths = []
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _ApiServer)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture
def kubectl_env(tmp_path: Path) -> dict[str, str]:
    """kubectl and the installed plugin on PATH, and nothing else of the machine's."""
    plugin = shutil.which("kubectl-evergreen", path=str(Path(sys.executable).parent))
    assert plugin is not None, "kubectl-evergreen is not installed: pip install -e ."
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "kubectl").symlink_to(k8s_tools().kubectl)
    (bin_dir / "kubectl-evergreen").symlink_to(plugin)
    return {
        "PATH": f"{bin_dir}:/usr/bin:/bin",
        "HOME": str(tmp_path),
        "KUBECONFIG": str(tmp_path / "absent"),
    }


def kubectl(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["kubectl", *args], env=env, capture_output=True, text=True, timeout=60, check=False
    )


def test_kubectl_lists_the_plugin(kubectl_env: dict[str, str]) -> None:
    result = kubectl(kubectl_env, "plugin", "list")
    assert result.returncode == 0, result.stderr
    assert "/kubectl-evergreen" in result.stdout
    assert "warning" not in result.stderr.lower(), result.stderr


@pytest.mark.parametrize("command", ["explain", "approve", "abort", "retrain"])
def test_kubectl_runs_each_monitor_command(kubectl_env: dict[str, str], command: str) -> None:
    result = kubectl(kubectl_env, "evergreen", command, "--help")
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith(f"usage: kubectl evergreen {command} ")
    for flag in ("-n NAMESPACE, --namespace NAMESPACE", "--kubeconfig", "--context"):
        assert flag in result.stdout


def test_explain_reads_the_monitor_from_the_chosen_context(
    kubectl_env: dict[str, str], api_server: str, tmp_path: Path
) -> None:
    config = tmp_path / "kubeconfig"
    config.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [
                    {"name": "prod", "cluster": {"server": "http://127.0.0.1:9"}},
                    {"name": "staging", "cluster": {"server": api_server}},
                ],
                "users": [{"name": "u", "user": {"token": "t"}}],
                "contexts": [
                    {"name": "prod", "context": {"cluster": "prod", "user": "u", "namespace": "ml"}},
                    {
                        "name": "staging",
                        "context": {"cluster": "staging", "user": "u", "namespace": NAMESPACE},
                    },
                ],
                "current-context": "prod",
            }
        )
    )
    env = kubectl_env
    result = kubectl(
        env, "evergreen", "explain", "fraud-detector", f"--kubeconfig={config}", "--context", "staging"
    )
    assert result.returncode == 0, result.stderr
    assert _ApiServer.paths == [MONITOR_PATH]
    assert "HoldForDataQuality" in result.stdout
    assert "UnitChange" in result.stdout

    # The same status, drawn as a page to attach to a review.
    report = tmp_path / "fraud-detector.html"
    result = kubectl(
        env,
        "evergreen",
        "explain",
        "fraud-detector",
        f"--kubeconfig={config}",
        "--context=staging",
        "--report",
        str(report),
    )
    assert result.returncode == 0, result.stderr
    page = report.read_text()
    assert "<title>ModelMonitor ml-staging/fraud-detector</title>" in page
    assert "UnitChange" in page

    # $KUBECONFIG is read as kubectl reads it, and -n wins over the context's namespace.
    env_config = {**env, "KUBECONFIG": str(config)}
    result = kubectl(env_config, "evergreen", "explain", "fraud-detector", "-n", "other", "--context=staging")
    assert result.returncode == 2  # a name that names nothing is the caller's to fix
    assert "ModelMonitor other/fraud-detector" in result.stderr and "not found" in result.stderr
    assert _ApiServer.paths[-1] == MONITOR_PATH.replace(NAMESPACE, "other")
