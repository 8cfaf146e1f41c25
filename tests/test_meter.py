"""Tests for csms.protocol.meter: OCPP 1.6 MeterValue normalisation (7.31, 7.33, 7.43)."""

from __future__ import annotations

from typing import Any

import pytest

from csms.protocol.meter import energy_register_wh, normalise

T1 = "2026-02-06T14:30:00Z"
T2 = "2026-02-06T14:31:00.000Z"


def mv(*sampled: dict[str, Any], timestamp: str = T1) -> dict[str, Any]:
    return {"timestamp": timestamp, "sampledValue": list(sampled)}


def sv(value: str, measurand: str | None = None, **fields: str) -> dict[str, Any]:
    sample: dict[str, Any] = {"value": value, **fields}
    if measurand is not None:
        sample["measurand"] = measurand
    return sample


# A typical AC charger sample: register, per-phase currents and voltages, power, SoC.
TYPICAL = [
    mv(
        sv("1234.5", "Energy.Active.Import.Register", unit="kWh", context="Sample.Periodic"),
        sv("7.2", "Power.Active.Import", unit="kW"),
        sv("10.1", "Current.Import", phase="L1", unit="A"),
        sv("10.4", "Current.Import", phase="L2", unit="A"),
        sv("9.9", "Current.Import", phase="L3", unit="A"),
        sv("16", "Current.Offered", unit="A"),
        sv("229.0", "Voltage", phase="L1-N", unit="V"),
        sv("231.0", "Voltage", phase="L2-N", unit="V"),
        sv("230.0", "Voltage", phase="L3-N", unit="V"),
        sv("11000", "Power.Offered", unit="W"),
        sv("55", "SoC", unit="Percent", location="EV"),
        sv("35.5", "Temperature", unit="Celsius", location="Body"),
        sv("50.01", "Frequency"),
        sv("12", "Energy.Active.Export.Register", unit="Wh"),
    )
]


def test_typical_sample() -> None:
    assert normalise(TYPICAL) == {
        "energyWh": 1234500.0,
        "powerW": 7200.0,
        "currentA": 10.4,
        "currentOfferedA": 16.0,
        "voltageV": 230.0,
        "powerOfferedW": 11000.0,
        "soc": 55.0,
        "temperatureC": 35.5,
        "frequencyHz": 50.01,
        "energyExportWh": 12.0,
        "timestamp": "2026-02-06T14:30:00.000Z",
    }


@pytest.mark.parametrize(
    ("sampled", "expected"),
    [
        # the spec's defaults: measurand Energy.Active.Import.Register, unit Wh (7.43)
        ([sv("100")], {"energyWh": 100.0}),
        ([sv("1.0005", unit="kWh")], {"energyWh": 1000.5}),
        ([sv("1.23456789", unit="kWh")], {"energyWh": 1234.568}),
        # a unit that does not fit the measurand is skipped
        ([sv("100", unit="varh")], {}),
        ([sv("7", "Power.Active.Import", unit="A")], {}),
        # power: W or kW; no unit is W
        ([sv("3700", "Power.Active.Import")], {"powerW": 3700.0}),
        ([sv("3.7", "Power.Active.Import", unit="kW")], {"powerW": 3700.0}),
        # phases are summed when there is no total ...
        (
            [
                sv("2.3", "Power.Active.Import", unit="kW", phase="L1"),
                sv("2.4", "Power.Active.Import", unit="kW", phase="L2"),
                sv("2.5", "Power.Active.Import", unit="kW", phase="L3"),
            ],
            {"powerW": 7200.0},
        ),
        (
            [
                sv("2300", "Power.Active.Import", phase="L1-N"),
                sv("2400", "Power.Active.Import", phase="L2-N"),
            ],
            {"powerW": 4700.0},
        ),
        # ... and the total wins when there is one, wherever it is
        (
            [
                sv("2300", "Power.Active.Import", phase="L1"),
                sv("7000", "Power.Active.Import"),
                sv("2400", "Power.Active.Import", phase="L2"),
            ],
            {"powerW": 7000.0},
        ),
        # neutral and line-to-line values do not add up to a total
        (
            [
                sv("2300", "Power.Active.Import", phase="L1"),
                sv("99", "Power.Active.Import", phase="N"),
                sv("400", "Power.Active.Import", phase="L1-L2"),
            ],
            {"powerW": 2300.0},
        ),
        ([sv("400", "Voltage", phase="L1-L2")], {}),
        ([sv("400", "Voltage", phase=7)], {}),  # type: ignore[arg-type]
        # L1 and L1-N are the same line: the later one counts once
        (
            [
                sv("2300", "Power.Active.Import", phase="L1"),
                sv("2310", "Power.Active.Import", phase="L1-N"),
            ],
            {"powerW": 2310.0},
        ),
        # current: the total, else the largest phase
        ([sv("16", "Current.Import")], {"currentA": 16.0}),
        (
            [sv("15", "Current.Import", phase="L1"), sv("16.5", "Current.Import", phase="L2")],
            {"currentA": 16.5},
        ),
        (
            [sv("32", "Current.Offered", phase="L1"), sv("32", "Current.Offered", phase="L2")],
            {"currentOfferedA": 32.0},
        ),
        # voltage: the total, else the average of the phases
        ([sv("230.5", "Voltage")], {"voltageV": 230.5}),
        (
            [sv("228", "Voltage", phase="L1"), sv("232", "Voltage", phase="L2")],
            {"voltageV": 230.0},
        ),
        # temperature in Celsius (also the schema's "Celcius"), Fahrenheit, Kelvin
        ([sv("25", "Temperature")], {"temperatureC": 25.0}),
        ([sv("25", "Temperature", unit="Celcius")], {"temperatureC": 25.0}),
        ([sv("77", "Temperature", unit="Fahrenheit")], {"temperatureC": 25.0}),
        ([sv("298.15", "Temperature", unit="K")], {"temperatureC": 25.0}),
        ([sv("25", "Temperature", unit="W")], {}),
        ([{"value": "100", "unit": ["Wh"]}], {}),
        # SoC in percent; frequency has no unit in 1.6, any given is ignored
        ([sv("80.5", "SoC")], {"soc": 80.5}),
        ([sv("80", "SoC", unit="Wh")], {}),
        ([sv("49.98", "Frequency", unit="Hertz")], {"frequencyHz": 49.98}),
        # power offered, energy export
        ([sv("22", "Power.Offered", unit="kW")], {"powerOfferedW": 22000.0}),
        ([sv("0.5", "Energy.Active.Export.Register", unit="kWh")], {"energyExportWh": 500.0}),
        # measurands without a key here are ignored
        ([sv("1", "Energy.Active.Import.Interval")], {}),
        ([sv("1", "RPM")], {}),
        ([sv("1", "Not.A.Measurand")], {}),
        ([sv("1", 7)], {}),  # type: ignore[arg-type]
        # Outlet (the default location) is preferred; else the first location seen
        (
            [sv("9999", location="Inlet"), sv("100", location="Outlet")],
            {"energyWh": 100.0},
        ),
        ([sv("9999", location="Inlet"), sv("100")], {"energyWh": 100.0}),
        (
            [sv("30", "Temperature", location="Body"), sv("20", "Temperature", location="Cable")],
            {"temperatureC": 30.0},
        ),
        ([sv("100", location=5)], {"energyWh": 100.0}),  # type: ignore[arg-type]
        # signed data and values that are not numbers are skipped
        ([sv("AABBCC", format="SignedData"), sv("100", format="Raw")], {"energyWh": 100.0}),
        ([sv("100", format="SignedData")], {}),
        ([sv("abc")], {}),
        ([sv("")], {}),
        ([sv("NaN")], {}),
        ([sv("inf")], {}),
        ([sv("1_000")], {}),
        ([{"value": 100}], {"energyWh": 100.0}),
        ([{"value": 1.5, "measurand": "Current.Import"}], {"currentA": 1.5}),
        ([{"value": True}], {}),
        ([{"value": None}], {}),
        ([{"measurand": "Voltage"}], {}),
        (["100", None, 5], {}),
    ],
)
def test_sampled_values(sampled: list[Any], expected: dict[str, Any]) -> None:
    reading = normalise([mv(*sampled)])
    timestamp = reading.pop("timestamp")
    assert timestamp == "2026-02-06T14:30:00.000Z"
    assert reading == expected


def test_last_element_carrying_each_measurand_wins() -> None:
    reading = normalise(
        [
            mv(sv("100"), sv("7000", "Power.Active.Import"), sv("80", "SoC"), timestamp=T1),
            mv(sv("200"), sv("abc", "SoC"), timestamp=T2),
            mv(sv("7100", "Power.Active.Import"), timestamp="2026-02-06T14:32:00Z"),
        ]
    )
    # energy and its timestamp from the 2nd element, SoC from the 1st, power from the 3rd
    assert reading == {
        "energyWh": 200.0,
        "powerW": 7100.0,
        "soc": 80.0,
        "timestamp": "2026-02-06T14:31:00.000Z",
    }


@pytest.mark.parametrize(
    ("meter_value", "expected"),
    [
        # without energy, the timestamp of the last element
        (
            [mv(sv("16", "Current.Import"), timestamp=T1), mv(sv("abc"), timestamp=T2)],
            {"currentA": 16.0, "timestamp": "2026-02-06T14:31:00.000Z"},
        ),
        # offsets normalised to UTC; an unreadable timestamp is kept as sent
        (
            [mv(sv("1"), timestamp="2026-02-06T15:30:00+01:00")],
            {"energyWh": 1.0, "timestamp": "2026-02-06T14:30:00.000Z"},
        ),
        ([mv(sv("1"), timestamp="yesterday")], {"energyWh": 1.0, "timestamp": "yesterday"}),
        # a missing or non-string timestamp is left out
        ([{"sampledValue": [sv("1")]}], {"energyWh": 1.0}),
        ([{"timestamp": 5, "sampledValue": [sv("1")]}], {"energyWh": 1.0}),
        # malformed structures never raise
        ([], {}),
        ([None, "x", 5], {}),
        ([{"timestamp": T1}], {"timestamp": "2026-02-06T14:30:00.000Z"}),
        ([{"timestamp": T1, "sampledValue": "100"}], {"timestamp": "2026-02-06T14:30:00.000Z"}),
        (None, {}),
        ({"timestamp": T1}, {}),
    ],
)
def test_timestamps_and_malformed_input(meter_value: Any, expected: dict[str, Any]) -> None:
    assert normalise(meter_value) == expected


def test_energy_register_wh() -> None:
    assert energy_register_wh(TYPICAL) == 1234500.0
    assert energy_register_wh([mv(sv("7000", "Power.Active.Import"))]) is None
    assert energy_register_wh([]) is None
