"""An ISO-sized virtual-media upload (1 GiB of generated data) through the fleet server to a
device whose agent is a real process (``remotehands agent --driver fake --server ...``): progress
seen on both ends, cancelled half way by the client (the device keeps nothing), then run again
to the end, with the server's and the agent's memory flat throughout."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import psutil
import pytest

from remotehands.server.app import create_app
from remotehands.server.auth import Passwords
from remotehands.server.db.bootstrap import initialise
from remotehands.server.settings import ServerSettings
from remotehands.testing.xapps import eventually
from tests.server.conftest import FAST_PASSWORDS, loopback_socket, serve
from tests.system.test_transfer import GIB, OWNER_PASSWORD, REMOTEHANDS, RSS_BOUND, Peak, Server

pytestmark = [pytest.mark.anyio, pytest.mark.slow]

BLOCK = 4 << 20


@pytest.fixture
async def server(tmp_path: Path) -> AsyncIterator[Server]:
    """A server on loopback in this process, its owner logged in."""
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


async def _image(block: bytes, sent: list[int], pause_at: int | None = None,
                 paused: asyncio.Event | None = None) -> AsyncIterator[bytes]:  # fmt: skip
    """1 GiB of ``block`` repeated, counting what was sent in ``sent[0]``; at ``pause_at`` it
    sets ``paused`` and waits there forever (until its upload is cancelled)."""
    for _ in range(GIB // len(block)):
        if pause_at is not None and sent[0] >= pause_at:
            assert paused is not None
            paused.set()
            await asyncio.Event().wait()
        sent[0] += len(block)
        yield block


@pytest.mark.timeout(120)  # 1.5 GiB through two processes: about 10 s here, more under load
async def test_an_iso_upload_cancelled_half_way_then_whole_with_memory_flat(
    server: Server, tmp_path: Path
) -> None:
    created = await server.owner.post("/v1/devices/enrollment", json={"suggested_name": "kvm"})
    env = {**os.environ, "REMOTEHANDS_HEARTBEAT_INTERVAL_S": "1"}
    agent = subprocess.Popen(
        [REMOTEHANDS, "agent", "--driver", "fake", "--server", server.url, "--token",
         created.json()["token"], "--state-dir", str(tmp_path / "agent")], env=env,
    )  # fmt: skip
    try:
        [device_id] = await eventually(server.hub.device_ids, timeout=30)
        base = f"/v1/devices/{device_id}"
        put_headers = {"Content-Length": str(GIB)}
        block = os.urandom(BLOCK)

        async def images() -> list[dict[str, Any]]:
            listed: list[dict[str, Any]] = (await server.owner.get(base + "/media")).json()[
                "images"
            ]
            return listed

        # warm both ends up, so that the baseline holds their steady buffers
        warm = await server.owner.put(base + "/media/images/warm.iso", content=block * 4)
        assert warm.status_code == 200, warm.text
        assert (await server.owner.delete(base + "/media/images/warm.iso")).status_code == 204

        peak = Peak(psutil.Process(), psutil.Process(agent.pid))
        sampler = asyncio.create_task(peak.sample())
        try:
            # half way, then the client goes away: the device shows the image being written,
            # then nothing at all
            sent = [0]
            paused = asyncio.Event()
            upload = asyncio.create_task(server.owner.put(
                base + "/media/images/debian.iso", headers=put_headers,
                content=_image(block, sent, GIB // 2, paused)))  # fmt: skip
            async with asyncio.timeout(60):
                await paused.wait()

            async def written() -> list[dict[str, Any]]:
                return [i for i in await images() if i["size"] >= GIB // 4]

            [partial] = await eventually(written, timeout=20)
            assert partial["name"] == "debian.iso" and partial["complete"] is False
            upload.cancel()
            with pytest.raises(asyncio.CancelledError):
                await upload
            assert await eventually(lambda: _empty(server, base), timeout=20)

            # and again, to the end, with progress on both sides
            sent = [0]
            progress: list[int] = []
            started = time.perf_counter()
            upload = asyncio.create_task(server.owner.put(
                base + "/media/images/debian.iso", headers=put_headers,
                content=_image(block, sent), timeout=60))  # fmt: skip
            while not upload.done():
                listed = await images()
                if listed and not listed[0]["complete"]:
                    progress.append(listed[0]["size"])
                await asyncio.wait({upload}, timeout=0.2)  # a polling period
            done = await upload
            rate = GIB / (time.perf_counter() - started) / 1e6
            print(f"1 GiB through the server: {rate:.0f} MB/s, device progress {len(progress)}")
            assert done.status_code == 200, done.text
            assert done.json() == {"name": "debian.iso", "size": GIB, "complete": True}
            assert sent[0] == GIB
            assert progress == sorted(progress) and progress and progress[-1] < GIB
            assert await images() == [{"name": "debian.iso", "size": GIB, "complete": True}]
        finally:
            peak._stop.set()
            await sampler
        server_growth, agent_growth = peak.growth()
        print(f"RSS growth: server {server_growth >> 20} MiB, agent {agent_growth >> 20} MiB")
        assert server_growth < RSS_BOUND, f"the server grew {server_growth >> 20} MiB"
        assert agent_growth < RSS_BOUND, f"the agent grew {agent_growth >> 20} MiB"
        audit = (await server.owner.get("/v1/audit", params={"action": "media.upload"})).json()
        assert [e["result"] for e in audit["entries"]][:2] == ["ok", "invalid"]
    finally:
        agent.send_signal(signal.SIGINT)
        try:
            await asyncio.to_thread(agent.wait, 20)
        except subprocess.TimeoutExpired:
            agent.kill()
            await asyncio.to_thread(agent.wait, 5)


async def _empty(server: Server, base: str) -> bool:
    try:
        listed: list[Any] = (await server.owner.get(base + "/media")).json()["images"]
    except httpx.HTTPError:
        return False
    return not listed
