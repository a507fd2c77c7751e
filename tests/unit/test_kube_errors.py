"""How the API server's refusals are classified (answers as kube-apiserver 1.36 sends them)."""

from __future__ import annotations

import json

from kubernetes.client.exceptions import ApiException

from evergreen.kube.client import _failed_test


def refusal(status: int, body: dict[str, object]) -> ApiException:
    error = ApiException(status=status, reason="Unprocessable Entity")
    error.body = json.dumps(body)
    return error


def test_a_failed_test_operation_is_a_conflict() -> None:
    # What the server answers when a JSON patch's test operation does not hold.
    body = {
        "kind": "Status",
        "status": "Failure",
        "message": "the server rejected our request due to an error in our request",
        "reason": "Invalid",
        "details": {},
        "code": 422,
    }
    assert _failed_test(refusal(422, body))


def test_an_invalid_object_is_not_a_conflict() -> None:
    body = {
        "kind": "Status",
        "message": 'ModelMonitor.evergreen.dev "fraud" is invalid: status.decision.action: Unsupported value',
        "reason": "Invalid",
        "details": {"causes": [{"reason": "FieldValueNotSupported", "field": "status.decision.action"}]},
        "code": 422,
    }
    assert not _failed_test(refusal(422, body))
    assert not _failed_test(refusal(409, {"reason": "Conflict"}))
