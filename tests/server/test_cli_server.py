"""``remotehands server``: init (owner, JSON, idempotent, errors) and serving for real."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import sys
from pathlib import Path

import httpx
import pytest
from click.testing import CliRunner

from remotehands.cli.main import cli

PASSWORD = "the-owner-password"


def _run(*args: str, env: dict[str, str] | None = None) -> tuple[int, str, str]:
    runner = CliRunner()
    result = runner.invoke(cli, list(args), env=env or {}, catch_exceptions=False)
    return result.exit_code, result.stdout, result.stderr


def test_init_with_a_password_from_the_environment(tmp_path: Path) -> None:
    env = {"REMOTEHANDS_OWNER_PASSWORD": PASSWORD}
    code, out, _ = _run(
        "server", "init", "--data", str(tmp_path), "--owner", "Alice", "--json", env=env
    )
    assert code == 0
    result = json.loads(out)
    assert result == {
        "created": True,
        "owner": "alice",
        "password": None,
        "data_dir": str(tmp_path),
        "database": f"sqlite+aiosqlite:///{tmp_path}/remotehands.db",
    }
    assert (tmp_path / "remotehands.db").exists()

    # A second init changes nothing and says so.
    code, out, _ = _run("server", "init", "--data", str(tmp_path), "--owner", "bob", env=env)
    assert code == 0
    assert "An owner exists already (alice)" in out
    code, out, _ = _run("server", "init", "--data", str(tmp_path), "--json", env=env)
    assert json.loads(out)["created"] is False


def test_init_generates_and_prints_the_password_once(tmp_path: Path) -> None:
    code, out, _ = _run("server", "init", "--data", str(tmp_path))
    assert code == 0
    lines = dict(line.split(": ", 1) for line in out.splitlines() if ": " in line)
    assert lines["Owner"] == "owner"
    password = lines["Password"]
    assert len(password) >= 16
    assert "remotehands server --data" in out

    import asyncio

    from sqlalchemy import select

    from remotehands.server.auth import Passwords
    from remotehands.server.db.engine import Database
    from remotehands.server.db.models import User

    async def stored_hash() -> str:
        async with (
            await Database.open(f"sqlite+aiosqlite:///{tmp_path}/remotehands.db") as db,
            db.session() as session,
        ):
            user = await session.scalar(select(User).where(User.role == "owner"))
            assert user is not None
            return user.password_hash

    password_hash = asyncio.run(stored_hash())
    assert password not in password_hash
    assert asyncio.run(Passwords().verify(password_hash, password))
    code, out, _ = _run("server", "init", "--data", str(tmp_path))
    assert password not in out


def test_group_data_option_reaches_init(tmp_path: Path) -> None:
    code, out, _ = _run("server", "--data", str(tmp_path), "init", "--json")
    assert code == 0
    assert json.loads(out)["data_dir"] == str(tmp_path)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["server", "init", "--owner", "not a name"], "username"),
        (["server", "init", "--database-url", "mysql://x/y"], "database_url"),
        (["server", "--listen", "nowhere", "init"], "listen"),
    ],
)
def test_bad_input_is_a_message_and_exit_code_2(
    tmp_path: Path, args: list[str], message: str
) -> None:
    code, out, err = (
        _run(*args, "--data", str(tmp_path))
        if args[-1] != "init"
        else _run(*args[:-1], "--data", str(tmp_path), "init")
    )
    assert code == 2
    assert message in err
    assert "Traceback" not in out + err


def test_short_owner_password_is_refused(tmp_path: Path) -> None:
    code, _, err = _run(
        "server", "init", "--data", str(tmp_path), env={"REMOTEHANDS_OWNER_PASSWORD": "short"}
    )
    assert code == 2
    assert "at least 8 characters" in err


def test_help() -> None:
    code, out, _ = _run("server", "--help")
    assert code == 0
    for text in ("--data", "--listen", "--public-url", "--database-url", "init", "Examples"):
        assert text in out
    code, out, _ = _run("server", "init", "--help")
    assert code == 0
    assert "REMOTEHANDS_OWNER_PASSWORD" in out and "--json" in out


def test_serve_refuses_a_busy_port(tmp_path: Path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        code, _, err = _run("server", "--data", str(tmp_path), "--listen", f"127.0.0.1:{port}")
    assert code == 2
    assert "cannot listen" in err


def test_serve_refuses_an_unreachable_database(tmp_path: Path) -> None:
    code, _, err = _run(
        "server",
        "--data",
        str(tmp_path),
        "--listen",
        "127.0.0.1:0",
        "--database-url",
        "postgresql://u:secretpw@127.0.0.1:1/none",
    )
    assert code == 2
    assert "cannot open database" in err
    assert "secretpw" not in err


def test_init_against_an_unreachable_database_creates_nothing(tmp_path: Path) -> None:
    data = tmp_path / "new-data"
    code, _, err = _run("server", "init", "--data", str(data), "--database-url",
                        "postgresql://u:secretpw@127.0.0.1:1/none")  # fmt: skip
    assert code == 2
    assert "cannot open database" in err and "secretpw" not in err
    assert not data.exists()  # nothing half-created


@pytest.mark.anyio
@pytest.mark.slow  # init and serve as processes, with real password hashing
async def test_serve_for_real(tmp_path: Path) -> None:
    env = {**os.environ, "REMOTEHANDS_OWNER_PASSWORD": PASSWORD}
    init = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        "from remotehands.cli.main import main; main()",
        "server",
        "init",
        "--data",
        str(tmp_path),
        env=env,
        stdout=asyncio.subprocess.DEVNULL,
    )
    assert await init.wait() == 0
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        "from remotehands.cli.main import main; main()",
        "server",
        "--data",
        str(tmp_path),
        "--listen",
        "127.0.0.1:0",
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        assert process.stdout is not None
        async with asyncio.timeout(30):
            line = (await process.stdout.readline()).decode()
        assert line.startswith("remotehands server: serving http://127.0.0.1:"), line
        url = line.split()[3]
        async with httpx.AsyncClient(base_url=url) as client:
            login = await client.post(
                "/v1/auth/login", json={"username": "owner", "password": PASSWORD}
            )
            assert login.status_code == 200, login.text
            token = login.json()["token"]
            me = await client.get("/v1/auth/me", headers={"Authorization": f"Bearer {token}"})
            assert me.json()["role"] == "owner"
            enrollment = await client.post(
                "/v1/devices/enrollment", headers={"Authorization": f"Bearer {token}"}
            )
            # port 0 was resolved: the install command names the real port.
            assert f"curl -sSL {url}/install |" in enrollment.json()["install_cmd"]
    finally:
        process.send_signal(signal.SIGINT)
        async with asyncio.timeout(30):
            code = await process.wait()
    assert process.stderr is not None
    stderr = (await process.stderr.read()).decode()
    assert code == 130  # interrupted, after a graceful shutdown
    assert "Traceback" not in stderr


@pytest.mark.anyio
@pytest.mark.slow  # init and serve as processes, with real password hashing
async def test_serve_announces_itself_as_json(tmp_path: Path) -> None:
    env = {**os.environ, "REMOTEHANDS_OWNER_PASSWORD": PASSWORD}
    command = [sys.executable, "-c", "from remotehands.cli.main import main; main()", "server"]
    init = await asyncio.create_subprocess_exec(
        *command, "init", "--data", str(tmp_path), env=env, stdout=asyncio.subprocess.DEVNULL
    )
    assert await init.wait() == 0
    process = await asyncio.create_subprocess_exec(
        *command, "--data", str(tmp_path), "--listen", "127.0.0.1:0", "--json",
        env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    try:
        assert process.stdout is not None
        async with asyncio.timeout(30):
            announced = json.loads(await process.stdout.readline())
        assert announced["data_dir"] == str(tmp_path)
        assert announced["database"].startswith("sqlite+aiosqlite:///")
        async with httpx.AsyncClient(base_url=announced["url"]) as client:
            assert (await client.get("/health")).json()["status"] == "ok"
            await client.get("/health", params={"token": "rht_secretsecret1"})
    finally:
        process.send_signal(signal.SIGINT)
        async with asyncio.timeout(30):
            _, stderr = await process.communicate()
    # the log: one JSON object per line, uvicorn's lines included, credentials masked
    records = [json.loads(line) for line in stderr.decode().splitlines()]
    assert any(r["logger"] == "uvicorn.error" and r["level"] == "INFO" for r in records)
    access = [r["msg"] for r in records if r["logger"] == "uvicorn.access"]
    assert any("/health?token=[redacted]" in line for line in access), access
    assert "rht_secret" not in stderr.decode()


def test_a_data_directory_that_cannot_be_made_is_one_line(tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    code, out, err = _run("server", "init", "--data", str(blocker / "data"))
    assert code == 2 and "Traceback" not in out + err
    assert err.strip() == (f"remotehands server: cannot create the data directory {blocker}/data: "
                           "Not a directory; choose another --data, or let the user running the "
                           "server write there")  # fmt: skip
