"""The fleet server's shared resources, wired once by the app factory.

Routes reach them with :func:`get_services`; nothing else holds global state. Tests build the app
with their own clock and password hasher (see :func:`remotehands.server.app.create_app`) and may
swap ``events`` or ``hub`` for recording fakes.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from starlette.requests import HTTPConnection

from remotehands.server.audit import AuditLog
from remotehands.server.auth import Passwords, PrincipalCache
from remotehands.server.db.engine import Database
from remotehands.server.ratelimit import RateLimiter
from remotehands.server.settings import ServerSettings

if TYPE_CHECKING:
    from remotehands.server.events import EventBus
    from remotehands.server.link.hub import LinkHub

__all__ = ["Clock", "Services", "get_services", "utc_now"]

Clock = Callable[[], datetime]
"""Returns the current time as an aware UTC datetime."""


def utc_now() -> datetime:
    """The current time, aware UTC: the default :data:`Clock`."""
    return datetime.now(UTC)


@dataclass
class Services:
    """Everything a route needs: settings, database, audit log, event bus, agent links.

    ``events`` and ``hub`` are None only in a build without the link modules; code that uses
    them outside the link package checks for that.
    """

    settings: ServerSettings
    db: Database
    audit: AuditLog
    events: EventBus
    hub: LinkHub
    clock: Clock = utc_now
    passwords: Passwords = field(default_factory=Passwords)
    login_limiter: RateLimiter = field(default_factory=lambda: RateLimiter(10))
    """Failed logins per client address and username."""
    register_limiter: RateLimiter = field(default_factory=lambda: RateLimiter(10))
    """Failed agent registrations per client address."""
    principals: PrincipalCache = field(default_factory=PrincipalCache)
    """Recent authentications; cleared by every change to users, sessions and tokens."""


def get_services(request_or_ws: HTTPConnection) -> Services:
    """The :class:`Services` of the app serving this request or WebSocket."""
    services: Services = request_or_ws.app.state.services
    return services
