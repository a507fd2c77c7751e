"""The chart's alerting rules, checked and unit-tested by a real ``promtool``.

The PrometheusRule's ``.spec`` is a plain rules file. Each case feeds series shaped like the
operator's own metrics (after a ServiceMonitor scrape with honorLabels) and states which
alerts fire when, with their labels and expanded annotations.
"""

from __future__ import annotations

import re
import subprocess
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest
import yaml

from evergreen.simulation.prometheus import PROMTOOL_ENV, BinaryNotFoundError, find_binary
from tests.chart import ALL_FEATURES, NAMESPACE, Chart, dashboard_of, one, repository_chart, rules_of

pytestmark = [pytest.mark.helm, pytest.mark.prometheus]

MODEL_NS = "ml"
MONITOR = "fraud-detector"
STATUSES = ("True", "False", "Unknown")

Labels = dict[str, str]


@pytest.fixture(scope="module")
def promtool() -> Path:
    try:
        return find_binary("promtool", PROMTOOL_ENV)
    except BinaryNotFoundError as error:
        pytest.skip(str(error))


@pytest.fixture(scope="module")
def chart() -> Chart:
    return repository_chart()


@pytest.fixture(scope="module")
def rules(chart: Chart) -> dict[str, Any]:
    return rules_of(chart.render(ALL_FEATURES))


@pytest.fixture(scope="module")
def job(chart: Chart) -> str:
    """The operator's scrape job: the metrics Service's name, as a ServiceMonitor makes it."""
    name: str = one(chart.render(ALL_FEATURES), "Service")["metadata"]["name"]
    return name


@pytest.fixture
def rules_file(tmp_path: Path, rules: dict[str, Any]) -> Path:
    path = tmp_path / "evergreen.rules.yaml"
    path.write_text(yaml.safe_dump(rules, sort_keys=False))
    return path


def _alerts(rules: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    return {rule["alert"]: rule for group in rules["groups"] for rule in group["rules"]}


def _series(name: str, labels: Labels, values: str) -> dict[str, str]:
    selector = ", ".join(f'{key}="{value}"' for key, value in labels.items())
    return {"series": f"{name}{{{selector}}}", "values": values}


def _expand(template: str, labels: Labels, value: float | None = None) -> str:
    """What Prometheus makes of the annotation templates these rules use."""
    text = re.sub(r"\{\{ \$labels\.(\w+) \}\}", lambda m: labels[m.group(1)], template)
    if value is not None:
        text = text.replace("{{ $value | humanizePercentage }}", f"{value * 100:g}%")
    assert "{{" not in text, f"a template this helper does not know: {text}"
    return text


class Cases:
    """Builds a promtool unit-test file from the rendered rules."""

    def __init__(self, rules: Mapping[str, Any], job: str) -> None:
        self.alerts = _alerts(rules)
        self.job = job
        self.tests: list[dict[str, Any]] = []
        self.covered: set[str] = set()

    def monitor_labels(self, **extra: str) -> Labels:
        return {"job": self.job, "namespace": MODEL_NS, "monitor": MONITOR, **extra}

    def expect(self, alert: str, labels: Labels, value: float | None = None) -> dict[str, Any]:
        """An expected firing alert: its labels, and its annotations expanded for them."""
        rule = self.alerts[alert]
        all_labels = {**labels, **rule["labels"]}
        annotations = {key: _expand(text, all_labels, value) for key, text in rule["annotations"].items()}
        return {"exp_labels": all_labels, "exp_annotations": annotations}

    def add(self, series: list[dict[str, str]], checks: list[tuple[str, str, list[dict[str, Any]]]]) -> None:
        """One test group: input series and (eval_time, alertname, expected alerts) checks."""
        self.tests.append(
            {
                "interval": "1m",
                "input_series": series,
                "alert_rule_test": [
                    {"eval_time": at, "alertname": name, "exp_alerts": expected}
                    for at, name, expected in checks
                ],
            }
        )
        self.covered |= {name for _, name, expected in checks if expected}

    def write(self, directory: Path, rules_file: Path) -> Path:
        path = directory / "evergreen.rules.test.yaml"
        document = {"rule_files": [str(rules_file)], "evaluation_interval": "1m", "tests": self.tests}
        path.write_text(yaml.safe_dump(document, sort_keys=False))
        return path


def _condition_cases(cases: Cases) -> None:
    """Each condition alert fires once its condition has held for the rule's `for`, not before."""
    for alert, kind, status in [
        ("EvergreenMetricsUnavailable", "MetricsAvailable", "False"),
        ("EvergreenModelDrifting", "Drifting", "True"),
        ("EvergreenPredictionDrifting", "PredictionDrifting", "True"),
        ("EvergreenDataQualityDegraded", "DataQualityDegraded", "True"),
        ("EvergreenKPIBreached", "KPIBreached", "True"),
    ]:
        minutes = int(cases.alerts[alert]["for"].removesuffix("m"))
        # The operator exports 1 for the current status and 0 for the other two.
        series = [
            _series(
                "evergreen_condition",
                cases.monitor_labels(type=kind, status=other),
                "1x40" if other == status else "0x40",
            )
            for other in STATUSES
        ]
        labels = cases.monitor_labels(type=kind, status=status)
        cases.add(
            series,
            [
                (f"{minutes - 1}m", alert, []),
                (f"{minutes + 1}m", alert, [cases.expect(alert, labels)]),
            ],
        )


def _decision_cases(cases: Cases) -> None:
    """Decision alerts fire while the monitor is in that decision, and stop when it leaves it."""
    decisions = [("EvergreenDataQualityHold", "HoldForDataQuality"), ("EvergreenEscalated", "Escalate")]
    for alert, action in decisions:
        labels = cases.monitor_labels(action=action)
        series = [
            _series("evergreen_decision", labels, "0x5 1x10 0x10"),
            _series("evergreen_decision", cases.monitor_labels(action="Watch"), "1x5 0x20"),
        ]
        cases.add(
            series,
            [
                ("3m", alert, []),
                ("8m", alert, [cases.expect(alert, labels)]),
                ("20m", alert, []),
            ],
        )


def _build_cases(rules: Mapping[str, Any], job: str) -> Cases:
    cases = Cases(rules, job)
    _condition_cases(cases)
    _decision_cases(cases)

    # A condition that held for less than `for` and then cleared never fires.
    drifting = cases.monitor_labels(type="Drifting", status="True")
    cases.add(
        [_series("evergreen_condition", drifting, "1x10 0x30")],
        [("12m", "EvergreenModelDrifting", []), ("30m", "EvergreenModelDrifting", [])],
    )

    # The operator: never scraped; scraped and then down; healthy.
    target = {"job": job, "namespace": NAMESPACE, "instance": "10.0.0.7:8000"}
    down = cases.expect("EvergreenOperatorDown", {})
    cases.add([], [("3m", "EvergreenOperatorDown", []), ("6m", "EvergreenOperatorDown", [down])])
    cases.add(
        [_series("up", target, "1x10 0x20")],
        [("14m", "EvergreenOperatorDown", []), ("20m", "EvergreenOperatorDown", [down])],
    )
    cases.add([_series("up", target, "1x30")], [("20m", "EvergreenOperatorDown", [])])

    # Evaluations: every one failing fires; one in four failing does not (ratio 0.5).
    def evaluations(ok_per_minute: int, failed_per_minute: int) -> list[dict[str, str]]:
        return [
            _series(
                "evergreen_evaluations_total", cases.monitor_labels(outcome="ok"), f"0+{ok_per_minute}x40"
            ),
            _series(
                "evergreen_evaluations_total",
                cases.monitor_labels(outcome="unavailable"),
                f"0+{failed_per_minute}x40",
            ),
        ]

    monitor = {"namespace": MODEL_NS, "monitor": MONITOR}
    cases.add(
        evaluations(0, 1),
        [
            ("10m", "EvergreenEvaluationsFailing", []),
            (
                "20m",
                "EvergreenEvaluationsFailing",
                [cases.expect("EvergreenEvaluationsFailing", monitor, 1.0)],
            ),
        ],
    )
    cases.add(evaluations(3, 1), [("30m", "EvergreenEvaluationsFailing", [])])

    # Prometheus queries: a quarter failing fires (ratio 0.1); one in a hundred does not.
    def queries(ok_per_minute: int, failed_per_minute: int) -> list[dict[str, str]]:
        return [
            _series(
                "evergreen_prometheus_queries_total", {**target, "outcome": "ok"}, f"0+{ok_per_minute}x40"
            ),
            _series(
                "evergreen_prometheus_queries_total",
                {**target, "outcome": "unavailable"},
                f"0+{failed_per_minute}x40",
            ),
        ]

    operator = {"job": job, "namespace": NAMESPACE}
    cases.add(
        queries(3, 1),
        [
            ("10m", "EvergreenPrometheusQueryErrors", []),
            (
                "20m",
                "EvergreenPrometheusQueryErrors",
                [cases.expect("EvergreenPrometheusQueryErrors", operator, 0.25)],
            ),
        ],
    )
    cases.add(queries(99, 1), [("30m", "EvergreenPrometheusQueryErrors", [])])
    return cases


def _promtool(promtool: Path, *args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(promtool), *map(str, args)], capture_output=True, text=True, timeout=60, check=False
    )


def test_the_rules_are_valid(promtool: Path, rules_file: Path) -> None:
    result = _promtool(promtool, "check", "rules", rules_file)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS: 10 rules found" in result.stdout


def test_the_alerts_fire_when_and_only_when_they_should(
    promtool: Path, rules_file: Path, rules: dict[str, Any], job: str, tmp_path: Path
) -> None:
    cases = _build_cases(rules, job)
    assert cases.covered == set(cases.alerts), (
        f"alerts without a firing case: {set(cases.alerts) - cases.covered}"
    )
    result = _promtool(promtool, "test", "rules", cases.write(tmp_path, rules_file))
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_drift_alert_reads_well(rules: dict[str, Any], job: str) -> None:
    cases = Cases(rules, job)
    expected = cases.expect("EvergreenModelDrifting", cases.monitor_labels(type="Drifting", status="True"))
    assert expected["exp_labels"]["severity"] == "warning"
    assert expected["exp_annotations"]["summary"] == "Model of ModelMonitor ml/fraud-detector is drifting"
    assert "kubectl -n ml describe modelmonitor fraud-detector" in expected["exp_annotations"]["description"]


def test_a_wrong_expectation_fails(
    promtool: Path, rules_file: Path, rules: dict[str, Any], job: str, tmp_path: Path
) -> None:
    """The harness itself can fail: an alert expected too early is reported."""
    cases = Cases(rules, job)
    labels = cases.monitor_labels(type="KPIBreached", status="True")
    cases.add(
        [_series("evergreen_condition", labels, "1x20")],
        [("2m", "EvergreenKPIBreached", [cases.expect("EvergreenKPIBreached", labels)])],
    )
    result = _promtool(promtool, "test", "rules", cases.write(tmp_path, rules_file))
    assert result.returncode != 0
    assert "EvergreenKPIBreached" in result.stdout + result.stderr


def _dashboard_queries(dashboard: Mapping[str, Any]) -> Iterator[tuple[str, str]]:
    for panel in dashboard["panels"]:
        for target in panel.get("targets", []):
            yield panel["title"], target["expr"]
    for variable in dashboard["templating"]["list"]:
        if variable["type"] == "query":
            # label_values(selector, label): the selector must be valid PromQL.
            match = re.fullmatch(r"label_values\((.+), \w+\)", variable["definition"])
            assert match, variable["definition"]
            yield f"variable {variable['name']}", match.group(1)


def test_the_dashboard_queries_are_valid_promql(chart: Chart, promtool: Path, tmp_path: Path) -> None:
    """Every dashboard query, with Grafana's variables filled in, parses as PromQL."""
    grafana = {"$__rate_interval": "5m", "$job": ".+", "$namespace": ".+", "$monitor": ".+"}
    rules = []
    for index, (title, query) in enumerate(_dashboard_queries(dashboard_of(chart.render(ALL_FEATURES)))):
        expr = query
        for variable, value in grafana.items():
            expr = expr.replace(variable, value)
        assert "$" not in expr, f"{title}: unknown variable in {expr}"
        rules.append({"record": f"dashboard:query_{index}", "expr": expr})
    path = tmp_path / "dashboard.rules.yaml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}))
    result = _promtool(promtool, "check", "rules", path)
    assert result.returncode == 0, result.stdout + result.stderr
