"""Fast, gentle recovery: an agent comes back when a stopping server says, and soon after losing
a server that had welcomed it; against a real server on loopback."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import httpx
import pytest

from remotehands.agent.dispatch import Dispatcher
from remotehands.agent.link import RESTART_COME_BACK_S, AgentLink, Credential, load_or_enroll
from remotehands.drivers.fake import FakeDriver
from remotehands.protocol.link import CLOSE_SERVICE_RESTART, restart_reason, retry_after
from remotehands.server.link.hub import RESTART_SPREAD_MAX_S
from remotehands.testing.simagent import enroll
from remotehands.testing.xapps import eventually
from tests.integration.conftest import LiveServer

pytestmark = pytest.mark.anyio


def test_a_restart_reason_says_when_to_come_back() -> None:
    assert retry_after(restart_reason(1.234)) == 1.234
    assert retry_after("server shutting down") is None
    assert retry_after(None) is None


@asynccontextmanager
async def _linked(live_server: LiveServer, tmp_path: Path) -> AsyncIterator[AgentLink]:
    credential = await load_or_enroll(live_server.url, await live_server.enrollment(),
                                      state_dir=tmp_path, hardware="hw-back",
                                      device_type="desktop")  # fmt: skip
    dispatcher = Dispatcher(FakeDriver(64, 64))
    # a backoff that would wait up to 100 s: only the quick retry brings it back in time
    link = AgentLink(credential, dispatcher, driver_name="fake", device_type="desktop",
                     hardware="hw-back", backoff_base_s=100, backoff_cap_s=100)  # fmt: skip
    task = asyncio.create_task(link.run())
    try:
        await asyncio.wait_for(link.connected.wait(), 20)
        yield link
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await dispatcher.aclose()


async def test_an_agent_that_lost_a_healthy_server_comes_back_soon(
    live_server: LiveServer, tmp_path: Path
) -> None:
    async with _linked(live_server, tmp_path) as link:
        hub = live_server.app.state.services.hub
        await hub.disconnect(link.credential.device_id, 1011, "crashed")
        await eventually(lambda: link.connections >= 2, timeout=8)


async def test_an_agent_comes_back_when_the_server_said(
    live_server: LiveServer, tmp_path: Path
) -> None:
    async with _linked(live_server, tmp_path) as link:
        hub = live_server.app.state.services.hub
        closed = time.monotonic()
        await hub.disconnect(link.credential.device_id, 1001, restart_reason(1.0))
        await eventually(lambda: link.connections >= 2, timeout=8)
        assert time.monotonic() - closed >= 0.9


async def test_a_bare_service_restart_close_brings_the_agent_back_after_a_jittered_delay(
    live_server: LiveServer, tmp_path: Path
) -> None:
    """uvicorn's own close as it stops (1012, no reason): the agent draws its own delay."""
    async with _linked(live_server, tmp_path) as link:
        hub = live_server.app.state.services.hub
        closed = time.monotonic()
        await hub.disconnect(link.credential.device_id, CLOSE_SERVICE_RESTART, "")
        await eventually(lambda: link.connections >= 2, timeout=8)
        assert link.last_close == (CLOSE_SERVICE_RESTART, "")
        assert time.monotonic() - closed >= RESTART_COME_BACK_S[0] - 0.1


# -- a real server process, stopped gracefully or killed, and started again on its port --------

REMOTEHANDS = str(Path(sys.executable).with_name("remotehands"))
OWNER_PASSWORD = "reconnect-owner-password"
AGENTS = 3


class ServerProcess:
    """``remotehands server`` on a fixed loopback port, started again after each stop."""

    def __init__(self, data: Path) -> None:
        self.data = data
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            self.port = probe.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self.env = {**os.environ, "REMOTEHANDS_OWNER_PASSWORD": OWNER_PASSWORD}
        self.process: subprocess.Popen[bytes] | None = None

    async def start(self) -> None:
        self.process = subprocess.Popen(
            [REMOTEHANDS, "server", "--data", str(self.data), "--listen",
             f"127.0.0.1:{self.port}", "--log-level", "warning"],
            env=self.env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        async with httpx.AsyncClient(base_url=self.url, timeout=2) as http:

            async def up() -> bool:
                with contextlib.suppress(httpx.HTTPError):
                    return (await http.get("/health")).status_code == 200
                return False

            await eventually(up, timeout=20, interval=0.05)

    async def stop(self, sig: signal.Signals) -> None:
        assert self.process is not None
        self.process.send_signal(sig)
        await asyncio.to_thread(self.process.wait, 15)


@asynccontextmanager
async def _fleet(tmp_path: Path) -> AsyncIterator[tuple[ServerProcess, list[AgentLink]]]:
    """A real server with :data:`AGENTS` linked agents (whose own backoff would wait 100 s)."""
    server = ServerProcess(tmp_path / "server")
    init = await asyncio.create_subprocess_exec(
        REMOTEHANDS, "server", "init", "--data", str(server.data), env=server.env,
        stdout=subprocess.DEVNULL,
    )  # fmt: skip
    assert await asyncio.wait_for(init.wait(), 20) == 0
    await server.start()
    async with httpx.AsyncClient(base_url=server.url, timeout=10) as http:
        login = await http.post("/v1/auth/login",
                                json={"username": "owner", "password": OWNER_PASSWORD})  # fmt: skip
        http.headers["Authorization"] = f"Bearer {login.json()['token']}"
        devices = await enroll(http, AGENTS)
    links = [
        AgentLink(
            Credential(server.url, d.device_id, d.credential, d.ws_url),
            Dispatcher(FakeDriver(16, 16)),
            driver_name="fake",
            device_type="sim",
            hardware=f"hw-{i}",
            backoff_base_s=100,
            backoff_cap_s=100,
        )
        for i, d in enumerate(devices)
    ]
    tasks = [asyncio.create_task(link.run()) for link in links]
    try:
        await eventually(lambda: all(link.connected.is_set() for link in links), timeout=15)
        yield server, links
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for link in links:
            await link.dispatcher.aclose()
        if server.process is not None and server.process.poll() is None:
            await server.stop(signal.SIGKILL)


async def test_a_graceful_stop_tells_each_agent_when_to_come_back(tmp_path: Path) -> None:
    async with _fleet(tmp_path) as (server, links):
        await server.stop(signal.SIGTERM)
        # the word reached every agent before uvicorn closed the sockets (1012, no reason)
        delays = [retry_after(link.last_close[1]) if link.last_close else None for link in links]
        assert all(link.last_close and link.last_close[0] == 1001 for link in links), [
            link.last_close for link in links
        ]
        assert all(d is not None and 0.5 <= d <= 0.5 + RESTART_SPREAD_MAX_S for d in delays)
        assert len(set(delays)) == len(links)  # each its own delay: jitter
        await server.start()
        await eventually(lambda: all(link.connections >= 2 for link in links), timeout=10)
        devices = await _statuses(server)
        assert all(devices[link.credential.device_id] == "online" for link in links)


async def test_agents_come_back_soon_after_a_kill(tmp_path: Path) -> None:
    async with _fleet(tmp_path) as (server, links):
        await server.stop(signal.SIGKILL)
        await eventually(lambda: not any(link.connected.is_set() for link in links), timeout=5)
        await server.start()
        # their own backoff would wait up to 100 s: the quick retry brings them back
        await eventually(lambda: all(link.connections >= 2 for link in links), timeout=10)
        devices = await _statuses(server)
        assert all(devices[link.credential.device_id] == "online" for link in links)


async def _statuses(server: ServerProcess) -> dict[str, str]:
    async with httpx.AsyncClient(base_url=server.url, timeout=10) as http:
        login = await http.post("/v1/auth/login",
                                json={"username": "owner", "password": OWNER_PASSWORD})  # fmt: skip
        http.headers["Authorization"] = f"Bearer {login.json()['token']}"
        devices = (await http.get("/v1/devices")).json()["devices"]
    return {d["id"]: d["status"] for d in devices}
