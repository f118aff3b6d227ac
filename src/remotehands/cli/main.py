"""The ``remotehands`` command: a thin layer over the client, the server and the agent.

Subcommands live in their own modules and are loaded lazily, so ``remotehands --help`` stays fast
and a role's extras are only imported when its command runs.
"""

from __future__ import annotations

import difflib
import importlib
from typing import Any

import click

from remotehands import __version__

# name -> "module:attribute" of a click command; imported only when used.
_COMMANDS: dict[str, str] = {
    "desktop": "remotehands.cli.desktop_cmd:desktop",
    "agent": "remotehands.cli.agent_cmd:agent",
    "server": "remotehands.cli.server_cmd:server",
    "demo": "remotehands.cli.demo_cmd:demo",
    "mcp": "remotehands.cli.mcp_cmd:mcp",
}
_HELP: dict[str, str] = {
    "desktop": "Run a virtual desktop (Xvfb, a window manager and a terminal).",
    "agent": "Serve a device: the native HTTP API and/or the link to a server.",
    "server": "Run or initialise the fleet server.",
    "demo": "Run the whole system on one machine: server, virtual desktop, enrolled agent.",
    "mcp": "Serve the fleet's devices to AI agents over MCP (stdio or --http HOST:PORT).",
}


# Modules that export ``COMMANDS: dict[name, ("module:attr", help)]``: the device and fleet
# commands. Read on first use of the command table.
_TABLES = (
    "remotehands.cli.verbs",
    "remotehands.cli.actions_cmd",
    "remotehands.cli.audio_cmd",
    "remotehands.cli.devices_cmd",
    "remotehands.cli.login_cmd",
    "remotehands.cli.power_cmd",
    "remotehands.cli.media_cmd",
    "remotehands.cli.switch_cmd",
)
_loaded = False


def _load_tables() -> None:
    global _loaded
    if _loaded:
        return
    _loaded = True
    for module_name in _TABLES:
        table: dict[str, tuple[str, str]] = importlib.import_module(module_name).COMMANDS
        for name, (target, help_text) in table.items():
            _COMMANDS.setdefault(name, target)
            _HELP.setdefault(name, help_text)


def register(name: str, target: str, help_text: str) -> None:
    """Add a lazily imported subcommand (used by the device command table)."""
    _COMMANDS[name] = target
    _HELP[name] = help_text


class _LazyGroup(click.Group):
    def list_commands(self, ctx: click.Context) -> list[str]:
        _load_tables()
        return sorted(_COMMANDS)

    def resolve_command(
        self, ctx: click.Context, args: list[str]
    ) -> tuple[str | None, click.Command | None, list[str]]:
        name = click.utils.make_str(args[0])
        if self.get_command(ctx, name) is None and not name.startswith("-"):
            close = difflib.get_close_matches(name, self.list_commands(ctx), n=3, cutoff=0.6)
            hint = (
                f" Did you mean {', '.join(close[:-1])}{' or ' if close[1:] else ''}{close[-1]}?"
                if close
                else ""
            )
            ctx.fail(f"No such command {name!r}.{hint} (remotehands --help lists them)")
        return super().resolve_command(ctx, args)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        _load_tables()
        target = _COMMANDS.get(cmd_name)
        if target is None:
            return None
        module_name, attr = target.split(":")
        command: click.Command = getattr(importlib.import_module(module_name), attr)
        return command

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        rows = [(name, _HELP.get(name, "")) for name in self.list_commands(ctx)]
        with formatter.section("Commands"):
            formatter.write_dl(rows)


@click.group(cls=_LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="remotehands")
def cli() -> None:
    """remotehands: hands on remote computers for people and AI agents.

    Talk to a standalone agent with --agent URL (or REMOTEHANDS_AGENT_URL) or to a fleet server
    with REMOTEHANDS_URL and REMOTEHANDS_TOKEN. Every command takes --json.

    Exit codes: 0 done, 1 unexpected error, 2 bad settings or arguments (or a missing extra),
    3 not logged in or not allowed, 4 not found, 5 busy or rate limited, 6 unsupported,
    7 device offline, 8 device error, 9 timeout, 130 interrupted.
    """


def main(argv: list[str] | None = None) -> Any:
    """Console-script entry point."""
    return cli.main(args=argv, prog_name="remotehands")
