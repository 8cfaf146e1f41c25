"""Charging profiles: what SetChargingProfile installs and how it caps power (OCPP 1.6, 3.13).

- Purposes (3.13.1): ChargePointMaxProfile (connector 0 only, shared by all connectors),
  TxDefaultProfile (connector 0 = every connector; one on connector N replaces it for N),
  TxProfile (connector > 0, only while a transaction runs there, deleted when it ends).
- Stacking (3.13.2): per purpose the profile with the highest stackLevel whose schedule is
  active at that moment prevails; a new profile with the same id, or the same
  (connector, purpose, stackLevel), replaces the old one.
- Combining (3.13.3): the limit is the minimum of ChargePointMax and TxProfile (else
  TxDefault). Limits in A are turned into W at 230 V per phase.
- GetCompositeSchedule (5.7) samples that limit at every point where it can change.
"""

from __future__ import annotations

import enum
import itertools
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from simulators.meter import amps_to_watts, watts_to_amps
from simulators.timefmt import iso, parse_iso

DEFAULT_PHASES = 3  # this charger is three-phase unless a period says otherwise


class Purpose(enum.StrEnum):
    CHARGE_POINT_MAX = "ChargePointMaxProfile"
    TX_DEFAULT = "TxDefaultProfile"
    TX = "TxProfile"


class ProfileKind(enum.StrEnum):
    ABSOLUTE = "Absolute"
    RECURRING = "Recurring"
    RELATIVE = "Relative"


class Unit(enum.StrEnum):
    AMPS = "A"
    WATTS = "W"


# The names SupportedChargingRateUnit uses for the units (section 9.4).
UNIT_NAMES = {Unit.AMPS: "Current", Unit.WATTS: "Power"}


class ProfileError(ValueError):
    """A profile the charger will not install; SetChargingProfile answers Rejected."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Period:
    start: int  # seconds from the schedule start
    limit: float  # in the schedule's unit
    phases: int | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class Profile:
    """One installed ChargingProfile (section 7.8) and the connector it is set on."""

    profile_id: int
    connector_id: int
    stack_level: int
    purpose: Purpose
    kind: ProfileKind
    recurrency: str | None
    valid_from: datetime | None
    valid_to: datetime | None
    transaction_id: int | None
    unit: Unit
    periods: tuple[Period, ...]
    duration: int | None
    start_schedule: datetime | None
    installed_at: datetime  # the start of an Absolute profile that names no startSchedule

    @classmethod
    def from_payload(cls, connector_id: int, data: dict[str, Any], now: datetime) -> Profile:
        """Read a csChargingProfiles object; raise ProfileError when it cannot be used."""
        try:
            schedule = data["chargingSchedule"]
            periods = tuple(
                Period(
                    start=int(p["startPeriod"]),
                    limit=float(p["limit"]),
                    phases=p.get("numberPhases"),
                )
                for p in schedule["chargingSchedulePeriod"]
            )
            profile = cls(
                profile_id=int(data["chargingProfileId"]),
                connector_id=connector_id,
                stack_level=int(data["stackLevel"]),
                purpose=Purpose(data["chargingProfilePurpose"]),
                kind=ProfileKind(data["chargingProfileKind"]),
                recurrency=data.get("recurrencyKind"),
                valid_from=_time(data.get("validFrom")),
                valid_to=_time(data.get("validTo")),
                transaction_id=data.get("transactionId"),
                unit=Unit(schedule["chargingRateUnit"]),
                periods=periods,
                duration=schedule.get("duration"),
                start_schedule=_time(schedule.get("startSchedule")),
                installed_at=now,
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise ProfileError(f"unreadable profile: {exc}") from exc
        if not periods or periods[0].start != 0:
            raise ProfileError("the first period must start at 0")
        if any(b.start <= a.start for a, b in itertools.pairwise(periods)):
            raise ProfileError("periods must start in increasing order")
        if profile.kind is ProfileKind.RECURRING and (
            profile.recurrency not in ("Daily", "Weekly") or profile.start_schedule is None
        ):
            raise ProfileError("a Recurring profile needs recurrencyKind and startSchedule")
        return profile

    def schedule_start(self, at: datetime, tx_start: datetime | None) -> datetime:
        """When the schedule that applies at `at` began (Relative: the transaction start)."""
        if self.kind is ProfileKind.RELATIVE:
            return tx_start if tx_start is not None else at
        start = self.start_schedule or self.installed_at
        if self.kind is ProfileKind.RECURRING:
            cycle = timedelta(days=1 if self.recurrency == "Daily" else 7)
            return start + ((at - start) // cycle) * cycle
        return start

    def limit_w(self, at: datetime, tx_start: datetime | None) -> float | None:
        """This profile's limit in W at `at`, or None when it is not in force then."""
        if self.valid_from is not None and at < self.valid_from:
            return None
        if self.valid_to is not None and at >= self.valid_to:
            return None
        elapsed = (at - self.schedule_start(at, tx_start)).total_seconds()
        if elapsed < 0 or (self.duration is not None and elapsed >= self.duration):
            return None
        current = self.periods[0]
        for period in self.periods:
            if period.start <= elapsed:
                current = period
        if self.unit is Unit.WATTS:
            return current.limit
        return amps_to_watts(current.limit, current.phases or DEFAULT_PHASES)

    def change_points(
        self, start: datetime, end: datetime, tx_start: datetime | None
    ) -> set[datetime]:
        """Every moment in [start, end) where this profile's limit may change."""
        points: set[datetime] = set()
        for edge in (self.valid_from, self.valid_to):
            if edge is not None:
                points.add(edge)
        origin = self.schedule_start(start, tx_start)
        cycle = timedelta(days=1 if self.recurrency == "Daily" else 7)
        repeats = 1 + (int((end - start) / cycle) + 1 if self.kind is ProfileKind.RECURRING else 0)
        for n in range(repeats):
            base = origin + n * cycle if self.kind is ProfileKind.RECURRING else origin
            points.update(base + timedelta(seconds=p.start) for p in self.periods)
            if self.duration is not None:
                points.add(base + timedelta(seconds=self.duration))
        return {p for p in points if start <= p < end}


def _time(value: str | None) -> datetime | None:
    return parse_iso(value) if value else None


@dataclass(frozen=True, slots=True, kw_only=True)
class Limits:
    """The charger's profile capabilities (configuration keys of section 9.4)."""

    connectors: int
    max_stack_level: int
    max_installed: int
    max_periods: int
    allowed_units: frozenset[Unit]


class ProfileStore:
    """The installed profiles of one charger; pure, times are passed in."""

    def __init__(self, limits: Limits) -> None:
        self.limits = limits
        self.profiles: list[Profile] = []  # installed, in installation order

    def install(
        self,
        connector_id: int,
        data: dict[str, Any],
        now: datetime,
        *,
        active_tx: int | None,
        tx_running: bool,
    ) -> Profile:
        """SetChargingProfile (5.16): install or raise ProfileError (answer Rejected).

        `tx_running` says a transaction is running on the connector; `active_tx` is its
        id once the CSMS has given one.
        """
        profile = Profile.from_payload(connector_id, data, now)
        lim = self.limits
        if not 0 <= connector_id <= lim.connectors:
            raise ProfileError(f"no connector {connector_id}")
        if profile.purpose is Purpose.CHARGE_POINT_MAX and connector_id != 0:
            raise ProfileError("ChargePointMaxProfile only on connector 0")
        if profile.purpose is Purpose.TX:
            if connector_id == 0:
                raise ProfileError("TxProfile only on a connector > 0")
            if not tx_running:
                raise ProfileError("no transaction on the connector")
            if profile.transaction_id is not None and profile.transaction_id != active_tx:
                raise ProfileError("transactionId does not match the running transaction")
        if profile.stack_level > lim.max_stack_level:
            raise ProfileError("stackLevel above ChargeProfileMaxStackLevel")
        if len(profile.periods) > lim.max_periods:
            raise ProfileError("more periods than ChargingScheduleMaxPeriods")
        if profile.unit not in lim.allowed_units:
            raise ProfileError("chargingRateUnit not allowed")
        kept = [
            p
            for p in self.profiles
            if p.profile_id != profile.profile_id
            and not (
                p.connector_id == connector_id
                and p.purpose is profile.purpose
                and p.stack_level == profile.stack_level
            )
        ]
        if len(kept) + 1 > lim.max_installed:
            raise ProfileError("MaxChargingProfilesInstalled reached")
        self.profiles = [*kept, profile]
        return profile

    def clear(
        self,
        *,
        profile_id: int | None = None,
        connector_id: int | None = None,
        purpose: str | None = None,
        stack_level: int | None = None,
    ) -> bool:
        """ClearChargingProfile (5.5): by id, else by every criterion given. True if any went."""

        def matches(p: Profile) -> bool:
            if profile_id is not None:
                return p.profile_id == profile_id
            return (
                (connector_id is None or p.connector_id == connector_id)
                and (purpose is None or p.purpose == purpose)
                and (stack_level is None or p.stack_level == stack_level)
            )

        kept = [p for p in self.profiles if not matches(p)]
        removed = len(kept) != len(self.profiles)
        self.profiles = kept
        return removed

    def end_transaction(self, connector_id: int) -> None:
        """A TxProfile lives only as long as its transaction (3.13.1)."""
        self.profiles = [
            p
            for p in self.profiles
            if not (p.purpose is Purpose.TX and p.connector_id == connector_id)
        ]

    def _prevailing(
        self, purpose: Purpose, connector_id: int, at: datetime, tx_start: datetime | None
    ) -> float | None:
        """The limit of the highest stack level in force at `at` for one purpose (3.13.2)."""
        candidates = [
            p for p in self.profiles if p.purpose is purpose and p.connector_id == connector_id
        ]
        if purpose is Purpose.TX_DEFAULT and not candidates:
            candidates = [p for p in self.profiles if p.purpose is purpose and p.connector_id == 0]
        for profile in sorted(candidates, key=lambda p: -p.stack_level):
            limit = profile.limit_w(at, tx_start)
            if limit is not None:
                return limit
        return None

    def connector_limit_w(
        self,
        connector_id: int,
        at: datetime,
        *,
        tx_start: datetime | None,
        hardware_w: float,
        sharing: int = 1,
    ) -> float:
        """The power a connector may draw at `at` (3.13.3); `sharing` connectors split the max."""
        limit = hardware_w
        tx_limit = self._prevailing(Purpose.TX, connector_id, at, tx_start)
        if tx_limit is None:
            tx_limit = self._prevailing(Purpose.TX_DEFAULT, connector_id, at, tx_start)
        if tx_limit is not None:
            limit = min(limit, tx_limit)
        cp_limit = self._prevailing(Purpose.CHARGE_POINT_MAX, 0, at, tx_start)
        if cp_limit is not None:
            limit = min(limit, cp_limit / max(1, sharing))
        return max(0.0, limit)

    def composite(
        self,
        connector_id: int,
        now: datetime,
        duration: int,
        *,
        unit: str | None,
        tx_start: datetime | None,
        hardware_w: float,
    ) -> dict[str, Any]:
        """GetCompositeSchedule.conf (5.7) for [now, now + duration]."""
        end = now + timedelta(seconds=duration)
        points = {now}
        for profile in self.profiles:
            points |= profile.change_points(now, end, tx_start)
        rate_unit = Unit(unit) if unit else self._natural_unit(connector_id)
        periods: list[dict[str, Any]] = []
        for at in sorted(points):
            if connector_id == 0:
                cp = self._prevailing(Purpose.CHARGE_POINT_MAX, 0, at, tx_start)
                total = hardware_w * self.limits.connectors
                watts = total if cp is None else min(total, cp)
            else:
                watts = self.connector_limit_w(
                    connector_id, at, tx_start=tx_start, hardware_w=hardware_w
                )
            value = watts if rate_unit is Unit.WATTS else watts_to_amps(watts, DEFAULT_PHASES)
            value = round(value, 1)
            if periods and periods[-1]["limit"] == value:
                continue
            periods.append({"startPeriod": int((at - now).total_seconds()), "limit": value})
        return {
            "status": "Accepted",
            "connectorId": connector_id,
            "scheduleStart": iso(now),
            "chargingSchedule": {
                "duration": duration,
                "startSchedule": iso(now),
                "chargingRateUnit": str(rate_unit),
                "chargingSchedulePeriod": periods,
            },
        }

    def _natural_unit(self, connector_id: int) -> Unit:
        """Report in the unit of the profiles that apply, W when they disagree or none do."""
        units = {p.unit for p in self.profiles if p.connector_id in (0, connector_id)}
        return units.pop() if len(units) == 1 else Unit.WATTS
