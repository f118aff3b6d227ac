"""``remotehands desktop``: a virtual desktop to work on, with a sound server of its own."""

from __future__ import annotations

import shlex
import sys
from pathlib import Path

import click

from remotehands.cli.extras import require_extras
from remotehands.errors import ConfigError, RemoteHandsError


def parse_size(text: str) -> tuple[int, int]:
    """``WIDTHxHEIGHT`` into numbers, as a click usage error when it is not a sane size."""
    width, sep, height = text.lower().partition("x")
    if not sep or not width.isdigit() or not height.isdigit():
        raise click.BadParameter(f"{text!r} is not a size: use WIDTHxHEIGHT, e.g. 1920x1080")
    w, h = int(width), int(height)
    if not (64 <= w <= 8192 and 64 <= h <= 8192):
        raise click.BadParameter("width and height must be between 64 and 8192")
    return w, h


@click.command()
@click.option("--display", default=None, help="Display to create, e.g. :1 (default: a free one).")
@click.option("--size", default="1920x1080", show_default=True, help="Screen size WIDTHxHEIGHT.")
@click.option("--no-terminal", is_flag=True, help="Do not open a terminal.")
@click.option(
    "--no-audio", is_flag=True, help="Do not start a sound server (PulseAudio, null output)."
)
@click.option(
    "--json",
    "as_json",
    is_flag=True,
    help="Print the display, XAUTHORITY and PULSE_SERVER as JSON.",
)
@click.option(
    "--env-file",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Once the desktop is up, write `export DISPLAY=... XAUTHORITY=... PULSE_SERVER=...` to "
    "this file (for scripts: `. FILE`); removed when the desktop stops.",
)
def desktop(
    display: str | None,
    size: str,
    no_terminal: bool,
    no_audio: bool,
    as_json: bool,
    env_file: Path | None,
) -> None:
    """Run a virtual desktop (Xvfb, a window manager, a terminal) until stopped (Ctrl-C).

    It prints the DISPLAY and XAUTHORITY an X client (the agent) needs to reach it. It also runs
    a PulseAudio server of its own with one null output ("remotehands": the sound goes nowhere,
    but volumes, mutes and the applications that play are real), so an agent serving the
    desktop has audio to control: its PULSE_SERVER is printed too. Without the pulseaudio
    program the desktop runs without sound (a warning says so).
    """
    require_extras("desktop", "agent")  # its window-manager probe speaks X through python-xlib
    from remotehands.agent.desktop import VirtualDesktop
    from remotehands.agent.soundserver import SoundServer

    width, height = parse_size(size)
    vd = VirtualDesktop(display=display, size=(width, height), terminal=not no_terminal)
    sound = None if no_audio else SoundServer(("remotehands",))
    try:
        vd.start()
        if sound is not None:
            try:
                sound.start()
            except ConfigError as err:  # pulseaudio missing: a desktop without sound still works
                click.echo(f"warning: no sound server: {err.details}", err=True)
                sound = None
        env = {**vd.env, **(sound.env if sound is not None else {})}
        exports = " ".join(f"{key}={shlex.quote(value)}" for key, value in env.items())
        if env_file is not None:
            _write_atomically(env_file, f"export {exports}\n")
        if as_json:
            import json

            click.echo(json.dumps({"display": vd.display, **env, "size": f"{width}x{height}"}))
        else:
            click.echo(f"virtual desktop {width}x{height} on DISPLAY={vd.display}")
            click.echo(f"  its clients need:  export {exports}")
            click.echo(f"  serve it:  {exports} REMOTEHANDS_AGENT_PASSWORD=... "
                       f"remotehands agent --driver x11")  # fmt: skip
        sys.stdout.flush()
        vd.run_forever()
    except RemoteHandsError as err:
        click.echo(f"error: {err.details}", err=True)
        sys.exit(err.exit_code)
    finally:
        if env_file is not None:
            env_file.unlink(missing_ok=True)
        if sound is not None:
            sound.stop()
        vd.stop()


def _write_atomically(path: Path, text: str) -> None:
    """Write ``path`` whole or not at all, so that a script waiting for it reads it complete."""
    partial = path.with_name(path.name + ".partial")
    try:
        partial.write_text(text)
        partial.replace(path)
    except OSError as err:
        raise ConfigError(f"cannot write the env file {path}: {err.strerror}") from err
