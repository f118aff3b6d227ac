"""The Openctrol face over real loopback HTTP and WebSocket, fronting a FakeDriver: the routes,
shapes and status codes of the reference, sessions and their expiry, the key's rate limit, the
HA id allowlist, case-insensitive bodies, the desktop socket's frames and input, and the
legacy input socket."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from datetime import datetime
from typing import Any

import httpx
import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from remotehands.drivers.fake import FakeDriver, FakeSettings
from remotehands.drivers.openctrol.client import parse_ofra
from remotehands.errors import DeviceError
from remotehands.protocol.models import Bounds
from remotehands.testing import eventually
from tests.integration.openctrol_harness import PASSWORD, Served, TwoScreens, serve_openctrol

pytestmark = pytest.mark.anyio

KEY = {"X-Openctrol-Key": PASSWORD}
HA = "ha-kitchen"


@pytest.fixture
async def served() -> AsyncIterator[Served]:
    async with serve_openctrol(FakeDriver(320, 200), {"allow_ha_ids": [HA]}) as running:
        yield running


@pytest.fixture
async def http(served: Served) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=served.url, timeout=10) as client:
        yield client


async def _session(http: httpx.AsyncClient, ttl: int = 900) -> dict[str, str]:
    response = await http.post(
        "/api/v1/sessions/desktop", headers=KEY, json={"HaId": HA, "TtlSeconds": ttl}
    )
    assert response.status_code == 200, response.text
    body: dict[str, str] = response.json()
    return body


async def _open(served: Served, http: httpx.AsyncClient) -> tuple[ClientConnection, dict[str, str]]:
    session = await _session(http)
    ws = await connect(session["websocket_url"], open_timeout=10, compression=None)
    return ws, session


async def _hello(ws: ClientConnection) -> dict[str, object]:
    message = await asyncio.wait_for(ws.recv(), 10)
    assert isinstance(message, str)
    hello: dict[str, object] = json.loads(message)
    return hello


async def _frame(ws: ClientConnection) -> tuple[int, int, int, bytes]:
    while True:
        message = await asyncio.wait_for(ws.recv(), 10)
        if isinstance(message, bytes):
            return parse_ofra(message)


# -- health and authentication ------------------------------------------------------------


async def test_health_is_public_and_shaped_as_the_reference(http: httpx.AsyncClient) -> None:
    response = await http.get("/api/v1/health")
    assert response.status_code == 200
    body = response.json()
    assert set(body) == {
        "agent_id",
        "version",
        "uptime_seconds",
        "remote_desktop",
        "active_sessions",
    }
    assert body["remote_desktop"] == {
        "is_running": False,
        "last_frame_at": "0001-01-01T00:00:00+00:00",
        "state": "desktop",
        "desktop_state": "desktop",
        "degraded": False,
    }
    assert body["active_sessions"] == 0 and body["version"] == "1.0.0"
    await _session(http)
    assert (await http.get("/api/v1/health")).json()["active_sessions"] == 1


async def test_the_key_is_checked_on_every_route_but_health(
    served: Served, http: httpx.AsyncClient
) -> None:
    for method, path in [
        ("GET", "/api/v1/rd/monitors"),
        ("POST", "/api/v1/power"),
        ("GET", "/api/v1/audio/status"),
        ("POST", "/api/v1/sessions/desktop"),
        ("POST", "/api/v1/sessions/desktop/x/end"),
    ]:
        response = await http.request(method, path, json={})
        assert response.status_code == 401, path
        assert response.json() == {
            "error": "unauthorized",
            "details": "Missing or invalid credentials",
        }
    served.monotonic.now += 61  # five failures: the rate limit would refuse the next check
    ok = await http.get("/api/v1/rd/monitors", headers={"Authorization": f"Bearer {PASSWORD}"})
    assert ok.status_code == 200


async def test_failed_key_checks_are_limited_to_five_a_minute(
    served: Served, http: httpx.AsyncClient
) -> None:
    for _ in range(5):
        wrong = await http.get("/api/v1/rd/monitors", headers={"X-Openctrol-Key": "nope"})
        assert wrong.status_code == 401
    # the sixth check is refused even with the right key, until a minute has passed
    blocked = await http.get("/api/v1/rd/monitors", headers=KEY)
    assert blocked.status_code == 401 and blocked.json()["error"] == "unauthorized"
    assert "Too many failed attempts" in blocked.json()["details"]
    assert int(blocked.headers["retry-after"]) == 61
    served.monotonic.now += 61
    assert (await http.get("/api/v1/rd/monitors", headers=KEY)).status_code == 200


async def test_a_key_of_its_own_replaces_the_password(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REMOTEHANDS_OPENCTROL_KEY", "ha-key")
    async with (
        serve_openctrol(FakeDriver(64, 64)) as running,
        httpx.AsyncClient(base_url=running.url, timeout=10) as http,
    ):
        assert (await http.get("/api/v1/rd/monitors", headers=KEY)).status_code == 401
        good = await http.get("/api/v1/rd/monitors", headers={"X-Openctrol-Key": "ha-key"})
        assert good.status_code == 200


# -- sessions ------------------------------------------------------------------------------


async def test_sessions_need_an_allowed_ha_id(http: httpx.AsyncClient) -> None:
    missing = await http.post("/api/v1/sessions/desktop", headers=KEY, json={"TtlSeconds": 90})
    assert missing.status_code == 400
    assert missing.json() == {"error": "invalid_request", "details": "HA ID is required"}
    stranger = await http.post("/api/v1/sessions/desktop", headers=KEY, json={"ha_id": "other"})
    assert stranger.status_code == 401 and stranger.json()["error"] == "unauthorized"
    assert "--openctrol-allow-ha-id other" in stranger.json()["details"]


async def test_without_an_allowlist_every_session_is_refused() -> None:
    async with (
        serve_openctrol(FakeDriver(64, 64)) as running,
        httpx.AsyncClient(base_url=running.url, timeout=10) as http,
    ):
        refused = await http.post("/api/v1/sessions/desktop", headers=KEY, json={"HaId": HA})
        assert refused.status_code == 401
        assert set(refused.json()) == {"error", "details"}


@pytest.mark.parametrize(
    "body",
    [
        {"HaId": HA, "TtlSeconds": 120},
        {"haId": HA, "ttlSeconds": 120},
        {"ha_id": HA, "ttl_seconds": 120},
        {"HA_ID": HA, "TTL_SECONDS": 120},
    ],
)
async def test_bodies_are_read_in_any_casing(
    served: Served, http: httpx.AsyncClient, body: dict[str, object]
) -> None:
    response = await http.post("/api/v1/sessions/desktop", headers=KEY, json=body)
    assert response.status_code == 200, response.text
    expires = datetime.fromisoformat(response.json()["expires_at"])
    assert (expires - served.clock.now).total_seconds() == 120


@pytest.mark.parametrize(
    ("asked", "given"), [(5, 60), (60, 60), (900, 900), (3600, 3600), (99_999, 3600), (None, 900)]
)
async def test_the_ttl_is_clamped(
    served: Served, http: httpx.AsyncClient, asked: int | None, given: int
) -> None:
    body: dict[str, object] = {"HaId": HA} if asked is None else {"HaId": HA, "TtlSeconds": asked}
    response = await http.post("/api/v1/sessions/desktop", headers=KEY, json=body)
    data = response.json()
    assert set(data) == {"session_id", "websocket_url", "expires_at"}
    expires = datetime.fromisoformat(data["expires_at"])
    assert (expires - served.clock.now).total_seconds() == given
    assert data["websocket_url"] == (
        f"ws://{served.address}/ws/desktop?sess={data['session_id']}"
        f"&token={data['websocket_url'].rsplit('token=', 1)[1]}"
    )


async def test_ending_a_session_closes_its_socket(served: Served, http: httpx.AsyncClient) -> None:
    ws, session = await _open(served, http)
    await _hello(ws)
    unknown = await http.post("/api/v1/sessions/desktop/nope/end", headers=KEY)
    assert unknown.status_code == 404
    assert unknown.json() == {"error": "not_found", "details": "Session 'nope' not found"}
    ended = await http.post(f"/api/v1/sessions/desktop/{session['session_id']}/end", headers=KEY)
    assert ended.status_code == 200
    assert ended.json() == {"status": "ok", "session_id": session["session_id"]}
    with pytest.raises(ConnectionClosed):
        while True:
            await asyncio.wait_for(ws.recv(), 10)
    assert ws.close_code == 1000 and ws.close_reason == "Session ended"
    # the token no longer opens a socket
    with pytest.raises(InvalidStatus) as refused:
        await connect(session["websocket_url"], open_timeout=10)
    assert refused.value.response.status_code == 401
    assert json.loads(refused.value.response.body) == {
        "error": "unauthorized",
        "details": "Invalid or expired session token",
    }


async def test_an_expired_session_closes_its_socket(
    served: Served, http: httpx.AsyncClient
) -> None:
    ws, _session_info = await _open(served, http)
    await _hello(ws)
    served.clock.advance(901)
    with pytest.raises(ConnectionClosed):
        while True:
            await asyncio.wait_for(ws.recv(), 10)
    assert ws.close_code == 1000 and ws.close_reason == "Session expired"
    assert (await http.get("/api/v1/health")).json()["active_sessions"] == 0


async def test_the_socket_refuses_missing_and_wrong_tokens(
    served: Served, http: httpx.AsyncClient
) -> None:
    session = await _session(http)
    with pytest.raises(InvalidStatus) as missing:
        await connect(f"ws://{served.address}/ws/desktop?sess={session['session_id']}")
    assert missing.value.response.status_code == 400
    for _ in range(5):
        with pytest.raises(InvalidStatus) as wrong:
            await connect(
                f"ws://{served.address}/ws/desktop?sess={session['session_id']}&token=guess"
            )
        assert wrong.value.response.status_code == 401
    # five failures: even the right token waits a minute
    with pytest.raises(InvalidStatus) as limited:
        await connect(session["websocket_url"])
    assert b"Too many failed attempts" in limited.value.response.body
    served.monotonic.now += 61
    async with connect(session["websocket_url"]) as ws:
        assert (await _hello(ws))["type"] == "hello"
    plain = await http.get("/ws/desktop")
    assert plain.status_code == 400
    assert plain.json() == {"error": "invalid_request", "details": "WebSocket upgrade required"}


# -- the desktop socket ---------------------------------------------------------------------


async def test_hello_then_frames_only_when_the_screen_changed(
    served: Served, http: httpx.AsyncClient
) -> None:
    driver = served.driver
    assert isinstance(driver, FakeDriver)
    driver.fill((0, 0, 255))
    ws, session = await _open(served, http)
    hello = await _hello(ws)
    assert hello == {
        "type": "hello",
        "agent_id": served.face.agent_id,
        "session_id": session["session_id"],
        "version": "1.0",
        "monitors": [
            {
                "id": "DISPLAY1",
                "name": "Primary Display",
                "width": 320,
                "height": 200,
                "is_primary": True,
            }
        ],
    }
    width, height, fmt, jpeg = await _frame(ws)
    assert (width, height, fmt) == (320, 200, 1) and jpeg[:2] == b"\xff\xd8"
    # nothing changes: the source keeps capturing, nothing is sent
    assert served.frames is not None
    source = served.frames.get(0)
    grabs = source.captures
    await eventually(lambda: source.captures >= grabs + 5)
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(ws.recv(), 0.2)
    driver.fill((0, 255, 0), Bounds(x=0, y=0, width=10, height=10))
    assert (await _frame(ws))[:2] == (320, 200)
    health = (await http.get("/api/v1/health")).json()["remote_desktop"]
    assert health["is_running"] is True and health["last_frame_at"] != "0001-01-01T00:00:00+00:00"
    await ws.close()


async def test_input_messages_reach_the_device(served: Served, http: httpx.AsyncClient) -> None:
    driver = served.driver
    assert isinstance(driver, FakeDriver)
    ws, _ = await _open(served, http)
    await _hello(ws)

    async def send(**message: object) -> None:
        await ws.send(json.dumps(message))

    await send(type="pointer_move", absolute=True, x=32768, y=65535)
    await eventually(lambda: driver.pointer == (160, 199))
    await send(type="pointer_move", dx=-10, dy=-9)
    await eventually(lambda: driver.pointer == (150, 190))
    await send(type="pointer_move", dx=-1000, dy=0)  # kept on the screen
    await eventually(lambda: driver.pointer == (0, 190))
    await send(type="pointer_button", button="right", action="down")
    await eventually(lambda: driver.buttons_down == {"right"})
    await send(type="pointer_button", button="right", action="up")
    await eventually(lambda: not driver.buttons_down)
    await send(type="pointer_wheel", delta_x=0, delta_y=-240)  # towards the user: down
    await eventually(
        lambda: any(c.name == "scroll" and c.args["delta_y"] == 2 for c in driver.calls)
    )
    await send(type="key", key_code=0x43, action="down", ctrl=True)
    await eventually(lambda: [str(k) for k in driver.keys_down] == ["ControlLeft", "KeyC"])
    await send(type="key", key_code=0x43, action="up", ctrl=True)
    await eventually(lambda: not driver.keys_down)
    await send(type="text", text="héllo")
    await eventually(lambda: driver.typed == ["héllo"])
    # malformed and unknown messages are ignored; the stream goes on
    await ws.send("{not json")
    await send(type="pointer_move", absolute=True, x="left")
    await send(type="quality", quality=80)
    await send(type="monitor_select", monitor_id="DISPLAY7")
    await send(type="text", text="after")
    await eventually(lambda: driver.typed == ["héllo", "after"])
    await ws.close()


async def test_an_oversized_message_closes_the_socket(
    served: Served, http: httpx.AsyncClient
) -> None:
    ws, _ = await _open(served, http)
    await _hello(ws)
    await ws.send(json.dumps({"type": "text", "text": "x" * (64 * 1024)}))
    with pytest.raises(ConnectionClosed):
        while True:
            await asyncio.wait_for(ws.recv(), 10)
    assert ws.close_code == 1009


async def test_input_is_limited_to_a_thousand_events_a_second(
    served: Served, http: httpx.AsyncClient
) -> None:
    driver = served.driver
    assert isinstance(driver, FakeDriver)
    ws, _ = await _open(served, http)
    await _hello(ws)
    # 1,200 cheap input messages (a wheel turned by nothing) fill the second's 1,000 ...
    for _ in range(1200):
        await ws.send(json.dumps({"type": "pointer_wheel", "delta_x": 0, "delta_y": 0}))
    # ... so that the clicks right behind them are dropped
    for i in range(100):
        await ws.send(
            json.dumps(
                {
                    "type": "pointer_button",
                    "button": "left",
                    "action": "down" if i % 2 == 0 else "up",
                }
            )
        )

    async def typed_once_the_window_moved_on() -> bool:
        # a text message is input too: it gets through once the second has passed
        await ws.send(json.dumps({"type": "text", "text": "end"}))
        return "end" in driver.typed

    await eventually(typed_once_the_window_moved_on, timeout=20, interval=0.1)
    presses = sum(1 for c in driver.calls if c.name == "button")
    assert presses < 100
    await ws.close()


async def test_monitors_are_listed_and_selected(http: httpx.AsyncClient) -> None:
    monitors = await http.get("/api/v1/rd/monitors", headers=KEY)
    assert monitors.json() == {
        "monitors": [
            {
                "id": "DISPLAY1",
                "name": "Primary Display",
                "width": 320,
                "height": 200,
                "is_primary": True,
                "resolution": "320x200",
            }
        ],
        "current_monitor_id": "DISPLAY1",
    }
    selected = await http.post("/api/v1/rd/monitor", headers=KEY, json={"MonitorId": "DISPLAY1"})
    assert selected.json() == {"status": "ok", "monitor_id": "DISPLAY1"}
    unknown = await http.post("/api/v1/rd/monitor", headers=KEY, json={"monitorId": "DISPLAY2"})
    assert unknown.status_code == 404
    assert unknown.json() == {"error": "not_found", "details": "Monitor ID 'DISPLAY2' not found"}
    missing = await http.post("/api/v1/rd/monitor", headers=KEY, json={})
    assert missing.status_code == 400 and missing.json()["error"] == "invalid_request"


async def test_unknown_routes_answer_in_the_reference_shape(http: httpx.AsyncClient) -> None:
    missing = await http.get("/api/v1/nothing", headers=KEY)
    assert missing.status_code == 404 and missing.json()["error"] == "not_found"
    wrong = await http.get("/api/v1/power", headers=KEY)
    assert wrong.status_code == 405 and set(wrong.json()) == {"error", "details"}
    bad = await http.post("/api/v1/sessions/desktop", headers=KEY, content=b"{oops")
    assert bad.status_code == 400 and bad.json()["error"] == "invalid_request"


# -- the legacy input socket ----------------------------------------------------------------


async def test_the_legacy_input_socket(served: Served) -> None:
    driver = served.driver
    assert isinstance(driver, FakeDriver)
    url = f"ws://{served.address}/api/v1/rd/session"
    with pytest.raises(InvalidStatus) as refused:
        await connect(url, open_timeout=10)
    assert refused.value.response.status_code == 401
    async with connect(url, additional_headers=KEY, open_timeout=10) as ws:
        await ws.send(json.dumps({"type": "keyboard", "keys": ["CTRL", "ALT", "DEL"]}))
        await eventually(
            lambda: [str(k) for k in driver.pressed][-3:] == ["ControlLeft", "AltLeft", "Delete"]
        )
        assert not driver.keys_down
        await ws.send(json.dumps({"type": "pointer", "event": "move", "dx": 5, "dy": 7}))
        await eventually(lambda: driver.pointer == (5, 7))
        await ws.send(json.dumps({"type": "pointer", "event": "click", "button": "left"}))
        await eventually(
            lambda: (
                [c.args for c in driver.calls if c.name == "button"][-2:]
                == [{"button": "left", "down": True}, {"button": "left", "down": False}]
            )
        )
        await ws.send(json.dumps({"type": "mystery"}))
        assert json.loads(await asyncio.wait_for(ws.recv(), 10)) == {
            "type": "error",
            "message": "Unknown message type: mystery",
        }
        await ws.send(json.dumps({"keys": []}))
        assert json.loads(await asyncio.wait_for(ws.recv(), 10)) == {
            "type": "error",
            "message": "Invalid message: missing 'type' field",
        }


# -- power and audio -------------------------------------------------------------------------


async def test_power_runs_the_os_power_actions(served: Served, http: httpx.AsyncClient) -> None:
    driver = served.driver
    assert isinstance(driver, FakeDriver)
    restart = await http.post("/api/v1/power", headers=KEY, json={"Action": "restart"})
    assert restart.status_code == 200
    assert restart.json() == {"status": "ok", "action": "restart"}
    assert driver.resets == 1
    shutdown = await http.post("/api/v1/power", headers=KEY, json={"action": "SHUTDOWN"})
    assert shutdown.json() == {"status": "ok", "action": "shutdown"}
    assert "power_shutdown" in driver.call_names()
    wol = await http.post("/api/v1/power", headers=KEY, json={"action": "wol"})
    assert wol.status_code == 400
    assert wol.json() == {
        "error": "invalid_request",
        "details": "Wake-on-LAN (wol) is not supported",
    }
    missing = await http.post("/api/v1/power", headers=KEY, json={})
    assert missing.json() == {
        "error": "invalid_request",
        "details": "Action is required (restart, shutdown, or wol)",
    }
    odd = await http.post("/api/v1/power", headers=KEY, json={"action": "hibernate"})
    assert odd.status_code == 400 and "Unknown action: hibernate" in odd.json()["details"]


async def test_audio_state_and_status_in_both_scales(
    served: Served, http: httpx.AsyncClient
) -> None:
    state = await http.get("/api/v1/audio/state", headers=KEY)
    assert state.json() == {
        "default_output_device_id": "fake-speakers",
        "devices": [
            {
                "id": "fake-speakers",
                "name": "Fake speakers",
                "volume": 1.0,
                "muted": False,
                "is_default": True,
            },
            {
                "id": "fake-headphones",
                "name": "Fake headphones",
                "volume": 0.4,
                "muted": False,
                "is_default": False,
            },
        ],
        "sessions": [
            {
                "id": "1",
                "name": "fakeplayer",
                "volume": 1.0,
                "muted": False,
                "output_device_id": "fake-speakers",
            }
        ],
    }
    status = await http.get("/api/v1/audio/status", headers=KEY)
    assert status.json() == {
        "master": {"volume": 100.0, "muted": False},
        "devices": [
            {
                "id": "fake-speakers",
                "name": "Fake speakers",
                "volume": 100.0,
                "muted": False,
                "is_default": True,
            },
            {
                "id": "fake-headphones",
                "name": "Fake headphones",
                "volume": 40.0,
                "muted": False,
                "is_default": False,
            },
        ],
    }


async def test_master_volume_is_a_percentage(served: Served, http: httpx.AsyncClient) -> None:
    driver = served.driver
    assert isinstance(driver, FakeDriver)
    speakers = driver.audio_devices[0]
    ok = await http.post("/api/v1/audio/master", headers=KEY, json={"volume": 30.0})
    assert ok.json() == {"status": "ok"} and speakers.volume == 30
    await http.post("/api/v1/audio/master", headers=KEY, json={"Muted": True})
    assert speakers.muted and speakers.volume == 30
    loud = await http.post("/api/v1/audio/master", headers=KEY, json={"Volume": 130})
    assert loud.status_code == 400
    assert loud.json() == {
        "error": "invalid_request",
        "details": "Volume must be between 0 and 100",
    }


@pytest.mark.parametrize(
    ("body", "volume"),
    [
        # the document's form: 0.0-1.0
        ({"device_id": "fake-headphones", "volume": 0.75, "muted": False}, 75.0),
        ({"device_id": "fake-headphones", "volume": 1.0, "muted": False}, 100.0),
        ({"device_id": "fake-headphones", "volume": 0, "muted": False}, 0.0),
        # the integration's and the real agent's: 0-100
        ({"DeviceId": "fake-headphones", "Volume": 55.0}, 55.0),
        ({"DeviceId": "fake-headphones", "Volume": 1.0}, 1.0),
        ({"deviceId": "fake-headphones", "volume": 100}, 100.0),
    ],
)
async def test_device_volume_reads_both_scales(
    served: Served, http: httpx.AsyncClient, body: dict[str, object], volume: float
) -> None:
    driver = served.driver
    assert isinstance(driver, FakeDriver)
    response = await http.post("/api/v1/audio/device", headers=KEY, json=body)
    assert response.status_code == 200 and response.json() == {"status": "ok"}
    assert driver.audio_devices[1].volume == volume


async def test_device_routes_refuse_what_makes_no_sense(
    served: Served, http: httpx.AsyncClient
) -> None:
    driver = served.driver
    assert isinstance(driver, FakeDriver)
    missing = await http.post("/api/v1/audio/device", headers=KEY, json={"volume": 0.5})
    assert missing.status_code == 400
    assert missing.json() == {
        "error": "invalid_audio_device_request",
        "details": "Device ID is required",
    }
    unknown = await http.post(
        "/api/v1/audio/device", headers=KEY, json={"DeviceId": "nope", "Volume": 20}
    )
    assert unknown.status_code == 404
    assert unknown.json() == {"error": "not_found", "details": "Device ID 'nope' not found"}
    loud = await http.post(
        "/api/v1/audio/device", headers=KEY, json={"DeviceId": "fake-headphones", "Volume": 101}
    )
    assert loud.status_code == 400 and loud.json()["error"] == "invalid_audio_device_request"
    legacy = await http.post(
        "/api/v1/audio/device/legacy",
        headers=KEY,
        json={"device_id": "fake-headphones", "volume": 0.5, "muted": True, "set_default": True},
    )
    assert legacy.json() == {"status": "ok"}
    assert (driver.audio_devices[1].volume, driver.audio_devices[1].muted) == (50.0, True)
    assert driver.default_audio_device == "fake-headphones"
    fraction_only = await http.post(
        "/api/v1/audio/device/legacy",
        headers=KEY,
        json={"device_id": "fake-headphones", "volume": 5},
    )
    assert fraction_only.status_code == 400
    assert fraction_only.json()["details"] == "Volume must be between 0 and 1"


async def test_default_device_and_sessions(served: Served, http: httpx.AsyncClient) -> None:
    driver = served.driver
    assert isinstance(driver, FakeDriver)
    default = await http.post(
        "/api/v1/audio/default", headers=KEY, json={"DeviceId": "fake-headphones"}
    )
    assert default.json() == {"status": "ok", "device_id": "fake-headphones"}
    assert driver.default_audio_device == "fake-headphones"
    guide = await http.post(
        "/api/v1/audio/device/default", headers=KEY, json={"device_id": "fake-speakers"}
    )
    assert guide.status_code == 200 and driver.default_audio_device == "fake-speakers"
    assert (await http.post("/api/v1/audio/default", headers=KEY, json={})).status_code == 400
    gone = await http.post("/api/v1/audio/default", headers=KEY, json={"DeviceId": "x"})
    assert gone.status_code == 404
    moved = await http.post(
        "/api/v1/audio/session",
        headers=KEY,
        json={
            "session_id": "1",
            "volume": 0.25,
            "muted": True,
            "output_device_id": "fake-headphones",
        },
    )
    assert moved.json() == {"status": "ok"}
    session = driver.audio_sessions[0]
    assert (session.volume, session.muted, session.device_id) == (25.0, True, "fake-headphones")
    missing = await http.post("/api/v1/audio/session", headers=KEY, json={"volume": 0.5})
    assert missing.json() == {
        "error": "invalid_audio_session_request",
        "details": "Session ID is required",
    }
    unknown = await http.post(
        "/api/v1/audio/session", headers=KEY, json={"SessionId": "9", "Volume": 0.5, "Muted": False}
    )
    assert unknown.status_code == 404 and unknown.json()["error"] == "not_found"


async def test_a_sound_server_that_is_not_running_is_503(
    served: Served, http: httpx.AsyncClient
) -> None:
    driver = served.driver
    assert isinstance(driver, FakeDriver)
    driver.audio_down = "no sound server answers: start PulseAudio (pulseaudio --start)"
    for method, path, body in [
        ("GET", "/api/v1/audio/status", None),
        ("GET", "/api/v1/audio/state", None),
        ("POST", "/api/v1/audio/master", {"volume": 10}),
    ]:
        response = await http.request(method, path, headers=KEY, json=body)
        assert response.status_code == 503
        assert response.json() == {"error": "service_unavailable", "details": driver.audio_down}
    # the agent serves on
    assert (await http.get("/api/v1/health")).status_code == 200


# -- what the device lacks ------------------------------------------------------------------


async def test_power_and_audio_without_the_capability_are_unavailable() -> None:
    only = frozenset({"screen", "keyboard", "mouse"})
    device = FakeDriver(settings=FakeSettings(width=64, height=64, capabilities=only))
    async with (
        serve_openctrol(device) as running,
        httpx.AsyncClient(base_url=running.url, timeout=10) as http,
    ):
        power = await http.post("/api/v1/power", headers=KEY, json={"action": "restart"})
        assert power.status_code == 503 and power.json()["error"] == "service_unavailable"
        assert power.json()["details"].startswith("Power manager not available: ")
        audio = await http.get("/api/v1/audio/status", headers=KEY)
        assert audio.status_code == 503 and audio.json()["error"] == "service_unavailable"
        assert audio.json()["details"].startswith("Audio manager not available: ")


# -- health: the driver's desktop state, and repeated capture failures -------------------------


class _Flaky(FakeDriver):
    """A fake device whose screen grabs fail while ``failing`` is set, and that tells its
    desktop state (a locked screen)."""

    failing = False

    async def grab(self, screen_id: int = 0, region: Bounds | None = None) -> Any:
        if self.failing:
            raise DeviceError("the fake screen is failing")
        return await super().grab(screen_id, region)

    async def desktop_state(self) -> str:
        return "locked"


async def test_health_reports_the_driver_state_and_repeated_capture_failures() -> None:
    device = _Flaky(96, 64)
    device.failing = True
    async with (
        serve_openctrol(device, {"allow_ha_ids": [HA]}) as running,
        httpx.AsyncClient(base_url=running.url, timeout=10) as http,
    ):
        before = (await http.get("/api/v1/health")).json()["remote_desktop"]
        assert (before["state"], before["desktop_state"], before["degraded"]) == (
            "locked",
            "locked",
            False,
        )
        ws, _ = await _open(running, http)
        await _hello(ws)

        async def degraded() -> bool:
            health = (await http.get("/api/v1/health")).json()["remote_desktop"]
            return bool(health["degraded"]) and health["state"] == "locked_degraded"

        await eventually(degraded, timeout=20, interval=0.2)
        device.failing = False  # the screen comes back: frames flow and the flag clears
        assert (await _frame(ws))[:2] == (96, 64)
        health = (await http.get("/api/v1/health")).json()["remote_desktop"]
        assert (health["state"], health["degraded"]) == ("locked", False)
        await ws.close()


async def test_the_guides_session_socket_path_serves_the_desktop(
    served: Served, http: httpx.AsyncClient
) -> None:
    session = await _session(http)
    query = session["websocket_url"].split("?", 1)[1]
    async with connect(f"ws://{served.address}/api/v1/rd/session?{query}") as ws:
        hello = await _hello(ws)
        assert hello["type"] == "hello" and hello["session_id"] == session["session_id"]
        assert (await _frame(ws))[:2] == (320, 200)


async def test_session_volume_is_a_fraction_up_to_one(
    served: Served, http: httpx.AsyncClient
) -> None:
    driver = served.driver
    assert isinstance(driver, FakeDriver)
    for body, volume in [
        ({"SessionId": "1", "Volume": 0.5, "Muted": False}, 50.0),
        ({"SessionId": "1", "Volume": 1.0, "Muted": False}, 100.0),
        ({"session_id": "1", "volume": 30, "muted": False}, 30.0),
    ]:
        response = await http.post("/api/v1/audio/session", headers=KEY, json=body)
        assert response.status_code == 200, response.text
        assert driver.audio_sessions[0].volume == volume


# -- two monitors ------------------------------------------------------------------------------


async def test_monitor_select_moves_the_stream_and_the_pointer() -> None:
    device = TwoScreens()
    async with (
        serve_openctrol(device, {"allow_ha_ids": [HA]}) as running,
        httpx.AsyncClient(base_url=running.url, timeout=10) as http,
    ):
        ws, _ = await _open(running, http)
        hello = await _hello(ws)
        assert [m["id"] for m in hello["monitors"]] == ["DISPLAY1", "DISPLAY2"]  # type: ignore[attr-defined]
        assert (await _frame(ws))[:2] == (320, 200)
        await ws.send(json.dumps({"type": "monitor_select", "monitor_id": "DISPLAY2"}))
        while (await _frame(ws))[:2] != (160, 100):
            pass
        await ws.send(json.dumps({"type": "pointer_move", "absolute": True, "x": 0, "y": 65535}))
        await eventually(lambda: device.pointer == (320, 99))
        listed = (await http.get("/api/v1/rd/monitors", headers=KEY)).json()
        assert listed["current_monitor_id"] == "DISPLAY2"
        # selecting over REST moves every viewer back
        back = await http.post("/api/v1/rd/monitor", headers=KEY, json={"MonitorId": "display1"})
        assert back.json() == {"status": "ok", "monitor_id": "DISPLAY1"}
        while (await _frame(ws))[:2] != (320, 200):
            pass
        await ws.close()
