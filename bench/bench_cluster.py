"""Two server replicas on PostgreSQL and NATS, with simulated agents spread over them.

    .venv/bin/python bench/bench_cluster.py [--agents 2000] [--rounds 300] [--bulk-rounds 4]
                                            [--kill | --kill-only] [--kill-settle-s 45]

Starts a private ``nats-server`` and PostgreSQL (as the tests do), two replicas (``create_app``
on uvicorn, each in its own process), enrolls ``--agents`` devices and links half of them to
each replica (:class:`~remotehands.testing.simagent.SimulatedAgent`, from this process). Prints:

- a pointer move to a device linked to replica A, sent through A (in process) and through B
  (B -> NATS -> A -> link -> agent and back): median and p99;
- beside them the floor: the same agent over a bare link, no server (``bench_fleet``'s);
- a bulk pointer move through A over every device (half of them on B): until every result is
  in, the replicas' CPU time and this process's (the simulated agents'), and until the audit
  entries A writes after its answer are in the database; each round starts once the round
  before is audited. The replicas and this process keep their collectors off long-lived
  objects as ``remotehands server`` does (:func:`~remotehands.server.tuning.tune_gc`);
- with ``--kill`` (after the rest) or ``--kill-only`` (instead of it): the kill storm. Debian's
  ``haproxy``, started here with ``deploy/haproxy.cfg`` (its listen address and servers pointed
  at the two replicas; two or more HAProxy processes when one cannot hold every link under the
  machine's open-files limit), spreads every agent over both replicas; replica B is killed
  (SIGKILL) and every agent it held reconnects through HAProxy as the real agent does (full
  jitter over a backoff capped at ``QUICK_CAP_S`` after a lost link, a ``503``'s
  ``Retry-After`` honoured).
  Prints the time until every agent is welcomed again and until replica A holds every link,
  then (after ``--kill-settle-s``, past the offline bound: the sweepers have run) the devices
  the database has online, lost (not online), duplicated, and whether every agent kept its id.

Figures, not a test: nothing here passes or fails on time.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import resource
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import psutil
from common import come_back, free_port, measure_together

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT))

from tests.natsd import start_nats  # noqa: E402
from tests.pg import start_postgres  # noqa: E402

from remotehands.server.tuning import tune_gc  # noqa: E402
from remotehands.testing.simagent import Enrolled, SimulatedAgent, enroll, run_many  # noqa: E402

OWNER_PASSWORD = "bench-owner-password"


def serve(data_dir: str, database_url: str, nats_url: str, replica: str) -> None:
    """Child process: run replica ``replica`` on a free loopback port; print ``READY <port>``."""
    import uvicorn
    from argon2 import PasswordHasher

    from remotehands.protocol.link import LINK_PATH
    from remotehands.server.app import create_app
    from remotehands.server.auth import Passwords
    from remotehands.server.http.users import create_user
    from remotehands.server.settings import ServerSettings
    from remotehands.serving import websocket_protocol

    settings = ServerSettings(data_dir=Path(data_dir) / replica, database_url=database_url,
                              nats_url=nats_url, replica_id=replica)  # fmt: skip
    passwords = Passwords(PasswordHasher(time_cost=1, memory_cost=8, parallelism=1))
    app = create_app(settings, passwords=passwords)
    # the WebSocket protocol of `remotehands server`: no uvicorn ping on agent links, and a
    # refused link handshake (503) is not logged as an error
    config = uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning",
                            ws=websocket_protocol(keepalive_exempt=[LINK_PATH]),
                            ws_per_message_deflate=False, backlog=4096)  # fmt: skip
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
        tune_gc()  # as `remotehands server` does once started
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
    _raise_open_files()
    nats = start_nats()
    postgres = start_postgres()
    database = postgres.url(await postgres.create_database())
    data_dir = tempfile.mkdtemp(prefix="rh-bench-cluster-")
    children: dict[str, subprocess.Popen[str]] = {}
    try:
        ports = {}
        for replica in ("a", "b"):  # a first: it migrates the database and creates the owner
            children[replica], ports[replica] = await _start(
                [sys.executable, __file__, "--serve", data_dir, "--database-url", database,
                 "--nats-url", nats.url, "--replica", replica]
            )  # fmt: skip
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
        if not args.kill_only:
            await _routing_and_bulk(
                args,
                base,
                headers,
                devices,
                [c.pid for c in children.values()],
                database,
                nats.pid,
            )
        if args.kill or args.kill_only:
            await _kill_storm(args, children, ports, headers, devices, database, data_dir)
    finally:
        for child in children.values():
            if child.poll() is None:
                child.send_signal(signal.SIGTERM)
        for child in children.values():
            try:
                await asyncio.to_thread(child.wait, 60)
            except subprocess.TimeoutExpired:
                child.kill()
        nats.remove()
        postgres.stop()


def _cpu(pids: list[int]) -> float:
    """The CPU time (user and system, seconds) the processes ``pids`` used so far."""
    total = 0.0
    for pid in pids:
        times = psutil.Process(pid).cpu_times()
        total += times.user + times.system
    return total


def _raise_open_files() -> None:
    """As many open files as a storm needs here and in HAProxy (two per link there); root may
    raise the hard limit too."""
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (max(hard, 65536), max(hard, 65536)))
    except (ValueError, OSError):
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


async def _routing_and_bulk(
    args: argparse.Namespace,
    base: dict[str, str],
    headers: dict[str, str],
    devices: list[Enrolled],
    replicas: list[int],
    database: str,
    nats_pid: int | None,
) -> None:
    """Half the agents linked to each replica: an action through either, and bulk actions."""
    n = len(devices)
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
        # the simulated agents stand for as many machines: their process keeps its collector
        # off their long-lived objects, as a replica does (tune_gc), to take less of the cores
        tune_gc()
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

        # in turns, in a shuffled order: a drift of the machine's load falls on both alike
        timed = await asyncio.to_thread(
            measure_together, {name: lambda n=name: move_through(n) for name in ("a", "b")},
            args.rounds, 20,
        )  # fmt: skip
        for name, label in (("a", "the replica holding it (A)"), ("b", "the other one (B)")):
            print(_row(f"pointer move to a device on A, through {label}", timed[name]))
        # CPU time per move of each process on the way: what the machine's noise cannot blur
        parts = {"A": [replicas[0]], "B": [replicas[1]], "NATS": [nats_pid] if nats_pid else [],
                 "agents+client": [os.getpid()]}  # fmt: skip
        for name in ("a", "b"):
            before = {part: _cpu(pids) for part, pids in parts.items()}
            count = max(200, args.rounds // 2)
            await asyncio.to_thread(lambda n=name, c=count: [move_through(n) for _ in range(c)])
            spent = "  ".join(f"{part} {(_cpu(pids) - before[part]) / count * 1e6:5.0f}"
                              for part, pids in parts.items())  # fmt: skip
            print(f"  CPU per move through {name.upper()} (µs): {spent}")

        from bench_fleet import _direct_link_round_trips

        print(_row("pointer move over a bare link to a simulated agent (floor)",
                   await _direct_link_round_trips(args.rounds)))  # fmt: skip

        loop = asyncio.get_running_loop()

        def audited() -> int:
            # from the bulk's thread: the query runs on the loop, as the agents do
            return asyncio.run_coroutine_threadsafe(_audit_count(database), loop).result(60)

        def bulk(
            selector: dict[str, object], count: int
        ) -> tuple[list[float], list[float], list[float], list[float]]:
            """Each round from a quiet start: the audit entries of the round before written
            (the replica that took the bulk writes them after its answer)."""
            body = {"action": "mouse.move", "params": {"x": 1, "y": 1},
                    "selector": selector, "concurrency": 256}  # fmt: skip
            samples: list[float] = []
            cpu: list[float] = []
            agents_cpu: list[float] = []
            audit: list[float] = []
            for _ in range(args.bulk_rounds + 1):
                entries = audited()
                started, cpu_before = time.perf_counter(), _cpu(replicas)
                agents_before = _cpu([os.getpid()])
                results = clients["a"].post("/v1/bulk", json=body).json()["results"]
                samples.append((time.perf_counter() - started) * 1000)
                cpu.append((_cpu(replicas) - cpu_before) * 1000)
                agents_cpu.append((_cpu([os.getpid()]) - agents_before) * 1000)
                failed = [r for r in results if not r["ok"]]
                if len(results) != count or failed:  # told, and the bench goes on
                    print(f"  {len(results)} results of {count}, {len(failed)} failed: "
                          f"{failed[:1]}")  # fmt: skip
                deadline = time.monotonic() + 120
                while audited() < entries + len(results) and time.monotonic() < deadline:
                    time.sleep(0.02)
                audit.append((time.perf_counter() - started) * 1000)
            return samples[1:], cpu[1:], agents_cpu[1:], audit[1:]

        ids = [d.device_id for d in devices]
        bulks = [
            (f"bulk pointer move through A over {half} devices on A", {"ids": ids[:half]}, half),
            (f"bulk pointer move through A over {n - half} devices on B",
             {"ids": ids[half:]}, n - half),
            (f"bulk pointer move through A over all {n} (half on B)", {"tags": ["bench"]}, n),
        ]  # fmt: skip
        for label, selector, count in bulks if args.bulk_rounds > 0 else []:
            samples, cpu, agents_cpu, audit = await asyncio.to_thread(bulk, selector, count)
            print(_row(label, samples))
            # the replicas' own CPU time: what a busy machine's wall clock cannot hide
            print(_row("  CPU time of both replicas per bulk", cpu))
            print(_row("  CPU time of the simulated agents (this process)", agents_cpu))
            print(_row("  until its audit entries are written too", audit))
        for client in clients.values():
            client.close()


def _haproxy_config(ports: dict[str, int], listen: int) -> str:
    """``deploy/haproxy.cfg`` as it is, listening on loopback port ``listen`` and pointed at
    the replicas."""
    text = (ROOT / "deploy" / "haproxy.cfg").read_text()
    text = re.sub(r"(?m)^(\s*)bind :8080$", rf"\1bind 127.0.0.1:{listen}", text)
    text = re.sub(r"(?m)^\s*server replica-.*\n", "", text)
    servers = "".join(
        f"    server replica-{name} 127.0.0.1:{port} check\n" for name, port in ports.items()
    )
    return text.rstrip("\n") + "\n" + servers


async def _links(client: httpx.AsyncClient, replica: str) -> int:
    """The agent links ``replica`` holds, from its metrics."""
    try:
        text = (await client.get("/metrics")).text
    except httpx.HTTPError:  # a replica too busy to answer now: asked again
        return -1
    found = re.search(rf'remotehands_agent_links{{replica="{replica}"}} (\S+)', text)
    return int(float(found.group(1))) if found else -1


def _dsn(database: str) -> str:
    """asyncpg's form of the replicas' SQLAlchemy URL."""
    return database.replace("postgresql+asyncpg://", "postgresql://")


async def _audit_count(database: str) -> int:
    """How many audit entries the database holds."""
    import asyncpg

    connection = await asyncpg.connect(_dsn(database))
    try:
        return int(await connection.fetchval("SELECT count(*) FROM audit"))
    finally:
        await connection.close()


async def _device_counts(database: str, names: list[str]) -> tuple[int, int, int]:
    """How many rows the bench's devices have, how many distinct ids, how many online."""
    import asyncpg

    connection = await asyncpg.connect(_dsn(database))
    try:
        row = await connection.fetchrow(
            "SELECT count(*) AS total, count(DISTINCT id) AS ids, "
            "count(*) FILTER (WHERE status = 'online') AS online "
            "FROM devices WHERE name = ANY($1::text[])",
            names,
        )
    finally:
        await connection.close()
    return int(row["total"]), int(row["ids"]), int(row["online"])


async def _kill_storm(
    args: argparse.Namespace,
    children: dict[str, subprocess.Popen[str]],
    ports: dict[str, int],
    headers: dict[str, str],
    devices: list[Enrolled],
    database: str,
    data_dir: str,
) -> None:
    """Every agent through HAProxy to both replicas; kill B; measure until all are back."""
    n = len(devices)
    haproxy_bin = shutil.which("haproxy") or "/usr/sbin/haproxy"
    # HAProxy derives its connection limit from its open-files limit, two descriptors a proxied
    # link (deploy/haproxy.cfg says so): where the hard limit is too low for every agent (20,000
    # here, and not raisable: HAProxy then takes 9,986), the agents are spread over as many
    # HAProxy processes, each in front of both replicas, as that limit needs
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    per_haproxy = max(1000, (hard - 1000) // 2) if hard != resource.RLIM_INFINITY else n
    count = max(1, -(-n // per_haproxy))
    fronts: list[str] = []
    haproxies: list[subprocess.Popen[bytes]] = []
    for index in range(count):
        listen = free_port()
        config = Path(data_dir) / f"haproxy-{index}.cfg"
        config.write_text(_haproxy_config(ports, listen))
        haproxies.append(subprocess.Popen([haproxy_bin, "-db", "-f", str(config)],
                                          stdout=subprocess.DEVNULL))  # fmt: skip
        fronts.append(f"http://127.0.0.1:{listen}")
    if count > 1:
        print(f"  {count} HAProxy processes (the open-files limit of {hard} lets one hold about "
              f"{per_haproxy} links), the agents spread over them")  # fmt: skip
    clients = {name: httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", headers=headers,
                                       timeout=60) for name, port in ports.items()}  # fmt: skip
    try:
        for front, haproxy in zip(fronts, haproxies, strict=True):
            async with httpx.AsyncClient(base_url=front, timeout=5) as probe:
                deadline = time.monotonic() + 30
                while True:
                    try:
                        if (await probe.get("/health")).status_code == 200:
                            break
                    except httpx.HTTPError:
                        pass
                    if time.monotonic() > deadline or haproxy.poll() is not None:
                        raise SystemExit("HAProxy did not start (is Debian's haproxy installed?)")
                    await asyncio.sleep(0.1)
        started = time.perf_counter()
        urls = [front.replace("http", "ws") + "/v1/agent/ws" for front in fronts]
        agents = [SimulatedAgent(urls[i % count], d.credential, open_timeout_s=30.0)
                  for i, d in enumerate(devices)]  # fmt: skip
        gate = asyncio.Semaphore(100)

        async def link(agent: SimulatedAgent) -> None:
            # an agent that is refused (503) or times out in the crowd tries again, as the real
            # one does
            async with gate:
                try:
                    await agent.connect()
                    return
                except Exception:  # retried below
                    pass
            await come_back(agent)

        linking = [asyncio.ensure_future(link(a)) for a in agents]
        _done, stragglers = await asyncio.wait(linking, timeout=args.link_timeout_s)
        for task in stragglers:  # told below; the storm is measured over the others
            task.cancel()
        await asyncio.gather(*stragglers, return_exceptions=True)
        try:
            if stragglers:
                kept = [a for a, t in zip(agents, linking, strict=True) if t not in stragglers]
                print(f"  {len(stragglers)} agents not linked after {args.link_timeout_s:g} s: "
                      "left out")  # fmt: skip
                kept_ids = {id(a) for a in kept}
                await asyncio.gather(*(a.disconnect() for a in agents if id(a) not in kept_ids))
                credentials = {a.credential for a in kept}
                agents, devices = kept, [d for d in devices if d.credential in credentials]
                n = len(agents)
            held = {name: await _links(client, name) for name, client in clients.items()}
            print(f"{'linked ' + str(n) + ' agents through HAProxy':<58} "
                  f"{time.perf_counter() - started:8.2f} s   (A holds {held['a']}, "
                  f"B {held['b']})")  # fmt: skip
            ids_before = [a.device_id for a in agents]
            on_b = held["b"]
            comebacks: list[asyncio.Task[tuple[float, int, int]]] = []

            async def follow(agent: SimulatedAgent) -> tuple[float, int, int]:
                await agent.closed.wait()
                return await come_back(agent)

            followers = [asyncio.ensure_future(follow(a)) for a in agents]
            killed = time.monotonic()
            children["b"].send_signal(signal.SIGKILL)
            all_links_at = None
            try:
                while True:
                    links = await _links(clients["a"], "a")
                    if links >= n and all_links_at is None:
                        all_links_at = time.monotonic()
                    comebacks = [f for f in followers if f.done()]
                    if all_links_at is not None and len(comebacks) >= on_b:
                        break
                    if time.monotonic() - killed > 180:
                        print(f"  not back after 180 s: A holds {links} of {n}")
                        break
                    await asyncio.sleep(0.2)
                back = [f.result() for f in comebacks]
                agents_back = max((b[0] for b in back), default=killed) - killed
                attempts = sum(b[1] for b in back)
                refused = sum(b[2] for b in back)
                server_back = (all_links_at or time.monotonic()) - killed
                print(f"{'kill B (SIGKILL): every agent it held welcomed again':<58} "
                      f"{agents_back:8.2f} s   ({len(back)} agents, {attempts} attempts, "
                      f"{refused} answered 503)")  # fmt: skip
                print(f"{'kill B (SIGKILL): until A holds all ' + str(n) + ' links':<58} "
                      f"{server_back:8.2f} s")  # fmt: skip
                await asyncio.sleep(args.kill_settle_s)  # past the offline bound: sweeps ran
                total, distinct, online = await _device_counts(database, [d.name for d in devices])
                links = await _links(clients["a"], "a")
                changed = sum(1 for a, old in zip(agents, ids_before, strict=True)
                              if a.device_id != old)  # fmt: skip
                print(f"{'  after ' + format(args.kill_settle_s, 'g') + ' s: database online':<58} "
                      f"{online:8d}   of {n}; lost {n - online}, device rows {total} ({distinct} "
                      f"distinct), ids changed {changed}, A holds {links} links")  # fmt: skip
            finally:
                for follower in followers:
                    follower.cancel()
                await asyncio.gather(*followers, return_exceptions=True)
        finally:
            await asyncio.gather(*(a.disconnect() for a in agents), return_exceptions=True)
    finally:
        for client in clients.values():
            await client.aclose()
        for haproxy in haproxies:
            haproxy.terminate()
        for haproxy in haproxies:
            try:
                await asyncio.to_thread(haproxy.wait, 10)
            except subprocess.TimeoutExpired:
                haproxy.kill()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--agents", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=300)
    parser.add_argument("--bulk-rounds", type=int, default=4, help="0: no bulk actions")
    parser.add_argument("--kill", action="store_true", help="then the kill storm")
    parser.add_argument("--kill-only", action="store_true", help="only the kill storm")
    parser.add_argument("--kill-settle-s", type=float, default=45.0)
    parser.add_argument("--link-timeout-s", type=float, default=180.0)
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
