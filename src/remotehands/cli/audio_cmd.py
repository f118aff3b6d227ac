"""``remotehands audio``: the sound of a device — output devices, per-application sessions.

::

    remotehands audio web-1                         # the devices and sessions (status)
    remotehands audio web-1 volume 40               # the default device at 40 %
    remotehands audio web-1 volume 20 --session 7   # one application
    remotehands audio web-1 mute --device alsa_output.usb
    remotehands audio web-1 default alsa_output.usb
    remotehands audio web-1 move 7 alsa_output.usb

Each subcommand is one action of the vocabulary and also serves as that action's verb command
(``remotehands audio-volume web-1 40``), as the rule of :mod:`remotehands.protocol.actions`
wants.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import click

from remotehands.cli.actions_cmd import VERB_COMMANDS, device_command, device_group
from remotehands.cli.output import Column, emit, table
from remotehands.client import ActionMethods
from remotehands.protocol.actions import by_verb
from remotehands.protocol.params import MAX_VOLUME

__all__ = ["COMMANDS", "audio"]

_VERBS = ("audio_status", "audio_volume", "audio_mute", "audio_default", "audio_move")


def _percent(value: Any) -> str:
    return f"{value:g}%" if isinstance(value, int | float) else "-"


_DEVICE_COLUMNS: list[Column] = [
    ("ID", "id"),
    ("DEFAULT", lambda row: "*" if row.get("default") else ""),
    ("VOLUME", lambda row: _percent(row.get("volume"))),
    ("MUTED", "muted"),
    ("NAME", "name"),
]
_SESSION_COLUMNS: list[Column] = [
    ("SESSION", "id"),
    ("PID", "pid"),
    ("VOLUME", lambda row: _percent(row.get("volume"))),
    ("MUTED", "muted"),
    ("DEVICE", "device_id"),
    ("NAME", "name"),
]


def _target_options(body: Any) -> Any:
    body = click.option("--session", "session_id", metavar="ID", help="A session (see status).")(
        body
    )
    return click.option(
        "--device", "device_id", metavar="ID", help="An output device (default: the default one)."
    )(body)


def _what(result: Any, device_id: str | None, session_id: str | None) -> str:
    """The changed device or session as the sound server shows it now, in words."""
    found = result if isinstance(result, Mapping) else {}
    if session_id is not None:
        row = found.get("session") or {}
        name = (
            f"session {session_id} ({row['name']})" if row.get("name") else f"session {session_id}"
        )
    else:
        row = found.get("device") or {}
        name = row.get("id") or device_id or "the default device"
    if not row:
        return name
    state = "muted" if row.get("muted") else "unmuted"
    return f"{name}: volume {_percent(row.get('volume'))}, {state}"


@device_group("audio", default="status")
def audio() -> None:
    """The sound of a device: output devices and per-application sessions (default: status).

    Volumes are percentages (0-100, up to 150 amplified). Without --device or --session,
    volume, mute and unmute act on the default output device.

    \b
    Examples:
      remotehands audio web-1
      remotehands audio web-1 volume 40
      remotehands audio web-1 mute --session 7
      remotehands audio web-1 default alsa_output.usb
      remotehands audio web-1 move 7 alsa_output.usb
    """


@device_command("status", "[DEVICE]", counts=(0,), parent=audio, verb="audio_status")
def audio_status(hands: ActionMethods[Any], rest: list[str]) -> None:
    """List the output devices and the playing sessions."""
    state = hands.audio_status()
    found = state if isinstance(state, Mapping) else {}

    def show() -> None:
        table(found.get("devices") or [], _DEVICE_COLUMNS, "no output devices")
        click.echo()
        table(found.get("sessions") or [], _SESSION_COLUMNS, "nothing is playing")

    emit(state, show)


@device_command("volume", "[DEVICE] PERCENT", counts=(1,), parent=audio, verb="audio_volume")
@_target_options
def audio_volume(
    hands: ActionMethods[Any], rest: list[str], device_id: str | None, session_id: str | None
) -> None:
    """Set the volume to PERCENT (0-100, up to 150 amplified)."""
    try:
        volume = float(rest[0].rstrip("%"))
    except ValueError:
        raise click.UsageError(f"PERCENT must be a number such as 40, not {rest[0]!r}") from None
    if not 0 <= volume <= MAX_VOLUME:
        raise click.UsageError(f"PERCENT must be between 0 and {MAX_VOLUME:g}, not {rest[0]}")
    result = hands.audio_volume(volume, device_id=device_id, session_id=session_id)
    emit(result, _what(result, device_id, session_id))


@device_command("mute", "[DEVICE]", counts=(0,), parent=audio, verb="audio_mute")
@_target_options
def audio_mute(
    hands: ActionMethods[Any], rest: list[str], device_id: str | None, session_id: str | None
) -> None:
    """Mute the default output device (or --device, or --session)."""
    result = hands.audio_mute(True, device_id=device_id, session_id=session_id)
    emit(result, _what(result, device_id, session_id))


@device_command("unmute", "[DEVICE]", counts=(0,), parent=audio)
@_target_options
def audio_unmute(
    hands: ActionMethods[Any], rest: list[str], device_id: str | None, session_id: str | None
) -> None:
    """Unmute the default output device (or --device, or --session)."""
    result = hands.audio_mute(False, device_id=device_id, session_id=session_id)
    emit(result, _what(result, device_id, session_id))


@device_command("default", "[DEVICE] OUTPUT", counts=(1,), parent=audio, verb="audio_default")
def audio_default(hands: ActionMethods[Any], rest: list[str]) -> None:
    """Make the output device OUTPUT the default one."""
    result = hands.audio_default(rest[0])
    emit(result, f"{rest[0]} is the default output device")


@device_command("move", "[DEVICE] SESSION OUTPUT", counts=(2,), parent=audio, verb="audio_move")
def audio_move(hands: ActionMethods[Any], rest: list[str]) -> None:
    """Play SESSION on the output device OUTPUT."""
    result = hands.audio_move(rest[0], rest[1])
    emit(result, f"session {rest[0]} plays on {rest[1]}")


# The verb commands (``audio-status``...) are the subcommands above under the rule's names:
# module attributes ``verb_<name>`` for the lazy command table of ``remotehands.cli.main``.
_VERB_NAMES = [name.replace("_", "-") for name in _VERBS]
for _name in _VERB_NAMES:
    globals()["verb_" + _name.replace("-", "_")] = VERB_COMMANDS[_name]


def _summary(name: str) -> str:
    spec = by_verb(name)
    return spec.summary + "." if spec is not None else ""


COMMANDS: dict[str, tuple[str, str]] = {
    "audio": ("remotehands.cli.audio_cmd:audio", "Output devices and sessions: volume, mute..."),
} | {name: (f"remotehands.cli.audio_cmd:verb_{name.replace('-', '_')}", _summary(name))
     for name in _VERB_NAMES}  # fmt: skip
"""Command name -> ("module:attribute", one-line help), for ``remotehands.cli.main``."""
