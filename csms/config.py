"""Settings: a TOML file, overridden key by key by ``CSMS_``-prefixed environment variables.

``CSMS_API__PORT=8081`` overrides ``[api] port``. Unknown keys and bad values stop the start
with a message that names the key (``ConfigError``), so a typo never silently falls back to a
default.
"""

from __future__ import annotations

import re
import tomllib
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError, model_validator
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?\s*$")
_UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, None: 1.0}


class ConfigError(Exception):
    """A setting is missing, unknown or has a bad value; the message names the key."""


def parse_duration(value: Any) -> float:
    """Seconds from ``"30s"``, ``"2m"``, ``"24h"``, ``"7d"`` or a bare number of seconds."""
    if isinstance(value, bool):
        raise ValueError("expected a duration such as '30s', '2m', '24h'")
    if isinstance(value, int | float):
        seconds = float(value)
    elif isinstance(value, str) and (match := _DURATION.match(value)):
        seconds = float(match.group(1)) * _UNIT_SECONDS[match.group(2)]
    else:
        raise ValueError(f"expected a duration such as '30s', '2m', '24h', got {value!r}")
    if seconds < 0:
        raise ValueError("a duration cannot be negative")
    return seconds


Duration = Annotated[float, BeforeValidator(parse_duration)]
Port = Annotated[int, Field(ge=0, le=65535)]


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class OcppSettings(_Section):
    host: str = "127.0.0.1"
    port: Port = 9000
    allow_unknown_chargers: bool = False
    authorization: Literal["local", "accept_all"] = "local"
    heartbeat_interval: Annotated[int, Field(ge=1, le=86400)] = 300
    call_timeout: Annotated[float, Field(gt=0, le=3600)] = 30
    tls_cert: str = ""
    tls_key: str = ""

    @model_validator(mode="after")
    def _tls_pair(self) -> OcppSettings:
        if bool(self.tls_cert) != bool(self.tls_key):
            missing = "tls_key" if self.tls_cert else "tls_cert"
            raise ValueError(f"tls_cert and tls_key go together: {missing} is empty")
        for key in ("tls_cert", "tls_key"):
            path = getattr(self, key)
            if path and not Path(path).is_file():
                raise ValueError(f"{key}: no such file {path!r}")
        return self

    @property
    def tls(self) -> bool:
        return bool(self.tls_cert)


class ApiSettings(_Section):
    host: str = "127.0.0.1"
    port: Port = 8080
    tokens: list[Annotated[str, Field(min_length=16)]] = []


class StorageSettings(_Section):
    url: str = "sqlite:///./csms.db"

    @model_validator(mode="after")
    def _known_scheme(self) -> StorageSettings:
        if not self.url.startswith("sqlite:///"):
            raise ValueError(
                "url: only sqlite:///path URLs are supported, e.g. sqlite:///./csms.db"
            )
        return self

    @property
    def sqlite_path(self) -> str:
        """``sqlite:///rel`` -> ``rel``; ``sqlite:////abs`` -> ``/abs`` (as in SQLAlchemy)."""
        return self.url.removeprefix("sqlite:///")


class WebhookSettings(_Section):
    allow_private_targets: bool = False
    timeout: Annotated[float, Field(gt=0, le=300)] = 5
    retry_schedule: list[Duration] = Field(
        default_factory=lambda: [parse_duration(d) for d in _DEFAULT_RETRY_SCHEDULE]
    )
    disable_after: Duration = 86400.0
    retention: Duration = 7 * 86400.0
    max_in_flight: Annotated[int, Field(ge=1, le=100_000)] = 256
    # Key that seals endpoint secrets at rest (created 0600 at first use); empty: beside the
    # database as "<db path>.webhook-key". Keep it out of database backups.
    secret_key_file: str = ""


_DEFAULT_RETRY_SCHEDULE = ["5s", "30s", "2m", "10m", "30m", "1h", "2h", "4h", "8h"]


class Settings(BaseSettings):
    """All settings; see ``config.example.toml`` for each one with its default."""

    model_config = SettingsConfigDict(
        env_prefix="CSMS_",
        env_nested_delimiter="__",
        extra="forbid",
        frozen=True,
    )

    ocpp: OcppSettings = OcppSettings()
    api: ApiSettings = ApiSettings()
    storage: StorageSettings = StorageSettings()
    webhooks: WebhookSettings = WebhookSettings()

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # The environment overrides the file (passed as init values), key by key.
        return (env_settings, init_settings)


def load_settings(path: str | Path | None = None) -> Settings:
    """Read the TOML file (if any) and the environment; raise ``ConfigError`` naming the key."""
    data: dict[str, Any] = {}
    if path is not None:
        try:
            with open(path, "rb") as fh:
                data = tomllib.load(fh)
        except FileNotFoundError:
            raise ConfigError(f"config file not found: {path}") from None
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"config file {path} is not valid TOML: {exc}") from None
    try:
        return Settings(**data)
    except ValidationError as exc:
        raise ConfigError(_describe(exc)) from None


def _describe(exc: ValidationError) -> str:
    lines = []
    for error in exc.errors(include_url=False):
        key = ".".join(str(part) for part in error["loc"])
        message = error["msg"].removeprefix("Value error, ")
        if error["type"] == "extra_forbidden":
            message = "unknown setting"
        lines.append(f"{key}: {message}" if key else message)
    return "invalid configuration: " + "; ".join(lines)
