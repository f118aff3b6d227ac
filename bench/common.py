"""What the benches share: timing a call, printing a row of figures, waiting for a process,
talking to a loopback server.

The benches import it as ``common`` (a script's own folder is first on ``sys.path``), so each
bench still runs as ``.venv/bin/python bench/X.py``.
"""

from __future__ import annotations

import http.client
import json
import random
import socket
import statistics
import time
from collections.abc import Callable

import httpx


def free_port() -> int:
    """A loopback TCP port nobody listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def measure(fn: Callable[[], object], rounds: int, warmup: int = 5) -> list[float]:
    """Milliseconds per call of ``fn`` over ``rounds`` calls, after ``warmup`` untimed ones."""
    for _ in range(warmup):
        fn()
    samples = []
    for _ in range(rounds):
        started = time.perf_counter()
        fn()
        samples.append((time.perf_counter() - started) * 1000)
    return samples


def measure_together(
    calls: dict[str, Callable[[], object]], rounds: int, warmup: int = 5
) -> dict[str, list[float]]:
    """Milliseconds per call of each of ``calls``, taken in turns (in a new order each round)
    so that every transport meets the same load of a busy machine: measured one after the
    other, a transport measured in a noisier second looks slower than it is. The order is
    shuffled rather than rotated: a rotation keeps each call behind the same one every round,
    and one that leaves work behind it (an HTTP request's connection, a server's audit entry)
    would slow the same neighbour every time."""
    for call in calls.values():
        for _ in range(warmup):
            call()
    names = list(calls)
    samples: dict[str, list[float]] = {name: [] for name in names}
    order = random.Random(7)
    for _ in range(rounds):
        for name in order.sample(names, len(names)):
            started = time.perf_counter()
            calls[name]()
            samples[name].append((time.perf_counter() - started) * 1000)
    return samples


def row(name: str, samples: list[float], width: int = 44, unit: str = "ms", digits: int = 2) -> str:
    """``name`` (padded to ``width``) and the median, min and max of ``samples`` in ``unit``."""
    return (
        f"{name:<{width}} median {statistics.median(samples):8.{digits}f} {unit}   "
        f"min {min(samples):8.{digits}f}   max {max(samples):8.{digits}f}"
    )


def wait_for(check: Callable[[], bool], what: str, timeout: float = 30) -> None:
    """Poll ``check`` until it is true; leave the bench naming ``what`` after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise SystemExit(f"{what} did not happen within {timeout} s")
        time.sleep(0.05)


def is_up(url: str) -> bool:
    """Whether the server or agent at ``url`` answers its ``/health``."""
    try:
        return httpx.get(url + "/health", timeout=1).status_code == 200
    except httpx.HTTPError:
        return False


class Client:
    """One keep-alive connection to ``127.0.0.1:port`` with a bearer token.

    http.client rather than httpx: a lean client, so the figures show the server's cost (httpx's
    sync client adds about 0.8 ms a request on its own).
    """

    def __init__(self, port: int, token: str) -> None:
        self.conn = http.client.HTTPConnection("127.0.0.1", port)
        self.headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}

    def call(self, method: str, path: str, body: object = None) -> bytes:
        """Send a request (``body`` as JSON) and return the answer's body; it must be a 200."""
        self.conn.request(
            method, path, body=None if body is None else json.dumps(body), headers=self.headers
        )
        response = self.conn.getresponse()
        data = response.read()
        assert response.status == 200, data
        return data

    def close(self) -> None:
        """Close the connection."""
        self.conn.close()
