"""Bad and partial answers over HTTP: each gives a named condition, never a crash.

A real Prometheus never sends truncated JSON, a proxy's HTML page or a made-up result type,
so these bodies come from a tiny local HTTP server that answers every request with fixed
bytes and a fixed status. The request goes through the real client stack (prometheus-api-
client's session, headers, auth) and the real decoder; well-formed answers are tested
against a real Prometheus in tests/integration/test_prometheus_source.py.
"""

from __future__ import annotations

import asyncio
import json
import math
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from evergreen.api.resource import parse_spec
from evergreen.errors import MetricsUnavailable, QueryRejected
from evergreen.observation.evaluate import ProblemKind, evaluate
from evergreen.signals.prometheus import Endpoint, PrometheusSource

AT = datetime(2026, 1, 10, tzinfo=UTC)


class FixedAnswers:
    """An HTTP server answering every request with ``status`` and ``body``; keeps the requests."""

    def __init__(self) -> None:
        self.status = 200
        self.body = b""
        self.content_type = "application/json"
        self.requests: list[tuple[str, dict[str, str]]] = []
        answers = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                answers.requests.append((self.path, dict(self.headers)))
                self.send_response(answers.status)
                self.send_header("Content-Type", answers.content_type)
                self.send_header("Content-Length", str(len(answers.body)))
                self.end_headers()
                self.wfile.write(answers.body)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def answer(
        self, body: bytes | dict[str, Any], status: int = 200, content_type: str = "application/json"
    ) -> None:
        self.body = json.dumps(body).encode() if isinstance(body, dict) else body
        self.status = status
        self.content_type = content_type


@pytest.fixture
def server() -> Iterator[FixedAnswers]:
    answers = FixedAnswers()
    answers.thread.start()
    yield answers
    answers.server.shutdown()
    answers.server.server_close()


@pytest.fixture
def source(server: FixedAnswers) -> Iterator[PrometheusSource]:
    client = PrometheusSource(
        Endpoint(
            url=server.url, headers={"X-Scope-OrgID": "team-a"}, basic_auth=("u", "p"), timeout_seconds=5
        )
    )
    yield client
    client.close()


def instant(source: PrometheusSource, query: str = "up", field: str = "spec.kpis[0].query") -> Any:
    return asyncio.run(source.instant(query, AT, field=field))


def vector(*series: tuple[dict[str, str], str], **extra: Any) -> dict[str, Any]:
    result = [{"metric": labels, "value": [AT.timestamp(), value]} for labels, value in series]
    return {"status": "success", "data": {"resultType": "vector", "result": result}, **extra}


def test_requests_carry_the_client_headers_and_auth(server: FixedAnswers, source: PrometheusSource) -> None:
    server.answer(vector(({"a": "1"}, "2")))
    assert instant(source).values.tolist() == [2.0]
    path, headers = server.requests[-1]
    assert path.startswith("/api/v1/query?") and "time=1768003200.000" in path
    assert headers["X-Scope-OrgID"] == "team-a" and headers["Authorization"].startswith("Basic ")


def test_range_requests_ask_for_the_grid(server: FixedAnswers, source: PrometheusSource) -> None:
    server.answer({"status": "success", "data": {"resultType": "matrix", "result": []}})
    answer = asyncio.run(source.range("up", AT, AT + timedelta(minutes=10), timedelta(minutes=5), field="f"))
    assert answer.times.size == 3 and answer.values.shape == (0, 3)
    path, _ = server.requests[-1]
    assert path.startswith("/api/v1/query_range?") and "step=300" in path


def test_truncated_json(server: FixedAnswers, source: PrometheusSource) -> None:
    server.answer(json.dumps(vector(({"a": "1"}, "2"))).encode()[:-7])
    with pytest.raises(MetricsUnavailable, match=r"not valid JSON for spec\.kpis\[0\]\.query.*proxy"):
        instant(source)


def test_a_warnings_field(server: FixedAnswers, source: PrometheusSource) -> None:
    server.answer(vector(({"a": "1"}, "2"), warnings=['PromQL warning: bucket label "le" is missing']))
    with pytest.raises(MetricsUnavailable, match=r"with warnings.*bucket label \"le\" is missing"):
        instant(source)


def test_nan_and_infinities(server: FixedAnswers, source: PrometheusSource) -> None:
    server.answer(vector(({"k": "a"}, "NaN"), ({"k": "b"}, "+Inf"), ({"k": "c"}, "-Inf")))
    values = instant(source).values
    assert math.isnan(values[0]) and values[1] == math.inf and values[2] == -math.inf


@pytest.mark.parametrize(
    ("status", "error", "message"),
    [
        (400, QueryRejected, r"rejected the query: bad_data: 1:5: parse error"),
        (422, QueryRejected, r"rejected the query: execution: 1:5: parse error"),
        (503, MetricsUnavailable, r"answered HTTP 503: unavailable: 1:5: parse error"),
        (500, MetricsUnavailable, r"answered HTTP 500: internal: 1:5: parse error"),
    ],
)
def test_an_http_error_with_a_json_body(
    server: FixedAnswers, source: PrometheusSource, status: int, error: type[Exception], message: str
) -> None:
    kind = {400: "bad_data", 422: "execution", 503: "unavailable", 500: "internal"}[status]
    server.answer({"status": "error", "errorType": kind, "error": "1:5: parse error"}, status)
    with pytest.raises(error, match=message):
        instant(source)


def test_an_http_error_with_a_page_instead_of_json(server: FixedAnswers, source: PrometheusSource) -> None:
    server.answer(b"<html><body><h1>502 Bad Gateway</h1>\n</body></html>", 502, "text/html")
    with pytest.raises(MetricsUnavailable, match=r"answered HTTP 502: <html><body><h1>502 Bad Gateway</h1>"):
        instant(source)


def test_refused_credentials_name_the_fields(server: FixedAnswers, source: PrometheusSource) -> None:
    server.answer(b"Unauthorized", 401, "text/plain")
    with pytest.raises(MetricsUnavailable, match=r"refused the credentials.*bearerTokenSecret or basicAuth"):
        instant(source)


def test_a_200_that_is_not_json(server: FixedAnswers, source: PrometheusSource) -> None:
    server.answer(b"<html>login</html>", 200, "text/html")
    with pytest.raises(MetricsUnavailable, match=r"not valid JSON.*spec\.prometheus\.url"):
        instant(source)


def test_an_unexpected_result_type(server: FixedAnswers, source: PrometheusSource) -> None:
    server.answer({"status": "success", "data": {"resultType": "string", "result": [1, "x"]}})
    with pytest.raises(QueryRejected, match=r"'string' result") as caught:
        instant(source)
    assert caught.value.field == "spec.kpis[0].query"


def test_a_histogram_without_le_is_an_invalid_signal_naming_the_field(
    server: FixedAnswers, source: PrometheusSource
) -> None:
    spec = parse_spec(
        {
            "model": "m",
            "drift": {
                "histogram": "model_feature_value",
                "featureLabel": "feature",
                "baseline": {"offset": "7d", "window": "1d"},
            },
        }
    )
    server.answer(vector(({"feature": "amount"}, "1000"), ({"feature": "age"}, "2000")))
    evaluation = asyncio.run(evaluate(spec, source, AT, namespace="ml"))
    assert evaluation.drift is None
    [problem] = evaluation.problems
    assert problem.kind is ProblemKind.INVALID and problem.field == "spec.drift"
    assert "spec.drift.histogram must name a classic Prometheus histogram" in problem.message


def test_malformed_answers_make_the_evaluation_unavailable_not_crash(
    server: FixedAnswers, source: PrometheusSource
) -> None:
    spec = parse_spec({"model": "m", "kpis": [{"name": "precision", "query": "precision", "min": 0.9}]})
    not_a_number = json.dumps(vector(({}, "x"))).encode()
    for body in (not_a_number, b'{"status":"succ', b"null"):
        server.answer(body)
        evaluation = asyncio.run(evaluate(spec, source, AT, namespace="ml"))
        assert evaluation.unavailable, body
        assert evaluation.kpis[0].state.value == "Error"
