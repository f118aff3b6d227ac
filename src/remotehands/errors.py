"""The one exception tree of remotehands.

Every error carries a stable wire ``code``; where an error leaves the program it is mapped to an
HTTP status, an exit code or a wire code through the tables here, never anywhere else::

    RemoteHandsError                                         code            HTTP  exit
      ConfigError            bad settings, unknown driver    config          400   2
      AuthError              missing or bad credentials      unauthorized    401   3
      ForbiddenError         authenticated but not allowed   forbidden       403   3
      NotFoundError          no such device, token, window   not_found       404   4
      ValidationError        a request that makes no sense   invalid         422   2
      RateLimitedError       too many failed attempts        rate_limited    429   5
      BusyError              the device is locked            busy            409   5
      UnsupportedError       the driver lacks a capability   unsupported     501   6
      DeviceOfflineError     the agent link is down          device_offline  503   7
      DeviceError            the device or driver failed     device_error    502   8
      DeviceTimeoutError     no answer in time               timeout         504   9

Foreign errors are translated where they enter (``raise DeviceError(...) from err``).
"""

from __future__ import annotations

from typing import Any, ClassVar

__all__ = [
    "AuthError",
    "BusyError",
    "ConfigError",
    "DeviceError",
    "DeviceOfflineError",
    "DeviceTimeoutError",
    "ForbiddenError",
    "NotFoundError",
    "RateLimitedError",
    "RemoteHandsError",
    "UnsupportedError",
    "ValidationError",
    "error_from_wire",
]


class RemoteHandsError(Exception):
    """Base of every error remotehands raises on purpose.

    ``details`` says what happened and what to do about it; it is shown to users as is.
    """

    code: ClassVar[str] = "error"
    http_status: ClassVar[int] = 500
    exit_code: ClassVar[int] = 1

    def __init__(self, details: str) -> None:
        super().__init__(details)
        self.details = details

    def to_wire(self) -> dict[str, Any]:
        """The ``{"error": code, "details": text}`` shape of the native API and the agent link."""
        return {"error": self.code, "details": self.details}


class ConfigError(RemoteHandsError):
    """Settings that cannot work: a missing password, an unknown driver, a bad address."""

    code = "config"
    http_status = 400
    exit_code = 2


class AuthError(RemoteHandsError):
    """Missing, wrong, expired or revoked credentials."""

    code = "unauthorized"
    http_status = 401
    exit_code = 3


class ForbiddenError(RemoteHandsError):
    """Authenticated, but the role or token scope does not allow this."""

    code = "forbidden"
    http_status = 403
    exit_code = 3


class NotFoundError(RemoteHandsError):
    """No such device, token, window, slot, user or route."""

    code = "not_found"
    http_status = 404
    exit_code = 4


class ValidationError(RemoteHandsError):
    """A request that does not make sense: off-screen coordinates, unknown keys, bad types."""

    code = "invalid"
    http_status = 422
    exit_code = 2


class RateLimitedError(RemoteHandsError):
    """Too many failed attempts from one client; wait and retry."""

    code = "rate_limited"
    http_status = 429
    exit_code = 5


class BusyError(RemoteHandsError):
    """The device is held by another sequence and the caller could not wait longer."""

    code = "busy"
    http_status = 409
    exit_code = 5


class UnsupportedError(RemoteHandsError):
    """The device's driver does not have the capability the action needs."""

    code = "unsupported"
    http_status = 501
    exit_code = 6


class DeviceOfflineError(RemoteHandsError):
    """The device's agent is not connected."""

    code = "device_offline"
    http_status = 503
    exit_code = 7


class DeviceError(RemoteHandsError):
    """The device or its driver failed while carrying out an action."""

    code = "device_error"
    http_status = 502
    exit_code = 8


class DeviceTimeoutError(RemoteHandsError):
    """The device did not answer in time."""

    code = "timeout"
    http_status = 504
    exit_code = 9


_BY_CODE: dict[str, type[RemoteHandsError]] = {
    cls.code: cls
    for cls in (
        ConfigError,
        AuthError,
        ForbiddenError,
        NotFoundError,
        ValidationError,
        RateLimitedError,
        BusyError,
        UnsupportedError,
        DeviceOfflineError,
        DeviceError,
        DeviceTimeoutError,
    )
}


def error_from_wire(code: str, details: str) -> RemoteHandsError:
    """Rebuild an error received as ``{"error": code, "details": ...}``; unknown codes become
    :class:`DeviceError` so that nothing a peer sends can crash the receiver."""
    cls = _BY_CODE.get(code, DeviceError)
    return cls(details)
