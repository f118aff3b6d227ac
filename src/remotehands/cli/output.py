"""What commands print: tables or ``--json``, and errors as one line on stderr.

Every command takes ``--json`` (:func:`json_option`) and prints its data through :func:`emit`:
JSON on stdout with ``--json``, a line or a table otherwise. A :class:`RemoteHandsError` ends
the command through :func:`fail`: ``error: <details>`` on stderr (plus the wire form
``{"error", "details"}`` on stdout with ``--json``) and the error's exit code, never a
traceback.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping, Sequence
from typing import Any, NoReturn, ParamSpec, TypeVar

import click
import orjson

from remotehands.errors import RemoteHandsError
from remotehands.protocol.encoding import jsonable

__all__ = [
    "Column",
    "dump_json",
    "emit",
    "fail",
    "human_size",
    "json_mode",
    "json_option",
    "json_param",
    "reports_errors",
    "table",
]

_JSON = "remotehands.json"

P = ParamSpec("P")
T = TypeVar("T")
F = TypeVar("F", bound=Callable[..., Any])

Column = tuple[str, str | Callable[[Mapping[str, Any]], Any]]
"""A table column: its header and the row key (or a function of the row) that fills it."""


def _set_json(ctx: click.Context, param: click.Parameter, value: bool) -> bool:
    if value:
        ctx.meta[_JSON] = True
    return value


_JSON_DECLS = ("--json", "as_json")
_JSON_ATTRS: dict[str, Any] = {
    "is_flag": True,
    "expose_value": False,
    "is_eager": True,
    "callback": _set_json,
    "help": "Print machine-readable JSON instead of text.",
}


def json_param() -> click.Option:
    """A ``--json`` option (on a group, its subcommands print JSON too)."""
    return click.Option(list(_JSON_DECLS), **_JSON_ATTRS)


def json_option(fn: F) -> F:
    """Decorator form of :func:`json_param`."""
    return click.option(*_JSON_DECLS, **_JSON_ATTRS)(fn)


def json_mode() -> bool:
    """Whether ``--json`` was given to the running command or its group."""
    ctx = click.get_current_context(silent=True)
    return bool(ctx is not None and ctx.meta.get(_JSON))


def dump_json(data: Any) -> str:
    """``data`` as indented JSON (bytes as base64, datetimes as ISO 8601)."""
    return orjson.dumps(jsonable(data), option=orjson.OPT_INDENT_2).decode()


def emit(data: Any, human: str | Callable[[], None] | None = None) -> None:
    """Print ``data`` as JSON with ``--json``; otherwise print ``human`` (a text, or a function
    that prints), or the JSON when there is no human form."""
    if json_mode():
        click.echo(dump_json(data))
    elif callable(human):
        human()
    elif human is not None:
        click.echo(human)
    else:
        click.echo(dump_json(data))


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, list | tuple):
        return ",".join(_cell(v) for v in value) or "-"
    if isinstance(value, dict):
        return " ".join(f"{k}={_cell(v)}" for k, v in value.items())
    return str(value)


def table(rows: Sequence[Mapping[str, Any]], columns: Sequence[Column], empty: str) -> None:
    """Print ``rows`` as aligned columns, or ``empty`` when there are none."""
    if not rows:
        click.echo(empty)
        return
    cells = [[h for h, _ in columns]]
    for row in rows:
        cells.append([_cell(key(row) if callable(key) else row.get(key)) for _, key in columns])
    widths = [max(len(line[i]) for line in cells) for i in range(len(columns))]
    for line in cells:
        padded = [cell.ljust(width) for cell, width in zip(line[:-1], widths, strict=False)]
        click.echo("  ".join([*padded, line[-1]]).rstrip())


def human_size(size: int) -> str:
    """``183.4 KiB`` for 187802 bytes."""
    if size < 1024:
        return f"{size} B"
    if size < 1024 * 1024:
        return f"{size / 1024:.1f} KiB"
    return f"{size / (1024 * 1024):.1f} MiB"


def fail(err: RemoteHandsError, *, echo_json: bool = True) -> NoReturn:
    """End the command because of ``err``: one line on stderr, the error's exit code (and with
    ``--json`` the error's wire form on stdout, unless the command already printed its JSON)."""
    if echo_json and json_mode():
        click.echo(dump_json(err.to_wire()))
    click.echo(f"error: {err.details}", err=True)
    raise click.exceptions.Exit(err.exit_code)


def reports_errors(fn: Callable[P, T]) -> Callable[P, T]:
    """Turn :class:`RemoteHandsError` raised by a command into :func:`fail`."""

    @functools.wraps(fn)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> T:
        try:
            return fn(*args, **kwargs)
        except RemoteHandsError as err:
            fail(err)

    return wrapper
