"""Settings shared by the drivers of devices reached over the network (PiKVM, TinyPilot,
Openctrol): where the device is, who to log in as, and where the secrets come from.

Secrets are never written in the agent's config file itself: the config names an environment
variable or a file (``password_env``, ``password_file``, ``totp_file``), so the file can be
shared and its secrets kept with tight permissions. ``remotehands agent --driver pikvm
--device-url URL --device-user USER`` fills the same settings, with the password from
``REMOTEHANDS_DEVICE_PASSWORD`` and the TOTP secret from ``--device-totp-file``.
"""

from __future__ import annotations

import os
from pathlib import Path
from urllib.parse import urlsplit

from pydantic import Field, field_validator

from remotehands.drivers.base import DriverSettings
from remotehands.errors import ConfigError

__all__ = ["DEVICE_PASSWORD_ENV", "RemoteSettings"]

DEVICE_PASSWORD_ENV = "REMOTEHANDS_DEVICE_PASSWORD"  # noqa: S105 -- a variable name
"""The environment variable ``remotehands agent --driver ...`` reads the device's password or
key from."""


class RemoteSettings(DriverSettings):
    """Settings of a driver that talks to a device over HTTP(S)."""

    url: str
    """The device's base URL, ``https://pikvm.local`` (a path, if any, is kept as a prefix)."""
    user: str | None = Field(None, min_length=1, max_length=256)
    """The user to log in as, for devices with users."""
    password_env: str | None = Field(None, min_length=1)
    """The environment variable holding the password (or API key)."""
    password_file: Path | None = None
    """A file holding the password (or API key); surrounding whitespace is dropped."""
    totp_file: Path | None = None
    """A file holding the base32 TOTP secret of a device with two-factor sign-in."""
    verify_tls: bool = True
    """Check the device's HTTPS certificate. KVMs ship self-signed certificates: set false for
    those, or give ``ca_file``."""
    ca_file: Path | None = None
    """A CA bundle or the device's own certificate to check it against."""
    timeout_s: float = Field(10.0, gt=0, le=600)
    """How long one request to the device may take."""

    @field_validator("url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise ValueError("give the device's address as http://HOST[:PORT] or https://HOST")
        return value.rstrip("/")

    def password(self) -> str | None:
        """The password from ``password_env`` or ``password_file``; ``None`` when neither is
        set. :class:`ConfigError` names the variable or file that is missing or empty."""
        if self.password_env is not None:
            value = os.environ.get(self.password_env)
            if not value:
                raise ConfigError(
                    f"the device {self.url} takes its password from ${self.password_env}, "
                    "which is not set: export it before starting the agent"
                )
            return value
        if self.password_file is not None:
            return _read_secret(self.password_file, f"the password of {self.url}")
        return None

    def totp_secret(self) -> str | None:
        """The TOTP secret from ``totp_file``, or ``None`` without one."""
        if self.totp_file is None:
            return None
        return _read_secret(self.totp_file, f"the TOTP secret of {self.url}").replace(" ", "")


def _read_secret(path: Path, what: str) -> str:
    try:
        value = path.read_text(encoding="utf-8").strip()
    except OSError as err:
        raise ConfigError(f"cannot read {what} from {path}: {err.strerror or err}") from err
    if not value:
        raise ConfigError(f"{path} is empty: write {what} into it")
    return value
