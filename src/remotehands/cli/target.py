"""Which machine a command talks to: a standalone agent, or a device of a fleet server.

Options beat environment variables, and an agent beats a server:

1. ``--agent URL``, then ``--url URL``;
2. ``REMOTEHANDS_AGENT_URL``, then ``REMOTEHANDS_URL``.

An agent's password is read from the environment variable named by ``--password-env``
(``REMOTEHANDS_AGENT_PASSWORD`` by default) so that it never shows in ``ps``; a token from
``remotehands login --agent`` may be given instead (``REMOTEHANDS_AGENT_TOKEN``). A server needs
a token: ``--token`` or ``REMOTEHANDS_TOKEN``. Device commands on a server name the device
(name or id) as their first argument.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Literal, TypeVar

import click

from remotehands.cli.output import json_option, json_param
from remotehands.client import ActionMethods, AgentClient, FleetClient
from remotehands.errors import AuthError, ConfigError

__all__ = [
    "AGENT_PASSWORD_ENV",
    "AGENT_TOKEN_ENV",
    "AGENT_URL_ENV",
    "DEVICE_META",
    "TOKEN_ENV",
    "URL_ENV",
    "Target",
    "open_fleet",
    "open_hands",
    "resolve_target",
    "server_options",
    "target_kind",
    "target_options",
    "target_params",
]

AGENT_URL_ENV = "REMOTEHANDS_AGENT_URL"
AGENT_PASSWORD_ENV = "REMOTEHANDS_AGENT_PASSWORD"  # noqa: S105 - a variable name
AGENT_TOKEN_ENV = "REMOTEHANDS_AGENT_TOKEN"  # noqa: S105 - a variable name
URL_ENV = "REMOTEHANDS_URL"
TOKEN_ENV = "REMOTEHANDS_TOKEN"  # noqa: S105 - a variable name

DEVICE_META = "remotehands.device"
"""``ctx.meta`` key of the DEVICE a command group took before its subcommand."""

_OPTIONS = "remotehands.target"

F = TypeVar("F", bound=Callable[..., Any])

_NO_TARGET = (
    f"no target: pass --agent URL or set {AGENT_URL_ENV} for a standalone agent, or set "
    f"{URL_ENV} and {TOKEN_ENV} (or pass --url and --token) for a fleet server"
)
_NO_SERVER = f"no server: set {URL_ENV} and {TOKEN_ENV} (or pass --url and --token)"


def _remember(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    # Options live in ctx.meta, shared by a group and its subcommands, so that
    # ``clipboard --agent URL get`` and ``clipboard get --agent URL`` mean the same.
    if value is not None and param.name is not None:
        ctx.meta.setdefault(_OPTIONS, {})[param.name] = value
    return value


_AGENT_OPTIONS: tuple[tuple[tuple[str, ...], str, str], ...] = (
    (("--agent", "agent"), "URL", f"Talk to a standalone agent at URL (env {AGENT_URL_ENV})."),
    (
        ("--password-env", "password_env"),
        "VAR",
        f"Read the agent's password from $VAR (default {AGENT_PASSWORD_ENV}).",
    ),
)
_SERVER_OPTIONS: tuple[tuple[tuple[str, ...], str, str], ...] = (
    (("--url", "url"), "URL", f"The fleet server's URL (env {URL_ENV})."),
    (
        ("--token", "token"),
        "TOKEN",
        f"API or session token (env {TOKEN_ENV}; {AGENT_TOKEN_ENV} for an agent).",
    ),
)


def _params(table: tuple[tuple[tuple[str, ...], str, str], ...]) -> list[click.Parameter]:
    return [
        click.Option(list(decls), metavar=metavar, help=help_text, expose_value=False,
                     callback=_remember)
        for decls, metavar, help_text in table
    ]  # fmt: skip


def _decorate(fn: F, table: tuple[tuple[tuple[str, ...], str, str], ...]) -> F:
    for decls, metavar, help_text in reversed(table):
        fn = click.option(
            *decls, metavar=metavar, help=help_text, expose_value=False, callback=_remember
        )(fn)
    return fn


def target_params(*, agent: bool = True) -> list[click.Parameter]:
    """The options choosing a target (the agent ones unless ``agent`` is false), and --json."""
    params = _params(_AGENT_OPTIONS) if agent else []
    return [*params, *_params(_SERVER_OPTIONS), json_param()]


def target_options(fn: F) -> F:
    """Decorator form of :func:`target_params`."""
    return _decorate(_decorate(json_option(fn), _SERVER_OPTIONS), _AGENT_OPTIONS)


def server_options(fn: F) -> F:
    """Decorator form of ``target_params(agent=False)``: ``--url``, ``--token``, ``--json``."""
    return _decorate(json_option(fn), _SERVER_OPTIONS)


@dataclass(frozen=True, slots=True)
class Target:
    """Where a command goes: ``agent`` (a standalone agent) or ``server`` (a fleet)."""

    kind: Literal["agent", "server"]
    url: str
    token: str | None = None
    password: str | None = None


def _given() -> dict[str, str]:
    ctx = click.get_current_context()
    given: dict[str, str] = ctx.meta.get(_OPTIONS, {})
    return given


def resolve_target(*, agent: bool = True) -> Target:
    """The target chosen by options and environment; only a server when ``agent`` is false.

    Raises :class:`ConfigError` saying exactly what to set when something is missing.
    """
    given = _given()
    env = os.environ
    agent_url = given.get("agent") if agent else None
    if agent and agent_url is None and "url" not in given:
        agent_url = env.get(AGENT_URL_ENV) or None
    if agent_url is not None:
        variable = given.get("password_env", AGENT_PASSWORD_ENV)
        password = env.get(variable) or None
        if password is None and "password_env" in given:
            raise ConfigError(f"--password-env {variable}: ${variable} is not set")
        token = given.get("token") or env.get(AGENT_TOKEN_ENV) or None
        return Target("agent", agent_url, token=token, password=password)
    url = given.get("url") or env.get(URL_ENV) or None
    if url is None:
        raise ConfigError(_NO_TARGET if agent else _NO_SERVER)
    token = given.get("token") or env.get(TOKEN_ENV) or None
    if token is None:
        raise ConfigError(
            f"no token for the server at {url}: set {TOKEN_ENV} (`remotehands login` prints "
            "one) or pass --token"
        )
    return Target("server", url, token=token)


def target_kind() -> Literal["agent", "server"] | None:
    """What :func:`resolve_target` would choose, without complaining about what is missing."""
    given = _given()
    if "agent" in given:
        return "agent"
    if "url" in given:
        return "server"
    if os.environ.get(AGENT_URL_ENV):
        return "agent"
    return "server" if os.environ.get(URL_ENV) else None


def _auth_hint(target: Target) -> str:
    if target.kind == "server":
        return f"check {TOKEN_ENV} (`remotehands login` prints a fresh one)"
    if target.password is None and target.token is None:
        return f"set {AGENT_PASSWORD_ENV} (or name another variable with --password-env)"
    return f"check the agent's password (${AGENT_PASSWORD_ENV}) or {AGENT_TOKEN_ENV}"


@contextmanager
def _hinting(target: Target) -> Iterator[None]:
    try:
        yield
    except AuthError as err:
        raise AuthError(f"{err.details} — {_auth_hint(target)}") from err


def _named_on_agent(target: Target, device: str) -> click.UsageError:
    return click.UsageError(
        f"{device!r}: a DEVICE is named only on a fleet server; {target.url} is the agent of "
        "one device"
    )


_NO_DEVICE = "name the DEVICE (a name or an id) first: `remotehands devices` lists them"


@contextmanager
def open_hands(target: Target, device: str | None) -> Iterator[ActionMethods[Any]]:
    """The actions of ``device`` on a server, or of the agent itself (``device`` is None)."""
    with _hinting(target):
        if target.kind == "agent":
            if device is not None:
                raise _named_on_agent(target, device)
            with AgentClient(target.url, password=target.password, token=target.token) as agent:
                yield agent
            return
        if device is None:
            raise click.UsageError(_NO_DEVICE)
        with FleetClient(target.url, token=target.token) as fleet:
            yield fleet.device(device)


@contextmanager
def open_fleet() -> Iterator[FleetClient]:
    """A client of the server chosen by ``--url``/``--token`` or the environment."""
    target = resolve_target(agent=False)
    with _hinting(target), FleetClient(target.url, token=target.token) as fleet:
        yield fleet
