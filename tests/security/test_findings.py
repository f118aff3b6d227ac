"""Each finding of the security probe (issue 12) as a test that failed on the code it probed.

Forwarding headers believed only from trusted proxies; failed logins limited per address, per
username and in capped tables; password hashing bounded; small bodies before authentication;
bounded key lists and hellos; handshakes that cannot stay half open; Origin checked on the
WebSockets a browser reaches; metrics scoped; out-of-range integers refused cleanly.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, Literal

import httpx
import pytest
from argon2 import PasswordHasher
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from remotehands.agent.auth import TokenStore, password_check
from remotehands.agent.dispatch import Dispatcher
from remotehands.agent.faces.native import create_native_app
from remotehands.drivers.fake import FakeDriver
from remotehands.errors import RateLimitedError
from remotehands.protocol.link import CLOSE_PROTOCOL_ERROR
from remotehands.server.app import create_app
from remotehands.server.auth import Passwords
from remotehands.server.http.handshake import HandshakeTimeout
from remotehands.server.http.users import create_user
from remotehands.server.settings import ServerSettings
from remotehands.serving import bound_address, serve_http
from tests.server.conftest import FAST_PASSWORDS, PASSWORD, Fleet
from tests.server.link_harness import LiveFleet

pytestmark = pytest.mark.anyio

AGENT_PASSWORD = "agent-password-1"


@asynccontextmanager
async def live_server(
    tmp_path: Path, database_url: str, trusted: list[str] | None = None
) -> AsyncIterator[str]:
    """The fleet server on a loopback port with an owner (password :data:`PASSWORD`)."""
    settings = ServerSettings(data_dir=tmp_path, database_url=database_url,
                              trusted_proxies=trusted or [])  # fmt: skip
    app = create_app(settings, passwords=Passwords(FAST_PASSWORDS))
    async with serve_http(app, "127.0.0.1:0", lifespan=True, websockets=True,
                          trusted_proxies=settings.trusted_proxies) as server:  # fmt: skip
        await create_user(app.state.services, "owner", PASSWORD, "owner")
        yield f"http://{bound_address(server)}"


@asynccontextmanager
async def live_agent(trusted: list[str] | None = None) -> AsyncIterator[str]:
    """An agent's native face on the FakeDriver on a loopback port."""
    dispatcher = Dispatcher(FakeDriver(320, 240))
    tokens = TokenStore(password_check(password=AGENT_PASSWORD, password_file=None, pam=False))
    async with serve_http(create_native_app(dispatcher, tokens), "127.0.0.1:0",
                          trusted_proxies=trusted or ()) as server:  # fmt: skip
        yield f"http://{bound_address(server)}"
    await dispatcher.aclose()


# -- forwarding headers ------------------------------------------------------------------------


async def test_server_ignores_forwarded_for_without_a_trusted_proxy(
    tmp_path: Path, migrated_database_url: str
) -> None:
    async with live_server(tmp_path, migrated_database_url) as url, httpx.AsyncClient() as http:
        bad = {"username": "owner", "password": "wrong-password"}
        statuses = [
            (await http.post(f"{url}/v1/auth/login", json=bad,
                             headers={"X-Forwarded-For": f"198.51.100.{i}"})).status_code
            for i in range(11)
        ]  # fmt: skip
    assert statuses[:10] == [401] * 10
    assert statuses[10] == 429  # every attempt counted against 127.0.0.1, whatever it claimed


async def test_server_believes_forwarded_for_from_a_trusted_proxy(
    tmp_path: Path, migrated_database_url: str
) -> None:
    async with (
        live_server(tmp_path, migrated_database_url, ["127.0.0.0/8"]) as url,
        httpx.AsyncClient(base_url=url) as http,
    ):
        bad = {"username": "owner", "password": "wrong-password"}
        forwarded = {"X-Forwarded-For": "203.0.113.9"}
        await http.post("/v1/auth/login", json=bad, headers=forwarded)
        good = {"username": "owner", "password": PASSWORD}
        token = (await http.post("/v1/auth/login", json=good)).json()["token"]
        audit = await http.get("/v1/audit", params={"action": "auth.login"},
                               headers={"Authorization": f"Bearer {token}"})  # fmt: skip
    details = [entry["details"] for entry in audit.json()["entries"]]
    assert "wrong password from 203.0.113.9" in details


async def test_agent_ignores_forwarded_for_without_a_trusted_proxy() -> None:
    async with live_agent() as url, httpx.AsyncClient(base_url=url) as http:
        statuses = [
            (await http.post("/auth/login", json={"password": "guess"},
                             headers={"X-Forwarded-For": f"198.51.100.{i}"})).status_code
            for i in range(11)
        ]  # fmt: skip
    assert statuses[:10] == [401] * 10
    assert statuses[10] == 429


def test_trusted_proxy_must_be_an_address_or_network() -> None:
    from remotehands.errors import ConfigError
    from remotehands.serving import check_trusted_proxies

    assert check_trusted_proxies(["10.0.0.5", "10.1.0.0/16"]) == ["10.0.0.5/32", "10.1.0.0/16"]
    with pytest.raises(ConfigError, match="not an address or a CIDR"):
        check_trusted_proxies(["proxy.example"])


# -- limits per address and per username --------------------------------------------------------


async def test_many_usernames_from_one_address_are_limited(server: Fleet) -> None:
    limit = server.settings.login_address_rate_limit
    for i in range(limit):
        bad = {"username": f"nobody{i}", "password": "wrong-password"}
        assert (await server.client.post("/v1/auth/login", json=bad)).status_code == 401
    response = await server.client.post(
        "/v1/auth/login", json={"username": "nobody-else", "password": "wrong-password"}
    )
    assert response.status_code == 429
    assert "from this address" in response.json()["details"]


async def test_one_username_from_many_addresses_is_limited(server: Fleet) -> None:
    limit = server.settings.login_username_rate_limit
    bad = {"username": "owner", "password": "wrong-password"}
    for i in range(limit):
        async with server.other_client(f"10.0.{i // 250}.{i % 250 + 1}") as other:
            assert (await other.post("/v1/auth/login", json=bad)).status_code == 401
    async with server.other_client("10.99.0.1") as fresh:
        response = await fresh.post("/v1/auth/login", json=bad)
    assert response.status_code == 429
    assert "for this username" in response.json()["details"]


async def test_agent_failures_from_many_addresses_are_limited_in_all() -> None:
    store = TokenStore(password_check(password="pw", password_file=None, pam=False),
                       max_failures=3, max_total_failures=50, max_clients=10)  # fmt: skip
    for i in range(50):
        with pytest.raises(Exception, match="wrong password"):
            await store.login("guess", f"10.0.0.{i}")
    with pytest.raises(RateLimitedError):
        await store.login("guess", "10.0.1.1")


# -- argon2 bounded -------------------------------------------------------------------------------


class _CountingHasher(PasswordHasher):
    """argon2 at its cheapest that records how many checks ran at once."""

    def __init__(self) -> None:
        super().__init__(time_cost=1, memory_cost=8, parallelism=1)
        self.running = 0
        self.peak = 0
        self._lock = threading.Lock()
        self.release = threading.Event()

    def verify(self, hash: str | bytes, password: str | bytes) -> Literal[True]:
        with self._lock:
            self.running += 1
            self.peak = max(self.peak, self.running)
        try:
            self.release.wait(5)
            return super().verify(hash, password)
        finally:
            with self._lock:
                self.running -= 1


async def test_password_checks_run_a_few_at_a_time_and_a_flood_is_refused() -> None:
    hasher = _CountingHasher()
    passwords = Passwords(hasher, max_concurrent=2, max_waiting=10)
    stored = await passwords.hash("right-password")
    checks = [asyncio.create_task(passwords.verify(stored, "wrong")) for _ in range(12)]
    deadline = time.monotonic() + 5
    while hasher.running < 2 and time.monotonic() < deadline:
        await asyncio.sleep(0.01)
    with pytest.raises(RateLimitedError, match="busy"):
        await passwords.verify(stored, "one too many")
    hasher.release.set()
    assert await asyncio.gather(*checks) == [False] * 12
    assert hasher.peak == 2


@pytest.mark.slow
async def test_health_stays_fast_during_a_flood_of_wrong_logins(
    tmp_path: Path, migrated_database_url: str
) -> None:
    settings = ServerSettings(data_dir=tmp_path, database_url=migrated_database_url,
                              login_rate_limit=1000, login_address_rate_limit=1000,
                              login_username_rate_limit=1000)  # fmt: skip
    app = create_app(settings)  # real argon2 (the default cost)
    async with serve_http(app, "127.0.0.1:0", lifespan=True) as running:
        url = f"http://{bound_address(running)}"
        await create_user(app.state.services, "owner", PASSWORD, "owner")
        async with httpx.AsyncClient(base_url=url, timeout=30) as http:
            bad = {"username": "owner", "password": "wrong-password"}
            flood = [asyncio.create_task(http.post("/v1/auth/login", json=bad))
                     for _ in range(12)]  # fmt: skip
            await asyncio.sleep(0.2)  # let the flood reach the hashing
            start = time.perf_counter()
            health = await http.get("/health")
            elapsed = time.perf_counter() - start
            answers = await asyncio.gather(*flood)
    assert health.status_code == 200
    # a guard, on a shared machine: the test that fails on unbounded hashing is the one above
    assert elapsed < 1.0, f"/health took {elapsed:.2f} s during the flood"
    assert {a.status_code for a in answers} <= {401, 429}


# -- bodies before authentication -------------------------------------------------------------


@pytest.mark.parametrize("path", ["/v1/auth/login", "/v1/agent/register"])
async def test_unauthenticated_routes_take_small_bodies_only(server: Fleet, path: str) -> None:
    big = {"username": "owner", "password": "x" * 100_000}
    response = await server.client.post(path, json=big)
    assert response.status_code == 413
    assert response.json()["error"] == "invalid"


async def test_agent_login_takes_a_small_body_only() -> None:
    async with live_agent() as url, httpx.AsyncClient(base_url=url) as http:
        response = await http.post("/auth/login", json={"password": "x" * 100_000})
    assert response.status_code == 422
    assert "over 16384 bytes" in response.json()["details"]


# -- list lengths, hellos, integers -------------------------------------------------------------


async def test_a_hotkey_of_many_keys_is_refused(server: Fleet) -> None:
    device = await server.device("d1", status="online")
    response = await server.client.post(
        f"/v1/devices/{device}/keyboard/hotkey", headers=server.owner, json={"keys": ["a"] * 1000}
    )
    assert response.status_code == 422
    combo = await server.client.post(
        f"/v1/devices/{device}/keyboard/hotkey", headers=server.owner,
        json={"keys": "+".join(["shift"] * 100)},
    )  # fmt: skip
    assert combo.status_code == 422


async def test_a_hotkey_of_many_keys_is_refused_by_the_agent() -> None:
    async with live_agent() as url, httpx.AsyncClient(base_url=url) as http:
        login = await http.post("/auth/login", json={"password": AGENT_PASSWORD})
        headers = {"Authorization": f"Bearer {login.json()['token']}"}
        response = await http.post("/keyboard/hotkey", headers=headers,
                                   json={"keys": "+".join(["a"] * 100)})  # fmt: skip
    assert response.status_code == 422


async def test_an_integer_past_64_bits_is_a_clean_422(fleet: LiveFleet) -> None:
    (device,) = await fleet.enroll(1)
    async with fleet.agent(device):
        response = await fleet.owner.get(
            f"/v1/devices/{device.device_id}/screenshot",
            params={"screen_id": str(2**64)},
        )
        assert response.status_code == 422, response.text
        assert "out of range" in response.json()["details"]
        # the device and the server are as they were
        assert (await fleet.owner.get(f"/v1/devices/{device.device_id}/screenshot")).is_success


async def test_a_huge_hello_is_refused(fleet: LiveFleet) -> None:
    (device,) = await fleet.enroll(1)
    headers = {"Authorization": f"Bearer {device.credential}"}
    async with connect(fleet.ws_url, additional_headers=headers, max_size=None) as ws:
        await ws.send('{"type": "hello", "padding": "' + "x" * 1_000_000 + '"}')
        with pytest.raises(ConnectionClosed) as closed:
            await asyncio.wait_for(ws.recv(), 10)
    assert closed.value.rcvd is not None
    assert closed.value.rcvd.code == CLOSE_PROTOCOL_ERROR
    assert "over" in closed.value.rcvd.reason


# -- handshakes ------------------------------------------------------------------------------------


async def test_a_request_whose_headers_never_end_is_closed() -> None:
    async def app(scope: Any, receive: Any, send: Any) -> None:
        raise AssertionError("no request should reach the app")

    async with serve_http(app, "127.0.0.1:0", websockets=True, header_timeout_s=0.5) as server:
        host, port = bound_address(server).rsplit(":", 1)
        reader, writer = await asyncio.open_connection(host, int(port))
        writer.write(b"GET /v1/events HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n")
        await writer.drain()
        start = time.monotonic()
        assert await asyncio.wait_for(reader.read(), 5) == b""  # closed by the server
        assert time.monotonic() - start < 3
        writer.close()


async def test_a_websocket_left_unanswered_is_closed() -> None:
    never = asyncio.Event()

    async def stalled(scope: Any, receive: Any, send: Any) -> None:
        await never.wait()  # a route stuck before it accepts

    app = HandshakeTimeout(stalled, timeout_s=0.5)
    async with serve_http(app, "127.0.0.1:0", websockets=True) as server:
        start = time.monotonic()
        with pytest.raises((InvalidStatus, ConnectionClosed)):
            async with connect(f"ws://{bound_address(server)}/x", open_timeout=5):
                pass
        assert time.monotonic() - start < 3


# -- Origin ---------------------------------------------------------------------------------------


async def test_events_refuse_a_foreign_origin(fleet: LiveFleet) -> None:
    url = fleet.ws_url.replace("/v1/agent/ws", "/v1/events")
    token = await fleet.login("viewer")
    headers = {"Authorization": f"Bearer {token}"}
    with pytest.raises(InvalidStatus) as refused:
        async with connect(url, additional_headers=headers, origin="https://evil.example"):  # type: ignore[arg-type]  # an Origin header value
            pass
    assert refused.value.response.status_code == 403
    own = fleet.base_url
    async with connect(url, additional_headers=headers, origin=own):  # type: ignore[arg-type]  # an Origin header value
        pass


async def test_screen_stream_refuses_a_foreign_origin(fleet: LiveFleet) -> None:
    (device,) = await fleet.enroll(1)
    url = fleet.ws_url.replace("/v1/agent/ws", f"/v1/devices/{device.device_id}/screen/ws")
    token = await fleet.login("viewer")
    with pytest.raises(InvalidStatus) as refused:
        async with connect(f"{url}?token={token}", origin="http://evil.example"):  # type: ignore[arg-type]  # an Origin header value
            pass
    assert refused.value.response.status_code == 403


# -- metrics -------------------------------------------------------------------------------------


async def test_a_tag_limited_token_cannot_read_fleet_metrics(fleet: LiveFleet) -> None:
    limited = await fleet.api_token("admin", tags=["lab"])
    response = await fleet.client(limited).get("/metrics")
    assert response.status_code == 403
    assert response.json()["error"] == "forbidden"
    unlimited = await fleet.api_token("viewer")
    assert (await fleet.client(unlimited).get("/metrics")).status_code == 200
