"""``remotehands login``: trade a username and password for a token to export.

The output is shell, so ``eval "$(remotehands login)"`` sets the variables that every other
command reads; prompts go to stderr so they stay out of it.
"""

from __future__ import annotations

import os
import shlex

import click

from remotehands.cli.output import emit, json_option, reports_errors
from remotehands.cli.target import (
    AGENT_PASSWORD_ENV,
    AGENT_TOKEN_ENV,
    AGENT_URL_ENV,
    TOKEN_ENV,
    URL_ENV,
)
from remotehands.client import AgentClient, FleetClient
from remotehands.errors import AuthError, ConfigError

__all__ = ["COMMANDS", "login"]

COMMANDS: dict[str, tuple[str, str]] = {
    "login": (
        "remotehands.cli.login_cmd:login",
        "Log in to a server (or an agent) and print the token to export.",
    ),
}
"""Command name -> ("module:attribute", one-line help), for ``remotehands.cli.main``."""

USERNAME_ENV = "REMOTEHANDS_USERNAME"
PASSWORD_ENV = "REMOTEHANDS_PASSWORD"  # noqa: S105 - a variable name


def _secret(variable: str | None, default_variable: str, prompt: str) -> str:
    if variable is not None:
        value = os.environ.get(variable)
        if not value:
            raise ConfigError(f"--password-env {variable}: ${variable} is not set")
        return value
    value = os.environ.get(default_variable)
    if value:
        return value
    password: str = click.prompt(prompt, hide_input=True, err=True)
    return password


def _exports(pairs: list[tuple[str, str]], expires_in_s: object) -> str:
    lines = [f"export {name}={shlex.quote(value)}" for name, value in pairs]
    if isinstance(expires_in_s, int | float):
        lines.append(f"# valid for {expires_in_s / 3600:g} h")
    return "\n".join(lines)


@click.command("login", context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--url", metavar="URL", help=f"The server (env {URL_ENV}).")
@click.option(
    "--agent", metavar="URL", help=f"Log in to a standalone agent instead (env {AGENT_URL_ENV})."
)
@click.option("--username", metavar="NAME", help=f"Default ${USERNAME_ENV}, else asked.")
@click.option(
    "--password-env",
    metavar="VAR",
    help=f"Read the password from $VAR (default ${PASSWORD_ENV}, ${AGENT_PASSWORD_ENV} for an "
    "agent; else asked).",
)
@json_option
@reports_errors
def login(
    url: str | None, agent: str | None, username: str | None, password_env: str | None
) -> None:
    """Log in and print the variables to export (the token is valid for hours).

    \b
    Examples:
      eval "$(remotehands login --url https://hands.example.com --username alice)"
      eval "$(remotehands login --agent http://127.0.0.1:8082)"
    """
    if agent is None and url is None and os.environ.get(AGENT_URL_ENV):
        agent = os.environ[AGENT_URL_ENV]
    if agent is not None:
        password = _secret(password_env, AGENT_PASSWORD_ENV, f"Password of the agent at {agent}")
        with AgentClient(agent, password=password) as agent_client:
            answer = agent_client.login()
        base_url = agent_client.base_url
        exports = [(AGENT_URL_ENV, base_url), (AGENT_TOKEN_ENV, str(answer["token"]))]
    else:
        url = url or os.environ.get(URL_ENV)
        if not url:
            raise ConfigError(
                f"no server: pass --url URL or set {URL_ENV} (or --agent URL for an agent)"
            )
        username = username or os.environ.get(USERNAME_ENV)
        if not username:
            username = str(click.prompt("Username", err=True))
        password = _secret(password_env, PASSWORD_ENV, f"Password of {username}")
        with FleetClient(url, username=username, password=password) as fleet:
            try:
                answer = fleet.login()
            except AuthError as err:
                if "second factor" not in err.details:
                    raise
                fleet.totp = str(click.prompt("Authentication code", err=True)).strip()
                answer = fleet.login()
        base_url = fleet.base_url
        exports = [(URL_ENV, base_url), (TOKEN_ENV, str(answer["token"]))]
    emit(
        {**answer, "url": base_url, "env": dict(exports)},
        _exports(exports, answer.get("expires_in_s")),
    )
