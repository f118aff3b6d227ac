"""Virtual-media upload throughput: a large image through the fleet server and the agent link,
against the same image put straight to the agent's native face (the floor), side by side in one
run, with the peak memory of both processes.

    .venv/bin/python bench/bench_media.py [--size-mib 1024] [--rounds 3]

The server and the agent (``--driver fake``: its media store hashes what it gets and keeps
nothing) run as processes of their own; the client sends generated data (a random block
repeated) over one keep-alive HTTP connection, never holding the image. Prints median / min /
max MB/s per path and each process's resident memory before and at its peak. Figures, not a
test (goal: at least 100 MB/s through the server on loopback).
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import psutil
from common import free_port, is_up, row, wait_for

ROOT = Path(__file__).resolve().parents[1]
REMOTEHANDS = str(ROOT / ".venv/bin/remotehands")
BLOCK = 1 << 20


class PeakRss:
    """The highest resident memory of some processes, sampled on a thread while a block runs."""

    def __init__(self, processes: dict[str, psutil.Process]) -> None:
        self.processes = processes
        self.base = {name: p.memory_info().rss for name, p in processes.items()}
        self.peak = dict(self.base)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def _sample(self) -> None:
        while not self._stop.wait(0.02):
            for name, process in self.processes.items():
                self.peak[name] = max(self.peak[name], process.memory_info().rss)

    def __enter__(self) -> PeakRss:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def put(port: int, path: str, token: str, size: int, block: bytes) -> dict[str, object]:
    """PUT ``size`` bytes of ``block`` repeated to ``path``; the JSON answer (a 200)."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
    try:
        conn.putrequest("PUT", path)
        conn.putheader("Authorization", f"Bearer {token}")
        conn.putheader("Content-Type", "application/octet-stream")
        conn.putheader("Content-Length", str(size))
        conn.endheaders()
        view = memoryview(block)
        sent = 0
        while sent < size:
            piece = view[: min(len(block), size - sent)]
            conn.send(piece)
            sent += len(piece)
        response = conn.getresponse()
        body = response.read()
        assert response.status == 200, body
        answer: dict[str, object] = json.loads(body)
        return answer
    finally:
        conn.close()


def delete(port: int, path: str, token: str) -> None:
    """DELETE ``path``; it must answer 204."""
    response = httpx.delete(f"http://127.0.0.1:{port}{path}",
                            headers={"Authorization": f"Bearer {token}"})  # fmt: skip
    assert response.status_code == 204, response.text


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-mib", type=int, default=1024)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    size = args.size_mib << 20
    block = os.urandom(BLOCK)
    procs: list[subprocess.Popen[bytes]] = []
    with tempfile.TemporaryDirectory() as tmp:
        env = {**os.environ, "REMOTEHANDS_OWNER_PASSWORD": "bench-owner-pw",
               "REMOTEHANDS_AGENT_PASSWORD": "bench-agent-pw"}  # fmt: skip
        try:
            data = Path(tmp) / "server"
            subprocess.run([REMOTEHANDS, "server", "init", "--data", str(data)], env=env,
                           check=True, capture_output=True)  # fmt: skip
            server_port, agent_port = free_port(), free_port()
            server_url = f"http://127.0.0.1:{server_port}"
            procs.append(subprocess.Popen(
                [REMOTEHANDS, "server", "--data", str(data), "--listen",
                 f"127.0.0.1:{server_port}", "--log-level", "warning"], env=env))  # fmt: skip
            wait_for(lambda: is_up(server_url), "the server start")
            session = httpx.post(server_url + "/v1/auth/login",
                                 json={"username": "owner", "password": "bench-owner-pw"},
                                 ).json()["token"]  # fmt: skip
            auth = {"Authorization": f"Bearer {session}"}
            enrollment = httpx.post(server_url + "/v1/devices/enrollment", json={},
                                    headers=auth).json()  # fmt: skip
            procs.append(subprocess.Popen(
                [REMOTEHANDS, "agent", "--driver", "fake", "--server", server_url, "--token",
                 enrollment["token"], "--listen", f"127.0.0.1:{agent_port}", "--state-dir",
                 str(Path(tmp) / "agent")], env=env))  # fmt: skip

            def online() -> bool:
                got = httpx.get(server_url + "/v1/devices?status=online", headers=auth).json()
                return bool(got["devices"])

            wait_for(online, "the agent enrolment")
            device = httpx.get(server_url + "/v1/devices", headers=auth).json()["devices"][0]["id"]
            agent_token = httpx.post(f"http://127.0.0.1:{agent_port}/auth/login",
                                     json={"password": "bench-agent-pw"}).json()["token"]  # fmt: skip
            server_proc, agent_proc = psutil.Process(procs[0].pid), psutil.Process(procs[1].pid)
            paths: list[tuple[str, Callable[[str], float]]] = []

            def timed(port: int, prefix: str, token: str) -> Callable[[str], float]:
                def one(name: str) -> float:
                    started = time.perf_counter()
                    answer = put(port, f"{prefix}/media/images/{name}", token, size, block)
                    elapsed = time.perf_counter() - started
                    assert answer["size"] == size, answer
                    delete(port, f"{prefix}/media/images/{name}", token)
                    return size / elapsed / 1e6

                return one

            paths.append(("through the server and the agent link",
                          timed(server_port, f"/v1/devices/{device}", session)))  # fmt: skip
            paths.append(("straight to the agent's native face (floor)",
                          timed(agent_port, "", agent_token)))  # fmt: skip
            # warm both paths up (buffers, imports), so that the peaks are the upload's own
            for _, upload in paths:
                upload("warmup.iso")
            print(f"upload of {args.size_mib} MiB of generated data, {args.rounds} rounds per "
                  "path, fake driver (hash only)")  # fmt: skip
            for name, upload in paths:
                with PeakRss({"server": server_proc, "agent": agent_proc}) as rss:
                    rates = [upload(f"round-{i}.iso") for i in range(args.rounds)]
                print(row(name, rates, width=46, unit="MB/s", digits=0))
                print("    peak RSS: " + ", ".join(
                    f"{who} {rss.base[who] >> 20} -> {rss.peak[who] >> 20} MiB"
                    for who in ("server", "agent")))  # fmt: skip
        finally:
            for proc in reversed(procs):
                proc.terminate()
            for proc in procs:
                proc.wait(15)


if __name__ == "__main__":
    main()
