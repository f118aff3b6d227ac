"""Running the MCP server: connect to the fleet, learn what the token may do, serve."""

from __future__ import annotations

from typing import Literal

from remotehands.client import AsyncFleetClient
from remotehands.errors import ConfigError
from remotehands.mcp.server import build_server

__all__ = ["parse_listen", "serve"]


def parse_listen(value: str) -> tuple[str, int]:
    """``HOST:PORT`` (or ``:PORT`` for 127.0.0.1) as a pair; :class:`ConfigError` otherwise."""
    host, colon, port = value.rpartition(":")
    if not colon or not port.isdigit() or not 0 < int(port) < 65536:
        raise ConfigError(f"--http takes HOST:PORT such as 127.0.0.1:8765, not {value!r}")
    return host.strip("[]") or "127.0.0.1", int(port)


async def serve(
    url: str,
    token: str,
    transport: Literal["stdio", "http"] = "stdio",
    host: str = "127.0.0.1",
    port: int = 8765,
) -> None:
    """Serve MCP for the fleet at ``url`` with ``token`` until cancelled (or stdin closes).

    The token is checked first (``GET /v1/auth/me``), so a bad one fails here, before any
    client connects; the tools offered follow what it may do.
    """
    # device actions over one WebSocket each when the server has them (HTTP otherwise)
    async with AsyncFleetClient(url, token=token, websocket=True) as fleet:
        me = await fleet.me()
        server = build_server(fleet, me)
        if transport == "stdio":
            await server.run_stdio_async()
        else:
            await server.run_streamable_http_async(host=host, port=port)
