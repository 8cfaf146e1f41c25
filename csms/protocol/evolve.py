"""``evolve(obj, **changes)``: ``dataclasses.replace`` for the frozen, slotted records of the
hot path. ``replace`` introspects the fields and runs ``__init__`` on every call and was the
largest single cost per OCPP message; this builds, once per class, a function that copies the
slots straight across, through each slot's own descriptor (``object.__setattr__`` looks the
name up again on every call: a third more instructions per copy). No ``__post_init__`` runs:
the records used with it have none.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any, TypeVar

from storage.records import slot_setters

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
    namespace: dict[str, Any] = {"new_": object.__new__, "cls": cls, "TypeError": TypeError}
    setters = slot_setters(cls)
    if setters is not None:
        namespace.update({f"set_{name}": setter for name, setter in setters.items()})
        namespace["setters"] = setters
        # Every slot copied, then the changes written over them: no lookup per field.
        lines = ["def copy(obj, changes):", "    new = new_(cls)"]
        lines += [f"    set_{name}(new, obj.{name})" for name in names]
        lines += [
            "    for name, value in changes.items():",
            "        setter = setters.get(name)",
            "        if setter is None:",
            "            unknown = sorted(set(changes) - setters.keys())",
            "            raise TypeError(f'{cls.__name__} has no field(s) {unknown}')",
            "        setter(new, value)",
            "    return new",
        ]
    else:  # not slotted: set each attribute by name
        namespace["set_"] = object.__setattr__
        lines = ["def copy(obj, changes):", "    new = new_(cls)"]
        for name in names:
            lines.append(
                f"    set_(new, {name!r}, changes.pop({name!r}) if {name!r} in changes"
                f" else obj.{name})"
            )
        lines += [
            "    if changes:",
            "        raise TypeError(f'{cls.__name__} has no field(s) {sorted(changes)}')",
            "    return new",
        ]
    exec("\n".join(lines), namespace)
    return namespace["copy"]  # type: ignore[no-any-return]
