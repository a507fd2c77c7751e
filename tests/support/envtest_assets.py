"""The binaries of a real Kubernetes control plane: etcd, kube-apiserver, kube-controller-manager.

The envtest convention first: ``$KUBEBUILDER_ASSETS`` names a folder holding ``etcd``,
``kube-apiserver`` (and, here, ``kube-controller-manager``), as ``setup-envtest use 1.36 -p path``
prints on a workstation. Any binary missing there comes from the project's shared envtest
folder (``<repo>/../shared/envtest/v*/NAME.xz``), checksum-verified against its ``SHA256SUMS``
and decompressed once into ``<repo>/.cache/envtest/<version>/``; etcd also comes from ``PATH``
(Debian's ``etcd-server``). A binary that cannot be found is an error naming where it was
looked for, never a skip.
"""

from __future__ import annotations

import fcntl
import hashlib
import lzma
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

from evergreen.errors import EvergreenError

ASSETS_ENV = "KUBEBUILDER_ASSETS"
_REPO_ROOT = Path(__file__).resolve().parents[2]
SHARED_ENVTEST = _REPO_ROOT.parent / "shared" / "envtest"
CACHE = _REPO_ROOT / ".cache" / "envtest"


class AssetsUnavailable(EvergreenError):
    """A control-plane binary could not be found or verified (the message says where it looked)."""


@dataclass(frozen=True)
class ControlPlaneBinaries:
    etcd: Path
    kube_apiserver: Path
    kube_controller_manager: Path


def control_plane_binaries() -> ControlPlaneBinaries:
    """The three binaries, from ``$KUBEBUILDER_ASSETS``, the shared envtest folder or ``PATH``."""
    return ControlPlaneBinaries(
        etcd=_find("etcd", shared=False),
        kube_apiserver=_find("kube-apiserver", shared=True),
        kube_controller_manager=_find("kube-controller-manager", shared=True),
    )


def _find(name: str, *, shared: bool) -> Path:
    looked: list[str] = []
    assets = os.environ.get(ASSETS_ENV)
    if assets:
        candidate = Path(assets) / name
        if os.access(candidate, os.X_OK):
            return candidate
        looked.append(str(candidate))
    if shared:
        found = _from_shared(name)
        if found is not None:
            return found
        looked.append(f"{SHARED_ENVTEST}/v*/{name}.xz")
    on_path = shutil.which(name)
    if on_path:
        return Path(on_path)
    looked.append("PATH")
    hint = " (apt-get install etcd-server)" if name == "etcd" else ""
    raise AssetsUnavailable(f"no {name} binary{hint}; looked in: {', '.join(looked)}")


def _from_shared(name: str) -> Path | None:
    releases = sorted(SHARED_ENVTEST.glob("v*/")) if SHARED_ENVTEST.is_dir() else []
    if not releases:
        return None
    release = releases[-1]
    compressed = release / f"{name}.xz"
    if not compressed.is_file():
        return None
    sums = _checksums(release / "SHA256SUMS")
    target = CACHE / release.name / name
    if target.is_file() and _sha256(target) == sums.get(name):
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    with open(target.parent / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # two test runs decompress once
        if target.is_file() and _sha256(target) == sums.get(name):
            return target
        if _sha256(compressed) != sums.get(compressed.name):
            raise AssetsUnavailable(f"{compressed} does not match its SHA256SUMS entry")
        partial = target.with_suffix(".partial")
        with lzma.open(compressed) as source, open(partial, "wb") as sink:
            shutil.copyfileobj(source, sink, 1 << 20)
        if _sha256(partial) != sums.get(name):
            partial.unlink()
            raise AssetsUnavailable(f"{name} decompressed from {compressed} does not match SHA256SUMS")
        partial.chmod(0o755)
        partial.rename(target)
    return target


def _checksums(path: Path) -> dict[str, str]:
    sums: dict[str, str] = {}
    for line in path.read_text().splitlines():
        digest, _, file_name = line.partition("  ")
        if file_name:
            sums[file_name.strip()] = digest.strip()
    return sums


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()
