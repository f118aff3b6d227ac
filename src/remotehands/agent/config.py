"""The agent's config file: the devices one agent process runs (``remotehands agent --config``).

::

    server = "https://fleet.example.com"     # the fleet server; leave it out for local faces only
    state_dir = "/var/lib/remotehands-agent" # credentials, one file per device (optional)
    password_file = "/etc/remotehands/faces.pw"  # the faces' password, for every device (optional)

    [[devices]]                            # a KVM in the rack (a gateway lists many)
    name = "kvm-7"
    driver = "tinypilot"                   # or "pikvm"
    tags = ["rack-1"]
    enrollment_token = "ekvent_..."
    [devices.settings]
    url = "https://kvm-7.rack.example"
    password_env = "KVM7_KEY"              # the device's password or key: an environment variable
    # password_file = "kvm-7.key"          # ... or a file; totp_file for two-factor sign-in

    [[devices]]
    name = "lab-desktop"
    driver = "x11"
    tags = ["lab"]
    enrollment_token = "ekvent_..."        # used once, on the first start
    listen = "127.0.0.1:8082"              # this device's own HTTP address (optional)
    faces = ["native"]                     # the faces served there (default: native)
    [devices.settings]                     # the driver's own settings
    display = ":1"

The faces of a device check one password. It is never written in this file: it comes from
``password_file`` (the device's own, else the top-level one; a file readable by the agent's user
only, holding the password on one line), from ``pam = true`` (the Unix password of the user
running the agent), or else from the ``REMOTEHANDS_AGENT_PASSWORD`` environment variable. Paths
are relative to the directory of the file, the files a driver's settings name (``*_file``) too.
Every problem is a :class:`ConfigError` naming the file, the device and the field. A device whose
driver does not start is retried while the others run (see :mod:`remotehands.agent.runtime`).
"""

from __future__ import annotations

import os
import tomllib
from pathlib import Path
from typing import Any

import pydantic
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from remotehands.errors import ConfigError
from remotehands.serving import parse_listen

__all__ = ["AgentConfig", "DeviceConfig", "default_state_dir", "load_config"]


def default_state_dir() -> Path:
    """``$XDG_STATE_HOME/remotehands``, else ``~/.local/state/remotehands``."""
    base = os.environ.get("XDG_STATE_HOME") or Path.home() / ".local" / "state"
    return Path(base) / "remotehands"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _no_plaintext_password(data: Any) -> Any:
    if isinstance(data, dict) and "password" in data:
        raise ValueError(
            "a password is never written in the config file: put it in a file only the "
            "agent's user can read and name that file with password_file (or set pam = true)"
        )
    return data


class DeviceConfig(_Strict):
    """One ``[[devices]]`` table: a device, its driver and settings, its link and faces."""

    name: str = Field(min_length=1, max_length=128, pattern=r"^[^\s/]+$")
    """The device's name: unique in the file, suggested to the server when enrolling."""
    driver: str = Field(min_length=1)
    """A driver name (``x11``, ``fake``) or ``package.module:Class``."""
    tags: list[str] = Field(default_factory=list)
    """The device's tags, added at enrollment to the enrollment token's own tags."""
    enrollment_token: str | None = Field(None, min_length=1)
    """Used once, on the first start; the credential it earns is kept in ``state_dir``."""
    listen: str | None = None
    """``HOST:PORT`` of this device's own HTTP listener; none: no faces."""
    faces: list[str] = Field(default_factory=lambda: ["native"], min_length=1)
    """The faces served on ``listen``, in the order their routes are tried."""
    password_file: Path | None = None
    """The file holding the faces' password (else the top-level ``password_file``)."""
    pam: bool = False
    """Check the faces' password against the Unix user running the agent (PAM)."""
    settings: dict[str, Any] = Field(default_factory=dict)
    """The driver's own settings (``[devices.settings]``), checked by the driver's model."""
    face_settings: dict[str, dict[str, Any]] = Field(default_factory=dict)
    """Each face's own settings (``[devices.face_settings.pikvm]``), checked by the face."""

    _check_password = model_validator(mode="before")(_no_plaintext_password)

    @model_validator(mode="after")
    def _settings_of_served_faces(self) -> DeviceConfig:
        stray = sorted(set(self.face_settings) - set(self.faces))
        if stray:
            raise ValueError(
                f"face_settings for {', '.join(stray)}, which this device does not serve: "
                f"add it to faces ({', '.join(self.faces)}) or drop its settings"
            )
        return self

    @field_validator("listen")
    @classmethod
    def _check_listen(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                parse_listen(value)
            except ConfigError as err:
                raise ValueError(err.details) from err
        return value


class AgentConfig(_Strict):
    """The whole file: the fleet server, where state is kept, and the devices."""

    server: str | None = None
    """The fleet server's URL; none: the devices serve their faces only."""
    state_dir: Path = Field(default_factory=default_state_dir)
    """Where each device's credential is kept."""
    password_file: Path | None = None
    """The faces' password file of every device that names none of its own."""
    pam: bool = False
    """PAM for every device that names no password of its own."""
    trusted_proxies: list[str] = Field(default_factory=list)
    """Reverse proxies whose ``X-Forwarded-For`` the devices' faces believe; none: ignored."""
    server_fingerprint: str | None = None
    """The server's certificate fingerprint (``sha256:HEX``): the devices link to no other."""
    tls: bool = False
    """Serve the devices' faces over HTTPS with a self-signed certificate in ``state_dir``."""
    tls_cert: Path | None = None
    tls_key: Path | None = None
    """The operator's certificate and key for the faces' HTTPS."""
    devices: list[DeviceConfig] = Field(min_length=1)

    _check_password = model_validator(mode="before")(_no_plaintext_password)

    @field_validator("server")
    @classmethod
    def _check_server(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith(("http://", "https://")):
            raise ValueError(f"server {value!r} must be the fleet's URL, http:// or https://")
        return value.rstrip("/") if value else value

    @model_validator(mode="after")
    def _check_devices(self) -> AgentConfig:
        def same(what: str, key: Any, first: DeviceConfig, second: DeviceConfig) -> ValueError:
            return ValueError(f"devices {first.name!r} and {second.name!r} have the same "
                              f"{what}{key}: give each device its own")  # fmt: skip

        names: dict[str, DeviceConfig] = {}
        listens: dict[tuple[str, int], DeviceConfig] = {}
        targets: dict[str, DeviceConfig] = {}
        for device in self.devices:
            if device.name in names:
                raise same("name", "", names[device.name], device)
            names[device.name] = device
            if device.listen is not None:
                address = parse_listen(device.listen)
                if address in listens and address[1] != 0:
                    raise same("listen address ", device.listen, listens[address], device)
                listens[address] = device
            # the same driver and settings reach the same device: it would enroll twice
            target = f"{device.driver}|{sorted(device.settings.items())!r}"
            if target in targets:
                raise same("driver and settings", "", targets[target], device)
            targets[target] = device
        return self


def _describe(err: pydantic.ValidationError, data: dict[str, Any]) -> str:
    """Each problem as ``device 'x': field: message``."""
    problems = []
    devices = data.get("devices") if isinstance(data.get("devices"), list) else []
    for e in err.errors():
        loc = list(e["loc"])
        where = ""
        if len(loc) >= 2 and loc[0] == "devices" and isinstance(loc[1], int):
            index = loc[1]
            entry = devices[index] if devices and index < len(devices) else {}
            name = entry.get("name") if isinstance(entry, dict) else None
            where = f"device {name!r}: " if name else f"device #{index + 1}: "
            loc = loc[2:]
        field = ".".join(str(p) for p in loc)
        if e["type"] == "extra_forbidden":
            problems.append(f"{where}unknown field {field!r}")
        elif e["type"] == "missing":
            problems.append(f"{where}{field} is missing")
        else:
            message = str(e["msg"]).removeprefix("Value error, ")
            problems.append(f"{where}{field + ': ' if field else ''}{message}")
    return "; ".join(problems)


def load_config(path: Path) -> AgentConfig:
    """Read and check the config file; relative paths in it are taken from its directory."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as err:
        raise ConfigError(f"cannot read the agent config {path}: {err.strerror}") from err
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as err:
        raise ConfigError(f"{path} is not valid TOML: {err}") from err
    try:
        config = AgentConfig.model_validate(data)
    except pydantic.ValidationError as err:
        raise ConfigError(f"{path}: {_describe(err, data)}") from err
    base = path.parent

    def anchored(value: Path | None) -> Path | None:
        return None if value is None else base / value.expanduser()

    def anchored_settings(settings: dict[str, Any]) -> dict[str, Any]:
        # a driver's files (password_file, totp_file, ca_file...) are relative to this file too
        return {key: str(base / Path(value).expanduser())
                if key.endswith("_file") and isinstance(value, str) and value else value
                for key, value in settings.items()}  # fmt: skip

    devices = [
        device.model_copy(
            update={
                "password_file": anchored(device.password_file),
                "settings": anchored_settings(device.settings),
            }
        )
        for device in config.devices
    ]
    return config.model_copy(update={
        "state_dir": anchored(config.state_dir), "password_file": anchored(config.password_file),
        "devices": devices,
    })  # fmt: skip
