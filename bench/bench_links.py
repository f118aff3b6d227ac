"""Idle agent links at scale: memory and CPU per link, a bulk action, a reconnection storm.

    .venv/bin/python bench/bench_links.py [--agents 1000,5000,10000] [--data DIR]

Starts ``remotehands server`` (the real command: SQLite in ``--data``, a temporary directory
unless given) in its own process, enrolls the largest number of devices through its API as
agents do (enrollment token, ``/v1/agent/register``; kept in ``--data`` so that a second run
reuses them), and links :class:`~remotehands.testing.simagent.SimulatedAgent` s from two other
processes, in steps (``--agents``). At each step it prints the server's resident memory per
link and its CPU while idle (``--idle-s`` of heartbeats at the server's default interval).

At the largest step it then measures:

- one bulk action (pointer move) over every device, until every result is in;
- a drop of every link at once (the agents vanish without a close frame): how long until the
  server has every device offline, and how many it leaves "online";
- the storm that follows: every agent reconnects with capped exponential backoff and full
  jitter, waiting as long as a ``503`` answer's ``Retry-After`` asks: how long until every
  device is online again, how many devices the server has (none lost, none duplicated), and
  whether every agent kept its device id.

The floor is measured the same way beside it: the same agents linked to a bare ``websockets``
server that answers the hello and reads heartbeats, nothing else. The simulated agents, like the
real one, send no WebSocket ping (their heartbeat keeps the link alive): at ten thousand links,
websockets' default ping every 20 s is 500 more frames a second for the server to answer.

Figures, not a test: nothing here passes or fails on time.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
import psutil
from common import come_back

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

OWNER_PASSWORD = "bench-owner-password-123"
AGENT_PROCESSES = 2
CREDENTIALS = "credentials.json"


def _cli() -> list[str]:
    return [str(Path(sys.executable).with_name("remotehands"))]


# -- the simulated agents, in processes of their own --------------------------------------------


async def _agents_main(ws_url: str, credentials: list[str]) -> None:
    """Child process: link simulated agents on command (one command a line on stdin, one
    answer a line on stdout)."""
    from remotehands.testing.simagent import SimulatedAgent

    agents = [SimulatedAgent(ws_url, c, open_timeout_s=30.0) for c in credentials]
    linked = 0
    gate = asyncio.Semaphore(100)
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)

    async def connect_once(agent: SimulatedAgent) -> None:
        async with gate:
            await agent.connect()

    async def reconnect(agent: SimulatedAgent) -> tuple[int, int]:
        """As the agent does after losing a server that had welcomed it (``come_back``).
        Returns (attempts, 503 answers)."""
        _welcomed, attempts, refused = await come_back(agent)
        return attempts, refused

    while line := (await reader.readline()).decode().strip():
        command, _, argument = line.partition(" ")
        if command == "connect":
            target = min(int(argument), len(agents))
            started = time.perf_counter()
            results = await asyncio.gather(
                *(connect_once(a) for a in agents[linked:target]), return_exceptions=True
            )
            failed = [r for r in results if isinstance(r, BaseException)]
            linked = target
            print(f"OK {time.perf_counter() - started:.3f} {len(failed)}", flush=True)
        elif command == "drop":
            for agent in agents[:linked]:
                await agent.drop()
            print("OK", flush=True)
        elif command == "storm":
            before = [a.device_id for a in agents[:linked]]
            started = time.perf_counter()
            outcome = await asyncio.gather(*(reconnect(a) for a in agents[:linked]))
            took = time.perf_counter() - started
            changed = sum(1 for a, old in zip(agents, before, strict=False) if a.device_id != old)
            attempts = sum(o[0] for o in outcome)
            refused = sum(o[1] for o in outcome)
            print(f"OK {took:.3f} {changed} {attempts} {refused}", flush=True)
        elif command == "quit":
            break
    for agent in agents[:linked]:
        await agent.drop()


class Agents:
    """The simulated agents, spread over :data:`AGENT_PROCESSES` processes."""

    def __init__(self, ws_url: str, credentials: list[str], work: Path, tag: str) -> None:
        self.children: list[subprocess.Popen[str]] = []
        parts = [credentials[i::AGENT_PROCESSES] for i in range(AGENT_PROCESSES)]
        for i, part in enumerate(parts):
            path = work / f"agents-{tag}-{i}.json"
            path.write_text(json.dumps(part))
            self.children.append(
                subprocess.Popen(
                    [sys.executable, __file__, "--agents-process", ws_url, str(path)],
                    stdin=subprocess.PIPE,
                    stdout=subprocess.PIPE,
                    text=True,
                )
            )

    async def ask(self, command: str, per_child: list[str] | None = None) -> list[list[str]]:
        """Send ``command`` (with each child's own argument) and wait for every answer."""

        def one(i: int, child: subprocess.Popen[str]) -> list[str]:
            assert child.stdin is not None and child.stdout is not None
            argument = f" {per_child[i]}" if per_child else ""
            child.stdin.write(command + argument + "\n")
            child.stdin.flush()
            answer = child.stdout.readline().split()
            if not answer or answer[0] != "OK":
                raise SystemExit(f"an agent process failed on {command!r}: {answer}")
            return answer[1:]

        return await asyncio.gather(
            *(asyncio.to_thread(one, i, c) for i, c in enumerate(self.children))
        )

    async def link(self, n: int) -> tuple[float, int]:
        """Link the first ``n`` agents (all processes together): seconds, failures."""
        share = [str(len(range(i, n, AGENT_PROCESSES))) for i in range(AGENT_PROCESSES)]
        answers = await self.ask("connect", share)
        return max(float(a[0]) for a in answers), sum(int(a[1]) for a in answers)

    def close(self) -> None:
        for child in self.children:
            with _suppress():
                assert child.stdin is not None
                child.stdin.write("quit\n")
                child.stdin.flush()
        for child in self.children:
            try:
                child.wait(30)
            except subprocess.TimeoutExpired:
                child.kill()


class _suppress:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> bool:
        return True


# -- the floor: a bare websockets server --------------------------------------------------------


def _floor_main() -> None:
    """Child process: a bare websockets server that welcomes agents and reads what they send."""
    import contextlib

    import uvloop
    from websockets.asyncio.server import ServerConnection, serve
    from websockets.exceptions import ConnectionClosed

    async def handler(ws: ServerConnection) -> None:
        await ws.recv()
        await ws.send(
            json.dumps({"type": "welcome", "device_id": "dev_floor", "heartbeat_interval_s": 10})
        )
        with contextlib.suppress(ConnectionClosed):
            async for _ in ws:
                pass

    async def main() -> None:
        async with serve(
            handler, "127.0.0.1", 0, compression=None, ping_interval=None, backlog=4096
        ) as server:
            port = next(iter(server.sockets)).getsockname()[1]
            print(f"READY {port}", flush=True)
            await asyncio.Future()

    uvloop.run(main())


# -- measuring ----------------------------------------------------------------------------------


def _cpu(process: psutil.Process) -> float:
    times = process.cpu_times()
    return times.user + times.system


async def _idle_cpu(process: psutil.Process, seconds: float) -> float:
    """The process's CPU over ``seconds``, in % of one core."""
    before, started = _cpu(process), time.perf_counter()
    await asyncio.sleep(seconds)
    return (_cpu(process) - before) / (time.perf_counter() - started) * 100


def _rss(process: psutil.Process) -> float:
    return float(process.memory_info().rss) / 2**20


async def _settle(process: psutil.Process, seconds: float = 2.0) -> None:
    """Let the server finish the work of the last step (writes, collections) before a reading."""
    await asyncio.sleep(seconds)


async def _floor(
    steps: list[int], credentials: list[str], work: Path, idle_s: float
) -> dict[int, tuple[float, float]]:
    child = subprocess.Popen(
        [sys.executable, __file__, "--floor"], stdout=subprocess.PIPE, text=True
    )
    figures: dict[int, tuple[float, float]] = {}
    try:
        assert child.stdout is not None
        port = int(child.stdout.readline().split()[1])
        server = psutil.Process(child.pid)
        empty = _rss(server)
        agents = Agents(f"ws://127.0.0.1:{port}/", credentials[: max(steps)], work, "floor")
        try:
            for n in steps:
                _, failed = await agents.link(n)
                await _settle(server)
                per_link = (_rss(server) - empty) * 1024 / n
                figures[n] = (per_link, await _idle_cpu(server, idle_s))
                if failed:
                    print(f"  floor: {failed} agents failed to link at {n}")
        finally:
            agents.close()
    finally:
        child.send_signal(signal.SIGTERM)
        child.wait(30)
    return figures


async def _enrolled(base: str, headers: dict[str, str], data: Path, n: int) -> list[dict[str, str]]:
    """``n`` enrolled devices: those kept in ``data`` from a previous run, and more enrolled
    through the API as agents do."""
    from remotehands.testing.simagent import enroll

    path = data / CREDENTIALS
    kept: list[dict[str, str]] = json.loads(path.read_text()) if path.exists() else []
    if len(kept) < n:
        started = time.perf_counter()
        async with httpx.AsyncClient(base_url=base, headers=headers, timeout=120) as owner:
            more = await enroll(owner, n - len(kept), name_prefix=f"bench{len(kept)}",
                                tags=["bench"], concurrency=16)  # fmt: skip
        kept += [{"device_id": d.device_id, "credential": d.credential} for d in more]
        path.write_text(json.dumps(kept))
        print(f"{'enrolled ' + str(len(more)) + ' devices through the API':<52} "
              f"{time.perf_counter() - started:8.1f} s")  # fmt: skip
    return kept[:n]


def _db(data: Path) -> Any:
    import sqlite3

    return contextlib.closing(
        sqlite3.connect(f"file:{data / 'remotehands.db'}?mode=ro", uri=True, timeout=30)
    )


def _online_count(data: Path) -> int:
    """Devices online in the server's SQLite database (read beside it: a server this busy may
    not answer its own /metrics in time)."""
    with _db(data) as db:
        return int(db.execute("SELECT count(*) FROM devices WHERE status = 'online'").fetchone()[0])


def _ids(data: Path) -> list[str]:
    with _db(data) as db:
        return [row[0] for row in db.execute("SELECT id FROM devices")]


async def _wait_online(data: Path, want: int, timeout: float) -> tuple[float, int]:
    """Seconds until ``want`` devices are online (or ``timeout``), and the last count."""
    started = time.perf_counter()
    value = await asyncio.to_thread(_online_count, data)
    while value != want and time.perf_counter() - started < timeout:
        await asyncio.sleep(0.2)
        value = await asyncio.to_thread(_online_count, data)
    return time.perf_counter() - started, value


async def bench(args: argparse.Namespace) -> None:
    steps = sorted(int(s) for s in args.agents.split(","))
    n = steps[-1]
    data = Path(args.data or tempfile.mkdtemp(prefix="rh-bench-links-"))
    data.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="rh-bench-links-work-"))
    env = {**os.environ, "REMOTEHANDS_OWNER_PASSWORD": OWNER_PASSWORD}
    subprocess.run([*_cli(), "server", "init", "--data", str(data)], env=env, check=True,
                   stdout=subprocess.DEVNULL)  # fmt: skip
    child = subprocess.Popen(
        [*_cli(), "server", "--data", str(data), "--listen", "127.0.0.1:0", "--json",
         "--log-level", "warning"],
        stdout=subprocess.PIPE, env=env, text=True,
    )  # fmt: skip
    try:
        assert child.stdout is not None
        line = await asyncio.wait_for(asyncio.to_thread(child.stdout.readline), 60)
        base = json.loads(line)["url"]
        ws_url = base.replace("http", "ws", 1) + "/v1/agent/ws"
        server = psutil.Process(child.pid)
        async with httpx.AsyncClient(base_url=base, timeout=120) as anonymous:
            for _ in range(100):
                try:
                    login = await anonymous.post(
                        "/v1/auth/login", json={"username": "owner", "password": OWNER_PASSWORD}
                    )
                    break
                except httpx.TransportError:
                    await asyncio.sleep(0.1)
        headers = {"Authorization": f"Bearer {login.json()['token']}"}
        print(f"remotehands server (uvicorn, SQLite) and {AGENT_PROCESSES} agent processes, "
              f"loopback, {psutil.cpu_count()} cores; heartbeats at the server's default")  # fmt: skip
        devices = await _enrolled(base, headers, data, n)
        credentials = [d["credential"] for d in devices]
        await _settle(server, 3)
        empty = _rss(server)
        print(f"{'server RSS, no agent linked':<52} {empty:8.1f} MiB")

        floor = {} if args.no_floor else await _floor(steps, credentials, work, args.idle_s)
        agents = Agents(ws_url, credentials, work, "server")
        http = httpx.AsyncClient(base_url=base, headers=headers, timeout=120)
        try:
            print(f"{'links':>8} {'connect s':>10} {'KiB/link':>10} {'idle CPU %':>11}"
                  f" {'floor KiB/link':>15} {'floor CPU %':>12}")  # fmt: skip
            for step in steps:
                took, failed = await agents.link(step)
                await _settle(server)
                per_link = (_rss(server) - empty) * 1024 / step
                idle = await _idle_cpu(server, args.idle_s)
                f_kib, f_cpu = floor.get(step, (float("nan"), float("nan")))
                print(f"{step:>8} {took:>10.1f} {per_link:>10.1f} {idle:>11.1f}"
                      f" {f_kib:>15.1f} {f_cpu:>12.1f}" + (f"  ({failed} failed)" if failed else ""))  # fmt: skip
            print(f"{'server open files':<52} {server.num_fds():8d}")

            if args.no_bulk:
                args.bulk_rounds = -1
            body = {"action": "mouse.move", "params": {"x": 1, "y": 1},
                    "selector": {"tags": ["bench"]}}  # fmt: skip
            samples, cpu = [], []
            for i in range(args.bulk_rounds + 1):  # the first warms up
                started, cpu_before = time.perf_counter(), _cpu(server)
                results = (await http.post("/v1/bulk", json=body)).json()["results"]
                if i:
                    samples.append(time.perf_counter() - started)
                    cpu.append(_cpu(server) - cpu_before)
                ok = sum(1 for r in results if r["ok"])
                if ok != n:
                    print(f"  bulk: {ok} of {len(results)} results ok")
                await asyncio.sleep(args.bulk_pause_s)  # its audit written before the next round
            if samples:
                print(f"{'bulk pointer move over ' + str(n) + ' devices':<52} median "
                      f"{statistics.median(samples):6.2f} s  min {min(samples):.2f}  max {max(samples):.2f}")  # fmt: skip
            # the server's own CPU time: what a busy machine's wall clock cannot hide
            if samples:
                print(f"{'  server CPU time per bulk':<52} median "
                      f"{statistics.median(cpu):6.2f} s  min {min(cpu):.2f}  max {max(cpu):.2f}")  # fmt: skip

            started = time.perf_counter()
            await agents.ask("drop")
            took, online = await _wait_online(data, 0, 120)
            print(f"{'drop all ' + str(n) + ' links: until all offline':<52} {took:8.1f} s"
                  f"   ({int(online)} left online)")  # fmt: skip

            if args.no_storm:
                return
            answers = await agents.ask("storm")
            storm = max(float(a[0]) for a in answers)
            changed = sum(int(a[1]) for a in answers)
            attempts = sum(int(a[2]) for a in answers)
            refused = sum(int(a[3]) for a in answers)
            took, online = await _wait_online(data, n, 120)
            ids = await asyncio.to_thread(_ids, data)
            total, distinct = len(ids), len(set(ids))
            print(f"{'storm: every agent back (agents saw their welcome)':<52} {storm:8.1f} s"
                  f"   ({attempts} attempts, {refused} answered 503)")  # fmt: skip
            print(f"{'  the server counts online':<52} {int(online):8d}   of {n}; devices {total} "
                  f"({distinct} distinct), ids changed {changed}")  # fmt: skip
        finally:
            await http.aclose()
            agents.close()
    finally:
        child.send_signal(signal.SIGTERM)
        try:
            await asyncio.to_thread(child.wait, 60)
        except subprocess.TimeoutExpired:
            child.kill()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--agents", default="1000,5000,10000", help="steps, comma separated")
    parser.add_argument("--data", default=None, help="server data directory (kept: reused)")
    parser.add_argument("--idle-s", type=float, default=10.0)
    parser.add_argument("--bulk-rounds", type=int, default=3)
    parser.add_argument("--bulk-pause-s", type=float, default=5.0, help="between bulk rounds")
    parser.add_argument("--no-storm", action="store_true")
    parser.add_argument("--no-bulk", action="store_true")
    parser.add_argument("--no-floor", action="store_true")
    parser.add_argument("--agents-process", nargs=2, help=argparse.SUPPRESS)
    parser.add_argument("--floor", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.agents_process:
        import uvloop

        url, path = args.agents_process
        uvloop.run(_agents_main(url, json.loads(Path(path).read_text())))
        return
    if args.floor:
        _floor_main()
        return
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    asyncio.run(bench(args))


if __name__ == "__main__":
    main()
