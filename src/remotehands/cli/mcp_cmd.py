"""``remotehands mcp``: serve the fleet's devices to an AI agent over MCP.

REMOTEHANDS_URL=https://hands.example.com REMOTEHANDS_TOKEN=... remotehands mcp
remotehands mcp --http 127.0.0.1:8765      # streamable HTTP at http://127.0.0.1:8765/mcp
"""

from __future__ import annotations

import asyncio

import click

from remotehands.cli.output import reports_errors
from remotehands.cli.target import resolve_target, server_options
from remotehands.errors import ConfigError

__all__ = ["mcp"]


@click.command("mcp", context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--http",
    "listen",
    metavar="HOST:PORT",
    help="Serve streamable HTTP here (path /mcp) instead of stdio.",
)
@server_options
@reports_errors
def mcp(listen: str | None) -> None:
    """Serve MCP (stdio by default) for the fleet at REMOTEHANDS_URL with REMOTEHANDS_TOKEN.

    The tools are those the token may use: devices, screenshot, find_text, wait_for_text,
    windows, apps for any token; click, move, drag, scroll, type, key, clipboard, act and
    click_text too when it may control devices; power and media where the fleet has them.
    """
    try:
        from remotehands.mcp.run import parse_listen, serve
    except ImportError as err:
        raise ConfigError(
            f"the MCP server needs the mcp extra: pip install 'remotehands[mcp]' ({err})"
        ) from err
    target = resolve_target(agent=False)
    assert target.token is not None  # resolve_target insists on one for a server
    if listen is None:
        asyncio.run(serve(target.url, target.token))
    else:
        host, port = parse_listen(listen)
        click.echo(f"serving MCP on http://{host}:{port}/mcp", err=True)
        asyncio.run(serve(target.url, target.token, "http", host, port))
