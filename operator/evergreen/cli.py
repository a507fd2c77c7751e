"""The ``evergreen`` command.

evergreen run        run the operator (in a cluster, or against a kubeconfig)
evergreen demo       evaluate the bundled example over a bundled recording (no cluster)
evergreen evaluate   evaluate a ModelMonitor manifest once against a Prometheus
evergreen record     record the answers a monitor's queries get, for replay
evergreen backtest   replay the decision engine over history
evergreen explain    show a ModelMonitor's decision and evidence (approve, abort, retrain act on it)
evergreen crd        print or check the generated CustomResourceDefinition

Every failure goes through :mod:`evergreen.cli_errors` (one message, an exit code, a traceback
only with ``--debug``); flag values are parsed by :mod:`evergreen.cli_arguments`.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gzip
import json
import logging
import os
import sys
import tempfile
from collections.abc import Callable, Iterator, Sequence
from datetime import UTC, datetime, timedelta
from importlib import metadata, resources
from pathlib import Path
from typing import TYPE_CHECKING, Any

from evergreen import __version__, cli_whatif
from evergreen import cli_arguments as arg
from evergreen.api.durations import parse_duration
from evergreen.api.manifest import Manifest, load_manifest, read_text
from evergreen.api.resource import parse_spec
from evergreen.api.spec import ModelMonitorSpec
from evergreen.backtest import evaluation_times
from evergreen.cli_errors import DEBUG_VARIABLE, ExitCode, debug_requested, kube_errors, report
from evergreen.cli_outcomes import backtest_outcome, evaluate_outcome
from evergreen.conditions import evaluation_drafts, merge_conditions, unavailable_drafts
from evergreen.errors import InputError, MetricsUnavailable
from evergreen.observation.evaluate import Evaluation, evaluate
from evergreen.policy import PolicyState, advance
from evergreen.progress import ProgressBar
from evergreen.report import render_decision, render_evaluation
from evergreen.signals.prefetch import PrefetchedSource
from evergreen.signals.prometheus import Endpoint, PrometheusSource
from evergreen.signals.recording import RecordedSource, Recorder, Recording
from evergreen.signals.reference import parse_reference
from evergreen.signals.samples import Sample

if TYPE_CHECKING:
    from evergreen.controller.settings import ShardSettings
    from evergreen.kube.client import KubeApi

DEMO_RECORDING = "showcase.recording.json.gz"


def _namespace(manifest: Manifest, override: str | None) -> str:
    return override or manifest.namespace or "default"


def _references(spec: ModelMonitorSpec, baseline_file: Path | None) -> dict[str, list[Sample]]:
    """ConfigMap baselines come from a local file outside a cluster."""
    references: dict[str, list[Sample]] = {}
    for field, config, label in (
        ("spec.drift", spec.drift, spec.drift.feature_label if spec.drift else None),
        ("spec.predictionDrift", spec.prediction_drift, None),
    ):
        if config is None or config.baseline.config_map is None:
            continue
        if baseline_file is None:
            raise InputError(
                "--baseline-file",
                f"{field}.baseline uses a ConfigMap: pass its content (reference histograms as JSON) "
                "with --baseline-file",
            )
        text = read_text(baseline_file, "JSON file of reference histograms")
        references[field] = parse_reference(text, feature_label=label, field=field)
    return references


def load_recording(path: Path) -> Recording:
    """A file written by ``evergreen record``, or an InputError that says why it is not one."""
    if path.is_dir() or not path.exists():
        read_text(path, "recording (from `evergreen record`)")  # raises, saying which of the two
    try:
        return Recording.load(path)
    except (OSError, EOFError, gzip.BadGzipFile, ValueError, KeyError, TypeError, AttributeError) as error:
        detail = str(error).removeprefix(f"{path}: ") or type(error).__name__
        raise InputError(
            str(path), f"not an Evergreen recording ({detail[:200]}): make one with `evergreen record`"
        ) from None


def _print(spec: ModelMonitorSpec, evaluation: Evaluation, top: int, title: str | None = None) -> None:
    drafts = unavailable_drafts(evaluation) if evaluation.unavailable else evaluation_drafts(spec, evaluation)
    conditions = merge_conditions([], drafts, now=evaluation.time, generation=None)
    print(render_evaluation(evaluation, conditions=conditions, top=top, title=title))


#: How to read the demo's report; the README's walkthrough uses the same words.
NOTATION = """\
How to read it:
  *              the whole population (every segment together); segment=x is one segment
  n_eff          effective sample size behind a score; below minSamples a series is shown, not acted on
  !! Critical    at or above the critical threshold (! Warning: at or above the warning threshold)
  0.45 vs 0.2    a score and the threshold it is held against: once flagged, a series clears only
                 below (1 - hysteresis) x its threshold, e.g. 0.25 x (1 - 0.2) = 0.2
  step 0.006     drift between the previous window and the current one: large means a sudden
                 change (a unit change, a broken pipeline), small means a gradual one"""


# Commands -------------------------------------------------------------------------------------


def bundled_recording() -> Recording:
    """The recorded scenario shipped with the package (see ``make recording``)."""
    with resources.as_file(resources.files("evergreen").joinpath("data", DEMO_RECORDING)) as path:
        return Recording.load(path)


def cmd_demo(args: argparse.Namespace) -> int:
    from evergreen import backtest
    from evergreen.report import render_decision

    recording = load_recording(args.recording) if args.recording else bundled_recording()
    manifest = load_manifest_from(str(args.recording or DEMO_RECORDING), recording.monitor)
    spec = manifest.spec()
    namespace = _namespace(manifest, None)
    name = manifest.name or spec.model
    print(f"Evergreen demo: ModelMonitor {namespace}/{name} over a recorded scenario")
    if recording.description:
        print(recording.description)
    print(NOTATION)
    steps = asyncio.run(
        backtest.replay(spec, RecordedSource(recording), recording.times, namespace=namespace)
    )
    # The recording holds a few evaluations around each moment; show the last of each group
    # in full, then the whole timeline of decisions.
    for index, step in enumerate(steps):
        following = steps[index + 1].time if index + 1 < len(steps) else None
        if following is not None and following - step.time <= timedelta(hours=1):
            continue
        print()
        _print(spec, step.evaluation, args.top, title=f"=== {step.time.strftime('%Y-%m-%d %H:%M UTC')} ===")
        if step.decision is not None:
            print(render_decision(step.decision))
    print()
    print("=== Decisions over the recording ===")
    print(backtest.render(steps))
    return 0


@contextlib.contextmanager
def _scenario_prometheus(name: str | None) -> Iterator[str | None]:
    """With ``--scenario``, a throwaway Prometheus holding that built-in scenario's history."""
    if name is None:
        yield None
        return
    from evergreen.simulation import PrometheusServer, catalog

    with (
        tempfile.TemporaryDirectory(prefix="evergreen-scenario-") as workdir,
        PrometheusServer.from_scenario(catalog.scenario(name), Path(workdir)) as server,
    ):
        yield server.url


def _source(args: argparse.Namespace, spec: ModelMonitorSpec, url: str | None = None) -> PrometheusSource:
    url = (
        url
        or args.prometheus
        or (spec.prometheus.url if spec.prometheus else None)
        or os.environ.get("EVERGREEN_PROMETHEUS_URL")
    )
    if not url:
        raise InputError(
            "--prometheus",
            "no Prometheus to ask: pass --prometheus URL, set spec.prometheus.url or "
            "EVERGREEN_PROMETHEUS_URL, or use --scenario",
        )
    headers = {**(spec.prometheus.headers if spec.prometheus else {}), **dict(args.header)}
    return PrometheusSource(Endpoint(url=url, headers=headers, timeout_seconds=args.timeout))


def _step(args: argparse.Namespace, spec: ModelMonitorSpec) -> timedelta:
    return args.step if args.step is not None else parse_duration(spec.interval)


def cmd_evaluate(args: argparse.Namespace) -> int:
    manifest = load_manifest(args.file)
    spec = manifest.spec()
    namespace = _namespace(manifest, args.namespace)
    references = _references(spec, args.baseline_file)
    with _scenario_prometheus(args.scenario) as url:
        source = _source(args, spec, url)
        evaluation = asyncio.run(evaluate(spec, source, args.at, namespace=namespace, references=references))
    # The decision this evaluation alone leads to (no persistence yet): Unknown when nothing
    # could be judged, with what is missing.
    decision = advance(spec, evaluation, PolicyState()).decision
    assert decision is not None
    outcome = evaluate_outcome(evaluation, decision)
    if outcome.code is ExitCode.ENVIRONMENT:
        # Nothing was learned: one message, not a report of empty signals.
        raise MetricsUnavailable(outcome.message)
    if args.json:
        document = evaluation.summary(args.top).to_wire()
        document["decision"] = decision.to_wire()
        print(json.dumps(document, indent=2))
    else:
        _print(spec, evaluation, args.top)
        print(render_decision(decision))
    if outcome.message:
        print(f"evergreen: {outcome.message} (exit {int(outcome.code)})", file=sys.stderr)
    return outcome.code


def cmd_record(args: argparse.Namespace) -> int:
    manifest = load_manifest(args.file)
    spec = manifest.spec()
    namespace = _namespace(manifest, args.namespace)
    step = _step(args, spec)
    times = list(args.time)
    for first, last in args.span:
        arg.check_evaluations("--span", first, last, step, already=len(times))
        times += evaluation_times(first, last, step)
    if not times:
        arg.check_evaluations("--start/--end", args.start, args.end, step)
        times = evaluation_times(args.start, args.end, step)
    times = sorted(set(times))
    references = _references(spec, args.baseline_file)
    with _scenario_prometheus(args.scenario) as url:
        live = _source(args, spec, url)
        recorder = asyncio.run(_record(spec, live, times, namespace, references))
    try:
        recorder.recording(dict(manifest.body), args.description).save(args.output)
    except OSError as error:
        raise InputError(str(args.output), f"cannot be written: {error.strerror or error}") from None
    print(f"recorded {len(times)} evaluations, {len(recorder.results)} answers -> {args.output}")
    return 0


async def _record(
    spec: ModelMonitorSpec,
    live: PrometheusSource,
    times: Sequence[datetime],
    namespace: str,
    references: dict[str, list[Sample]] | None,
) -> Recorder:
    """Evaluate at every time through a recorder; each planned query is fetched once per span."""
    from evergreen import backtest

    source = await backtest.prefetched(spec, live, times, namespace=namespace)
    recorder = Recorder(source)
    try:
        with ProgressBar("recording", sys.stderr) as progress:
            for done, at in enumerate(times, start=1):
                evaluation = await evaluate(spec, recorder, at, namespace=namespace, references=references)
                if evaluation.unavailable:
                    problem = evaluation.problems[0].message
                    raise MetricsUnavailable(f"Prometheus could not answer at {at.isoformat()}: {problem}")
                progress(done, len(times))
    finally:
        if isinstance(source, PrefetchedSource):
            source.close()
    return recorder


def _backtest_report(
    args: argparse.Namespace,
    spec: ModelMonitorSpec,
    steps: Sequence[Any],
    manifest: Manifest,
    source: str,
) -> None:
    """With ``--report FILE``, the replay as one HTML page too."""
    if args.report is None:
        return
    from evergreen import review

    history = review.from_backtest(
        steps,
        spec,
        name=manifest.name or spec.model,
        namespace=_namespace(manifest, args.namespace),
        source=source,
        comparison=cli_whatif.comparison(args, spec, steps),
    )
    review.write(history, args.report, generated=datetime.now(UTC))
    # Machine-readable output stays parseable: the note goes beside it.
    print(f"report -> {args.report}", file=sys.stdout if args.output == "text" else sys.stderr)


def list_scenarios() -> str:
    """Every built-in scenario with the span it covers (for --scenario and --start/--end)."""
    from evergreen.simulation import catalog

    lines = ["name                         span (UTC)                             description"]
    for name in sorted(catalog.SCENARIOS):
        scenario = catalog.scenario(name)
        span = f"{scenario.start:%Y-%m-%dT%H:%MZ}..{scenario.end:%Y-%m-%dT%H:%MZ}"
        lines.append(f"{name:<28} {span:<38} {scenario.description.splitlines()[0]}")
    return "\n".join(lines)


def _finish_backtest(args: argparse.Namespace, spec: ModelMonitorSpec, steps: Sequence[Any]) -> int:
    """Print a replay as asked (text or JSON lines); the exit code says whether anything was judged."""
    from evergreen import backtest

    if (comparison := cli_whatif.comparison(args, spec, steps)) is not None:
        cli_whatif.print_comparison(args, comparison)
    elif args.output == "jsonl":
        for line in backtest.jsonl(steps):
            print(line)
    else:
        print(backtest.render(steps, every=args.every, spec=spec))
    outcome = backtest_outcome([step.evaluation for step in steps])
    if outcome.message:
        print(f"evergreen: {outcome.message} (exit {int(outcome.code)})", file=sys.stderr)
    return outcome.code


def cmd_backtest(args: argparse.Namespace) -> int:
    from evergreen import backtest

    if args.list_scenarios:
        print(list_scenarios())
        return 0
    if args.recording is not None:
        recording = load_recording(args.recording)
        if args.file:
            manifest = load_manifest(args.file)
        else:
            manifest = load_manifest_from(str(args.recording), recording.monitor)
        cli_whatif.check(args, manifest.spec())
        with ProgressBar("backtest", sys.stderr) as progress:
            steps = asyncio.run(
                backtest.replay(
                    manifest.spec(),
                    RecordedSource(recording),
                    recording.times,
                    namespace=_namespace(manifest, args.namespace),
                    progress=progress,
                )
            )
        code = _finish_backtest(args, manifest.spec(), steps)
        where = f"replayed from {args.recording.name}"
        _backtest_report(args, manifest.spec(), steps, manifest, where)
        return code
    if args.file is None:
        raise InputError(
            "-f/--file", "pass the ModelMonitor manifest with -f (or a --recording that holds one)"
        )
    manifest = load_manifest(args.file)
    spec = manifest.spec()
    cli_whatif.check(args, spec)
    step = _step(args, spec)
    arg.check_evaluations("--start/--end", args.start, args.end, step)
    # Persistence counts evaluations at the monitor's interval: a longer step samples the
    # timeline, each sample preceded by the evaluations the operator would have made.
    interval = parse_duration(spec.interval)
    times = backtest.sampled_times(args.start, args.end, step, interval, spec.policy.persistence.of)
    arg.check_sampled_evaluations("--step", len(times), step, interval)
    references = _references(spec, args.baseline_file)
    with (
        _scenario_prometheus(args.scenario) as url,
        ProgressBar("backtest", sys.stderr) as progress,
    ):
        steps = asyncio.run(
            backtest.replay(
                spec,
                _source(args, spec, url),
                times,
                namespace=_namespace(manifest, args.namespace),
                references=references,
                progress=progress,
            )
        )
    code = _finish_backtest(args, spec, steps)
    where = f"scenario {args.scenario}" if args.scenario else "Prometheus"
    _backtest_report(args, spec, steps, manifest, f"replayed from {where}, {args.start} to {args.end}")
    return code


def load_manifest_from(source: str, body: Any) -> Manifest:
    """The ModelMonitor a recording holds, checked like a manifest file."""
    from evergreen.api.manifest import checked_document

    if not isinstance(body, dict):
        raise InputError(source, "holds no ModelMonitor: record it again with `evergreen record`")
    return checked_document(f"{source} (its ModelMonitor)", body)


# Commands that talk to a cluster ---------------------------------------------------------------


@contextlib.contextmanager
def _cluster(args: argparse.Namespace) -> Iterator[KubeApi]:
    """The Kubernetes API; every failure becomes one ClusterError that says what went wrong."""
    from evergreen.kube.client import KubeApi, load_configuration

    if args.kubeconfig is not None and not Path(args.kubeconfig).is_file():
        raise InputError("--kubeconfig", f"{args.kubeconfig}: no such file")
    with kube_errors():
        configuration = load_configuration(args.kubeconfig, args.context)
    # One attempt: a command should fail in seconds with the reason, not after retries.
    configuration.retries = 0
    kube = KubeApi(configuration)
    _bound_requests(kube, args.request_timeout)
    try:
        with kube_errors(configuration.host):
            yield kube
    finally:
        kube.close()


def _bound_requests(kube: KubeApi, seconds: float) -> None:
    """Give every API request of this command a timeout (the client's default is to wait forever).

    The facade has no per-call timeout; a command-line call is one short conversation, so the
    bound is set on its REST client here rather than on every method of the facade.
    """
    rest = getattr(getattr(kube, "_api", None), "rest_client", None)
    request = getattr(rest, "request", None)
    if rest is None or request is None:
        return

    def bounded(*args: Any, _request_timeout: Any = None, **kwargs: Any) -> Any:
        return request(*args, _request_timeout=_request_timeout or seconds, **kwargs)

    rest.request = bounded


def _not_found(args: argparse.Namespace) -> InputError:
    return InputError(
        f"ModelMonitor {args.namespace}/{args.name}",
        "not found: check the name and -n/--namespace (`kubectl get modelmonitors -A` lists them)",
    )


def _monitor_namespace(args: argparse.Namespace) -> str:
    """``-n``, else the kubeconfig context's namespace, as kubectl does."""
    from evergreen.kubectl import context_namespace

    if args.namespace is None:
        args.namespace = context_namespace(args.kubeconfig, args.context)
    return str(args.namespace)


def cmd_explain(args: argparse.Namespace) -> int:
    from evergreen.api.resource import parse_status

    _monitor_namespace(args)
    from evergreen.report import render_status

    with _cluster(args) as kube:
        body = asyncio.run(kube.get_monitor(args.namespace, args.name))
    if body is None:
        raise _not_found(args)
    spec = body.get("spec") or {}
    status = parse_status(body.get("status"))
    if args.json:
        print(json.dumps(status.to_wire(), indent=2))
    else:
        print(
            render_status(
                args.name,
                args.namespace,
                str(spec.get("model", "?")),
                str(spec.get("mode", "Enforce")),
                status,
            )
        )
    if args.report is not None:
        _status_report(args, spec, status)
    return 0


def _status_report(args: argparse.Namespace, raw_spec: dict[str, Any], status: Any) -> None:
    """With ``--report FILE``, what status remembers as one HTML page."""
    from evergreen import review
    from evergreen.errors import SpecError

    try:
        spec: ModelMonitorSpec | None = parse_spec(raw_spec)
    except SpecError:
        spec = None  # an invalid spec still has a history worth drawing
    history = review.from_status(status, spec, name=args.name, namespace=args.namespace)
    review.write(history, args.report, generated=datetime.now(UTC))
    print(f"report -> {args.report}", file=sys.stderr if args.json else sys.stdout)


def _monitor_command(args: argparse.Namespace, change: Callable[[dict[str, Any]], dict[str, Any]]) -> int:
    """Read a ModelMonitor, compute a spec change from it, merge-patch it in."""
    _monitor_namespace(args)
    with _cluster(args) as kube:
        body = asyncio.run(kube.get_monitor(args.namespace, args.name))
        if body is None:
            raise _not_found(args)
        patch = change(body)
        asyncio.run(kube.patch_monitor_spec(args.namespace, args.name, patch))
    print(f"patched ModelMonitor {args.namespace}/{args.name}: spec {json.dumps(patch)}")
    print("(with GitOps, commit the same change instead, or it will be reverted)")
    return 0


def _rollout_candidate(body: dict[str, Any], explicit: str | None) -> str:
    if explicit:
        return explicit
    candidate = ((body.get("status") or {}).get("rollout") or {}).get("candidate")
    if not candidate:
        raise InputError("--version", "no rollout is in progress: name the version to act on with --version")
    return str(candidate)


def _requires(body: dict[str, Any], field: str) -> None:
    if field not in (body.get("spec") or {}):
        name = f"ModelMonitor {body['metadata'].get('namespace')}/{body['metadata'].get('name')}"
        raise InputError(name, f"has no spec.{field}: add it to the manifest first", field=f"spec.{field}")


def cmd_approve(args: argparse.Namespace) -> int:
    def change(body: dict[str, Any]) -> dict[str, Any]:
        _requires(body, "rollout")
        version = _rollout_candidate(body, args.version)
        gates = {
            "start": {"approvedVersion": version},
            "promotion": {"promotionApprovedVersion": version},
            "both": {"approvedVersion": version, "promotionApprovedVersion": version},
        }
        return {"rollout": gates[args.gate]}

    return _monitor_command(args, change)


def cmd_abort(args: argparse.Namespace) -> int:
    def change(body: dict[str, Any]) -> dict[str, Any]:
        _requires(body, "rollout")
        return {"rollout": {"abortedVersion": _rollout_candidate(body, args.version)}}

    return _monitor_command(args, change)


def cmd_retrain(args: argparse.Namespace) -> int:
    def change(body: dict[str, Any]) -> dict[str, Any]:
        _requires(body, "retraining")
        return {"retraining": {"request": {"id": args.id, "reason": args.reason}}}

    return _monitor_command(args, change)


def cmd_acknowledge(args: argparse.Namespace) -> int:
    def change(body: dict[str, Any]) -> dict[str, Any]:
        decision = ((body.get("status") or {}).get("decision")) or {}
        held = decision.get("action") == "HoldForDataQuality" or decision.get("reason") == "HoldUnresolved"
        if not held and not args.force:
            name = f"ModelMonitor {args.namespace}/{args.name}"
            raise InputError(
                name, "has no data-quality hold to acknowledge (pass --force to restart baselines anyway)"
            )
        at = args.at if args.at is not None else datetime.now(UTC)
        stamp = at.astimezone(UTC).isoformat().replace("+00:00", "Z")
        return {"policy": {"acknowledgedAt": stamp}}

    return _monitor_command(args, change)


# Generated files ------------------------------------------------------------------------------


def _write(path: Path, text: str) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    except OSError as error:
        raise InputError(str(path), f"cannot be written: {error.strerror or error}") from None


def cmd_crd(args: argparse.Namespace) -> int:
    from evergreen.api.crd import render_crd_yaml

    text = render_crd_yaml()
    if args.check:
        stale = [path for path in args.check if not _same(path, text)]
        for path in stale:
            print(f"{path} is stale: regenerate with `evergreen crd -o {path}`", file=sys.stderr)
        return 1 if stale else 0
    if args.output:
        for path in args.output:
            _write(path, text)
    else:
        sys.stdout.write(text)
    return 0


def _same(path: Path, text: str) -> bool:
    try:
        return path.is_file() and path.read_text() == text
    except (OSError, UnicodeDecodeError):
        return False


def cmd_reference(args: argparse.Namespace) -> int:
    from evergreen.api.reference import render_reference

    text = render_reference()
    if args.check:
        if not _same(args.check, text):
            print(
                f"{args.check} is stale: regenerate with `evergreen reference -o {args.check}`",
                file=sys.stderr,
            )
            return 1
        return 0
    if args.output:
        _write(args.output, text)
    else:
        sys.stdout.write(text)
    return 0


#: Where a pod finds its own namespace (mounted with its ServiceAccount token).
POD_NAMESPACE_FILE = Path("/var/run/secrets/kubernetes.io/serviceaccount/namespace")


def _shard_settings(args: argparse.Namespace) -> ShardSettings | None:
    """How this replica shares the monitors, or None when it reconciles all of them."""
    from evergreen.controller.settings import ShardSettings

    if not args.replica_id:
        return None
    namespace = args.lease_namespace
    if not namespace and POD_NAMESPACE_FILE.is_file():
        namespace = POD_NAMESPACE_FILE.read_text().strip()
    if not namespace:
        raise InputError(
            "--lease-namespace", "name the namespace of the replicas' Leases (needed with --replica-id)"
        )
    if args.lease_renew * 2 > args.lease_duration:
        raise InputError(
            "--lease-renew",
            f"renewing every {args.lease_renew:g}s needs a --lease-duration of at least twice that "
            f"(it is {args.lease_duration:g}s): a replica must survive one failed renewal",
        )
    return ShardSettings(
        replica=args.replica_id,
        namespace=namespace,
        group=args.shard_group,
        lease_seconds=args.lease_duration,
        renew_seconds=args.lease_renew,
    )


def cmd_run(args: argparse.Namespace) -> int:
    from evergreen.controller.runner import run_operator
    from evergreen.controller.settings import OperatorSettings
    from evergreen.kube.client import load_configuration

    default = None
    if args.prometheus_url:
        headers = dict(args.prometheus_header)
        token_file = args.prometheus_bearer_token_file
        if token_file:
            token = read_text(Path(token_file), "file holding a bearer token").strip()
            headers["Authorization"] = f"Bearer {token}"
        if args.prometheus_ca_file and not Path(args.prometheus_ca_file).is_file():
            raise InputError("--prometheus-ca-file", f"{args.prometheus_ca_file}: no such file")
        default = Endpoint(
            url=args.prometheus_url,
            headers=headers,
            verify=args.prometheus_ca_file or True,
            timeout_seconds=args.prometheus_timeout,
        )
    settings = OperatorSettings(
        default_endpoint=default,
        namespaces=tuple(n for n in args.namespace if n),
        tick_seconds=args.tick,
        status_refresh_seconds=args.status_refresh,
        retry_seconds=args.retry,
        workload_poll_seconds=args.workload_poll,
        top_series=args.top,
        max_concurrent_queries=args.max_concurrent_queries,
        metrics_port=args.metrics_port or None,
        require_service_account=args.require_service_account,
        health_port=args.health_port or None,
        bind_address=args.bind_address,
        sharding=_shard_settings(args),
    )
    if args.kubeconfig is not None and not Path(args.kubeconfig).is_file():
        raise InputError("--kubeconfig", f"{args.kubeconfig}: no such file")
    with kube_errors():
        configuration = load_configuration(args.kubeconfig, args.context)
    asyncio.run(run_operator(settings, configuration))
    return 0


def _env(name: str, default: str | None = None) -> str | None:
    return os.environ.get(f"EVERGREEN_{name}", default)


def _env_list(name: str) -> list[str]:
    return [item for item in (_env(name) or "").split(",") if item]


def _env_headers() -> list[tuple[str, str]]:
    headers = []
    for item in _env_list("PROMETHEUS_HEADERS"):
        try:
            headers.append(arg.header(item))
        except argparse.ArgumentTypeError as error:
            raise InputError("EVERGREEN_PROMETHEUS_HEADERS", str(error)) from None
    return headers


def _version() -> str:
    try:
        return metadata.version("evergreen")
    except metadata.PackageNotFoundError:
        return __version__


EXIT_CODES = """\
exit codes:
  0    success
  1    the environment failed: no kubeconfig; the Kubernetes API or Prometheus unreachable
       (DNS, refused, TLS, timeout) or refusing the credentials (401/403)
  2    a usage error: a flag, a file or a manifest field is wrong (the message names it)
  3    evaluate: evaluated, and a finding is at critical
  4    evaluate: not everything could be evaluated (and nothing evaluated is critical);
       backtest: no evaluation evaluated any signal
  70   an internal error; --debug or EVERGREEN_DEBUG=1 shows the traceback"""


class _Formatter(argparse.RawDescriptionHelpFormatter):
    """Keeps the epilog's layout (the exit-code table)."""


def parser(prog: str = "evergreen") -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    # SUPPRESS: a subcommand's copy must not reset what was given before the subcommand.
    common.add_argument(
        "--debug",
        action="store_true",
        default=argparse.SUPPRESS,
        help=f"show tracebacks (also {DEBUG_VARIABLE}=1)",
    )
    common.add_argument(
        "-v", "--verbose", action="store_true", default=argparse.SUPPRESS, help="debug logging"
    )

    root = argparse.ArgumentParser(
        prog=prog,
        description="Keeps production ML models healthy.",
        epilog=EXIT_CODES,
        formatter_class=_Formatter,
    )
    root.add_argument("--version", action="version", version=f"evergreen {_version()}")
    root.add_argument("--debug", action="store_true", help=f"show tracebacks (also {DEBUG_VARIABLE}=1)")
    root.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    commands = root.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def command(name: str, help_text: str, epilog: str | None = None) -> argparse.ArgumentParser:
        return commands.add_parser(
            name,
            help=help_text,
            description=help_text,
            parents=[common],
            epilog=epilog,
            formatter_class=_Formatter,
        )

    def cluster_options(cmd: argparse.ArgumentParser) -> None:
        cmd.add_argument(
            "--kubeconfig",
            default=None,
            help="kubeconfig file (default: in-cluster credentials, then $KUBECONFIG or ~/.kube/config)",
        )
        cmd.add_argument("--context", default=None, help="kubeconfig context (default: the current one)")

    def request_timeout(cmd: argparse.ArgumentParser) -> None:
        cmd.add_argument(
            "--request-timeout",
            type=arg.timeout,
            default=30.0,
            metavar="DURATION",
            help="timeout of each Kubernetes API request: a duration (30s, 2m) or seconds (default: 30s)",
        )

    run = command("run", "run the operator")
    cluster_options(run)
    run.add_argument(
        "--namespace",
        action="append",
        type=arg.namespace,
        default=_env_list("NAMESPACES"),
        help="namespace to watch (repeatable; default: all namespaces; env EVERGREEN_NAMESPACES=a,b)",
    )
    run.add_argument(
        "--prometheus-url",
        type=arg.url,
        default=_env("PROMETHEUS_URL"),
        help="default Prometheus for monitors without spec.prometheus, e.g. http://prometheus:9090 "
        "(env EVERGREEN_PROMETHEUS_URL)",
    )
    run.add_argument(
        "--prometheus-header",
        action="append",
        type=arg.header,
        default=_env_headers(),
        metavar="NAME=VALUE",
        help="HTTP header for the default Prometheus (repeatable; env EVERGREEN_PROMETHEUS_HEADERS)",
    )
    run.add_argument(
        "--prometheus-bearer-token-file",
        default=_env("PROMETHEUS_BEARER_TOKEN_FILE"),
        metavar="FILE",
        help="file holding a bearer token for the default Prometheus",
    )
    run.add_argument(
        "--prometheus-ca-file",
        default=_env("PROMETHEUS_CA_FILE"),
        metavar="FILE",
        help="PEM CA bundle that signs the default Prometheus's certificate",
    )
    run.add_argument(
        "--prometheus-timeout",
        type=arg.timeout,
        default=_env("PROMETHEUS_TIMEOUT", "30s"),
        metavar="DURATION",
        help="timeout of one query, a duration such as 30s or 2m (default: 30s)",
    )
    run.add_argument(
        "--tick",
        type=arg.seconds,
        default=_env("TICK_SECONDS", "10"),
        metavar="SECONDS",
        help="seconds between steps of monitors with retraining runs or rollouts, and before a failed "
        "step is retried (default: 10)",
    )
    run.add_argument(
        "--status-refresh",
        type=arg.seconds,
        default=_env("STATUS_REFRESH_SECONDS", "600"),
        metavar="SECONDS",
        help="a status whose only change is its timestamps is written at most this often (default: 600)",
    )
    run.add_argument(
        "--workload-poll",
        type=arg.seconds,
        default=_env("WORKLOAD_POLL_SECONDS", "15"),
        metavar="SECONDS",
        help="seconds between reads of a running retraining workload (default: 15)",
    )
    run.add_argument(
        "--retry",
        type=arg.seconds,
        default=_env("RETRY_SECONDS", "30"),
        metavar="SECONDS",
        help="seconds before a failed evaluation is retried (default: 30)",
    )
    run.add_argument(
        "--top",
        type=arg.count,
        default=_env("TOP_SERIES", "10"),
        metavar="N",
        help="drift series per signal kept in status and metrics (default: 10)",
    )
    run.add_argument(
        "--max-concurrent-queries",
        type=arg.count,
        default=_env("MAX_CONCURRENT_QUERIES", "16"),
        metavar="N",
        help="Prometheus queries in flight at once, over all monitors (default: 16)",
    )
    run.add_argument(
        "--metrics-port",
        type=arg.port,
        default=_env("METRICS_PORT", "8000"),
        metavar="PORT",
        help="port of /metrics, 0 for none (default: 8000)",
    )
    run.add_argument(
        "--health-port",
        type=arg.port,
        default=_env("HEALTH_PORT", "8080"),
        metavar="PORT",
        help="port of /healthz, 0 for none (default: 8080)",
    )
    run.add_argument(
        "--bind-address",
        default=_env("BIND_ADDRESS", "0.0.0.0"),
        help="address /metrics and /healthz listen on (127.0.0.1 for a run outside the cluster)",
    )
    run.add_argument(
        "--require-service-account",
        action="store_true",
        default=(_env("REQUIRE_SERVICE_ACCOUNT") or "").lower() in ("1", "true", "yes"),
        help="refuse retraining for monitors without spec.serviceAccountName",
    )
    sharding = run.add_argument_group(
        "sharing the monitors between replicas",
        "each replica renews a Lease; each monitor is reconciled by one live replica (docs/scaling.md)",
    )
    sharding.add_argument(
        "--replica-id",
        type=arg.object_name,
        default=_env("REPLICA_ID"),
        metavar="NAME",
        help="this replica's identity, unique in its group (the pod name); without it this "
        "replica reconciles every monitor (env EVERGREEN_REPLICA_ID)",
    )
    sharding.add_argument(
        "--lease-namespace",
        type=arg.namespace,
        default=_env("LEASE_NAMESPACE"),
        metavar="NAMESPACE",
        help="namespace of the replicas' Leases (default in a pod: its own; env EVERGREEN_LEASE_NAMESPACE)",
    )
    sharding.add_argument(
        "--shard-group",
        type=arg.label_value,
        default=_env("SHARD_GROUP", "evergreen"),
        metavar="NAME",
        help="the replicas of one installation share this name "
        "(default: evergreen; env EVERGREEN_SHARD_GROUP)",
    )
    sharding.add_argument(
        "--lease-duration",
        type=arg.timeout,
        default=_env("LEASE_DURATION", "15s"),
        metavar="DURATION",
        help="a replica whose Lease is not renewed for this long is gone and its monitors move "
        "(default: 15s; env EVERGREEN_LEASE_DURATION)",
    )
    sharding.add_argument(
        "--lease-renew",
        type=arg.timeout,
        default=_env("LEASE_RENEW", "5s"),
        metavar="DURATION",
        help="how often a replica renews its Lease and lists the others, at most half the "
        "duration (default: 5s; env EVERGREEN_LEASE_RENEW)",
    )
    run.set_defaults(handler=cmd_run)

    demo = command(
        "demo", "evaluate the bundled example over a bundled recording (no cluster, no Prometheus)"
    )
    demo.add_argument(
        "--recording",
        type=Path,
        default=None,
        metavar="FILE",
        help="replay this file from `evergreen record`",
    )
    demo.add_argument(
        "--top", type=arg.count, default=8, metavar="N", help="drift series shown per signal (default: 8)"
    )
    demo.set_defaults(handler=cmd_demo)

    def source_options(cmd: argparse.ArgumentParser, *, manifest_required: bool = True) -> None:
        cmd.add_argument(
            "-f",
            "--file",
            type=Path,
            required=manifest_required,
            metavar="FILE",
            help="ModelMonitor manifest (YAML; the first ModelMonitor document is used)",
        )
        where = cmd.add_mutually_exclusive_group()
        where.add_argument(
            "--prometheus",
            type=arg.url,
            default=None,
            metavar="URL",
            help="Prometheus base URL, e.g. http://localhost:9090 "
            "(default: spec.prometheus.url, then EVERGREEN_PROMETHEUS_URL)",
        )
        where.add_argument(
            "--scenario",
            default=None,
            metavar="NAME",
            help="serve a built-in simulated scenario from a throwaway Prometheus (needs the "
            "prometheus and promtool binaries); `evergreen backtest --list-scenarios` lists them",
        )
        cmd.add_argument(
            "--header",
            action="append",
            type=arg.header,
            default=[],
            metavar="NAME=VALUE",
            help="HTTP header sent to Prometheus, e.g. X-Scope-OrgID=team-a (repeatable)",
        )
        cmd.add_argument(
            "--timeout",
            type=arg.timeout,
            default=30.0,
            metavar="DURATION",
            help="timeout of one query: a duration (30s, 2m) or seconds (default: 30s)",
        )
        cmd.add_argument(
            "--namespace",
            type=arg.namespace,
            default=None,
            help="the namespace {{namespace}} stands for (default: the manifest's, then default)",
        )
        cmd.add_argument(
            "--baseline-file",
            type=Path,
            default=None,
            metavar="FILE",
            help="reference histograms (JSON) for a spec.drift.baseline.configMap",
        )

    evaluate_cmd = command(
        "evaluate",
        "evaluate a ModelMonitor once",
        epilog="exit codes: 0 evaluated, nothing critical; 1 Prometheus unreachable; 2 usage error;\n"
        "3 a finding at critical; 4 not everything could be evaluated",
    )
    source_options(evaluate_cmd)
    evaluate_cmd.add_argument(
        "--at", type=arg.time, default="now", metavar="TIME", help=f"evaluation time: {arg.TIME_FORMAT}"
    )
    evaluate_cmd.add_argument(
        "--top", type=arg.count, default=10, metavar="N", help="drift series shown per signal (default: 10)"
    )
    evaluate_cmd.add_argument("--json", action="store_true", help="print the status summary as JSON")
    evaluate_cmd.set_defaults(handler=cmd_evaluate)

    def span_options(cmd: argparse.ArgumentParser) -> None:
        cmd.add_argument(
            "--start",
            type=arg.time,
            default="now",
            metavar="TIME",
            help=f"first evaluation: {arg.TIME_FORMAT}",
        )
        cmd.add_argument(
            "--end", type=arg.time, default="now", metavar="TIME", help=f"last evaluation: {arg.TIME_FORMAT}"
        )
        cmd.add_argument(
            "--step",
            type=arg.positive_duration,
            default=None,
            metavar="DURATION",
            help=f"time between evaluations, {arg.DURATION_FORMAT} (default: spec.interval); "
            f"at most {arg.MAX_EVALUATIONS:,} evaluations per run",
        )

    record = command("record", "record the answers a monitor's queries get, for replay")
    source_options(record)
    span_options(record)
    record.add_argument(
        "--time",
        action="append",
        type=arg.time,
        default=[],
        metavar="TIME",
        help=f"an explicit evaluation time (repeatable): {arg.TIME_FORMAT}",
    )
    record.add_argument(
        "--span",
        action="append",
        type=arg.span,
        default=[],
        metavar="START..END",
        help="evaluated every --step (repeatable), e.g. 2026-01-13T05:35:00Z..2026-01-13T06:00:00Z",
    )
    record.add_argument("--description", default="", help="what the recording shows (kept in the file)")
    record.add_argument(
        "-o",
        "--output",
        type=Path,
        required=True,
        metavar="FILE",
        help="the recording to write (.json or .json.gz)",
    )
    record.set_defaults(handler=cmd_record)

    backtest = command(
        "backtest",
        "replay the decision engine over history and print its decisions",
        epilog="a --step longer than spec.interval samples the span: each sample is judged after the\n"
        "evaluations the operator would have made at spec.interval just before it.\n"
        "exit codes: 0 at least one evaluation evaluated something; 1 Prometheus unreachable\n"
        "at every evaluation; 2 usage error; 4 no evaluation evaluated any signal",
    )
    source_options(backtest, manifest_required=False)
    backtest.add_argument(
        "--recording", type=Path, default=None, metavar="FILE", help="replay a file from `evergreen record`"
    )
    span_options(backtest)
    backtest.add_argument("--every", action="store_true", help="print every evaluation, not only changes")
    backtest.add_argument(
        "--output",
        choices=["text", "jsonl", "json"],
        default="text",
        help="jsonl: one JSON object per evaluation (time, decision, reason, message, scope, evidence); "
        "with --compare, one per policy; json: the --compare table as one document",
    )
    backtest.add_argument(
        "--list-scenarios", action="store_true", help="list the built-in scenarios with the span each covers"
    )
    backtest.add_argument(
        "--report",
        type=Path,
        default=None,
        metavar="FILE.html",
        help="also write the replay as one self-contained HTML page (needs evergreen[report])",
    )
    cli_whatif.add_arguments(backtest)
    backtest.set_defaults(handler=cmd_backtest)

    def monitor_options(cmd: argparse.ArgumentParser) -> None:
        # kubectl's flags, with kubectl's meaning (these commands also run as `kubectl evergreen`).
        cmd.add_argument("name", type=arg.object_name, help="the ModelMonitor's name")
        cmd.add_argument(
            "-n",
            "--namespace",
            type=arg.namespace,
            default=None,
            help="default: the kubeconfig context's namespace, else default",
        )
        cluster_options(cmd)
        request_timeout(cmd)

    explain = command("explain", "show a ModelMonitor's decision, its evidence and history")
    monitor_options(explain)
    explain.add_argument("--json", action="store_true", help="print the status as JSON")
    explain.add_argument(
        "--report",
        type=Path,
        default=None,
        metavar="FILE.html",
        help="also write the monitor's recent history as one HTML page (needs evergreen[report])",
    )
    explain.set_defaults(handler=cmd_explain)

    approve = command("approve", "approve the rollout of a candidate (start, promotion or both)")
    monitor_options(approve)
    approve.add_argument(
        "--gate", choices=["start", "promotion", "both"], default="both", help="which gate (default: both)"
    )
    approve.add_argument(
        "--version", type=arg.version, default=None, help="default: the candidate being rolled out"
    )
    approve.set_defaults(handler=cmd_approve)

    abort = command("abort", "roll the candidate back now")
    monitor_options(abort)
    abort.add_argument(
        "--version", type=arg.version, default=None, help="default: the candidate being rolled out"
    )
    abort.set_defaults(handler=cmd_abort)

    retrain = command("retrain", "request a retraining run (once per id)")
    monitor_options(retrain)
    retrain.add_argument(
        "--id", type=arg.version, required=True, help="request id, e.g. 2026-12-07-a; each id runs once"
    )
    retrain.add_argument("--reason", default="", help="why, for the record")
    retrain.set_defaults(handler=cmd_retrain)

    acknowledge = command(
        "acknowledge", "accept a data-quality change as the new normal: end the hold, restart baselines"
    )
    monitor_options(acknowledge)
    acknowledge.add_argument(
        "--at",
        type=arg.time,
        default=None,
        metavar="TIME",
        help=f"when the change became normal: {arg.TIME_FORMAT} (default: now)",
    )
    acknowledge.add_argument(
        "--force", action="store_true", help="restart baselines even without a data-quality hold in force"
    )
    acknowledge.set_defaults(handler=cmd_acknowledge)

    crd = command("crd", "print, write or check the CRD manifest")
    crd.add_argument(
        "-o", "--output", type=Path, action="append", metavar="FILE", help="write to this file (repeatable)"
    )
    crd.add_argument(
        "--check",
        type=Path,
        action="append",
        metavar="FILE",
        help="exit 1 if this file is not current (repeatable)",
    )
    crd.set_defaults(handler=cmd_crd)

    reference = command("reference", "print, write or check the field reference (Markdown)")
    reference.add_argument("-o", "--output", type=Path, metavar="FILE", help="write to this file")
    reference.add_argument("--check", type=Path, metavar="FILE", help="exit 1 if this file is not current")
    reference.set_defaults(handler=cmd_reference)
    return root


def main(argv: Sequence[str] | None = None, *, prog: str = "evergreen") -> int:
    """Run one command; every failure ends here as one message and an exit code."""
    arguments = list(sys.argv[1:] if argv is None else argv)
    debug = debug_requested(arguments)
    try:
        args = parser(prog).parse_args(arguments)
    except SystemExit as stop:  # argparse: --help, --version, or a usage error already printed
        return stop.code if isinstance(stop.code, int) else ExitCode.USAGE
    except Exception as error:  # e.g. a malformed EVERGREEN_* default
        return report(error, debug=debug)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    try:
        return int(args.handler(args))
    except BrokenPipeError:
        # Output piped into `head` and closed early: not an error worth a traceback.
        with contextlib.suppress(OSError):
            sys.stderr.close()
        return 0
    except (Exception, KeyboardInterrupt) as error:
        return report(error, debug=debug or args.debug)


if __name__ == "__main__":
    sys.exit(main())
