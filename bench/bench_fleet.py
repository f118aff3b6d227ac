"""The fleet server with 1,000 simulated agents: memory, idle CPU, bulk, round trips.

    .venv/bin/python bench/bench_fleet.py [--agents 1000] [--rounds 200] [--database-url URL]

Runs the server (``create_app`` on uvicorn, SQLite in a temporary directory unless
``--database-url`` says otherwise) in a subprocess, enrolls ``--agents`` devices through its API
and connects one :class:`~remotehands.testing.simagent.SimulatedAgent` per device from this
process. Prints median / min / max for:

- the server's resident memory with no agent and with every agent linked (and per link);
- the server's CPU while idle with every agent linked, over 10 s of heartbeats;
- one bulk action (pointer move) over every device: until every result is in, and streamed
  (first result, every result);
- an input action's round trip through the server (HTTP -> server -> link -> agent -> back),
  beside the same agent answering over a bare link with no server in between, and beside the
  server's HTTP floor: ``GET /install``, public and answered from memory (``/health`` asks the
  database, so it is no floor).

Figures, not a test: nothing here passes or fails on time.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import resource
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import httpx
import psutil
from common import measure

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from remotehands.protocol.link import decode, encode  # noqa: E402
from remotehands.testing.simagent import SimulatedAgent, enroll, run_many  # noqa: E402

OWNER_PASSWORD = "bench-owner-password"


# -- the server, in its own process -------------------------------------------------------------


def serve(data_dir: str, database_url: str | None) -> None:
    """Child process: run the server on a free loopback port; print ``READY <port>``."""
    import uvicorn
    from argon2 import PasswordHasher

    from remotehands.server.app import create_app
    from remotehands.server.auth import Passwords
    from remotehands.server.http.users import create_user
    from remotehands.server.settings import ServerSettings

    settings = ServerSettings(data_dir=Path(data_dir), database_url=database_url)
    passwords = Passwords(PasswordHasher(time_cost=1, memory_cost=8, parallelism=1))
    app = create_app(settings, passwords=passwords)
    config = uvicorn.Config(
        app,
        host="127.0.0.1",
        port=0,
        log_level="warning",
        ws="websockets-sansio",
        ws_per_message_deflate=False,
        backlog=4096,
    )
    server = uvicorn.Server(config)

    async def main() -> None:
        task = asyncio.create_task(server.serve())
        while not server.started:
            if task.done():
                task.result()
                return
            await asyncio.sleep(0.01)
        await create_user(app.state.services, "owner", OWNER_PASSWORD, "owner")
        port = server.servers[0].sockets[0].getsockname()[1]
        print(f"READY {port}", flush=True)
        await task

    try:
        import uvloop

        uvloop.run(main())
    except ImportError:
        asyncio.run(main())


# -- measuring ----------------------------------------------------------------------------------


def _row(name: str, samples: list[float], unit: str = "ms") -> str:
    return (
        f"{name:<58} median {statistics.median(samples):9.2f} {unit:<3} "
        f"min {min(samples):9.2f}   max {max(samples):9.2f}"
    )


async def _direct_link_round_trips(rounds: int) -> list[float]:
    """The same simulated agent over a bare link, answered by this process: no server."""
    from websockets.asyncio.server import ServerConnection
    from websockets.asyncio.server import serve as ws_serve

    samples: list[float] = []
    done = asyncio.Event()

    async def handler(ws: ServerConnection) -> None:
        hello = decode(await ws.recv())
        await ws.send(
            encode({"type": "welcome", "device_id": "dev_direct", "heartbeat_interval_s": 10.0})
        )
        assert hello["type"] == "hello"
        for i in range(rounds + 10):
            request = {
                "type": "request",
                "id": str(i),
                "action": "mouse.move",
                "params": {"x": i % 500, "y": 200},
                "timeout_ms": 5000,
            }
            started = time.perf_counter()
            await ws.send(encode(request))
            while decode(await ws.recv())["type"] != "reply":
                pass
            if i >= 10:
                samples.append((time.perf_counter() - started) * 1000)
        done.set()

    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    async with (
        ws_serve(handler, sock=sock, compression=None),
        SimulatedAgent(f"ws://127.0.0.1:{port}/", "agt_direct"),
    ):
        await asyncio.wait_for(done.wait(), 120)
    return samples


async def bench(args: argparse.Namespace) -> None:
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    data_dir = tempfile.mkdtemp(prefix="rh-bench-fleet-")
    command = [sys.executable, __file__, "--serve", data_dir]
    if args.database_url:
        command += ["--database-url", args.database_url]
    child = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout is not None
        line = await asyncio.wait_for(asyncio.to_thread(child.stdout.readline), 60)
        if not line.startswith("READY "):
            raise SystemExit(f"the server did not start: {line!r}")
        port = int(line.split()[1])
        base = f"http://127.0.0.1:{port}"
        ws_url = f"ws://127.0.0.1:{port}/v1/agent/ws"
        server = psutil.Process(child.pid)
        async with httpx.AsyncClient(base_url=base, timeout=120) as anonymous:
            login = await anonymous.post(
                "/v1/auth/login", json={"username": "owner", "password": OWNER_PASSWORD}
            )
        token = login.json()["token"]
        headers = {"Authorization": f"Bearer {token}"}

        n = args.agents
        print(
            f"fleet server (uvicorn, {'PostgreSQL' if args.database_url else 'SQLite'}), "
            f"{n} simulated agents in this process, loopback, "
            f"{psutil.cpu_count()} cores"
        )
        started = time.perf_counter()
        async with httpx.AsyncClient(base_url=base, headers=headers, timeout=120) as owner:
            devices = await enroll(owner, n, name_prefix="bench", tags=["bench"], concurrency=8)
        print(
            f"{'enrolled ' + str(n) + ' devices through the API':<58} "
            f"{time.perf_counter() - started:9.2f} s"
        )
        rss_empty = server.memory_info().rss / 2**20

        started = time.perf_counter()
        async with run_many(
            ws_url, [d.credential for d in devices], connect_concurrency=100
        ) as agents:
            print(
                f"{'connected ' + str(n) + ' agents (hello -> welcome)':<58} "
                f"{time.perf_counter() - started:9.2f} s"
            )
            rss_full = server.memory_info().rss / 2**20
            print(f"{'server RSS, no agent linked':<58} {rss_empty:9.1f} MiB")
            print(
                f"{'server RSS, ' + str(n) + ' agents linked':<58} {rss_full:9.1f} MiB"
                f"   ({(rss_full - rss_empty) * 1024 / n:.1f} KiB per link)"
            )
            print(f"{'server open files':<58} {server.num_fds():9d}")

            before = server.cpu_times()
            idle_started = time.perf_counter()
            await asyncio.sleep(10)
            after = server.cpu_times()
            spent = (after.user - before.user) + (after.system - before.system)
            idle = spent / (time.perf_counter() - idle_started) * 100
            beats = sum(agent.heartbeats_sent for agent in agents)
            print(
                f"{'server CPU idle over 10 s (heartbeats every 10 s)':<58} {idle:9.2f} %"
                f"   of one core ({beats} heartbeats so far)"
            )

            rounds = args.rounds
            http = httpx.Client(base_url=base, headers=headers, timeout=120)
            device = devices[0].device_id
            positions = iter(range(10**9))

            def move() -> None:
                i = next(positions)
                response = http.post(
                    f"/v1/devices/{device}/mouse/move", json={"x": i % 500, "y": 200}
                )
                assert response.status_code == 200

            def floor() -> None:
                # Public, no database, no authentication: a few KiB of text from memory.
                response = http.get("/install")
                assert response.status_code == 200

            print(
                _row(
                    "pointer move through the server (HTTP, link, agent)",
                    await asyncio.to_thread(measure, move, rounds, warmup=10),
                )
            )
            print(
                _row(
                    "pointer move over a bare link to the same agent",
                    await _direct_link_round_trips(rounds),
                )
            )
            print(
                _row(
                    "GET /install on the server (HTTP floor: no database)",
                    await asyncio.to_thread(measure, floor, rounds, warmup=10),
                )
            )

            def audited_since(since: str) -> int:
                query = {"action": "mouse.move", "since": since, "limit": 1000}
                return len(http.get("/v1/audit", params=query).json()["entries"])

            def bulk_rounds(concurrency: int, stream: bool) -> list[list[float]]:
                """Per round: [every result] or [first result, every result], in ms. Each
                round waits for the previous one's audit (written after its results)."""
                body = {
                    "action": "mouse.move",
                    "params": {"x": 1, "y": 1},
                    "selector": {"tags": ["bench"]},
                    "concurrency": concurrency,
                }
                samples = []
                for _ in range(args.bulk_rounds + 1):  # the first round warms up
                    since = datetime.now(UTC).isoformat()
                    started = time.perf_counter()
                    if stream:
                        first = None
                        with http.stream(
                            "POST", "/v1/bulk", params={"stream": "true"}, json=body
                        ) as response:
                            for line in response.iter_lines():
                                elapsed = (time.perf_counter() - started) * 1000
                                if first is None:
                                    first = elapsed
                                if "total_duration_ms" in line:
                                    samples.append([first, elapsed])
                    else:
                        results = http.post("/v1/bulk", json=body).json()["results"]
                        samples.append([(time.perf_counter() - started) * 1000])
                        assert len(results) == n and all(r["ok"] for r in results)
                    deadline = time.monotonic() + 120
                    while audited_since(since) < min(n, 1000) and time.monotonic() < deadline:
                        time.sleep(0.1)
                return samples[1:]

            for concurrency in (64, 256):
                whole = await asyncio.to_thread(bulk_rounds, concurrency, False)
                print(
                    _row(
                        f"bulk pointer move over {n} devices, {concurrency} at a time",
                        [s[0] for s in whole],
                    )
                )
            streamed = await asyncio.to_thread(bulk_rounds, 64, True)
            print(_row("  streamed (NDJSON), 64 at a time: first result", [s[0] for s in streamed]))
            print(_row("  streamed (NDJSON), 64 at a time: every result", [s[1] for s in streamed]))
            http.close()
    finally:
        child.send_signal(signal.SIGTERM)
        try:
            await asyncio.to_thread(child.wait, 60)
        except subprocess.TimeoutExpired:
            child.kill()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--agents", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=200)
    parser.add_argument("--bulk-rounds", type=int, default=6)
    parser.add_argument("--database-url", default=None)
    parser.add_argument("--serve", metavar="DATA_DIR", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve(args.serve, args.database_url)
        return
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    asyncio.run(bench(args))


if __name__ == "__main__":
    main()
