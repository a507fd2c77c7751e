"""Make a container serve a given model version, as ``spec.rollout.target.version`` says.

- ``env``: the variable is set to the version (its entry replaced, ``valueFrom`` included; a
  new entry goes first, so later variables can refer to it as ``$(NAME)``);
- ``imageTag``: ``repo[:tag][@digest]`` becomes ``repo:<version>`` (a registry's port is part of
  the repository: ``registry:5000/fraud:1`` keeps ``registry:5000``; the digest is dropped, it
  pins the old image);
- ``argPrefix``: every argument starting with the prefix becomes ``prefix + version``; without
  one, ``prefix + version`` is appended. Only ``args`` is searched, not ``command``.
"""

from __future__ import annotations

from typing import Any

from evergreen.api.delivery import VersionInjection
from evergreen.errors import SpecError

INJECTION_FIELD = "spec.rollout.target.version"


def retag_image(image: str, version: str) -> str:
    """``image`` with ``version`` as its tag and no digest."""
    repository = image.split("@", 1)[0]
    # A colon after the last slash starts a tag; one before it is a registry's port.
    colon, slash = repository.rfind(":"), repository.rfind("/")
    if colon > slash:
        repository = repository[:colon]
    return f"{repository}:{version}"


def inject_version(
    pod_spec: dict[str, Any],
    injection: VersionInjection,
    version: str,
    *,
    source: str,
    field: str = INJECTION_FIELD,
) -> None:
    """Set ``version`` in the injection's container of ``pod_spec`` (in place).

    ``source`` names the object the pod spec comes from, for the error when the container is
    missing: a :class:`SpecError` at ``<field>.container``.
    """
    containers = [c for c in pod_spec.get("containers") or [] if isinstance(c, dict)]
    container = next((c for c in containers if c.get("name") == injection.container), None)
    if container is None:
        names = ", ".join(str(c.get("name")) for c in containers) or "none"
        raise SpecError(
            f"{field}.container",
            f"{source} has no container {injection.container!r} (its containers: {names})",
        )
    if injection.env is not None:
        container["env"] = _with_variable(container.get("env") or [], injection.env, version)
    elif injection.image_tag:
        container["image"] = retag_image(str(container.get("image", "")), version)
    elif injection.arg_prefix is not None:
        container["args"] = _with_argument(container.get("args") or [], injection.arg_prefix, version)


def _with_variable(env: list[Any], name: str, value: str) -> list[Any]:
    ours = {"name": name, "value": value}
    if not any(isinstance(entry, dict) and entry.get("name") == name for entry in env):
        return [ours, *env]
    result: list[Any] = []
    for entry in env:
        if isinstance(entry, dict) and entry.get("name") == name:
            if ours not in result:  # a duplicate entry would shadow ours
                result.append(ours)
        else:
            result.append(entry)
    return result


def _with_argument(args: list[Any], prefix: str, version: str) -> list[Any]:
    argument = prefix + version
    if not any(isinstance(arg, str) and arg.startswith(prefix) for arg in args):
        return [*args, argument]
    return [argument if isinstance(arg, str) and arg.startswith(prefix) else arg for arg in args]
