"""The real agent against a real server at scale's edges: the heartbeat interval the server asks
for, and the server's admission of agents (``503`` with ``Retry-After`` when it is full), which
the agent honours for its registration and its link, losing nothing."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from remotehands.agent.dispatch import Dispatcher
from remotehands.agent.link import AgentLink, busy_retry_after, enroll
from remotehands.drivers.fake import FakeDriver
from remotehands.server.admission import Admission
from remotehands.server.app import create_app
from remotehands.server.auth import Passwords
from remotehands.server.db.bootstrap import initialise
from remotehands.server.settings import ServerSettings
from remotehands.testing.xapps import eventually
from tests.integration.conftest import OWNER_PASSWORD, LiveServer
from tests.server.conftest import FAST_PASSWORDS, FakeMonotonic, loopback_socket, serve

pytestmark = pytest.mark.anyio


@pytest.fixture(name="narrow")
async def _narrow(tmp_path: Path) -> AsyncIterator[LiveServer]:
    """A server that admits one agent at a time and lets one more wait (heartbeats every
    0.3 s)."""
    sock = loopback_socket()
    url = f"http://127.0.0.1:{sock.getsockname()[1]}"
    settings = ServerSettings(data_dir=tmp_path / "server", public_url=url,
                              heartbeat_interval_s=0.3, admission_limit=1,
                              admission_queue=1)  # fmt: skip
    passwords = Passwords(FAST_PASSWORDS)
    await initialise(settings, password=OWNER_PASSWORD, passwords=passwords)
    app = create_app(settings, passwords=passwords, monotonic=FakeMonotonic())
    async with serve(app, sock) as served, httpx.AsyncClient(base_url=served, timeout=20) as http:
        login = await http.post(
            "/v1/auth/login", json={"username": "owner", "password": OWNER_PASSWORD}
        )
        http.headers["Authorization"] = f"Bearer {login.json()['token']}"
        yield LiveServer(served, http, app)


def _agent(credential: object, driver: FakeDriver) -> tuple[AgentLink, Dispatcher]:
    dispatcher = Dispatcher(driver)
    link = AgentLink(credential, dispatcher, driver_name="fake", device_type="desktop",  # type: ignore[arg-type]  # a Credential
                     hardware="hw", backoff_base_s=0.05, backoff_cap_s=0.2)  # fmt: skip
    return link, dispatcher


async def test_the_heartbeat_interval_of_the_server_reaches_a_real_agent(
    narrow: LiveServer,
) -> None:
    credential = await enroll(narrow.url, await narrow.enrollment("beating"), hardware="hw-b",
                              device_type="desktop")  # fmt: skip
    link, dispatcher = _agent(credential, FakeDriver(64, 48))
    task = asyncio.create_task(link.run())
    try:
        await asyncio.wait_for(link.connected.wait(), 20)
        # 0.3 s is this server's setting, not the agent's default (10 s)
        assert link.heartbeat_interval_s == 0.3
        first = await narrow.device("beating")
        assert first is not None and first["health"] is not None
        uptime = first["health"]["uptime_seconds"]

        async def beaten() -> bool:  # a heartbeat came and was written: later uptime
            device = await narrow.device("beating")
            return device is not None and device["health"]["uptime_seconds"] > uptime

        await eventually(beaten, timeout=10)
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await dispatcher.aclose()


async def test_registrations_past_the_admission_queue_get_503_and_succeed_later(
    narrow: LiveServer,
) -> None:
    admission: Admission = narrow.app.state.services.admission
    tokens = [await narrow.enrollment(f"crowd-{i}") for i in range(4)]
    held = await admission.enter()  # the one slot: another registration is being worked on
    try:
        waiting = asyncio.create_task(enroll(narrow.url, tokens[0], hardware="hw-0",
                                             device_type="desktop"))  # fmt: skip
        await eventually(lambda: admission.waiting == 1, timeout=10)
        # the queue (one) is full: the next ones are answered at once, and nothing is used up
        async with httpx.AsyncClient(base_url=narrow.url, timeout=20) as anonymous:
            for i in (1, 2):
                refused = await anonymous.post(
                    "/v1/agent/register",
                    json={"enrollment_token": tokens[i], "hardware_id": f"hw-{i}"},
                )
                assert refused.status_code == 503
                assert int(refused.headers["Retry-After"]) >= 1
                assert refused.json()["error"] == "rate_limited"
                assert "again after" in refused.json()["details"]
        # the real agent's enrollment honours the Retry-After and gets through once it clears
        later = asyncio.create_task(enroll(narrow.url, tokens[3], hardware="hw-3",
                                           device_type="desktop"))  # fmt: skip
        await eventually(lambda: admission.refused >= 3, timeout=10)
        assert not waiting.done() and not later.done()
    finally:
        held.release()
    first, last = await asyncio.wait_for(asyncio.gather(waiting, later), 20)
    # the two refused above come back as an agent would, with their unused tokens
    again = [await enroll(narrow.url, tokens[i], hardware=f"hw-{i}", device_type="desktop")
             for i in (1, 2)]  # fmt: skip
    ids = [c.device_id for c in (first, last, *again)]
    devices = (await narrow.http.get("/v1/devices")).json()["devices"]
    assert sorted(d["id"] for d in devices) == sorted(ids)  # none lost, none twice
    assert sorted(d["name"] for d in devices) == [f"crowd-{i}" for i in range(4)]


async def test_a_link_refused_with_503_comes_back_after_retry_after_with_its_device(
    narrow: LiveServer,
) -> None:
    credential = await enroll(narrow.url, await narrow.enrollment("patient"), hardware="hw-p",
                              device_type="desktop")  # fmt: skip
    admission: Admission = narrow.app.state.services.admission
    link, dispatcher = _agent(credential, FakeDriver(64, 48))
    held = await admission.enter()
    queued = await asyncio.wait_for(_queue_one(admission), 10)  # and the queue is full
    task = asyncio.create_task(link.run())
    try:
        await eventually(lambda: admission.refused >= 1, timeout=10)
        await eventually(lambda: link.last_close is not None, timeout=10)
        assert link.last_close is not None and "503" in str(link.last_close[1])
        assert not link.connected.is_set()
        queued.cancel()
        await asyncio.gather(queued, return_exceptions=True)
        held.release()
        await asyncio.wait_for(link.connected.wait(), 20)  # after its Retry-After
        device = await narrow.device("patient")
        assert device is not None and device["id"] == credential.device_id
        assert device["status"] == "online"
        assert len((await narrow.http.get("/v1/devices")).json()["devices"]) == 1
    finally:
        held.release()
        queued.cancel()
        await asyncio.gather(queued, return_exceptions=True)
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await dispatcher.aclose()


async def _queue_one(admission: Admission) -> asyncio.Task[None]:
    """A task waiting in ``admission``'s queue (then holding its slot until cancelled)."""

    async def wait() -> None:
        async with admission.admit():
            await asyncio.Event().wait()

    task = asyncio.create_task(wait())
    await eventually(lambda: admission.waiting == 1, timeout=10)
    return task


def test_retry_after_is_honoured_with_a_spread_above_it() -> None:
    for _ in range(50):
        wait = busy_retry_after(503, "2")
        assert wait is not None and 2.0 <= wait <= 3.0
    assert busy_retry_after(503, None) is None
    assert busy_retry_after(500, "2") is None
    assert busy_retry_after(503, "Wed, 21 Oct 2015 07:28:00 GMT") is None
