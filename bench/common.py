"""What the benches share: timing a call, printing a row of figures, waiting for a process,
talking to a loopback server.

The benches import it as ``common`` (a script's own folder is first on ``sys.path``), so each
bench still runs as ``.venv/bin/python bench/X.py``.
"""

from __future__ import annotations

import asyncio
import http.client
import json
import random
import socket
import statistics
import time
from collections.abc import Callable
from typing import Any

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


BACKOFF_BASE_S = 0.5
"""The agent's first backoff (``AgentLink``'s ``backoff_base_s`` default)."""


async def come_back(agent: Any) -> tuple[float, int, int]:
    """Reconnect a :class:`~remotehands.testing.simagent.SimulatedAgent` after its link was
    lost, as the real agent does (:meth:`remotehands.agent.link.AgentLink.run`): full jitter
    over an exponential backoff capped at ``QUICK_CAP_S`` (a server had welcomed it), or the
    ``Retry-After`` of a ``503`` (:func:`~remotehands.agent.link.busy_retry_after`). Returns
    when it was welcomed again (``time.monotonic``), its attempts and the 503 answers among
    them."""
    from websockets.exceptions import InvalidStatus

    from remotehands.agent.link import QUICK_CAP_S, busy_retry_after
    from remotehands.errors import DeviceOfflineError

    attempt, refused = 0, 0
    delay = random.uniform(0, min(QUICK_CAP_S, BACKOFF_BASE_S))
    while True:
        await asyncio.sleep(delay)
        try:
            agent.closed.clear()
            agent.close_code = None
            await agent.connect()
            return time.monotonic(), attempt + 1, refused
        except DeviceOfflineError as err:
            attempt = min(attempt + 1, 20)
            cause = err.__cause__
            wait = None
            if isinstance(cause, InvalidStatus):
                wait = busy_retry_after(
                    cause.response.status_code, cause.response.headers.get("Retry-After")
                )
            if wait is not None:
                refused += 1
                delay = wait  # the server said when, and spread it
            else:
                delay = random.uniform(0, min(QUICK_CAP_S, BACKOFF_BASE_S * 2**attempt))
