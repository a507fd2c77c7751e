"""A real Kubernetes control plane on loopback: etcd, kube-apiserver and kube-controller-manager.

What a test gets is what a cluster does: schemas and CEL rules, defaulting and pruning, RBAC,
admission (including ``OwnerReferencesPermissionEnforcement``, on by default in OpenShift),
server-side apply, watches, finalizers, garbage collection, and the Job, Deployment/ReplicaSet,
namespace and ServiceAccount-token controllers. There is no kubelet: :mod:`tests.support.kubelet`
plays the node. Start once per test session::

    with ControlPlane(workdir) as plane:
        api = plane.admin_client()
        ...

Binaries come from :mod:`tests.support.envtest_assets`; ports are free loopback ports; every
process logs into ``workdir`` (the failure message of a start quotes the tail of its log).
"""

from __future__ import annotations

import contextlib
import json
import secrets
import signal
import socket
import ssl
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path
from types import TracebackType
from typing import IO, Any, Self

import kubernetes.client
import yaml

from evergreen.errors import EvergreenError
from tests.support.envtest_assets import ControlPlaneBinaries, control_plane_binaries

ADMIN_USER = "evergreen-test-admin"
SERVICE_CIDR = "10.96.0.0/16"
#: Admission plugins beyond the defaults: OpenShift turns this one on, and it is what refuses
#: ``blockOwnerDeletion`` to an identity that may not update the owner's finalizers.
EXTRA_ADMISSION = "OwnerReferencesPermissionEnforcement"
#: Controllers that need a real node or cloud; the node stand-in keeps its Node Ready itself.
DISABLED_CONTROLLERS = ("nodelifecycle", "nodeipam", "cloud-node-lifecycle", "service-lb-controller")


class ControlPlaneError(EvergreenError):
    """A control-plane process failed to start or died (the message quotes its log)."""


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


class _Process:
    def __init__(self, name: str, argv: list[str], log: Path) -> None:
        self.name = name
        self.log = log
        self._log_file: IO[bytes] = open(log, "ab")  # noqa: SIM115 (closed in stop)
        self.popen = subprocess.Popen(
            argv, stdout=self._log_file, stderr=subprocess.STDOUT, start_new_session=True
        )

    def alive(self) -> bool:
        return self.popen.poll() is None

    def tail(self, lines: int = 25) -> str:
        with contextlib.suppress(OSError):
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        return ""

    def stop(self, timeout: float = 15.0) -> None:
        if self.alive():
            self.popen.send_signal(signal.SIGTERM)
            try:
                self.popen.wait(timeout)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait(timeout)
        self._log_file.close()


class ControlPlane:
    """etcd, kube-apiserver and kube-controller-manager, started and stopped together."""

    def __init__(self, workdir: Path, binaries: ControlPlaneBinaries | None = None) -> None:
        self.workdir = workdir
        self.binaries = binaries or control_plane_binaries()
        self.admin_token = secrets.token_hex(16)
        self.port = free_port()
        self._processes: list[_Process] = []

    # Lifecycle ------------------------------------------------------------------------------

    def __enter__(self) -> Self:
        try:
            self.start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, traceback: TracebackType | None
    ) -> None:
        self.stop()

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.port}"

    @property
    def ca_file(self) -> Path:
        """The API server's self-signed serving certificate (with its CA), for clients to trust."""
        return self.workdir / "certs" / "apiserver.crt"

    def start(self) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        self._write_credentials()
        self._start_etcd()
        self._start_apiserver()
        self._start_controller_manager()

    def stop(self) -> None:
        # Reverse order: the controllers, then the API server, then etcd.
        for process in reversed(self._processes):
            process.stop()
        self._processes.clear()

    def check_alive(self) -> None:
        for process in self._processes:
            if not process.alive():
                raise ControlPlaneError(f"{process.name} exited:\n{process.tail()}")

    # Clients --------------------------------------------------------------------------------

    def configuration(self, token: str | None = None) -> kubernetes.client.Configuration:
        """A client configuration for the admin (default) or for a bearer ``token``."""
        configuration = kubernetes.client.Configuration()
        configuration.host = self.url
        configuration.ssl_ca_cert = str(self.ca_file)
        configuration.api_key = {"authorization": f"Bearer {token or self.admin_token}"}
        return configuration

    def admin_client(self) -> kubernetes.client.ApiClient:
        return kubernetes.client.ApiClient(self.configuration())

    def kubeconfig(self, path: Path, *, token: str | None = None, namespace: str = "default") -> Path:
        """A kubeconfig file for kubectl, helm and ``evergreen --kubeconfig``."""
        config = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [
                {
                    "name": "envtest",
                    "cluster": {"server": self.url, "certificate-authority": str(self.ca_file)},
                }
            ],
            "users": [{"name": "user", "user": {"token": token or self.admin_token}}],
            "contexts": [
                {"name": "envtest", "context": {"cluster": "envtest", "user": "user", "namespace": namespace}}
            ],
            "current-context": "envtest",
        }
        path.write_text(yaml.safe_dump(config))
        path.chmod(0o600)
        return path

    # Processes ------------------------------------------------------------------------------

    @property
    def audit_log(self) -> Path:
        """Every request of a ServiceAccount (metadata level: who, verb, resource), one JSON
        object a line: what the operator under test really asked of the API server."""
        return self.workdir / "audit.log"

    def requests_of(self, user: str) -> list[dict[str, Any]]:
        """The audited requests (final stage) made by ``user``, oldest first."""
        entries = []
        with contextlib.suppress(FileNotFoundError), open(self.audit_log) as log:
            for line in log:
                entry = json.loads(line)
                if entry.get("stage") == "ResponseComplete" and entry["user"].get("username") == user:
                    entries.append(entry)
        return entries

    def _write_credentials(self) -> None:
        (self.workdir / "certs").mkdir(exist_ok=True)
        # Static admin token in system:masters: the test's own identity (and the controller-manager's).
        (self.workdir / "audit-policy.yaml").write_text(
            yaml.safe_dump(
                {
                    "apiVersion": "audit.k8s.io/v1",
                    "kind": "Policy",
                    "omitStages": ["RequestReceived"],
                    "rules": [
                        {"level": "Metadata", "userGroups": ["system:serviceaccounts"]},
                        {"level": "None"},
                    ],
                }
            )
        )
        (self.workdir / "tokens.csv").write_text(f'{self.admin_token},{ADMIN_USER},1,"system:masters"\n')
        key = self.workdir / "sa.key"
        if not key.exists():
            subprocess.run(
                ["openssl", "genrsa", "-out", str(key), "2048"], check=True, capture_output=True, timeout=60
            )
            subprocess.run(
                ["openssl", "rsa", "-in", str(key), "-pubout", "-out", str(self.workdir / "sa.pub")],
                check=True,
                capture_output=True,
                timeout=60,
            )

    def _spawn(self, name: str, argv: list[str]) -> _Process:
        process = _Process(name, argv, self.workdir / f"{name}.log")
        self._processes.append(process)
        return process

    def _start_etcd(self) -> None:
        client, peer = free_port(), free_port()
        self._etcd_url = f"http://127.0.0.1:{client}"
        process = self._spawn(
            "etcd",
            [
                str(self.binaries.etcd),
                f"--data-dir={self.workdir / 'etcd'}",
                f"--listen-client-urls={self._etcd_url}",
                f"--advertise-client-urls={self._etcd_url}",
                f"--listen-peer-urls=http://127.0.0.1:{peer}",
                f"--initial-advertise-peer-urls=http://127.0.0.1:{peer}",
                f"--initial-cluster=default=http://127.0.0.1:{peer}",
                "--unsafe-no-fsync",  # a test cluster: durability is not the point, speed is
                "--quota-backend-bytes=4294967296",
            ],
        )
        self._wait(process, f"{self._etcd_url}/health", insecure=False)

    def _start_apiserver(self) -> None:
        certs = self.workdir / "certs"
        process = self._spawn(
            "kube-apiserver",
            [
                str(self.binaries.kube_apiserver),
                f"--etcd-servers={self._etcd_url}",
                "--bind-address=127.0.0.1",
                "--advertise-address=127.0.0.1",
                f"--secure-port={self.port}",
                f"--cert-dir={certs}",
                f"--token-auth-file={self.workdir / 'tokens.csv'}",
                "--authorization-mode=RBAC",
                f"--enable-admission-plugins={EXTRA_ADMISSION}",
                "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
                f"--service-account-key-file={self.workdir / 'sa.pub'}",
                f"--service-account-signing-key-file={self.workdir / 'sa.key'}",
                f"--service-cluster-ip-range={SERVICE_CIDR}",
                "--allow-privileged=true",
                "--endpoint-reconciler-type=none",
                "--event-ttl=1h",
                f"--audit-policy-file={self.workdir / 'audit-policy.yaml'}",
                f"--audit-log-path={self.audit_log}",
                "--audit-log-mode=blocking",
                "--audit-log-maxsize=0",
            ],
        )
        self._wait(process, f"{self.url}/readyz", insecure=True, token=self.admin_token)

    def _start_controller_manager(self) -> None:
        kubeconfig = self.kubeconfig(self.workdir / "controller-manager.kubeconfig")
        controllers = ",".join(["*", *(f"-{name}" for name in DISABLED_CONTROLLERS)])
        self._spawn(
            "kube-controller-manager",
            [
                str(self.binaries.kube_controller_manager),
                f"--kubeconfig={kubeconfig}",
                f"--authentication-kubeconfig={kubeconfig}",
                f"--authorization-kubeconfig={kubeconfig}",
                f"--service-account-private-key-file={self.workdir / 'sa.key'}",
                f"--root-ca-file={self.ca_file}",
                f"--controllers={controllers}",
                "--leader-elect=false",
                "--bind-address=127.0.0.1",
                f"--secure-port={free_port()}",
                "--concurrent-gc-syncs=5",
                # React within a second, as a real cluster under light load does.
                "--min-resync-period=1m",
            ],
        )

    def _wait(
        self, process: _Process, url: str, *, insecure: bool, token: str | None = None, timeout: float = 60.0
    ) -> None:
        context = ssl.create_default_context()
        if insecure:
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
        request = urllib.request.Request(url)
        if token:
            request.add_header("Authorization", f"Bearer {token}")
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not process.alive():
                raise ControlPlaneError(f"{process.name} exited while starting:\n{process.tail()}")
            with (
                contextlib.suppress(OSError, urllib.error.URLError),
                urllib.request.urlopen(request, timeout=2, context=context) as answer,
            ):
                if answer.status == 200:
                    return
            time.sleep(0.1)
        raise ControlPlaneError(f"{process.name} was not ready after {timeout:.0f}s:\n{process.tail()}")
