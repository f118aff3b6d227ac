"""``remotehands agent``: serve a device."""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path

import click

from remotehands.cli.signals import run_until_signal
from remotehands.errors import RemoteHandsError

EXAMPLES = """
\b
Examples:
  # a standalone agent on display :1, native API on 127.0.0.1:8082
  REMOTEHANDS_AGENT_PASSWORD=secret remotehands agent --driver x11 --display :1
  # enroll with a fleet server once, then keep the link up
  remotehands agent --server http://fleet:8080 --token ekvent_... --driver x11 --display :1
"""


@click.command(epilog=EXAMPLES)
@click.option(
    "--driver",
    default="x11",
    show_default=True,
    help="Device driver: x11 (a Linux X desktop) or fake (in-memory, for trials).",
)
@click.option("--display", default=None, help="X display to drive, e.g. :1 (default $DISPLAY).")
@click.option(
    "--listen",
    default=None,
    metavar="HOST:PORT",
    help="Serve the native HTTP API here (default 127.0.0.1:8082 when standalone; "
    "off with --server unless given).",
)
@click.option(
    "--password-file",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="File holding the native API's password (else REMOTEHANDS_AGENT_PASSWORD).",
)
@click.option(
    "--pam", is_flag=True, help="Accept the Unix password of the user running the agent (PAM)."
)
@click.option(
    "--server",
    default=None,
    envvar="REMOTEHANDS_SERVER",
    help="Fleet server URL to link to, e.g. http://127.0.0.1:8080.",
)
@click.option(
    "--token",
    default=None,
    envvar="REMOTEHANDS_ENROLLMENT_TOKEN",
    help="Enrollment token (ekvent_...) used once to enroll with --server.",
)
@click.option("--name", default=None, help="Device name to suggest when enrolling.")
@click.option(
    "--state-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Where the device credential is kept (default ~/.local/state/remotehands).",
)
@click.option("-v", "--verbose", is_flag=True, help="Log more.")
@click.option("--json", "as_json", is_flag=True, help="Log lines as JSON (for supervisors).")
def agent(driver: str, display: str | None, listen: str | None, password_file: Path | None,
          pam: bool, server: str | None, token: str | None, name: str | None,
          state_dir: Path | None, verbose: bool, as_json: bool) -> None:  # fmt: skip
    """Serve a device: its native HTTP API (desktopkit-compatible) and/or a link to a server."""
    from remotehands.agent.runtime import AgentOptions, run_agent

    fmt = ('{"at":"%(asctime)s","level":"%(levelname)s","msg":"%(message)s"}' if as_json
           else "%(asctime)s %(levelname)s %(message)s")  # fmt: skip
    logging.basicConfig(level=logging.INFO if verbose else logging.WARNING, format=fmt)
    options = AgentOptions(
        driver=driver, display=display, listen=listen,
        password=os.environ.get("REMOTEHANDS_AGENT_PASSWORD") or None,
        password_file=password_file, pam=pam, server=server, token=token, name=name,
    )  # fmt: skip
    if state_dir is not None:
        options.state_dir = state_dir
    try:
        run_until_signal(run_agent(options))
    except RemoteHandsError as err:
        click.echo(f"error: {err.details}", err=True)
        sys.exit(err.exit_code)
