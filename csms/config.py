"""Settings: a TOML file, overridden key by key by ``CSMS_``-prefixed environment variables.

``CSMS_API__PORT=8081`` overrides ``[api] port``. Unknown keys and bad values stop the start
with a message that names the key (``ConfigError``), so a typo never silently falls back to a
default.
"""

from __future__ import annotations

import json
import os
import re
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal, get_origin

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

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
    tls_ca: str = ""  # CA of charger client certificates (security profile 3)
    tls_ca_key: str = ""  # its private key: SignCertificate requests are signed with it

    @model_validator(mode="after")
    def _tls_pair(self) -> OcppSettings:
        if bool(self.tls_cert) != bool(self.tls_key):
            missing = "tls_key" if self.tls_cert else "tls_cert"
            raise ValueError(f"tls_cert and tls_key go together: {missing} is empty")
        if self.tls_ca and not self.tls_cert:
            raise ValueError("tls_ca needs tls_cert and tls_key (profile 3 is TLS)")
        if self.tls_ca_key and not self.tls_ca:
            raise ValueError("tls_ca_key needs tls_ca (the certificate of that key)")
        for key in ("tls_cert", "tls_key", "tls_ca", "tls_ca_key"):
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

    @field_validator("url")
    @classmethod
    def _known_scheme(cls, url: str) -> str:
        if not url.startswith(("sqlite:///", "postgresql://", "postgres://")):
            raise ValueError(
                "expected sqlite:///path (e.g. sqlite:///./csms.db) or"
                " postgresql://user:password@host:5432/dbname"
            )
        return url

    @property
    def is_postgres(self) -> bool:
        return self.url.startswith(("postgresql://", "postgres://"))


class ClusterSettings(_Section):
    """Used with PostgreSQL only: every node on one database is a node of one cluster."""

    # Unique per node; empty: "<hostname>:<ocpp port>".
    node_id: Annotated[str, Field(max_length=200)] = ""
    # A node silent this long is lost: others take over its chargers and delivery streams.
    lease_ttl: Annotated[Duration, Field(ge=1, le=600)] = 10.0


class LogSettings(_Section):
    level: Literal["debug", "info", "warning", "error"] = "info"
    format: Literal["text", "json"] = "text"  # json: one object per line, for log shippers


class WebhookSettings(_Section):
    allow_private_targets: bool = False
    timeout: Annotated[float, Field(gt=0, le=300)] = 5
    retry_schedule: list[Duration] = Field(
        default_factory=lambda: [parse_duration(d) for d in _DEFAULT_RETRY_SCHEDULE]
    )
    disable_after: Duration = 86400.0
    retention: Duration = 7 * 86400.0
    max_in_flight: Annotated[int, Field(ge=1, le=100_000)] = 256
    # Pending deliveries kept in memory at most (each stream keeps a few more); the rest wait
    # in the database and are read back in windows: a long outage costs disk, not memory.
    pending_in_memory: Annotated[int, Field(ge=1000, le=10_000_000)] = 100_000
    # Key that seals endpoint secrets at rest (created 0600 at first use); empty: beside the
    # database as "<db path>.webhook-key". Keep it out of database backups.
    secret_key_file: str = ""


class MetricsSettings(_Section):
    # GET /metrics without the bearer token (for a Prometheus on a trusted network)
    public: bool = False


_DEFAULT_RETRY_SCHEDULE = ["5s", "30s", "2m", "10m", "30m", "1h", "2h", "4h", "8h"]


class Settings(BaseModel):
    """All settings; see ``config.example.toml`` for each one with its default."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    ocpp: OcppSettings = OcppSettings()
    api: ApiSettings = ApiSettings()
    storage: StorageSettings = StorageSettings()
    cluster: ClusterSettings = ClusterSettings()
    log: LogSettings = LogSettings()
    webhooks: WebhookSettings = WebhookSettings()
    metrics: MetricsSettings = MetricsSettings()

    @model_validator(mode="after")
    def _key_file_for_a_server_database(self) -> Settings:
        if self.storage.is_postgres and not self.webhooks.secret_key_file:
            raise ValueError(
                "webhooks.secret_key_file is required with a PostgreSQL storage.url: the key"
                " that seals webhook secrets lives outside the database, the same file on"
                " every node (it is created, mode 0600, when missing)"
            )
        return self

    @model_validator(mode="after")
    def _distinct_ports(self) -> Settings:
        if (
            self.api.port
            and self.api.port == self.ocpp.port
            and _same_host(self.api.host, self.ocpp.host)
        ):
            raise ValueError(
                f"api.port and ocpp.port are both {self.api.port} on the same host;"
                " give the admin API and the OCPP endpoint different ports"
            )
        return self


def _same_host(a: str, b: str) -> bool:
    """Two listeners clash when their hosts are equal or either is a wildcard."""
    wildcards = {"", "0.0.0.0", "::"}
    return a == b or a in wildcards or b in wildcards


ENV_PREFIX = "CSMS_"


def load_settings(
    path: str | Path | None = None, environ: Mapping[str, str] | None = None
) -> Settings:
    """Read the TOML file (if any) and the environment; raise ``ConfigError`` naming the key.

    A value that came from the environment is reported by its variable's name, since that
    is what the user typed.
    """
    data: dict[str, Any] = {}
    if path is not None:
        try:
            with open(path, "rb") as fh:
                data = tomllib.load(fh)
        except FileNotFoundError:
            raise ConfigError(f"config file not found: {path}") from None
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"config file {path} is not valid TOML: {exc}") from None
    overrides = env_overrides(os.environ if environ is None else environ)
    for (section, key), (_, value) in overrides.items():
        if not isinstance(data.setdefault(section, {}), dict):
            data[section] = {}
        data[section][key] = value
    try:
        return Settings(**data)
    except ValidationError as exc:
        variables = {loc: name for loc, (name, _) in overrides.items()}
        raise ConfigError(_describe(exc, variables)) from None


def env_overrides(environ: Mapping[str, str]) -> dict[tuple[str, str], tuple[str, Any]]:
    """``CSMS_<SECTION>__<KEY>`` variables as ``{(section, key): (variable, value)}``.

    A list setting takes a JSON array or a comma-separated list (``5s,30s,2m``). An unknown
    section or key is an error naming the variable, so a typo never falls back to a default.
    """
    found: dict[tuple[str, str], tuple[str, Any]] = {}
    for name in sorted(environ):
        if not name.upper().startswith(ENV_PREFIX):
            continue
        section, separator, key = name[len(ENV_PREFIX) :].lower().partition("__")
        model = _section_model(section)
        if not separator or model is None:
            raise ConfigError(
                f"{name}: not a setting; variables are {ENV_PREFIX}<SECTION>__<KEY> with a"
                f" section of {', '.join(Settings.model_fields)}, e.g. {ENV_PREFIX}API__PORT"
            )
        setting = model.model_fields.get(key)
        if setting is None:
            raise ConfigError(
                f"{name}: [{section}] has no setting {key!r}; it has "
                + ", ".join(model.model_fields)
            )
        found[(section, key)] = (name, _env_value(name, environ[name], setting.annotation))
    return found


def _section_model(section: str) -> type[BaseModel] | None:
    field = Settings.model_fields.get(section)
    annotation = field.annotation if field is not None else None
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    return None


def _env_value(name: str, raw: str, annotation: Any) -> Any:
    if get_origin(annotation) is not list:
        return raw  # pydantic converts "8081" and "true" as it does TOML values
    text = raw.strip()
    if text.startswith("["):
        try:
            value = json.loads(text)
        except json.JSONDecodeError:
            value = None
        if not isinstance(value, list):
            raise ConfigError(
                f"{name}: expected a JSON array or a comma-separated list, got {raw!r}"
            )
        return value
    return [item.strip() for item in text.split(",") if item.strip()]


def _describe(exc: ValidationError, variables: Mapping[tuple[str, str], str]) -> str:
    lines = []
    for error in exc.errors(include_url=False):
        loc = [str(part) for part in error["loc"]]
        key = ".".join(loc)
        variable = variables.get((loc[0], loc[1])) if len(loc) >= 2 else None
        if variable is not None:
            key = f"{variable} ({key})"
        message = error["msg"].removeprefix("Value error, ")
        if error["type"] == "extra_forbidden":
            message = "unknown setting"
        lines.append(f"{key}: {message}" if key else message)
    return "invalid configuration: " + "; ".join(lines)
