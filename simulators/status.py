"""Connector statuses and the transitions OCPP 1.6 allows between them (section 4.9).

The table is data, as in the spec: `ALLOWED[a]` holds every status a connector in `a`
may move to. Connector 0 (the charge point itself) only knows Available, Unavailable
and Faulted.
"""

from __future__ import annotations

import enum


class Status(enum.StrEnum):
    """ChargePointStatus (section 7.7)."""

    AVAILABLE = "Available"
    PREPARING = "Preparing"
    CHARGING = "Charging"
    SUSPENDED_EV = "SuspendedEV"
    SUSPENDED_EVSE = "SuspendedEVSE"
    FINISHING = "Finishing"
    RESERVED = "Reserved"
    UNAVAILABLE = "Unavailable"
    FAULTED = "Faulted"


class ErrorCode(enum.StrEnum):
    """ChargePointErrorCode (section 7.6)."""

    CONNECTOR_LOCK_FAILURE = "ConnectorLockFailure"
    EV_COMMUNICATION_ERROR = "EVCommunicationError"
    GROUND_FAILURE = "GroundFailure"
    HIGH_TEMPERATURE = "HighTemperature"
    INTERNAL_ERROR = "InternalError"
    LOCAL_LIST_CONFLICT = "LocalListConflict"
    NO_ERROR = "NoError"
    OTHER_ERROR = "OtherError"
    OVER_CURRENT_FAILURE = "OverCurrentFailure"
    OVER_VOLTAGE = "OverVoltage"
    POWER_METER_FAILURE = "PowerMeterFailure"
    POWER_SWITCH_FAILURE = "PowerSwitchFailure"
    READER_FAILURE = "ReaderFailure"
    RESET_FAILURE = "ResetFailure"
    UNDER_VOLTAGE = "UnderVoltage"
    WEAK_SIGNAL = "WeakSignal"


S = Status

# Section 4.9, "which status transitions are possible" (A2 ... I8), row by row.
ALLOWED: dict[Status, frozenset[Status]] = {
    S.AVAILABLE: frozenset(
        {S.PREPARING, S.CHARGING, S.SUSPENDED_EV, S.SUSPENDED_EVSE, S.RESERVED}
        | {S.UNAVAILABLE, S.FAULTED}
    ),
    S.PREPARING: frozenset(
        {S.AVAILABLE, S.CHARGING, S.SUSPENDED_EV, S.SUSPENDED_EVSE, S.FINISHING, S.FAULTED}
    ),
    S.CHARGING: frozenset(
        {S.AVAILABLE, S.SUSPENDED_EV, S.SUSPENDED_EVSE, S.FINISHING, S.UNAVAILABLE, S.FAULTED}
    ),
    S.SUSPENDED_EV: frozenset(
        {S.AVAILABLE, S.CHARGING, S.SUSPENDED_EVSE, S.FINISHING, S.UNAVAILABLE, S.FAULTED}
    ),
    S.SUSPENDED_EVSE: frozenset(
        {S.AVAILABLE, S.CHARGING, S.SUSPENDED_EV, S.FINISHING, S.UNAVAILABLE, S.FAULTED}
    ),
    S.FINISHING: frozenset({S.AVAILABLE, S.PREPARING, S.UNAVAILABLE, S.FAULTED}),
    S.RESERVED: frozenset({S.AVAILABLE, S.PREPARING, S.UNAVAILABLE, S.FAULTED}),
    S.UNAVAILABLE: frozenset(
        {S.AVAILABLE, S.PREPARING, S.CHARGING, S.SUSPENDED_EV, S.SUSPENDED_EVSE, S.FAULTED}
    ),
    S.FAULTED: frozenset(set(Status) - {S.FAULTED}),
}

# Connector 0 stands for the whole charge point (section 4.9, note under the table).
CHARGE_POINT_STATUSES = frozenset({S.AVAILABLE, S.UNAVAILABLE, S.FAULTED})

# Statuses in which a transaction may be running on the connector.
IN_SESSION = frozenset({S.CHARGING, S.SUSPENDED_EV, S.SUSPENDED_EVSE})


class TransitionError(ValueError):
    """A status change the section 4.9 table does not allow; names both ends."""


def check_transition(connector_id: int, old: Status, new: Status) -> None:
    """Raise `TransitionError` unless `old -> new` is allowed for this connector."""
    if old == new:
        return
    if connector_id == 0:
        if new not in CHARGE_POINT_STATUSES:
            raise TransitionError(f"connector 0 cannot be {new}")
        return
    if new not in ALLOWED[old]:
        raise TransitionError(f"connector {connector_id}: {old} -> {new} is not allowed")
