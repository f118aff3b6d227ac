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
  # every device an agent config file lists (see remotehands.agent.config for the format)
  remotehands agent --config /etc/remotehands/agent.toml

\b
An agent config file:
  server = "http://fleet:8080"           # optional: without it, local faces only
  state_dir = "/var/lib/remotehands"     # optional: one credential file per device
  [[devices]]
  name = "lab-1"
  driver = "x11"
  enrollment_token = "ekvent_..."        # used once, on the first start
  listen = "127.0.0.1:8082"              # optional: this device's faces
  faces = ["native"]
  password_file = "/etc/remotehands/lab-1.pw"  # the faces' password: never in the file
  [devices.settings]
  display = ":1"
"""

# the options that describe the one device of the command line, refused beside --config
_DEVICE_OPTIONS = ("driver", "display", "setting", "listen", "password_file", "pam", "token",
                   "name", "server")  # fmt: skip


@click.command(epilog=EXAMPLES)
@click.option(
    "--config",
    "config_file",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="TOML file listing the devices to run (server, state_dir, [[devices]]); the other "
    "device options then stay unset.",
)
@click.option(
    "--driver",
    default="x11",
    show_default=True,
    help="Device driver: x11 (a Linux X desktop) or fake (in-memory, for trials).",
)
@click.option("--display", default=None, help="X display to drive, e.g. :1 (default $DISPLAY).")
@click.option(
    "--setting",
    "settings",
    multiple=True,
    metavar="KEY=VALUE",
    help="A setting of the driver (repeatable), e.g. --setting width=640 for fake.",
)
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
@click.option(
    "--server-fingerprint",
    default=None,
    metavar="sha256:HEX",
    envvar="REMOTEHANDS_SERVER_FINGERPRINT",
    help="Link only to a server showing this TLS certificate (the enrollment's install "
    "command carries it when the server has TLS).",
)
@click.option(
    "--tls",
    is_flag=True,
    help="Serve the faces over HTTPS with a self-signed certificate kept in --state-dir.",
)
@click.option(
    "--tls-cert",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Serve the faces over HTTPS with this certificate (PEM); with --tls-key.",
)
@click.option(
    "--tls-key",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="The key (PEM) of --tls-cert.",
)
@click.option(
    "--trusted-proxy",
    "trusted_proxies",
    multiple=True,
    metavar="CIDR",
    help="A reverse proxy (address or network) whose X-Forwarded-For the faces believe; "
    "repeatable. Without it forwarding headers are ignored.",
)
@click.option("-v", "--verbose", is_flag=True, help="Log more.")
@click.option("--json", "as_json", is_flag=True, help="Log lines as JSON (for supervisors).")
@click.pass_context
def agent(ctx: click.Context, config_file: Path | None, driver: str, display: str | None,
          settings: tuple[str, ...], listen: str | None, password_file: Path | None, pam: bool,
          server: str | None, token: str | None, name: str | None, state_dir: Path | None,
          server_fingerprint: str | None, tls: bool, tls_cert: Path | None,
          tls_key: Path | None, trusted_proxies: tuple[str, ...], verbose: bool,
          as_json: bool) -> None:  # fmt: skip
    """Serve a device: its native HTTP API (desktopkit-compatible) and/or a link to a server;
    or, with --config, every device a config file lists."""
    from remotehands.agent.runtime import AgentOptions, run_agent

    fmt = ('{"at":"%(asctime)s","level":"%(levelname)s","msg":"%(message)s"}' if as_json
           else "%(asctime)s %(levelname)s %(message)s")  # fmt: skip
    logging.basicConfig(level=logging.INFO if verbose else logging.WARNING, format=fmt)
    if config_file is not None:
        typed = click.core.ParameterSource.COMMANDLINE
        given = [f"--{n.replace('_', '-')}" for n in _DEVICE_OPTIONS
                 if ctx.get_parameter_source(n) is typed]  # fmt: skip
        if given:
            click.echo(f"error: {', '.join(given)} cannot go with --config: put the device in "
                       "the config file", err=True)  # fmt: skip
            sys.exit(2)
        overrides: dict[str, object] = {
            "trusted_proxies": list(trusted_proxies) or None,
            "server_fingerprint": server_fingerprint, "tls": tls or None,
            "tls_cert": tls_cert, "tls_key": tls_key,
        }  # fmt: skip
        _run_config(config_file, state_dir, {k: v for k, v in overrides.items() if v is not None})
        return
    try:
        driver_settings = _parse_settings(settings)
    except click.BadParameter as err:
        click.echo(f"error: {err.message}", err=True)
        sys.exit(2)
    options = AgentOptions(
        driver=driver, display=display, settings=driver_settings, listen=listen,
        password=os.environ.get("REMOTEHANDS_AGENT_PASSWORD") or None,
        password_file=password_file, pam=pam, server=server, token=token, name=name,
        trusted_proxies=list(trusted_proxies), server_fingerprint=server_fingerprint,
        tls=tls, tls_cert=tls_cert, tls_key=tls_key,
    )  # fmt: skip
    if state_dir is not None:
        options.state_dir = state_dir
    try:
        run_until_signal(run_agent(options))
    except RemoteHandsError as err:
        click.echo(f"error: {err.details}", err=True)
        sys.exit(err.exit_code)


def _parse_settings(pairs: tuple[str, ...]) -> dict[str, str]:
    settings: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise click.BadParameter(f"--setting {pair!r} is not KEY=VALUE (e.g. width=640)")
        settings[key.strip()] = value
    return settings


def _run_config(path: Path, state_dir: Path | None, overrides: dict[str, object]) -> None:
    from remotehands.agent.config import load_config
    from remotehands.agent.runtime import Agent

    try:
        config = load_config(path)
        if state_dir is not None:
            config = config.model_copy(update={"state_dir": state_dir})
        if overrides:
            config = config.model_copy(update=overrides)
        run_until_signal(Agent.from_config(config).run())
    except RemoteHandsError as err:
        click.echo(f"error: {err.details}", err=True)
        sys.exit(err.exit_code)
