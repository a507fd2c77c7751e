"""Tests of the Helm chart, and the helpers they share to render it with the real helm binary.

Renders are memoised per values (``helm template`` takes ~0.2 s, mostly start-up): every test
gets its own deep copy, so a test may change what it was given.
"""

from __future__ import annotations

import atexit
import copy
import json
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

import yaml

from tests.support.binaries import k8s_tools

REPO = Path(__file__).resolve().parents[2]
CHART_DIR = REPO / "charts" / "evergreen"
RELEASE = "evergreen"
NAMESPACE = "evergreen-system"

Manifest = dict[str, Any]

#: Every optional feature on at once.
ALL_FEATURES: dict[str, Any] = {
    "serviceMonitor": {"enabled": True, "labels": {"release": "kube-prometheus-stack"}},
    "prometheusRule": {"enabled": True, "labels": {"release": "kube-prometheus-stack"}},
    "dashboard": {"enabled": True},
}


class HelmFailed(AssertionError):
    """helm exited non-zero; the message holds its stderr."""


@dataclass
class Chart:
    """The chart in the repository, rendered and linted by a real helm."""

    helm: Path
    home: Path
    _renders: dict[str, subprocess.CompletedProcess[str]] = field(default_factory=dict)

    def run(self, *args: str, values: Mapping[str, Any] | None = None) -> subprocess.CompletedProcess[str]:
        """``helm ARGS``, with ``values`` fed on stdin (``-f -``); never raises on failure."""
        command = [str(self.helm), *args]
        if values is not None:
            command += ["-f", "-"]
        return subprocess.run(
            command,
            input=json.dumps(values) if values is not None else None,
            capture_output=True,
            text=True,
            timeout=60,
            env=self._environment(),
            check=False,
        )

    def warm(self, variants: Iterable[Mapping[str, Any]]) -> None:
        """Render many values at once: helm spends most of its ~0.2 s starting up, not computing."""
        with ThreadPoolExecutor(max_workers=4) as pool:
            list(pool.map(self._template, variants))

    def template_text(self, values: Mapping[str, Any] | None = None) -> str:
        """``helm template --include-crds`` as YAML text; raises :class:`HelmFailed` with helm's error."""
        result = self._template(values or {})
        if result.returncode != 0:
            raise HelmFailed(result.stderr.strip())
        return result.stdout

    def render(
        self, values: Mapping[str, Any] | None = None, *, include_crds: bool = False
    ) -> list[Manifest]:
        """The rendered objects in helm's order; the CRDs from crds/ only with ``include_crds``."""
        manifests = _parse(self.template_text(values))
        return [
            copy.deepcopy(m) for m in manifests if include_crds or m["kind"] != "CustomResourceDefinition"
        ]

    def render_error(self, values: Mapping[str, Any]) -> str:
        """helm's error for values that must be refused (fails the test if they are accepted)."""
        try:
            self.template_text(values)
        except HelmFailed as error:
            return str(error)
        raise AssertionError(f"helm template accepted values it should refuse: {values}")

    def _template(self, values: Mapping[str, Any]) -> subprocess.CompletedProcess[str]:
        # CRDs are always rendered (one helm run per values); render() drops them on request.
        key = json.dumps(values, sort_keys=True)
        if key not in self._renders:
            self._renders[key] = self.run(
                "template", RELEASE, str(CHART_DIR), "--namespace", NAMESPACE, "--include-crds", values=values
            )
        return self._renders[key]

    def _environment(self) -> dict[str, str]:
        # Keep helm's config, cache and data out of the user's home directory.
        return {
            **os.environ,
            "HELM_CONFIG_HOME": str(self.home / "config"),
            "HELM_CACHE_HOME": str(self.home / "cache"),
            "HELM_DATA_HOME": str(self.home / "data"),
        }


@cache
def _parse(text: str) -> tuple[Manifest, ...]:
    return tuple(doc for doc in yaml.safe_load_all(text) if doc)


@cache
def repository_chart() -> Chart:
    """One :class:`Chart` per test session (the tools are downloaded on first use)."""
    home = Path(tempfile.mkdtemp(prefix="evergreen-helm-home-"))
    atexit.register(shutil.rmtree, home, ignore_errors=True)
    return Chart(helm=k8s_tools().helm, home=home)


def of_kind(manifests: list[Manifest], kind: str) -> list[Manifest]:
    return [m for m in manifests if m["kind"] == kind]


def one(manifests: list[Manifest], kind: str) -> Manifest:
    """The single object of ``kind``; fails naming how many there were."""
    found = of_kind(manifests, kind)
    assert len(found) == 1, f"expected one {kind}, found {len(found)}"
    return found[0]


def merged(*layers: Mapping[str, Any]) -> dict[str, Any]:
    """Values layered like repeated ``-f`` files: nested mappings merge, the rest is replaced."""
    result: dict[str, Any] = {}
    for layer in layers:
        for key, value in layer.items():
            if isinstance(value, Mapping) and isinstance(result.get(key), dict):
                result[key] = merged(result[key], value)
            else:
                result[key] = copy.deepcopy(value)
    return result


def rules_of(manifests: list[Manifest]) -> dict[str, Any]:
    """The PrometheusRule's ``.spec``: a plain Prometheus rules file."""
    spec: dict[str, Any] = one(manifests, "PrometheusRule")["spec"]
    return spec


def dashboard_of(manifests: list[Manifest]) -> dict[str, Any]:
    """The Grafana dashboard JSON held by the dashboard ConfigMap."""
    config_map = next(
        m for m in of_kind(manifests, "ConfigMap") if m["metadata"]["name"].endswith("dashboard")
    )
    (text,) = config_map["data"].values()
    dashboard: dict[str, Any] = json.loads(text)
    return dashboard
