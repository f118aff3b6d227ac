"""The native face over real loopback HTTP, on the FakeDriver (the x11 path has its own tests)."""

from __future__ import annotations

import asyncio
import base64
import http.client
import io
import re
import socket
from collections.abc import AsyncIterator
from dataclasses import dataclass

import httpx
import pytest
from PIL import Image

from remotehands.agent.auth import TokenStore, password_check
from remotehands.agent.dispatch import Dispatcher
from remotehands.agent.faces.native import create_native_app
from remotehands.agent.runtime import bound_address, serve_http
from remotehands.drivers.fake import FakeDriver
from remotehands.protocol.actions import ACTIONS
from remotehands.protocol.keys import Key
from remotehands.protocol.models import Bounds

pytestmark = pytest.mark.anyio

PASSWORD = "correct horse battery staple"


@dataclass
class Agent:
    driver: FakeDriver
    dispatcher: Dispatcher
    http: httpx.AsyncClient
    base: str


@pytest.fixture
async def agent() -> AsyncIterator[Agent]:
    driver = FakeDriver(640, 480)
    dispatcher = Dispatcher(driver)
    tokens = TokenStore(password_check(password=PASSWORD, password_file=None, pam=False))
    async with serve_http(create_native_app(dispatcher, tokens), "127.0.0.1:0") as server:
        base = f"http://{bound_address(server)}"
        async with httpx.AsyncClient(base_url=base, timeout=10) as anon:
            token = (await anon.post("/auth/login", json={"password": PASSWORD})).json()["token"]
        async with httpx.AsyncClient(
            base_url=base, timeout=10, headers={"Authorization": f"Bearer {token}"}
        ) as http:
            yield Agent(driver, dispatcher, http, base)
    await dispatcher.aclose()


def _concrete(path: str) -> str:
    return re.sub(r"{(\w+)}", lambda m: "123" if m.group(1) == "id" else "slot1", path)


async def test_every_route_but_health_and_login_needs_a_token(agent: Agent) -> None:
    async with httpx.AsyncClient(base_url=agent.base) as anon:
        assert (await anon.get("/health")).json() == {"status": "ok"}
        routes = [(a.method, _concrete(a.path)) for a in ACTIONS if a.name != "sleep"]
        routes += [("POST", "/auth/logout"), ("GET", "/auth/token-info")]
        for method, path in routes:
            for headers in ({}, {"Authorization": "Bearer rha_forged"}, {"Authorization": "x"}):
                response = await anon.request(method, path, headers=headers)
                assert response.status_code == 401, (method, path, headers)
                assert response.json()["error"] == "unauthorized"
        assert agent.driver.calls == []


async def test_login_logout_and_token_info(agent: Agent) -> None:
    async with httpx.AsyncClient(base_url=agent.base) as anon:
        wrong = await anon.post("/auth/login", json={"password": "nope"})
        assert wrong.status_code == 401
        assert wrong.json() == {"error": "unauthorized", "details": "wrong password"}
        garbage = await anon.post("/auth/login", content=b"{not json")
        assert garbage.status_code == 422
        assert "JSON" in garbage.json()["details"]
        login = (await anon.post("/auth/login", json={"password": PASSWORD})).json()
        assert login["expires_in_s"] == 28_800
        auth = {"Authorization": f"Bearer {login['token']}"}
        info = (await anon.get("/auth/token-info", headers=auth)).json()
        assert info["valid"] is True
        assert 28_700 < info["remaining_ttl_s"] <= 28_800
        assert (await anon.post("/auth/logout", headers=auth)).json() == {"status": "ok"}
        assert (await anon.get("/auth/token-info", headers=auth)).status_code == 401


async def test_failed_logins_are_rate_limited(agent: Agent) -> None:
    async with httpx.AsyncClient(base_url=agent.base) as anon:
        statuses = [
            (await anon.post("/auth/login", json={"password": f"guess{i}"})).status_code
            for i in range(11)
        ]
        assert statuses[:10] == [401] * 10
        assert statuses[10] == 429
        locked = await anon.post("/auth/login", json={"password": PASSWORD})
        assert locked.status_code == 429


async def test_screenshot_full_region_and_scaled(agent: Agent) -> None:
    agent.driver.fill((0, 0, 255))  # BGR red
    agent.driver.fill((255, 0, 0), Bounds(x=100, y=50, width=40, height=30))  # blue box
    full = (await agent.http.get("/screenshot", params={"format": "png"})).json()
    image = Image.open(io.BytesIO(base64.b64decode(full["image"])))
    assert image.size == (640, 480) == (full["width"], full["height"])
    assert image.convert("RGB").getpixel((5, 5)) == (255, 0, 0)
    assert image.convert("RGB").getpixel((110, 60)) == (0, 0, 255)
    assert full["native_width"] == 640 and full["stable"] is None

    region = (await agent.http.get("/screenshot/region",
                                   params={"x": 100, "y": 50, "width": 40, "height": 30,
                                           "format": "png"})).json()  # fmt: skip
    crop = Image.open(io.BytesIO(base64.b64decode(region["image"]))).convert("RGB")
    assert crop.size == (40, 30)
    assert crop.getpixel((0, 0)) == crop.getpixel((39, 29)) == (0, 0, 255)

    scaled = (await agent.http.get("/screenshot", params={"scale": 0.5})).json()
    jpeg = Image.open(io.BytesIO(base64.b64decode(scaled["image"])))
    assert jpeg.format == "JPEG" and jpeg.size == (320, 240)
    pixel = jpeg.convert("RGB").getpixel((10, 10))
    assert isinstance(pixel, tuple)
    r, g, b = pixel
    assert r > 200 and g < 50 and b < 50


async def test_wait_stable_on_a_still_screen(agent: Agent) -> None:
    shot = (await agent.http.get("/screenshot", params={
        "wait_stable": "true", "stable_window_ms": 60, "poll_interval_ms": 20})).json()  # fmt: skip
    assert shot["stable"] is True and shot["timed_out"] is False
    assert shot["polls"] >= 2 and shot["change_ratio_last"] == 0


async def test_pointer_actions_reach_the_driver(agent: Agent) -> None:
    http, driver = agent.http, agent.driver
    assert (await http.post("/mouse/move", json={"x": 10, "y": 20})).json() == {"status": "ok"}
    await http.post("/mouse/click", json={"button": "right", "x": 30, "y": 40})
    await http.post("/mouse/double-click", json={"button": "left"})
    await http.post("/mouse/scroll", json={"x": 50, "y": 60, "delta_x": 0, "delta_y": -3})
    await http.post("/mouse/drag", json={"from_x": 1, "from_y": 2, "to_x": 101, "to_y": 202,
                                         "duration_ms": 0})  # fmt: skip
    clicks = [c.args for c in driver.calls if c.name == "click"]
    assert clicks == [{"button": "right", "count": 1, "at": (30, 40)},
                      {"button": "left", "count": 2, "at": (30, 40)}]  # fmt: skip
    scrolls = [c.args for c in driver.calls if c.name == "scroll"]
    assert scrolls == [{"delta_x": 0, "delta_y": -3, "at": (50, 60)}]
    buttons = [(c.args["button"], c.args["down"]) for c in driver.calls if c.name == "button"]
    assert buttons == [("left", True), ("left", False)]
    assert driver.pointer == (101, 202)
    # a click leaves a visible mark in the framebuffer; the left double-click painted last (red)
    assert tuple(driver.framebuffer[40, 30, :3]) == (0, 0, 255)
    cursor = (await http.get("/screenshot/cursor-position")).json()
    assert cursor == {"x": 101, "y": 202}
    await http.post("/mouse/down", json={"button": "middle"})
    assert driver.buttons_down == {"middle"}
    await http.post("/mouse/up", json={"button": "middle"})
    assert driver.buttons_down == set()


async def test_keyboard_actions(agent: Agent) -> None:
    http, driver = agent.http, agent.driver
    text = "héllo ✓ Привет 日本"
    assert (await http.post("/keyboard/type", json={"text": text})).status_code == 200
    assert driver.typed == [text]
    await http.post("/keyboard/hotkey", json={"keys": ["ctrl", {"char": "s"}]})
    presses = [(c.args["key"], c.args["down"]) for c in driver.calls if c.name == "key"]
    ctrl, s = Key(code="ControlLeft"), Key(char="s")
    assert presses == [(ctrl, True), (s, True), (s, False), (ctrl, False)]
    await http.post("/keyboard/key", json={"keys": "ctrl+shift+t"})
    assert driver.keys_down == []
    await http.post("/keyboard/down", json={"key": "shift"})
    assert driver.keys_down == [Key(code="ShiftLeft")]
    await http.post("/keyboard/up", json={"key": "ShiftLeft"})
    assert driver.keys_down == []


@pytest.mark.parametrize(
    ("method", "path", "body", "status", "needle"),
    [
        ("POST", "/mouse/move", {"x": 5000, "y": 1}, 422, "off the screen"),
        ("POST", "/mouse/click", {"x": 5}, 422, "both x and y"),
        ("POST", "/keyboard/hotkey", {"keys": ["ctrl", "frobnicate"]}, 422, "unknown key"),
        ("POST", "/keyboard/type", {"text": ""}, 422, "text"),
        ("POST", "/keyboard/type", {"text": "x" * 100_001}, 422, "text"),
        ("POST", "/keyboard/type", {"text": 42}, 422, "text"),
        ("POST", "/mouse/move", {"x": "left", "y": 1}, 422, "x"),
        ("POST", "/mouse/move", {"x": 1, "y": 1, "z": 3}, 422, "z"),
        ("POST", "/windows/999/focus", {}, 404, "no window"),
        ("POST", "/windows/zzz/focus", {}, 422, "window id"),
        ("POST", "/windows/dialog/close", {"window_id": "zzz"}, 422, "window id"),
        ("POST", "/application/close", {"window_id": [1]}, 422, "window_id"),
        (
            "POST",
            "/clipboard/capture",
            {"captures": [{"slot": "a", "focus_window_id": -1}]},
            422,
            "positive",
        ),
        ("GET", "/clipboard/slots/missing", None, 404, "slot"),
        ("POST", "/nowhere", {}, 404, "no route"),
    ],
)
async def test_bad_input_gets_a_clear_4xx_and_the_agent_keeps_serving(
    agent: Agent, method: str, path: str, body: object, status: int, needle: str
) -> None:
    response = await agent.http.request(method, path, json=body)
    assert response.status_code == status, response.text
    payload = response.json()
    assert set(payload) == {"error", "details"}
    assert needle in payload["details"]
    assert (await agent.http.get("/health")).status_code == 200


async def test_malformed_json_body(agent: Agent) -> None:
    response = await agent.http.post(
        "/mouse/move", content=b'{"x": 1,', headers={"Content-Type": "application/json"}
    )
    assert response.status_code == 422
    assert "not valid JSON" in response.json()["details"]
    listed = await agent.http.post("/mouse/move", content=b"[1, 2]")
    assert listed.status_code == 422


async def test_clipboard_and_slots(agent: Agent) -> None:
    http, driver = agent.http, agent.driver
    await http.post("/clipboard", json={"text": "ünïcode text"})
    got = (await http.get("/clipboard")).json()
    assert got == {"text": "ünïcode text", "length": 12, "truncated": False}
    cut = (await http.get("/clipboard", params={"max_bytes": 3})).json()
    assert cut == {"text": "ün", "length": 2, "truncated": True}
    stored = (await http.put("/clipboard/slots/panel_1", json={"text": "collected"})).json()
    assert stored == {"name": "panel_1", "length": 9}
    slots = (await http.get("/clipboard/slots")).json()
    assert [s["name"] for s in slots] == ["panel_1"] and slots[0]["stored_at"].endswith("Z")
    assert (await http.get("/clipboard/slots/panel_1")).json()["text"] == "collected"
    restored = (await http.post("/clipboard/slots/panel_1/restore")).json()
    assert restored == {"name": "panel_1", "length": 9} and driver.clipboard == "collected"
    deleted = await http.delete("/clipboard/slots/panel_1")
    assert deleted.status_code == 204 and deleted.content == b""
    await http.put("/clipboard/slots/a", json={"text": "1"})
    assert (await http.delete("/clipboard/slots")).status_code == 204
    assert (await http.get("/clipboard/slots")).json() == []
    bad = await http.put("/clipboard/slots/bad%20name", json={"text": "1"})
    assert bad.status_code == 422


async def test_clipboard_capture_focuses_copies_and_stores(agent: Agent) -> None:
    window = agent.driver.add_window("Calc", Bounds(x=0, y=0, width=100, height=100))
    agent.driver.add_window("Other", Bounds(x=0, y=0, width=100, height=100))
    agent.driver.clipboard = "42.0"
    result = (await agent.http.post("/clipboard/capture", json={"captures": [
        {"slot": "calc", "focus_window_id": hex(window.id), "settle_ms": 0},
        {"slot": "ghost", "focus_window_id": 77, "settle_ms": 0},
    ]})).json()  # fmt: skip
    assert result["results"][0] == {"slot": "calc", "text": "42.0", "length": 4,
                                    "truncated": False, "ok": True}  # fmt: skip
    assert result["results"][1]["ok"] is False and result["results"][1]["error"] == "not_found"
    assert agent.driver.focused == window.id
    pressed = [c.args["key"] for c in agent.driver.calls if c.name == "key" and c.args["down"]]
    assert pressed == [Key(code="ControlLeft"), Key(code="KeyA"),
                       Key(code="ControlLeft"), Key(code="KeyC")]  # fmt: skip


async def test_windows_dialogs_and_apps(agent: Agent) -> None:
    http, driver = agent.http, agent.driver
    main = driver.add_window("Editor", Bounds(x=0, y=0, width=300, height=200))
    listed = (await http.get("/windows")).json()
    assert listed == [{"id": main.id, "title": "Editor", "process_name": "fakeapp", "pid": 4242,
                       "bounds": {"x": 0, "y": 0, "width": 300, "height": 200},
                       "is_focused": True, "is_dialog": False}]  # fmt: skip
    assert (await http.get("/windows/dialog")).json() == {"dialog": None}
    dialog = driver.add_window("Save?", Bounds(x=10, y=10, width=50, height=50), is_dialog=True)
    assert (await http.get("/windows/dialog")).json()["dialog"]["id"] == dialog.id
    moved = (await http.post(f"/windows/{main.id}/move",
                             json={"bounds": {"x": 200, "y": 100, "width": 1280,
                                              "height": 720}})).json()  # fmt: skip
    assert moved == {
        "ok": True,
        "id": str(main.id),
        "bounds": {"x": 200, "y": 100, "width": 1280, "height": 720},
    }
    closed = (await http.post("/windows/dialog/close", json={"wait_dialog_gone_ms": 50})).json()
    assert closed == {"status": "ok", "closed_via": "close"}  # the fake ignores Escape
    assert [w.id for w in driver.open_windows] == [main.id]
    assert (await http.post(f"/windows/{main.id}/focus")).json() == {"status": "ok"}
    assert (await http.get("/windows/focused")).json()["id"] == main.id
    opened = (
        await http.post("/application/open", json={"path": "/bin/sleep", "args": ["a.txt"]})
    ).json()
    assert opened["status"] == "ok" and opened["pid"] >= 10_000
    running = (await http.get("/application/running", params={"name": "sleep"})).json()
    assert running == {"running": True, "pids": [opened["pid"]]}
    assert (await http.post("/application/close", json={"window_id": main.id})).status_code == 200
    assert driver.open_windows == []


async def test_sequence_runs_steps_in_order_and_aborts_on_error(agent: Agent) -> None:
    http, driver = agent.http, agent.driver
    await http.put("/clipboard/slots/current_order", json={"text": "A-1001"})
    body = {"on_error": "abort", "steps": [
        {"name": "paste-order-id", "type": "clipboard.slot_restore", "slot_name": "current_order"},
        {"name": "hold", "type": "keyboard.down", "key": "shift"},
        {"name": "hotkey-paste", "type": "keyboard.key", "keys": "ctrl+v"},
        {"name": "submit", "type": "mouse.click", "x": 500, "y": 400},
        {"name": "settle", "type": "sleep", "ms": 10},
        {"name": "snap", "type": "screenshot", "format": "jpeg", "jpeg_quality": 80},
        {"name": "boom", "type": "mouse.click", "x": 9999, "y": 1},
        {"name": "never", "type": "keyboard.type", "text": "x"},
    ]}  # fmt: skip
    result = (await http.post("/sequence", json=body)).json()
    names = [(r["name"], r["ok"]) for r in result["results"]]
    assert names == [
        ("paste-order-id", True),
        ("hold", True),
        ("hotkey-paste", True),
        ("submit", True),
        ("settle", True),
        ("snap", True),
        ("boom", False),
    ]
    assert result["aborted_at"] == "boom"
    assert result["results"][0]["length"] == 6
    snap = result["results"][5]
    assert snap["format"] == "jpeg" and snap["width"] == 640 and snap["bytes"] > 0
    assert base64.b64decode(snap["image"])[:2] == b"\xff\xd8"
    assert result["results"][6]["error"] == "invalid"
    assert driver.typed == []  # the step after the failure never ran
    assert driver.keys_down == []  # what the failed sequence held was released
    assert "release_all" in driver.call_names()


async def test_sequence_continue_and_unknown_step(agent: Agent) -> None:
    result = (await agent.http.post("/sequence", json={"on_error": "continue", "steps": [
        {"type": "teleport"}, {"type": "keyboard.type", "text": "ok"}]})).json()  # fmt: skip
    assert [r["ok"] for r in result["results"]] == [False, True]
    assert "unknown step type" in result["results"][0]["details"]
    assert result["aborted_at"] is None and agent.driver.typed == ["ok"]


async def test_one_lock_per_device_busy_when_it_cannot_wait(agent: Agent) -> None:
    long = asyncio.create_task(agent.http.post("/sequence", json={"steps": [
        {"type": "sleep", "ms": 400}]}))  # fmt: skip
    while not agent.dispatcher._lock.locked():
        await asyncio.sleep(0.005)
    busy = await agent.http.post(
        "/sequence",
        params={"lock_timeout_ms": 20},
        json={"steps": [{"type": "keyboard.type", "text": "x"}]},
    )
    assert busy.status_code == 409 and busy.json()["error"] == "busy"
    assert (await long).status_code == 200
    assert agent.driver.typed == []


async def test_action_log_records_without_secrets(agent: Agent) -> None:
    await agent.http.post("/keyboard/type", json={"text": "hunter2"})
    await agent.http.post("/mouse/move", json={"x": 9999, "y": 0})
    entries = (await agent.http.get("/actions", params={"limit": 5})).json()
    assert [(e["action"], e["result"]) for e in entries] == [  # newest first, as audit
        ("mouse.move", "invalid"),
        ("keyboard.type", "ok"),
    ]
    assert "hunter2" not in entries[1]["params"] and "7 chars" in entries[1]["params"]
    assert entries[1]["duration_ms"] >= 0 and entries[1]["timestamp"].endswith("Z")
    assert (await agent.http.get("/actions", params={"limit": 1})).json()[0]["action"] == (
        "mouse.move"
    )


async def test_clicks_on_a_scaled_region_shot_map_back_through_its_frame_id(agent: Agent) -> None:
    shot = (await agent.http.get("/screenshot/region", params={
        "x": 100, "y": 50, "width": 200, "height": 100, "scale": 0.5})).json()  # fmt: skip
    assert (shot["width"], shot["height"], shot["scale"]) == (100, 50, 0.5)
    frame = shot["frame_id"]
    await agent.http.post("/mouse/click", json={"x": 10, "y": 20, "frame_id": frame})
    assert agent.driver.pointer == (120, 90)
    await agent.http.post("/mouse/drag", json={"from_x": 0, "from_y": 0, "to_x": 99, "to_y": 49,
                                               "frame_id": frame, "duration_ms": 0})  # fmt: skip
    assert agent.driver.pointer == (298, 148)
    full = (await agent.http.get("/screenshot", params={"scale": 0.25})).json()
    await agent.http.post("/mouse/move", json={"x": 40, "y": 30, "frame_id": full["frame_id"]})
    assert agent.driver.pointer == (160, 120)
    unknown = await agent.http.post("/mouse/move", json={"x": 1, "y": 1, "frame_id": 999})
    assert unknown.status_code == 404 and "new screenshot" in unknown.json()["details"]


async def test_an_oversized_body_is_refused_before_it_is_read(agent: Agent) -> None:
    from remotehands.agent.faces import native

    host, port = agent.base.removeprefix("http://").split(":")
    token = agent.http.headers["Authorization"]

    def post_with_a_huge_declared_length() -> tuple[int, str]:
        with socket.create_connection((host, int(port)), timeout=10) as conn:
            conn.sendall(
                f"POST /keyboard/type HTTP/1.1\r\nHost: x\r\nAuthorization: {token}\r\n"
                f"Content-Length: {native.MAX_BODY + 1}\r\n\r\n{{}}".encode()
            )
            # read the whole answer, however many segments it comes in
            response = http.client.HTTPResponse(conn)
            response.begin()
            return response.status, response.read().decode()

    status, body = await asyncio.to_thread(post_with_a_huge_declared_length)
    assert status == 422, body
    assert "is over" in body and agent.driver.typed == []


async def test_a_sequence_with_a_failed_step_is_logged_as_failed(agent: Agent) -> None:
    done = await agent.http.post("/sequence", json={"steps": [
        {"type": "mouse.move", "x": 1, "y": 1},
        {"type": "mouse.move", "x": 99999, "y": 0},
    ]})  # fmt: skip
    assert done.status_code == 200
    entries = (await agent.http.get("/actions", params={"limit": 1})).json()
    assert (entries[0]["action"], entries[0]["result"]) == ("sequence", "invalid")
