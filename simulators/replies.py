"""What a charger's answer to a CSMS CALL is made of: the reply, and the effects that take time.

Shared by ``commands.py`` (OCPP 1.6, section 5) and ``security.py`` (its security extension).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from simulators.outbox import Outgoing


@dataclass(frozen=True, slots=True, kw_only=True)
class Reboot:
    """Reset (5.14) or a firmware install: disconnect, forget, reconnect, boot again."""

    hard: bool


@dataclass(frozen=True, slots=True, kw_only=True)
class UploadDiagnostics:
    """GetDiagnostics (5.9): walk DiagnosticsStatusNotification through these statuses."""

    statuses: tuple[str, ...]


@dataclass(frozen=True, slots=True, kw_only=True)
class InstallFirmware:
    """UpdateFirmware (5.19): at `retrieve_at`, download, install, report, reboot."""

    location: str
    retrieve_at: datetime


@dataclass(frozen=True, slots=True, kw_only=True)
class ConfigChanged:
    """A key changed: the shell re-reads timers (HeartbeatInterval, MeterValueSampleInterval)."""

    key: str


@dataclass(frozen=True, slots=True, kw_only=True)
class UploadLog:
    """GetLog (security extension, N02): walk LogStatusNotification through these statuses."""

    request_id: int
    statuses: tuple[str, ...]


@dataclass(frozen=True, slots=True, kw_only=True)
class InstallSignedFirmware:
    """SignedUpdateFirmware (L01): at ``retrieve_at``, download, verify, install, reboot."""

    request_id: int
    location: str
    retrieve_at: datetime


Effect = (
    Reboot | UploadDiagnostics | InstallFirmware | ConfigChanged | UploadLog | InstallSignedFirmware
)


@dataclass(frozen=True, slots=True, kw_only=True)
class Reply:
    """What to answer and what to do after answering."""

    payload: dict[str, Any] | None = None  # the CALLRESULT payload, None for a CALLERROR
    error: tuple[str, str] | None = None  # (1.6 error code, description)
    then: list[Outgoing] = field(default_factory=list)  # CALLs to queue after the answer
    effect: Effect | None = None
