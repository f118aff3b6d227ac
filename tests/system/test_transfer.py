"""A 1 GiB chunked transfer over the agent link, with the agent as a real process
(``remotehands agent --driver fake --server ...``, enrolled through a real token) and the server
on loopback in this process: the bytes arrive whole both ways, and neither process's memory
grows with the payload."""

from __future__ import annotations

import asyncio
import hashlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import psutil
import pytest
from fastapi import FastAPI

from remotehands.agent.transfers import PROBE, probe_pattern
from remotehands.server.app import create_app
from remotehands.server.auth import Passwords
from remotehands.server.db.bootstrap import initialise
from remotehands.server.link.hub import LinkHub
from remotehands.server.settings import ServerSettings
from remotehands.testing.xapps import eventually
from tests.server.conftest import FAST_PASSWORDS, loopback_socket, serve

pytestmark = [pytest.mark.anyio, pytest.mark.slow]

REMOTEHANDS = str(Path(sys.executable).with_name("remotehands"))
GIB = 1 << 30
PIECE = 4 << 20
OWNER_PASSWORD = "owner-password-123"
RSS_BOUND = 96 << 20
"""How much either process may grow during a 1 GiB transfer: a few windows, far below 1 GiB."""


def _rss(process: psutil.Process) -> int:
    rss: int = process.memory_info().rss
    return rss


class Peak:
    """The highest RSS of a few processes, sampled on a worker thread while a block runs."""

    def __init__(self, *processes: psutil.Process) -> None:
        self.processes = processes
        self.base = [_rss(p) for p in processes]
        self.peak = list(self.base)
        self._stop = asyncio.Event()

    async def sample(self) -> None:
        while not self._stop.is_set():
            rss = await asyncio.to_thread(lambda: [_rss(p) for p in self.processes])
            self.peak = [max(a, b) for a, b in zip(self.peak, rss, strict=True)]
            await asyncio.sleep(0.05)  # a sampling period, not a synchronisation

    def growth(self) -> list[int]:
        return [peak - base for peak, base in zip(self.peak, self.base, strict=True)]


async def _payload(block: bytes, total: int = GIB) -> AsyncIterator[bytes]:
    for _ in range(total // len(block)):
        yield block


def _repeated_sha256(block: bytes, total: int = GIB) -> str:
    digest = hashlib.sha256()
    for _ in range(total // len(block)):
        digest.update(block)
    return digest.hexdigest()


@dataclass
class Server:
    url: str
    app: FastAPI
    owner: httpx.AsyncClient

    @property
    def hub(self) -> LinkHub:
        hub: LinkHub = self.app.state.services.hub
        return hub


@pytest.fixture
async def server(tmp_path: Path) -> AsyncIterator[Server]:
    sock = loopback_socket()
    url = f"http://127.0.0.1:{sock.getsockname()[1]}"
    settings = ServerSettings(data_dir=tmp_path / "server", public_url=url)
    passwords = Passwords(FAST_PASSWORDS)
    await initialise(settings, password=OWNER_PASSWORD, passwords=passwords)
    app = create_app(settings, passwords=passwords)
    async with serve(app, sock) as served, httpx.AsyncClient(base_url=served, timeout=20) as http:
        login = await http.post(
            "/v1/auth/login", json={"username": "owner", "password": OWNER_PASSWORD}
        )
        http.headers["Authorization"] = f"Bearer {login.json()['token']}"
        yield Server(served, app, http)


@pytest.mark.timeout(120)  # 2 GiB through two processes: about 20 s here, more under load
async def test_a_gibibyte_each_way_with_both_processes_memory_flat(
    server: Server, tmp_path: Path
) -> None:
    created = await server.owner.post("/v1/devices/enrollment", json={"suggested_name": "big"})
    token = created.json()["token"]
    env = {**os.environ, "REMOTEHANDS_HEARTBEAT_INTERVAL_S": "1"}
    agent = subprocess.Popen(
        [REMOTEHANDS, "agent", "--driver", "fake", "--server", server.url, "--token", token,
         "--state-dir", str(tmp_path / "agent")], env=env,
    )  # fmt: skip
    try:
        hub = server.hub

        def linked() -> list[str]:
            return hub.device_ids()

        block = os.urandom(PIECE)
        name = f"{GIB}:down"
        pattern = probe_pattern(name)
        # The expected digests are computed while the agent starts.
        expected_up = asyncio.create_task(asyncio.to_thread(_repeated_sha256, block))
        expected_down = asyncio.create_task(asyncio.to_thread(_repeated_sha256, pattern))
        [device_id] = await eventually(linked, timeout=30)
        router = server.app.state.services.router
        expected = await expected_up

        # warm both ends up, so that the baseline holds their steady buffers
        await router.upload(device_id, PROBE, _payload(block, 16 << 20), 16 << 20)
        peak = Peak(psutil.Process(), psutil.Process(agent.pid))
        sampler = asyncio.create_task(peak.sample())
        try:
            started = time.perf_counter()
            async with asyncio.timeout(120):
                result = await router.upload(
                    device_id, PROBE, _payload(block), GIB, name=f"sha256:{expected}"
                )
            assert result == {"size": GIB, "sha256": expected}
            print(f"upload: {GIB / (time.perf_counter() - started) / 1e6:.0f} MB/s")
            started = time.perf_counter()

            got, down = 0, hashlib.sha256()
            async with asyncio.timeout(120), router.download(device_id, PROBE, name) as incoming:
                assert incoming.size == GIB
                async for data in incoming:
                    await asyncio.to_thread(down.update, data)
                    got += len(data)
                held = incoming.peak_held
            assert got == GIB
            print(f"download: {GIB / (time.perf_counter() - started) / 1e6:.0f} MB/s")
            assert down.hexdigest() == await expected_down
        finally:
            peak._stop.set()
            await sampler
        server_growth, agent_growth = peak.growth()
        print(f"RSS growth: server {server_growth >> 20} MiB, agent {agent_growth >> 20} MiB")
        assert server_growth < RSS_BOUND, f"the server grew {server_growth >> 20} MiB"
        assert agent_growth < RSS_BOUND, f"the agent grew {agent_growth >> 20} MiB"
        assert held <= hub.get(device_id).transfers.window  # type: ignore[union-attr]
    finally:
        agent.send_signal(signal.SIGINT)
        try:
            # On a thread: the loop must stay free to close the agent's link.
            await asyncio.to_thread(agent.wait, 20)
        except subprocess.TimeoutExpired:
            agent.kill()
            await asyncio.to_thread(agent.wait, 5)
