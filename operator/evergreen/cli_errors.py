"""The command line's one error path: every failure becomes one message and an exit code.

    0    success
    1    the environment failed: no kubeconfig, the Kubernetes API or Prometheus unreachable
         (DNS, refused, TLS, timeout) or refusing the credentials (401/403)
    2    a usage error: a flag, a file or a manifest field is wrong; the message names it and
         the fix
    70   an internal error (a bug): the message says how to see the traceback
    130  interrupted (Ctrl-C)

``evaluate`` and ``backtest`` add their own codes for what an evaluation found (see
:mod:`evergreen.cli_outcomes`). Tracebacks are shown only with ``--debug`` or
``EVERGREEN_DEBUG=1``.
"""

from __future__ import annotations

import contextlib
import os
import sys
import traceback
from collections.abc import Iterator
from enum import IntEnum
from typing import Any

from evergreen.errors import ClusterError, EvergreenError, InputError, MetricsError, SpecError
from evergreen.network import connection_failure, is_connection_error

#: Set to 1 (or true, yes) to see tracebacks, like ``--debug``.
DEBUG_VARIABLE = "EVERGREEN_DEBUG"


class ExitCode(IntEnum):
    OK = 0
    ENVIRONMENT = 1
    USAGE = 2
    #: ``evaluate``: evaluated, and a finding is at critical.
    CRITICAL = 3
    #: ``evaluate``/``backtest``: nothing (or not everything) could be evaluated.
    NOT_EVALUATED = 4
    INTERNAL = 70
    INTERRUPTED = 130


def debug_requested(argv: list[str]) -> bool:
    """``--debug`` anywhere on the command line, or the environment variable."""
    flag = os.environ.get(DEBUG_VARIABLE, "").strip().lower() in ("1", "true", "yes", "on")
    return flag or "--debug" in argv


def _api_status(error: BaseException) -> int | None:
    """The HTTP status of the Kubernetes API answer behind ``error``, if there was one."""
    for link in (error, error.__cause__, error.__context__):
        status = getattr(link, "status", None)
        if isinstance(status, int) and status:
            return status
    return None


def cluster_failure(error: BaseException, host: str) -> EvergreenError | None:
    """What a failed Kubernetes API call means, or None when ``error`` is not one."""
    status = _api_status(error)
    if status == 401:
        return ClusterError(
            f"the Kubernetes API server at {host} refused the credentials (HTTP 401): "
            "log in again or check the kubeconfig's user"
        )
    if status == 403:
        return ClusterError(
            f"the Kubernetes API server at {host} forbids this (HTTP 403): {error}; "
            "ask for RBAC on modelmonitors.evergreen.dev"
        )
    if isinstance(error, ClusterError):
        return error
    if is_connection_error(error):
        return ClusterError(f"cannot reach the Kubernetes API server at {host}: {connection_failure(error)}")
    return None


def _is_config_error(error: BaseException) -> bool:
    return type(error).__name__ == "ConfigException" and type(error).__module__.startswith("kubernetes")


@contextlib.contextmanager
def kube_errors(host: str | None = None) -> Iterator[None]:
    """Translate what the Kubernetes client raises into ClusterError with a reason."""
    try:
        yield
    except EvergreenError as error:
        raise cluster_failure(error, host or "?") or error from error
    except Exception as error:
        if _is_config_error(error):
            raise ClusterError(
                f"no usable Kubernetes configuration ({error}): pass --kubeconfig, set KUBECONFIG, "
                "or run inside a cluster"
            ) from error
        translated = cluster_failure(error, host or "?")
        if translated is None:
            raise
        raise translated from error


def exit_code(error: BaseException) -> ExitCode:
    """The exit code a failure gets."""
    if isinstance(error, KeyboardInterrupt):
        return ExitCode.INTERRUPTED
    if isinstance(error, InputError | SpecError):
        return ExitCode.USAGE
    if isinstance(error, ClusterError | MetricsError):
        return ExitCode.ENVIRONMENT
    if isinstance(error, EvergreenError):
        return ExitCode.USAGE if error.permanent else ExitCode.ENVIRONMENT
    if _is_config_error(error):
        return ExitCode.ENVIRONMENT
    return ExitCode.INTERNAL


def report(error: BaseException, *, debug: bool, stream: Any = None) -> ExitCode:
    """Print one message for ``error`` (and its traceback when debugging); return its exit code."""
    stream = stream or sys.stderr
    code = exit_code(error)
    if debug:
        traceback.print_exception(error, file=stream)
    if code is ExitCode.INTERRUPTED:
        print("evergreen: interrupted", file=stream)
    elif code is ExitCode.INTERNAL:
        print(
            f"evergreen: internal error: {type(error).__name__}: {error}"
            + ("" if debug else f" (run with --debug or {DEBUG_VARIABLE}=1 for the traceback)"),
            file=stream,
        )
    else:
        print(f"evergreen: {error}", file=stream)
    return code
