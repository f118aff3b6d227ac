"""The fleet server's shared resources: a record built once by the app factory.

:func:`remotehands.server.app.create_app` opens every resource, builds one :class:`Services`
from them and stores it in ``app.state.services``; routes read it with :func:`get_services`.
Nothing else builds one, nothing changes one (it is frozen), and nothing holds global state.
Tests choose the clocks and the password hasher through ``create_app``'s arguments.
"""

from __future__ import annotations

from dataclasses import dataclass

from starlette.requests import HTTPConnection

from remotehands.server.admission import Admission
from remotehands.server.audit import AuditLog
from remotehands.server.auth.authentication import Authenticator, PrincipalCache
from remotehands.server.auth.passwords import Passwords
from remotehands.server.clock import Clock
from remotehands.server.db.engine import Database
from remotehands.server.events import EventBus
from remotehands.server.link.hub import LinkHub
from remotehands.server.ratelimit import LoginLimiter, RateLimiter
from remotehands.server.router import DeviceRouter
from remotehands.server.settings import ServerSettings
from remotehands.tls import TlsFiles

__all__ = ["Services", "get_services"]


@dataclass(frozen=True, slots=True, kw_only=True)
class Services:
    """Everything a route needs: settings, database, audit log, event bus, agent links, the
    router to devices, clock, password hasher, rate limiters and the principal cache."""

    settings: ServerSettings
    db: Database
    audit: AuditLog
    events: EventBus
    hub: LinkHub
    """The agent links this process holds: their bookkeeping (who is connected, cutting a
    link off). Device requests never go through it: they go through :attr:`router`."""
    router: DeviceRouter
    """The one path to a device (request/reply today; streams next)."""
    clock: Clock
    passwords: Passwords
    login_limiter: LoginLimiter
    """Failed password checks per client address and username, per address, per username."""
    register_limiter: RateLimiter
    """Failed agent registrations per client address."""
    admission: Admission
    """Agent registrations and link handshakes at the pace the database can take."""
    principals: PrincipalCache
    """Recent authentications; cleared by every change to users, sessions and tokens."""
    authenticator: Authenticator
    """Credentials to principals and devices, through :attr:`principals`."""
    replica_id: str | None = None
    """This replica's id when it runs as one of several (NATS configured), else None."""
    tls: TlsFiles | None = None
    """The certificate the server serves HTTPS with (its fingerprint goes into install
    commands, for agents to pin), or None without TLS."""


def get_services(request_or_ws: HTTPConnection) -> Services:
    """The :class:`Services` of the app serving this request or WebSocket."""
    services: Services = request_or_ws.app.state.services
    return services
