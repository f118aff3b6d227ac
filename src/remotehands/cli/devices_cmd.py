"""Fleet commands: ``remotehands devices``, ``device``, ``enroll``, ``tokens``, ``users``, ``audit``
and ``bulk``, on the server chosen by ``--url``/``--token`` or ``REMOTEHANDS_URL`` and
``REMOTEHANDS_TOKEN``."""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import click
import orjson

from remotehands.cli.output import Column, emit, fail, human_size, reports_errors, table
from remotehands.cli.target import open_fleet, server_options
from remotehands.errors import ConfigError, ValidationError, error_from_wire
from remotehands.protocol.roles import ROLES

__all__ = ["COMMANDS"]

COMMANDS: dict[str, tuple[str, str]] = {
    name: (f"remotehands.cli.devices_cmd:{attr}", help_text)
    for name, attr, help_text in (
        ("devices", "devices", "List the fleet's devices (filter by status, tag, name)."),
        ("device", "device", "Show, rename, tag or delete one device."),
        ("enroll", "enroll", "Make a single-use token that enrolls a new device."),
        ("bulk", "bulk", "Run one action on many devices (by tag, id or status)."),
        ("tokens", "tokens", "List, create and revoke API tokens."),
        ("users", "users", "List, create, update and delete users."),
        ("audit", "audit", "Show who did what on which device."),
    )
}
"""Command name -> ("module:attribute", one-line help), for ``remotehands.cli.main``."""

_SETTINGS = {"help_option_names": ["-h", "--help"]}
ASSIGNABLE = ("admin", "operator", "viewer")  # the owner is made by `server init`, not here


def fleet_command(
    name: str, parent: click.Group | None = None
) -> Callable[[Callable[..., None]], click.Command]:
    """A command of the server: ``--url``, ``--token``, ``--json`` and error reporting."""

    def decorate(fn: Callable[..., None]) -> click.Command:
        make = parent.command if parent is not None else click.command
        command: click.Command = make(name, context_settings=_SETTINGS)(
            server_options(reports_errors(fn))
        )
        return command

    return decorate


def fleet_group(name: str) -> Callable[[Callable[[], None]], click.Group]:
    """A group of server commands; its options reach its subcommands."""

    def decorate(fn: Callable[[], None]) -> click.Group:
        return click.group(name, context_settings=_SETTINGS)(server_options(fn))

    return decorate


def _ago(value: str | None, option: str = "--since") -> str | None:
    """``15m``, ``2h``, ``7d`` as an ISO time that long ago; an ISO 8601 time as given; anything
    else a usage error naming the forms taken."""
    if value is None:
        return None
    match = re.fullmatch(r"(\d+)\s*([smhd])", value.strip())
    if match is None:
        try:
            datetime.fromisoformat(value.strip())
        except ValueError:
            raise click.BadParameter(
                f"{value!r} is not a time: give a duration ago (30s, 15m, 2h, 7d) or an ISO "
                "8601 time (2026-05-19, 2026-05-19T10:15:00Z)",
                param_hint=option,
            ) from None
        return value.strip()
    unit = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days"}[match.group(2)]
    moment = datetime.now(UTC) - timedelta(**{unit: int(match.group(1))})
    return moment.isoformat().replace("+00:00", "Z")


def _health(row: Mapping[str, Any]) -> str:
    health = row.get("health") or {}
    if not health:
        return "-"
    shown = f"cpu {health.get('cpu_percent')}% mem {health.get('memory_percent')}%"
    device = health.get("device") or {}
    if device.get("state") in ("down", "failing"):
        # the KVM behind an online agent cannot serve: say why, beside the link's health
        shown += f"; device {device['state']}: {device.get('reason') or 'no reason given'}"
    return shown


_DEVICE_COLUMNS: list[Column] = [
    ("ID", "id"),
    ("NAME", "name"),
    ("STATUS", "status"),
    ("TYPE", "device_type"),
    ("TAGS", "tags"),
    ("LAST SEEN", "last_seen"),
    ("AGENT", "agent_version"),
]


@fleet_command("devices")
@click.option("--status", type=click.Choice(["online", "offline"]), help="Only these.")
@click.option("--tag", "tags", multiple=True, metavar="TAG", help="Only with TAG (repeatable).")
@click.option("--search", metavar="TEXT", help="Only names containing TEXT.")
def devices(status: str | None, tags: tuple[str, ...], search: str | None) -> None:
    """List the fleet's devices.

    \b
    Examples:
      remotehands devices
      remotehands devices --status online --tag prod --tag frankfurt
      remotehands devices --search web --json
    """
    with open_fleet() as fleet:
        rows = fleet.devices(status=status, tags=tags, search=search)
    emit(rows, lambda: table(rows, _DEVICE_COLUMNS, "no devices"))


@fleet_group("device")
def device() -> None:
    """Show, rename, tag or delete one device (named by name or id).

    \b
    Examples:
      remotehands device show web-1
      remotehands device rename web-1 web-01
      remotehands device tag web-1 prod frankfurt
      remotehands device tag web-1 --remove frankfurt
      remotehands device delete web-1 --yes
    """


def _show_device(record: Mapping[str, Any]) -> None:
    fields = [
        ("id", record.get("id")),
        ("name", record.get("name")),
        ("status", record.get("status")),
        ("type", record.get("device_type")),
        ("driver", record.get("driver")),
        ("tags", ",".join(record.get("tags") or []) or "-"),
        ("agent", record.get("agent_version")),
        ("last seen", record.get("last_seen")),
        ("health", _health(record)),
        ("capabilities", ",".join(record.get("capabilities") or []) or "-"),
        ("screens", " ".join(f"{s.get('width')}x{s.get('height')}"
                             for s in record.get("screens") or []) or "-"),
    ]  # fmt: skip
    width = max(len(name) for name, _ in fields)
    for name, value in fields:
        click.echo(f"{name.ljust(width)}  {'-' if value is None else value}")


@fleet_command("show", parent=device)
@click.argument("ref", metavar="DEVICE")
def device_show(ref: str) -> None:
    """Show a device: status, tags, health, capabilities, screens."""
    with open_fleet() as fleet:
        record = fleet.device(ref).info()
    emit(record, lambda: _show_device(record))


@fleet_command("rename", parent=device)
@click.argument("ref", metavar="DEVICE")
@click.argument("new_name", metavar="NEW_NAME")
def device_rename(ref: str, new_name: str) -> None:
    """Give a device a new name."""
    with open_fleet() as fleet:
        record = fleet.device(ref).update(name=new_name)
    emit(record, f"renamed {ref} to {new_name}")


@fleet_command("tag", parent=device)
@click.argument("ref", metavar="DEVICE")
@click.argument("tags", nargs=-1, metavar="TAG...")
@click.option("--remove", is_flag=True, help="Remove the TAGs instead of adding them.")
@click.option("--set", "replace", is_flag=True, help="Make the TAGs the device's only tags.")
def device_tag(ref: str, tags: tuple[str, ...], remove: bool, replace: bool) -> None:
    """Add TAGs to a device (or remove them, or set exactly them)."""
    if remove and replace:
        raise click.UsageError("--remove and --set exclude each other")
    if not tags and not replace:
        raise click.UsageError("name at least one TAG (or --set with none to clear them)")
    with open_fleet() as fleet:
        handle = fleet.device(ref)
        if replace:
            wanted = list(dict.fromkeys(tags))
        else:
            current: list[str] = list(handle.info().get("tags") or [])
            if remove:
                wanted = [t for t in current if t not in tags]
            else:
                wanted = list(dict.fromkeys([*current, *tags]))
        record = handle.update(tags=wanted)
    emit(record, f"{ref}: tags {','.join(wanted) or '(none)'}")


@fleet_command("delete", parent=device)
@click.argument("ref", metavar="DEVICE")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
def device_delete(ref: str, yes: bool) -> None:
    """Delete a device; its agent is cut off at once and must be enrolled again."""
    if not yes:
        click.confirm(f"Delete device {ref} and cut its agent off?", abort=True, err=True)
    with open_fleet() as fleet:
        handle = fleet.device(ref)
        device_id = handle.resolve()
        result = handle.delete()
    emit(result if result is not None else {"deleted": device_id}, f"deleted {ref} ({device_id})")


@fleet_command("enroll")
@click.option("--name", metavar="NAME", help="The name the new device will get.")
@click.option("--tag", "tags", multiple=True, metavar="TAG", help="A tag for it (repeatable).")
def enroll(name: str | None, tags: tuple[str, ...]) -> None:
    """Make a single-use enrollment token and print the command that installs an agent with it.

    \b
    Example:
      remotehands enroll --name DC1-R3-S8 --tag prod
    """
    with open_fleet() as fleet:
        result = fleet.enrollment_create(suggested_name=name, suggested_tags=tags)

    def show() -> None:
        click.echo(f"token:      {result.get('token')}")
        click.echo(f"expires at: {result.get('expires_at')}")
        if result.get("install_cmd"):
            click.echo("on the new device run:")
            click.echo(f"  {result['install_cmd']}")

    emit(result, show)


# bulk


def _bulk_error(row: Mapping[str, Any]) -> tuple[str, str]:
    """The failed row's error code and details; the error is ``{"error", "details"}``."""
    error = row.get("error")
    if isinstance(error, Mapping):
        return str(error.get("error") or "device_error"), str(error.get("details") or "failed")
    return str(error or "device_error"), str(row.get("details") or error or "failed")


def _bulk_details(row: Mapping[str, Any]) -> str:
    if not row.get("ok", True):
        return _bulk_error(row)[1]
    result = row.get("result")
    if isinstance(result, Mapping):
        shown = {
            k: (f"<{human_size(len(v))}>" if isinstance(v, bytes) else v) for k, v in result.items()
        }
        text = " ".join(f"{k}={v}" for k, v in shown.items())
        return text if len(text) <= 80 else text[:77] + "..."
    return "-" if result is None else str(result)


_BULK_COLUMNS: list[Column] = [
    ("DEVICE", lambda r: r.get("name") or r.get("device_id")),
    ("OK", "ok"),
    ("DETAILS", _bulk_details),
]


def _save_images(rows: Sequence[Mapping[str, Any]], directory: Path) -> list[Path]:
    saved = []
    for row in rows:
        result = row.get("result")
        image = result.get("image") if isinstance(result, Mapping) else None
        if isinstance(image, bytes):
            fmt = str(result.get("format") or "jpeg") if isinstance(result, Mapping) else "jpeg"
            extension = "jpg" if fmt == "jpeg" else fmt
            path = directory / f"{row.get('name') or row.get('device_id')}.{extension}"
            try:
                directory.mkdir(parents=True, exist_ok=True)
                path.write_bytes(image)
            except OSError as err:
                raise ConfigError(f"cannot write {path}: {err.strerror or err}") from err
            saved.append(path)
    return saved


@fleet_command("bulk")
@click.argument("action", metavar="ACTION")
@click.option("--tag", "tags", multiple=True, metavar="TAG", help="Devices with TAG (repeatable).")
@click.option("--id", "ids", multiple=True, metavar="ID", help="This device (repeatable).")
@click.option("--status", type=click.Choice(["online", "offline"]), help="Devices in this state.")
@click.option("--params", default="{}", metavar="JSON", help="The action's parameters.")
@click.option("--concurrency", type=click.IntRange(1, 10_000), help="Devices at a time.")
@click.option(
    "--save-dir",
    type=click.Path(file_okay=False, path_type=Path),
    help="Write images of the results here (for screenshots), one file per device.",
)
def bulk(
    action: str,
    tags: tuple[str, ...],
    ids: tuple[str, ...],
    status: str | None,
    params: str,
    concurrency: int | None,
    save_dir: Path | None,
) -> None:
    """Run ACTION (click, key, screenshot, mouse.click...) on many devices at once.

    The exit status is that of the first device that failed.

    \b
    Examples:
      remotehands bulk key --tag prod --params '{"keys": "ctrl+alt+l"}'
      remotehands bulk screenshot --status online --params '{"scale": 0.25}' --save-dir shots
    """
    try:
        values = orjson.loads(params)
    except orjson.JSONDecodeError as err:
        raise ValidationError(f"--params is not valid JSON: {err}") from err
    if not isinstance(values, dict):
        raise ValidationError('--params must be a JSON object such as {"keys": "ctrl+s"}')
    with open_fleet() as fleet:
        rows = fleet.bulk(
            action, values, ids=ids, tags=tags, status=status, concurrency=concurrency
        )
    saved = _save_images(rows, save_dir) if save_dir is not None else []

    def show() -> None:
        table(rows, _BULK_COLUMNS, "no device matched")
        failed = sum(1 for r in rows if not r.get("ok", True))
        click.echo(f"{len(rows) - failed} ok, {failed} failed")
        if saved:
            click.echo(f"wrote {len(saved)} images to {save_dir}")

    emit(rows, show)
    for row in rows:
        if not row.get("ok", True):
            code, details = _bulk_error(row)
            who = row.get("name") or row.get("device_id")
            fail(error_from_wire(code, f"{who}: {details}"), echo_json=False)


# API tokens


@fleet_group("tokens")
def tokens() -> None:
    """List, create and revoke API tokens for automation.

    \b
    Examples:
      remotehands tokens list
      remotehands tokens create ci --role operator --tag lab
      remotehands tokens create dashboards --read-only --expires-days 90
      remotehands tokens revoke tok_123
    """


_TOKEN_COLUMNS: list[Column] = [
    ("ID", "id"),
    ("NAME", "name"),
    ("PREFIX", "prefix"),
    ("ROLE", "role"),
    ("READ-ONLY", "read_only"),
    ("TAGS", "tags"),
    ("LAST USED", "last_used_at"),
    ("REVOKED", "revoked_at"),
]


@fleet_command("list", parent=tokens)
def tokens_list() -> None:
    """List the API tokens (never their secrets)."""
    with open_fleet() as fleet:
        rows = fleet.tokens_list()
    emit(rows, lambda: table(rows, _TOKEN_COLUMNS, "no API tokens"))


@fleet_command("create", parent=tokens)
@click.argument("name", metavar="NAME")
@click.option(
    "--role",
    type=click.Choice(tuple(reversed(ROLES))),
    help="At most your own role (default yours).",
)
@click.option("--tag", "tags", multiple=True, metavar="TAG", help="Only devices with TAG.")
@click.option("--read-only", is_flag=True, help="Only actions that observe.")
@click.option("--expires-days", type=click.IntRange(min=1), help="Expire after this many days.")
def tokens_create(
    name: str,
    role: str | None,
    tags: tuple[str, ...],
    read_only: bool,
    expires_days: int | None,
) -> None:
    """Create an API token; its secret is printed this once."""
    expires_in_s = expires_days * 86_400 if expires_days is not None else None
    with open_fleet() as fleet:
        result = fleet.tokens_create(
            name, role=role, tags=tags, read_only=read_only, expires_in_s=expires_in_s
        )

    def show() -> None:
        click.echo(f"token {result.get('id')} ({name}) created; it is shown only now:")
        click.echo(str(result.get("token")))

    emit(result, show)


@fleet_command("revoke", parent=tokens)
@click.argument("token_id", metavar="ID")
def tokens_revoke(token_id: str) -> None:
    """Revoke the API token ID."""
    with open_fleet() as fleet:
        result = fleet.tokens_revoke(token_id)
    emit(result if result is not None else {"revoked": token_id}, f"revoked {token_id}")


# users


@fleet_group("users")
def users() -> None:
    """List, create, update and delete users (roles: owner > admin > operator > viewer).

    \b
    Examples:
      remotehands users list
      NEW_PASSWORD=... remotehands users create alice --role operator --password-env NEW_PASSWORD
      remotehands users update alice --role admin
      remotehands users delete alice --yes
    """


_USER_COLUMNS: list[Column] = [
    ("ID", "id"),
    ("USERNAME", "username"),
    ("ROLE", "role"),
    ("DISABLED", "disabled"),
    ("CREATED", "created_at"),
]


def _variable(variable: str) -> str:
    value = os.environ.get(variable)
    if not value:
        raise ConfigError(f"${variable} is not set")
    return value


def _new_password(variable: str | None, username: str) -> str:
    if variable is not None:
        return _variable(variable)
    try:
        password: str = click.prompt(
            f"Password for {username}", hide_input=True, confirmation_prompt=True, err=True
        )
    except click.Abort:
        if sys.stdin.isatty():
            raise  # Ctrl-C at the prompt
        # no terminal to ask on (a script, a pipe that ended)
        raise ConfigError(
            f"no password for {username}: there is no terminal to ask on; put it in a variable "
            f"and name it with --password-env VAR"
        ) from None
    return password


@fleet_command("list", parent=users)
def users_list() -> None:
    """List the users and their roles."""
    with open_fleet() as fleet:
        rows = fleet.users_list()
    emit(rows, lambda: table(rows, _USER_COLUMNS, "no users"))


@fleet_command("create", parent=users)
@click.argument("username", metavar="USERNAME")
@click.option("--role", type=click.Choice(ASSIGNABLE), default="viewer", show_default=True)
@click.option("--password-env", metavar="VAR", help="Read the password from $VAR (else ask).")
def users_create(username: str, role: str, password_env: str | None) -> None:
    """Create a user."""
    password = _new_password(password_env, username)
    with open_fleet() as fleet:
        result = fleet.users_create(username, password, role=role)
    emit(result, f"created {username} ({role})")


@fleet_command("update", parent=users)
@click.argument("user", metavar="USER")
@click.option("--role", type=click.Choice(ASSIGNABLE), help="The new role.")
@click.option("--password", "new_password", is_flag=True, help="Set a new password (asked).")
@click.option("--password-env", metavar="VAR", help="Set the password read from $VAR.")
@click.option(
    "--current-password-env",
    metavar="VAR",
    help="Your current password, from $VAR (needed to change your own password).",
)
@click.option("--disable/--enable", "disabled", default=None, help="Lock or unlock the account.")
def users_update(
    user: str,
    role: str | None,
    new_password: bool,
    password_env: str | None,
    current_password_env: str | None,
    disabled: bool | None,
) -> None:
    """Change a user's role, password, or whether the account is disabled."""
    password = (
        _new_password(password_env, user) if new_password or password_env is not None else None
    )
    current = _variable(current_password_env) if current_password_env is not None else None
    with open_fleet() as fleet:
        result = fleet.users_update(
            user, role=role, password=password, disabled=disabled, current_password=current
        )
    emit(result, f"updated {user}")


@fleet_command("delete", parent=users)
@click.argument("user", metavar="USER")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
def users_delete(user: str, yes: bool) -> None:
    """Delete a user and the user's API tokens."""
    if not yes:
        click.confirm(f"Delete user {user} and the user's API tokens?", abort=True, err=True)
    with open_fleet() as fleet:
        result = fleet.users_delete(user)
    emit(result if result is not None else {"deleted": user}, f"deleted {user}")


# audit


_AUDIT_COLUMNS: list[Column] = [
    ("TIME", "at"),
    ("ACTOR", "actor"),
    ("DEVICE", "device_id"),
    ("ACTION", "action"),
    ("RESULT", "result"),
    ("MS", "duration_ms"),
    ("DETAILS", "details"),
]


@fleet_command("audit")
@click.argument("what", required=False, type=click.Choice(["verify", "export"]))
@click.option("--device", "device_ref", metavar="DEVICE", help="Only this device (name or id).")
@click.option("--actor", metavar="WHO", help="Only this user (and the user's tokens).")
@click.option("--action", metavar="ACTION", help="Only this action, e.g. mouse.click.")
@click.option("--result", metavar="RESULT", help="Only this result, e.g. ok or not_found.")
@click.option("--since", metavar="TIME", help="From TIME: ISO 8601, or 15m, 2h, 7d ago.")
@click.option("--until", metavar="TIME", help="Before TIME: ISO 8601, or 15m, 2h, 7d ago.")
@click.option("--limit", type=click.IntRange(1, 1000), help="How many (default 100).")
def audit(
    what: str | None,
    device_ref: str | None,
    actor: str | None,
    action: str | None,
    result: str | None,
    since: str | None,
    until: str | None,
    limit: int | None,
) -> None:
    """Show who did what on which device, newest first; `audit verify` checks the log's hash
    chain (exit 1 naming the first entry that does not match), `audit export` prints the whole
    log as JSON lines.

    \b
    Examples:
      remotehands audit --since 2h
      remotehands audit --device web-1 --action mouse.click --limit 20
      remotehands audit verify
      remotehands audit export > audit.jsonl
    """
    if what == "verify":
        with open_fleet() as fleet:
            check = fleet.audit_verify()
        message = (f"audit log intact: {check['entries']} entries" if check["ok"] else
                   f"audit log altered: entry {check['first_bad']} does not match "
                   f"(after {check['entries']} good entries)")  # fmt: skip
        emit(check, message)
        if not check["ok"]:
            raise SystemExit(1)
        return
    if what == "export":
        _export_audit()
        return
    since, until = _ago(since), _ago(until, "--until")
    with open_fleet() as fleet:
        device_id = fleet.resolve_device(device_ref) if device_ref is not None else None
        rows = fleet.audit(
            device_id=device_id,
            actor=actor,
            action=action,
            result=result,
            since=since,
            until=until,
            limit=limit,
        )
    emit(rows, lambda: table(rows, _AUDIT_COLUMNS, "no audit entries"))


def _export_audit() -> None:
    """Print GET /v1/audit/export as it comes (JSON lines)."""
    import httpx

    from remotehands.cli.target import resolve_target

    target = resolve_target(agent=False)
    headers = {"Authorization": f"Bearer {target.token}"} if target.token else {}
    with httpx.stream("GET", target.url.rstrip("/") + "/v1/audit/export", headers=headers,
                      timeout=60) as response:  # fmt: skip
        if response.status_code != 200:
            response.read()
            data = response.json() if response.content else {}
            raise error_from_wire(str(data.get("error", "invalid")),
                                  str(data.get("details", response.text)))  # fmt: skip
        for line in response.iter_lines():
            click.echo(line)


@users.group("totp", context_settings=_SETTINGS)
def users_totp() -> None:
    """Two-factor sign-in of the logged-in user (a TOTP app such as any authenticator).

    \b
    Examples:
      remotehands users totp enable
      remotehands users totp disable
    """


@fleet_command("enable", parent=users_totp)
def users_totp_enable() -> None:
    """Enroll an authenticator app, confirm it with a code, and show the recovery codes once."""
    with open_fleet() as fleet:
        enrolled = fleet.totp_enroll()
        click.echo(f"Add this to your authenticator app: {enrolled['otpauth_uri']}", err=True)
        click.echo(f"(or type the secret: {enrolled['secret']})", err=True)
        code = str(click.prompt("Code shown by the app", err=True)).strip()
        confirmed = fleet.totp_confirm(code)
    codes = list(confirmed["recovery_codes"])
    emit(confirmed, "two-factor sign-in is on; recovery codes (each works once, shown only "
         "now):\n  " + "\n  ".join(codes))  # fmt: skip


@fleet_command("disable", parent=users_totp)
@click.option("--code", metavar="CODE", help="A current code or a recovery code (else asked).")
def users_totp_disable(code: str | None) -> None:
    """Turn two-factor sign-in off (with a current code or a recovery code)."""
    code = code or str(click.prompt("Code (or a recovery code)", err=True)).strip()
    with open_fleet() as fleet:
        fleet.totp_disable(code)
    emit({"totp": False}, "two-factor sign-in is off")
