"""Two server replicas on PostgreSQL and NATS, with simulated agents spread over them.

    .venv/bin/python bench/bench_cluster.py [--agents 2000] [--rounds 300] [--bulk-rounds 4]

Starts a private ``nats-server`` and PostgreSQL (as the tests do), two replicas (``create_app``
on uvicorn, each in its own process), enrolls ``--agents`` devices and links half of them to
each replica (:class:`~remotehands.testing.simagent.SimulatedAgent`, from this process). Prints:

- a pointer move to a device linked to replica A, sent through A (in process) and through B
  (B -> NATS -> A -> link -> agent and back): median and p99;
- beside them the floor: the same agent over a bare link, no server (``bench_fleet``'s);
- a bulk pointer move through A over every device (half of them on B): until every result is
  in.

Figures, not a test: nothing here passes or fails on time.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import resource
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
from common import measure

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT))

from tests.natsd import start_nats  # noqa: E402
from tests.pg import start_postgres  # noqa: E402

from remotehands.testing.simagent import enroll, run_many  # noqa: E402

OWNER_PASSWORD = "bench-owner-password"


def serve(data_dir: str, database_url: str, nats_url: str, replica: str) -> None:
    """Child process: run replica ``replica`` on a free loopback port; print ``READY <port>``."""
    import uvicorn
    from argon2 import PasswordHasher

    from remotehands.server.app import create_app
    from remotehands.server.auth import Passwords
    from remotehands.server.http.users import create_user
    from remotehands.server.settings import ServerSettings

    settings = ServerSettings(data_dir=Path(data_dir) / replica, database_url=database_url,
                              nats_url=nats_url, replica_id=replica)  # fmt: skip
    passwords = Passwords(PasswordHasher(time_cost=1, memory_cost=8, parallelism=1))
    app = create_app(settings, passwords=passwords)
    config = uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning",
                            ws="websockets-sansio", ws_per_message_deflate=False,
                            backlog=4096)  # fmt: skip
    server = uvicorn.Server(config)

    async def main() -> None:
        task = asyncio.create_task(server.serve())
        while not server.started:
            if task.done():
                task.result()
                return
            await asyncio.sleep(0.01)
        if replica == "a":
            await create_user(app.state.services, "owner", OWNER_PASSWORD, "owner")
        port = server.servers[0].sockets[0].getsockname()[1]
        print(f"READY {port}", flush=True)
        await task

    import uvloop

    uvloop.run(main())


def _row(name: str, samples: list[float], unit: str = "ms") -> str:
    ordered = sorted(samples)
    p99 = ordered[min(len(ordered) - 1, round(0.99 * (len(ordered) - 1)))]
    return (
        f"{name:<58} median {statistics.median(samples):8.2f} {unit:<3} "
        f"p99 {p99:8.2f}   min {min(samples):8.2f}   max {max(samples):8.2f}"
    )


async def _start(command: list[str]) -> tuple[subprocess.Popen[str], int]:
    child = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)
    assert child.stdout is not None
    line = await asyncio.wait_for(asyncio.to_thread(child.stdout.readline), 60)
    if not line.startswith("READY "):
        raise SystemExit(f"a replica did not start: {line!r}")
    return child, int(line.split()[1])


async def bench(args: argparse.Namespace) -> None:
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    nats = start_nats()
    postgres = start_postgres()
    database = postgres.url(await postgres.create_database())
    data_dir = tempfile.mkdtemp(prefix="rh-bench-cluster-")
    children: list[subprocess.Popen[str]] = []
    try:
        ports = {}
        for replica in ("a", "b"):  # a first: it migrates the database and creates the owner
            child, ports[replica] = await _start(
                [sys.executable, __file__, "--serve", data_dir, "--database-url", database,
                 "--nats-url", nats.url, "--replica", replica]
            )  # fmt: skip
            children.append(child)
        base = {name: f"http://127.0.0.1:{port}" for name, port in ports.items()}
        async with httpx.AsyncClient(base_url=base["a"], timeout=120) as anonymous:
            login = await anonymous.post(
                "/v1/auth/login", json={"username": "owner", "password": OWNER_PASSWORD}
            )
        headers = {"Authorization": f"Bearer {login.json()['token']}"}
        n = args.agents
        print(f"two replicas (uvicorn, PostgreSQL, NATS), {n} simulated agents, "
              f"{os.cpu_count()} cores, loopback")  # fmt: skip
        async with httpx.AsyncClient(base_url=base["a"], headers=headers, timeout=120) as owner:
            devices = await enroll(owner, n, name_prefix="bench", tags=["bench"], concurrency=8)
        half = n // 2
        credentials = [d.credential for d in devices]
        started = time.perf_counter()
        async with (
            run_many(base["a"].replace("http", "ws") + "/v1/agent/ws", credentials[:half],
                     connect_concurrency=100),
            run_many(base["b"].replace("http", "ws") + "/v1/agent/ws", credentials[half:],
                     connect_concurrency=100),
        ):  # fmt: skip
            print(f"{'linked ' + str(n) + ' agents, half to each replica':<58} "
                  f"{time.perf_counter() - started:8.2f} s")  # fmt: skip
            on_a = devices[0].device_id
            clients = {name: httpx.Client(base_url=url, headers=headers, timeout=120)
                       for name, url in base.items()}  # fmt: skip
            # B knows where A's devices are once A's presence announcement reached it
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:
                # from a thread: the simulated agents answer on this loop
                probe = await asyncio.to_thread(
                    clients["b"].post, f"/v1/devices/{on_a}/mouse/move", json={"x": 1, "y": 1}
                )
                if probe.status_code == 200:
                    break
                await asyncio.sleep(0.1)
            else:
                raise SystemExit(f"B cannot reach a device on A: {probe.text}")
            positions = iter(range(10**9))

            def move_through(name: str) -> None:
                i = next(positions)
                response = clients[name].post(f"/v1/devices/{on_a}/mouse/move",
                                              json={"x": i % 500, "y": 200})  # fmt: skip
                assert response.status_code == 200, response.text

            for name, label in (("a", "the replica holding it (A)"), ("b", "the other one (B)")):
                samples = await asyncio.to_thread(measure, lambda n=name: move_through(n),
                                                  args.rounds, 20)  # fmt: skip
                print(_row(f"pointer move to a device on A, through {label}", samples))

            from bench_fleet import _direct_link_round_trips

            print(_row("pointer move over a bare link to a simulated agent (floor)",
                       await _direct_link_round_trips(args.rounds)))  # fmt: skip

            def bulk(selector: dict[str, object], count: int) -> list[float]:
                body = {"action": "mouse.move", "params": {"x": 1, "y": 1},
                        "selector": selector, "concurrency": 256}  # fmt: skip
                samples = []
                for _ in range(args.bulk_rounds + 1):
                    started = time.perf_counter()
                    results = clients["a"].post("/v1/bulk", json=body).json()["results"]
                    samples.append((time.perf_counter() - started) * 1000)
                    failed = [r for r in results if not r["ok"]]
                    assert len(results) == count and not failed, failed[:3]
                return samples[1:]

            ids = [d.device_id for d in devices]
            for label, selector, count in (
                (f"bulk pointer move through A over {half} devices on A", {"ids": ids[:half]}, half),
                (f"bulk pointer move through A over {n - half} devices on B",
                 {"ids": ids[half:]}, n - half),
                (f"bulk pointer move through A over all {n} (half on B)", {"tags": ["bench"]}, n),
            ):  # fmt: skip
                print(_row(label, await asyncio.to_thread(bulk, selector, count)))
            for client in clients.values():
                client.close()
    finally:
        for child in children:
            child.send_signal(signal.SIGTERM)
        for child in children:
            try:
                await asyncio.to_thread(child.wait, 60)
            except subprocess.TimeoutExpired:
                child.kill()
        nats.remove()
        postgres.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--agents", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=300)
    parser.add_argument("--bulk-rounds", type=int, default=4)
    parser.add_argument("--serve", metavar="DATA_DIR", help=argparse.SUPPRESS)
    parser.add_argument("--database-url", help=argparse.SUPPRESS)
    parser.add_argument("--nats-url", help=argparse.SUPPRESS)
    parser.add_argument("--replica", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve(args.serve, args.database_url, args.nats_url, args.replica)
        return
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    asyncio.run(bench(args))


if __name__ == "__main__":
    main()
