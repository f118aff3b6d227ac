"""Fixtures of the replica tests: a real ``nats-server``, a real PostgreSQL, and two server
replicas (``a`` and ``b``) served by uvicorn on loopback in this process, sharing one database
and one NATS; agents link to one replica by its URL.

Heartbeats are fast (0.5 s, offline after 3 missed) and the clocks real: what crosses replicas
(presence, silence) is measured in real time here.
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from remotehands.agent.dispatch import Dispatcher
from remotehands.agent.link import AgentLink, Credential, load_or_enroll
from remotehands.drivers.fake import FakeDriver
from remotehands.server.app import create_app
from remotehands.server.auth import Passwords
from remotehands.server.cluster.router import NatsRouter
from remotehands.server.db.bootstrap import initialise
from remotehands.server.services import Services
from remotehands.server.settings import ServerSettings
from remotehands.testing.xapps import eventually
from tests.natsd import NatsServer, NatsUnavailable, start_nats
from tests.pg import PostgresServer
from tests.server.conftest import FAST_PASSWORDS, loopback_socket, postgres, serve

__all__ = ["OWNER_PASSWORD", "Agent", "Pair", "Replica", "cluster_router", "postgres", "until"]

OWNER_PASSWORD = "owner-password-123"
HEARTBEAT_S = 0.5


@pytest.fixture(scope="session")
def nats_server() -> Iterator[NatsServer]:
    """One nats-server for the session; fails (never skips) when it cannot start."""
    try:
        server = start_nats()
    except NatsUnavailable as err:
        pytest.fail(str(err), pytrace=False)
    try:
        yield server
    finally:
        server.remove()


@pytest.fixture
def nats_url(nats_server: NatsServer) -> Iterator[str]:
    """The session's NATS URL; the server is running again after the test (some stop it)."""
    nats_server.start()
    yield nats_server.url
    nats_server.start()


@pytest.fixture
async def pg_url(postgres: PostgresServer) -> AsyncIterator[str]:
    """A fresh PostgreSQL database for the test."""
    name = await postgres.create_database()
    try:
        yield postgres.url(name)
    finally:
        await postgres.drop_database(name)


@dataclass
class Replica:
    """One running replica: its name, URL, app and an owner-logged-in client."""

    name: str
    url: str
    app: FastAPI
    http: httpx.AsyncClient

    @property
    def services(self) -> Services:
        services: Services = self.app.state.services
        return services

    async def enrollment(self, name: str) -> str:
        response = await self.http.post("/v1/devices/enrollment", json={"suggested_name": name})
        assert response.status_code == 201, response.text
        token: str = response.json()["token"]
        return token

    async def status(self, device_id: str) -> str:
        response = await self.http.get(f"/v1/devices/{device_id}")
        assert response.status_code == 200, response.text
        status: str = response.json()["status"]
        return status


@dataclass
class Agent:
    """An agent linked to a replica: its credential, link and driver."""

    credential: Credential
    link: AgentLink
    driver: Any
    task: asyncio.Task[None]

    @property
    def device_id(self) -> str:
        return self.credential.device_id


@dataclass
class Pair:
    """Two replicas of one fleet, and the means to start more parts of it."""

    a: Replica
    b: Replica
    settings: dict[str, Any]
    tmp_path: Path
    stack: AsyncExitStack
    agents: list[Agent] = field(default_factory=list)

    async def agent(
        self, replica: Replica, name: str, driver: Any | None = None, driver_name: str = "fake"
    ) -> Agent:
        """Enroll a device through ``replica`` and link its agent there; waits until the
        device is online on both replicas."""
        credential = await load_or_enroll(
            replica.url, await replica.enrollment(name), state_dir=self.tmp_path / name,
            hardware=f"hw-{name}", device_type="desktop",
        )  # fmt: skip
        return await self.link(credential, driver or FakeDriver(320, 200), driver_name)

    async def link(
        self, credential: Credential, driver: Any, driver_name: str = "fake",
        backoff_s: float = 0.05,
    ) -> Agent:  # fmt: skip
        """Link an agent with ``credential`` (to the replica its URLs name)."""
        dispatcher = Dispatcher(driver)
        self.stack.push_async_callback(dispatcher.aclose)
        link = AgentLink(credential, dispatcher, driver_name=driver_name, device_type="desktop",
                         hardware="hw", backoff_base_s=backoff_s,
                         backoff_cap_s=max(0.3, backoff_s))  # fmt: skip
        task = asyncio.create_task(link.run())

        async def stop() -> None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)

        self.stack.push_async_callback(stop)
        await asyncio.wait_for(link.connected.wait(), 15)
        agent = Agent(credential, link, driver, task)
        self.agents.append(agent)
        for router in (self.a.services.router, self.b.services.router):
            await until(functools.partial(router.is_online, agent.device_id))
        return agent

    def moved(self, credential: Credential, replica: Replica) -> Credential:
        """``credential`` pointing at ``replica``."""
        return dataclasses.replace(
            credential, server_url=replica.url, ws_url=_ws(replica.url, credential.ws_url)
        )


async def until(condition: Callable[[], object], timeout: float = 10.0) -> None:
    """Wait until ``condition()`` (checked on the event loop) is truthy."""

    async def check() -> object:
        return condition()

    await eventually(check, timeout)


def cluster_router(replica: Replica) -> NatsRouter:
    """The replica's router, a :class:`NatsRouter`."""
    router = replica.services.router
    assert isinstance(router, NatsRouter)
    return router


def _ws(base: str, ws_url: str) -> str:
    path = "/" + ws_url.split("://", 1)[1].split("/", 1)[1]
    return base.replace("http://", "ws://") + path


def replica_settings(
    tmp_path: Path, name: str, url: str, db: str, nats: str, **extra: Any
) -> ServerSettings:
    """The settings of replica ``name`` served at ``url``."""
    return ServerSettings(
        data_dir=tmp_path / name, public_url=url, database_url=db, nats_url=nats,
        replica_id=name, heartbeat_interval_s=HEARTBEAT_S, **extra,
    )  # fmt: skip


@asynccontextmanager
async def running_replica(settings: ServerSettings, sock: Any) -> AsyncIterator[Replica]:
    """Serve one replica on ``sock`` with an owner-logged-in client."""
    app = create_app(settings, passwords=Passwords(FAST_PASSWORDS))
    async with serve(app, sock) as url, httpx.AsyncClient(base_url=url, timeout=20) as http:
        login = await http.post(
            "/v1/auth/login", json={"username": "owner", "password": OWNER_PASSWORD}
        )
        assert login.status_code == 200, login.text
        http.headers["Authorization"] = f"Bearer {login.json()['token']}"
        yield Replica(str(settings.replica_id), url, app, http)


@pytest.fixture
async def pair(pg_url: str, nats_url: str, tmp_path: Path) -> AsyncIterator[Pair]:
    """Replicas ``a`` and ``b`` of one fleet, each knowing the other."""
    async with AsyncExitStack() as stack:
        replicas = []
        for name in ("a", "b"):
            sock = loopback_socket()
            url = f"http://127.0.0.1:{sock.getsockname()[1]}"
            settings = replica_settings(tmp_path, name, url, pg_url, nats_url)
            if name == "a":
                await initialise(settings, password=OWNER_PASSWORD,
                                 passwords=Passwords(FAST_PASSWORDS))  # fmt: skip
            replicas.append(await stack.enter_async_context(running_replica(settings, sock)))
        a, b = replicas
        await until(lambda: cluster_router(a).replicas == ["b"])
        await until(lambda: cluster_router(b).replicas == ["a"])
        async with AsyncExitStack() as agents:
            yield Pair(a, b, {"db": pg_url, "nats": nats_url}, tmp_path, agents)
