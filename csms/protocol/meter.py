"""Flatten OCPP 1.6 meter values into one reading (OCPP 1.6, 7.31 Measurand, 7.33 MeterValue,
7.34 Phase, 7.43 SampledValue, 7.45 UnitOfMeasure).

``normalise(meterValue)`` gives the numbers a webhook consumer wants, in base units, under
camelCase keys, each only when present, each from the LAST MeterValue element that yields it:

===================  =================================  =============  =======================
key                  measurand                          units read     phases (no total given)
===================  =================================  =============  =======================
``energyWh``         Energy.Active.Import.Register      Wh, kWh        sum
                     (also when measurand is absent)
``energyExportWh``   Energy.Active.Export.Register      Wh, kWh        sum
``powerW``           Power.Active.Import                W, kW          sum
``powerOfferedW``    Power.Offered                      W, kW          sum
``currentA``         Current.Import                     A              max
``currentOfferedA``  Current.Offered                    A              max
``voltageV``         Voltage                            V              average
``soc``              SoC                                Percent        average
``temperatureC``     Temperature                        Celsius (also  max
                                                        "Celcius"), K,
                                                        Fahrenheit
``frequencyHz``      Frequency                          (none, 7.31)   average
===================  =================================  =============  =======================

plus ``timestamp``: that of the element ``energyWh`` came from, else of the last element,
as ``format_timestamp`` writes it (or as sent, when it cannot be read).

Rules, from the spec's defaults:

- No ``unit``: the measurand's base unit (7.43: "Wh" for energy; W, A, V, ... for the rest).
  A unit that does not fit the measurand (``varh`` for an active energy register) is skipped.
- No ``phase`` is the overall value (7.43) and wins over per-phase values. Per-phase values
  are the lines L1, L2, L3 (or L1-N, L2-N, L3-N, the same lines); N and line-to-line values
  (L1-L2, ...) are skipped, because they do not add up to a total.
- No ``location`` is "Outlet" (7.30). Outlet values are preferred; without any, the first
  location that appears is used (e.g. SoC measured at the EV, Temperature in the Body).
- ``format: SignedData`` values, and values that are not finite decimal numbers, are skipped.
  Nothing here raises on malformed input; what cannot be read is left out.
- Every number is rounded to 3 decimals (undoing ``7.2 * 1000 == 7200.000000000001``).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from csms.protocol.timefmt import canonical_timestamp

__all__ = ["energy_register_wh", "normalise"]

_DEFAULT_MEASURAND = "Energy.Active.Import.Register"
_DEFAULT_LOCATION = "Outlet"
_LINES = {"L1": "L1", "L2": "L2", "L3": "L3", "L1-N": "L1", "L2-N": "L2", "L3-N": "L3"}


def _fahrenheit(value: float) -> float:
    return (value - 32.0) * 5.0 / 9.0


def _kelvin(value: float) -> float:
    return value - 273.15


def _times(factor: float) -> Callable[[float], float]:
    return lambda value: value * factor


def _same(value: float) -> float:
    return value


def _mean(values: list[float]) -> float:
    return sum(values) / len(values)


_ENERGY = {"Wh": _same, "kWh": _times(1000.0)}
_POWER = {"W": _same, "kW": _times(1000.0)}


@dataclass(frozen=True, slots=True, kw_only=True)
class _Measurand:
    """How one measurand (7.31) becomes one key of the reading."""

    key: str
    base_unit: str | None  # assumed when ``unit`` is absent; None: the unit is not read
    units: dict[str, Callable[[float], float]]  # unit -> conversion to the base unit
    combine: Callable[[list[float]], float]  # per-phase values -> one value


_MEASURANDS: dict[str, _Measurand] = {
    _DEFAULT_MEASURAND: _Measurand(key="energyWh", base_unit="Wh", units=_ENERGY, combine=sum),
    "Energy.Active.Export.Register": _Measurand(
        key="energyExportWh", base_unit="Wh", units=_ENERGY, combine=sum
    ),
    "Power.Active.Import": _Measurand(key="powerW", base_unit="W", units=_POWER, combine=sum),
    "Power.Offered": _Measurand(key="powerOfferedW", base_unit="W", units=_POWER, combine=sum),
    "Current.Import": _Measurand(key="currentA", base_unit="A", units={"A": _same}, combine=max),
    "Current.Offered": _Measurand(
        key="currentOfferedA", base_unit="A", units={"A": _same}, combine=max
    ),
    "Voltage": _Measurand(key="voltageV", base_unit="V", units={"V": _same}, combine=_mean),
    "SoC": _Measurand(key="soc", base_unit="Percent", units={"Percent": _same}, combine=_mean),
    "Temperature": _Measurand(
        key="temperatureC",
        base_unit="Celsius",
        units={"Celsius": _same, "Celcius": _same, "Fahrenheit": _fahrenheit, "K": _kelvin},
        combine=max,
    ),
    # OCPP 1.6 has no unit for frequency (7.31): any unit given is ignored.
    "Frequency": _Measurand(key="frequencyHz", base_unit=None, units={}, combine=_mean),
}


def normalise(meter_value: list[dict[str, Any]]) -> dict[str, float | str]:
    """One flat reading from a ``meterValue`` list (MeterValues.req, StopTransaction.req)."""
    reading: dict[str, float | str] = {}
    energy_timestamp: Any = None
    last_timestamp: Any = None
    for element in meter_value if isinstance(meter_value, list) else ():
        if not isinstance(element, dict):
            continue
        timestamp = element.get("timestamp")
        last_timestamp = timestamp
        for key, value in _element_reading(element.get("sampledValue")).items():
            reading[key] = value
            if key == "energyWh":
                energy_timestamp = timestamp
    stamp = _timestamp(energy_timestamp if "energyWh" in reading else last_timestamp)
    if stamp is not None:
        reading["timestamp"] = stamp
    return reading


def energy_register_wh(meter_value: list[dict[str, Any]]) -> float | None:
    """The last Energy.Active.Import.Register reading in Wh, if any."""
    energy = normalise(meter_value).get("energyWh")
    return energy if isinstance(energy, float) else None


def _timestamp(value: Any) -> str | None:
    if not isinstance(value, str):
        return None
    canonical = canonical_timestamp(value)
    return value if canonical is None else canonical


def _element_reading(sampled_values: Any) -> dict[str, float]:
    """The values of one MeterValue element, all sampled at the same time (7.33)."""
    # measurand -> location -> phase (None = overall) -> value in base units
    found: dict[str, dict[str, dict[str | None, float]]] = {}
    for sample in sampled_values if isinstance(sampled_values, list) else ():
        if not isinstance(sample, dict) or sample.get("format") == "SignedData":
            continue
        measurand = sample.get("measurand", _DEFAULT_MEASURAND)
        spec = _MEASURANDS.get(measurand) if isinstance(measurand, str) else None
        if spec is None:
            continue
        number = _number(sample.get("value"))
        if number is None:
            continue
        if spec.base_unit is not None:
            unit = sample.get("unit", spec.base_unit)
            convert = spec.units.get(unit) if isinstance(unit, str) else None
            if convert is None:
                continue
            if convert is not _same:
                number = convert(number)
        phase = sample.get("phase")
        if phase is not None:
            phase = _LINES.get(phase) if isinstance(phase, str) else None
            if phase is None:
                continue
        location = sample.get("location", _DEFAULT_LOCATION)
        location = location if isinstance(location, str) else _DEFAULT_LOCATION
        found.setdefault(measurand, {}).setdefault(location, {})[phase] = number
    reading: dict[str, float] = {}
    for measurand, by_location in found.items():
        spec = _MEASURANDS[measurand]
        by_phase = by_location.get(_DEFAULT_LOCATION) or next(iter(by_location.values()))
        # The overall value wins (7.34, 7.43): taken straight, the usual case.
        value = by_phase[None] if None in by_phase else _combine(by_phase.items(), spec.combine)
        reading[spec.key] = round(value, 3)
    return reading


def _combine(
    by_phase: Iterable[tuple[str | None, float]], combine: Callable[[list[float]], float]
) -> float:
    """The overall (phase-less) value if given (7.34, 7.43), else the phases combined."""
    phases: list[float] = []
    for phase, value in by_phase:
        if phase is None:
            return value
        phases.append(value)
    return combine(phases)


def _number(value: Any) -> float | None:
    """A Raw value as a float (7.43: a decimal number in a string); ``None`` if not one."""
    if isinstance(value, bool):
        return None
    if isinstance(value, str):
        if "_" in value:  # float() takes "1_000"; a decimal number does not
            return None
        try:
            number = float(value)
        except ValueError:
            return None
    elif isinstance(value, int | float):
        number = float(value)
    else:
        return None
    return number if math.isfinite(number) else None
