"""Why a connection failed, in the words an operator needs: DNS, refused, TLS or timeout.

``requests``, ``urllib3`` and the standard library each wrap the socket error that matters in
one or more layers of their own; :func:`connection_failure` digs it out so a message can say
"connection refused" rather than "ConnectionError" or 114 lines of retries.
"""

from __future__ import annotations

import socket
import ssl
from collections.abc import Iterator
from enum import StrEnum


class Failure(StrEnum):
    """The kinds of connection failure worth telling apart: each has a different fix."""

    DNS = "DNS lookup failed"
    REFUSED = "connection refused"
    TLS = "TLS handshake failed"
    TIMEOUT = "timed out"
    NETWORK = "network error"


#: Words in a wrapped error's text when the original exception object is not reachable.
_HINTS = (
    (Failure.DNS, ("name or service not known", "nodename nor servname", "temporary failure in name",
                   "name resolution", "getaddrinfo failed", "no address associated")),
    (Failure.REFUSED, ("connection refused", "errno 111", "actively refused")),
    (Failure.TLS, ("ssl", "certificate", "tls")),
    (Failure.TIMEOUT, ("timed out", "timeout")),
)  # fmt: skip


def _chain(error: BaseException) -> Iterator[BaseException]:
    """The error, its causes and contexts, and what urllib3 keeps in ``reason`` or ``args``."""
    seen: set[int] = set()
    pending = [error]
    while pending:
        current = pending.pop(0)
        if id(current) in seen:
            continue
        seen.add(id(current))
        yield current
        linked = [current.__cause__, current.__context__, getattr(current, "reason", None)]
        linked += [arg for arg in current.args if isinstance(arg, BaseException)]
        pending += [item for item in linked if isinstance(item, BaseException)]


def _kind_of(error: BaseException) -> Failure | None:
    if isinstance(error, socket.gaierror) or type(error).__name__ == "NameResolutionError":
        return Failure.DNS
    if isinstance(error, ssl.SSLError) or type(error).__name__ in ("SSLError", "CertificateError"):
        return Failure.TLS
    if isinstance(error, ConnectionRefusedError):
        return Failure.REFUSED
    if isinstance(error, TimeoutError) or type(error).__name__ in (
        "ConnectTimeout",
        "ReadTimeout",
        "Timeout",
        "ConnectTimeoutError",
        "ReadTimeoutError",
    ):
        return Failure.TIMEOUT
    return None


def connection_failure(error: BaseException) -> Failure:
    """The most specific kind of failure found anywhere in ``error``'s chain."""
    errors = list(_chain(error))
    for item in errors:
        kind = _kind_of(item)
        if kind is not None:
            return kind
    text = " ".join(str(item) for item in errors).lower()
    for kind, words in _HINTS:
        if any(word in text for word in words):
            return kind
    return Failure.NETWORK


def is_connection_error(error: BaseException) -> bool:
    """True for errors that come from the network rather than from an answer."""
    for item in _chain(error):
        module = type(item).__module__
        if isinstance(item, OSError | ssl.SSLError) or module.startswith(("urllib3", "requests")):
            return True
    return False
