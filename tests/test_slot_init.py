"""``storage.records.slot_init``: the faster ``__init__`` of hot records is the dataclass one."""

from __future__ import annotations

import dataclasses
import inspect

import pytest

from csms.protocol.outcome import Ctx, DomainEvent, Outcome
from storage.records import Event, MeterSample, TransactionProgress, slot_init

HOT = [Ctx, DomainEvent, Outcome, Event, MeterSample, TransactionProgress]


@pytest.mark.parametrize("cls", HOT)
def test_same_parameters_as_the_dataclass(cls: type) -> None:
    parameters = list(inspect.signature(cls).parameters.values())
    fields = dataclasses.fields(cls)
    assert [p.name for p in parameters] == [f.name for f in fields]
    assert all(p.kind is inspect.Parameter.KEYWORD_ONLY for p in parameters)
    for p, f in zip(parameters, fields, strict=True):
        if f.default is not dataclasses.MISSING:
            assert p.default == f.default
        elif f.default_factory is dataclasses.MISSING:
            assert p.default is inspect.Parameter.empty


def test_values_defaults_and_factories() -> None:
    event = Event(id="e", type="t", charger_id="c", sequence=1, timestamp="s", data={"a": 1})
    assert (event.id, event.data, event.pos) == ("e", {"a": 1}, None)
    assert dataclasses.replace(event, pos=3).pos == 3
    with pytest.raises(dataclasses.FrozenInstanceError):
        event.id = "f"  # type: ignore[misc]
    one, two = Outcome(snapshot=None, reply={}), Outcome(snapshot=None, reply={})  # type: ignore[arg-type]
    assert one.writes == [] and one.writes is not two.writes
    given: list = [1]
    assert Outcome(snapshot=None, reply={}, writes=given).writes is given  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="missing"):
        Event(id="e")  # type: ignore[call-arg]
    with pytest.raises(TypeError):
        Event("e")  # type: ignore[misc]


def test_refuses_what_it_cannot_copy() -> None:
    @dataclasses.dataclass(slots=True, kw_only=True)
    class Mutable:
        a: int

    with pytest.raises(TypeError):
        slot_init(Mutable)
