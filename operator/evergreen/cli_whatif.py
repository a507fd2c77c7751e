"""``evergreen backtest --compare``: the what-if table's flags, checks and output.

Checked before the replay (a replay can take a while; a policy the monitor cannot price should
fail at once), computed from the replay's steps afterwards.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from datetime import timedelta

from evergreen import cli_arguments as arg
from evergreen import whatif
from evergreen.api.spec import ModelMonitorSpec
from evergreen.backtest import Step
from evergreen.errors import InputError
from evergreen.whatif.policies import PolicyKind
from evergreen.whatif.simulate import naive_threshold


def policies(text: str) -> list[whatif.Policy]:
    """``--compare`` value: policies separated by commas."""
    try:
        return whatif.parse_policies(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def add_arguments(backtest: argparse.ArgumentParser) -> None:
    backtest.add_argument(
        "--compare",
        type=policies,
        nargs="?",
        const=whatif.DEFAULT_POLICIES,
        default=None,
        metavar="POLICIES",
        help="replay the history once and price it under several retraining policies: monitor, "
        f"every=DURATION[@FIRST], naive-psi[=THRESHOLD] (default: {whatif.DEFAULT_POLICIES}; "
        "naive-psi only when spec.drift uses psi)",
    )
    backtest.add_argument(
        "--run-duration",
        type=arg.positive_duration,
        default=None,
        metavar="DURATION",
        help="with --compare: how long a retraining run takes (default: spec.retraining.timeout)",
    )
    backtest.add_argument(
        "--approval-wait",
        type=arg.duration,
        default=timedelta(0),
        metavar="DURATION",
        help="with --compare: how long a Manual rollout approval takes to be given (default: 0s)",
    )


def _policies(args: argparse.Namespace, spec: ModelMonitorSpec) -> list[whatif.Policy]:
    chosen: str | list[whatif.Policy] = args.compare
    if not isinstance(chosen, str):
        return chosen
    # The default set (argparse does not run the type on a const): a naive PSI alarm only for a
    # monitor whose drift is PSI, rather than refusing a comparison nobody spelled out.
    defaults = policies(chosen)
    return [p for p in defaults if p.kind is not PolicyKind.NAIVE_PSI or _naive_problem(spec, p) is None]


def _naive_problem(spec: ModelMonitorSpec, policy: whatif.Policy) -> str | None:
    try:
        naive_threshold(spec, policy)
    except ValueError as error:
        return str(error)
    return None


def check(args: argparse.Namespace, spec: ModelMonitorSpec) -> None:
    """Refuse flags and policies the monitor cannot run, before anything is replayed."""
    if args.compare is None:
        for flag, value, default in (
            ("--run-duration", args.run_duration, None),
            ("--approval-wait", args.approval_wait, timedelta(0)),
        ):
            if value != default:
                raise InputError(flag, "prices policies in a what-if comparison: add --compare")
        if args.output == "json":
            raise InputError(
                "--output", "json is the what-if comparison's format: add --compare (jsonl prints the replay)"
            )
        return
    try:
        whatif.assumptions_for(spec, args.run_duration, args.approval_wait)
    except whatif.MissingRetraining as error:
        raise InputError("--compare", str(error), field="spec.retraining") from None
    for policy in _policies(args, spec):
        if policy.kind is PolicyKind.NAIVE_PSI and (problem := _naive_problem(spec, policy)):
            raise InputError("--compare", problem, field="spec.drift")


def comparison(
    args: argparse.Namespace, spec: ModelMonitorSpec, steps: Sequence[Step]
) -> whatif.Comparison | None:
    """The comparison ``--compare`` asks for (None without it)."""
    if args.compare is None:
        return None
    assumptions = whatif.assumptions_for(spec, args.run_duration, args.approval_wait)
    return whatif.compare(spec, steps, _policies(args, spec), assumptions, step=args.step)


def print_comparison(args: argparse.Namespace, result: whatif.Comparison) -> None:
    """Text table by default; ``--output jsonl`` one object per policy, ``json`` one document."""
    if args.output == "jsonl":
        for line in whatif.jsonl(result):
            print(line)
    elif args.output == "json":
        print(json.dumps(whatif.document(result), indent=2))
    else:
        print(whatif.render(result))
