"""The fleet server's settings: defaults, an optional TOML file, ``REMOTEHANDS_*`` variables.

Precedence, highest first: values passed in code (the CLI's options), environment variables
(``REMOTEHANDS_DATA_DIR``, ``REMOTEHANDS_DATABASE_URL``, ...), the TOML file, the defaults. The
TOML file holds the same names as the fields, at the top level or under a ``[server]`` table::

    data_dir = "/var/lib/remotehands"
    listen = "0.0.0.0:8080"
    public_url = "https://fleet.example.com"

Nothing here runs at import time: settings are read when :meth:`ServerSettings.load` is called.
"""

from __future__ import annotations

import os
import re
import tomllib
from pathlib import Path
from typing import Any, Self

import pydantic
from pydantic import Field, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from remotehands.errors import ConfigError
from remotehands.serving import (  # parse_listen: the one parser; re-exported for old importers
    check_trusted_proxies,
    parse_listen,
)
from remotehands.tls import TlsFiles, load, self_signed

__all__ = ["ServerSettings", "normalise_database_url", "parse_listen"]

_REPLICA_ID = re.compile(r"^[A-Za-z0-9_-]{1,64}$")


def normalise_database_url(url: str) -> str:
    """The SQLAlchemy async URL for ``url``: ``postgresql://`` becomes ``postgresql+asyncpg://``
    and ``sqlite://`` becomes ``sqlite+aiosqlite://``; other drivers are refused."""
    scheme, sep, rest = url.partition("://")
    if not sep:
        raise ConfigError(f"database URL {url!r} has no scheme (postgresql:// or sqlite:///)")
    base, _, driver = scheme.partition("+")
    if base in ("postgresql", "postgres"):
        if driver not in ("", "asyncpg"):
            raise ConfigError(f"database driver {driver!r} is not supported; use asyncpg")
        return f"postgresql+asyncpg://{rest}"
    if base == "sqlite":
        if driver not in ("", "aiosqlite"):
            raise ConfigError(f"database driver {driver!r} is not supported; use aiosqlite")
        return f"sqlite+aiosqlite://{rest}"
    raise ConfigError(f"database {base!r} is not supported: use postgresql:// or sqlite:///")


class ServerSettings(BaseSettings):
    """Everything the fleet server can be told; see the module docstring for the sources.

    After validation ``database_url`` and ``public_url`` are always filled in (their defaults
    derive from ``data_dir`` and ``listen``); :attr:`db_url` and :attr:`base_url` give them typed
    as ``str``.
    """

    model_config = SettingsConfigDict(
        env_prefix="REMOTEHANDS_",
        # Other REMOTEHANDS_* variables (URL, TOKEN, OWNER_PASSWORD, ...) belong to other parts.
        extra="ignore",
        validate_assignment=False,
    )

    data_dir: Path = Path("./data")
    """Where the SQLite database (the default) and other state live."""
    database_url: str | None = None
    """``postgresql://user:pass@host/db`` or ``sqlite:///path``; None: SQLite in ``data_dir``."""
    listen: str = "127.0.0.1:8080"
    """``HOST:PORT`` to serve on."""
    public_url: str | None = None
    """The URL agents and people reach the server at (install commands, ``ws_url``);
    None: ``http://{listen}``."""
    heartbeat_interval_s: float = Field(10.0, gt=0)
    """How often agents send a heartbeat."""
    offline_after_missed: int = Field(3, ge=1)
    """Missed heartbeats after which a device is marked offline."""
    session_ttl_s: int = Field(8 * 3600, gt=0)
    """Lifetime of a login session."""
    enrollment_ttl_s: int = Field(1800, gt=0)
    """Lifetime of an enrollment token."""
    request_timeout_s: float = Field(30.0, gt=0)
    """Default timeout of a request to a device."""
    bulk_concurrency: int = Field(64, ge=1)
    """Devices a bulk action works on at the same time."""
    max_body_bytes: int = Field(64 * 1024 * 1024, ge=1024)
    """The largest request body taken; bigger ones get 413 before they are read."""
    login_rate_limit: int = Field(10, ge=1)
    """Failed logins allowed per minute for one client address and username."""
    login_address_rate_limit: int = Field(30, ge=1)
    """Failed logins allowed per minute from one client address, whatever the usernames."""
    login_username_rate_limit: int = Field(30, ge=1)
    """Failed logins allowed per minute for one username, whatever the addresses."""
    totp_required_roles: list[str] = Field(default_factory=list)
    """Roles whose users must log in with a TOTP code (``["owner", "admin"]``); until they
    enable it, their sessions reach only ``/v1/auth/`` (to enable it)."""
    tls: bool = False
    """Serve HTTPS with a self-signed certificate kept in ``data_dir/tls`` (made on first
    start, reused after), unless ``tls_cert`` and ``tls_key`` name the operator's."""
    tls_cert: Path | None = None
    """The operator's certificate (PEM) for HTTPS; goes with ``tls_key``."""
    tls_key: Path | None = None
    """The key (PEM, unencrypted) of ``tls_cert``."""
    allowed_origins: list[str] = Field(default_factory=list)
    """Web origins (``https://console.example.com``) besides the server's own that may call
    the API from a browser (CORS) and open its WebSockets; empty: the server's own only."""
    trusted_proxies: list[str] = Field(default_factory=list)
    """Addresses or CIDR networks of reverse proxies whose ``X-Forwarded-For`` and
    ``X-Forwarded-Proto`` are believed; empty: those headers are ignored."""
    register_rate_limit: int = Field(10, ge=1)
    """Failed agent registrations allowed per minute for one client address."""
    nats_url: str | None = None
    """``nats://host:4222`` (comma-separated for a NATS cluster): run as one replica of a fleet
    that shares a PostgreSQL database; device requests, events, revocations and rate limits
    cross replicas through NATS. None: one server alone (in-process routing)."""
    replica_id: str | None = None
    """This replica's name in NATS subjects and as the ``replica`` label of metrics (letters,
    digits, ``-`` and ``_``); None: ``HOST-PID`` made at start."""
    admission_limit: int = Field(256, ge=1)
    """Agent registrations and link handshakes worked on at once (each reads and writes the
    database); more wait their turn."""
    admission_queue: int = Field(1024, ge=0)
    """Agent registrations and link handshakes that may wait for their turn; past that an
    agent is answered ``503`` with ``Retry-After`` and comes back then."""

    @field_validator("listen")
    @classmethod
    def _check_listen(cls, value: str) -> str:
        try:
            parse_listen(value)
        except ConfigError as err:
            raise ValueError(err.details) from err
        return value

    @field_validator("trusted_proxies")
    @classmethod
    def _check_trusted_proxies(cls, value: list[str]) -> list[str]:
        try:
            return check_trusted_proxies(value)
        except ConfigError as err:
            raise ValueError(err.details) from err

    @field_validator("allowed_origins")
    @classmethod
    def _check_origins(cls, value: list[str]) -> list[str]:
        for origin in value:
            if not origin.startswith(("http://", "https://")) or origin.count("/") != 2:
                raise ValueError(
                    f"allowed origin {origin!r} is not an origin such as https://host:port"
                )
        return [origin.rstrip("/") for origin in value]

    @field_validator("public_url")
    @classmethod
    def _check_public_url(cls, value: str | None) -> str | None:
        if value is None:
            return None
        if not value.startswith(("http://", "https://")):
            raise ValueError(f"public_url {value!r} must start with http:// or https://")
        return value.rstrip("/")

    @field_validator("nats_url")
    @classmethod
    def _check_nats_url(cls, value: str | None) -> str | None:
        if value is None or not value.strip():
            return None
        for server in value.split(","):
            if not server.strip().startswith(("nats://", "tls://", "ws://", "wss://")):
                raise ValueError(f"NATS URL {server.strip()!r} must start with nats:// or tls://")
        return value.strip()

    @field_validator("replica_id")
    @classmethod
    def _check_replica_id(cls, value: str | None) -> str | None:
        if value is None or not value.strip():
            return None
        if not _REPLICA_ID.match(value):
            raise ValueError(
                f"replica id {value!r}: 1-64 letters, digits, - and _ (it is part of NATS subjects)"
            )
        return value

    @field_validator("database_url")
    @classmethod
    def _check_database_url(cls, value: str | None) -> str | None:
        if value is None or not value.strip():
            return None
        try:
            return normalise_database_url(value.strip())
        except ConfigError as err:
            raise ValueError(err.details) from err

    @model_validator(mode="after")
    def _fill_defaults(self) -> Self:
        if (self.tls_cert is None) != (self.tls_key is None):
            raise ValueError("tls_cert and tls_key go together: give both, or neither")
        if self.database_url is None:
            self.database_url = f"sqlite+aiosqlite:///{self.data_dir / 'remotehands.db'}"
        if self.public_url is None:
            scheme = "https" if self.uses_tls else "http"
            self.public_url = f"{scheme}://{self.listen}"
        return self

    @property
    def uses_tls(self) -> bool:
        """Whether the server serves HTTPS."""
        return self.tls or self.tls_cert is not None

    def tls_files(self) -> TlsFiles | None:
        """The certificate and key to serve HTTPS with (the self-signed one made now if
        needed), or None without TLS. Raises :class:`ConfigError` for unusable files."""
        if self.tls_cert is not None and self.tls_key is not None:
            return load(self.tls_cert, self.tls_key)
        if not self.tls:
            return None
        host = parse_listen(self.listen)[0]
        public = (self.public_url or "").split("://", 1)[-1].split("/", 1)[0]
        public_host = public.rsplit(":", 1)[0].strip("[]") if public else ""
        return self_signed(self.data_dir / "tls", [host, public_host])

    @property
    def db_url(self) -> str:
        """The SQLAlchemy async database URL."""
        assert self.database_url is not None  # filled in by _fill_defaults
        return self.database_url

    @property
    def base_url(self) -> str:
        """The public URL without a trailing slash."""
        assert self.public_url is not None  # filled in by _fill_defaults
        return self.public_url

    @property
    def ws_base_url(self) -> str:
        """The public URL with ``ws://`` or ``wss://``, for agents' WebSocket links."""
        base = self.base_url
        if base.startswith("https://"):
            return "wss://" + base.removeprefix("https://")
        return "ws://" + base.removeprefix("http://")

    @property
    def offline_after_s(self) -> float:
        """Silence after which a device counts as offline."""
        return self.heartbeat_interval_s * self.offline_after_missed

    @classmethod
    def load(cls, config_file: Path | None = None, **overrides: Any) -> Self:
        """Settings from ``overrides`` (None values ignored), the environment, ``config_file``.

        Raises :class:`ConfigError` naming the setting when a value is bad or the file is
        unreadable.
        """
        file_values = _read_toml(config_file) if config_file is not None else {}
        unknown = sorted(set(file_values) - set(cls.model_fields))
        if unknown:
            raise ConfigError(f"{config_file}: unknown settings {', '.join(unknown)}")
        given = {k: v for k, v in overrides.items() if v is not None}
        try:
            from_env = cls()
            # Only what the environment really set: derived defaults must follow the winner.
            env_values = {name: getattr(from_env, name) for name in _env_names(cls)}
            return cls(**{**file_values, **env_values, **given})
        except pydantic.ValidationError as err:
            raise ConfigError(f"bad server settings: {_describe(err)}") from err


def _env_names(cls: type[ServerSettings]) -> set[str]:
    """Fields set explicitly through the environment (not derived by a validator)."""
    prefix = "REMOTEHANDS_"
    present = {k.upper() for k in os.environ if k.upper().startswith(prefix)}
    return {name for name in cls.model_fields if (prefix + name.upper()) in present}


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as err:
        raise ConfigError(f"cannot read settings file {path}: {err.strerror}") from err
    except tomllib.TOMLDecodeError as err:
        raise ConfigError(f"settings file {path} is not valid TOML: {err}") from err
    section = data.get("server")
    if isinstance(section, dict):
        return dict(section)
    return data


def _describe(err: pydantic.ValidationError) -> str:
    return "; ".join(
        f"{'.'.join(str(p) for p in e['loc']) or 'settings'}: {e['msg']}" for e in err.errors()
    )
