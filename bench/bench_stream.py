"""Streams on the agent link: a live screen through the server, and chunked transfers.

    .venv/bin/python bench/bench_stream.py [--seconds 8] [--mib 512] [--rounds 3]

1. **Watch.** ``remotehands server`` and ``remotehands agent --driver x11`` on an Xvfb 1920x1080
   desktop where a full-screen terminal scrolls text without pause; a viewer reads
   ``/v1/devices/{id}/screen/ws`` (JPEG q75) for ``--seconds``. Beside it, in the same run, the
   peer a viewer would otherwise use: a loop of ``GET /v1/devices/{id}/screenshot`` through the
   server on one keep-alive connection.
2. **Transfer.** The server in this process, ``remotehands agent --driver fake`` as a process;
   ``--mib`` MiB uploaded to and downloaded from the agent's probe target (SHA-256 on the
   agent's side of uploads), ``--rounds`` times, with the peak RSS of both processes. Beside it,
   the floors: the same bytes over a plain loopback WebSocket (websockets, 1 MiB messages, no
   flow control) and over a plain TCP socket, between two processes.

Prints medians (min, max). Figures, not a test.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import psutil
from common import Client, free_port, is_up, measure, row, wait_for

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from remotehands.agent.desktop import VirtualDesktop  # noqa: E402

REMOTEHANDS = str(ROOT / ".venv/bin/remotehands")
PYTHON = str(ROOT / ".venv/bin/python")
OWNER_PASSWORD = "bench-owner-pw"
MIB = 1 << 20


# -- 1. watch ------------------------------------------------------------------------------------


def bench_watch(seconds: float, rounds: int) -> None:
    from websockets.sync.client import connect

    procs: list[subprocess.Popen[bytes]] = []
    with VirtualDesktop(size=(1920, 1080)) as desktop, tempfile.TemporaryDirectory() as tmp:
        env = {**os.environ, **desktop.env, "REMOTEHANDS_OWNER_PASSWORD": OWNER_PASSWORD}
        try:
            procs.append(subprocess.Popen(
                ["xterm", "-geometry", "240x70+0+0", "-fa", "DejaVu Sans Mono", "-fs", "10",
                 "-e", "sh", "-c", "while :; do ls -la /usr/lib /usr/share/doc; done"], env=env,
            ))  # fmt: skip
            data = Path(tmp) / "server"
            subprocess.run([REMOTEHANDS, "server", "init", "--data", str(data)], env=env,
                           check=True, capture_output=True)  # fmt: skip
            port = free_port()
            url = f"http://127.0.0.1:{port}"
            procs.append(subprocess.Popen(
                [REMOTEHANDS, "server", "--data", str(data), "--listen", f"127.0.0.1:{port}",
                 "--log-level", "warning"], env=env))  # fmt: skip
            wait_for(lambda: is_up(url), "the server start")
            session = httpx.post(url + "/v1/auth/login",
                                 json={"username": "owner", "password": OWNER_PASSWORD}
                                 ).json()["token"]  # fmt: skip
            auth = {"Authorization": f"Bearer {session}"}
            token = httpx.post(url + "/v1/devices/enrollment", json={}, headers=auth).json()
            procs.append(subprocess.Popen(
                [REMOTEHANDS, "agent", "--driver", "x11", "--display", str(desktop.display),
                 "--server", url, "--token", token["token"],
                 "--state-dir", str(Path(tmp) / "agent")],
                env={**env, "MALLOC_MMAP_THRESHOLD_": "67108864",
                     "MALLOC_TRIM_THRESHOLD_": "268435456"}))  # fmt: skip
            fleet = Client(port, session)

            def online() -> bool:
                devices = json.loads(fleet.call("GET", "/v1/devices?status=online"))["devices"]
                return bool(devices)

            wait_for(online, "the agent enrolment")
            device = json.loads(fleet.call("GET", "/v1/devices"))["devices"][0]["id"]
            ws_url = f"ws://127.0.0.1:{port}/v1/devices/{device}/screen/ws?quality=75"

            print(f"Xvfb 1920x1080, a full-screen terminal scrolling text; {seconds:g} s a round, "
                  f"{rounds} rounds")  # fmt: skip
            fps: list[float] = []
            sizes: list[float] = []
            gaps: list[float] = []
            for _ in range(rounds):
                with connect(ws_url, additional_headers=auth, compression=None,
                             max_size=None) as ws:  # fmt: skip
                    ws.recv(timeout=10)  # the first frame: the stream is up
                    count, started = 0, time.perf_counter()
                    last = started
                    while (now := time.perf_counter()) - started < seconds:
                        frame = ws.recv(timeout=10)
                        count += 1
                        sizes.append(len(frame) / 1024)
                        now = time.perf_counter()
                        gaps.append((now - last) * 1000)
                        last = now
                    fps.append(count / (time.perf_counter() - started))
            print(row("watch /screen/ws - frames a second", fps, width=48, unit="fps", digits=1))
            print(row("watch /screen/ws - between frames", gaps, width=48))
            print(row("watch /screen/ws - frame size", sizes, width=48, unit="KiB", digits=1))

            shot = f"/v1/devices/{device}/screenshot?format=jpeg&quality=75"
            fleet.close()
            fresh = Client(port, session)  # the idle one outlived the server's keep-alive
            samples = measure(lambda: fresh.call("GET", shot), max(20, int(seconds * 10)))
            fresh.close()
            print(row("GET /screenshot loop - per frame", samples, width=48))
            print(
                f"{'GET /screenshot loop - frames a second':<48} median "
                f"{1000 / statistics.median(samples):8.1f} fps"
            )
        finally:
            for proc in reversed(procs):
                proc.terminate()
            for proc in procs:
                proc.wait(15)


# -- 2. transfers --------------------------------------------------------------------------------


class PeakRss:
    """The peak RSS of some processes, sampled every 20 ms on a thread."""

    def __init__(self, *pids: int) -> None:
        self.processes = [psutil.Process(pid) for pid in pids]
        self.base = [p.memory_info().rss for p in self.processes]
        self.peak = list(self.base)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(0.02):
            for i, process in enumerate(self.processes):
                self.peak[i] = max(self.peak[i], process.memory_info().rss)

    def __enter__(self) -> PeakRss:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


async def _serve_in_process(tmp: Path) -> tuple[object, str, asyncio.Task[None], object]:
    import uvicorn

    from remotehands.server.app import create_app
    from remotehands.server.db.bootstrap import initialise
    from remotehands.server.settings import ServerSettings

    port = free_port()
    url = f"http://127.0.0.1:{port}"
    settings = ServerSettings(data_dir=tmp / "server", public_url=url, listen=f"127.0.0.1:{port}")
    await initialise(settings, password=OWNER_PASSWORD)
    app = create_app(settings)
    config = uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning",
                            http="httptools", ws="websockets-sansio",
                            ws_per_message_deflate=False, lifespan="on")  # fmt: skip
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    while not server.started:
        await asyncio.sleep(0.01)
    return app, url, task, server


async def _repeat(block: bytes, total: int) -> AsyncIterator[bytes]:
    for _ in range(total // len(block)):
        yield block


_WS_SENDER = """
import sys, time
from websockets.sync.client import connect
total, block = int(sys.argv[2]), b"\\x01" * (1 << 20)
with connect(sys.argv[1], compression=None, max_size=None) as ws:
    for _ in range(total // len(block)):
        ws.send(block)
    ws.recv()
"""

_TCP_SENDER = """
import socket, sys
total, block = int(sys.argv[2]), b"\\x01" * (1 << 20)
with socket.create_connection(("127.0.0.1", int(sys.argv[1]))) as s:
    for _ in range(total // len(block)):
        s.sendall(block)
    s.recv(1)
"""


async def _ws_floor(total: int) -> float:
    from websockets.asyncio.server import ServerConnection, serve

    done = asyncio.Event()
    elapsed = 0.0

    async def handler(ws: ServerConnection) -> None:
        nonlocal elapsed
        got, started = 0, 0.0
        async for message in ws:
            if not got:
                started = time.perf_counter()
            got += len(message)
            if got >= total:
                elapsed = time.perf_counter() - started
                await ws.send("done")
                done.set()
                return

    async with serve(handler, "127.0.0.1", 0, compression=None, max_size=None) as server:
        port = next(iter(server.sockets)).getsockname()[1]
        proc = await asyncio.create_subprocess_exec(
            PYTHON, "-c", _WS_SENDER, f"ws://127.0.0.1:{port}/", str(total)
        )
        await done.wait()
        await proc.wait()
    return (total - MIB) / elapsed / 1e6


async def _tcp_floor(total: int) -> float:
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)
    port = listener.getsockname()[1]
    proc = await asyncio.create_subprocess_exec(PYTHON, "-c", _TCP_SENDER, str(port), str(total))

    def receive() -> float:
        conn, _ = listener.accept()
        buffer = bytearray(MIB)
        got, started = 0, time.perf_counter()
        with conn:
            while got < total:
                n = conn.recv_into(buffer)
                if not n:
                    break
                got += n
            elapsed = time.perf_counter() - started
            conn.sendall(b"x")
        return got / elapsed / 1e6

    rate = await asyncio.to_thread(receive)
    await proc.wait()
    listener.close()
    return rate


async def bench_transfer(mib: int, rounds: int) -> None:
    from remotehands.agent.transfers import PROBE

    total = mib * MIB
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        app, url, task, server = await _serve_in_process(tmp)
        services = app.state.services  # type: ignore[attr-defined]
        async with httpx.AsyncClient(base_url=url, timeout=30) as http:
            login = await http.post("/v1/auth/login",
                                    json={"username": "owner", "password": OWNER_PASSWORD})  # fmt: skip
            http.headers["Authorization"] = f"Bearer {login.json()['token']}"
            token = (await http.post("/v1/devices/enrollment", json={})).json()["token"]
        agent = subprocess.Popen(
            [REMOTEHANDS, "agent", "--driver", "fake", "--server", url, "--token", token,
             "--state-dir", str(tmp / "agent")])  # fmt: skip
        try:
            hub = services.hub
            while not hub.device_ids():
                await asyncio.sleep(0.05)
            [device] = hub.device_ids()
            block = os.urandom(4 * MIB)
            await services.router.upload(
                device, PROBE, _repeat(block, 16 * MIB), 16 * MIB
            )  # warm-up
            up: list[float] = []
            down: list[float] = []
            with PeakRss(os.getpid(), agent.pid) as rss:
                for i in range(rounds):
                    started = time.perf_counter()
                    await services.router.upload(device, PROBE, _repeat(block, total), total)
                    up.append(total / (time.perf_counter() - started) / 1e6)
                    started = time.perf_counter()
                    async with services.router.download(device, PROBE, f"{total}:{i}") as incoming:
                        async for _ in incoming:
                            pass
                    down.append(total / (time.perf_counter() - started) / 1e6)
            ws_floor = [await _ws_floor(total) for _ in range(rounds)]
            tcp_floor = [await _tcp_floor(total) for _ in range(rounds)]
        finally:
            agent.terminate()
            await asyncio.to_thread(agent.wait, 15)
            server.should_exit = True  # type: ignore[attr-defined]
            await task
    print(f"\n{mib} MiB a round, {rounds} rounds; server in this process, agent a process")
    print(row("upload to the agent's probe (SHA-256 there)", up, width=48, unit="MB/s", digits=1))
    print(row("download from the agent's probe", down, width=48, unit="MB/s", digits=1))
    print(
        row(
            "floor: plain loopback WebSocket, 1 MiB messages",
            ws_floor,
            width=48,
            unit="MB/s",
            digits=1,
        )
    )
    print(row("floor: plain loopback TCP", tcp_floor, width=48, unit="MB/s", digits=1))
    growth = [(peak - base) / MIB for peak, base in zip(rss.peak, rss.base, strict=True)]
    print(f"{'peak RSS during the transfers':<48} server {rss.peak[0] / MIB:.0f} MiB "
          f"(+{growth[0]:.0f}), agent {rss.peak[1] / MIB:.0f} MiB (+{growth[1]:.0f})")  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=8.0)
    parser.add_argument("--mib", type=int, default=512)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--only", choices=("watch", "transfer"), default=None)
    args = parser.parse_args()
    if args.only in (None, "watch"):
        bench_watch(args.seconds, args.rounds)
    if args.only in (None, "transfer"):
        asyncio.run(bench_transfer(args.mib, args.rounds))


if __name__ == "__main__":
    main()
