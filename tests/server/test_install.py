"""The installer: the script and the package archive, and a real install in a fresh venv."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import io
import os
import shutil
import signal
import sys
import sysconfig
import tarfile
import zipfile
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from remotehands import __version__
from remotehands.server import install_backend
from remotehands.server.app import create_app
from remotehands.server.auth import Passwords
from remotehands.server.http.users import create_user
from remotehands.server.install import build_source_archive, install_script
from remotehands.testing.xapps import eventually
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


async def test_script_lints_clean(tmp_path: Path) -> None:
    """The served script (the package's installer.sh, its address filled in) passes
    shellcheck as POSIX sh (scripts/system-deps installs it) and dash's own syntax check."""
    script = tmp_path / "install.sh"
    script.write_text(install_script("http://fleet.test:8080"))
    shellcheck = shutil.which("shellcheck")
    assert shellcheck is not None, "shellcheck is missing: run scripts/system-deps"
    code, out, _ = await _sh(shellcheck, "--shell=sh", "--severity=style", str(script))
    assert code == 0, out
    code, _, err = await _sh(shutil.which("dash") or "/bin/sh", "-n", str(script))
    assert code == 0, err


async def _functions(body: str, tmp_path: Path, **env: str) -> tuple[int, str, str]:
    """Run ``body`` in sh after sourcing the installer as a library of functions."""
    script = tmp_path / "install.sh"
    script.write_text(install_script("http://fleet.test:8080/"))
    environment = {**os.environ, "REMOTEHANDS_INSTALL_LIBRARY": "1", "HOME": str(tmp_path), **env}
    shell = shutil.which("dash") or "/bin/sh"
    return await _sh(shell, "-c", f". {script}\n{body}", env=environment)


async def test_script_parse_args(tmp_path: Path) -> None:
    report = 'echo "$TOKEN|$VENV|$PYTHON|$SERVER|$REUSE|$CONSUMED"'
    code, out, err = await _functions(
        f"parse_args --token=ekvent_1 --venv /opt/rh --python py --reuse-site-packages "
        f"--server http://other:1/ -- --name x\n{report}",
        tmp_path,
    )
    assert code == 0, err
    assert out.strip() == "ekvent_1|/opt/rh|py|http://other:1|1|9"
    code, out, err = await _functions(f"parse_args --token t\n{report}", tmp_path)
    assert code == 0, err
    assert out.strip() == f"t|{tmp_path}/.remotehands/venv||http://fleet.test:8080|0|2"
    code, _, err = await _functions("parse_args --venv /x -- --token t", tmp_path)
    assert code == 1
    assert "missing --token" in err


async def test_script_finds_a_recent_python(tmp_path: Path) -> None:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "python3").symlink_to(sys.executable)
    old = bin_dir / "python3.12"
    old.write_text("#!/bin/sh\nexit 1\n")  # a Python that fails the version check
    old.chmod(0o755)
    path = str(bin_dir)  # only these two Pythons
    code, out, err = await _functions('find_python\necho "$PYTHON"', tmp_path, PATH=path)
    assert code == 0, err
    assert out.strip() == "python3"
    code, out, err = await _functions(
        'PYTHON=mine\nfind_python\necho "$PYTHON"', tmp_path, PATH=path
    )
    assert out.strip() == "mine"
    code, _, err = await _functions("find_python", tmp_path, PATH="/nonexistent")
    assert code == 1
    assert "needs Python 3.11 or newer" in err


def test_build_backend_in_process(tmp_path: Path) -> None:
    """The archive's build backend, called in-process on the unpacked archive: metadata, a
    wheel holding the package and its entry points, an sdist; it needs nothing to build."""
    with tarfile.open(fileobj=io.BytesIO(build_source_archive())) as archive:
        archive.extractall(tmp_path, filter="data")
    root = tmp_path / f"remotehands-{__version__}"
    assert (root / "_build" / "remotehands_build.py").read_bytes() == Path(
        install_backend.__file__
    ).read_bytes()
    assert install_backend.get_requires_for_build_wheel() == []
    assert install_backend.get_requires_for_build_sdist() == []

    meta = tmp_path / "meta"
    name = install_backend.write_metadata(root, meta)
    assert name == f"remotehands-{__version__}.dist-info"
    text = (meta / name / "METADATA").read_text()
    assert f"Version: {__version__}" in text
    assert "Provides-Extra: agent" in text
    assert any(
        line.startswith("Requires-Dist: sqlalchemy[asyncio]") and 'extra == "server"' in line
        for line in text.splitlines()
    )

    out = tmp_path / "dist"
    out.mkdir()
    wheel_name = install_backend.wheel(root, out)
    assert wheel_name == f"remotehands-{__version__}-py3-none-any.whl"
    with zipfile.ZipFile(out / wheel_name) as wheel:
        names = set(wheel.namelist())
        record = wheel.read(f"{name}/RECORD").decode()
        entry_points = wheel.read(f"{name}/entry_points.txt").decode()
        init = wheel.read("remotehands/__init__.py")
    assert "remotehands/server/installer.sh" in names
    assert "remotehands/server/db/migrations/versions/0001_initial.py" in names
    assert not any("__pycache__" in n for n in names)
    assert "remotehands = remotehands.cli.main:main" in entry_points
    digest = base64.urlsafe_b64encode(hashlib.sha256(init).digest()).rstrip(b"=").decode()
    assert f"remotehands/__init__.py,sha256={digest},{len(init)}" in record
    assert len(record.splitlines()) == len(names)

    sdist_name = install_backend.sdist(root, out)
    with tarfile.open(out / sdist_name) as sdist:
        assert f"remotehands-{__version__}/pyproject.toml" in sdist.getnames()


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


@dataclass
class _Enrolled:
    url: str
    client: httpx.AsyncClient
    headers: dict[str, str]
    token: str
    install_cmd: str
    env: dict[str, str]
    """The environment of the install command: offline, the test's packages reused."""


@asynccontextmanager
async def _enrolled(tmp_path: Path) -> AsyncIterator[_Enrolled]:
    """A server on loopback with an enrollment made; the install command's environment.

    ``--reuse-site-packages`` keeps an install offline: the venv sees the test interpreter's
    packages (through PYTHONPATH, since that interpreter is itself a venv) and pip installs only
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
        env = {
            **os.environ,
            "HOME": str(tmp_path),
            "PYTHONPATH": sysconfig.get_paths()["purelib"],
            "PIP_NO_INDEX": "1",  # prove that nothing comes from the network
        }
        yield _Enrolled(url, client, headers, enrollment["token"], install_cmd, env)


# A real install (a venv, pip building the served archive) takes several seconds: the dry run
# and the live run are two tests, each with its own venv, so that each stays well within the
# per-test timeout on a loaded machine.


@pytest.mark.slow
async def test_install_cmd_installs_remotehands_from_the_served_archive(tmp_path: Path) -> None:
    """Run an enrollment's install_cmd for real (curl | sh) into a fresh venv, as a dry run:
    it installs, then prints the agent command instead of running it."""
    async with _enrolled(tmp_path) as enrolled:
        venv = tmp_path / "venv"
        env = {**enrolled.env, "REMOTEHANDS_INSTALL_DRY_RUN": "1"}
        command = (
            f"{enrolled.install_cmd} --venv {venv} --python {sys.executable} "
            "--reuse-site-packages -- --name rack-7"
        )
        code, out, err = await _sh("sh", "-c", command, env=env)
        assert code == 0, err
        assert out.strip() == (
            f"{venv}/bin/remotehands agent --server {enrolled.url} --token {enrolled.token} "
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


@pytest.mark.slow
async def test_install_cmd_starts_an_agent_that_comes_online(tmp_path: Path) -> None:
    """The install_cmd for real, not a dry run: the installed agent enrolls with the token and
    comes online, and an action reaches it."""
    async with _enrolled(tmp_path) as enrolled:
        venv = tmp_path / "venv"
        command = (
            f"{enrolled.install_cmd} --venv {venv} --python {sys.executable} "
            "--reuse-site-packages "
            f"-- --name rack-7 --driver fake --state-dir {tmp_path / 'agent-state'}"
        )
        agent = await asyncio.create_subprocess_exec("sh", "-c", command, env=enrolled.env,
                                                     start_new_session=True)  # fmt: skip
        try:

            async def online() -> list[dict[str, object]]:
                found = await enrolled.client.get("/v1/devices", headers=enrolled.headers,
                                                  params={"status": "online"})  # fmt: skip
                devices: list[dict[str, object]] = found.json()["devices"]
                return devices

            [device] = await eventually(online, timeout=25, interval=0.2)
            assert device["name"] == "rack-7"
            moved = await enrolled.client.post(f"/v1/devices/{device['id']}/mouse/move",
                                               headers=enrolled.headers,
                                               json={"x": 3, "y": 4})  # fmt: skip
            assert moved.json() == {"status": "ok"}
        finally:
            os.killpg(agent.pid, signal.SIGTERM)
            async with asyncio.timeout(30):
                await agent.wait()
