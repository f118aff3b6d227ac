"""The installer: the script and the package archive, and a real install in a fresh venv."""

from __future__ import annotations

import asyncio
import io
import os
import shutil
import signal
import sys
import sysconfig
import tarfile
from pathlib import Path

import httpx
import pytest

from remotehands import __version__
from remotehands.server.app import create_app
from remotehands.server.auth import Passwords
from remotehands.server.http.users import create_user
from remotehands.server.install import build_source_archive, install_script
from tests.server.conftest import (
    FAST_PASSWORDS,
    OWNER_PASSWORD,
    Fleet,
    loopback_socket,
    make_settings,
    serve,
)

pytestmark = pytest.mark.anyio


async def _sh(
    *args: str, stdin: bytes = b"", env: dict[str, str] | None = None, timeout: float = 240
) -> tuple[int, str, str]:
    process = await asyncio.create_subprocess_exec(
        *args,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=env,
    )
    async with asyncio.timeout(timeout):
        out, err = await process.communicate(stdin)
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()


async def test_script_is_served_with_the_public_url(server: Fleet) -> None:
    response = await server.client.get("/install")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/x-shellscript")
    script = response.text
    assert script.startswith("#!/bin/sh\n")
    assert "SERVER='http://fleet.test:8080'" in script
    assert "@SERVER@" not in script


async def test_script_is_posix_sh(tmp_path: Path) -> None:
    script = install_script("http://fleet.test:8080")
    shell = shutil.which("dash") or "/bin/sh"
    code, _, err = await _sh(shell, "-n", stdin=script.encode())
    assert code == 0, err
    code, out, _ = await _sh(shell, "-s", "--", "--help", stdin=script.encode())
    assert code == 0
    assert "--token TOKEN" in out and "http://fleet.test:8080/install" in out
    code, _, err = await _sh(shell, "-s", "--", stdin=script.encode())
    assert code == 1
    assert "missing --token" in err
    code, _, err = await _sh(shell, "-s", "--", "--token", "t", "--bogus", stdin=script.encode())
    assert code == 1
    assert "unknown option --bogus" in err
    code, _, err = await _sh(shell, "-s", "--", "--token", stdin=script.encode())
    assert code == 1
    assert "--token needs a value" in err


async def test_archive(server: Fleet) -> None:
    response = await server.client.get("/install/remotehands.tar.gz")
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/gzip"
    assert response.content == build_source_archive()
    with tarfile.open(fileobj=io.BytesIO(response.content)) as archive:
        names = archive.getnames()
        pyproject = archive.extractfile(f"remotehands-{__version__}/pyproject.toml")
        assert pyproject is not None
        text = pyproject.read().decode()
    top = f"remotehands-{__version__}/"
    assert all(name.startswith(top) for name in names)
    for path in (
        "pyproject.toml",
        "_build/remotehands_build.py",
        "src/remotehands/__init__.py",
        "src/remotehands/py.typed",
        "src/remotehands/server/db/alembic.ini",
        "src/remotehands/server/db/migrations/env.py",
        "src/remotehands/server/db/migrations/versions/0001_initial.py",
    ):
        assert top + path in names
    assert not any("__pycache__" in name or name.endswith(".pyc") for name in names)
    assert 'build-backend = "remotehands_build"' in text
    assert '"fastapi>=0.110"' in text
    assert "[project.optional-dependencies]" in text and '"agent" = [' in text
    assert '"remotehands" = "remotehands.cli.main:main"' in text


async def test_install_cmd_installs_and_reaches_the_agent(tmp_path: Path) -> None:
    """Run an enrollment's install_cmd for real (curl | sh) into a fresh venv.

    ``--reuse-site-packages`` keeps it offline: the venv sees the test interpreter's packages
    (through PYTHONPATH, since that interpreter is itself a venv) and pip installs only
    remotehands, built from the served archive by its in-tree backend.
    """
    if shutil.which("curl") is None:
        pytest.fail("curl is needed to run the install command (apt-get install curl)")
    sock = loopback_socket()
    url = f"http://127.0.0.1:{sock.getsockname()[1]}"
    settings = make_settings(
        tmp_path, f"sqlite+aiosqlite:///{tmp_path / 'fleet.db'}", public_url=url
    )
    app = create_app(settings, passwords=Passwords(FAST_PASSWORDS))
    async with serve(app, sock), httpx.AsyncClient(base_url=url) as client:
        await create_user(app.state.services, "owner", OWNER_PASSWORD, "owner")
        login = await client.post(
            "/v1/auth/login", json={"username": "owner", "password": OWNER_PASSWORD}
        )
        headers = {"Authorization": f"Bearer {login.json()['token']}"}
        enrollment = (await client.post("/v1/devices/enrollment", headers=headers)).json()
        install_cmd = enrollment["install_cmd"]
        assert install_cmd.startswith(f"curl -sSL {url}/install | sh -s -- --token ekvent_")

        venv = tmp_path / "venv"
        env = {
            **os.environ,
            "HOME": str(tmp_path),
            "PYTHONPATH": sysconfig.get_paths()["purelib"],
            "REMOTEHANDS_INSTALL_DRY_RUN": "1",
            "PIP_NO_INDEX": "1",  # prove that nothing comes from the network
        }
        command = (
            f"{install_cmd} --venv {venv} --python {sys.executable} --reuse-site-packages "
            "-- --name rack-7"
        )
        code, out, err = await _sh("sh", "-c", command, env=env)
        assert code == 0, err
        assert out.strip() == (
            f"{venv}/bin/remotehands agent --server {url} --token {enrollment['token']} "
            "--name rack-7"
        )
        # remotehands itself was installed into the venv from the served archive.
        code, out, err = await _sh(
            str(venv / "bin" / "python"),
            "-c",
            "import remotehands; print(remotehands.__file__)",
            env=env,
        )
        assert code == 0, err
        assert out.strip().startswith(str(venv))
        code, out, err = await _sh(str(venv / "bin" / "remotehands"), "--version", env=env)
        assert code == 0, err
        assert __version__ in out
        migrations = list(venv.glob("lib/python*/site-packages/remotehands/server/db/migrations"))
        assert migrations and (migrations[0] / "versions" / "0001_initial.py").exists()

        # and for real: the installed agent enrolls with the token and comes online
        live = {k: v for k, v in env.items() if k != "REMOTEHANDS_INSTALL_DRY_RUN"}
        command = (
            f"{install_cmd} --venv {venv} --python {sys.executable} --reuse-site-packages "
            f"-- --name rack-7 --driver fake --state-dir {tmp_path / 'agent-state'}"
        )
        agent = await asyncio.create_subprocess_exec("sh", "-c", command, env=live,
                                                     start_new_session=True)  # fmt: skip
        try:

            async def online() -> list[dict[str, object]]:
                found = await client.get("/v1/devices", headers=headers,
                                         params={"status": "online"})  # fmt: skip
                devices: list[dict[str, object]] = found.json()["devices"]
                return devices

            async with asyncio.timeout(120):
                while not await online():
                    await asyncio.sleep(0.2)
            [device] = await online()
            assert device["name"] == "rack-7"
            moved = await client.post(f"/v1/devices/{device['id']}/mouse/move",
                                      headers=headers, json={"x": 3, "y": 4})  # fmt: skip
            assert moved.json() == {"status": "ok"}
        finally:
            os.killpg(agent.pid, signal.SIGTERM)
            async with asyncio.timeout(30):
                await agent.wait()
