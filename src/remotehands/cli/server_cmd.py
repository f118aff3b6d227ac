"""``remotehands server``: run the fleet server, or initialise its database and owner."""

from __future__ import annotations

import asyncio
import functools
import json
import logging
import os
import socket
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click

from remotehands.cli.extras import require_extras
from remotehands.cli.service_cmd import server_install_service
from remotehands.errors import ConfigError, RemoteHandsError

__all__ = ["server"]

F = TypeVar("F", bound=Callable[..., Any])

_EPILOG = """\b
Examples:
  remotehands server init --data /var/lib/remotehands --owner alice
  remotehands server --data /var/lib/remotehands --listen 0.0.0.0:8080 \\
      --public-url https://fleet.example.com

\b
Every option can also come from the environment (REMOTEHANDS_DATA_DIR, REMOTEHANDS_LISTEN,
REMOTEHANDS_PUBLIC_URL, REMOTEHANDS_DATABASE_URL, ...) or a TOML file (--config).
"""


def _friendly(func: F) -> F:
    """Turn remotehands errors into a one-line message and the error's exit code."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except RemoteHandsError as err:
            click.echo(f"remotehands server: {err.details}", err=True)
            sys.exit(err.exit_code)
        except KeyboardInterrupt:
            sys.exit(130)

    return wrapper  # type: ignore[return-value]  # functools.wraps keeps the signature


def _load_settings(ctx: click.Context, **overrides: Any) -> Any:
    from remotehands.server.settings import ServerSettings

    parent: dict[str, Any] = ctx.obj or {}
    merged = {**parent, **{k: v for k, v in overrides.items() if v is not None}}
    config = merged.pop("config", None)
    return ServerSettings.load(config, **merged)


@click.group(
    "server",
    invoke_without_command=True,
    epilog=_EPILOG,
    context_settings={"help_option_names": ["-h", "--help"]},
)
@click.option(
    "--data",
    "data_dir",
    type=click.Path(file_okay=False, path_type=Path),
    help="Directory for the SQLite database and other state [default: ./data].",
)
@click.option(
    "--listen", metavar="HOST:PORT", help="Address to serve on [default: 127.0.0.1:8080]."
)
@click.option(
    "--public-url",
    metavar="URL",
    help="URL agents and people reach the server at [default: http://LISTEN].",
)
@click.option(
    "--database-url",
    metavar="URL",
    help="postgresql://user:password@host/db, or sqlite:///path [default: SQLite in --data].",
)
@click.option(
    "--nats-url",
    metavar="URL",
    help="nats://host:4222: run as one replica of a fleet sharing a PostgreSQL database "
    "[default: alone, no NATS].",
)
@click.option(
    "--replica-id",
    metavar="NAME",
    help="This replica's name in NATS subjects and metrics [default: HOST-PID].",
)
@click.option(
    "--config",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    envvar="REMOTEHANDS_CONFIG",
    help="TOML file with settings (env: REMOTEHANDS_CONFIG).",
)
@click.option(
    "--tls",
    is_flag=True,
    default=None,
    help="Serve HTTPS with a self-signed certificate kept in the data directory (made once, "
    "reused); agents pin its fingerprint, which enrollment install commands carry.",
)
@click.option(
    "--tls-cert",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Serve HTTPS with this certificate (PEM); with --tls-key.",
)
@click.option(
    "--tls-key",
    type=click.Path(dir_okay=False, path_type=Path),
    help="The key (PEM) of --tls-cert.",
)
@click.option(
    "--trusted-proxy",
    "trusted_proxies",
    multiple=True,
    metavar="CIDR",
    help="A reverse proxy (address or network) whose X-Forwarded-For is believed; "
    "repeatable. Without it forwarding headers are ignored.",
)
@click.option(
    "--log-level",
    type=click.Choice(["debug", "info", "warning", "error"]),
    default="info",
    show_default=True,
    help="How much the server logs.",
)
@click.option(
    "--json",
    "as_json",
    is_flag=True,
    help='Announce the server as one JSON line ({"url", "data_dir", "database"}) and log '
    "JSON lines (for supervisors).",
)
@click.pass_context
@_friendly
def server(
    ctx: click.Context,
    data_dir: Path | None,
    listen: str | None,
    public_url: str | None,
    database_url: str | None,
    nats_url: str | None,
    replica_id: str | None,
    config: Path | None,
    tls: bool | None,
    tls_cert: Path | None,
    tls_key: Path | None,
    trusted_proxies: tuple[str, ...],
    log_level: str,
    as_json: bool,
) -> None:
    """Run the fleet server: REST API, agent links, events and metrics.

    Without a subcommand it serves until interrupted. Create the database and the owner first
    with `remotehands server init`.
    """
    ctx.obj = {
        "data_dir": data_dir,
        "listen": listen,
        "public_url": public_url,
        "database_url": database_url,
        "nats_url": nats_url,
        "replica_id": replica_id,
        "config": config,
        "trusted_proxies": list(trusted_proxies) or None,
        "tls": tls,
        "tls_cert": tls_cert,
        "tls_key": tls_key,
    }
    if ctx.invoked_subcommand in (None, "init"):
        require_extras("server" if ctx.invoked_subcommand is None else "server init", "server")
    if ctx.invoked_subcommand is not None:
        return
    _serve(_load_settings(ctx), log_level, as_json)


def _bind(host: str, port: int) -> socket.socket:
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as err:
        raise ConfigError(f"cannot resolve the listen host {host!r}: {err}") from err
    family, kind, proto, _, address = infos[0]
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
        # Listening now queues connections until uvicorn accepts them, so the URL printed
        # before it starts can be used at once.
        sock.listen(2048)
    except OSError as err:
        sock.close()
        raise ConfigError(f"cannot listen on {host}:{port}: {err.strerror}") from err
    sock.set_inheritable(True)
    return sock


async def _prepare(settings: Any) -> bool:
    """Migrate the database before serving (so that a bad URL fails with a clear message);
    returns whether an owner exists."""
    from sqlalchemy import select

    from remotehands.private import private_dir
    from remotehands.server.db.engine import Database
    from remotehands.server.db.models import User

    try:
        private_dir(settings.data_dir)
    except OSError as err:
        raise ConfigError(
            f"cannot create the data directory {settings.data_dir}: {err.strerror}; choose "
            "another --data, or let the user running the server write there"
        ) from err
    try:
        async with await Database.open(settings.db_url) as db, db.session() as session:
            owner = await session.scalar(select(User.id).where(User.role == "owner").limit(1))
    except ConfigError as err:
        if not settings.db_url.startswith("postgresql"):
            raise
        raise ConfigError(
            f"{err.details}; start PostgreSQL there (or check its address, user and password), "
            "or correct --database-url / REMOTEHANDS_DATABASE_URL"
        ) from err
    if settings.nats_url is not None:
        from remotehands.server.cluster.connection import NatsConnection

        # the same check the server makes at start, before the URL is announced
        async with NatsConnection(settings.nats_url, "preflight"):
            pass
    return owner is not None


def _serve(settings: Any, log_level: str, as_json: bool = False) -> None:
    import uvicorn

    from remotehands.protocol.link import LINK_PATH
    from remotehands.server.app import announce_shutdown, create_app
    from remotehands.server.link.ws import AgentLinkRoute
    from remotehands.server.tuning import raise_open_files_limit, tune_gc
    from remotehands.serving import (
        GracefulServer,
        HeaderTimeoutProtocol,
        parse_listen,
        proxy_options,
        websocket_protocol,
    )

    files = raise_open_files_limit()
    if files.short:
        click.echo(f"remotehands server: {files.advice()}", err=True)
    host, port = parse_listen(settings.listen)
    sock = _bind(host, port)
    bound_port = sock.getsockname()[1]
    if bound_port != port:  # port 0: the system chose one
        shown_host = f"[{host}]" if ":" in host else host
        listen = f"{shown_host}:{bound_port}"
        update: dict[str, Any] = {"listen": listen}
        for scheme in ("http", "https"):
            if settings.public_url == f"{scheme}://{settings.listen}":
                update["public_url"] = f"{scheme}://{listen}"
        settings = settings.model_copy(update=update)
    try:
        has_owner = asyncio.run(_prepare(settings))
        tls = settings.tls_files()
    except BaseException:
        sock.close()
        raise
    if not has_owner:
        click.echo(
            "remotehands server: no owner yet; create one with "
            f"`remotehands server init --data {settings.data_dir}`",
            err=True,
        )
    app = create_app(settings)
    config = uvicorn.Config(
        AgentLinkRoute(app, fleet=app),  # the agent links past every layer of the app
        loop="uvloop",
        http=HeaderTimeoutProtocol,
        # websockets' sans-I/O protocol (uvicorn's legacy one is deprecated); the agent link
        # has its heartbeat as its one keepalive, without uvicorn's ping beside it
        ws=websocket_protocol(keepalive_exempt=[LINK_PATH]),
        ws_per_message_deflate=False,  # the agent link carries images: compression is off
        log_level=log_level,
        **proxy_options(settings.trusted_proxies),
        timeout_graceful_shutdown=5,
        lifespan="on",
        # with --json uvicorn's loggers get no handlers of their own: their records reach the
        # JSON handler on the root logger (credentials masked there too)
        log_config=None if as_json else uvicorn.config.LOGGING_CONFIG,
        **(tls.uvicorn_options() if tls is not None else {}),
    )
    if as_json:
        from remotehands.cli.logs import configure_logging

        configure_logging(getattr(logging, log_level.upper()), as_json=True)
    # each agent hears when to come back before uvicorn closes the links (SIGTERM, Ctrl-C);
    # once started, what is alive is frozen out of the garbage collector's scans
    instance = GracefulServer(
        config,
        before_shutdown=functools.partial(announce_shutdown, app),
        after_startup=tune_gc,
    )
    if as_json:
        from remotehands.server.db.engine import safe_url

        click.echo(json.dumps({"url": settings.base_url, "data_dir": str(settings.data_dir),
                               "database": safe_url(settings.db_url),
                               "fingerprint": tls.fingerprint if tls else None}))  # fmt: skip
    else:
        click.echo(f"remotehands server: serving {settings.base_url} (data in {settings.data_dir})")
        if tls is not None:
            click.echo(f"remotehands server: TLS certificate {tls.fingerprint}")
    sys.stdout.flush()
    instance.run(sockets=[sock])
    if not instance.started:
        raise ConfigError("the server failed to start; see the log above")


@server.command("init", epilog=_EPILOG)
@click.option(
    "--data",
    "data_dir",
    type=click.Path(file_okay=False, path_type=Path),
    help="Directory for the SQLite database [default: ./data, or the server's --data].",
)
@click.option(
    "--owner",
    default="owner",
    show_default=True,
    help="Username of the owner (the one user with every right).",
)
@click.option("--database-url", metavar="URL", help="PostgreSQL or SQLite URL (see `server`).")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
@click.pass_context
@_friendly
def init(
    ctx: click.Context,
    data_dir: Path | None,
    owner: str,
    database_url: str | None,
    as_json: bool,
) -> None:
    """Create the database and the owner.

    The owner's password comes from REMOTEHANDS_OWNER_PASSWORD, or is generated and printed
    once. When an owner exists already nothing is changed (and it says so).
    """
    from remotehands.server.db.bootstrap import initialise

    settings = _load_settings(ctx, data_dir=data_dir, database_url=database_url)
    password = os.environ.get("REMOTEHANDS_OWNER_PASSWORD") or None
    result = asyncio.run(initialise(settings, owner, password))
    if as_json:
        click.echo(
            json.dumps(
                {
                    "created": result.created,
                    "owner": result.owner,
                    "password": result.password,
                    "data_dir": str(settings.data_dir),
                    "database": result.database,
                }
            )
        )
        return
    if not result.created:
        click.echo(
            f"An owner exists already ({result.owner}) in {result.database}; nothing changed.",
        )
        return
    click.echo(f"Database ready: {result.database}")
    click.echo(f"Owner: {result.owner}")
    if result.password is not None:
        click.echo(f"Password: {result.password}")
        click.echo("  (shown only now: keep it somewhere safe)")
    else:
        click.echo("Password: from REMOTEHANDS_OWNER_PASSWORD")
    click.echo(f"Start the server: remotehands server --data {settings.data_dir}")


server.add_command(server_install_service)
