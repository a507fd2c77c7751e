"""``kubectl evergreen``: kubectl's flags with kubectl's meaning, and the namespace a bare command means."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from evergreen.cli import parser
from evergreen.kubectl import context_namespace

MONITOR_COMMANDS = ["explain", "approve", "abort", "retrain"]


def kubeconfig(path: Path, current: str = "prod") -> Path:
    path.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [{"name": "c", "cluster": {"server": "https://127.0.0.1:6443"}}],
                "users": [{"name": "u", "user": {"token": "t"}}],
                "contexts": [
                    {"name": "prod", "context": {"cluster": "c", "user": "u", "namespace": "ml"}},
                    {"name": "staging", "context": {"cluster": "c", "user": "u", "namespace": "ml-staging"}},
                    {"name": "bare", "context": {"cluster": "c", "user": "u"}},
                ],
                "current-context": current,
            }
        )
    )
    return path


def extra(command: str) -> list[str]:
    return ["--id", "r1"] if command == "retrain" else []


@pytest.mark.parametrize("command", MONITOR_COMMANDS)
@pytest.mark.parametrize(
    ("flags", "namespace", "context", "config"),
    [
        (["-n", "ml"], "ml", None, None),
        (["-nml"], "ml", None, None),
        (["--namespace=ml"], "ml", None, None),
        (["--namespace", "ml", "--context", "prod"], "ml", "prod", None),
        (["--context=prod", "--kubeconfig=/etc/kube/config"], None, "prod", "/etc/kube/config"),
        ([], None, None, None),
    ],
)
def test_monitor_commands_take_kubectls_flags_in_any_order(
    command: str, flags: list[str], namespace: str | None, context: str | None, config: str | None
) -> None:
    for argv in ([command, "fraud-detector", *flags], [command, *flags, "fraud-detector"]):
        args = parser("kubectl evergreen").parse_args([*argv, *extra(command)])
        assert (args.name, args.namespace, args.context, args.kubeconfig) == (
            "fraud-detector",
            namespace,
            context,
            config,
        )


def test_usage_names_the_command_as_typed(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        parser("kubectl evergreen").parse_args(["explain", "--help"])
    assert capsys.readouterr().out.startswith("usage: kubectl evergreen explain ")


def test_without_n_the_current_contexts_namespace(tmp_path: Path) -> None:
    config = str(kubeconfig(tmp_path / "config"))
    assert context_namespace(config) == "ml"
    assert context_namespace(config, "staging") == "ml-staging"
    assert context_namespace(config, "bare") == "default"


def test_kubeconfig_env_is_honoured(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KUBECONFIG", str(kubeconfig(tmp_path / "config", current="staging")))
    assert context_namespace() == "ml-staging"


def test_no_kubeconfig_means_default(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("KUBECONFIG", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    assert context_namespace() == "default"
