"""Every malformed input gets one clear message and an honest exit code, never a traceback.

The corpus in ``malformed_manifests/`` holds one broken manifest per file; its ``# expect:``
lines are words the message must contain (the field, the place, the fix). Every command's
flags get the same treatment below, and the environment errors (no kubeconfig, an API server
or Prometheus that cannot be reached or refuses the credentials) are provoked for real with
local sockets and HTTP servers.
"""

from __future__ import annotations

import http.server
import os
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from evergreen import cli
from evergreen.api.crd import custom_resource_definition
from evergreen.cli import main
from evergreen.cli_arguments import MAX_EVALUATIONS

ROOT = Path(__file__).parents[2]
CORPUS = Path(__file__).parent / "malformed_manifests"
MANIFESTS = sorted(CORPUS.glob("*.yaml"))
EXAMPLE = ROOT / "examples" / "fraud-detector.yaml"
#: Nothing listens here: a manifest that got as far as Prometheus would say "refused".
CLOSED = "http://127.0.0.1:9"
DAY = "2026-01-01T00:00:00Z..2026-01-02T00:00:00Z"


def expectations(path: Path) -> list[str]:
    lines = path.read_bytes().decode("ascii", errors="replace").splitlines()
    return [line.removeprefix("# expect: ") for line in lines if line.startswith("# expect: ")]


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def assert_one_clear_message(err: str, out: str = "") -> str:
    assert "Traceback" not in err + out
    message = err.strip()
    assert message.startswith("evergreen: "), message
    assert "\n" not in message, f"more than one line:\n{message}"
    return message


def test_the_corpus_is_large_and_every_file_says_what_to_expect() -> None:
    assert len(MANIFESTS) >= 50
    for path in MANIFESTS:
        assert expectations(path), f"{path.name} has no '# expect:' line"


@pytest.mark.parametrize("path", MANIFESTS, ids=lambda path: path.stem)
@pytest.mark.parametrize("command", ["evaluate", "backtest", "record"])
def test_a_malformed_manifest_is_one_message_naming_file_and_field(
    path: Path, command: str, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    extra = ["-o", str(tmp_path / "r.json")] if command == "record" else []
    code, out, err = run(capsys, command, "-f", str(path), "--prometheus", CLOSED, *extra)
    message = assert_one_clear_message(err, out)
    assert code == 2, message
    assert str(path) in message
    for words in expectations(path):
        assert words in message


def test_every_cel_rule_of_the_crd_has_the_same_message_in_pydantic(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """The API server and the operator reject the same things in the same words."""
    messages = [run(capsys, "evaluate", "-f", str(path), "--prometheus", CLOSED)[2] for path in MANIFESTS]

    def rules(node: object) -> Iterator[str]:
        if isinstance(node, dict):
            for rule in node.get("x-kubernetes-validations", []):
                yield rule["message"]
            for value in node.values():
                yield from rules(value)
        elif isinstance(node, list):
            for value in node:
                yield from rules(value)

    spec_schema = custom_resource_definition()["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    cel_messages = set(rules(spec_schema["properties"]["spec"]))
    assert len(cel_messages) >= 15
    unmatched = {m for m in cel_messages if not any(m in message for message in messages)}
    assert not unmatched, "no corpus manifest produces these CEL messages in pydantic"


def test_a_manifest_above_the_api_server_limit_is_refused_before_parsing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    big = tmp_path / "big.yaml"
    big.write_text("# " + "x" * (4 * 1024 * 1024) + "\n")
    code, out, err = run(capsys, "evaluate", "-f", str(big), "--prometheus", CLOSED)
    assert code == 2
    assert "larger than 3 MiB" in assert_one_clear_message(err, out)


def test_two_megabytes_of_match_labels_are_refused_quickly(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    labels = {f"label_{i}": "v" * 16 for i in range(60_000)}
    document = {
        "apiVersion": "evergreen.dev/v1alpha1",
        "kind": "ModelMonitor",
        "spec": {"model": "m", "drift": {"histogram": "h", "matchLabels": labels}},
    }
    path = tmp_path / "labels.yaml"
    path.write_text(yaml.safe_dump(document))
    assert path.stat().st_size > 2_000_000
    code, out, err = run(capsys, "evaluate", "-f", str(path), "--prometheus", CLOSED)
    assert code == 2
    assert "spec.drift.matchLabels: has 60000 entries; at most 16" in assert_one_clear_message(err, out)


# Flags -----------------------------------------------------------------------------------------


def _flag_cases(tmp: Path) -> list[tuple[list[str], str]]:
    example, directory, missing = str(EXAMPLE), str(tmp), str(tmp / "missing.yaml")
    config_map = tmp / "config-map-baseline.yaml"
    monitor = yaml.safe_load(EXAMPLE.read_text())
    monitor["spec"]["drift"]["baseline"] = {"configMap": {"name": "reference", "key": "histograms.json"}}
    config_map.write_text(yaml.safe_dump(monitor))
    a_file = tmp / "a-file"
    a_file.write_text("x")
    not_a_dir = str(a_file / "crd.yaml")
    source = [example, "--prometheus", CLOSED]
    return [
        ([], "COMMAND"),
        (["frobnicate"], "frobnicate"),
        (["--bogus", "demo"], "--bogus"),
        (["evaluate"], "-f/--file"),
        (["evaluate", "-f", directory], "is a directory"),
        (["evaluate", "-f", missing], "no such file"),
        (["evaluate", "-f", *source, "--at", "yesterday"], "argument --at"),
        (["evaluate", "-f", *source, "--at", "1969-12-31T00:00:00Z"], "before 1970"),
        (["evaluate", "-f", *source, "--at", "now-forever"], "argument --at"),
        (["evaluate", "-f", *source, "--timeout", "0"], "argument --timeout"),
        (["evaluate", "-f", *source, "--timeout", "soon"], "argument --timeout"),
        (["evaluate", "-f", *source, "--timeout", "nan"], "argument --timeout"),
        (["evaluate", "-f", *source, "--top", "0"], "argument --top"),
        (["evaluate", "-f", *source, "--header", "no-value"], "argument --header"),
        (["evaluate", "-f", *source, "--namespace", "Team_A"], "argument --namespace"),
        (["evaluate", "-f", example, "--prometheus", "localhost:9090"], "argument --prometheus"),
        (["evaluate", "-f", example, "--prometheus", CLOSED, "--scenario", "stable"], "not allowed with"),
        (["evaluate", "-f", str(config_map), "--prometheus", CLOSED], "--baseline-file"),
        (
            ["evaluate", "-f", str(config_map), "--prometheus", CLOSED, "--baseline-file", missing],
            "no such file",
        ),
        (
            ["evaluate", "-f", str(config_map), "--prometheus", CLOSED, "--baseline-file", example],
            "spec.drift",
        ),
        (["evaluate", "-f", example, "--scenario", "no-such-scenario"], "unknown scenario"),
        (["backtest"], "-f/--file"),
        (["backtest", "-f", *source, "--start", "garbage"], "argument --start"),
        (["backtest", "-f", *source, "--end", "tomorrow"], "argument --end"),
        (["backtest", "-f", *source, "--step", "0s"], "argument --step"),
        (["backtest", "-f", *source, "--step", "5 minutes"], "argument --step"),
        (["backtest", "-f", *source, "--start", "2020-01-01T00:00:00Z", "--step", "1s"], "evaluations"),
        (
            ["backtest", "-f", *source, "--start", "2026-01-02T00:00:00Z", "--end", "2026-01-01T00:00:00Z"],
            "before the start",
        ),
        (["backtest", "-f", *source, "--output", "csv"], "argument --output"),
        (["backtest", "--recording", example], "not an Evergreen recording"),
        (["backtest", "--recording", missing], "no such file"),
        (["backtest", "--recording", directory], "is a directory"),
        (["record", "-f", *source], "-o/--output"),
        (["record", "-f", *source, "-o", str(tmp / "r.json"), "--span", "yesterday"], "argument --span"),
        (["record", "-f", *source, "-o", str(tmp / "r.json"), "--time", "noon"], "argument --time"),
        (["record", "-f", *source, "-o", str(tmp / "r.json"), "--step", "1s", "--span", DAY], "--span"),
        (["demo", "--recording", example], "not an Evergreen recording"),
        (["demo", "--top", "-3"], "argument --top"),
        (["run", "--tick", "often"], "argument --tick"),
        (["run", "--retry", "-1"], "argument --retry"),
        (["run", "--top", "many"], "argument --top"),
        (["run", "--max-concurrent-queries", "0"], "argument --max-concurrent-queries"),
        (["run", "--metrics-port", "70000"], "argument --metrics-port"),
        (["run", "--health-port", "http"], "argument --health-port"),
        (["run", "--prometheus-url", "prometheus"], "argument --prometheus-url"),
        (["run", "--prometheus-timeout", "5 minutes"], "argument --prometheus-timeout"),
        (["run", "--prometheus-header", "X-Org"], "argument --prometheus-header"),
        (["run", "--namespace", "Team_A"], "argument --namespace"),
        (["run", "--kubeconfig", missing], "--kubeconfig"),
        (
            ["run", "--prometheus-url", CLOSED, "--prometheus-bearer-token-file", missing],
            "no such file",
        ),
        (["run", "--prometheus-url", CLOSED, "--prometheus-ca-file", missing], "--prometheus-ca-file"),
        (["explain"], "name"),
        (["explain", "Fraud_Detector"], "argument name"),
        (["explain", "fraud", "-n", "Team_A"], "argument -n/--namespace"),
        (["explain", "fraud", "--kubeconfig", missing], "--kubeconfig"),
        (["explain", "fraud", "--request-timeout", "0"], "argument --request-timeout"),
        (["approve", "fraud", "--gate", "sideways"], "argument --gate"),
        (["approve", "fraud", "--version", "v 2"], "argument --version"),
        (["abort", "fraud", "--version", "-v2-"], "--version"),
        (["retrain", "fraud"], "--id"),
        (["retrain", "fraud", "--id", "again!"], "argument --id"),
        (["acknowledge"], "name"),
        (["acknowledge", "Fraud_Detector"], "argument name"),
        (["acknowledge", "fraud", "-n", "Team_A"], "argument -n/--namespace"),
        (["acknowledge", "fraud", "--at", "yesterday"], "argument --at"),
        (["acknowledge", "fraud", "--kubeconfig", missing], "--kubeconfig"),
        (["crd", "-o", not_a_dir], "cannot be written"),
        (["crd", "--bogus"], "--bogus"),
        (["reference", "-o", not_a_dir], "cannot be written"),
    ]


def test_every_command_explains_a_bad_flag(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cases = _flag_cases(tmp_path)
    commands = {argv[0] for argv, _ in cases if argv and not argv[0].startswith("-")}
    assert {
        "run",
        "demo",
        "evaluate",
        "record",
        "backtest",
        "explain",
        "approve",
        "abort",
        "retrain",
        "acknowledge",
    } <= commands
    assert {"crd", "reference"} <= commands
    for argv, words in cases:
        code, out, err = run(capsys, *argv)
        assert "Traceback" not in out + err, argv
        last_line = err.strip().splitlines()[-1] if err.strip() else ""
        assert code == 2, (argv, err)
        assert words in last_line, (argv, last_line)


def test_the_version_and_the_scenarios_are_listed(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "--version")
    assert code == 0
    assert out.startswith("evergreen ")
    code, out, _ = run(capsys, "backtest", "--list-scenarios")
    assert code == 0
    assert "showcase" in out
    assert "2026-01-05T00:00Z..2026-01-19T00:00Z" in out


def test_help_gives_every_option_its_format(capsys: pytest.CaptureFixture[str]) -> None:
    for command in ("evaluate", "backtest", "record", "run", "explain"):
        with pytest.raises(SystemExit):
            cli.parser().parse_args([command, "--help"])
        text = capsys.readouterr().out
        for words in {
            "evaluate": ["RFC 3339", "now-2h", "30s", "exit codes"],
            "backtest": ["RFC 3339", "1h30m", f"{MAX_EVALUATIONS:,}", "--list-scenarios"],
            "record": ["START..END", "1h30m"],
            "run": ["SECONDS", "DURATION", "PORT"],
            "explain": ["--request-timeout", "30s"],
        }[command]:
            assert words in text, (command, words)


def test_the_limit_of_a_backtest_shows_its_arithmetic(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(
        capsys,
        *["backtest", "-f", str(EXAMPLE), "--prometheus", CLOSED],
        *["--start", "2026-01-01T00:00:00Z", "--end", "2026-12-31T00:00:00Z", "--step", "1m"],
    )
    assert code == 2
    message = assert_one_clear_message(err, out)
    assert (
        "52w every 1m is 524,161 evaluations; at most 10,000 are allowed: use --step 52m26s or more"
        in message
    )


# Debugging and internal errors -----------------------------------------------------------------


def test_debug_shows_the_traceback(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    missing = "/nonexistent/monitor.yaml"
    code, _, err = run(capsys, "--debug", "evaluate", "-f", missing)
    assert code == 2
    assert "Traceback" in err
    assert err.strip().endswith("no such file: check the path")
    code, _, err = run(capsys, "evaluate", "-f", missing, "--debug")
    assert "Traceback" in err
    monkeypatch.setenv("EVERGREEN_DEBUG", "1")
    code, _, err = run(capsys, "evaluate", "-f", missing)
    assert "Traceback" in err


def test_a_bug_is_one_line_that_says_how_to_see_more(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(_: object) -> int:
        raise RuntimeError("an invariant broke")

    monkeypatch.setattr(cli, "cmd_crd", broken)
    code, out, err = run(capsys, "crd")
    assert code == 70
    message = assert_one_clear_message(err, out)
    assert "internal error: RuntimeError: an invariant broke" in message
    assert "--debug" in message


def test_the_installed_command_prints_no_traceback(tmp_path: Path) -> None:
    """Through the real entry point and interpreter, not only ``main()``."""
    broken = CORPUS / "spec-list.yaml"
    result = subprocess.run(
        [sys.executable, "-m", "evergreen.cli", "evaluate", "-f", str(broken)],
        capture_output=True,
        text=True,
        env={**os.environ, "EVERGREEN_DEBUG": ""},
        check=False,
        timeout=60,
    )
    assert result.returncode == 2
    assert result.stderr.strip() == f"evergreen: {broken}: spec: is a list; expected a mapping of fields"


# Environment errors ----------------------------------------------------------------------------


class _Answer(http.server.BaseHTTPRequestHandler):
    status = 200

    def do_GET(self) -> None:
        self.send_response(self.status)
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        self.wfile.write(b'{"kind": "Status", "message": "no"}')

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def answering() -> Iterator[dict[int, str]]:
    """Local HTTP servers answering every request with 401, and with 403."""
    servers, urls = [], {}
    for status in (401, 403):
        handler = type(f"Answer{status}", (_Answer,), {"status": status})
        server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
        urls[status] = f"http://127.0.0.1:{server.server_address[1]}"
    yield urls
    for server in servers:
        server.shutdown()
        server.server_close()


@pytest.fixture
def silent() -> Iterator[str]:
    """A server that accepts connections and never answers."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(8)
        yield f"http://127.0.0.1:{listener.getsockname()[1]}"


def _kubeconfig(tmp_path: Path, server: str) -> str:
    path = tmp_path / f"kubeconfig-{abs(hash(server))}"
    path.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [{"name": "c", "cluster": {"server": server}}],
                "users": [{"name": "u", "user": {"token": "t"}}],
                "contexts": [{"name": "c", "context": {"cluster": "c", "user": "u"}}],
                "current-context": "c",
            }
        )
    )
    return str(path)


KUBE_COMMANDS = [
    ["explain", "fraud"],
    ["approve", "fraud"],
    ["abort", "fraud"],
    ["retrain", "fraud", "--id", "r1"],
    ["acknowledge", "fraud"],
]


@pytest.mark.parametrize("command", KUBE_COMMANDS, ids=lambda argv: argv[0])
def test_without_a_kubeconfig_cluster_commands_say_so(
    command: list[str], tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("KUBECONFIG", str(tmp_path / "none"))
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    code, out, err = run(capsys, *command)
    assert code == 1
    assert "no usable Kubernetes configuration" in assert_one_clear_message(err, out)
    assert "--kubeconfig" in err


def test_run_without_a_kubeconfig_says_so(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("KUBECONFIG", str(tmp_path / "none"))
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    code, out, err = run(capsys, "run")
    assert code == 1
    assert "no usable Kubernetes configuration" in assert_one_clear_message(err, out)


@pytest.mark.parametrize("command", KUBE_COMMANDS, ids=lambda argv: argv[0])
def test_an_unreachable_api_server_is_named_with_the_reason(
    command: list[str],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    answering: dict[int, str],
    silent: str,
) -> None:
    for server, reason in [
        (CLOSED, "connection refused"),
        ("https://no-such-host.invalid:6443", "DNS lookup failed"),
        (silent, "timed out"),
        (answering[401].replace("http://", "https://"), "TLS handshake failed"),
        (answering[401], "refused the credentials (HTTP 401)"),
        (answering[403], "forbids this (HTTP 403)"),
    ]:
        argv = [*command, "--kubeconfig", _kubeconfig(tmp_path, server), "--request-timeout", "1s"]
        code, out, err = run(capsys, *argv)
        message = assert_one_clear_message(err, out)
        assert code == 1, (server, message)
        assert reason in message, (server, message)


def test_an_unreachable_prometheus_is_named_with_the_reason(
    capsys: pytest.CaptureFixture[str], answering: dict[int, str], silent: str
) -> None:
    for url, reason in [
        (CLOSED, "connection refused"),
        ("http://no-such-host.invalid:9090", "DNS lookup failed"),
        (silent, "did not answer within 1s"),
        (answering[401].replace("http://", "https://"), "TLS handshake failed"),
        (answering[401], "refused the credentials (HTTP 401)"),
        (answering[403], "refused the credentials (HTTP 403)"),
    ]:
        code, out, err = run(capsys, "evaluate", "-f", str(EXAMPLE), "--prometheus", url, "--timeout", "1s")
        message = assert_one_clear_message(err, out)
        assert code == 1, (url, message)
        assert reason in message, (url, message)
        assert "last good evaluation" not in message
