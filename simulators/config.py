"""The charger's configuration-key table (OCPP 1.6, section 9: standard configuration keys).

GetConfiguration reads it (5.8), ChangeConfiguration writes it (5.3): an unknown key is
NotSupported, a read-only key or an unacceptable value is Rejected. Values are kept as
the strings OCPP carries; typed getters read them.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, replace
from typing import Any

from simulators.meter import SUPPORTED_MEASURANDS


class Kind(enum.StrEnum):
    """How a key's value is checked on ChangeConfiguration."""

    INT = "int"
    BOOL = "bool"
    CSL = "csl"  # comma separated list
    MEASURANDS = "measurands"  # comma separated list of measurands we can sample
    KEY = "key"  # the security profile 1 AuthorizationKey: write-only, 16-40 chars
    TEXT = "text"


class ConfigurationStatus(enum.StrEnum):
    """ConfigurationStatus (section 7.13)."""

    ACCEPTED = "Accepted"
    REJECTED = "Rejected"
    REBOOT_REQUIRED = "RebootRequired"
    NOT_SUPPORTED = "NotSupported"


@dataclass(frozen=True, slots=True, kw_only=True)
class Key:
    """One configuration key: its value, whether the CSMS may change it, how to check it."""

    name: str
    value: str
    kind: Kind
    readonly: bool = False
    reboot_required: bool = False  # a change only takes effect after a reboot
    write_only: bool = False  # never reported by GetConfiguration (AuthorizationKey)


FEATURE_PROFILES = (
    "Core,FirmwareManagement,LocalAuthListManagement,Reservation,SmartCharging,RemoteTrigger"
)


def default_keys(*, connectors: int) -> list[Key]:
    """The keys of sections 9.1-9.4 with the values a typical AC charger ships with."""
    rw, ro = False, True
    table: list[tuple[str, Any, Kind, bool]] = [
        ("AllowOfflineTxForUnknownId", "false", Kind.BOOL, rw),
        ("AuthorizationCacheEnabled", "true", Kind.BOOL, rw),
        ("AuthorizeRemoteTxRequests", "false", Kind.BOOL, rw),
        ("BlinkRepeat", 3, Kind.INT, rw),
        ("ClockAlignedDataInterval", 0, Kind.INT, rw),
        ("ConnectionTimeOut", 60, Kind.INT, rw),
        (
            "ConnectorPhaseRotation",
            ",".join(f"{n}.RST" for n in range(connectors + 1)),
            Kind.CSL,
            rw,
        ),
        ("ConnectorPhaseRotationMaxLength", connectors + 1, Kind.INT, ro),
        ("GetConfigurationMaxKeys", 64, Kind.INT, ro),
        ("HeartbeatInterval", 300, Kind.INT, rw),
        ("LightIntensity", 50, Kind.INT, rw),
        ("LocalAuthorizeOffline", "true", Kind.BOOL, rw),
        ("LocalPreAuthorize", "false", Kind.BOOL, rw),
        ("MaxEnergyOnInvalidId", 0, Kind.INT, rw),
        ("MeterValuesAlignedData", "Energy.Active.Import.Register", Kind.MEASURANDS, rw),
        ("MeterValuesAlignedDataMaxLength", len(SUPPORTED_MEASURANDS), Kind.INT, ro),
        (
            "MeterValuesSampledData",
            "Energy.Active.Import.Register,Power.Active.Import,SoC",
            Kind.MEASURANDS,
            rw,
        ),
        ("MeterValuesSampledDataMaxLength", len(SUPPORTED_MEASURANDS), Kind.INT, ro),
        ("MeterValueSampleInterval", 60, Kind.INT, rw),
        ("MinimumStatusDuration", 0, Kind.INT, rw),
        ("NumberOfConnectors", connectors, Kind.INT, ro),
        ("ResetRetries", 3, Kind.INT, rw),
        ("StopTransactionOnEVSideDisconnect", "true", Kind.BOOL, rw),
        ("StopTransactionOnInvalidId", "true", Kind.BOOL, rw),
        ("StopTxnAlignedData", "", Kind.MEASURANDS, rw),
        ("StopTxnAlignedDataMaxLength", len(SUPPORTED_MEASURANDS), Kind.INT, ro),
        ("StopTxnSampledData", "", Kind.MEASURANDS, rw),
        ("StopTxnSampledDataMaxLength", len(SUPPORTED_MEASURANDS), Kind.INT, ro),
        ("SupportedFeatureProfiles", FEATURE_PROFILES, Kind.CSL, ro),
        ("TransactionMessageAttempts", 3, Kind.INT, rw),
        ("TransactionMessageRetryInterval", 60, Kind.INT, rw),
        ("UnlockConnectorOnEVSideDisconnect", "true", Kind.BOOL, rw),
        ("WebSocketPingInterval", 0, Kind.INT, rw),
        # 9.2 Local Auth List Management
        ("LocalAuthListEnabled", "true", Kind.BOOL, rw),
        ("LocalAuthListMaxLength", 1000, Kind.INT, ro),
        ("SendLocalListMaxLength", 100, Kind.INT, ro),
        # 9.3 Reservation
        ("ReserveConnectorZeroSupported", "false", Kind.BOOL, ro),
        # 9.4 Smart Charging
        ("ChargeProfileMaxStackLevel", 10, Kind.INT, ro),
        ("ChargingScheduleAllowedChargingRateUnit", "Current,Power", Kind.CSL, ro),
        ("ChargingScheduleMaxPeriods", 24, Kind.INT, ro),
        ("ConnectorSwitch3to1PhaseSupported", "false", Kind.BOOL, ro),
        ("MaxChargingProfilesInstalled", 20, Kind.INT, ro),
        # Security Whitepaper, section 7
        ("CertificateStoreMaxLength", 10, Kind.INT, ro),
        ("CpoName", "", Kind.TEXT, rw),  # the O of the charger's CSRs (A02.FR.13)
    ]
    keys = [Key(name=n, value=str(v), kind=k, readonly=r) for n, v, k, r in table]
    # Security whitepaper, section 2: the profile 1/2 password, settable, never readable.
    keys.append(Key(name="AuthorizationKey", value="", kind=Kind.KEY, write_only=True))
    return keys


class Configuration:
    """The key table; pure, no I/O."""

    def __init__(self, keys: list[Key]) -> None:
        self._keys: dict[str, Key] = {k.name: k for k in keys}  # by exact name

    def get(self, names: list[str] | None = None) -> tuple[list[dict[str, Any]], list[str]]:
        """GetConfiguration (5.8): the known keys as KeyValue dicts, and the unknown names."""
        wanted = names if names else list(self._keys)
        known: list[dict[str, Any]] = []
        unknown: list[str] = []
        for name in wanted:
            key = self._keys.get(name)
            if key is None:
                unknown.append(name)
            elif key.write_only:  # known, but its value is never given out
                known.append({"key": key.name, "readonly": key.readonly})
            else:
                known.append({"key": key.name, "readonly": key.readonly, "value": key.value})
        return known, unknown

    def change(self, name: str, value: str) -> ConfigurationStatus:
        """ChangeConfiguration (5.3): validate and store, or say why not."""
        key = self._keys.get(name)
        if key is None:
            return ConfigurationStatus.NOT_SUPPORTED
        if key.readonly or not _valid(key, value, self):
            return ConfigurationStatus.REJECTED
        if key.kind is Kind.BOOL:
            value = value.strip().lower()
        self._keys[name] = replace(key, value=value)
        if key.reboot_required:
            return ConfigurationStatus.REBOOT_REQUIRED
        return ConfigurationStatus.ACCEPTED

    def set(self, name: str, value: str) -> None:
        """Set a value from inside the charger (e.g. the interval BootNotification.conf gave)."""
        self._keys[name] = replace(self._keys[name], value=value)

    def has(self, name: str) -> bool:
        return name in self._keys

    def get_text(self, name: str) -> str:
        return self._keys[name].value

    def get_int(self, name: str) -> int:
        return int(self._keys[name].value)

    def get_bool(self, name: str) -> bool:
        return self._keys[name].value.lower() == "true"

    def get_list(self, name: str) -> list[str]:
        return [item.strip() for item in self._keys[name].value.split(",") if item.strip()]


def _valid(key: Key, value: str, config: Configuration) -> bool:
    """Whether `value` is acceptable for `key` (section 9: the key's type and limits)."""
    if key.kind is Kind.INT:
        return value.strip().isdigit()
    if key.kind is Kind.BOOL:
        return value.strip().lower() in {"true", "false"}
    if key.kind is Kind.MEASURANDS:
        items = [item.strip() for item in value.split(",") if item.strip()]
        limit_key = f"{key.name}MaxLength"
        limit = config.get_int(limit_key) if config.has(limit_key) else len(SUPPORTED_MEASURANDS)
        return len(items) <= limit and all(item in SUPPORTED_MEASURANDS for item in items)
    if key.kind is Kind.KEY:
        return 16 <= len(value.encode()) <= 40
    return len(value) <= 500
