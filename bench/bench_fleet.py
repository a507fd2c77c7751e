"""Benchmark: the real operator process with a fleet of ModelMonitors on a real control plane.

For each fleet size: etcd, kube-apiserver and kube-controller-manager (``tests.support``), the
chart installed with ``helm`` and the operator holding its ServiceAccount's token (so the
chart's RBAC is in force), N ModelMonitors spread over namespaces, and a real Prometheus whose
TSDB holds every monitor's series (backfilled with promtool). The operator runs as
``python -m evergreen.cli run``, a process of its own, and is measured from outside:

- CPU in cores: user+sys ticks of the operator process from ``/proc/<pid>/stat``;
- RSS: sampled from ``/proc/<pid>/status`` (peak is ``VmHWM``), and its slope after warm-up;
- evaluations per second and the due-to-start delay: from the operator's own ``/metrics``
  (``evergreen_evaluations_total``, ``evergreen_evaluation_delay_seconds``);
- API requests per evaluation: the operator's requests in the API server's audit log;
- Prometheus queries per second: ``evergreen_prometheus_queries_total``.

Everything is measured after a warm-up (every monitor evaluated once, the first round's burst
spread out), over the rest of the run.

    PYTHONPATH=operator:. python bench/bench_fleet.py --output bench/results/fleet.txt
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import http.server
import json
import math
import os
import platform
import shlex
import subprocess
import sys
import threading
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TextIO

import kubernetes.client
import yaml
from kubernetes.client.exceptions import ApiException
from tests.support.binaries import k8s_tools
from tests.support.cluster import install_chart, service_account_token
from tests.support.control_plane import ControlPlane

from evergreen.api.resource import GROUP, PLURAL, VERSION
from evergreen.simulation.prometheus import Backfill, PrometheusServer, find_binary, free_port, list_blocks

#: Targets for 5,000 monitors at a 1-minute interval on one replica.
TARGET_CORES = 1.0
TARGET_RSS_MIB = 512.0
TARGET_P99_DELAY = 10.0
RELEASE_NAMESPACE = "evergreen-system"
#: Bucket bounds of the two histogram families each model exports (+Inf added).
FEATURE_BOUNDS = (0.5, 1.0, 2.0, 5.0, 10.0)
SCORE_BOUNDS = (0.1, 0.25, 0.5, 0.75, 0.9)
FEATURES = ("amount", "age")
#: One sample per series per minute, as a 1-minute scrape would leave.
STEP_SECONDS = 60
#: History before the run starts: the baseline (1 h, 1 h ago) and both drift windows.
HISTORY_SECONDS = 2 * 3600 + 45 * 60
CLK_TCK = os.sysconf("SC_CLK_TCK")

MONITOR_SPEC = """\
interval: 1m
drift:
  histogram: model_feature_value
  featureLabel: feature
  baseline: {offset: 1h, window: 1h}
  window: 15m
  method: psi
  warning: 0.1
  critical: 0.25
  minSamples: 100
predictionDrift:
  histogram: model_prediction_score
  baseline: {offset: 1h, window: 1h}
  window: 15m
  method: psi
  warning: 0.1
  critical: 0.25
  minSamples: 100
kpis:
  - name: precision
    query: |
      sum(increase(model_label_outcomes_total{model="{{model}}", outcome="tp"}[15m]))
      /
      sum(increase(model_label_outcomes_total{model="{{model}}", outcome=~"tp|fp"}[15m]))
    min: 0.5
"""


def model_name(index: int) -> str:
    return f"model-{index:05d}"


# --- the series in Prometheus ----------------------------------------------------------------


def _per_step(index: int) -> tuple[int, list[int], list[int], tuple[int, int]]:
    """A model's stationary traffic per step: requests, cumulative feature and score bucket
    counts, and (tp, fp) labels. Integers, so every window of the same length holds the same
    increase: the fleet is healthy and stays so."""
    requests = 300 + 60 * (index % 7)
    shares = [0.1, 0.3, 0.6, 0.85, 0.95]
    shift = (index % 5) * 0.01
    feature = [int(requests * min(share + shift, 1.0)) for share in shares]
    score = [int(requests * share) for share in (0.2, 0.4, 0.6, 0.8, 0.9)]
    return requests, feature, score, (int(requests * 0.3), int(requests * 0.05))


def write_history(out: TextIO, models: int, start: int, end: int) -> int:
    """OpenMetrics text of every model's series from ``start`` to ``end`` (unix seconds, one
    point a step), written family by family as promtool wants; the number of samples."""
    stamps = list(range(start, end + 1, STEP_SECONDS))
    written = 0

    def series(name: str, labels: str, per_step: int) -> None:
        nonlocal written
        out.write("".join(f"{name}{{{labels}}} {per_step * k} {t}\n" for k, t in enumerate(stamps)))
        written += len(stamps)

    def histogram(name: str, labels: str, bounds: Sequence[float], buckets: list[int], requests: int) -> None:
        for bound, count in zip(bounds, buckets, strict=True):
            series(f"{name}_bucket", f'{labels},le="{bound}"', count)
        series(f"{name}_bucket", f'{labels},le="+Inf"', requests)
        series(f"{name}_count", labels, requests)

    out.write("# HELP model_feature_value Observed values of each input feature.\n")
    out.write("# TYPE model_feature_value histogram\n")
    for index in range(models):
        requests, buckets, _, _ = _per_step(index)
        for feature in FEATURES:
            labels = f'model="{model_name(index)}",feature="{feature}"'
            histogram("model_feature_value", labels, FEATURE_BOUNDS, buckets, requests)
    out.write("# HELP model_prediction_score Scores the model returned.\n")
    out.write("# TYPE model_prediction_score histogram\n")
    for index in range(models):
        requests, _, buckets, _ = _per_step(index)
        labels = f'model="{model_name(index)}",version="v1"'
        histogram("model_prediction_score", labels, SCORE_BOUNDS, buckets, requests)
    out.write("# HELP model_label_outcomes Delayed labels by confusion-matrix outcome.\n")
    out.write("# TYPE model_label_outcomes counter\n")
    for index in range(models):
        _, _, _, (tp, fp) = _per_step(index)
        for outcome, count in (("tp", tp), ("fp", fp)):
            series("model_label_outcomes_total", f'model="{model_name(index)}",outcome="{outcome}"', count)
    out.write("# EOF\n")
    return written


def backfill_fleet(workdir: Path, models: int, start: int, end: int) -> Backfill:
    """TSDB blocks holding the fleet's series, checked sample for sample."""
    promtool = find_binary("promtool", "EVERGREEN_PROMTOOL_BIN")
    text = workdir / "history.om"
    blocks = workdir / "blocks"
    started = time.perf_counter()
    with text.open("w") as out:
        samples = write_history(out, models, start, end)
    subprocess.run(
        [str(promtool), "tsdb", "create-blocks-from", "openmetrics", "--max-block-duration=10000h",
         str(text), str(blocks)],
        check=True, capture_output=True, timeout=3600,
    )  # fmt: skip
    text.unlink()
    listed, series = list_blocks(blocks, promtool)
    if listed != samples:
        raise RuntimeError(f"promtool kept {listed} of {samples} samples")
    return Backfill("fleet", blocks, samples, series, time.perf_counter() - started, cached=False)


class RecordedAnswers:
    """An HTTP server in front of Prometheus: the first answer to each query (its PromQL text)
    is fetched from the real Prometheus and kept; later asks of the same query, at any
    evaluation time, get the kept answer. The fleet's series are stationary, so the kept
    answer is what Prometheus would answer again."""

    def __init__(self, upstream: str) -> None:
        self.upstream = upstream
        self.answers: dict[str, bytes] = {}
        self.forwarded = 0
        self.replayed = 0
        self._lock = threading.Lock()
        answers = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self) -> None:
                self._answer(urllib.parse.urlsplit(self.path).query)

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                self._answer(self.rfile.read(length).decode())

            def _answer(self, params: str) -> None:
                path = urllib.parse.urlsplit(self.path).path
                body = answers.answer(path, params)
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                pass

        self._server = http.server.ThreadingHTTPServer(("127.0.0.1", free_port()), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def answer(self, path: str, params: str) -> bytes:
        query = urllib.parse.parse_qs(params).get("query", [""])[0]
        with self._lock:
            kept = self.answers.get(query)
            if kept is not None:
                self.replayed += 1
                return kept
        with urllib.request.urlopen(f"{self.upstream}{path}?{params}", timeout=60) as reply:
            body: bytes = reply.read()
        with self._lock:
            self.answers.setdefault(query, body)
            self.forwarded += 1
        return body

    def __enter__(self) -> RecordedAnswers:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()


# --- the cluster -------------------------------------------------------------------------------


def create_fleet(api: kubernetes.client.ApiClient, monitors: int, namespaces: int) -> None:
    """N ModelMonitors over ``namespaces`` namespaces, created concurrently."""
    core = kubernetes.client.CoreV1Api(api)
    for n in range(namespaces):
        core.create_namespace({"metadata": {"name": f"fleet-{n:03d}"}})  # type: ignore[arg-type]
    custom = kubernetes.client.CustomObjectsApi(api)
    spec = yaml.safe_load(MONITOR_SPEC)

    def create(index: int) -> None:
        namespace = f"fleet-{index % namespaces:03d}"
        body = {
            "apiVersion": f"{GROUP}/{VERSION}",
            "kind": "ModelMonitor",
            "metadata": {"name": model_name(index), "namespace": namespace},
            "spec": {"model": model_name(index), **spec},
        }
        for attempt in range(5):
            try:
                custom.create_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, body)
                return
            except ApiException as error:
                if error.status == 409:
                    return
                if attempt == 4 or error.status not in (429, 500, 503, 504):
                    raise
                time.sleep(1)

    with ThreadPoolExecutor(8) as pool:
        list(pool.map(create, range(monitors)))


# --- the operator, measured from outside -------------------------------------------------------


@dataclass
class ProcessSample:
    at: float
    cpu_seconds: float
    rss_mib: float
    peak_mib: float


def sample_process(pid: int) -> ProcessSample:
    """CPU (user+sys, all threads) and memory of one process, from /proc."""
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rpartition(")")[2].split()
    # After the command name: state is field 3, utime 14 and stime 15 (1-based).
    cpu = (int(fields[11]) + int(fields[12])) / CLK_TCK
    memory = {}
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            key, _, value = line.partition(":")
            if key in ("VmRSS", "VmHWM"):
                memory[key] = int(value.split()[0]) / 1024
    return ProcessSample(time.monotonic(), cpu, memory["VmRSS"], memory["VmHWM"])


def scrape(url: str) -> dict[str, list[tuple[dict[str, str], float]]]:
    """The operator's /metrics, parsed: family sample name -> [(labels, value)]."""
    from prometheus_client.parser import text_string_to_metric_families

    with urllib.request.urlopen(url, timeout=30) as reply:
        text = reply.read().decode()
    found: dict[str, list[tuple[dict[str, str], float]]] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            found.setdefault(sample.name, []).append((dict(sample.labels), sample.value))
    return found


def total(metrics: dict[str, list[tuple[dict[str, str], float]]], name: str) -> float:
    return sum(value for _, value in metrics.get(name, []))


def buckets(metrics: dict[str, list[tuple[dict[str, str], float]]], name: str) -> dict[float, float]:
    """Cumulative counts per upper bound of a histogram, summed over its other labels."""
    counts: dict[float, float] = {}
    for labels, value in metrics.get(f"{name}_bucket", []):
        bound = float(labels["le"])
        counts[bound] = counts.get(bound, 0.0) + value
    return counts


def quantile(q: float, counts: dict[float, float]) -> float:
    """``histogram_quantile`` over cumulative bucket counts (linear within a bucket)."""
    bounds = sorted(counts)
    if not bounds or counts[bounds[-1]] <= 0:
        return math.nan
    rank = q * counts[bounds[-1]]
    lower, below = 0.0, 0.0
    for bound in bounds:
        if counts[bound] >= rank:
            if math.isinf(bound):
                return lower
            inside = counts[bound] - below
            return lower + (bound - lower) * ((rank - below) / inside if inside else 1.0)
        lower, below = bound, counts[bound]
    return lower


@dataclass
class FleetResult:
    monitors: int
    namespaces: int
    seconds: float
    warmup_seconds: float
    prometheus: str
    cores: float
    peak_rss_mib: float
    final_rss_mib: float
    rss_at_warmup_mib: float
    rss_slope_mib_per_min: float
    evaluations_per_second: float
    required_per_second: float
    delay_p50: float
    delay_p99: float
    delay_max_bucket: float
    api_requests_per_evaluation: float
    api_requests_by_verb: dict[str, int]
    queries_per_second: float
    queries_per_evaluation: float
    outcomes: dict[str, float]
    load_start: float
    load_end: float
    setup_seconds: float
    backfill_samples: int
    backfill_seconds: float
    metrics_samples: int = 0
    #: CPU cores of the processes beside the operator over the same window.
    neighbours: dict[str, float] = field(default_factory=dict)
    recorded: dict[str, int] = field(default_factory=dict)
    samples: list[ProcessSample] = field(default_factory=list)


def operator_argv(
    kubeconfig: Path, prometheus_url: str, metrics_port: int, extra: Sequence[str]
) -> list[str]:
    return [
        sys.executable, "-m", "evergreen.cli", "run",
        "--kubeconfig", str(kubeconfig),
        "--prometheus-url", prometheus_url,
        "--metrics-port", str(metrics_port), "--health-port", "0", "--bind-address", "127.0.0.1",
        *extra,
    ]  # fmt: skip


def audit_counts(control_plane: ControlPlane, user: str, since: float, until: float) -> dict[str, int]:
    """The operator's requests completed in [since, until] (unix seconds), per verb+resource."""
    counts: dict[str, int] = {}
    with open(control_plane.audit_log) as log:
        for line in log:
            if user not in line:
                continue
            entry = json.loads(line)
            if entry.get("stage") != "ResponseComplete" or entry["user"].get("username") != user:
                continue
            stamp = datetime.fromisoformat(entry["stageTimestamp"].replace("Z", "+00:00")).timestamp()
            if not since <= stamp <= until:
                continue
            ref = entry.get("objectRef") or {}
            resource = ref.get("resource", "") + (f"/{ref['subresource']}" if ref.get("subresource") else "")
            key = f"{entry['verb']} {resource}"
            counts[key] = counts.get(key, 0) + 1
    return counts


def run_fleet(
    monitors: int,
    *,
    seconds: float,
    warmup_seconds: float,
    workdir: Path,
    namespaces: int | None = None,
    recorded: bool = False,
    operator_args: Sequence[str] = (),
    log: TextIO = sys.stderr,
) -> FleetResult:
    """One fleet size, from a fresh control plane to the figures."""
    namespaces = namespaces or max(1, min(50, monitors // 100))
    workdir.mkdir(parents=True, exist_ok=True)
    load_start = os.getloadavg()[0]
    setup_started = time.monotonic()
    now = int(time.time()) // STEP_SECONDS * STEP_SECONDS
    # The history reaches past the end of the run: samples after an evaluation's time are not
    # part of its answer, so Prometheus serves what a live scrape would have stored by then.
    end = now + int(warmup_seconds + seconds) + 1200
    print(f"[{monitors}] backfilling {monitors} models ...", file=log, flush=True)
    history = backfill_fleet(workdir, monitors, now - HISTORY_SECONDS, end)
    print(f"[{monitors}] {history.samples:,} samples in {history.build_seconds:.0f}s", file=log, flush=True)
    tools = k8s_tools()
    with contextlib.ExitStack() as stack:
        prometheus = stack.enter_context(PrometheusServer(workdir / "prometheus", history=history))
        query_url = prometheus.url
        recorder = None
        if recorded:
            recorder = stack.enter_context(RecordedAnswers(prometheus.url))
            query_url = recorder.url
        control_plane = stack.enter_context(ControlPlane(workdir / "control-plane"))
        api = control_plane.admin_client()
        admin = control_plane.kubeconfig(workdir / "admin.kubeconfig")
        release = install_chart(tools, admin, "evergreen", RELEASE_NAMESPACE, {}, workdir)
        token = service_account_token(api, release.namespace, release.service_account)
        user = f"system:serviceaccount:{release.namespace}:{release.service_account}"
        print(
            f"[{monitors}] creating {monitors} monitors in {namespaces} namespaces ...", file=log, flush=True
        )
        create_fleet(api, monitors, namespaces)
        setup_seconds = time.monotonic() - setup_started
        port = free_port()
        argv = operator_argv(
            control_plane.kubeconfig(workdir / "operator.kubeconfig", token=token),
            query_url,
            port,
            operator_args,
        )
        metrics_url = f"http://127.0.0.1:{port}/metrics"
        with open(workdir / "operator.log", "ab") as operator_log:
            process = subprocess.Popen(argv, stdout=operator_log, stderr=subprocess.STDOUT)
        stack.callback(_stop, process)
        samples: list[ProcessSample] = []
        started = time.monotonic()
        print(
            f"[{monitors}] operator pid {process.pid}; warming up {warmup_seconds:.0f}s", file=log, flush=True
        )
        _watch(process, samples, started + warmup_seconds)
        others = _neighbours(prometheus, control_plane)
        others_first = {name: sample_process(pid).cpu_seconds for name, pid in others.items()}
        first, metrics_first, wall_first = samples[-1], scrape(metrics_url), time.time()
        print(f"[{monitors}] measuring {seconds:.0f}s", file=log, flush=True)
        _watch(process, samples, started + warmup_seconds + seconds)
        last, metrics_last, wall_last = samples[-1], scrape(metrics_url), time.time()
        others_last = {name: sample_process(pid).cpu_seconds for name, pid in others.items()}
        elapsed = last.at - first.at

        def delta(name: str) -> float:
            return total(metrics_last, name) - total(metrics_first, name)

        evaluations = delta("evergreen_evaluations_total")
        queries = delta("evergreen_prometheus_queries_total")
        before = buckets(metrics_first, "evergreen_evaluation_delay_seconds")
        after = buckets(metrics_last, "evergreen_evaluation_delay_seconds")
        delays = {bound: after[bound] - before.get(bound, 0.0) for bound in after}
        outcomes: dict[str, float] = {}
        for sign, metrics in ((1, metrics_last), (-1, metrics_first)):
            for labels, value in metrics.get("evergreen_evaluations_total", []):
                outcome = labels.get("outcome", "?")
                outcomes[outcome] = outcomes.get(outcome, 0.0) + sign * value
        requests = audit_counts(control_plane, user, wall_first, wall_last)
        measured = [s for s in samples if s.at >= first.at]
        slope = _slope([(s.at / 60, s.rss_mib) for s in measured])
        result = FleetResult(
            monitors=monitors,
            namespaces=namespaces,
            seconds=elapsed,
            warmup_seconds=warmup_seconds,
            prometheus="recorded answers (first answer of each query from the real Prometheus)"
            if recorded
            else "real Prometheus",
            cores=(last.cpu_seconds - first.cpu_seconds) / elapsed,
            peak_rss_mib=last.peak_mib,
            final_rss_mib=last.rss_mib,
            rss_at_warmup_mib=first.rss_mib,
            rss_slope_mib_per_min=slope,
            evaluations_per_second=evaluations / elapsed,
            required_per_second=monitors / 60.0,
            delay_p50=quantile(0.5, delays),
            delay_p99=quantile(0.99, delays),
            delay_max_bucket=_max_bucket(delays),
            api_requests_per_evaluation=sum(requests.values()) / evaluations if evaluations else math.nan,
            api_requests_by_verb=requests,
            queries_per_second=queries / elapsed,
            queries_per_evaluation=queries / evaluations if evaluations else math.nan,
            outcomes=outcomes,
            load_start=load_start,
            load_end=os.getloadavg()[0],
            setup_seconds=setup_seconds,
            backfill_samples=history.samples,
            backfill_seconds=history.build_seconds,
            neighbours={name: (others_last[name] - others_first[name]) / elapsed for name in others},
            metrics_samples=sum(len(found) for found in metrics_last.values()),
            recorded={"forwarded": recorder.forwarded, "replayed": recorder.replayed} if recorder else {},
            samples=samples,
        )
    return result


def _neighbours(prometheus: PrometheusServer, control_plane: ControlPlane) -> dict[str, int]:
    """Process ids of Prometheus and the control plane (their handles are private: this is a
    measurement from outside, as /proc is)."""
    found = {}
    if prometheus._process is not None:
        found["prometheus"] = prometheus._process.pid
    for process in control_plane._processes:
        found[process.name] = process.popen.pid
    return found


def _watch(process: subprocess.Popen[bytes], samples: list[ProcessSample], until: float) -> None:
    while True:
        if process.poll() is not None:
            raise RuntimeError(f"the operator exited with code {process.returncode}")
        samples.append(sample_process(process.pid))
        if time.monotonic() >= until:
            return
        time.sleep(min(5.0, max(until - time.monotonic(), 0.0)))


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(10)


def _slope(points: Sequence[tuple[float, float]]) -> float:
    """Least-squares slope (y per x)."""
    if len(points) < 2:
        return math.nan
    mean_x = sum(x for x, _ in points) / len(points)
    mean_y = sum(y for _, y in points) / len(points)
    spread = sum((x - mean_x) ** 2 for x, _ in points)
    return sum((x - mean_x) * (y - mean_y) for x, y in points) / spread if spread else math.nan


def _max_bucket(counts: dict[float, float]) -> float:
    """The upper bound of the highest non-empty bucket."""
    highest, below = 0.0, 0.0
    for bound in sorted(counts):
        if counts[bound] > below:
            highest = bound
        below = counts[bound]
    return highest


# --- the report ---------------------------------------------------------------------------------


def verdict(ok: bool) -> str:
    return "PASS" if ok else "FAIL"


def render(result: FleetResult) -> Iterator[str]:
    r = result
    big = r.monitors >= 5000

    def target(ok: bool, what: str) -> str:
        return f"   target {what}: {verdict(ok)}" if big else ""

    yield f"== {r.monitors:,} monitors over {r.namespaces} namespaces, 1-minute interval, {r.prometheus}"
    yield (
        f"   load average (1 min) at start {r.load_start:.2f}, at end {r.load_end:.2f};"
        f" setup {r.setup_seconds:.0f}s (backfill {r.backfill_samples:,} samples in"
        f" {r.backfill_seconds:.0f}s); warm-up {r.warmup_seconds:.0f}s, measured {r.seconds:.0f}s"
    )
    yield f"   operator CPU                 {r.cores:8.3f} cores" + target(
        r.cores < TARGET_CORES, f"< {TARGET_CORES:g}"
    )
    yield f"   RSS peak / final             {r.peak_rss_mib:8.1f} / {r.final_rss_mib:.1f} MiB" + target(
        r.peak_rss_mib < TARGET_RSS_MIB, f"< {TARGET_RSS_MIB:g}"
    )
    flat = abs(r.rss_slope_mib_per_min) * 60 < 0.1 * max(r.rss_at_warmup_mib, 1.0)
    yield (
        f"   RSS after warm-up            {r.rss_at_warmup_mib:8.1f} MiB,"
        f" slope {r.rss_slope_mib_per_min:+.2f} MiB/min   flat (< 10%/h): {verdict(flat)}"
    )
    achieved = r.evaluations_per_second >= 0.97 * r.required_per_second
    yield (
        f"   evaluations / s              {r.evaluations_per_second:8.2f} achieved,"
        f" {r.required_per_second:.2f} required   {verdict(achieved)}"
    )
    outcomes = ", ".join(f"{k} {v:.0f}" for k, v in sorted(r.outcomes.items()) if v)
    yield f"   outcomes                     {outcomes}"
    yield (
        f"   due-to-start delay           p50 {r.delay_p50:.2f}s, p99 {r.delay_p99:.2f}s"
        f" (highest bucket <= {r.delay_max_bucket:g}s)"
    ) + target(r.delay_p99 < TARGET_P99_DELAY, f"p99 < {TARGET_P99_DELAY:g}s")
    verbs = ", ".join(f"{k} {v}" for k, v in sorted(r.api_requests_by_verb.items(), key=lambda kv: -kv[1]))
    yield f"   API requests / evaluation    {r.api_requests_per_evaluation:8.3f}   ({verbs or 'none'})"
    yield (
        f"   Prometheus queries / s       {r.queries_per_second:8.1f}"
        f"   ({r.queries_per_evaluation:.1f} per evaluation)"
    )
    if r.recorded:
        yield (
            f"   recorded answers: {r.recorded['forwarded']:,} queries answered by the real Prometheus,"
            f" {r.recorded['replayed']:,} replayed"
        )
    beside = ", ".join(f"{name} {cores:.2f}" for name, cores in r.neighbours.items())
    yield f"   CPU beside the operator      {beside} cores"
    if not r.recorded and r.queries_per_second > 0 and "prometheus" in r.neighbours:
        per_query = r.neighbours["prometheus"] / r.queries_per_second
        need = per_query * 5000 / 60 * r.queries_per_evaluation
        yield (
            f"   Prometheus CPU per query     {per_query * 1000:8.2f} ms: 5,000 monitors at 1 minute would"
            f" need {need:.2f} cores of Prometheus"
        )
    yield f"   operator /metrics            {r.metrics_samples:8,} samples"
    yield from bottleneck(r)
    rss = " ".join(f"{s.rss_mib:.0f}" for s in r.samples[:: max(1, len(r.samples) // 24)])
    yield f"   RSS over the run (MiB)       {rss}"


def bottleneck(r: FleetResult) -> Iterator[str]:
    """What runs out first, from the figures: the operator's CPU per evaluation at the rate
    the fleet needs, the cores the machine could give it, and memory per monitor."""
    if r.evaluations_per_second <= 0:
        return
    per_evaluation = r.cores / r.evaluations_per_second
    needed = per_evaluation * r.required_per_second
    yield (
        f"   CPU per evaluation           {per_evaluation * 1000:8.1f} ms: the required rate needs"
        f" {needed:.2f} cores of operator"
    )
    behind = r.evaluations_per_second < 0.97 * r.required_per_second
    if behind and needed < 2 and max(r.load_start, r.load_end) > 2:
        yield (
            f"   falling behind with {r.cores:.2f} cores used while {needed:.2f} were needed: the operator"
            f" was runnable but not scheduled (load average {max(r.load_start, r.load_end):.1f} on 2 cores)"
        )
    elif needed > TARGET_CORES:
        yield f"   CPU runs out first: {needed:.2f} cores needed at {r.required_per_second:.1f} evaluations/s"
    base = 125.0  # MiB: the operator with 30 idle monitors measured 127 (interpreter, kopf, numpy, clients)
    per_monitor = max(r.final_rss_mib - base, 0.0) * 1024 / r.monitors
    yield (
        f"   memory per monitor           {per_monitor:8.1f} KiB above a {base:.0f} MiB base:"
        f" 5,000 monitors would hold {base + per_monitor * 5000 / 1024:.0f} MiB"
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--sizes", default="100,1000,5000", help="fleet sizes, comma-separated")
    parser.add_argument("--minutes", type=float, default=10.0, help="run length per size (warm-up included)")
    parser.add_argument("--warmup", type=float, default=2.0, help="minutes before measuring")
    parser.add_argument(
        "--recorded-from", type=int, default=0, metavar="N",
        help="from this fleet size on, answer queries from recorded answers (0: never)",
    )  # fmt: skip
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/evergreen-bench-fleet"))
    parser.add_argument("--output", type=Path)
    parser.add_argument("operator_args", nargs="*", help="extra `evergreen run` arguments (after --)")
    args = parser.parse_args(argv)
    command = "PYTHONPATH=operator:. python bench/bench_fleet.py " + shlex.join(
        sys.argv[1:] if argv is None else list(argv)
    )
    lines = [
        command,
        f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC, {platform.node() and 'host'} {os.cpu_count()} cores,"
        f" Python {platform.python_version()}",
        "",
    ]
    print("\n".join(lines), flush=True)
    for size in (int(s) for s in args.sizes.split(",")):
        recorded = bool(args.recorded_from) and size >= args.recorded_from
        workdir = args.workdir / f"n{size}-{hashlib.sha1(str(time.time()).encode()).hexdigest()[:6]}"
        result = run_fleet(
            size,
            seconds=(args.minutes - args.warmup) * 60,
            warmup_seconds=args.warmup * 60,
            workdir=workdir,
            recorded=recorded,
            operator_args=args.operator_args,
        )
        block = list(render(result))
        print("\n".join(block), flush=True)
        lines += [*block, ""]
    if args.output:
        args.output.write_text("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
