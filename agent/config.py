"""Configuration: one pydantic-settings root read from a TOML file and `INVENTREE_EDGE_*` variables."""

from __future__ import annotations

import contextvars
import difflib
import os
import socket
from ipaddress import IPv4Network, IPv6Network, ip_network
from pathlib import Path
from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from agent.documents import DEFAULT_RENDER_LIMITS, RenderLimits

CONFIG_ENV = "INVENTREE_EDGE_CONFIG"
ENV_PREFIX = "INVENTREE_EDGE_"

_config_file: contextvars.ContextVar[Path | None] = contextvars.ContextVar(
    "inventree_edge_config_file", default=None
)


_MIB = 1024 * 1024
_DEFAULT_RENDER_MIB = (DEFAULT_RENDER_LIMITS.max_memory_bytes or 0) // _MIB


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid")


class HttpConfig(_Section):
    """Where the API listens."""

    host: str = "127.0.0.1"
    port: int = Field(default=8000, ge=0, le=65535)
    # Largest request body accepted; larger ones get 413. Label PDFs are small.
    max_body_bytes: int = Field(default=16 * 1024 * 1024, ge=1024)
    # A connection is closed when it has not sent a complete request header this long after
    # opening or after its previous answer (slow or idle clients hold no descriptor for ever).
    idle_timeout_s: float = Field(default=15.0, gt=0, le=3600)
    # Connections open at once; more get 503. Lowered at start to fit the descriptor limit.
    max_connections: int = Field(default=256, ge=1, le=65536)


class StorageConfig(_Section):
    """Where state lives: the SQLite database and printed output of the virtual driver."""

    path: Path = Path("./data")


class LogConfig(_Section):
    """Log level and rendering (`auto`: console on a terminal, JSON otherwise)."""

    level: Literal["debug", "info", "warning", "error", "critical"] = "info"
    format: Literal["auto", "console", "json"] = "auto"

    @field_validator("level", "format", mode="before")
    @classmethod
    def _any_case(cls, value: object) -> object:
        """`DEBUG` as well as `debug`: log levels are written both ways."""
        return value.lower() if isinstance(value, str) else value


class AuthConfig(_Section):
    """Bootstrap superuser, created at start when it does not exist yet."""

    admin_user: str = "admin"
    admin_password: SecretStr = SecretStr("")
    admin_email: str = ""


class InstanceConfig(_Section):
    """How this agent names itself to clients (`instance` in `GET /api/`)."""

    name: str = "InvenTree Edge"


class JobsConfig(_Section):
    """The print queue: how long a job may wait and retry, how large it may be, history kept."""

    # A job that could not be printed within this time fails with an error.
    expiry_hours: float = Field(default=24.0, gt=0)
    # Finished jobs (and their documents) are deleted after this many days.
    retention_days: float = Field(default=7.0, ge=0)
    # Waits between attempts on an unreachable printer: doubling from base up to max, with jitter.
    retry_base_seconds: float = Field(default=2.0, gt=0)
    retry_max_seconds: float = Field(default=300.0, gt=0)
    # A job whose printer takes no byte and prints no label for this long is stopped and retried.
    stall_seconds: float = Field(default=60.0, gt=0)
    # A job fails after this many failed attempts in a row without a label printed (the printer
    # saying it is offline or out of paper does not count: then the job waits until it expires).
    max_attempts: int = Field(default=5, ge=1)
    # Most labels (pages x copies) one job may print; a larger job is refused with 400.
    max_labels: int = Field(default=10_000, ge=1)
    # What one document may hold; more is refused with 400 before anything is rendered.
    max_pages: int = Field(default=DEFAULT_RENDER_LIMITS.max_pages, ge=1)
    max_page_pixels: int = Field(default=DEFAULT_RENDER_LIMITS.max_page_pixels, ge=1)
    max_image_pixels: int = Field(default=DEFAULT_RENDER_LIMITS.max_image_pixels, ge=1)
    max_page_image_pixels: int = Field(default=DEFAULT_RENDER_LIMITS.max_page_image_pixels, ge=1)
    # Memory (MiB) and time (per document opened, per page) of the render worker process.
    render_memory_mib: int = Field(default=_DEFAULT_RENDER_MIB, ge=64)
    render_timeout_seconds: float = Field(default=DEFAULT_RENDER_LIMITS.max_seconds, gt=0)

    def render_limits(self) -> RenderLimits:
        """The limits on one document to print."""
        return RenderLimits(
            max_pages=self.max_pages,
            max_page_pixels=self.max_page_pixels,
            max_image_pixels=self.max_image_pixels,
            max_page_image_pixels=self.max_page_image_pixels,
            max_memory_bytes=self.render_memory_mib * _MIB,
            max_seconds=self.render_timeout_seconds,
        )


class CentralConfig(_Section):
    """The link to a central InvenTree server (issue 9); off while `url` is empty."""

    # InvenTree's base URL (https://inventree.example.com); empty: the link is off.
    url: str = ""
    # An InvenTree API token of the agent's user, or a username and password to obtain one.
    token: SecretStr = SecretStr("")
    username: str = ""
    password: SecretStr = SecretStr("")
    # The name this agent reports itself under (default: the host name).
    agent_name: str = Field(default="", max_length=100)
    # Names of the machines to publish; leave out to publish every machine.
    publish: list[str] | None = None
    # Seconds between two `jobs/` requests while none are waiting.
    poll_interval: float = Field(default=2.0, gt=0, le=3600)
    # Seconds a `jobs/` request may wait on the server for a job (0: no long poll).
    long_poll: float = Field(default=0.0, ge=0, le=60)
    # Seconds between two reports of the printers (status changes are reported at once too).
    report_interval: float = Field(default=30.0, gt=0, le=86400)
    verify_tls: bool = True
    # A CA bundle (PEM) to verify the server's certificate with, instead of the system's.
    ca_file: Path | None = None
    # Seconds one request may take (a long poll: its wait on top).
    request_timeout: float = Field(default=15.0, gt=0, le=300)
    # Documents downloaded at once.
    max_downloads: int = Field(default=2, ge=1, le=16)

    @field_validator("url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        """`http(s)://host[/path]`, without a trailing slash."""
        value = value.strip().rstrip("/")
        if value and not value.startswith(("http://", "https://")):
            raise ValueError(
                "must start with http:// or https:// (or be empty to turn the link off)"
            )
        return value

    @field_validator("ca_file")
    @classmethod
    def _readable(cls, value: Path | None) -> Path | None:
        if value is not None and not value.is_file():
            raise ValueError(f"{value} is not a file (a PEM bundle of CA certificates)")
        return value

    @model_validator(mode="after")
    def _credentials(self) -> CentralConfig:
        obtainable = self.username and self.password.get_secret_value()
        if self.url and not self.token.get_secret_value() and not obtainable:
            raise ValueError(
                "central.url needs central.token, or central.username and central.password "
                "to obtain one (INVENTREE_EDGE_CENTRAL__TOKEN=... in the environment)"
            )
        return self

    @property
    def enabled(self) -> bool:
        """True when a central server is configured."""
        return bool(self.url)

    @property
    def name(self) -> str:
        """The agent's name: `agent_name`, else the host name."""
        return self.agent_name or socket.gethostname()


class HealthConfig(_Section):
    """When `GET /api/agent/health/` answers `degraded` instead of `ok` (docs/monitoring.md)."""

    # Less free space than this in the data directory (MiB): the database may soon fail to grow.
    min_free_mib: int = Field(default=100, ge=0)
    # The event loop was late by more than this (seconds) within the last minute.
    max_loop_lag_s: float = Field(default=1.0, gt=0)


class MetricsConfig(_Section):
    """Prometheus metrics at `/metrics`: who may read them (no login; addresses only)."""

    enabled: bool = True
    # Client networks that may read `/metrics`; others get 403. Loopback only by default: put a
    # scraper's address here (e.g. "192.168.1.10/32") to let it in from the network.
    allow: list[str] = Field(default_factory=lambda: ["127.0.0.0/8", "::1/128"])

    @field_validator("allow")
    @classmethod
    def _networks(cls, value: list[str]) -> list[str]:
        """Each entry an address or network; host bits are ignored (`127.0.0.1/8` is fine)."""
        for entry in value:
            try:
                ip_network(entry, strict=False)
            except ValueError:
                raise ValueError(
                    f"{entry!r} is not an IP address or network (e.g. 192.168.1.0/24 or ::1)"
                ) from None
        return value

    @property
    def networks(self) -> tuple[IPv4Network | IPv6Network, ...]:
        """The allowed client networks."""
        return tuple(ip_network(entry, strict=False) for entry in self.allow)


class MachineEntry(_Section):
    """A machine declared in the configuration: created at start if missing, settings applied."""

    name: str = Field(min_length=1, max_length=255)
    machine_type: str = "label-printer"
    driver: str = Field(min_length=1, max_length=255)
    active: bool = True
    machine_settings: dict[str, str | int | float | bool] = Field(default_factory=dict)
    driver_settings: dict[str, str | int | float | bool] = Field(default_factory=dict)


class Settings(BaseSettings):
    """The whole configuration of the agent."""

    model_config = SettingsConfigDict(
        extra="forbid",
        env_prefix=ENV_PREFIX,
        env_nested_delimiter="__",
        case_sensitive=False,
    )

    http: HttpConfig = Field(default_factory=HttpConfig)
    storage: StorageConfig = Field(default_factory=StorageConfig)
    log: LogConfig = Field(default_factory=LogConfig)
    auth: AuthConfig = Field(default_factory=AuthConfig)
    instance: InstanceConfig = Field(default_factory=InstanceConfig)
    jobs: JobsConfig = Field(default_factory=JobsConfig)
    central: CentralConfig = Field(default_factory=CentralConfig)
    health: HealthConfig = Field(default_factory=HealthConfig)
    metrics: MetricsConfig = Field(default_factory=MetricsConfig)
    machines: list[MachineEntry] = Field(default_factory=list)

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        """Environment variables override the TOML file; no dotenv or secrets directory."""
        sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings]
        path = _config_file.get()
        if path is not None:
            sources.append(TomlConfigSettingsSource(settings_cls, toml_file=path))
        return tuple(sources)

    @property
    def database_path(self) -> Path:
        """The SQLite file inside the data directory."""
        return self.storage.path / "inventree-edge.sqlite3"

    @property
    def secret_path(self) -> Path:
        """The agent's secret (API token keys are derived from it), beside the database."""
        return self.storage.path / "secret.key"


class ConfigError(Exception):
    """The configuration cannot be used; the message says what and where."""


def resolve_config_path(cli_path: str | None) -> Path | None:
    """The file named by `--config`, else by `INVENTREE_EDGE_CONFIG`, else none."""
    raw = cli_path or os.environ.get(CONFIG_ENV)
    return Path(raw) if raw else None


def load_settings(path: Path | None) -> Settings:
    """Read and validate the configuration; raise ConfigError with every problem named."""
    if path is not None and not path.is_file():
        raise ConfigError(f"config file {path} does not exist or is not a file")
    _check_environment()
    token = _config_file.set(path)
    try:
        return Settings()
    except ValidationError as err:
        raise ConfigError(_describe(err, path)) from None
    except ValueError as err:  # a TOML syntax error surfaces as tomllib.TOMLDecodeError
        raise ConfigError(f"{path}: {err}") from None
    except OSError as err:
        raise ConfigError(f"cannot read config file {path}: {err.strerror or err}") from None
    finally:
        _config_file.reset(token)


def _check_environment() -> None:
    """Refuse `INVENTREE_EDGE_*` variables that name no section: a typo must not pass silently."""
    sections = set(Settings.model_fields)
    for name in os.environ:
        upper = name.upper()
        if not upper.startswith(ENV_PREFIX) or upper == CONFIG_ENV:
            continue
        rest = upper[len(ENV_PREFIX) :].lower()
        if rest.split("__", 1)[0] in sections:
            continue
        hint = _closest_variable(rest)
        raise ConfigError(
            f"unknown environment variable {name} (sections: {', '.join(sorted(sections))}"
            + (f"; did you mean {ENV_PREFIX}{hint.upper()}?)" if hint else ")")
        )


def _section_keys() -> dict[str, set[str]]:
    keys: dict[str, set[str]] = {}
    for section, field in Settings.model_fields.items():
        model = field.annotation
        if isinstance(model, type) and issubclass(model, BaseModel):
            keys[section] = set(model.model_fields)
    return keys


def _closest_variable(rest: str) -> str | None:
    """`section__key` for a variable name (lower case, prefix removed) that names no section.

    `https__port` (misspelt section), `http_port` (one underscore) and `port` (no section) all
    become `http__port`; None when no known key is close.
    """
    keys = _section_keys()
    section, separator, key = rest.partition("__")
    if separator:
        close = difflib.get_close_matches(section, list(keys), n=1, cutoff=0.6)
        if close and (key in keys[close[0]] or not key):
            return f"{close[0]}__{key}"
        rest = key
    for name, names in keys.items():
        if rest.startswith(name + "_") and rest[len(name) + 1 :] in names:
            return f"{name}__{rest[len(name) + 1 :]}"
    owners = [name for name, names in keys.items() if rest in names]
    if len(owners) == 1:
        return f"{owners[0]}__{rest}"
    return None


def masked_dump(settings: Settings) -> dict[str, Any]:
    """The effective configuration as plain data, secrets shown as `***`."""
    data = settings.model_dump(mode="json")
    if settings.auth.admin_password.get_secret_value():
        data["auth"]["admin_password"] = "***"  # noqa: S105 - the mask, not a password
    else:
        data["auth"]["admin_password"] = ""
    for key in ("token", "password"):
        secret: SecretStr = getattr(settings.central, key)
        data["central"][key] = "***" if secret.get_secret_value() else ""
    return data


def _describe(err: ValidationError, path: Path | None) -> str:
    environ = {name.upper() for name in os.environ}
    lines = []
    for problem in err.errors():
        key = ".".join(str(part) for part in problem["loc"])
        env_name = ENV_PREFIX + "__".join(str(part) for part in problem["loc"]).upper()
        if env_name in environ:
            where = f"environment variable {env_name}"
        else:
            where = str(path) if path is not None else "the defaults"
        if problem["type"] == "extra_forbidden":
            lines.append(f"unknown key '{key}' in {where}")
        else:
            lines.append(f"invalid value for '{key}' in {where}: {problem['msg']}")
    return "; ".join(lines)
