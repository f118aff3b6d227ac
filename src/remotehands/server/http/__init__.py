"""The fleet server's REST API: one router per concept, errors shaped in :mod:`.errors`.

The routers of this package that the app factory always includes are listed by
:func:`core_routers`; the device actions, bulk, events, metrics and health routers come from
their own modules (see :func:`remotehands.server.app.create_app`).
"""

from __future__ import annotations

from fastapi import APIRouter

__all__ = ["core_routers"]


def core_routers() -> list[APIRouter]:
    """Auth, users, tokens, devices, enrollment, audit and install routers."""
    from remotehands.server.http import (
        audit_routes,
        auth_routes,
        devices,
        enrollment,
        install_routes,
        screen_stream,
        tokens,
        users,
    )

    # enrollment before devices: POST /v1/devices/enrollment is not a device id.
    return [
        screen_stream.router,
        auth_routes.router,
        users.router,
        tokens.router,
        enrollment.router,
        devices.router,
        audit_routes.router,
        install_routes.router,
    ]
