"""The charger itself, without sockets or clocks: a pure model of an OCPP 1.6 charge point.

Every method takes `now` and returns the CALLs the charger wants to send (`Outgoing`), in
order; the I/O shell (`simulators.charger`) queues and sends them. Answers to the CSMS's
own CALLs live in `simulators.commands`.

What it models: N connectors with the status machine of section 4.9, the boot sequence
(4.2), authorization with the local list and cache (3.5, 4.1), transactions with a meter
that integrates the power actually allowed (4.8, 4.10, 3.16), smart-charging limits
(3.13), reservations (3.11) and scheduled availability changes (5.2).
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from simulators.authorization import Authorizer
from simulators.config import Configuration, default_keys
from simulators.meter import Meter, sampled_values
from simulators.outbox import Outgoing
from simulators.profiles import UNIT_NAMES, Limits, ProfileError, ProfileStore, Unit
from simulators.security import SecurityState
from simulators.status import ErrorCode, Status, check_transition
from simulators.timefmt import iso


@dataclass(frozen=True, slots=True, kw_only=True)
class Identity:
    """What the charger says about itself in BootNotification.req (section 6.2)."""

    vendor: str = "chargehook"
    model: str = "SIM-AC22"
    serial: str = "SIM-0001"
    firmware: str = "1.0.0"


@dataclass(frozen=True, slots=True, kw_only=True)
class Vehicle:
    """The EV plugged in: how fast it can charge and how full it is."""

    max_power_w: float = 11_000.0
    battery_wh: float = 60_000.0
    soc_start: float = 20.0  # percent at plug-in


@dataclass(slots=True, kw_only=True)
class Transaction:
    """A transaction as the charger knows it; `transaction_id` arrives with the Start answer."""

    ref: int  # local key, also the outbox's `tx_ref`
    connector_id: int
    id_tag: str
    started_at: datetime
    meter_start: int
    reservation_id: int | None = None
    transaction_id: int | None = None  # the CSMS's id, None until StartTransaction.conf
    blocked: bool = False  # the CSMS refused the idTag but the transaction goes on (C5)


@dataclass(frozen=True, slots=True, kw_only=True)
class Reservation:
    """An accepted ReserveNow.req (5.13)."""

    reservation_id: int
    connector_id: int
    id_tag: str
    parent_id_tag: str | None
    expiry: datetime


@dataclass(slots=True, kw_only=True)
class Connector:
    """One connector's state (connector 0 stands for the charge point, 4.9)."""

    connector_id: int
    status: Status = Status.AVAILABLE
    error_code: ErrorCode = ErrorCode.NO_ERROR
    meter: Meter = field(default_factory=Meter)
    plugged: bool = False  # an EV cable is connected
    transaction: Transaction | None = None
    reservation: Reservation | None = None
    inoperative: bool = False  # ChangeAvailability Inoperative is in force (persists reboots)
    scheduled: bool | None = None  # inoperative value waiting for the transaction to end
    pre_fault: Status | None = None  # where to return when a fault clears (I1-I8)
    awaiting_tag: str | None = None  # idTag waiting for Authorize.conf
    remote_profile: dict[str, Any] | None = None  # TxProfile from RemoteStart, set at start
    energy_at_plug: float = 0.0  # register when the EV was plugged, for its SoC


class ChargerModel:
    """A charge point's whole state; every method is pure given `now`."""

    def __init__(
        self,
        *,
        connectors: int = 1,
        identity: Identity | None = None,
        max_power_w: float = 22_080.0,
        vehicle: Vehicle | None = None,
        vendor_id: str = "chargehook-sim",
    ) -> None:
        self.identity = identity or Identity()
        self.max_power_w = max_power_w  # hardware rating per connector (32 A, 3 phases)
        self.vehicle = vehicle or Vehicle()
        self.vendor_id = vendor_id  # the DataTransfer vendor this charger understands
        self.config = Configuration(default_keys(connectors=connectors))
        self.auth = Authorizer(
            max_length=self.config.get_int("LocalAuthListMaxLength"),
            max_send=self.config.get_int("SendLocalListMaxLength"),
        )
        units = {
            u
            for u in Unit
            if UNIT_NAMES[u] in self.config.get_list("ChargingScheduleAllowedChargingRateUnit")
        }
        self.profiles = ProfileStore(
            Limits(
                connectors=connectors,
                max_stack_level=self.config.get_int("ChargeProfileMaxStackLevel"),
                max_installed=self.config.get_int("MaxChargingProfilesInstalled"),
                max_periods=self.config.get_int("ChargingScheduleMaxPeriods"),
                allowed_units=frozenset(units),
            )
        )
        self.connectors = {n: Connector(connector_id=n) for n in range(connectors + 1)}
        self.registration: str | None = None  # last BootNotification.conf status
        self.tx_ids: dict[int, int] = {}  # transaction ref -> CSMS transactionId
        self.diagnostics_status = "Idle"  # last DiagnosticsStatusNotification status
        self.firmware_status = "Idle"  # last FirmwareStatusNotification status
        self.security = SecurityState()  # certificates, log and signed firmware state
        self._next_ref = 1  # next local transaction ref

    # ----- queries -------------------------------------------------------------------

    @property
    def connector_count(self) -> int:
        return len(self.connectors) - 1

    def connector(self, connector_id: int) -> Connector:
        if connector_id not in self.connectors or connector_id == 0:
            raise KeyError(f"no connector {connector_id}")
        return self.connectors[connector_id]

    def transactions(self) -> list[Transaction]:
        return [c.transaction for c in self.connectors.values() if c.transaction]

    def find_transaction(self, transaction_id: int) -> Transaction | None:
        for tx in self.transactions():
            if tx.transaction_id == transaction_id:
                return tx
        return None

    # ----- boot (4.2) ----------------------------------------------------------------

    def boot_notification(self) -> Outgoing:
        ident = self.identity
        return Outgoing(
            action="BootNotification",
            payload={
                "chargePointVendor": ident.vendor,
                "chargePointModel": ident.model,
                "chargePointSerialNumber": ident.serial,
                "firmwareVersion": ident.firmware,
            },
        )

    def on_boot(self, answer: dict[str, Any], now: datetime) -> list[Outgoing]:
        """BootNotification.conf: adopt the interval; once Accepted, report every status."""
        self.registration = answer.get("status")
        interval = int(answer.get("interval", 0))
        if self.registration == "Accepted":
            if interval > 0:
                self.config.set("HeartbeatInterval", str(interval))
            return self.status_notifications(now)
        return []

    def reboot(self, now: datetime) -> None:
        """Volatile state is lost; transactions must have been stopped (5.14)."""
        self.registration = None
        for c in self.connectors.values():
            c.transaction = None
            c.reservation = None
            c.plugged = False
            c.awaiting_tag = None
            c.remote_profile = None
            c.pre_fault = None
            c.meter.set_power(now, 0.0)
            if c.scheduled is not None:
                c.inoperative, c.scheduled = c.scheduled, None
            c.status = Status.UNAVAILABLE if c.inoperative else Status.AVAILABLE
            c.error_code = ErrorCode.NO_ERROR
        self.profiles.profiles = [p for p in self.profiles.profiles if p.purpose != "TxProfile"]

    # ----- status (4.9) --------------------------------------------------------------

    def status_notification(self, c: Connector, now: datetime, info: str | None = None) -> Outgoing:
        payload: dict[str, Any] = {
            "connectorId": c.connector_id,
            "errorCode": str(c.error_code),
            "status": str(c.status),
            "timestamp": iso(now),
        }
        if info:
            payload["info"] = info
        return Outgoing(action="StatusNotification", payload=payload)

    def status_notifications(self, now: datetime) -> list[Outgoing]:
        return [self.status_notification(c, now) for c in self.connectors.values()]

    def set_status(
        self,
        c: Connector,
        status: Status,
        now: datetime,
        *,
        error_code: ErrorCode = ErrorCode.NO_ERROR,
        info: str | None = None,
    ) -> list[Outgoing]:
        """Move a connector along the 4.9 table; a notification only when something changed."""
        if c.status == status and c.error_code == error_code:
            return []
        check_transition(c.connector_id, c.status, status)
        c.status, c.error_code = status, error_code
        return [self.status_notification(c, now, info)]

    def _idle_status(self, c: Connector) -> Status:
        """Where a connector rests when nothing happens on it."""
        if c.inoperative:
            return Status.UNAVAILABLE
        if c.reservation is not None:
            return Status.RESERVED
        return Status.PREPARING if c.plugged else Status.AVAILABLE

    # ----- the driver's side ---------------------------------------------------------

    def plug_in(self, connector_id: int, now: datetime) -> list[Outgoing]:
        """An EV cable is connected (A2)."""
        c = self.connector(connector_id)
        c.plugged = True
        c.energy_at_plug = c.meter.energy_wh
        if c.status in (Status.AVAILABLE, Status.RESERVED, Status.FINISHING):
            return self.set_status(c, Status.PREPARING, now)
        return []

    def unplug(self, connector_id: int, now: datetime) -> list[Outgoing]:
        """The cable is removed: ends a transaction if configured (EVDisconnected), then idle."""
        c = self.connector(connector_id)
        out: list[Outgoing] = []
        c.plugged = False
        if c.transaction and self.config.get_bool("StopTransactionOnEVSideDisconnect"):
            out += self.stop_transaction(connector_id, "EVDisconnected", now)
        if c.transaction is None and c.status in (Status.PREPARING, Status.FINISHING):
            out += self.set_status(c, self._idle_status(c), now)
        return out

    def present_tag(
        self, connector_id: int, id_tag: str, now: datetime, *, online: bool
    ) -> list[Outgoing]:
        """An idTag is offered to start charging (local card or RemoteStart, 3.5, 5.11)."""
        c = self.connector(connector_id)
        out: list[Outgoing] = []
        if c.transaction is not None or c.status in (Status.FAULTED, Status.UNAVAILABLE):
            return out
        reserved = c.reservation
        if reserved is not None and id_tag != reserved.id_tag:
            known_parent = self.auth.lookup(id_tag, list_enabled=True, cache_enabled=True)
            if (
                known_parent is None
                or known_parent.parent is None
                or known_parent.parent != reserved.parent_id_tag
            ):
                return out  # 5.13: a reserved connector refuses every other idTag
        if c.status in (Status.AVAILABLE, Status.RESERVED, Status.FINISHING):
            c.plugged = True  # this model's EV is always already there when a tag is shown
            c.energy_at_plug = c.meter.energy_wh
            out += self.set_status(c, Status.PREPARING, now)
        known = self.auth.lookup(
            id_tag,
            list_enabled=self.config.get_bool("LocalAuthListEnabled"),
            cache_enabled=self.config.get_bool("AuthorizationCacheEnabled"),
        )
        if not online:
            if (
                known is not None
                and known.accepted_at(now)
                and self.config.get_bool("LocalAuthorizeOffline")
            ):
                return out + self.start_transaction(connector_id, id_tag, now)
            if known is None and self.config.get_bool("AllowOfflineTxForUnknownId"):
                return out + self.start_transaction(connector_id, id_tag, now)
            return out + self._give_up(c, now)
        if (
            known is not None
            and known.accepted_at(now)
            and self.config.get_bool("LocalPreAuthorize")
        ):
            return out + self.start_transaction(connector_id, id_tag, now)
        c.awaiting_tag = id_tag
        return [*out, Outgoing(action="Authorize", payload={"idTag": id_tag})]

    def _give_up(self, c: Connector, now: datetime) -> list[Outgoing]:
        """Authorization failed: the session that was being prepared is abandoned (B1)."""
        c.awaiting_tag = None
        c.remote_profile = None
        c.plugged = False
        return self.set_status(c, self._idle_status(c), now)

    def start_transaction(self, connector_id: int, id_tag: str, now: datetime) -> list[Outgoing]:
        """StartTransaction.req (4.8) and the status that follows (B3 / B5)."""
        c = self.connector(connector_id)
        c.awaiting_tag = None
        reservation = c.reservation
        tx = Transaction(
            ref=self._next_ref,
            connector_id=connector_id,
            id_tag=id_tag,
            started_at=now,
            meter_start=c.meter.register_wh,
            reservation_id=reservation.reservation_id if reservation else None,
        )
        self._next_ref += 1
        c.transaction, c.reservation = tx, None
        payload: dict[str, Any] = {
            "connectorId": connector_id,
            "idTag": id_tag,
            "meterStart": tx.meter_start,
            "timestamp": iso(now),
        }
        if tx.reservation_id is not None:
            payload["reservationId"] = tx.reservation_id
        out: list[Outgoing] = []
        if c.status in (Status.AVAILABLE, Status.RESERVED, Status.FINISHING):
            c.plugged = True
            out += self.set_status(c, Status.PREPARING, now)  # A2 / G2 / F2
        out.append(Outgoing(action="StartTransaction", payload=payload, tx_ref=tx.ref))
        if c.remote_profile is not None:
            with contextlib.suppress(ProfileError):  # 5.11: an unusable profile is ignored
                self.profiles.install(
                    connector_id, c.remote_profile, now, active_tx=None, tx_running=True
                )
            c.remote_profile = None
        return out + self.refresh_power(now)

    def stop_transaction(
        self, connector_id: int, reason: str, now: datetime, *, id_tag: str | None = None
    ) -> list[Outgoing]:
        """StopTransaction.req (4.10) with `reason` (7.35), then Finishing or idle (C1, C6, C8)."""
        c = self.connector(connector_id)
        tx = c.transaction
        if tx is None:
            return []
        c.meter.set_power(now, 0.0)
        c.transaction = None
        self.profiles.end_transaction(connector_id)
        payload: dict[str, Any] = {
            "meterStop": c.meter.register_wh,
            "timestamp": iso(now),
            "reason": reason,
        }
        if id_tag is not None:
            payload["idTag"] = id_tag
        out = [Outgoing(action="StopTransaction", payload=payload, tx_ref=tx.ref)]
        if reason in ("SoftReset", "HardReset", "Reboot", "PowerLoss"):
            return out  # the reboot sets the statuses
        if reason in ("EVDisconnected", "UnlockCommand"):
            c.plugged = False
        if c.scheduled is not None:
            c.inoperative, c.scheduled = c.scheduled, None
        if c.plugged and not c.inoperative:
            return out + self.set_status(c, Status.FINISHING, now)
        return out + self.set_status(c, self._idle_status(c), now)

    def refresh_power(self, now: datetime) -> list[Outgoing]:
        """Re-evaluate every running transaction's allowed power (3.13.3): C5 / E3."""
        out: list[Outgoing] = []
        running = [
            c for c in self.connectors.values() if c.transaction and c.status != Status.FAULTED
        ]
        for c in running:
            assert c.transaction is not None
            limit = self.profiles.connector_limit_w(
                c.connector_id,
                now,
                tx_start=c.transaction.started_at,
                hardware_w=self.max_power_w,
                sharing=len(running),
            )
            soc = self.soc(c)
            power = 0.0 if soc >= 100.0 else min(limit, self.vehicle.max_power_w)
            c.meter.set_power(now, power)
            if c.transaction.blocked:
                c.meter.set_power(now, 0.0)
                out += self.set_status(c, Status.SUSPENDED_EVSE, now)
            elif power > 0:
                out += self.set_status(c, Status.CHARGING, now)
            elif soc >= 100.0:
                out += self.set_status(c, Status.SUSPENDED_EV, now)
            else:
                out += self.set_status(c, Status.SUSPENDED_EVSE, now)
        return out

    def soc(self, c: Connector) -> float:
        """The EV's state of charge from what this connector has delivered since plug-in."""
        delivered = c.meter.energy_wh - c.energy_at_plug
        return min(100.0, self.vehicle.soc_start + 100.0 * delivered / self.vehicle.battery_wh)

    def sample(
        self, now: datetime, *, connector_id: int | None = None, context: str = "Sample.Periodic"
    ) -> list[Outgoing]:
        """MeterValues.req (4.7) for running transactions (or one connector, for a trigger)."""
        out = self.refresh_power(now)
        measurands = self.config.get_list("MeterValuesSampledData")
        for c in self.connectors.values():
            if c.connector_id == 0 or (connector_id is not None and c.connector_id != connector_id):
                continue
            if c.transaction is None and connector_id is None:
                continue
            c.meter.advance(now)
            values = sampled_values(
                measurands,
                meter=c.meter,
                offered_w=self.max_power_w,
                phases=3,
                soc=self.soc(c) if c.transaction else None,
                context=context,
            )
            payload: dict[str, Any] = {
                "connectorId": c.connector_id,
                "meterValue": [{"timestamp": iso(now), "sampledValue": values}],
            }
            tx_ref = c.transaction.ref if c.transaction else None
            out.append(Outgoing(action="MeterValues", payload=payload, tx_ref=tx_ref))
        return out

    def fault(
        self, connector_id: int, error_code: ErrorCode, now: datetime, *, info: str | None = None
    ) -> list[Outgoing]:
        """A fault that prevents charging (A9 ... H9): a running transaction ends first."""
        c = self.connectors[connector_id]
        out: list[Outgoing] = []
        if c.transaction is not None:
            out += self.stop_transaction(connector_id, "Other", now)
        c.pre_fault = c.status
        c.reservation = None
        return out + self.set_status(c, Status.FAULTED, now, error_code=error_code, info=info)

    def recover(self, connector_id: int, now: datetime) -> list[Outgoing]:
        """The fault clears: back to the status the connector would now rest in (I1-I8)."""
        c = self.connectors[connector_id]
        if c.status != Status.FAULTED:
            return []
        c.pre_fault = None
        if connector_id == 0:
            target = Status.UNAVAILABLE if c.inoperative else Status.AVAILABLE
        else:
            target = self._idle_status(c)
        return self.set_status(c, target, now)

    def tick(self, now: datetime) -> list[Outgoing]:
        """Time passes: reservations expire (G1)."""
        out: list[Outgoing] = []
        for c in self.connectors.values():
            if c.reservation is not None and now >= c.reservation.expiry:
                c.reservation = None
                if c.status == Status.RESERVED:
                    out += self.set_status(c, self._idle_status(c), now)
        return out

    # ----- answers to our own CALLs --------------------------------------------------

    def on_result(self, sent: Outgoing, answer: dict[str, Any], now: datetime) -> list[Outgoing]:
        """The CSMS answered `sent`; learn from it and say what follows."""
        if sent.action == "BootNotification":
            return self.on_boot(answer, now)
        if sent.action == "Authorize":
            return self._on_authorize(sent.payload["idTag"], answer, now)
        if sent.action == "StartTransaction":
            return self._on_start(sent, answer, now)
        if sent.action == "StopTransaction" and "idTagInfo" in answer and "idTag" in sent.payload:
            self._learn(sent.payload["idTag"], answer["idTagInfo"])
        return []

    def _learn(self, id_tag: str, info: dict[str, Any]) -> None:
        self.auth.learn(
            id_tag, info, cache_enabled=self.config.get_bool("AuthorizationCacheEnabled")
        )

    def _on_authorize(self, id_tag: str, answer: dict[str, Any], now: datetime) -> list[Outgoing]:
        info = answer.get("idTagInfo", {"status": "Invalid"})
        self._learn(id_tag, info)
        for c in self.connectors.values():
            if c.awaiting_tag == id_tag:
                if info.get("status") == "Accepted":
                    return self.start_transaction(c.connector_id, id_tag, now)
                return self._give_up(c, now)
        return []

    def _on_start(self, sent: Outgoing, answer: dict[str, Any], now: datetime) -> list[Outgoing]:
        """StartTransaction.conf: bind the CSMS id; an id tag refused now ends it (C5)."""
        assert sent.tx_ref is not None
        transaction_id = int(answer["transactionId"])
        self.tx_ids[sent.tx_ref] = transaction_id
        info = answer.get("idTagInfo", {"status": "Accepted"})
        self._learn(sent.payload["idTag"], info)
        for c in self.connectors.values():
            tx = c.transaction
            if tx is None or tx.ref != sent.tx_ref:
                continue
            tx.transaction_id = transaction_id
            if info.get("status") != "Accepted":
                if self.config.get_bool("StopTransactionOnInvalidId"):
                    return self.stop_transaction(c.connector_id, "DeAuthorized", now)
                tx.blocked = True
                return self.refresh_power(now)
        return []
