"""Retraining workloads: rendering any workload kind from the template, and reading its outcome."""

from __future__ import annotations

import copy
import json
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from types import MappingProxyType
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from evergreen.actuators.workload_outcome import (
    RunResult,
    WorkloadPhase,
    latest_termination_message,
    parse_result,
    read_field,
    termination_message,
    workload_result,
    workload_state,
)
from evergreen.actuators.workload_template import (
    RunContext,
    monitor_label_value,
    render_workload,
    run_selector,
)
from evergreen.api.retraining import Candidate, CompletionRule, ResultSource, RetrainingSpec
from evergreen.errors import EvergreenError, ResultError, SpecError

T0 = datetime(2026, 1, 12, 10, 0, tzinfo=UTC)
UID = "6f1c2d4e-0000-4000-8000-000000000001"

CONTEXT = RunContext(
    namespace="ml",
    monitor="fraud-detector",
    monitor_uid=UID,
    model="fraud",
    run=3,
    workload_name="fraud-detector-r3",
    trigger="FeatureDrift",
    now=T0,
    current_version="v12",
    features=["amount", "merchant,category"],
    segments=["browser=firefox,country=de", "browser=chrome"],
    window_start=T0 - timedelta(hours=1),
    window_end=T0,
    baseline_start=T0 - timedelta(days=14),
    baseline_end=datetime(2026, 1, 5, 11, 0, 0, 500000, tzinfo=UTC),
    request_id="ticket-42",
)

#: What every container must carry for CONTEXT.
EXPECTED_ENV = {
    "EVERGREEN_MODEL": "fraud",
    "EVERGREEN_MONITOR": "ml/fraud-detector",
    "EVERGREEN_RUN": "3",
    "EVERGREEN_CURRENT_VERSION": "v12",
    "EVERGREEN_TRIGGER": "FeatureDrift",
    "EVERGREEN_DRIFTED_FEATURES": "amount,merchant%2Ccategory",
    "EVERGREEN_DRIFTED_SEGMENTS": "browser=firefox,country=de;browser=chrome",
    "EVERGREEN_WINDOW_START": "2026-01-12T09:00:00Z",
    "EVERGREEN_WINDOW_END": "2026-01-12T10:00:00Z",
    "EVERGREEN_BASELINE_START": "2025-12-29T10:00:00Z",
    "EVERGREEN_BASELINE_END": "2026-01-05T11:00:00.500000Z",
    "EVERGREEN_REQUEST_ID": "ticket-42",
}

JOB: dict[str, Any] = {
    "apiVersion": "batch/v1",
    "kind": "Job",
    "metadata": {
        "labels": {"team": "fraud", "app.kubernetes.io/managed-by": "Helm"},
        "annotations": {"owner": "ml-platform", "evergreen.dev/trigger": "set by hand"},
    },
    "spec": {
        "backoffLimit": 1,
        "template": {
            "metadata": {"labels": {"app": "trainer"}},
            "spec": {
                "restartPolicy": "Never",
                "initContainers": [
                    {
                        "name": "fetch",
                        "image": "registry.example/fetch:2",
                        "args": ["--window=$(EVERGREEN_WINDOW_START)"],
                    }
                ],
                "containers": [
                    {
                        "name": "trainer",
                        "image": "registry.example/trainer:1.4",
                        "env": [
                            {"name": "EVERGREEN_MODEL", "value": "fraud-shadow"},
                            {"name": "EPOCHS", "value": "3"},
                        ],
                        "resources": {"limits": {"nvidia.com/gpu": "1"}},
                    },
                    {"name": "exporter", "image": "registry.example/exporter:0.3"},
                ],
            },
        },
    },
}
JOB_CONTAINERS = [
    "spec.template.spec.initContainers.0",
    "spec.template.spec.containers.0",
    "spec.template.spec.containers.1",
]

PYTORCH_JOB: dict[str, Any] = {
    "apiVersion": "kubeflow.org/v1",
    "kind": "PyTorchJob",
    "spec": {
        "pytorchReplicaSpecs": {
            "Master": {
                "replicas": 1,
                "restartPolicy": "OnFailure",
                "template": {
                    "spec": {
                        "containers": [
                            {
                                "name": "pytorch",
                                "image": "registry.example/trainer:1.4",
                                "command": ["torchrun"],
                            }
                        ]
                    }
                },
            },
            "Worker": {
                "replicas": 2,
                "restartPolicy": "OnFailure",
                "template": {
                    "metadata": {"annotations": {"sidecar.istio.io/inject": "false"}},
                    "spec": {"containers": [{"name": "pytorch", "image": "registry.example/trainer:1.4"}]},
                },
            },
        }
    },
}
PYTORCH_CONTAINERS = [
    "spec.pytorchReplicaSpecs.Master.template.spec.containers.0",
    "spec.pytorchReplicaSpecs.Worker.template.spec.containers.0",
]

WORKFLOW: dict[str, Any] = {
    "apiVersion": "argoproj.io/v1alpha1",
    "kind": "Workflow",
    "spec": {
        "entrypoint": "main",
        "templates": [
            {
                "name": "main",
                "steps": [
                    [{"name": "prepare", "template": "prepare"}],
                    [{"name": "train", "template": "train"}],
                ],
            },
            {
                "name": "prepare",
                "script": {"image": "python:3.11", "command": ["python"], "source": "print('hi')"},
            },
            {
                "name": "train",
                "container": {"image": "registry.example/trainer:1.4", "args": ["--epochs", "3"]},
                "sidecars": [{"name": "metrics", "image": "registry.example/exporter:0.3"}],
            },
        ],
    },
}
WORKFLOW_CONTAINERS = ["spec.templates.1.script", "spec.templates.2.container", "spec.templates.2.sidecars.0"]

RAY_JOB: dict[str, Any] = {
    "apiVersion": "ray.io/v1",
    "kind": "RayJob",
    "spec": {
        "entrypoint": "python /app/train.py",
        "shutdownAfterJobFinishes": True,
        "rayClusterSpec": {
            "headGroupSpec": {
                "rayStartParams": {"dashboard-host": "0.0.0.0"},
                "template": {"spec": {"containers": [{"name": "ray-head", "image": "rayproject/ray:2.9.0"}]}},
            },
            "workerGroupSpecs": [
                {
                    "groupName": "gpu",
                    "replicas": 2,
                    "rayStartParams": {},
                    "template": {
                        "spec": {"containers": [{"name": "ray-worker", "image": "rayproject/ray:2.9.0-gpu"}]}
                    },
                }
            ],
        },
        "submitterPodTemplate": {
            "spec": {
                "restartPolicy": "Never",
                "containers": [{"name": "submitter", "image": "rayproject/ray:2.9.0"}],
            }
        },
    },
}
RAY_CONTAINERS = [
    "spec.rayClusterSpec.headGroupSpec.template.spec.containers.0",
    "spec.rayClusterSpec.workerGroupSpecs.0.template.spec.containers.0",
    "spec.submitterPodTemplate.spec.containers.0",
]

KINDS = {
    "Job": (JOB, JOB_CONTAINERS),
    "PyTorchJob": (PYTORCH_JOB, PYTORCH_CONTAINERS),
    "Workflow": (WORKFLOW, WORKFLOW_CONTAINERS),
    "RayJob": (RAY_JOB, RAY_CONTAINERS),
}
#: Pod specs that must carry the service account (the Workflow's is its spec).
POD_SPECS = {
    "Job": ["spec.template.spec"],
    "PyTorchJob": [
        "spec.pytorchReplicaSpecs.Master.template.spec",
        "spec.pytorchReplicaSpecs.Worker.template.spec",
    ],
    "Workflow": ["spec"],
    "RayJob": [
        "spec.rayClusterSpec.headGroupSpec.template.spec",
        "spec.rayClusterSpec.workerGroupSpecs.0.template.spec",
        "spec.submitterPodTemplate.spec",
    ],
}
#: Where the pods' labels come from.
POD_TEMPLATES = {
    "Job": ["spec.template"],
    "PyTorchJob": ["spec.pytorchReplicaSpecs.Master.template", "spec.pytorchReplicaSpecs.Worker.template"],
    "Workflow": ["spec.templates.1", "spec.templates.2"],
    "RayJob": [
        "spec.rayClusterSpec.headGroupSpec.template",
        "spec.rayClusterSpec.workerGroupSpecs.0.template",
        "spec.submitterPodTemplate",
    ],
}


def at(obj: Any, path: str) -> Any:
    """Follow a dotted path where numbers index lists (test-side, independent of the code under test)."""
    for part in path.split("."):
        obj = obj[int(part)] if isinstance(obj, list) else obj[part]
    return obj


def field_of(path: str) -> str:
    """The SpecError field of a test path: ``spec.templates.2`` -> ``...template.spec.templates[2]``."""
    rendered = "spec.retraining.template"
    for part in path.split("."):
        rendered += f"[{part}]" if part.isdigit() else f".{part}"
    return rendered


def env_of(container: Mapping[str, Any]) -> dict[str, str]:
    names = [entry["name"] for entry in container["env"]]
    assert len(names) == len(set(names)), f"duplicate env vars: {names}"
    return {entry["name"]: entry.get("value") for entry in container["env"]}


def context(**changes: Any) -> RunContext:
    fields = {name: getattr(CONTEXT, name) for name in CONTEXT.__dataclass_fields__}
    return RunContext(**{**fields, **changes})


def spec_error(template: Mapping[str, Any], ctx: RunContext = CONTEXT) -> SpecError:
    with pytest.raises(SpecError) as caught:
        render_workload(template, ctx)
    return caught.value


def with_change(template: Mapping[str, Any], path: str, value: Any) -> dict[str, Any]:
    changed = copy.deepcopy(dict(template))
    *parents, last = path.split(".")
    holder = at(changed, ".".join(parents)) if parents else changed
    if isinstance(holder, list):
        holder[int(last)] = value
    else:
        holder[last] = value
    return changed


# --- rendering: identity of the object --------------------------------------------------------


def test_job_is_named_labelled_and_owned_by_the_monitor() -> None:
    job = render_workload(JOB, CONTEXT)

    metadata = job["metadata"]
    assert (metadata["name"], metadata["namespace"]) == ("fraud-detector-r3", "ml")
    assert metadata["labels"] == {
        "team": "fraud",
        "app.kubernetes.io/managed-by": "Helm",  # the user's label wins
        "evergreen.dev/monitor": "fraud-detector",
        "evergreen.dev/run": "3",
    }
    assert metadata["ownerReferences"] == [
        {
            "apiVersion": "evergreen.dev/v1alpha1",
            "kind": "ModelMonitor",
            "name": "fraud-detector",
            "uid": UID,
            "controller": True,
            "blockOwnerDeletion": True,
        }
    ]
    assert job["spec"]["backoffLimit"] == 1 and "activeDeadlineSeconds" not in job["spec"]


def test_workload_without_labels_gets_managed_by_evergreen() -> None:
    workload = render_workload(PYTORCH_JOB, CONTEXT)
    assert workload["metadata"]["labels"]["app.kubernetes.io/managed-by"] == "evergreen"
    assert workload["metadata"]["name"] == "fraud-detector-r3"


def test_annotations_carry_the_context_and_user_annotations_win() -> None:
    annotations = render_workload(JOB, CONTEXT)["metadata"]["annotations"]
    assert annotations == {
        "owner": "ml-platform",
        "evergreen.dev/trigger": "set by hand",
        "evergreen.dev/model": "fraud",
        "evergreen.dev/features": "amount,merchant%2Ccategory",
        "evergreen.dev/segments": "browser=firefox,country=de;browser=chrome",
        "evergreen.dev/current-version": "v12",
        "evergreen.dev/window-start": "2026-01-12T09:00:00Z",
        "evergreen.dev/window-end": "2026-01-12T10:00:00Z",
        "evergreen.dev/baseline-start": "2025-12-29T10:00:00Z",
        "evergreen.dev/baseline-end": "2026-01-05T11:00:00.500000Z",
        "evergreen.dev/request-id": "ticket-42",
        "evergreen.dev/created-at": "2026-01-12T10:00:00Z",
    }


def test_a_template_naming_the_same_workload_is_accepted() -> None:
    same = with_change(JOB, "metadata.name", "fraud-detector-r3")
    same["metadata"]["namespace"] = "ml"
    assert render_workload(same, CONTEXT)["metadata"]["name"] == "fraud-detector-r3"


def test_long_monitor_names_become_valid_label_values() -> None:
    long_name = "fraud-detector-for-the-card-payments-platform-in-europe-and-the-americas"
    value = monitor_label_value(long_name)
    assert len(value) <= 63 and value[-1].isalnum() and value == monitor_label_value(long_name)
    assert value != monitor_label_value(long_name + "x")
    assert monitor_label_value("fraud-detector") == "fraud-detector"
    assert run_selector(long_name, 7) == {"evergreen.dev/monitor": value, "evergreen.dev/run": "7"}
    assert run_selector("m") == {"evergreen.dev/monitor": "m"}
    workload = render_workload(JOB, context(monitor=long_name))
    assert workload["metadata"]["labels"]["evergreen.dev/monitor"] == value
    assert workload["metadata"]["ownerReferences"][0]["name"] == long_name


# --- rendering: containers of any kind -------------------------------------------------------


@pytest.mark.parametrize("kind", list(KINDS))
def test_every_container_gets_every_variable(kind: str) -> None:
    template, paths = KINDS[kind]
    workload = render_workload(template, CONTEXT)
    for path in paths:
        env = env_of(at(workload, path))
        for name, value in EXPECTED_ENV.items():
            if (kind, path, name) != ("Job", "spec.template.spec.containers.0", "EVERGREEN_MODEL"):
                assert env[name] == value, f"{path}: {name}"


@pytest.mark.parametrize("kind", list(KINDS))
def test_pod_templates_are_labelled_for_run_selection(kind: str) -> None:
    template, _ = KINDS[kind]
    workload = render_workload(template, CONTEXT)
    for path in POD_TEMPLATES[kind]:
        labels = at(workload, path)["metadata"]["labels"]
        assert labels.items() >= {"evergreen.dev/monitor": "fraud-detector", "evergreen.dev/run": "3"}.items()
    if kind == "Job":
        assert workload["spec"]["template"]["metadata"]["labels"]["app"] == "trainer"
    if kind == "PyTorchJob":
        worker = workload["spec"]["pytorchReplicaSpecs"]["Worker"]["template"]["metadata"]
        assert worker["annotations"] == {"sidecar.istio.io/inject": "false"}


def test_user_environment_wins_and_comes_after_evergreens() -> None:
    trainer = render_workload(JOB, CONTEXT)["spec"]["template"]["spec"]["containers"][0]
    env = env_of(trainer)
    assert env["EVERGREEN_MODEL"] == "fraud-shadow"
    assert env["EPOCHS"] == "3"
    # The template's own variables follow, so they may refer to $(EVERGREEN_...).
    names = [entry["name"] for entry in trainer["env"]]
    assert names[-2:] == ["EVERGREEN_MODEL", "EPOCHS"]
    assert names[0] == "EVERGREEN_MONITOR"


def test_unknown_values_are_left_out_and_empty_scope_means_everything() -> None:
    sparse = context(
        current_version=None,
        features=(),
        segments=(),
        window_start=None,
        window_end=None,
        baseline_start=None,
        baseline_end=None,
        request_id=None,
        trigger="Manual:ticket-7",
    )
    workload = render_workload(PYTORCH_JOB, sparse)
    env = env_of(at(workload, PYTORCH_CONTAINERS[0]))
    assert env == {
        "EVERGREEN_MODEL": "fraud",
        "EVERGREEN_MONITOR": "ml/fraud-detector",
        "EVERGREEN_RUN": "3",
        "EVERGREEN_TRIGGER": "Manual:ticket-7",
        "EVERGREEN_DRIFTED_FEATURES": "",
        "EVERGREEN_DRIFTED_SEGMENTS": "",
    }
    annotations = workload["metadata"]["annotations"]
    assert (
        "evergreen.dev/current-version" not in annotations and "evergreen.dev/window-start" not in annotations
    )


def test_times_are_written_in_utc() -> None:
    cet = datetime(2026, 1, 12, 11, 0, tzinfo=UTC).astimezone(ZoneInfo("Europe/Berlin"))
    env = env_of(at(render_workload(JOB, context(window_end=cet)), JOB_CONTAINERS[1]))
    assert env["EVERGREEN_WINDOW_END"] == "2026-01-12T11:00:00Z"


def test_naive_times_are_refused() -> None:
    with pytest.raises(ValueError, match="window_end"):
        context(window_end=datetime(2026, 1, 12))


@pytest.mark.parametrize("kind", list(KINDS))
def test_the_template_is_not_mutated(kind: str) -> None:
    template, _ = KINDS[kind]
    before = copy.deepcopy(template)
    first = render_workload(template, context(service_account="fraud-trainer"))
    assert template == before
    assert render_workload(template, context(service_account="fraud-trainer")) == first


def test_read_only_mappings_are_accepted() -> None:
    frozen = MappingProxyType({**PYTORCH_JOB, "metadata": MappingProxyType({"labels": {"team": "fraud"}})})
    workload = render_workload(frozen, CONTEXT)
    assert workload["metadata"]["labels"]["team"] == "fraud"
    json.dumps(workload)  # plain JSON-ready types throughout


def test_a_validated_spec_template_renders() -> None:
    spec = RetrainingSpec.model_validate({"template": JOB, "validation": {"metric": "auc"}})
    assert render_workload(spec.template, CONTEXT)["kind"] == "Job"


# --- rendering: identity ---------------------------------------------------------------------


@pytest.mark.parametrize("kind", list(KINDS))
def test_service_account_is_set_on_every_pod_spec(kind: str) -> None:
    template, _ = KINDS[kind]
    workload = render_workload(template, context(service_account="fraud-trainer"))
    for path in POD_SPECS[kind]:
        assert at(workload, path)["serviceAccountName"] == "fraud-trainer", path
    assert "automountServiceAccountToken" not in json.dumps(workload)
    assert json.dumps(workload).count("fraud-trainer") == len(POD_SPECS[kind])


@pytest.mark.parametrize("kind", list(KINDS))
def test_without_a_service_account_identity_is_left_alone(kind: str) -> None:
    template, _ = KINDS[kind]
    assert "serviceAccount" not in json.dumps(render_workload(template, CONTEXT))


@pytest.mark.parametrize(
    ("template", "path", "key"),
    [
        (JOB, "spec.template.spec", "serviceAccountName"),
        (JOB, "spec.template.spec", "serviceAccount"),
        (PYTORCH_JOB, "spec.pytorchReplicaSpecs.Worker.template.spec", "serviceAccountName"),
        (WORKFLOW, "spec", "serviceAccountName"),
        (WORKFLOW, "spec.templates.2", "serviceAccountName"),
        (RAY_JOB, "spec.rayClusterSpec.workerGroupSpecs.0.template.spec", "serviceAccountName"),
    ],
)
def test_a_different_service_account_is_refused_with_its_path(
    template: dict[str, Any], path: str, key: str
) -> None:
    changed = with_change(template, f"{path}.{key}", "cluster-admin-sa")
    error = spec_error(changed, context(service_account="fraud-trainer"))
    assert error.field == field_of(f"{path}.{key}")
    assert "cluster-admin-sa" in error.message and "fraud-trainer" in error.message


def test_the_same_service_account_in_the_template_is_fine() -> None:
    same = with_change(JOB, "spec.template.spec.serviceAccountName", "fraud-trainer")
    workload = render_workload(same, context(service_account="fraud-trainer"))
    assert workload["spec"]["template"]["spec"]["serviceAccountName"] == "fraud-trainer"


def test_a_container_outside_any_pod_spec_cannot_get_an_identity() -> None:
    odd: dict[str, Any] = {
        "apiVersion": "pipelines.example.dev/v1",
        "kind": "TrainingRun",
        "spec": {"steps": [{"name": "train", "container": {"image": "registry.example/trainer:1.4"}}]},
    }
    rendered = render_workload(odd, CONTEXT)  # without identity it is fine: the env still goes in
    assert env_of(rendered["spec"]["steps"][0]["container"])["EVERGREEN_RUN"] == "3"
    error = spec_error(odd, context(service_account="fraud-trainer"))
    assert error.field == "spec.retraining.template.spec.steps[0].container"
    # Only Argo's Workflow is known to run its container templates as spec.serviceAccountName.
    not_argo = {**WORKFLOW, "apiVersion": "workflows.example.dev/v1"}
    assert spec_error(not_argo, context(service_account="fraud-trainer")).field == field_of(
        "spec.templates.1.script"
    )


# --- rendering: errors -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("template", "field", "fragment"),
    [
        (
            {"apiVersion": "v1", "kind": "Pod", "spec": {"containers": [{"image": "x"}]}},
            "kind",
            "wrap it in a Job",
        ),
        (
            {"apiVersion": "v1", "kind": "ReplicationController", "spec": {}},
            "apiVersion",
            "wrap the pod in a Job",
        ),
        ({"apiVersion": "apps/v1", "kind": "Deployment", "spec": {}}, "kind", "never finishes"),
        ({"kind": "Job", "spec": {}}, "apiVersion", "apiVersion"),
        ({"apiVersion": "batch/v1", "spec": {}}, "kind", "kind"),
        ({"apiVersion": "batch/v1", "kind": "Job", "spec": "run"}, "spec", "spec object"),
        (with_change(JOB, "metadata", ["labels"]), "metadata", "must be an object"),
        (with_change(JOB, "metadata.name", "my-job"), "metadata.name", "remove it"),
        (with_change(JOB, "metadata.namespace", "default"), "metadata.namespace", "monitor's namespace"),
        (with_change(JOB, "metadata.ownerReferences", []), "metadata.ownerReferences", "owner reference"),
        (with_change(JOB, "metadata.resourceVersion", "12"), "metadata.resourceVersion", "not a live object"),
        (with_change(JOB, "metadata.labels", {"tier": 2}), 'metadata.labels["tier"]', "quote it"),
        (with_change(JOB, "metadata.annotations", "x"), "metadata.annotations", "string values"),
        (with_change(JOB, "spec.template.metadata", "x"), "spec.template.metadata", "must be an object"),
        (
            with_change(JOB, "spec.template.metadata.labels", {"v": 1}),
            'spec.template.metadata.labels["v"]',
            "quote",
        ),
        (
            {
                "apiVersion": "batch/v1",
                "kind": "Job",
                "spec": {"template": {"spec": {"restartPolicy": "Never"}}},
            },
            "spec",
            "no container found",
        ),
        (
            {
                "apiVersion": "argoproj.io/v1alpha1",
                "kind": "Workflow",
                "spec": {"workflowTemplateRef": {"name": "t"}},
            },
            "spec",
            "no container found",
        ),
        (
            with_change(JOB, "spec.template.spec.containers.1", {"name": "exporter"}),
            "spec.template.spec.containers[1].image",
            "needs an image",
        ),
        (
            with_change(JOB, "spec.template.spec.initContainers.0.image", " "),
            "spec.template.spec.initContainers[0].image",
            "needs an image",
        ),
        (
            with_change(
                PYTORCH_JOB, "spec.pytorchReplicaSpecs.Worker.template.spec.containers.0", {"name": "w"}
            ),
            "spec.pytorchReplicaSpecs.Worker.template.spec.containers[0].image",
            "needs an image",
        ),
        (
            with_change(WORKFLOW, "spec.templates.2.sidecars.0", {"name": "metrics"}),
            "spec.templates[2].sidecars[0].image",
            "needs an image",
        ),
        (
            with_change(JOB, "spec.template.spec.initContainers", {"a": 1}),
            "spec.template.spec.initContainers",
            "list",
        ),
        (
            with_change(JOB, "spec.template.spec.initContainers.0", "fetch"),
            "spec.template.spec.initContainers[0]",
            "object",
        ),
        (
            with_change(JOB, "spec.template.spec.containers.1.env", {"A": "1"}),
            "spec.template.spec.containers[1].env",
            "must be a list",
        ),
        (
            with_change(JOB, "spec.template.spec.containers.1.env", [{"value": "1"}]),
            "spec.template.spec.containers[1].env[0]",
            "with a name",
        ),
    ],
)
def test_template_errors_name_the_field_and_the_fix(
    template: dict[str, Any], field: str, fragment: str
) -> None:
    error = spec_error(template)
    assert error.field == f"spec.retraining.template.{field}"
    assert fragment in error.message
    assert error.permanent


def test_errors_use_the_given_field_root() -> None:
    with pytest.raises(SpecError) as caught:
        render_workload({"apiVersion": "v1", "kind": "Pod", "spec": {}}, CONTEXT, field="template")
    assert caught.value.field == "template.kind"
    with pytest.raises(SpecError) as caught:
        render_workload(["not", "a", "mapping"], CONTEXT)  # type: ignore[arg-type]
    assert caught.value.field == "spec.retraining.template"


# --- outcome: states -------------------------------------------------------------------------

JOB_SUCCESS = CompletionRule(condition_type="Complete")
JOB_FAILURE = CompletionRule(condition_type="Failed")
ARGO_SUCCESS = CompletionRule(field_path="status.phase", values=["Succeeded"])
ARGO_FAILURE = CompletionRule(field_path="status.phase", values=["Failed", "Error"])


def job_with(*conditions: dict[str, str], **status: Any) -> dict[str, Any]:
    return {
        "kind": "Job",
        "metadata": {"name": "fraud-detector-r3"},
        "status": {"conditions": list(conditions), **status},
    }


def condition(
    kind: str, status: str = "True", at_time: str = "2026-01-12T11:30:00Z", **extra: str
) -> dict[str, str]:
    return {"type": kind, "status": status, "lastTransitionTime": at_time, **extra}


def test_a_job_without_status_is_running() -> None:
    state = workload_state({"kind": "Job", "metadata": {"name": "j"}}, JOB_SUCCESS, JOB_FAILURE)
    assert state.state is WorkloadPhase.RUNNING and not state.finished and state.finished_at is None
    assert "Complete" in state.message
    assert workload_state(job_with(active=1), JOB_SUCCESS, JOB_FAILURE).state is WorkloadPhase.RUNNING


def test_a_complete_job_succeeded_when_its_condition_turned_true() -> None:
    state = workload_state(
        job_with(condition("Complete", reason="CompletionsReached")), JOB_SUCCESS, JOB_FAILURE
    )
    assert state.state is WorkloadPhase.SUCCEEDED and state.finished
    assert state.finished_at == datetime(2026, 1, 12, 11, 30, tzinfo=UTC)
    assert state.message == "Complete: CompletionsReached"


def test_a_failed_job_reports_why() -> None:
    failed = condition(
        "Failed", reason="BackoffLimitExceeded", message="Job has reached the specified backoff limit"
    )
    state = workload_state(job_with(failed), JOB_SUCCESS, JOB_FAILURE)
    assert state.state is WorkloadPhase.FAILED
    assert state.message == "Failed: BackoffLimitExceeded: Job has reached the specified backoff limit"


def test_conditions_that_are_not_true_do_not_count() -> None:
    conditions = (condition("Failed", "False"), condition("Complete", "Unknown"), condition("Suspended"))
    assert workload_state(job_with(*conditions), JOB_SUCCESS, JOB_FAILURE).state is WorkloadPhase.RUNNING


def test_failure_is_checked_before_success() -> None:
    both = job_with(condition("Complete"), condition("Failed", reason="DeadlineExceeded"))
    assert workload_state(both, JOB_SUCCESS, JOB_FAILURE).state is WorkloadPhase.FAILED
    phase = {"status": {"phase": "Succeeded"}}
    overlapping = CompletionRule(field_path="status.phase", values=["Succeeded"])
    assert workload_state(phase, JOB_SUCCESS, overlapping).state is WorkloadPhase.FAILED


def test_end_time_falls_back_to_status_fields() -> None:
    completed = job_with(condition("Complete", at_time="garbage"), completionTime="2026-01-12T11:31:00Z")
    assert workload_state(completed, JOB_SUCCESS, JOB_FAILURE).finished_at == datetime(
        2026, 1, 12, 11, 31, tzinfo=UTC
    )


@pytest.mark.parametrize(
    ("phase", "expected"),
    [
        (None, WorkloadPhase.RUNNING),
        ("Pending", WorkloadPhase.RUNNING),
        ("Running", WorkloadPhase.RUNNING),
        ("Succeeded", WorkloadPhase.SUCCEEDED),
        ("Failed", WorkloadPhase.FAILED),
        ("Error", WorkloadPhase.FAILED),
    ],
)
def test_argo_workflows_by_phase(phase: str | None, expected: WorkloadPhase) -> None:
    workflow: dict[str, Any] = {"kind": "Workflow", "status": {}}
    if phase is not None:
        workflow["status"] = {"phase": phase, "finishedAt": "2026-01-12T12:00:00Z", "message": "child failed"}
    state = workload_state(workflow, ARGO_SUCCESS, ARGO_FAILURE)
    assert state.state is expected
    if expected is not WorkloadPhase.RUNNING:
        assert state.message == f"status.phase is {phase}: child failed"
        assert state.finished_at == datetime(2026, 1, 12, 12, tzinfo=UTC)


def test_field_rules_compare_scalars_by_their_json_text() -> None:
    done = CompletionRule(field_path="status.done", values=["true"])
    never = CompletionRule(field_path="status.broken", values=["true"])
    assert workload_state({"status": {"done": True}}, done, never).state is WorkloadPhase.SUCCEEDED
    assert workload_state({"status": {"done": {"a": 1}}}, done, never).state is WorkloadPhase.RUNNING


def test_read_field_follows_mapping_keys_only() -> None:
    obj = {"status": {"phase": "Running", "nodes": [{"phase": "Failed"}], "zero": 0}}
    assert read_field(obj, "status.phase") == "Running"
    assert read_field(obj, "status.zero") == 0
    assert read_field(obj, "status") == obj["status"]
    assert read_field(obj, "status.missing.deeper") is None
    assert read_field(obj, "status.phase.length") is None
    assert read_field(obj, "status.nodes.0.phase") is None


# --- outcome: termination messages -----------------------------------------------------------


def pod(name: str, *containers: dict[str, Any], init: tuple[dict[str, Any], ...] = ()) -> dict[str, Any]:
    return {
        "metadata": {"name": name},
        "status": {"initContainerStatuses": list(init), "containerStatuses": list(containers)},
    }


def terminated(name: str, message: str | None, finished: str | None, *, last: bool = False) -> dict[str, Any]:
    state: dict[str, Any] = {"exitCode": 0}
    if message is not None:
        state["message"] = message
    if finished is not None:
        state["finishedAt"] = finished
    if last:
        return {
            "name": name,
            "state": {"running": {"startedAt": finished}},
            "lastState": {"terminated": state},
        }
    return {"name": name, "state": {"terminated": state}}


def test_the_latest_finished_container_with_a_message_wins() -> None:
    pods = [
        pod(
            "fraud-r3-a",
            terminated("trainer", '{"v": 1}', "2026-01-12T10:05:00Z"),
            terminated("exporter", None, "2026-01-12T10:30:00Z"),
            init=(terminated("fetch", "fetched 1.2M rows", "2026-01-12T09:00:00Z"),),
        ),
        pod("fraud-r3-b", terminated("trainer", '{"v": 2}', "2026-01-12T10:20:00Z")),
        pod("fraud-r3-c", terminated("trainer", '{"v": 3}', "2026-01-12T10:10:00Z")),
        pod("fraud-r3-d", terminated("trainer", "   \n", "2026-01-12T11:00:00Z")),
        {"metadata": {"name": "pending"}},
    ]
    latest = latest_termination_message(pods)
    assert latest is not None
    assert (latest.pod, latest.container, latest.message) == ("fraud-r3-b", "trainer", '{"v": 2}')
    assert latest.source == "termination message of pod fraud-r3-b/trainer"
    assert latest.finished_at == datetime(2026, 1, 12, 10, 20, tzinfo=UTC)
    assert termination_message(pods) == '{"v": 2}'


def test_last_state_and_init_containers_count() -> None:
    restarted = pod("fraud-r3-a", terminated("trainer", '{"v": "last"}', "2026-01-12T10:40:00Z", last=True))
    assert (
        termination_message([pod("b", terminated("t", "x", "2026-01-12T10:00:00Z")), restarted])
        == '{"v": "last"}'
    )
    only_init = pod(
        "fraud-r3-a",
        terminated("trainer", None, "2026-01-12T10:00:00Z"),
        init=(terminated("fetch", "i", None),),
    )
    assert termination_message([only_init]) == "i"


def test_a_message_without_finish_time_ranks_oldest() -> None:
    pods = [
        pod("a", terminated("t", "timed", "2026-01-12T10:00:00Z")),
        pod("b", terminated("t", "untimed", None)),
    ]
    assert termination_message(pods) == "timed"


def test_no_termination_message() -> None:
    assert termination_message([]) is None
    assert (
        termination_message([pod("a", terminated("t", None, "2026-01-12T10:00:00Z")), {"status": None}])
        is None
    )


# --- outcome: results ------------------------------------------------------------------------

SOURCE = "termination message of pod fraud-r3-abc/trainer"


def test_a_good_result() -> None:
    result = parse_result('{"version": "v13", "metrics": {"auc": 0.91, "precision": 1}}', source=SOURCE)
    assert result == RunResult(Candidate(version="v13", metrics={"auc": 0.91, "precision": 1.0}))
    assert result.baseline is None


def test_a_result_with_its_baseline_as_a_mapping() -> None:
    raw = {
        "version": "2026-01-12.1",
        "metrics": {"auc": "0.91", "latency_p99_ms": " 38 "},
        "baseline": {"version": "v12", "metrics": {"auc": 0.89}},
        "notes": "ignored",
    }
    result = parse_result(raw, source=SOURCE)
    assert result.candidate == Candidate(
        version="2026-01-12.1", metrics={"auc": 0.91, "latency_p99_ms": 38.0}
    )
    assert result.baseline == Candidate(version="v12", metrics={"auc": 0.89})
    assert parse_result({**raw, "baseline": None}, source=SOURCE).baseline is None


@pytest.mark.parametrize(
    ("raw", "fragment"),
    [
        (None, "no result"),
        ("", "no result"),
        ("  \n", "no result"),
        ("Traceback (most recent call last):\n  OOMKilled", "not JSON"),
        ('{"version": "v13", "metrics": {"auc": 0.9}', "not JSON"),
        ("[1, 2]", "got an array"),
        ('"v13"', "got a string"),
        ({}, "version is missing"),
        ({"version": 13, "metrics": {"auc": 0.9}}, "version must be a string, got a number 13"),
        ({"version": "v" * 64, "metrics": {"auc": 0.9}}, "is not a model version"),
        ({"version": "models/fraud:v13", "metrics": {"auc": 0.9}}, "is not a model version"),
        ({"version": "-v13", "metrics": {"auc": 0.9}}, "is not a model version"),
        ({"version": "v 13", "metrics": {"auc": 0.9}}, "is not a model version"),
        ({"version": "v13"}, "metrics is missing"),
        ({"version": "v13", "metrics": [0.9]}, "metrics must be an object"),
        ({"version": "v13", "metrics": {}}, "metrics is empty"),
        ({"version": "v13", "metrics": {f"m{i}": 1 for i in range(65)}}, "at most 64"),
        (
            {"version": "v13", "metrics": {"auc": "high"}},
            "metrics.auc must be a finite number, got a string 'high'",
        ),
        ({"version": "v13", "metrics": {"auc": True}}, "metrics.auc must be a finite number, got a boolean"),
        ({"version": "v13", "metrics": {"auc": None}}, "metrics.auc must be a finite number, got null"),
        (
            {"version": "v13", "metrics": {"auc": {"value": 0.9}}},
            "metrics.auc must be a finite number, got an object",
        ),
        ({"version": "v13", "metrics": {"auc": "nan"}}, "metrics.auc must be a finite number"),
        ('{"version": "v13", "metrics": {"auc": NaN}}', "metrics.auc must be a finite number"),
        ({"version": "v13", "metrics": {"auc": "inf"}}, "metrics.auc must be a finite number"),
        ({"version": "v13", "metrics": {"f1 score": 0.8}}, "'f1 score' is not a metric name"),
        ({"version": "v13", "metrics": {"auc": 0.9}, "baseline": "v12"}, "baseline must be an object"),
        (
            {"version": "v13", "metrics": {"auc": 0.9}, "baseline": {"metrics": {"auc": 0.8}}},
            "baseline.version is missing",
        ),
        (
            {
                "version": "v13",
                "metrics": {"auc": 0.9},
                "baseline": {"version": "v12", "metrics": {"auc": "?"}},
            },
            "baseline.metrics.auc must be a finite number",
        ),
    ],
)
def test_malformed_results_say_where_and_what(raw: Any, fragment: str) -> None:
    with pytest.raises(ResultError) as caught:
        parse_result(raw, source=SOURCE)
    assert caught.value.source == SOURCE
    assert fragment in caught.value.message
    assert str(caught.value).startswith(SOURCE + ": ")
    assert isinstance(caught.value, EvergreenError) and caught.value.permanent


def test_a_non_json_message_is_quoted_briefly() -> None:
    with pytest.raises(ResultError) as caught:
        parse_result("x" * 500, source=SOURCE)
    assert "x" * 80 in caught.value.message and "x" * 81 not in caught.value.message


# --- outcome: reading the result where the spec says ------------------------------------------


def test_workload_result_from_termination_messages() -> None:
    pods = [
        pod(
            "fraud-r3-abc",
            terminated("trainer", '{"version": "v13", "metrics": {"auc": 0.91}}', "2026-01-12T10:00:00Z"),
        )
    ]
    result = workload_result(job_with(), pods, ResultSource())
    assert result.candidate.version == "v13"
    bad = [pod("fraud-r3-abc", terminated("trainer", "oops", "2026-01-12T10:00:00Z"))]
    with pytest.raises(ResultError, match="termination message of pod fraud-r3-abc/trainer: not JSON"):
        workload_result(job_with(), bad, ResultSource())
    with pytest.raises(ResultError, match="/dev/termination-log") as caught:
        workload_result(job_with(), [pod("p", terminated("t", None, None))], ResultSource())
    assert caught.value.source == "termination messages of 1 pod(s)"


def test_workload_result_from_a_field_wins_over_termination_messages() -> None:
    rule = ResultSource(field_path="status.outputs.result")
    as_text = {
        "kind": "Workflow",
        "metadata": {"name": "wf"},
        "status": {"outputs": {"result": '{"version": "v13", "metrics": {"auc": 0.9}}'}},
    }
    as_object = {
        "kind": "Workflow",
        "status": {"outputs": {"result": {"version": "v14", "metrics": {"auc": 0.9}}}},
    }
    assert workload_result(as_text, [], rule).candidate.version == "v13"
    assert workload_result(as_object, [], rule).candidate.version == "v14"
    with pytest.raises(ResultError) as caught:
        workload_result({"kind": "Workflow", "metadata": {"name": "wf"}}, [], rule)
    assert caught.value.source == "status.outputs.result of Workflow wf"


def test_workload_result_without_a_source() -> None:
    with pytest.raises(ResultError, match="names no source"):
        workload_result(job_with(), [], ResultSource(termination_message=False))
