"""``remotehands server install-service`` and ``remotehands agent install-service``: run the
fleet server or the agent as a systemd service.

The unit files are files of the package (``remotehands/systemd/*.service``) with ``@NAME@``
placeholders. Installing for real (as root, on a machine where systemd runs) creates a dedicated
system user (``remotehands`` unless ``--user`` names an existing one), the data directory (0700,
owned by that user), the environment file holding the settings and credentials (0600, owned by
root: systemd reads it before it drops privileges), the unit in ``/etc/systemd/system``, and
enables and starts the service. ``--dry-run`` prints those steps and the unit and changes
nothing; ``--prefix DIR`` writes the files under ``DIR`` (as a package build would) and runs
nothing. Every check comes before the first change, so a refusal leaves nothing half-made.
"""

from __future__ import annotations

import grp
import os
import pwd
import re
import shutil
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

import click

from remotehands.errors import ConfigError, RemoteHandsError

__all__ = [
    "ServicePlan",
    "agent_install_service",
    "render_unit",
    "server_install_service",
]

SYSTEMD_UNIT_DIR = Path("/etc/systemd/system")
CONFIG_DIR = Path("/etc/remotehands")
_SYSTEMD_RUNNING = Path("/run/systemd/system")  # systemd's own test (sd_booted)
_SAFE = re.compile(r"^[A-Za-z0-9_@%+=:,./\[\]-]+$")
_SYSTEMCTL_TIMEOUT_S = 60


def _program() -> str:
    """The ``remotehands`` program the service runs: this very one."""
    here = Path(sys.argv[0])
    if here.name == "remotehands" and here.exists():
        return str(here.resolve())
    found = shutil.which("remotehands")
    if found is None:
        raise ConfigError("cannot find the remotehands program to run: put it on PATH")
    return str(Path(found).resolve())


def _unit_word(value: str, what: str) -> str:
    """``value`` as one word of a unit file; refused when systemd would split or expand it."""
    if not _SAFE.match(value) or "%" in value:
        raise ConfigError(f"{what} {value!r} cannot go in a unit file: use a value without "
                          "spaces, quotes or %")  # fmt: skip
    return value


def render_unit(template: str, values: dict[str, str]) -> str:
    """The unit file ``template`` (a file of ``remotehands/systemd``) with its ``@NAME@``
    placeholders replaced by ``values``."""
    text = resources.files("remotehands").joinpath("systemd", template).read_text("utf-8")
    for key, value in values.items():
        text = text.replace(f"@{key}@", value)
    leftover = re.search(r"@[A-Z_]+@", text)
    if leftover is not None:
        raise ValueError(f"{template}: no value for {leftover.group(0)}")
    return text


def _env_line(key: str, value: str) -> str:
    if "\n" in value or "\r" in value:
        raise ConfigError(f"{key} cannot hold a line break")
    escaped = value.replace("\\", "\\\\").replace('"', '\\"')
    return f'{key}="{escaped}"\n'


def _read_env(path: Path) -> dict[str, str]:
    """The settings an earlier install left in ``path`` (kept unless given again)."""
    try:
        lines = path.read_text().splitlines()
    except FileNotFoundError:
        return {}
    except OSError as err:
        raise ConfigError(f"cannot read {path}: {err.strerror}") from err
    found: dict[str, str] = {}
    for line in lines:
        key, sep, value = line.partition("=")
        if sep and not key.startswith("#"):
            if len(value) >= 2 and value[0] == value[-1] == '"':
                value = value[1:-1].replace('\\"', '"').replace("\\\\", "\\")
            found[key.strip()] = value
    return found


@dataclass
class ServicePlan:
    """What installing one service makes."""

    name: str
    """The unit's name without ``.service``: ``remotehands-server``, ``remotehands-agent``."""
    unit: str
    """The unit file's text."""
    user: str
    data_dir: Path
    """Created 0700 and owned by ``user``: the database, the device credential."""
    env: dict[str, str] = field(default_factory=dict)
    """Written to ``/etc/remotehands/<role>.env`` (0600), merged over what is there."""
    env_file: Path = CONFIG_DIR / "server.env"

    def steps(self, creates_user: bool) -> list[str]:
        """The install, step by step, as ``--dry-run`` prints it."""
        steps = [f"create the system user {self.user}"] if creates_user else []
        steps.append(f"create {self.data_dir} (0700, owned by {self.user})")
        if self.env:
            steps.append(f"write {self.env_file} (0600): {', '.join(sorted(self.env))}")
        steps += [f"write {SYSTEMD_UNIT_DIR / (self.name + '.service')}",
                  "systemctl daemon-reload", f"systemctl enable --now {self.name}"]  # fmt: skip
        return steps


def _under(prefix: Path | None, path: Path) -> Path:
    return path if prefix is None else prefix / path.relative_to("/")


def _user_exists(name: str) -> bool:
    try:
        pwd.getpwnam(name)
    except KeyError:
        return False
    return True


def _group_of(user: str) -> str:
    """The primary group of an existing ``user``; for a user still to be made, its own name
    (``useradd --user-group`` makes that group)."""
    try:
        return grp.getgrgid(pwd.getpwnam(user).pw_gid).gr_name
    except KeyError:
        return user


def _write(path: Path, text: str, mode: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "w") as f:
        f.write(text)
    os.chmod(path, mode)  # an existing file keeps its old mode through os.open


def _run(*command: str) -> None:
    try:
        subprocess.run(command, check=True, capture_output=True, text=True,
                       timeout=_SYSTEMCTL_TIMEOUT_S)  # fmt: skip
    except subprocess.CalledProcessError as err:
        said = (err.stderr or err.stdout or "").strip().splitlines()
        raise ConfigError(f"`{' '.join(command)}` failed: {said[-1] if said else err}") from err
    except subprocess.TimeoutExpired as err:
        raise ConfigError(f"`{' '.join(command)}` did not finish in {err.timeout:g} s") from err


def install(plan: ServicePlan, *, prefix: Path | None, dry_run: bool, start: bool) -> None:
    """Carry out ``plan`` (see the module docstring for the three modes)."""
    real = prefix is None and not dry_run
    creates_user = not _user_exists(plan.user)
    if dry_run:
        for step in plan.steps(creates_user):
            click.echo(f"would {step}")
        click.echo(f"--- {plan.name}.service ---")
        click.echo(plan.unit, nl=False)
        return
    if real:
        if os.geteuid() != 0:
            raise ConfigError("installing a service needs root: run it with sudo (or see "
                              "--dry-run and --prefix)")  # fmt: skip
        if not _SYSTEMD_RUNNING.is_dir() or shutil.which("systemctl") is None:
            raise ConfigError(
                "systemd is not running on this machine: write the unit with --prefix DIR "
                "and start the command of its ExecStart yourself"
            )
        if creates_user and shutil.which("useradd") is None:
            raise ConfigError(f"no user {plan.user} and no useradd to create it: create it, "
                              "or name another with --user")  # fmt: skip
    env_file = _under(prefix, plan.env_file)
    env = {**_read_env(env_file), **plan.env}
    try:
        if real and creates_user:
            _run("useradd", "--system", "--user-group", "--no-create-home", "--home-dir",
                 str(plan.data_dir), "--shell", "/usr/sbin/nologin", plan.user)  # fmt: skip
        data_dir = _under(prefix, plan.data_dir)
        data_dir.mkdir(parents=True, exist_ok=True)
        data_dir.chmod(0o700)
        if real:
            shutil.chown(data_dir, plan.user, _group_of(plan.user))
        if env:
            _write(env_file, "".join(_env_line(k, v) for k, v in sorted(env.items())), 0o600)
        unit_path = _under(prefix, SYSTEMD_UNIT_DIR / f"{plan.name}.service")
        _write(unit_path, plan.unit, 0o644)
    except OSError as err:
        raise ConfigError(f"cannot write {err.filename}: {err.strerror} (run as root, or "
                          "choose --prefix)") from err  # fmt: skip
    click.echo(f"wrote {unit_path}")
    if not real:
        return
    _run("systemctl", "daemon-reload")
    if start:
        _run("systemctl", "enable", "--now", plan.name)
        click.echo(f"{plan.name} is enabled and running: systemctl status {plan.name}, "
                   f"journalctl -u {plan.name}")  # fmt: skip
    else:
        click.echo(f"start it with: systemctl enable --now {plan.name}")


def _common(func: click.decorators.FC) -> click.decorators.FC:
    for option in reversed([
        click.option("--user", default="remotehands", show_default=True,
                     help="The user the service runs as (created as a system user if missing)."),
        click.option("--dry-run", is_flag=True, help="Print the steps and the unit; change "
                     "nothing."),
        click.option("--prefix", type=click.Path(file_okay=False, path_type=Path), default=None,
                     help="Write the files under this directory; create no user, start "
                     "nothing."),
        click.option("--no-start", is_flag=True, help="Write the files and reload systemd, but "
                     "neither enable nor start the service."),
    ]):  # fmt: skip
        func = option(func)
    return func


def _friendly(run: Callable[[], None]) -> None:
    try:
        run()
    except RemoteHandsError as err:
        click.echo(f"error: {err.details}", err=True)
        sys.exit(err.exit_code)


@click.command("install-service")
@click.option("--data", "data_dir", type=click.Path(file_okay=False, path_type=Path),
              default=Path("/var/lib/remotehands"), show_default=True,
              help="The server's data directory (SQLite database).")  # fmt: skip
@click.option("--listen", default="0.0.0.0:8080", show_default=True, metavar="HOST:PORT")
@click.option("--public-url", default=None, metavar="URL",
              help="URL agents and people reach the server at (into server.env).")  # fmt: skip
@click.option("--database-url", default=None, metavar="URL",
              help="PostgreSQL URL (into server.env, which only root reads).")  # fmt: skip
@_common
def server_install_service(data_dir: Path, listen: str, public_url: str | None,
                           database_url: str | None, user: str, dry_run: bool,
                           prefix: Path | None, no_start: bool) -> None:  # fmt: skip
    """Run the fleet server as a systemd service (remotehands-server).

    The database is migrated each time the server starts, so an upgrade is: install the new
    remotehands into the same environment, then `systemctl restart remotehands-server`.
    Create the owner once with `sudo -u remotehands remotehands server init --data DIR`.
    """

    def run() -> None:
        data = data_dir.absolute()
        values = {"USER": _unit_word(user, "--user"), "GROUP": _unit_word(_group_of(user), "group"),
                  "CONFIG_DIR": str(CONFIG_DIR), "PROGRAM": _unit_word(_program(), "program"),
                  "DATA_DIR": _unit_word(str(data), "--data"),
                  "LISTEN": _unit_word(listen, "--listen")}  # fmt: skip
        env = {"REMOTEHANDS_PUBLIC_URL": public_url, "REMOTEHANDS_DATABASE_URL": database_url}
        plan = ServicePlan(
            name="remotehands-server",
            unit=render_unit("remotehands-server.service", values),
            user=user,
            data_dir=data,
            env={k: v for k, v in env.items() if v},
            env_file=CONFIG_DIR / "server.env",
        )
        install(plan, prefix=prefix, dry_run=dry_run, start=not no_start)
        if not dry_run:
            click.echo(f"create the owner once: sudo -u {user} {values['PROGRAM']} server init "
                       f"--data {data}")  # fmt: skip

    _friendly(run)


@click.command(
    "install-service",
    context_settings={"ignore_unknown_options": True},
)
@click.option("--server", "server_url", default=None, metavar="URL",
              help="The fleet server to link to (into agent.env).")  # fmt: skip
@click.option(
    "--token",
    default=None,
    metavar="ekvent_...",
    help="The enrollment token, used once (into agent.env, which only root reads).",
)
@click.option("--state-dir", type=click.Path(file_okay=False, path_type=Path),
              default=Path("/var/lib/remotehands-agent"), show_default=True,
              help="Where the device credential is kept.")  # fmt: skip
@click.option("--display", default=None, help="DISPLAY of the desktop to drive (x11).")
@click.option("--xauthority", default=None, metavar="FILE",
              help="XAUTHORITY of that desktop (readable by --user).")  # fmt: skip
@click.option("--password-env", "password_env", default=None, metavar="VAR",
              help="Copy the native API's password from this environment variable into "
              "agent.env.")  # fmt: skip
@_common
@click.argument("agent_args", nargs=-1, type=click.UNPROCESSED)
def agent_install_service(server_url: str | None, token: str | None, state_dir: Path,
                          display: str | None, xauthority: str | None,
                          password_env: str | None, user: str, dry_run: bool,
                          prefix: Path | None, no_start: bool,
                          agent_args: tuple[str, ...]) -> None:  # fmt: skip
    """Run the agent as a systemd service (remotehands-agent); what follows `--` goes to
    `remotehands agent` (e.g. `-- --driver x11` or `-- --config /etc/remotehands/agent.toml`).

    An upgrade is: install the new remotehands into the same environment, then
    `systemctl restart remotehands-agent`.
    """

    def run() -> None:
        state = state_dir.absolute()
        words = [_unit_word(arg, "agent option") for arg in agent_args]
        values = {"USER": _unit_word(user, "--user"), "GROUP": _unit_word(_group_of(user), "group"),
                  "CONFIG_DIR": str(CONFIG_DIR), "PROGRAM": _unit_word(_program(), "program"),
                  "STATE_DIR": _unit_word(str(state), "--state-dir"),
                  "ARGS": "".join(" " + word for word in words)}  # fmt: skip
        env = {"REMOTEHANDS_SERVER": server_url, "REMOTEHANDS_ENROLLMENT_TOKEN": token,
               "DISPLAY": display, "XAUTHORITY": xauthority}  # fmt: skip
        if password_env is not None:
            password = os.environ.get(password_env)
            if not password:
                raise ConfigError(f"--password-env {password_env}: that variable is not set")
            env["REMOTEHANDS_AGENT_PASSWORD"] = password
        plan = ServicePlan(
            name="remotehands-agent",
            unit=render_unit("remotehands-agent.service", values),
            user=user,
            data_dir=state,
            env={k: v for k, v in env.items() if v},
            env_file=CONFIG_DIR / "agent.env",
        )
        install(plan, prefix=prefix, dry_run=dry_run, start=not no_start)

    _friendly(run)
