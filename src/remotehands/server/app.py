"""The app factory: one place where the fleet server's resources are wired.

:func:`create_app` returns a FastAPI app whose lifespan opens the database (migrating it to the
newest schema), starts the event bus and the agent-link hub, and stores them all in
``app.state.services``; leaving the lifespan closes them in reverse order (the hub first, so that
it can still mark its devices offline).
"""

from __future__ import annotations

import importlib
import time
from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from typing import Any, cast

from fastapi import APIRouter, FastAPI

from remotehands import __version__
from remotehands.server.audit import AuditLog
from remotehands.server.auth import Passwords
from remotehands.server.db.engine import Database
from remotehands.server.http import core_routers
from remotehands.server.http.errors import install_error_handlers
from remotehands.server.http.limits import BodyLimit
from remotehands.server.logredact import install_log_redaction
from remotehands.server.ratelimit import RateLimiter
from remotehands.server.services import Clock, Services, utc_now
from remotehands.server.settings import ServerSettings

__all__ = ["create_app"]

# Routers of the agent link, device actions, bulk, events, metrics and health: included when
# their modules exist.
_LINK_ROUTERS = (
    "remotehands.server.http.device_actions",
    "remotehands.server.http.bulk",
    "remotehands.server.http.events_routes",
    "remotehands.server.http.metrics",
    "remotehands.server.http.health",
    "remotehands.server.link.ws",
)


def _optional(module_name: str, attribute: str) -> Any:
    """``module.attribute``, or None when the module itself does not exist (yet); an import
    error inside an existing module is not hidden."""
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as err:
        missing = err.name or ""
        if module_name == missing or module_name.startswith(missing + "."):
            return None
        raise
    return getattr(module, attribute)


def create_app(
    settings: ServerSettings,
    *,
    clock: Clock | None = None,
    passwords: Passwords | None = None,
) -> FastAPI:
    """The fleet server for ``settings``.

    ``clock`` (aware UTC datetimes) and ``passwords`` (a hasher) are for tests: a fake clock
    moves sessions, tokens and rate limits through time without sleeping; a cheap hasher keeps
    argon2 from dominating the test run.
    """
    now = clock or utc_now
    limiter_clock: Callable[[], float] = (
        time.monotonic if clock is None else (lambda: now().timestamp())
    )

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with AsyncExitStack() as stack:
            db = await Database.open(settings.db_url)
            stack.push_async_callback(db.close)
            services = Services(
                settings=settings,
                db=db,
                audit=await stack.enter_async_context(AuditLog(db, now)),
                # Filled in below; None only in a build without the link modules.
                events=cast(Any, None),
                hub=cast(Any, None),
                clock=now,
                passwords=passwords or Passwords(),
                login_limiter=RateLimiter(settings.login_rate_limit, clock=limiter_clock),
                register_limiter=RateLimiter(settings.register_rate_limit, clock=limiter_clock),
            )
            event_bus = _optional("remotehands.server.events", "EventBus")
            if event_bus is not None:
                services.events = await stack.enter_async_context(event_bus())
            link_hub = _optional("remotehands.server.link.hub", "LinkHub")
            if link_hub is not None:
                services.hub = await stack.enter_async_context(link_hub(services))
            app.state.services = services
            yield

    install_log_redaction()
    app = FastAPI(
        title="remotehands",
        version=__version__,
        summary="Hands on remote computers: the fleet server's API.",
        lifespan=lifespan,
    )
    install_error_handlers(app)
    app.add_middleware(BodyLimit, max_bytes=settings.max_body_bytes)
    # The link engineer's routers first: a static path of theirs (e.g. under /v1/devices/)
    # must win over the {device_id} of the device routes.
    for module_name in _LINK_ROUTERS:
        router: APIRouter | None = _optional(module_name, "router")
        if router is not None:
            app.include_router(router)
    for router in core_routers():
        app.include_router(router)
    return app
