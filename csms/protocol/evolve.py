"""``evolve(obj, **changes)``: ``dataclasses.replace`` for the frozen, slotted records of the
hot path. ``replace`` introspects the fields and runs ``__init__`` on every call and was the
largest single cost per OCPP message; this builds, once per class, a function that copies the
slots straight across. No ``__post_init__`` runs: the records used with it have none.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any, TypeVar

T = TypeVar("T")

_COPIERS: dict[type, Callable[[Any, dict[str, Any]], Any]] = {}


def evolve(obj: T, **changes: Any) -> T:
    cls = type(obj)
    copier = _COPIERS.get(cls)
    if copier is None:
        copier = _COPIERS[cls] = _make_copier(cls)
    return copier(obj, changes)  # type: ignore[no-any-return]


def _make_copier(cls: type) -> Callable[[Any, dict[str, Any]], Any]:
    names = [f.name for f in dataclasses.fields(cls)]
    lines = ["def copy(obj, changes):", "    new = new_(cls)"]
    for name in names:
        lines.append(
            f"    set_(new, {name!r}, changes.pop({name!r}) if {name!r} in changes else obj.{name})"
        )
    lines += [
        "    if changes:",
        "        raise TypeError(f'{cls.__name__} has no field(s) {sorted(changes)}')",
        "    return new",
    ]
    namespace: dict[str, Any] = {"new_": object.__new__, "set_": object.__setattr__, "cls": cls}
    exec("\n".join(lines), namespace)
    return namespace["copy"]  # type: ignore[no-any-return]
