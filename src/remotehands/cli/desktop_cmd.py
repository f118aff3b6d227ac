"""``remotehands desktop``: a virtual desktop to work on, with a sound server of its own."""

from __future__ import annotations

import sys

import click

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
def desktop(
    display: str | None, size: str, no_terminal: bool, no_audio: bool, as_json: bool
) -> None:
    """Run a virtual desktop (Xvfb, a window manager, a terminal) until stopped (Ctrl-C).

    It also runs a PulseAudio server of its own with one null output ("remotehands": the sound
    goes nowhere, but volumes, mutes and the applications that play are real), so an agent
    serving the desktop has audio to control: give the agent the PULSE_SERVER printed here.
    Without the pulseaudio program the desktop runs without sound (a warning says so).
    """
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
        if as_json:
            import json

            click.echo(json.dumps({"display": vd.display, **env, "size": f"{width}x{height}"}))
        else:
            click.echo(f"virtual desktop {width}x{height} on DISPLAY={vd.display}")
            if sound is not None:
                click.echo(f"  sound server: PULSE_SERVER={sound.address}")
            prefix = f"PULSE_SERVER={sound.address} " if sound is not None else ""
            click.echo(f"  serve it:  {prefix}REMOTEHANDS_AGENT_PASSWORD=... "
                       f"remotehands agent --driver x11 --display {vd.display}")  # fmt: skip
            if sound is not None:
                click.echo(f"export PULSE_SERVER={sound.address}")
        sys.stdout.flush()
        vd.run_forever()
    except RemoteHandsError as err:
        click.echo(f"error: {err.details}", err=True)
        sys.exit(err.exit_code)
    finally:
        if sound is not None:
            sound.stop()
        vd.stop()
