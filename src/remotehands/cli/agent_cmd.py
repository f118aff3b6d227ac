"""``remotehands agent``: serve a device."""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path
from typing import Any

import click

from remotehands.cli.extras import require_extras
from remotehands.cli.service_cmd import agent_install_service
from remotehands.cli.signals import run_until_signal
from remotehands.errors import RemoteHandsError

EXAMPLES = """
\b
Examples:
  # a standalone agent on display :1, native API on 127.0.0.1:8082
  REMOTEHANDS_AGENT_PASSWORD=secret remotehands agent --driver x11 --display :1
  # enroll with a fleet server once, then keep the link up
  remotehands agent --server http://fleet:8080 --token ekvent_... --driver x11 --display :1
  # OS power by the operator's commands (without one, restart/shutdown are logged dry runs)
  remotehands agent --display :1 --power-command restart='systemctl reboot'
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
                   "name", "server", "faces", "device_url", "device_user",
                   "device_totp_file", "tinypilot_open", "pikvm_user",
                   "power_commands", "openctrol_allow_ha_id")  # fmt: skip


@click.group(epilog=EXAMPLES, invoke_without_command=True)
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
    help="Device driver: x11 (a Linux X desktop), pikvm (a PiKVM at --device-url), tinypilot "
    "(a TinyPilot KVM at --device-url) or fake (in-memory, for trials).",
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
    "--power-command",
    "power_commands",
    multiple=True,
    metavar="ACTION=CMD",
    help="The command that restarts or shuts down this machine (x11 driver; repeatable): "
    "--power-command restart='systemctl reboot' --power-command shutdown='systemctl poweroff'. "
    "Without one, that action is a dry run that only logs.",
)
@click.option(
    "--device-url",
    default=None,
    metavar="URL",
    help="Address of the device a network driver fronts (its url setting), e.g. "
    "https://pikvm.local; its password or key comes from REMOTEHANDS_DEVICE_PASSWORD.",
)
@click.option(
    "--device-user",
    default=None,
    metavar="USER",
    help="User to log in to the device as (its user setting).",
)
@click.option(
    "--device-totp-file",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="File holding the device's TOTP secret, for a device with two-factor sign-in.",
)
@click.option(
    "--face",
    "faces",
    multiple=True,
    metavar="NAME",
    help="Also serve this face beside the native one, on the same listener (repeatable).",
)
@click.option(
    "--tinypilot-open",
    is_flag=True,
    help="With --face tinypilot: hand out TinyPilot API tokens (POST /api/v1/auth) without "
    "credentials to any client, not only to this machine's (TinyPilot's passwordless mode).",
)
@click.option(
    "--pikvm-user",
    default=None,
    metavar="USER",
    help="The user the PiKVM face (--face pikvm) signs in with the agent's password "
    "(default admin).",
)
@click.option(
    "--openctrol-allow-ha-id",
    multiple=True,
    metavar="ID",
    help="A Home Assistant id the openctrol face issues desktop sessions to (repeatable); "
    "without one it refuses every session. Its API key is the agent's password, or "
    "$REMOTEHANDS_OPENCTROL_KEY.",
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
@click.option("-v", "--verbose", is_flag=True, help="Log debug lines too (default: info and up).")
@click.option("--json", "as_json", is_flag=True, help="Log lines as JSON (for supervisors).")
@click.pass_context
def agent(ctx: click.Context, config_file: Path | None, driver: str, display: str | None,
          settings: tuple[str, ...], power_commands: tuple[str, ...],
          device_url: str | None, device_user: str | None,
          device_totp_file: Path | None, faces: tuple[str, ...], tinypilot_open: bool,
          pikvm_user: str | None, openctrol_allow_ha_id: tuple[str, ...],
          listen: str | None, password_file: Path | None, pam: bool,
          server: str | None, token: str | None, name: str | None, state_dir: Path | None,
          server_fingerprint: str | None, tls: bool, tls_cert: Path | None,
          tls_key: Path | None, trusted_proxies: tuple[str, ...], verbose: bool,
          as_json: bool) -> None:  # fmt: skip
    """Serve a device: its native HTTP API (desktopkit-compatible) and/or a link to a server;
    or, with --config, every device a config file lists."""
    if ctx.invoked_subcommand is not None:
        return
    require_extras("agent", "agent")
    from remotehands.agent.runtime import AgentOptions, run_agent
    from remotehands.cli.logs import configure_logging

    configure_logging(logging.DEBUG if verbose else logging.INFO, as_json)
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
        driver_settings: dict[str, Any] = dict(_parse_settings(settings))
        if power_commands:
            driver_settings["power_commands"] = _parse_power_commands(power_commands)
    except click.BadParameter as err:
        click.echo(f"error: {err.message}", err=True)
        sys.exit(2)
    driver_settings.update(_device_settings(device_url, device_user, device_totp_file))
    if openctrol_allow_ha_id and "openctrol" not in faces:
        click.echo("error: --openctrol-allow-ha-id is for the openctrol face: add --face "
                   "openctrol", err=True)  # fmt: skip
        sys.exit(2)
    options = AgentOptions(
        driver=driver, display=display, settings=driver_settings, listen=listen,
        password=os.environ.get("REMOTEHANDS_AGENT_PASSWORD") or None,
        password_file=password_file, pam=pam, server=server, token=token, name=name,
        faces=list(dict.fromkeys(("native", *faces))),
        face_settings=_face_settings(pikvm_user, tinypilot_open, openctrol_allow_ha_id),
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


def _device_settings(url: str | None, user: str | None, totp_file: Path | None) -> dict[str, Any]:
    """The settings of a network driver (:class:`~remotehands.drivers.remote.RemoteSettings`)
    that the ``--device-*`` options give; the password is named by its variable, never
    copied."""
    from remotehands.drivers.remote import DEVICE_PASSWORD_ENV

    found: dict[str, Any] = {}
    if url is not None:
        found["url"] = url
    if user is not None:
        found["user"] = user
    if totp_file is not None:
        found["totp_file"] = str(totp_file)
    if url is not None and os.environ.get(DEVICE_PASSWORD_ENV):
        found["password_env"] = DEVICE_PASSWORD_ENV
    return found


def _face_settings(
    pikvm_user: str | None, tinypilot_open: bool, allow_ha_ids: tuple[str, ...]
) -> dict[str, dict[str, Any]]:
    """The faces' own settings that their command-line options give."""
    found: dict[str, dict[str, Any]] = {}
    if pikvm_user:
        found["pikvm"] = {"user": pikvm_user}
    if tinypilot_open:
        found["tinypilot"] = {"open": True}
    if allow_ha_ids:
        found["openctrol"] = {"allow_ha_ids": list(dict.fromkeys(allow_ha_ids))}
    return found


def _parse_settings(pairs: tuple[str, ...]) -> dict[str, str]:
    settings: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise click.BadParameter(f"--setting {pair!r} is not KEY=VALUE (e.g. width=640)")
        settings[key.strip()] = value
    return settings


def _parse_power_commands(pairs: tuple[str, ...]) -> dict[str, str]:
    commands: dict[str, str] = {}
    for pair in pairs:
        action, sep, command = pair.partition("=")
        if not sep or action.strip() not in ("restart", "shutdown") or not command.strip():
            raise click.BadParameter(
                f"--power-command {pair!r} is not restart=CMD or shutdown=CMD "
                "(e.g. restart='systemctl reboot')"
            )
        commands[action.strip()] = command
    return commands


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


agent.add_command(agent_install_service)
