"""The smallest JSON merge patch that brings a live object to what Evergreen wants of it.

The API server fills defaults into what it stores (``imagePullPolicy``, ``terminationMessagePath``,
a route's ``matches``...), so a live object is compared with the desired one by *coverage*: every
value the desired object sets must be there; extra keys in the live object are the server's (or
another controller's) and are left alone. Maps at the ``exact`` paths are Evergreen's alone
(pod labels, Service selectors): keys there that are not desired are removed, because an extra
selector label changes which pods serve. Lists are replaced whole when any item differs, as
merge patches do.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from typing import Any

Path = tuple[str, ...]


def covers(live: Any, desired: Any) -> bool:
    """Whether ``live`` has every value ``desired`` sets (None in ``desired`` means absent)."""
    if desired is None:
        return live is None
    if isinstance(desired, Mapping):
        return isinstance(live, Mapping) and all(
            covers(live.get(key), value) for key, value in desired.items()
        )
    if isinstance(desired, list):
        return (
            isinstance(live, list)
            and len(live) == len(desired)
            and all(covers(have, want) for have, want in zip(live, desired, strict=True))
        )
    return bool(live == desired) and type(live) is type(desired)


def merge_patch(
    live: Mapping[str, Any], desired: Mapping[str, Any], *, exact: Collection[Path] = ()
) -> dict[str, Any]:
    """A merge patch turning ``live`` into something covering ``desired``; empty when it already does."""
    return _patch(live, desired, frozenset(exact), ())


def _patch(
    live: Mapping[str, Any], desired: Mapping[str, Any], exact: frozenset[Path], at: Path
) -> dict[str, Any]:
    patch: dict[str, Any] = {}
    for key, want in desired.items():
        have = live.get(key)
        path = (*at, key)
        if path in exact and isinstance(want, Mapping):
            replacement = _replace_map(have if isinstance(have, Mapping) else {}, want)
            if replacement:
                patch[key] = replacement
        elif isinstance(want, Mapping) and isinstance(have, Mapping):
            inner = _patch(have, want, exact, path)
            if inner:
                patch[key] = inner
        elif not covers(have, want):
            patch[key] = want
    return patch


def _replace_map(live: Mapping[str, Any], desired: Mapping[str, Any]) -> dict[str, Any]:
    """The patch making a flat map equal to ``desired`` (unwanted keys set to null)."""
    patch: dict[str, Any] = {key: None for key in live if key not in desired}
    patch.update({key: value for key, value in desired.items() if live.get(key) != value})
    return patch
