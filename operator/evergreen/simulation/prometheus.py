"""A throwaway Prometheus server: deterministic history backfilled from a scenario, plus
optional scrape targets for live traffic.

Backfilled blocks are cached per scenario fingerprint (they are not byte-identical across
builds, so the fingerprint, not the bytes, is the key) and copied into a fresh data directory
for every server, because Prometheus writes into its data directory.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
import weakref
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from types import TracebackType
from typing import Any, Self

import yaml

from evergreen.errors import EvergreenError
from evergreen.simulation.openmetrics import write_openmetrics
from evergreen.simulation.scenario import Scenario

PROMETHEUS_ENV = "EVERGREEN_PROMETHEUS_BIN"
PROMTOOL_ENV = "EVERGREEN_PROMTOOL_BIN"
CACHE_ENV = "EVERGREEN_CACHE_DIR"

_MANIFEST = "manifest.json"
_COMMAND_TIMEOUT = 600.0


class PrometheusServerError(EvergreenError):
    """The throwaway Prometheus could not be built, started or queried."""


class BinaryNotFoundError(PrometheusServerError):
    """``prometheus`` or ``promtool`` is not installed (or the env override is wrong)."""


class BackfillError(PrometheusServerError):
    """promtool failed, or the blocks hold a different number of samples than were written."""


def find_binary(name: str, env: str) -> Path:
    """The executable ``name``: ``$env`` if set, else the first one on ``PATH``."""
    override = os.environ.get(env)
    if override:
        path = Path(override)
        if path.is_file() and os.access(path, os.X_OK):
            return path
        raise BinaryNotFoundError(f"{env}={override} is not an executable file")
    found = shutil.which(name)
    if found is None:
        raise BinaryNotFoundError(
            f"{name} not found on PATH: install Prometheus (Debian: apt-get install prometheus) or set {env}"
        )
    return Path(found)


def default_cache_dir() -> Path:
    """``$EVERGREEN_CACHE_DIR``, else ``$XDG_CACHE_HOME/evergreen``, else ``~/.cache/evergreen``."""
    explicit = os.environ.get(CACHE_ENV)
    if explicit:
        return Path(explicit)
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg) if xdg else Path.home() / ".cache") / "evergreen"


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


# --- backfill ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Backfill:
    """TSDB blocks holding a scenario's history."""

    fingerprint: str
    directory: Path
    samples: int
    series: int
    #: Seconds spent building; 0 when reused from the cache.
    build_seconds: float
    cached: bool

    def block_dirs(self) -> list[Path]:
        """The block directories (one per ULID)."""
        return sorted(p for p in self.directory.iterdir() if (p / "meta.json").is_file())


def backfill(scenario: Scenario, cache_dir: Path | None = None) -> Backfill:
    """Blocks for ``scenario``, built with promtool unless the cache already has them.

    Raises :class:`BackfillError` when promtool fails or the blocks do not hold exactly the
    samples written (promtool drops out-of-order samples and still exits 0).
    """
    cache = (cache_dir or default_cache_dir()) / "tsdb"
    fingerprint = scenario.fingerprint()
    target = cache / fingerprint
    cached = _load_manifest(target, fingerprint)
    if cached is not None:
        return cached

    promtool = find_binary("promtool", PROMTOOL_ENV)
    cache.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    build = Path(tempfile.mkdtemp(prefix=f".{fingerprint}-", dir=cache))
    try:
        text = build / "history.om"
        samples = write_openmetrics(scenario, text)
        blocks = build / "blocks"
        _run(
            [
                str(promtool),
                "tsdb",
                "create-blocks-from",
                "openmetrics",
                # Without it promtool cuts 2h blocks: ~50x slower for two weeks of data.
                "--max-block-duration=10000h",
                str(text),
                str(blocks),
            ],
            what=f"promtool backfill of scenario {scenario.name!r}",
        )
        text.unlink()
        listed_samples, listed_series = list_blocks(blocks, promtool)
        expected_series = samples // (scenario.steps + 1)
        if (listed_samples, listed_series) != (samples, expected_series):
            raise BackfillError(
                f"scenario {scenario.name!r}: wrote {samples} samples in {expected_series} "
                f"series but the blocks hold {listed_samples} samples in {listed_series} series "
                "(promtool drops out-of-order or duplicate samples silently)"
            )
        seconds = time.perf_counter() - started
        manifest = {
            "fingerprint": fingerprint,
            "scenario": scenario.name,
            "samples": samples,
            "series": listed_series,
            "build_seconds": seconds,
        }
        (blocks / _MANIFEST).write_text(json.dumps(manifest, indent=2))
        _publish(blocks, target)
    finally:
        shutil.rmtree(build, ignore_errors=True)
    return Backfill(fingerprint, target, samples, listed_series, seconds, cached=False)


def list_blocks(directory: Path, promtool: Path | None = None) -> tuple[int, int]:
    """Total (samples, series) of the blocks in ``directory`` per ``promtool tsdb list``."""
    tool = promtool or find_binary("promtool", PROMTOOL_ENV)
    output = _run([str(tool), "tsdb", "list", str(directory)], what="promtool tsdb list")
    lines = [line.split() for line in output.splitlines() if line.strip()]
    if not lines or "SAMPLES" not in lines[0]:
        raise BackfillError(f"unexpected promtool tsdb list output:\n{output}")
    # Header: BLOCK ULID MIN TIME MAX TIME DURATION NUM SAMPLES NUM CHUNKS NUM SERIES SIZE
    try:
        samples = sum(int(row[4]) for row in lines[1:])
        series = sum(int(row[6]) for row in lines[1:])
    except (IndexError, ValueError) as error:
        raise BackfillError(f"unexpected promtool tsdb list output:\n{output}") from error
    return samples, series


def _load_manifest(target: Path, fingerprint: str) -> Backfill | None:
    try:
        manifest = json.loads((target / _MANIFEST).read_text())
    except (OSError, ValueError):
        return None
    if manifest.get("fingerprint") != fingerprint:
        return None
    return Backfill(fingerprint, target, int(manifest["samples"]), int(manifest["series"]), 0.0, cached=True)


def _publish(blocks: Path, target: Path) -> None:
    # A rename is atomic: readers see a complete cache entry or none. If a concurrent build of
    # the same fingerprint finished first, its entry wins and ours is discarded.
    try:
        blocks.rename(target)
    except OSError:
        if (target / _MANIFEST).is_file():
            return
        shutil.rmtree(target, ignore_errors=True)  # an incomplete entry left by hand
        blocks.rename(target)


def _run(command: list[str], *, what: str) -> str:
    try:
        finished = subprocess.run(
            command, capture_output=True, text=True, timeout=_COMMAND_TIMEOUT, check=False
        )
    except subprocess.TimeoutExpired as error:
        raise BackfillError(f"{what} timed out after {_COMMAND_TIMEOUT:.0f}s") from error
    if finished.returncode != 0:
        raise BackfillError(f"{what} failed with exit code {finished.returncode}:\n{finished.stderr[-2000:]}")
    return finished.stdout


# --- the server ----------------------------------------------------------------------------


class PrometheusServer:
    """A Prometheus process on a free 127.0.0.1 port with its own data directory.

    Use it as a context manager, or call :meth:`start` and :meth:`stop`. :meth:`start` after
    :meth:`stop` restarts on the same port and data (an outage and recovery). The process is
    terminated when the object is collected or the interpreter exits, whatever a test does.
    """

    def __init__(
        self,
        workdir: Path,
        *,
        history: Backfill | None = None,
        scenario: Scenario | None = None,
        scrape_targets: Sequence[str] = (),
        scrape_interval: str = "1s",
        scrape_self: bool = False,
    ) -> None:
        """Prepare ``workdir`` (config, log and a fresh data directory seeded with ``history``)."""
        self.workdir = workdir
        self.scenario = scenario
        self.history = history
        self.scrape_targets = tuple(scrape_targets)
        self.scrape_interval = scrape_interval
        self.scrape_self = scrape_self
        self.data_dir = workdir / "data"
        self.config_path = workdir / "prometheus.yml"
        self.log_path = workdir / "prometheus.log"
        #: Seconds from launching the process to ``/-/ready`` on the last start.
        self.startup_seconds = math.nan
        self._binary = find_binary("prometheus", PROMETHEUS_ENV)
        self._port: int | None = None
        self._process: subprocess.Popen[bytes] | None = None
        self._finalizer: weakref.finalize[Any, Any] | None = None

        if self.data_dir.exists() and any(self.data_dir.iterdir()):
            raise PrometheusServerError(f"{self.data_dir} is not empty: use a fresh workdir")
        self.data_dir.mkdir(parents=True, exist_ok=True)
        if history is not None:
            for block in history.block_dirs():
                shutil.copytree(block, self.data_dir / block.name)

    @classmethod
    def from_scenario(
        cls,
        scenario: Scenario,
        workdir: Path,
        *,
        cache_dir: Path | None = None,
        scrape_targets: Sequence[str] = (),
        scrape_interval: str = "1s",
        scrape_self: bool = False,
    ) -> PrometheusServer:
        """A (not yet started) server holding ``scenario``'s history."""
        history = backfill(scenario, cache_dir)
        return cls(
            workdir,
            history=history,
            scenario=scenario,
            scrape_targets=scrape_targets,
            scrape_interval=scrape_interval,
            scrape_self=scrape_self,
        )

    @classmethod
    def empty(
        cls,
        workdir: Path,
        *,
        scrape_targets: Sequence[str] = (),
        scrape_interval: str = "1s",
        scrape_self: bool = False,
    ) -> PrometheusServer:
        """A (not yet started) server without history, e.g. for live traffic only."""
        return cls(
            workdir,
            scrape_targets=scrape_targets,
            scrape_interval=scrape_interval,
            scrape_self=scrape_self,
        )

    # -- lifecycle

    @property
    def port(self) -> int:
        if self._port is None:
            raise PrometheusServerError("the server has not been started yet")
        return self._port

    @property
    def url(self) -> str:
        """Base URL, e.g. ``http://127.0.0.1:40123``."""
        return f"http://127.0.0.1:{self.port}"

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def start(self, timeout: float = 60.0) -> None:
        """Start (or restart on the same port and data) and wait until ``/-/ready``."""
        if self.running:
            return
        attempts = 1 if self._port is not None else 3
        for attempt in range(attempts):
            if self._port is None or attempt > 0:
                self._port = free_port()  # another process may take it before we bind
            try:
                self._launch(timeout)
                return
            except PrometheusServerError:
                self.stop()
                if attempt == attempts - 1 or "address already in use" not in self._log_tail():
                    raise

    def stop(self, timeout: float = 10.0) -> None:
        """Terminate the process (SIGTERM, then SIGKILL after ``timeout``); idempotent."""
        process, self._process = self._process, None
        if self._finalizer is not None:
            self._finalizer.detach()
            self._finalizer = None
        if process is not None:
            _terminate(process, timeout)

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()

    # -- queries

    def query(self, expr: str, at: datetime | float | None = None) -> list[dict[str, Any]]:
        """Instant query; ``at`` is the evaluation time (needed for backfilled history)."""
        params = {"query": expr}
        if at is not None:
            params["time"] = str(at.timestamp() if isinstance(at, datetime) else at)
        data = self._get("/api/v1/query", params)
        result: list[dict[str, Any]] = data["result"]
        return result

    def query_range(self, expr: str, start: datetime, end: datetime, step: float) -> list[dict[str, Any]]:
        """Range query over ``[start, end]`` every ``step`` seconds."""
        params = {
            "query": expr,
            "start": str(start.timestamp()),
            "end": str(end.timestamp()),
            "step": str(step),
        }
        data = self._get("/api/v1/query_range", params)
        result: list[dict[str, Any]] = data["result"]
        return result

    # -- internals

    def _launch(self, timeout: float) -> None:
        self._write_config()
        command = [
            str(self._binary),
            f"--config.file={self.config_path}",
            f"--storage.tsdb.path={self.data_dir}",
            f"--web.listen-address=127.0.0.1:{self.port}",
            # Retention counts from the newest block: old backfills would be deleted.
            "--storage.tsdb.retention.time=100y",
        ]
        started = time.perf_counter()
        with self.log_path.open("ab") as log:
            process = subprocess.Popen(
                command, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL
            )
        self._process = process
        self._finalizer = weakref.finalize(self, _terminate, process, 5.0)
        deadline = started + timeout
        while True:
            if process.poll() is not None:
                raise PrometheusServerError(
                    f"prometheus exited with code {process.returncode}:\n{self._log_tail()}"
                )
            if self._ready():
                self.startup_seconds = time.perf_counter() - started
                return
            if time.perf_counter() > deadline:
                raise PrometheusServerError(f"prometheus not ready after {timeout:.0f}s:\n{self._log_tail()}")
            time.sleep(0.02)

    def _write_config(self) -> None:
        jobs: list[dict[str, Any]] = []
        if self.scrape_targets:
            jobs.append(self._job("live", list(self.scrape_targets)))
        if self.scrape_self:
            jobs.append(self._job("prometheus", [f"127.0.0.1:{self.port}"]))
        config = {"global": {"evaluation_interval": self.scrape_interval}, "scrape_configs": jobs}
        self.config_path.write_text(yaml.safe_dump(config, sort_keys=False))

    def _job(self, name: str, targets: list[str]) -> dict[str, Any]:
        # The timeout must not exceed the interval, and the default (10s) would.
        return {
            "job_name": name,
            "scrape_interval": self.scrape_interval,
            "scrape_timeout": self.scrape_interval,
            "static_configs": [{"targets": targets}],
        }

    def _ready(self) -> bool:
        try:
            with urllib.request.urlopen(f"{self.url}/-/ready", timeout=1.0) as response:
                return bool(response.status == 200)
        except (urllib.error.URLError, OSError):
            return False

    def _get(self, path: str, params: dict[str, str]) -> dict[str, Any]:
        url = f"{self.url}{path}?{urllib.parse.urlencode(params)}"
        try:
            with urllib.request.urlopen(url, timeout=30.0) as response:
                body = json.loads(response.read())
        except urllib.error.HTTPError as error:
            detail = error.read().decode(errors="replace")
            raise PrometheusServerError(f"{path} {params}: HTTP {error.code}: {detail}") from error
        except (urllib.error.URLError, OSError) as error:
            raise PrometheusServerError(f"{path}: {error}") from error
        if body.get("status") != "success":
            raise PrometheusServerError(f"{path} {params}: {body}")
        data: dict[str, Any] = body["data"]
        return data

    def _log_tail(self, lines: int = 20) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return "(no log)"
        return "\n".join(text.splitlines()[-lines:])


def _terminate(process: subprocess.Popen[bytes], timeout: float) -> None:
    if process.poll() is not None:
        return
    process.terminate()
    try:
        process.wait(timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
