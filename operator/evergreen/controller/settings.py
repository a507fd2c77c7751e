"""Operator-wide settings, read once at startup (flags and ``EVERGREEN_*`` environment)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime

from evergreen.signals.prometheus import Endpoint


def utc_now() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True)
class ShardSettings:
    """How replicas share the monitors (docs/scaling.md): each renews a Lease named
    ``replica`` in ``namespace``; the Leases labelled with ``group`` are the members."""

    #: This replica's identity (its pod name): the name and holder of its Lease.
    replica: str
    #: Namespace of the member Leases (the operator's own).
    namespace: str
    #: Replicas sharing the monitors of one installation share this (the release's name).
    group: str = "evergreen"
    #: A Lease not renewed for this long is expired and its replica's monitors move on.
    lease_seconds: float = 15.0
    #: How often the Lease is renewed and the members listed.
    renew_seconds: float = 5.0

    @property
    def fence_seconds(self) -> float:
        """A replica that could not renew for this long stops acting: before any peer can see
        its Lease expire (peers count from when they saw the last renewal, after it was sent)."""
        return self.lease_seconds - self.renew_seconds


@dataclass(frozen=True)
class OperatorSettings:
    """How the operator runs; per-model behaviour lives in each ModelMonitor."""

    #: Used by monitors without ``spec.prometheus``.
    default_endpoint: Endpoint | None = None
    #: Namespaces to watch; empty means the whole cluster.
    namespaces: tuple[str, ...] = ()
    #: How often monitors with work between evaluations (retraining runs, rollouts) are stepped,
    #: and how soon a failed step is retried (evaluations follow ``spec.interval``).
    tick_seconds: float = 10.0
    #: A status that changed only in its timestamps is written at most this often (seconds);
    #: in between, the operator keeps it and steps on from it.
    status_refresh_seconds: float = 600.0
    #: How soon a failed evaluation (Prometheus unreachable, missing Secret) is retried.
    retry_seconds: float = 30.0
    #: How often a running retraining workload is read (its pods when it finished).
    workload_poll_seconds: float = 15.0
    #: Series per drift signal kept in status and exported as metrics.
    top_series: int = 10
    #: Prometheus queries in flight at once across all monitors (protects Prometheus).
    max_concurrent_queries: int = 16
    #: Port of ``/metrics`` (None: not served).
    metrics_port: int | None = 8000
    #: Port of the liveness endpoint ``/healthz`` (None: not served).
    health_port: int | None = 8080
    #: Address ``/metrics`` and ``/healthz`` listen on (0.0.0.0 in a pod, loopback outside).
    bind_address: str = "0.0.0.0"
    #: Refuse retraining for monitors that do not name a service account for their workloads.
    require_service_account: bool = False
    #: Sharing the monitors with other replicas through Leases (None: this replica acts on all).
    sharding: ShardSettings | None = None
    #: Name Events are reported under.
    component: str = "evergreen"
    clock: Callable[[], datetime] = field(default=utc_now)
