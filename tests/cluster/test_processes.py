"""Replicas as ``remotehands server`` processes: errors at start, and HAProxy (Debian's, with
``deploy/haproxy.cfg``) in front of two replicas, one of which is killed."""

from __future__ import annotations

import asyncio
import dataclasses
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Awaitable
from contextlib import asynccontextmanager
from pathlib import Path

import httpx
import pytest

from remotehands.agent.dispatch import Dispatcher
from remotehands.agent.link import AgentLink, Credential, load_or_enroll
from remotehands.drivers.fake import FakeDriver
from remotehands.server.auth import Passwords
from remotehands.server.db.bootstrap import initialise
from remotehands.server.settings import ServerSettings
from remotehands.testing.xapps import eventually
from tests.cluster.conftest import _ws
from tests.server.conftest import FAST_PASSWORDS, loopback_socket

pytestmark = [pytest.mark.anyio, pytest.mark.postgres]

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
PASSWORD = "owner-password-123"
CLI = [sys.executable, "-c", "from remotehands.cli.main import main; main()", "server"]
HEARTBEAT = "0.5"


def _free_port() -> int:
    sock = loopback_socket()
    port: int = sock.getsockname()[1]
    sock.close()
    return port


async def _run(*args: str, env: dict[str, str] | None = None) -> tuple[int, str]:
    process = await asyncio.create_subprocess_exec(
        *CLI, *args, env={**os.environ, **(env or {})},
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    async with asyncio.timeout(25):
        out, err = await process.communicate()
    assert process.returncode is not None
    return process.returncode, (out + err).decode()


@pytest.mark.slow
@pytest.mark.timeout(60)
async def test_unreachable_nats_at_start_is_a_clear_error(tmp_path: Path, pg_url: str) -> None:
    dead = f"nats://127.0.0.1:{_free_port()}"
    code, output = await _run("--data", str(tmp_path), "--listen", "127.0.0.1:0",
                              "--database-url", pg_url, "--nats-url", dead)  # fmt: skip
    assert code == 2, output
    assert f"cannot connect to NATS at {dead}" in output and "nats-server" in output
    assert "Traceback" not in output


@pytest.mark.slow
async def test_unreachable_postgresql_at_start_is_a_clear_error(
    tmp_path: Path, nats_url: str
) -> None:
    db = f"postgresql://u:secretpw@127.0.0.1:{_free_port()}/fleet"
    code, output = await _run("--data", str(tmp_path), "--listen", "127.0.0.1:0",
                              "--database-url", db, "--nats-url", nats_url)  # fmt: skip
    assert code == 2, output
    assert "cannot open database" in output and "secretpw" not in output
    assert "start PostgreSQL there" in output
    assert "Traceback" not in output


@asynccontextmanager
async def _replica(
    name: str, port: int, public: str, tmp_path: Path, db: str, nats: str
) -> AsyncIterator[asyncio.subprocess.Process]:
    process = await asyncio.create_subprocess_exec(
        *CLI, "--data", str(tmp_path / name), "--listen", f"127.0.0.1:{port}",
        "--public-url", public, "--database-url", db, "--nats-url", nats,
        "--replica-id", name, "--trusted-proxy", "127.0.0.1",
        env={**os.environ, "REMOTEHANDS_HEARTBEAT_INTERVAL_S": HEARTBEAT},
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL,
    )  # fmt: skip
    try:
        assert process.stdout is not None
        async with asyncio.timeout(20):
            line = (await process.stdout.readline()).decode()
        assert "serving" in line, line
        yield process
    finally:
        if process.returncode is None:
            process.send_signal(signal.SIGINT)
            try:
                async with asyncio.timeout(10):
                    await process.wait()
            except TimeoutError:
                process.kill()
                await process.wait()


@asynccontextmanager
async def _haproxy(tmp_path: Path, front: int, ports: list[int]) -> AsyncIterator[None]:
    binary = shutil.which("haproxy") or pytest.fail("haproxy missing: scripts/system-deps")
    text = (DEPLOY / "haproxy.cfg").read_text()
    text = text.replace("bind :8080", f"bind 127.0.0.1:{front}")
    text = text.replace("10.0.0.11:8080", f"127.0.0.1:{ports[0]}")
    text = text.replace("10.0.0.12:8080", f"127.0.0.1:{ports[1]}")
    config = tmp_path / "haproxy.cfg"
    config.write_text(text)
    process = subprocess.Popen([binary, "-db", "-f", str(config)],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    try:
        yield
    finally:
        process.terminate()
        process.wait(timeout=10)


@pytest.mark.slow
@pytest.mark.timeout(90)
async def test_haproxy_in_front_of_two_replicas_one_killed(
    tmp_path: Path, pg_url: str, nats_url: str
) -> None:
    # the owner, made here with cheap hashing (`server init` would spend seconds on argon2)
    await initialise(ServerSettings(data_dir=tmp_path / "init", database_url=pg_url),
                     password=PASSWORD, passwords=Passwords(FAST_PASSWORDS))  # fmt: skip
    front, ports = _free_port(), [_free_port(), _free_port()]
    public = f"http://127.0.0.1:{front}"
    async with (
        _replica("a", ports[0], public, tmp_path, pg_url, nats_url) as a,
        _replica("b", ports[1], public, tmp_path, pg_url, nats_url) as b,
        _haproxy(tmp_path, front, ports),
        httpx.AsyncClient(base_url=public, timeout=10) as http,
    ):
        processes = {ports[0]: a, ports[1]: b}

        async def login() -> bool:
            try:
                owner = {"username": "owner", "password": PASSWORD}
                answer = await http.post("/v1/auth/login", json=owner)
            except httpx.HTTPError:
                return False
            if answer.status_code == 200:
                http.headers["Authorization"] = f"Bearer {answer.json()['token']}"
            return answer.status_code == 200

        await eventually(login, timeout=15)
        agents = []
        for name in ("through-haproxy", "direct"):
            enrolled = await http.post("/v1/devices/enrollment", json={"suggested_name": name})
            credential = await load_or_enroll(
                public, enrolled.json()["token"], state_dir=tmp_path / name, hardware=name,
                device_type="desktop",
            )  # fmt: skip
            agents.append(credential)
        through, direct = agents
        drivers: dict[str, FakeDriver] = {}
        tasks: list[asyncio.Task[None]] = []

        def start(credential: Credential) -> None:
            driver = drivers[credential.device_id] = FakeDriver(320, 200)
            link = AgentLink(credential, Dispatcher(driver), driver_name="fake",
                             device_type="desktop", hardware="hw", backoff_base_s=0.1,
                             backoff_cap_s=1.0)  # fmt: skip
            tasks.append(asyncio.create_task(link.run()))

        async def status(device_id: str) -> str:
            answer = await http.get(f"/v1/devices/{device_id}")
            return str(answer.json().get("status"))

        async def links(port: int) -> int:
            async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as one:
                return int((await one.get("/health")).json()["links"])

        try:
            start(through)
            await eventually(lambda: _is(status(through.device_id), "online"), 15)
            victim = ports[0] if await links(ports[0]) == 1 else ports[1]
            assert await links(victim) == 1
            survivor = ports[1] if victim == ports[0] else ports[0]
            # `direct` links to the victim itself, not through HAProxy: it cannot come back
            start(
                dataclasses.replace(direct, ws_url=_ws(f"http://127.0.0.1:{victim}", direct.ws_url))
            )
            await eventually(lambda: _is(status(direct.device_id), "online"), 15)
            assert await links(victim) == 2

            killed_at = time.monotonic()
            processes[victim].kill()
            await processes[victim].wait()
            move = {"x": 5, "y": 6}

            async def moved() -> bool:
                try:
                    answer = await http.post(
                        f"/v1/devices/{through.device_id}/mouse/move", json=move
                    )
                except httpx.HTTPError:
                    return False
                return answer.status_code == 200

            await eventually(moved, timeout=20)
            back_after = time.monotonic() - killed_at
            assert drivers[through.device_id].pointer == (5, 6)
            assert await status(through.device_id) == "online"  # the same device id
            assert await links(survivor) == 1
            # the device whose agent cannot come back goes offline within the bound
            await eventually(lambda: _is(status(direct.device_id), "offline"), 10)
            offline_after = time.monotonic() - killed_at
            gone = await http.post(f"/v1/devices/{direct.device_id}/mouse/move", json=move)
            assert gone.status_code == 503 and gone.json()["error"] == "device_offline"
            print(f"back through HAProxy after {back_after:.2f} s; offline: {offline_after:.2f} s")
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)


async def _is(value: Awaitable[str], expected: str) -> bool:
    return await value == expected
