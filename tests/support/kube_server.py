"""Running the Kubernetes API emulator for end-to-end tests, and a kopf operator against it.

:class:`KubeServer` serves a :class:`~tests.support.kube_emulator.KubeEmulator` over HTTP on a
free loopback port, from a thread with its own event loop, so that synchronous tests, the
official ``kubernetes`` client, kubectl and a kopf operator (itself in another thread, see
:class:`OperatorThread`) all talk to it as to a real API server::

    with KubeServer() as server:
        server.declare_custom_resource("evergreen.dev", "v1alpha1", "modelmonitors", "ModelMonitor")
        with server.api_client() as api, OperatorThread(server, registry=registry, clusterwide=True):
            kubernetes.client.CustomObjectsApi(api).create_namespaced_custom_object(...)

A fresh server has the namespaces of a fresh cluster (``default``, ``kube-system``, ...); an
operator restricted to other namespaces needs them created first, as on a real cluster.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import pathlib
import threading
import time
import warnings
from collections.abc import Callable, Collection, Iterable, Mapping
from types import TracebackType
from typing import Any, Self, TypeVar

import aiohttp.web
import kopf
import kubernetes.client
import yaml
from kopf._cogs.structs.credentials import Vault  # kopf.operator(vault=...) has no public type

from evergreen.errors import ClusterError
from tests.support.kube_emulator import KubeEmulator

T = TypeVar("T")

#: The name of the cluster, user and context in kubeconfig files and kopf credentials.
CONTEXT = "kube-emulator"

#: The namespaces of a fresh cluster.
INITIAL_NAMESPACES = ("default", "kube-system", "kube-public", "kube-node-lease")


class KubeServer:
    """A :class:`KubeEmulator` served on ``127.0.0.1`` from a thread with its own event loop.

    Built-in resources (pods, jobs, deployments, services, events, configmaps, secrets,
    namespaces, CRDs, ...) are declared unless ``builtins=False``; custom resources are
    declared with :meth:`declare_custom_resource` or by creating a CRD through the API.
    ``emulator_options`` go to :class:`KubeEmulator` (e.g. ``request_log_size``).
    """

    def __init__(self, *, builtins: bool = True, timeout: float = 10.0, **emulator_options: Any) -> None:
        self._builtins = builtins
        self._timeout = timeout
        self._emulator_options = emulator_options
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stopping: asyncio.Event | None = None
        self._emulator: KubeEmulator | None = None
        self._url: str | None = None
        self._started = threading.Event()
        self._failure: BaseException | None = None

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, traceback: TracebackType | None
    ) -> None:
        self.stop()

    @property
    def url(self) -> str:
        """The base URL of the API, e.g. ``http://127.0.0.1:43567``."""
        if self._url is None:
            raise ClusterError("the Kubernetes API emulator is not running")
        return self._url

    @property
    def emulator(self) -> KubeEmulator:
        """The emulator itself, for assertions (mutate it only through :meth:`call`)."""
        if self._emulator is None:
            raise ClusterError("the Kubernetes API emulator is not running")
        return self._emulator

    def start(self) -> None:
        """Start serving; return when the port accepts connections."""
        if self._thread is not None:
            raise ClusterError("the Kubernetes API emulator is already running")
        self._thread = threading.Thread(target=self._run, name="kube-emulator", daemon=True)
        self._thread.start()
        if not self._started.wait(self._timeout) or self._failure is not None:
            self.stop()
            raise ClusterError("the Kubernetes API emulator did not start") from self._failure

    def stop(self) -> None:
        """End all watch streams, stop serving and join the thread."""
        if self._loop is not None and self._stopping is not None and not self._loop.is_closed():
            self._loop.call_soon_threadsafe(self._stopping.set)
        thread, self._thread, self._url = self._thread, None, None
        if thread is not None:
            thread.join(self._timeout)
            if thread.is_alive():
                raise ClusterError("the Kubernetes API emulator did not stop in time")
        self._loop = None

    def call(self, fn: Callable[[KubeEmulator], T]) -> T:
        """Run ``fn(emulator)`` on the emulator's event loop (state is not thread-safe)."""
        if self._loop is None:
            raise ClusterError("the Kubernetes API emulator is not running")
        emulator = self.emulator

        async def call() -> T:
            return fn(emulator)

        future = asyncio.run_coroutine_threadsafe(call(), self._loop)
        try:
            return future.result(self._timeout)
        except concurrent.futures.TimeoutError as e:
            raise ClusterError("the Kubernetes API emulator did not answer in time") from e

    def declare_custom_resource(
        self,
        group: str,
        version: str,
        plural: str,
        kind: str,
        *,
        namespaced: bool = True,
        status_subresource: bool = True,
        short_names: Iterable[str] = (),
        categories: Iterable[str] = (),
    ) -> dict[str, Any]:
        """Create the CustomResourceDefinition of a custom resource; return it."""
        return self.call(
            lambda emulator: emulator.declare_custom_resource(
                group,
                version,
                plural,
                kind,
                namespaced=namespaced,
                status_subresource=status_subresource,
                short_names=tuple(short_names),
                categories=tuple(categories),
            )
        )

    def api_client(self) -> kubernetes.client.ApiClient:
        """A ``kubernetes`` client for this server; close it (or use it as a context manager)."""
        configuration = kubernetes.client.Configuration()
        configuration.host = self.url
        configuration.api_key = {"BearerToken": CONTEXT}
        configuration.api_key_prefix = {"BearerToken": "Bearer"}
        return kubernetes.client.ApiClient(configuration)

    def kubeconfig(self, path: str | pathlib.Path, *, namespace: str = "default") -> pathlib.Path:
        """Write a kubeconfig file pointing at this server (for kubectl, helm, KUBECONFIG)."""
        config = {
            "apiVersion": "v1",
            "kind": "Config",
            "current-context": CONTEXT,
            "clusters": [{"name": CONTEXT, "cluster": {"server": self.url}}],
            "users": [{"name": CONTEXT, "user": {"token": CONTEXT}}],
            "contexts": [
                {"name": CONTEXT, "context": {"cluster": CONTEXT, "user": CONTEXT, "namespace": namespace}}
            ],
        }
        target = pathlib.Path(path)
        target.write_text(yaml.safe_dump(config, sort_keys=False), encoding="utf-8")
        return target

    def connection_info(self, *, namespace: str = "default") -> kopf.ConnectionInfo:
        """Credentials for kopf, e.g. returned from a ``@kopf.on.login`` handler."""
        return kopf.ConnectionInfo(
            server=self.url, scheme="Bearer", token=CONTEXT, default_namespace=namespace
        )

    def _run(self) -> None:
        loop = asyncio.new_event_loop()
        asyncio.set_event_loop(loop)
        self._loop = loop
        try:
            loop.run_until_complete(self._serve())
        except BaseException as e:  # reported to start(); nothing else can see this thread
            self._failure = e
        finally:
            self._started.set()
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.close()

    async def _serve(self) -> None:
        self._stopping = asyncio.Event()
        emulator = KubeEmulator(**self._emulator_options)
        if self._builtins:
            with warnings.catch_warnings():  # kmock 0.8 reads its data with a deprecated call
                warnings.simplefilter("ignore", DeprecationWarning)
                emulator.resources.load_bundled()
            for namespace in INITIAL_NAMESPACES:
                emulator.create_object("v1", "namespaces", {"metadata": {"name": namespace}})
        async with emulator:
            # Client disconnects cancel the handlers, so abandoned watches end at once.
            server = aiohttp.web.Server(emulator, handler_cancellation=True)
            runner = aiohttp.web.ServerRunner(server, shutdown_timeout=1.0)
            await runner.setup()
            try:
                site = aiohttp.web.TCPSite(runner, "127.0.0.1", 0)
                await site.start()
                host, port = runner.addresses[0][:2]
                self._emulator, self._url = emulator, f"http://{host}:{port}"
                self._started.set()
                await self._stopping.wait()
            finally:
                emulator.close()
                await runner.cleanup()


class OperatorThread:
    """Runs ``kopf.operator()`` against a :class:`KubeServer` in a thread with its own loop.

    Running kopf inside the test's own event loop fights the test framework's teardown; a
    thread of its own does not. The credentials are handed to kopf directly, so the
    registry needs no login handler and no environment variable is involved.
    """

    def __init__(
        self,
        server: KubeServer,
        *,
        registry: kopf.OperatorRegistry,
        clusterwide: bool = False,
        namespaces: Collection[str] = (),
        memo: object | None = None,
        timeout: float = 15.0,
    ) -> None:
        if clusterwide == bool(namespaces):
            raise ClusterError("run the operator either clusterwide or in given namespaces")
        self._server = server
        self._registry = registry
        self._clusterwide = clusterwide
        self._namespaces = tuple(namespaces)
        self._memo = memo
        self._timeout = timeout
        self._ready = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._failure: BaseException | None = None

    def __enter__(self) -> Self:
        self._thread = threading.Thread(target=self._run, name="kopf-operator", daemon=True)
        self._thread.start()
        deadline = time.monotonic() + self._timeout
        while not self._ready.wait(0.05):
            if not self._thread.is_alive():
                raise ClusterError("the operator stopped while starting") from self._failure
            if time.monotonic() > deadline:
                self._stop.set()
                raise ClusterError("the operator did not become ready in time")
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, traceback: TracebackType | None
    ) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(self._timeout)
            if self._thread.is_alive():
                raise ClusterError("the operator did not stop in time")
        if self._failure is not None and exc is None:
            raise ClusterError("the operator failed") from self._failure

    def _run(self) -> None:
        try:
            asyncio.run(self._operate())
        except BaseException as e:  # re-raised in the test's thread on exit
            self._failure = e

    async def _operate(self) -> None:
        vault = Vault()
        await vault.populate({CONTEXT: self._server.connection_info()})
        await kopf.operator(
            registry=self._registry,
            standalone=True,
            clusterwide=self._clusterwide,
            namespaces=self._namespaces,
            vault=vault,
            memo=self._memo,
            stop_flag=self._stop,
            ready_flag=self._ready,
        )


def object_path(
    api_version: str,
    plural: str,
    *,
    namespace: str | None = None,
    name: str | None = None,
    subresource: str | None = None,
) -> str:
    """The URL path of a resource, a collection or an object: ``/apis/batch/v1/namespaces/...``."""
    parts = ["/api" if "/" not in api_version else "/apis", api_version]
    if namespace is not None:
        parts += ["namespaces", namespace]
    parts.append(plural)
    parts += [part for part in (name, subresource) if part is not None]
    return "/".join(parts)


def set_status(
    api: kubernetes.client.ApiClient,
    *,
    api_version: str,
    plural: str,
    name: str,
    status: Mapping[str, Any],
    namespace: str | None = None,
) -> dict[str, Any]:
    """Merge-patch an object's status as its (missing) controller would; return the object.

    E.g. a Job's completion: ``set_status(api, api_version='batch/v1', plural='jobs',
    namespace='ml', name='retrain-1', status={'succeeded': 1, 'conditions': [...]})``.
    """
    path = object_path(api_version, plural, namespace=namespace, name=name, subresource="status")
    method, url, headers, body, post = api.param_serialize(
        method="PATCH",
        resource_path=path,
        body={"status": dict(status)},
        header_params={"Content-Type": "application/merge-patch+json", "Accept": "application/json"},
        auth_settings=["BearerToken"],
    )
    response = api.call_api(method, url, headers, body, post)
    response.data = response.response.data  # what the untyped RESTResponse.read() does
    data: Any = api.response_deserialize(response, {"2XX": "object"}).data  # raises on errors
    return dict(data)
