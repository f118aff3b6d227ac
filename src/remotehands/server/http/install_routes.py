"""``GET /install`` and ``GET /install/remotehands.tar.gz``: public, what enrolment downloads.

Neither needs credentials: the script holds no secret (the enrollment token is passed to it on
the command line) and the archive holds only the open-source package.
"""

from __future__ import annotations

import asyncio

from fastapi import APIRouter, Request, Response

from remotehands.server.install import ARCHIVE_NAME, build_source_archive, install_script
from remotehands.server.services import get_services

__all__ = ["router"]

router = APIRouter(tags=["install"])


@router.get("/install", response_class=Response)
async def get_install_script(request: Request) -> Response:
    """The installer (POSIX sh): ``curl -sSL {server}/install | sh -s -- --token ekvent_...``."""
    script = install_script(get_services(request).settings.base_url)
    return Response(
        script,
        media_type="text/x-shellscript; charset=utf-8",
        headers={"Cache-Control": "no-store"},
    )


@router.get(f"/install/{ARCHIVE_NAME}", response_class=Response)
async def get_archive() -> Response:
    """The ``remotehands`` package this server runs, as an installable source archive."""
    data = await asyncio.to_thread(build_source_archive)
    return Response(
        data,
        media_type="application/gzip",
        headers={"Content-Disposition": f'attachment; filename="{ARCHIVE_NAME}"'},
    )
