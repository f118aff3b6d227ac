"""``remotehands desktop``: a virtual desktop to work on."""

from __future__ import annotations

import sys

import click

from remotehands.cli.extras import require_extras
from remotehands.errors import RemoteHandsError


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
@click.option("--json", "as_json", is_flag=True, help="Print the display and XAUTHORITY as JSON.")
def desktop(display: str | None, size: str, no_terminal: bool, as_json: bool) -> None:
    """Run a virtual desktop (Xvfb, a window manager, a terminal) until stopped (Ctrl-C)."""
    require_extras("desktop", "agent")  # its window-manager probe speaks X through python-xlib
    from remotehands.agent.desktop import VirtualDesktop

    width, height = parse_size(size)
    vd = VirtualDesktop(display=display, size=(width, height), terminal=not no_terminal)
    try:
        vd.start()
        if as_json:
            import json

            click.echo(json.dumps({"display": vd.display, **vd.env, "size": f"{width}x{height}"}))
        else:
            click.echo(f"virtual desktop {width}x{height} on DISPLAY={vd.display}")
            click.echo(f"  serve it:  REMOTEHANDS_AGENT_PASSWORD=... "
                       f"remotehands agent --driver x11 --display {vd.display}")  # fmt: skip
        sys.stdout.flush()
        vd.run_forever()
    except RemoteHandsError as err:
        click.echo(f"error: {err.details}", err=True)
        sys.exit(err.exit_code)
    finally:
        vd.stop()
