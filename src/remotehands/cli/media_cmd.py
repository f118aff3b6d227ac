"""``remotehands media DEVICE [list|upload FILE|fetch URL|mount NAME [--cdrom]|eject|remove NAME]``.

``upload`` streams the file to the device (through the fleet server and the agent link, or
straight to a standalone agent) with a progress bar on stderr; Ctrl-C cancels it, and the device
keeps nothing of a cancelled upload.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import click
from rich.console import Console
from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    TextColumn,
    TimeRemainingColumn,
    TransferSpeedColumn,
)

from remotehands.cli.actions_cmd import device_command, device_group
from remotehands.cli.output import Column, emit, human_size, json_mode, table
from remotehands.client import ActionMethods

__all__ = ["COMMANDS", "media"]


def _drive(drive: Mapping[str, Any]) -> str:
    if not drive.get("image"):
        return "drive: empty"
    kind = "CD-ROM" if drive.get("cdrom", True) else ("flash drive, writable" if drive.get("rw")
                                                     else "flash drive")  # fmt: skip
    state = "connected" if drive.get("connected") else "not connected"
    return f"drive: {drive['image']} as a {kind}, {state}"


_IMAGES: list[Column] = [
    ("NAME", "name"),
    ("SIZE", lambda row: human_size(int(row.get("size") or 0))),
    ("COMPLETE", "complete"),
]


@device_group("media", default="list")
def media() -> None:
    """Virtual media: the images a device stores and the drive the machine sees.

    \b
    Examples:
      remotehands media rack-1                          # the drive and the images
      remotehands media rack-1 upload debian-12.iso     # with a progress bar
      remotehands media rack-1 mount debian-12.iso --cdrom
      remotehands media rack-1 eject
    """


@device_command("list", "[DEVICE]", counts=(0,), parent=media, verb="media_state")
def media_list(hands: ActionMethods[Any], rest: list[str]) -> None:
    """Show the drive, the stored images and the storage left."""
    state = hands.media_state()

    def human() -> None:
        click.echo(_drive(state.get("drive") or {}))
        if state.get("storage_size") is not None:
            free = human_size(int(state.get("storage_free") or 0))
            click.echo(f"storage: {free} free of {human_size(int(state['storage_size']))}")
        table(state.get("images") or [], _IMAGES, "no images stored")

    emit(state, human)


@device_command("upload", "[DEVICE] FILE", counts=(1,), parent=media, verb="media_upload")
@click.option(
    "--name", metavar="NAME", help="The image's name on the device (default: the file's)."
)
def media_upload(hands: ActionMethods[Any], rest: list[str], name: str | None) -> None:
    """Upload FILE to the device's image storage, streamed, with a progress bar.

    Ctrl-C cancels the upload; the device keeps nothing of it.
    """
    path = Path(rest[0])
    name = name or path.name
    console = Console(stderr=True)
    columns = (TextColumn("[bold]{task.description}"), BarColumn(), DownloadColumn(),
               TransferSpeedColumn(), TimeRemainingColumn())  # fmt: skip
    with Progress(*columns, console=console, transient=True, disable=json_mode()) as progress:
        task = progress.add_task(name, total=None)

        def advance(sent: int, total: int) -> None:
            progress.update(task, completed=sent, total=total)

        try:
            image = hands.media_upload(name, path, progress=advance)
        except KeyboardInterrupt:
            progress.stop()
            click.echo(f"upload of {name} cancelled: the device keeps nothing of it", err=True)
            raise click.exceptions.Exit(130) from None
    emit(image, f"stored {image.get('name')} ({human_size(int(image.get('size') or 0))})")


@device_command("fetch", "[DEVICE] URL", counts=(1,), parent=media, verb="media_fetch")
@click.option("--name", metavar="NAME", help="The image's name (default: from the URL).")
@click.option("--timeout", "timeout_s", type=click.FloatRange(0, 86_400, min_open=True),
              help="How long the download may take, in seconds (default 600).")  # fmt: skip
def media_fetch(
    hands: ActionMethods[Any], rest: list[str], name: str | None, timeout_s: float | None
) -> None:
    """Have the device download an image from URL itself."""
    image = hands.media_fetch(rest[0], name, timeout_s=timeout_s)
    emit(image, f"stored {image.get('name')} ({human_size(int(image.get('size') or 0))})")


@device_command("mount", "[DEVICE] NAME", counts=(1,), parent=media, verb="media_mount")
@click.option("--cdrom/--flash", default=None,
              help="Insert it as a CD-ROM (the default) or as a flash drive.")  # fmt: skip
@click.option("--rw", is_flag=True, help="Writable (flash drives only).")
def media_mount(hands: ActionMethods[Any], rest: list[str], cdrom: bool | None, rw: bool) -> None:
    """Insert the image NAME into the drive and connect it to the machine."""
    drive = hands.media_mount(rest[0], cdrom=cdrom, rw=rw or None)
    emit(drive, _drive(drive))


@device_command("eject", "[DEVICE]", counts=(0,), parent=media, verb="media_eject")
def media_eject(hands: ActionMethods[Any], rest: list[str]) -> None:
    """Disconnect the drive and take its image out."""
    drive = hands.media_eject()
    emit(drive, _drive(drive))


@device_command("remove", "[DEVICE] NAME", counts=(1,), parent=media, verb="media_remove")
def media_remove(hands: ActionMethods[Any], rest: list[str]) -> None:
    """Delete the stored image NAME."""
    hands.media_remove(rest[0])
    emit({"status": "ok", "removed": rest[0]}, f"removed {rest[0]}")


COMMANDS: dict[str, tuple[str, str]] = {
    "media": ("remotehands.cli.media_cmd:media", "Virtual media: images, upload, mount, eject."),
}
"""Command name -> ("module:attribute", one-line help), for ``remotehands.cli.main``."""
