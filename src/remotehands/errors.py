"""The one exception tree of remotehands.

Every error carries a stable wire ``code``; where an error leaves the program it is mapped to an
HTTP status, an exit code or a wire code, all derived from the one table :data:`ERRORS`, never
anywhere else::

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
      ServiceUnavailableError
                             a service it needs is down      service_unavailable
                             (the sound server)                              503   7
      DeviceError            the device or driver failed     device_error    502   8
      DeviceTimeoutError     no answer in time               timeout         504   9

Foreign errors are translated where they enter (``raise DeviceError(...) from err``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

__all__ = [
    "ERRORS",
    "AuthError",
    "BusyError",
    "ConfigError",
    "DeviceError",
    "DeviceOfflineError",
    "DeviceTimeoutError",
    "ErrorKind",
    "ForbiddenError",
    "NotFoundError",
    "RateLimitedError",
    "RemoteHandsError",
    "ServiceUnavailableError",
    "UnsupportedError",
    "ValidationError",
    "error_class_for_status",
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


class AuthError(RemoteHandsError):
    """Missing, wrong, expired or revoked credentials."""


class ForbiddenError(RemoteHandsError):
    """Authenticated, but the role or token scope does not allow this."""


class NotFoundError(RemoteHandsError):
    """No such device, token, window, slot, user or route."""


class ValidationError(RemoteHandsError):
    """A request that does not make sense: off-screen coordinates, unknown keys, bad types."""


class RateLimitedError(RemoteHandsError):
    """Too many failed attempts from one client; wait and retry."""


class BusyError(RemoteHandsError):
    """The device is held by another sequence and the caller could not wait longer."""


class UnsupportedError(RemoteHandsError):
    """The device's driver does not have the capability the action needs."""


class DeviceOfflineError(RemoteHandsError):
    """The device's agent is not connected."""


class ServiceUnavailableError(RemoteHandsError):
    """A service the device needs for the action is not running (the sound server); the
    details say what to start. The agent itself keeps serving."""


class DeviceError(RemoteHandsError):
    """The device or its driver failed while carrying out an action."""


class DeviceTimeoutError(RemoteHandsError):
    """The device did not answer in time."""


@dataclass(frozen=True, slots=True)
class ErrorKind:
    """One row of :data:`ERRORS`: an error class and how it leaves the program."""

    cls: type[RemoteHandsError]
    code: str
    """The stable wire code: ``{"error": code, ...}`` on the native API and the agent link."""
    http_status: int
    """The HTTP status of a REST answer carrying this error."""
    exit_code: int
    """The exit status of a CLI command failing with this error."""


ERRORS: tuple[ErrorKind, ...] = (
    ErrorKind(ConfigError, "config", 400, 2),
    ErrorKind(AuthError, "unauthorized", 401, 3),
    ErrorKind(ForbiddenError, "forbidden", 403, 3),
    ErrorKind(NotFoundError, "not_found", 404, 4),
    ErrorKind(ValidationError, "invalid", 422, 2),
    ErrorKind(RateLimitedError, "rate_limited", 429, 5),
    ErrorKind(BusyError, "busy", 409, 5),
    ErrorKind(UnsupportedError, "unsupported", 501, 6),
    ErrorKind(ServiceUnavailableError, "service_unavailable", 503, 7),
    ErrorKind(DeviceOfflineError, "device_offline", 503, 7),
    ErrorKind(DeviceError, "device_error", 502, 8),
    ErrorKind(DeviceTimeoutError, "timeout", 504, 9),
)
"""The one table of error classes: every map below (wire code, HTTP status, exit code) derives
from it."""

for _kind in ERRORS:
    _kind.cls.code = _kind.code
    _kind.cls.http_status = _kind.http_status
    _kind.cls.exit_code = _kind.exit_code

_BY_CODE: dict[str, type[RemoteHandsError]] = {kind.code: kind.cls for kind in ERRORS}

# A status raised outside remotehands (by the web framework, a proxy) is read as the error class
# of that status; 400 there is a request that made no sense (ConfigError is about settings), and
# a bare 503 is a device that cannot be reached (DeviceOfflineError comes after
# ServiceUnavailableError in ERRORS, so it is the one kept for 503).
_BY_STATUS: dict[int, type[RemoteHandsError]] = {
    **{kind.http_status: kind.cls for kind in ERRORS},
    400: ValidationError,
}


def error_from_wire(code: str, details: str) -> RemoteHandsError:
    """Rebuild an error received as ``{"error": code, "details": ...}``; unknown codes become
    :class:`DeviceError` so that nothing a peer sends can crash the receiver."""
    cls = _BY_CODE.get(code, DeviceError)
    return cls(details)


def error_class_for_status(status: int) -> type[RemoteHandsError] | None:
    """The error class an HTTP error status stands for when no wire code came with it (an
    answer of the web framework or of a proxy): the class of that status in :data:`ERRORS`
    (400: :class:`ValidationError`), or None for a status no class has."""
    return _BY_STATUS.get(status)
