"""The ``media`` capability: virtual media, the images a device stores and its drive.

``media.upload`` is a streamed action: its bytes are the request body on the native face
(``PUT /media/images/{name}``) and a chunked transfer on the agent link
(:mod:`remotehands.agent.streamed`). Either way the face attaches them to the parameters
(:meth:`~remotehands.protocol.params.StreamedParams.with_body`) and the handler hands them to
the driver as they arrive, never holding the image.
"""

from __future__ import annotations

from typing import cast

from remotehands.agent.capabilities.registry import handles
from remotehands.agent.context import ActionContext
from remotehands.drivers.base import Media
from remotehands.errors import ValidationError
from remotehands.protocol import params as P
from remotehands.protocol import results as R

__all__ = ["media_eject", "media_fetch", "media_mount", "media_remove", "media_state",
           "media_upload"]  # fmt: skip


def _media(ctx: ActionContext) -> Media:
    return cast(Media, ctx.driver)


@handles("media.state")
async def media_state(ctx: ActionContext, _: P.NoParams) -> R.MediaStateResult:
    """The drive, the stored images and the storage left."""
    state = await _media(ctx).media_state()
    return R.MediaStateResult.model_validate(state.model_dump())


@handles("media.upload")
async def media_upload(ctx: ActionContext, p: P.MediaUploadParams) -> R.MediaImageResult:
    """Store the streamed bytes attached to the parameters as the image ``name``."""
    if p.body is None or p.size is None:
        raise ValidationError(
            "media.upload streams the image as the request body: PUT /media/images/{name} with "
            "a Content-Length (it cannot be a JSON action or a sequence step)"
        )
    image = await _media(ctx).media_upload(p.name, p.body, p.size)
    return R.MediaImageResult.model_validate(image.model_dump())


@handles("media.fetch")
async def media_fetch(ctx: ActionContext, p: P.MediaFetchParams) -> R.MediaImageResult:
    """Have the device download an image from a URL."""
    image = await _media(ctx).media_fetch(p.url, p.name)
    return R.MediaImageResult.model_validate(image.model_dump())


@handles("media.mount")
async def media_mount(ctx: ActionContext, p: P.MediaMountParams) -> R.MediaDriveResult:
    """Insert an image into the drive and connect it."""
    drive = await _media(ctx).media_mount(p.name, p.cdrom, p.rw)
    return R.MediaDriveResult.model_validate(drive.model_dump())


@handles("media.eject")
async def media_eject(ctx: ActionContext, _: P.NoParams) -> R.MediaDriveResult:
    """Disconnect the drive and take its image out."""
    drive = await _media(ctx).media_eject()
    return R.MediaDriveResult.model_validate(drive.model_dump())


@handles("media.remove")
async def media_remove(ctx: ActionContext, p: P.MediaNameParams) -> R.NoContent:
    """Delete a stored image."""
    await _media(ctx).media_remove(p.name)
    return R.NoContent()
