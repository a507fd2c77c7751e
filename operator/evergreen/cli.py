"""The ``evergreen`` command.

evergreen run        run the operator (in a cluster, or against a kubeconfig)
evergreen demo       evaluate the bundled example over a bundled recording (no cluster)
evergreen evaluate   evaluate a ModelMonitor manifest once against a Prometheus
evergreen record     record the answers a monitor's queries get, for replay
evergreen crd        print or check the generated CustomResourceDefinition
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import os
import sys
import tempfile
from collections.abc import Callable, Iterator, Sequence
from datetime import UTC, datetime, timedelta
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from evergreen.api.durations import parse_duration
from evergreen.api.resource import KIND, parse_spec
from evergreen.api.spec import ModelMonitorSpec
from evergreen.backtest import evaluation_times
from evergreen.conditions import evaluation_drafts, merge_conditions, unavailable_drafts
from evergreen.errors import EvergreenError
from evergreen.observation.evaluate import Evaluation, evaluate
from evergreen.report import render_evaluation
from evergreen.signals.prometheus import Endpoint, PrometheusSource
from evergreen.signals.recording import RecordedSource, Recorder, Recording
from evergreen.signals.reference import parse_reference
from evergreen.signals.samples import Sample
from evergreen.signals.source import MetricSource

DEMO_RECORDING = "showcase.recording.json.gz"


def _parse_time(text: str) -> datetime:
    if text == "now":
        return datetime.now(UTC)
    value = datetime.fromisoformat(text.replace("Z", "+00:00"))
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def _headers(pairs: Sequence[str]) -> dict[str, str]:
    headers = {}
    for pair in pairs:
        name, sep, value = pair.partition("=")
        if not sep:
            raise SystemExit(f"--header expects NAME=VALUE, got {pair!r}")
        headers[name.strip()] = value.strip()
    return headers


def load_manifest(path: Path) -> dict[str, Any]:
    """The first ModelMonitor document of a YAML file."""
    for document in yaml.safe_load_all(path.read_text()):
        if isinstance(document, dict) and document.get("kind") == KIND:
            return document
    raise SystemExit(f"{path}: no {KIND} document found")


def _namespace(manifest: dict[str, Any], override: str | None) -> str:
    return override or manifest.get("metadata", {}).get("namespace") or "default"


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
            raise SystemExit(f"{field}.baseline uses a ConfigMap: pass its content with --baseline-file")
        references[field] = parse_reference(baseline_file.read_text(), feature_label=label, field=field)
    return references


async def _evaluate_at(
    spec: ModelMonitorSpec,
    source: MetricSource,
    at: datetime,
    namespace: str,
    references: dict[str, list[Sample]],
) -> Evaluation:
    return await evaluate(spec, source, at, namespace=namespace, references=references)


def _print(spec: ModelMonitorSpec, evaluation: Evaluation, top: int, title: str | None = None) -> None:
    drafts = unavailable_drafts(evaluation) if evaluation.unavailable else evaluation_drafts(spec, evaluation)
    conditions = merge_conditions([], drafts, now=evaluation.time, generation=None)
    print(render_evaluation(evaluation, conditions=conditions, top=top, title=title))


# Commands -------------------------------------------------------------------------------------


def bundled_recording() -> Recording:
    """The recorded scenario shipped with the package (see ``make recording``)."""
    with resources.as_file(resources.files("evergreen").joinpath("data", DEMO_RECORDING)) as path:
        return Recording.load(path)


def cmd_demo(args: argparse.Namespace) -> int:
    from evergreen import backtest
    from evergreen.report import render_decision

    recording = Recording.load(args.recording) if args.recording else bundled_recording()
    manifest = dict(recording.monitor)
    spec = parse_spec(manifest["spec"])
    namespace = _namespace(manifest, None)
    name = manifest.get("metadata", {}).get("name", spec.model)
    print(f"Evergreen demo: ModelMonitor {namespace}/{name} over a recorded scenario")
    if recording.description:
        print(recording.description)
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
        raise SystemExit("no Prometheus: pass --prometheus URL or set spec.prometheus.url")
    headers = {**(spec.prometheus.headers if spec.prometheus else {}), **_headers(args.header)}
    return PrometheusSource(Endpoint(url=url, headers=headers, timeout_seconds=args.timeout))


def cmd_evaluate(args: argparse.Namespace) -> int:
    manifest = load_manifest(args.file)
    spec = parse_spec(manifest.get("spec") or {})
    namespace = _namespace(manifest, args.namespace)
    with _scenario_prometheus(args.scenario) as url:
        evaluation = asyncio.run(
            _evaluate_at(
                spec,
                _source(args, spec, url),
                _parse_time(args.at),
                namespace,
                _references(spec, args.baseline_file),
            )
        )
    from evergreen.api.decisions import Action
    from evergreen.policy import PolicyState, advance
    from evergreen.report import render_decision

    # The decision this evaluation alone leads to (no persistence yet): Unknown when nothing
    # could be judged, with what is missing.
    decision = advance(spec, evaluation, PolicyState()).decision
    assert decision is not None
    if args.json:
        document = evaluation.summary(args.top).to_wire()
        document["decision"] = decision.to_wire()
        print(json.dumps(document, indent=2))
    else:
        _print(spec, evaluation, args.top)
        print(render_decision(decision))
    return 1 if evaluation.unavailable or decision.action is Action.UNKNOWN else 0


def cmd_record(args: argparse.Namespace) -> int:
    manifest = load_manifest(args.file)
    spec = parse_spec(manifest.get("spec") or {})
    namespace = _namespace(manifest, args.namespace)
    step = parse_duration(args.step) if args.step else parse_duration(spec.interval)
    times = [_parse_time(t) for t in args.time]
    for span in args.span:
        first, separator, last = span.partition("..")
        if not separator:
            raise SystemExit(f"--span expects START..END, got {span!r}")
        times += evaluation_times(_parse_time(first), _parse_time(last), step)
    if not times:
        times = evaluation_times(_parse_time(args.start), _parse_time(args.end), step)
    times = sorted(set(times))
    references = _references(spec, args.baseline_file)
    with _scenario_prometheus(args.scenario) as url:
        recorder = Recorder(_source(args, spec, url))
        for at in times:
            evaluation = asyncio.run(_evaluate_at(spec, recorder, at, namespace, references))
            if evaluation.unavailable:
                problem = evaluation.problems[0].message
                raise SystemExit(f"Prometheus could not answer at {at.isoformat()}: {problem}")
    recorder.recording(manifest, args.description).save(args.output)
    print(f"recorded {len(times)} evaluations, {len(recorder.results)} answers -> {args.output}")
    return 0


def _backtest_output(args: argparse.Namespace, spec: ModelMonitorSpec, steps: Sequence[Any]) -> int:
    """Print a replay as asked; 1 when no evaluation could judge anything."""
    from evergreen import backtest

    if args.output == "jsonl":
        for line in backtest.jsonl(steps):
            print(line)
    else:
        print(backtest.render(steps, every=args.every, spec=spec))
    summary = backtest.summarize(steps)
    if summary.judged == 0:
        print(
            f"evergreen: none of the {summary.evaluations} evaluations could judge any signal "
            "(see the Unknown reasons above)",
            file=sys.stderr,
        )
        return 1
    return 0


def cmd_backtest(args: argparse.Namespace) -> int:
    from evergreen import backtest

    if args.recording is not None:
        recording = Recording.load(args.recording)
        manifest = load_manifest(args.file) if args.file else dict(recording.monitor)
        spec = parse_spec(manifest.get("spec") or {})
        steps = asyncio.run(
            backtest.replay(
                spec,
                RecordedSource(recording),
                recording.times,
                namespace=_namespace(manifest, args.namespace),
            )
        )
        return _backtest_output(args, spec, steps)
    if args.file is None:
        raise SystemExit("pass the ModelMonitor manifest with -f (or a --recording that holds one)")
    manifest = load_manifest(args.file)
    spec = parse_spec(manifest.get("spec") or {})
    start, end = _parse_time(args.start), _parse_time(args.end)
    interval = parse_duration(spec.interval)
    step = parse_duration(args.step) if args.step else interval
    # Persistence counts evaluations at the monitor's interval: a longer step samples the
    # timeline, each sample preceded by the evaluations the operator would have made.
    times = backtest.sampled_times(start, end, step, interval, spec.policy.persistence.of)
    with _scenario_prometheus(args.scenario) as url:
        steps = asyncio.run(
            backtest.replay(
                spec,
                _source(args, spec, url),
                times,
                namespace=_namespace(manifest, args.namespace),
                references=_references(spec, args.baseline_file),
            )
        )
    return _backtest_output(args, spec, steps)


def cmd_explain(args: argparse.Namespace) -> int:
    from evergreen.api.resource import parse_status
    from evergreen.kube.client import KubeApi, load_configuration
    from evergreen.report import render_status

    kube = KubeApi(load_configuration(args.kubeconfig, args.context))
    try:
        body = asyncio.run(kube.get_monitor(args.namespace, args.name))
    finally:
        kube.close()
    if body is None:
        print(f"evergreen: ModelMonitor {args.namespace}/{args.name} not found", file=sys.stderr)
        return 1
    spec = body.get("spec") or {}
    status = parse_status(body.get("status"))
    if args.json:
        print(json.dumps(status.to_wire(), indent=2))
        return 0
    print(
        render_status(
            args.name, args.namespace, str(spec.get("model", "?")), str(spec.get("mode", "Enforce")), status
        )
    )
    return 0


def _monitor_command(args: argparse.Namespace, change: Callable[[dict[str, Any]], dict[str, Any]]) -> int:
    """Read a ModelMonitor, compute a spec change from it, merge-patch it in."""
    from evergreen.kube.client import KubeApi, load_configuration

    kube = KubeApi(load_configuration(args.kubeconfig, args.context))
    try:
        body = asyncio.run(kube.get_monitor(args.namespace, args.name))
        if body is None:
            print(f"evergreen: ModelMonitor {args.namespace}/{args.name} not found", file=sys.stderr)
            return 1
        patch = change(body)
        asyncio.run(kube.patch_monitor_spec(args.namespace, args.name, patch))
    finally:
        kube.close()
    print(f"patched ModelMonitor {args.namespace}/{args.name}: spec {json.dumps(patch)}")
    print("(with GitOps, commit the same change instead, or it will be reverted)")
    return 0


def _rollout_candidate(body: dict[str, Any], explicit: str | None) -> str:
    if explicit:
        return explicit
    candidate = (body.get("status") or {}).get("rollout", {}).get("candidate")
    if not candidate:
        raise SystemExit("evergreen: no rollout in progress; name the version with --version")
    return str(candidate)


def cmd_approve(args: argparse.Namespace) -> int:
    def change(body: dict[str, Any]) -> dict[str, Any]:
        if "rollout" not in (body.get("spec") or {}):
            raise SystemExit("evergreen: this ModelMonitor has no spec.rollout")
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
        return {"rollout": {"abortedVersion": _rollout_candidate(body, args.version)}}

    return _monitor_command(args, change)


def cmd_retrain(args: argparse.Namespace) -> int:
    def change(body: dict[str, Any]) -> dict[str, Any]:
        if "retraining" not in (body.get("spec") or {}):
            raise SystemExit("evergreen: this ModelMonitor has no spec.retraining")
        return {"retraining": {"request": {"id": args.id, "reason": args.reason}}}

    return _monitor_command(args, change)


def cmd_acknowledge(args: argparse.Namespace) -> int:
    def change(body: dict[str, Any]) -> dict[str, Any]:
        decision = ((body.get("status") or {}).get("decision")) or {}
        held = decision.get("action") == "HoldForDataQuality" or decision.get("reason") == "HoldUnresolved"
        if not held and not args.force:
            raise SystemExit(
                "evergreen: no data-quality hold to acknowledge (pass --force to restart baselines anyway)"
            )
        at = _parse_time(args.at) if args.at else datetime.now(UTC)
        stamp = at.astimezone(UTC).isoformat().replace("+00:00", "Z")
        return {"policy": {"acknowledgedAt": stamp}}

    return _monitor_command(args, change)


def cmd_crd(args: argparse.Namespace) -> int:
    from evergreen.api.crd import render_crd_yaml

    text = render_crd_yaml()
    if args.check:
        stale = [path for path in args.check if not path.exists() or path.read_text() != text]
        for path in stale:
            print(f"{path} is stale: regenerate with `evergreen crd -o {path}`", file=sys.stderr)
        return 1 if stale else 0
    if args.output:
        for path in args.output:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text)
    else:
        sys.stdout.write(text)
    return 0


def cmd_reference(args: argparse.Namespace) -> int:
    from evergreen.api.reference import render_reference

    text = render_reference()
    if args.check:
        if not args.check.exists() or args.check.read_text() != text:
            print(
                f"{args.check} is stale: regenerate with `evergreen reference -o {args.check}`",
                file=sys.stderr,
            )
            return 1
        return 0
    if args.output:
        args.output.write_text(text)
    else:
        sys.stdout.write(text)
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    from evergreen.controller.runner import run_operator
    from evergreen.controller.settings import OperatorSettings
    from evergreen.kube.client import load_configuration

    default = None
    if args.prometheus_url:
        headers = _headers(args.prometheus_header)
        token_file = args.prometheus_bearer_token_file
        if token_file:
            headers["Authorization"] = f"Bearer {Path(token_file).read_text().strip()}"
        default = Endpoint(
            url=args.prometheus_url,
            headers=headers,
            verify=args.prometheus_ca_file or True,
            timeout_seconds=parse_duration(args.prometheus_timeout).total_seconds(),
        )
    settings = OperatorSettings(
        default_endpoint=default,
        namespaces=tuple(n for n in args.namespace if n),
        tick_seconds=args.tick,
        retry_seconds=args.retry,
        top_series=args.top,
        max_concurrent_queries=args.max_concurrent_queries,
        metrics_port=args.metrics_port or None,
        require_service_account=args.require_service_account,
        health_port=args.health_port or None,
    )
    asyncio.run(run_operator(settings, load_configuration(args.kubeconfig, args.context)))
    return 0


def _env(name: str, default: str | None = None) -> str | None:
    return os.environ.get(f"EVERGREEN_{name}", default)


def parser() -> argparse.ArgumentParser:
    root = argparse.ArgumentParser(prog="evergreen", description="Keeps production ML models healthy.")
    root.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    commands = root.add_subparsers(dest="command", required=True)

    run = commands.add_parser("run", help="run the operator")
    run.add_argument(
        "--kubeconfig", default=None, help="kubeconfig file (default: in-cluster, then ~/.kube/config)"
    )
    run.add_argument("--context", default=None)
    run.add_argument(
        "--namespace",
        action="append",
        default=[n for n in (_env("NAMESPACES") or "").split(",") if n],
        help="namespace to watch (repeatable; default: all namespaces)",
    )
    run.add_argument(
        "--prometheus-url",
        default=_env("PROMETHEUS_URL"),
        help="default Prometheus for monitors without spec.prometheus",
    )
    run.add_argument(
        "--prometheus-header",
        action="append",
        default=[h for h in (_env("PROMETHEUS_HEADERS") or "").split(",") if h],
        help="NAME=VALUE (repeatable)",
    )
    run.add_argument("--prometheus-bearer-token-file", default=_env("PROMETHEUS_BEARER_TOKEN_FILE"))
    run.add_argument("--prometheus-ca-file", default=_env("PROMETHEUS_CA_FILE"))
    run.add_argument("--prometheus-timeout", default=_env("PROMETHEUS_TIMEOUT", "30s"))
    run.add_argument(
        "--tick",
        type=float,
        default=float(_env("TICK_SECONDS", "10") or 10),
        help="seconds between due-checks of each monitor",
    )
    run.add_argument(
        "--retry",
        type=float,
        default=float(_env("RETRY_SECONDS", "30") or 30),
        help="seconds before a failed evaluation is retried",
    )
    run.add_argument(
        "--top",
        type=int,
        default=int(_env("TOP_SERIES", "10") or 10),
        help="drift series per signal kept in status and metrics",
    )
    run.add_argument(
        "--max-concurrent-queries", type=int, default=int(_env("MAX_CONCURRENT_QUERIES", "16") or 16)
    )
    run.add_argument("--metrics-port", type=int, default=int(_env("METRICS_PORT", "8000") or 8000))
    run.add_argument("--health-port", type=int, default=int(_env("HEALTH_PORT", "8080") or 8080))
    run.add_argument(
        "--require-service-account",
        action="store_true",
        default=(_env("REQUIRE_SERVICE_ACCOUNT") or "").lower() in ("1", "true", "yes"),
        help="refuse retraining for monitors without spec.serviceAccountName",
    )
    run.set_defaults(handler=cmd_run)

    demo = commands.add_parser("demo", help="evaluate the bundled example over a bundled recording")
    demo.add_argument("--recording", type=Path, default=None, help="another recording to replay")
    demo.add_argument("--top", type=int, default=8)
    demo.set_defaults(handler=cmd_demo)

    def source_options(command: argparse.ArgumentParser, *, manifest_required: bool = True) -> None:
        command.add_argument(
            "-f", "--file", type=Path, required=manifest_required, help="ModelMonitor manifest"
        )
        where = command.add_mutually_exclusive_group()
        where.add_argument("--prometheus", default=None, help="Prometheus URL (default: spec.prometheus.url)")
        where.add_argument(
            "--scenario",
            default=None,
            help="serve a built-in simulated scenario from a throwaway Prometheus "
            "(needs the prometheus and promtool binaries), e.g. showcase",
        )
        command.add_argument("--header", action="append", default=[], help="NAME=VALUE (repeatable)")
        command.add_argument("--timeout", type=float, default=30.0)
        command.add_argument("--namespace", default=None, help="for {{namespace}} (default: the manifest's)")
        command.add_argument(
            "--baseline-file", type=Path, default=None, help="reference histograms for a ConfigMap baseline"
        )

    evaluate_cmd = commands.add_parser("evaluate", help="evaluate a ModelMonitor once")
    source_options(evaluate_cmd)
    evaluate_cmd.add_argument("--at", default="now", help="evaluation time (RFC 3339 or 'now')")
    evaluate_cmd.add_argument("--top", type=int, default=10)
    evaluate_cmd.add_argument("--json", action="store_true", help="print the status summary as JSON")
    evaluate_cmd.set_defaults(handler=cmd_evaluate)

    record = commands.add_parser("record", help="record query answers for replay")
    source_options(record)
    record.add_argument("--start", default="now")
    record.add_argument("--end", default="now")
    record.add_argument("--step", default=None, help="default: spec.interval")
    record.add_argument("--time", action="append", default=[], help="explicit evaluation times (repeatable)")
    record.add_argument(
        "--span", action="append", default=[], help="START..END evaluated every --step (repeatable)"
    )
    record.add_argument("--description", default="")
    record.add_argument("-o", "--output", type=Path, required=True)
    record.set_defaults(handler=cmd_record)

    backtest = commands.add_parser(
        "backtest", help="replay the decision engine over history and print its decisions"
    )
    source_options(backtest, manifest_required=False)
    backtest.add_argument(
        "--recording", type=Path, default=None, help="replay a file from `evergreen record`"
    )
    backtest.add_argument("--start", default="now")
    backtest.add_argument("--end", default="now")
    backtest.add_argument(
        "--step",
        default=None,
        help="default: spec.interval; a longer step samples the timeline, each sample judged with "
        "the evaluations the operator would have made at spec.interval just before it",
    )
    backtest.add_argument("--every", action="store_true", help="print every evaluation, not only changes")
    backtest.add_argument(
        "--output",
        choices=["text", "jsonl"],
        default="text",
        help="jsonl: one JSON object per evaluation (time, decision, reason, message, scope, evidence)",
    )
    backtest.set_defaults(handler=cmd_backtest)

    def monitor_options(command: argparse.ArgumentParser) -> None:
        command.add_argument("name")
        command.add_argument("-n", "--namespace", default="default")
        command.add_argument("--kubeconfig", default=None)
        command.add_argument("--context", default=None)

    explain = commands.add_parser("explain", help="show a ModelMonitor's decision, its evidence and history")
    monitor_options(explain)
    explain.add_argument("--json", action="store_true", help="print the status as JSON")
    explain.set_defaults(handler=cmd_explain)

    approve = commands.add_parser(
        "approve", help="approve the rollout of a candidate (start, promotion or both)"
    )
    monitor_options(approve)
    approve.add_argument("--gate", choices=["start", "promotion", "both"], default="both")
    approve.add_argument("--version", default=None, help="default: the candidate being rolled out")
    approve.set_defaults(handler=cmd_approve)

    abort = commands.add_parser("abort", help="roll the candidate back now")
    monitor_options(abort)
    abort.add_argument("--version", default=None, help="default: the candidate being rolled out")
    abort.set_defaults(handler=cmd_abort)

    retrain = commands.add_parser("retrain", help="request a retraining run (once per id)")
    monitor_options(retrain)
    retrain.add_argument("--id", required=True, help="request id; each id runs once")
    retrain.add_argument("--reason", default="", help="why, for the record")
    retrain.set_defaults(handler=cmd_retrain)

    acknowledge = commands.add_parser(
        "acknowledge",
        help="accept a data-quality change as the new normal: end the hold, restart baselines",
    )
    monitor_options(acknowledge)
    acknowledge.add_argument("--at", default=None, help="RFC 3339 time (default: now)")
    acknowledge.add_argument("--force", action="store_true", help="even without a hold in force")
    acknowledge.set_defaults(handler=cmd_acknowledge)

    crd = commands.add_parser("crd", help="print, write or check the CRD manifest")
    crd.add_argument("-o", "--output", type=Path, action="append", help="write to this file (repeatable)")
    crd.add_argument("--check", type=Path, action="append", help="fail if this file is not current")
    crd.set_defaults(handler=cmd_crd)

    reference = commands.add_parser("reference", help="print, write or check the field reference (Markdown)")
    reference.add_argument("-o", "--output", type=Path, help="write to this file")
    reference.add_argument("--check", type=Path, help="fail if this file is not current")
    reference.set_defaults(handler=cmd_reference)
    return root


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    try:
        return int(args.handler(args))
    except EvergreenError as error:
        print(f"evergreen: {error}", file=sys.stderr)
        return 2
    except BrokenPipeError:
        # Output piped into `head` and closed early: not an error worth a traceback.
        sys.stderr.close()
        return 0


if __name__ == "__main__":
    sys.exit(main())
