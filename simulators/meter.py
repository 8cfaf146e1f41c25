"""The energy meter: integrates the power drawn over time (OCPP 1.6, section 3.16).

Power is piecewise constant between calls: `advance(now)` adds `power * elapsed` to the
register before anything changes the power, so energy always rises at the rate that was
actually allowed. `sampled_values()` renders the measurands the MeterValuesSampledData
key asks for (section 7.31 MeterValue / 7.33 SampledValue).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

ENERGY = "Energy.Active.Import.Register"
POWER = "Power.Active.Import"
CURRENT = "Current.Import"
CURRENT_OFFERED = "Current.Offered"
VOLTAGE = "Voltage"
SOC = "SoC"

# What this meter can measure; other measurands are refused by ChangeConfiguration.
SUPPORTED_MEASURANDS = (ENERGY, POWER, CURRENT, CURRENT_OFFERED, VOLTAGE, SOC)

NOMINAL_VOLTAGE = 230.0  # volts per phase, used to turn amperes into watts and back


@dataclass(slots=True)
class Meter:
    """A connector's energy register in Wh, fed by the power it is drawing."""

    energy_wh: float = 0.0  # the cumulative register, never goes down
    power_w: float = 0.0  # what the connector draws since `last`
    last: datetime | None = None  # when the register was last brought up to date

    def advance(self, now: datetime) -> None:
        """Bring the register up to `now` at the current power."""
        if self.last is not None and now > self.last:
            self.energy_wh += self.power_w * (now - self.last).total_seconds() / 3600.0
        if self.last is None or now > self.last:
            self.last = now

    def set_power(self, now: datetime, power_w: float) -> None:
        """Change the power drawn from `now` on (integrating what was drawn before)."""
        self.advance(now)
        self.power_w = max(0.0, power_w)

    @property
    def register_wh(self) -> int:
        """The register as OCPP reports it (integer Wh, as in meterStart/meterStop)."""
        return int(self.energy_wh)


def amps_to_watts(amps: float, phases: int) -> float:
    return amps * NOMINAL_VOLTAGE * phases


def watts_to_amps(watts: float, phases: int) -> float:
    return watts / (NOMINAL_VOLTAGE * phases)


def sampled_values(
    measurands: list[str],
    *,
    meter: Meter,
    offered_w: float,
    phases: int,
    soc: float | None,
    context: str = "Sample.Periodic",
) -> list[dict[str, Any]]:
    """SampledValue entries for `measurands` (section 7.33); unknown ones are skipped (3.16.4)."""
    values: list[dict[str, Any]] = []
    for measurand in measurands:
        if measurand == ENERGY:
            value, unit = f"{meter.energy_wh:.1f}", "Wh"
        elif measurand == POWER:
            value, unit = f"{meter.power_w:.1f}", "W"
        elif measurand == CURRENT:
            value, unit = f"{watts_to_amps(meter.power_w, phases):.2f}", "A"
        elif measurand == CURRENT_OFFERED:
            value, unit = f"{watts_to_amps(offered_w, phases):.2f}", "A"
        elif measurand == VOLTAGE:
            value, unit = f"{NOMINAL_VOLTAGE:.1f}", "V"
        elif measurand == SOC and soc is not None:
            value, unit = f"{soc:.0f}", "Percent"
        else:
            continue
        entry: dict[str, Any] = {
            "value": value,
            "context": context,
            "measurand": measurand,
            "unit": unit,
        }
        if measurand in (ENERGY, POWER, CURRENT, CURRENT_OFFERED, VOLTAGE):
            entry["location"] = "Outlet"
        if measurand == SOC:
            entry["location"] = "EV"
        values.append(entry)
    return values
