"""The app factory: one place where the fleet server's resources are wired.

:func:`create_app` returns a FastAPI app whose lifespan opens the database (migrating it to the
newest schema), starts the event bus and the agent-link hub, and stores them all in
``app.state.services``; leaving the lifespan closes them in reverse order (the hub first, so that
it can still mark its devices offline).

uvicorn closes every WebSocket before it runs the lifespan's end, so what the server says to its
agents as it stops is said earlier: :func:`announce_shutdown`, run by the HTTP server
(:class:`~remotehands.serving.GracefulServer`) before it closes the connections.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from typing import Any

from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware

from remotehands import __version__
from remotehands.private import private_dir, read_or_create_secret
from remotehands.server.admission import Admission
from remotehands.server.audit import AuditLog
from remotehands.server.auth import Authenticator, Passwords, PrincipalCache
from remotehands.server.clock import Clock, utc_now
from remotehands.server.cluster.bus import Outbox
from remotehands.server.cluster.connection import NatsConnection, default_replica_id
from remotehands.server.cluster.events import NatsEventBus
from remotehands.server.cluster.router import NatsRouter
from remotehands.server.cluster.shared import (
    SharedLoginLimiter,
    SharedPrincipalCache,
    SharedRateLimiter,
    SharedState,
)
from remotehands.server.db.engine import Database
from remotehands.server.events import EventBus, InProcessEventBus
from remotehands.server.http import (
    audit_routes,
    auth_routes,
    bulk,
    device_actions,
    device_socket,
    devices,
    enrollment,
    events_routes,
    health,
    install_routes,
    screen_stream,
    tokens,
    users,
    web_routes,
)
from remotehands.server.http import metrics as metrics_routes
from remotehands.server.http.docs import docs_app
from remotehands.server.http.errors import install_error_handlers
from remotehands.server.http.handshake import HandshakeTimeout
from remotehands.server.http.headers import SecurityHeaders
from remotehands.server.http.limits import BodyLimit
from remotehands.server.link import ws as link_ws
from remotehands.server.link.hub import LinkHub
from remotehands.server.link.ws import AgentLinkRoute
from remotehands.server.logredact import install_log_redaction
from remotehands.server.ratelimit import LoginLimiter, RateLimiter
from remotehands.server.router import DeviceRouter, InProcessRouter
from remotehands.server.services import Services
from remotehands.server.settings import ServerSettings

__all__ = ["AUDIT_KEY", "AUDIT_SPOOL", "announce_shutdown", "create_app"]

AUDIT_KEY = "audit.key"
"""The file in the data directory holding the key of the audit log's hashes of typed text."""
AUDIT_SPOOL = "audit.spool"
"""The file in the data directory keeping audit entries the database could not take."""


def create_app(
    settings: ServerSettings,
    *,
    clock: Clock | None = None,
    passwords: Passwords | None = None,
    monotonic: Callable[[], float] | None = None,
) -> FastAPI:
    """The fleet server for ``settings``.

    The arguments after ``settings`` are for tests: ``clock`` (aware UTC datetimes) moves
    sessions, tokens and rate limits through time without sleeping; ``passwords`` (a cheap
    hasher) keeps argon2 from dominating the test run; ``monotonic`` (seconds) is the clock the
    agent links' heartbeats and silence and the principal cache's lifetime are measured by, so
    that a test decides when an agent has been silent for too long instead of racing a
    real-time window.
    """
    now = clock or utc_now
    limiter_clock: Callable[[], float] = (
        time.monotonic if clock is None else (lambda: now().timestamp())
    )

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with AsyncExitStack() as stack:
            await asyncio.to_thread(private_dir, settings.data_dir)
            tls = await asyncio.to_thread(settings.tls_files)
            db = await Database.open(settings.db_url)
            stack.push_async_callback(db.close)
            key = await asyncio.to_thread(read_or_create_secret, settings.data_dir / AUDIT_KEY)
            audit = await stack.enter_async_context(
                AuditLog(db, now, key=key, spool=settings.data_dir / AUDIT_SPOOL)
            )
            cluster: _Cluster | None = None
            events: EventBus
            if settings.nats_url is not None:
                cluster = await _Cluster.open(stack, settings.nats_url, settings.replica_id)
                events = cluster.events
                app.state.replica_id = cluster.nats.replica_id
            else:
                events = await stack.enter_async_context(InProcessEventBus())
            # Entered last, so left first: it marks its devices offline while the database and
            # the event bus are still open.
            hub = await stack.enter_async_context(
                LinkHub(
                    db=db,
                    events=events,
                    heartbeat_interval_s=settings.heartbeat_interval_s,
                    offline_after_s=settings.offline_after_s,
                    clock=monotonic or time.monotonic,
                    now=now,
                )
            )
            login_limits: dict[str, Any] = {
                "per_pair": settings.login_rate_limit,
                "per_address": settings.login_address_rate_limit,
                "per_username": settings.login_username_rate_limit,
                "clock": limiter_clock,
            }
            router: DeviceRouter
            if cluster is None:
                router = InProcessRouter(hub)
                principals = PrincipalCache(clock=monotonic or time.monotonic)
                login_limiter = LoginLimiter(**login_limits)
                register_limiter = RateLimiter(settings.register_rate_limit, clock=limiter_clock)
            else:
                router = await cluster.router(stack, hub, settings, monotonic or time.monotonic)
                principals, login_limiter, register_limiter = await cluster.shared(
                    stack, login_limits, settings.register_rate_limit, limiter_clock,
                    monotonic or time.monotonic,
                )  # fmt: skip
            authenticator = Authenticator(
                db, principals, clock=now, session_ttl_s=settings.session_ttl_s,
                totp_roles=frozenset(settings.totp_required_roles),
            )  # fmt: skip
            app.state.services = Services(
                settings=settings,
                db=db,
                audit=audit,
                events=events,
                hub=hub,
                router=router,
                clock=now,
                passwords=passwords or Passwords(),
                login_limiter=login_limiter,
                register_limiter=register_limiter,
                admission=Admission(settings.admission_limit, settings.admission_queue),
                principals=principals,
                authenticator=authenticator,
                tls=tls,
                replica_id=cluster.nats.replica_id if cluster is not None else None,
            )
            yield

    install_log_redaction()
    app = docs_app(
        title="remotehands",
        version=__version__,
        summary="Hands on remote computers: the fleet server's API.",
        lifespan=lifespan,
    )
    install_error_handlers(app)
    app.add_middleware(BodyLimit, max_bytes=settings.max_body_bytes)
    app.add_middleware(HandshakeTimeout)
    if settings.allowed_origins:  # CORS stays closed (no header at all) unless configured
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.allowed_origins,
            allow_methods=["GET", "POST", "PUT", "PATCH", "DELETE"],
            allow_headers=["Authorization", "Content-Type"],
            max_age=600,
        )
    app.add_middleware(SecurityHeaders, https=settings.uses_tls)  # every HTTP answer
    # Outermost: the agent links go past the rest of the stack (they need none of it, and ten
    # thousand of them would each hold a frame of every middleware for days).
    app.add_middleware(AgentLinkRoute)
    # Routes with static paths first: one under /v1/devices/ (bulk, enrollment...) must win
    # over the {device_id} of the device routes.
    for module in (
        device_actions,
        device_socket,
        bulk,
        events_routes,
        metrics_routes,
        health,
        link_ws,
        screen_stream,
        auth_routes,
        users,
        tokens,
        enrollment,
        devices,
        audit_routes,
        install_routes,
        web_routes,
    ):
        app.include_router(module.router)
    app.mount(web_routes.STATIC_URL, web_routes.static_files(), name="static")
    return app


class _Cluster:
    """What a replica opens when NATS is configured, entered on the lifespan's exit stack in
    the order their ends must run (the router and shared state before the hub's end, the
    outbox and the connection after it, so that the devices going offline are still said)."""

    def __init__(self, nats: NatsConnection, outbox: Outbox, events: NatsEventBus) -> None:
        self.nats = nats
        self.outbox = outbox
        self.events = events

    @classmethod
    async def open(cls, stack: AsyncExitStack, url: str, replica_id: str | None) -> _Cluster:
        nats = await stack.enter_async_context(
            NatsConnection(url, replica_id or default_replica_id())
        )
        outbox = await stack.enter_async_context(Outbox(nats))
        events = await stack.enter_async_context(NatsEventBus(nats, outbox))
        return cls(nats, outbox, events)

    async def router(
        self,
        stack: AsyncExitStack,
        hub: LinkHub,
        settings: ServerSettings,
        monotonic: Callable[[], float],
    ) -> NatsRouter:
        router = await stack.enter_async_context(
            NatsRouter(
                self.nats, hub, self.outbox, events=self.events,
                heartbeat_interval_s=settings.heartbeat_interval_s,
                offline_after_s=settings.offline_after_s,
                clock=monotonic,
            )
        )  # fmt: skip
        hub.presence = router
        return router

    async def shared(
        self,
        stack: AsyncExitStack,
        login_limits: dict[str, Any],
        register_limit: int,
        limiter_clock: Callable[[], float],
        monotonic: Callable[[], float],
    ) -> tuple[SharedPrincipalCache, SharedLoginLimiter, SharedRateLimiter]:
        rid = self.nats.replica_id
        principals = SharedPrincipalCache(self.outbox, rid, clock=monotonic)
        login = SharedLoginLimiter(self.outbox, rid, **login_limits)
        register = SharedRateLimiter(self.outbox, rid, "register", register_limit, limiter_clock)
        await stack.enter_async_context(SharedState(self.nats, principals, login, [register]))
        return principals, login, register


async def announce_shutdown(app: FastAPI) -> None:
    """Tell every agent linked to ``app`` when to come back, before a graceful stop closes the
    sockets: each link is closed with its own delay
    (:meth:`~remotehands.server.link.hub.LinkHub.close_for_restart`). Nothing to do when the app
    never started."""
    services: Services | None = getattr(app.state, "services", None)
    if services is not None:
        await services.hub.close_for_restart()
