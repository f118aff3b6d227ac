"""A throwaway PostgreSQL server for tests, from Debian's PostgreSQL binaries (any version:
the newest under ``/usr/lib/postgresql``, as ``scripts/system-deps`` accepts any).

:func:`start_postgres` runs ``initdb`` and ``pg_ctl`` in a temporary directory (as the
``postgres`` system user when the tests run as root, since ``initdb`` refuses root), listening on
a free loopback port and a private unix socket directory, with durability switched off for
speed. Each test gets its own database from :meth:`PostgresServer.create_database`.

No Docker and no skipping: when the binaries are missing, :class:`PostgresUnavailable` says how
to install them, and the fixture fails with that message.
"""

from __future__ import annotations

import atexit
import os
import pwd
import secrets
import shutil
import socket
import subprocess
import tempfile
from pathlib import Path

__all__ = ["PG_BIN", "PostgresServer", "PostgresUnavailable", "find_pg_bin", "start_postgres"]


def find_pg_bin(root: Path = Path("/usr/lib/postgresql"), override: str | None = None) -> Path:
    """The ``bin`` directory of the newest PostgreSQL installed under ``root`` (Debian keeps one
    directory per major version, ``/usr/lib/postgresql/16/bin``), or ``override``; when none is
    installed, ``root/bin`` (which the missing-binaries message then names)."""
    if override:
        return Path(override)
    versions: list[tuple[tuple[int, ...], Path]] = []
    for candidate in root.glob("*/bin/initdb"):
        version = candidate.parent.parent.name
        if all(part.isdigit() for part in version.split(".")):
            versions.append((tuple(int(part) for part in version.split(".")), candidate.parent))
    return max(versions)[1] if versions else root / "bin"


PG_BIN = find_pg_bin(override=os.environ.get("REMOTEHANDS_PG_BIN"))
"""Where ``initdb``, ``pg_ctl`` and ``postgres`` live (override: ``REMOTEHANDS_PG_BIN``)."""

_SYSTEM_USER = "postgres"


class PostgresUnavailable(RuntimeError):
    """PostgreSQL cannot be started here; the message says why and what to install."""


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class PostgresServer:
    """A running PostgreSQL cluster owned by the test session."""

    def __init__(self, root: Path, port: int, run_as: str | None, bin_dir: Path = PG_BIN) -> None:
        self.root = root
        self.bin_dir = bin_dir
        self.port = port
        self.data_dir = root / "data"
        self.socket_dir = root / "sock"
        self.log_file = root / "postgres.log"
        self._run_as = run_as
        self._stopped = False

    @property
    def admin_dsn(self) -> str:
        """A libpq/asyncpg DSN of the ``postgres`` database."""
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def url(self, database: str = "postgres") -> str:
        """The SQLAlchemy URL of ``database`` (asyncpg driver)."""
        return f"postgresql+asyncpg://postgres@127.0.0.1:{self.port}/{database}"

    def _command(self, *args: str) -> list[str]:
        if self._run_as is None:
            return list(args)
        return ["runuser", "-u", self._run_as, "--", *args]

    def _run(self, *args: str, timeout: float = 60) -> None:
        result = subprocess.run(
            self._command(*args), capture_output=True, text=True, timeout=timeout, check=False
        )
        if result.returncode != 0:
            log = self.log_file.read_text() if self.log_file.exists() else ""
            raise PostgresUnavailable(
                f"{' '.join(args)} failed ({result.returncode}):\n{result.stdout}{result.stderr}"
                f"\n{log[-4000:]}"
            )

    def start(self) -> None:
        """``initdb`` then ``pg_ctl start``, waiting until it accepts connections."""
        self._run(
            str(self.bin_dir / "initdb"),
            "-D",
            str(self.data_dir),
            "-U",
            "postgres",
            "-A",
            "trust",
            "-E",
            "UTF8",
            "--no-sync",
            "--no-instructions",
        )
        options = " ".join(
            [
                f"-k {self.socket_dir}",
                "-h 127.0.0.1",
                f"-p {self.port}",
                "-F",
                "-c synchronous_commit=off",
                "-c full_page_writes=off",
                "-c max_connections=300",
            ]
        )
        self._run(
            str(self.bin_dir / "pg_ctl"),
            "-D",
            str(self.data_dir),
            "-l",
            str(self.log_file),
            "-o",
            options,
            "-w",
            "-t",
            "60",
            "start",
            timeout=90,
        )

    def stop(self) -> None:
        """Stop the server and remove its files (idempotent)."""
        if self._stopped:
            return
        self._stopped = True
        subprocess.run(
            self._command(
                str(self.bin_dir / "pg_ctl"),
                "-D",
                str(self.data_dir),
                "-m",
                "immediate",
                "-w",
                "stop",
            ),
            capture_output=True,
            timeout=60,
            check=False,
        )
        shutil.rmtree(self.root, ignore_errors=True)

    async def create_database(self, template: str | None = None) -> str:
        """A fresh database, empty or a copy of ``template``; returns its name."""
        import asyncpg

        name = f"t_{secrets.token_hex(6)}"
        connection = await asyncpg.connect(self.admin_dsn)
        try:
            copy = f' TEMPLATE "{template}"' if template else ""
            await connection.execute(f'CREATE DATABASE "{name}"{copy}')
        finally:
            await connection.close()
        return name

    async def drop_database(self, name: str) -> None:
        """Drop ``name``, cutting off whoever is still connected."""
        import asyncpg

        connection = await asyncpg.connect(self.admin_dsn)
        try:
            await connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await connection.close()


def start_postgres(bin_dir: Path = PG_BIN) -> PostgresServer:
    """Start a private PostgreSQL server; raises :class:`PostgresUnavailable` when it cannot."""
    missing = [name for name in ("initdb", "pg_ctl", "postgres") if not (bin_dir / name).exists()]
    if missing:
        raise PostgresUnavailable(
            f"PostgreSQL binaries not found in {bin_dir} (missing {', '.join(missing)}): install "
            "them with `apt-get install postgresql` (scripts/system-deps does), "
            "or point REMOTEHANDS_PG_BIN at another PostgreSQL bin directory"
        )
    run_as: str | None = None
    if os.geteuid() == 0:
        try:
            pwd.getpwnam(_SYSTEM_USER)
        except KeyError as err:
            raise PostgresUnavailable(
                "tests run as root and initdb refuses root, but there is no `postgres` system "
                "user to run it as (it comes with `apt-get install postgresql`)"
            ) from err
        run_as = _SYSTEM_USER
    last_error: PostgresUnavailable | None = None
    for _ in range(3):  # a free port can be taken between choosing and binding it
        root = Path(tempfile.mkdtemp(prefix="remotehands-pg-"))
        (root / "sock").mkdir()
        if run_as is not None:
            entry = pwd.getpwnam(run_as)
            for path in (root, root / "sock"):
                os.chown(path, entry.pw_uid, entry.pw_gid)
        server = PostgresServer(root, _free_port(), run_as, bin_dir)
        try:
            server.start()
        except PostgresUnavailable as err:
            last_error = err
            server.stop()
            continue
        atexit.register(server.stop)
        return server
    assert last_error is not None
    raise last_error
