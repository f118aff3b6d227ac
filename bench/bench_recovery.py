"""How fast a fleet comes back after its server restarts: gracefully (SIGTERM) and after a crash
(SIGKILL), with ``--agents`` real agent links (:class:`~remotehands.agent.link.AgentLink` on the
FakeDriver, their real reconnect logic) in this process.

    .venv/bin/python bench/bench_recovery.py [--agents 1000] [--rounds 3]

The server is ``remotehands server`` (SQLite in a temporary directory) in a subprocess, stopped
and started again on the same port. Printed per kind of stop (median / min / max over the
rounds): the seconds from the stop until every agent is linked again, and from the moment the
new server answers ``/health`` until then. Figures, not a test.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
from common import free_port, is_up, row, wait_for

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from remotehands.agent.dispatch import Dispatcher  # noqa: E402
from remotehands.agent.link import AgentLink, Credential  # noqa: E402
from remotehands.drivers.fake import FakeDriver  # noqa: E402
from remotehands.testing.simagent import enroll  # noqa: E402

OWNER_PASSWORD = "bench-owner-password"
CLI = [str(Path(sys.executable).with_name("remotehands"))]


def start_server(data: str, port: int) -> subprocess.Popen[bytes]:
    env = {**os.environ, "REMOTEHANDS_OWNER_PASSWORD": OWNER_PASSWORD}
    process = subprocess.Popen([*CLI, "server", "--data", data, "--listen", f"127.0.0.1:{port}",
                                "--log-level", "warning"], env=env,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    wait_for(lambda: is_up(f"http://127.0.0.1:{port}"), "the server's start", 60)
    return process


async def main(agents: int, rounds: int) -> None:
    data = tempfile.mkdtemp(prefix="rh-recovery-")
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    env = {**os.environ, "REMOTEHANDS_OWNER_PASSWORD": OWNER_PASSWORD}
    subprocess.run([*CLI, "server", "init", "--data", data], env=env, check=True,
                   stdout=subprocess.DEVNULL)  # fmt: skip
    server = start_server(data, port)
    async with httpx.AsyncClient(base_url=url, timeout=60) as http:
        login = await http.post("/v1/auth/login",
                                json={"username": "owner", "password": OWNER_PASSWORD})  # fmt: skip
        http.headers["Authorization"] = f"Bearer {login.json()['token']}"
        devices = await enroll(http, agents, concurrency=16)
    links = [
        AgentLink(
            Credential(url, d.device_id, d.credential, d.ws_url),
            Dispatcher(FakeDriver(16, 16)),
            driver_name="fake",
            device_type="sim",
            hardware=f"hw-{i}",
        )
        for i, d in enumerate(devices)
    ]
    tasks = [asyncio.create_task(link.run()) for link in links]

    async def all_linked(timeout: float = 120) -> float:
        deadline = time.monotonic() + timeout
        while not all(link.connected.is_set() for link in links):
            if time.monotonic() > deadline:
                down = sum(not link.connected.is_set() for link in links)
                dead = [repr(t.exception()) for t in tasks if t.done() and not t.cancelled()]
                raise SystemExit(f"{down} agents not back within {timeout} s; stopped: {dead[:5]}")
            await asyncio.sleep(0.02)
        return time.monotonic()

    await all_linked()
    print(f"{agents} agents linked to {url}")
    figures: dict[str, tuple[list[float], list[float]]] = {}
    try:
        for kind, sig in (
            ("graceful (SIGTERM)", signal.SIGTERM),
            ("crash (SIGKILL)", signal.SIGKILL),
        ):
            from_stop, from_up = [], []
            for _ in range(rounds):
                stopped = time.monotonic()
                server.send_signal(sig)
                await asyncio.to_thread(server.wait, 30)
                server = await asyncio.to_thread(start_server, data, port)
                up = time.monotonic()
                back = await all_linked()
                from_stop.append(back - stopped)
                from_up.append(back - up)
                await asyncio.sleep(2)  # heartbeats settle before the next stop
            figures[kind] = (from_stop, from_up)
    finally:
        server.send_signal(signal.SIGTERM)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await asyncio.to_thread(server.wait, 30)
    print(f"recovery of {agents} agents, {rounds} rounds each (seconds):")
    for kind, (from_stop, from_up) in figures.items():
        print(row(f"{kind}: stop -> all back", from_stop, 52, "s", 2))
        print(row(f"{kind}: server up -> all back", from_up, 52, "s", 2))


if __name__ == "__main__":
    logging.basicConfig(level=logging.ERROR)  # each refused reconnect attempt logs a warning
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--agents", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    asyncio.run(main(args.agents, args.rounds))
