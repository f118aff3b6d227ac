"""The PiKVM face checked shape by shape against reference/pikvm-kvmd-compat.md, over real
loopback HTTP and WebSocket, in front of a FakeDriver device (whose recorded calls show what
reached the device): the envelope to the byte, the auth chain's 400/401/403 split, cookie
login and logout, error names, plain 404/405, HID semantics, snapshot headers, the socket's
event order, deep-mergeable partial states and the web UI's binary frames."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import re
import struct
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
import simplejpeg
from PIL import Image, ImageDraw, ImageFont
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import InvalidStatus

from remotehands.agent.config import AgentConfig
from remotehands.agent.runtime import Agent, DeviceRun
from remotehands.drivers.fake import FakeDriver
from remotehands.drivers.pikvm.client import KvmdClient, deep_merge
from remotehands.protocol.keys import Key
from remotehands.testing.agents import running_device

pytestmark = pytest.mark.anyio

PASSWORD = "face-pw"
ADMIN = {"X-KVMD-User": "admin", "X-KVMD-Passwd": PASSWORD}


def _config(
    tmp_path: Path,
    face_settings: dict[str, Any] | None = None,
    capabilities: tuple[str, ...] = ("screen", "keyboard", "mouse"),
) -> AgentConfig:
    password = tmp_path / "agent.pw"
    password.write_text(PASSWORD + "\n")
    password.chmod(0o600)
    return AgentConfig.model_validate({
        "state_dir": str(tmp_path / "state"), "password_file": str(password),
        "devices": [{"name": "fake", "driver": "fake", "listen": "127.0.0.1:0",
                     "faces": ["native", "pikvm"], "settings": {"width": 320, "height": 200,
                                  "capabilities": list(capabilities)},
                     "face_settings": {"pikvm": face_settings or {}}}],
    })  # fmt: skip


@pytest.fixture
async def device(tmp_path: Path) -> AsyncIterator[DeviceRun]:
    async with running_device(Agent.from_config(_config(tmp_path)), "fake") as run:
        yield run


@pytest.fixture
async def http(device: DeviceRun) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=f"http://{device.address}", timeout=10) as client:
        yield client


def fake(device: DeviceRun) -> FakeDriver:
    driver = device.plan.driver
    assert isinstance(driver, FakeDriver)
    return driver


def envelope(ok: bool, result: dict[str, Any]) -> bytes:
    return json.dumps({"ok": ok, "result": result}, sort_keys=True, indent=4).encode()


def basic(user: str, passwd: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{passwd}".encode()).decode()}


# -- envelope, errors, auth -----------------------------------------------------------------


async def test_the_envelope_is_kvmds_to_the_byte(http: httpx.AsyncClient) -> None:
    answer = await http.post("/api/hid/events/send_key?key=KeyA", headers=ADMIN)
    assert answer.status_code == 200
    assert answer.headers["content-type"] == "application/json; charset=utf-8"
    assert answer.content == b'{\n    "ok": true,\n    "result": {}\n}'
    state = await http.get("/api/hid", headers=ADMIN)
    assert state.content == envelope(True, state.json()["result"])
    assert list(state.json()["result"]) == sorted(state.json()["result"])


async def test_the_auth_chain_splits_400_401_403(http: httpx.AsyncClient) -> None:
    async def answer(headers: dict[str, str]) -> tuple[int, str]:
        response = await http.get("/api/auth/check", headers=headers)
        return response.status_code, response.json()["result"].get("error", "")

    assert await answer({}) == (401, "UnauthorizedError")
    assert await answer(ADMIN) == (200, "")
    assert await answer({"X-KVMD-User": "admin", "X-KVMD-Passwd": "wrong"}) == (
        403, "ForbiddenError",
    )  # fmt: skip
    assert await answer({"X-KVMD-User": "nobody", "X-KVMD-Passwd": PASSWORD}) == (
        403, "ForbiddenError",
    )  # fmt: skip
    upper = await http.get("/api/auth/check", headers={"X-KVMD-User": "Admin",
                                                       "X-KVMD-Passwd": PASSWORD})  # fmt: skip
    assert upper.status_code == 400
    assert upper.content == envelope(False, {
        "error": "ValidatorError",
        "error_msg": "The argument 'Admin' is not a valid username characters",
    })  # fmt: skip
    assert await answer(basic("admin", PASSWORD)) == (200, "")
    assert await answer(basic("admin", "nope")) == (403, "ForbiddenError")
    assert await answer(basic("admin", "a:b")) == (401, "UnauthorizedError")
    assert await answer({"Authorization": "Basic !!!"}) == (401, "UnauthorizedError")
    assert await answer({"Cookie": "auth_token=abc"}) == (400, "ValidatorError")
    assert await answer({"Cookie": "auth_token=" + "0" * 64}) == (403, "ForbiddenError")
    # headers decide before a cookie, which is then never looked at
    both = {"X-KVMD-User": "admin", "X-KVMD-Passwd": "wrong", "Cookie": "auth_token=abc"}
    assert await answer(both) == (403, "ForbiddenError")
    denied = await http.get("/api/hid", headers=basic("admin", "nope"))
    assert "www-authenticate" not in denied.headers


async def test_cookie_login_check_and_logout_of_every_session(http: httpx.AsyncClient) -> None:
    as_json = await http.post("/api/auth/login", json={"user": "admin", "passwd": PASSWORD})
    assert as_json.status_code == 400
    assert as_json.json()["result"] == {
        "error": "ValidatorError",
        "error_msg": "The argument '' is not a valid username characters",
    }
    wrong = await http.post("/api/auth/login", data={"user": "admin", "passwd": "x"})
    assert wrong.status_code == 403 and "set-cookie" not in wrong.headers
    tokens = []
    for _ in range(2):
        login = await http.post("/api/auth/login", data={"user": "admin", "passwd": PASSWORD})
        assert login.status_code == 200 and login.json() == {"ok": True, "result": {}}
        cookie = login.headers["set-cookie"]
        token = cookie.split(";")[0].removeprefix("auth_token=")
        assert cookie == f"auth_token={token}; HttpOnly; Path=/; SameSite=Strict"
        assert len(token) == 64 and set(token) <= set("0123456789abcdef")
        tokens.append(token)
    http.cookies.clear()
    for token in tokens:
        check = await http.get("/api/auth/check", headers={"Cookie": f"auth_token={token}"})
        assert check.status_code == 200
    no_cookie = await http.post("/api/auth/logout", headers=ADMIN)
    assert no_cookie.status_code == 400
    out = await http.post("/api/auth/logout", headers={"Cookie": f"auth_token={tokens[0]}"})
    assert out.status_code == 200
    for token in tokens:  # every session of the user ended
        check = await http.get("/api/auth/check", headers={"Cookie": f"auth_token={token}"})
        assert check.status_code == 403
    redirected = await http.post("/api/auth/login", data={"user": "admin", "passwd": PASSWORD,
                                                          "redirect": "/kvm/"})  # fmt: skip
    assert redirected.status_code == 302 and redirected.headers["location"] == "/kvm/"
    assert "HttpOnly" not in redirected.headers["set-cookie"]


async def test_the_login_form_also_comes_as_multipart(http: httpx.AsyncClient) -> None:
    fields = {"user": (None, "admin"), "passwd": (None, PASSWORD), "expire": (None, "60")}
    login = await http.post("/api/auth/login", files=fields)
    assert login.headers["content-type"].startswith("application/json")
    assert login.status_code == 200 and login.json() == {"ok": True, "result": {}}
    token = login.headers["set-cookie"].split(";")[0].removeprefix("auth_token=")
    http.cookies.clear()
    check = await http.get("/api/auth/check", headers={"Cookie": f"auth_token={token}"})
    assert check.status_code == 200
    wrong = await http.post("/api/auth/login", files={"user": (None, "admin"),
                                                      "passwd": (None, "nope")})  # fmt: skip
    assert wrong.status_code == 403 and "set-cookie" not in wrong.headers
    upper = await http.post("/api/auth/login", files={"user": (None, "Admin"),
                                                      "passwd": (None, PASSWORD)})  # fmt: skip
    assert upper.json()["result"] == {
        "error": "ValidatorError",
        "error_msg": "The argument 'Admin' is not a valid username characters",
    }  # fmt: skip
    multipart = {"Content-Type": "multipart/form-data; boundary=x"}
    broken = await http.post("/api/auth/login", content=b"--x\r\nnot a part", headers=multipart)
    assert broken.status_code == 400
    assert broken.json()["result"]["error_msg"] == (
        "The argument '' is not a valid username characters"
    )


async def test_unknown_routes_and_methods_are_plain_before_auth(http: httpx.AsyncClient) -> None:
    missing = await http.get("/api/nothing")
    assert (missing.status_code, missing.text) == (404, "404: Not Found")
    assert missing.headers["content-type"] == "text/plain; charset=utf-8"
    wrong = await http.delete("/api/hid")
    assert (wrong.status_code, wrong.text) == (405, "405: Method Not Allowed")
    native = await http.get("/screens")  # the native face answers beside it, in its shapes
    assert native.status_code == 401 and native.json()["error"] == "unauthorized"


async def test_validator_errors_use_kvmds_words(http: httpx.AsyncClient) -> None:
    async def error(path: str) -> dict[str, Any]:
        response = await http.post(path, headers=ADMIN)
        assert response.status_code == 400
        result: dict[str, Any] = response.json()["result"]
        return result

    assert await error("/api/hid/events/send_key?key=keya") == {
        "error": "ValidatorError", "error_msg": "The argument 'keya' is not a valid Keyboard key",
    }  # fmt: skip
    assert (await error("/api/hid/events/send_key?key=KeyA&state=maybe"))["error_msg"] == (
        "The argument 'maybe' is not a valid bool (['1', 'true', 'yes'] or ['0', 'false', 'no'])"
    )
    assert (await error("/api/hid/events/send_mouse_move?to_x=1"))["error_msg"] == (
        "None argument is not a valid Mouse move"
    )
    assert (await error("/api/hid/events/send_key?key=" + "K" * 17))["error_msg"] == (
        "RAW limit exceed"
    )
    assert (await error("/api/hid/print?keymap=xx"))["error_msg"] == (
        "The argument 'xx' is not a valid keymap"
    )
    assert await error("/api/atx/power?action=on") == {
        "error": "AtxDisabledError", "error_msg": "ATX is disabled",
    }  # fmt: skip
    assert (await error("/api/msd/set_connected?connected=1"))["error"] == "MsdDisabledError"


# -- HID ------------------------------------------------------------------------------------


async def test_send_key_holds_modifiers_and_releases_the_rest(
    http: httpx.AsyncClient, device: DeviceRun
) -> None:
    driver = fake(device)
    await http.post("/api/hid/events/send_key?key=ControlLeft", headers=ADMIN)
    await http.post("/api/hid/events/send_key?key=KeyC", headers=ADMIN)
    assert driver.keys_down == [Key(code="ControlLeft")]  # no state: Ctrl stays held
    await http.post("/api/hid/events/send_key?key=KeyX&state=1", headers=ADMIN)
    assert Key(code="KeyX") in driver.keys_down
    await http.post("/api/hid/events/send_key?key=KeyX&state=0", headers=ADMIN)
    await http.post("/api/hid/events/send_key?key=KeyZ&state=true&finish=1", headers=ADMIN)
    assert driver.keys_down == [Key(code="ControlLeft")]  # finish released the plain key
    await http.post("/api/hid/reset", headers=ADMIN)
    assert driver.keys_down == []
    inactivity = await http.get("/api/hid/inactivity", headers=ADMIN)
    assert inactivity.json()["result"] == {"inactivity": 0}


async def test_shortcut_print_and_keymaps(http: httpx.AsyncClient, device: DeviceRun) -> None:
    driver = fake(device)
    mark = len(driver.calls)
    shortcut = "/api/hid/events/send_shortcut?keys=ControlLeft,AltLeft,Delete"
    assert (await http.post(shortcut, headers=ADMIN)).status_code == 200
    keys = [(c.args["key"].code, c.args["down"]) for c in driver.calls[mark:] if c.name == "key"]
    assert keys == [("ControlLeft", True), ("AltLeft", True), ("Delete", True),
                    ("Delete", False), ("AltLeft", False), ("ControlLeft", False)]  # fmt: skip
    missing = await http.post("/api/hid/events/send_shortcut", headers=ADMIN)
    assert missing.status_code == 400
    text = "héllo\nworld " * 100
    printed = await http.post("/api/hid/print", content=text.encode(), headers=ADMIN)
    assert printed.status_code == 200
    assert driver.typed[-1] == text[:1024]  # limit defaults to 1024
    await http.post("/api/hid/print?limit=0&keymap=de", content=text.encode(), headers=ADMIN)
    assert driver.typed[-1] == text
    keymaps = (await http.get("/api/hid/keymaps", headers=ADMIN)).json()["result"]
    assert keymaps["keymaps"]["default"] == "en-us"


async def test_mouse_moves_map_and_clamp(http: httpx.AsyncClient, device: DeviceRun) -> None:
    driver = fake(device)  # 320 x 200

    async def move(x: int, y: int) -> tuple[int, int]:
        answer = await http.post(f"/api/hid/events/send_mouse_move?to_x={x}&to_y={y}",
                                 headers=ADMIN)  # fmt: skip
        assert answer.status_code == 200
        return driver.pointer

    assert await move(-32768, -32768) == (0, 0)
    assert await move(32767, 32767) == (319, 199)
    assert await move(0, 0) == (160, 100)
    assert await move(-99999, 99999) == (0, 199)  # clamped, not refused
    await move(0, 0)
    await http.post("/api/hid/events/send_mouse_relative?delta_x=500&delta_y=-3", headers=ADMIN)
    assert driver.pointer == (160 + 127, 97)
    mark = len(driver.calls)
    await http.post("/api/hid/events/send_mouse_wheel?delta_x=0&delta_y=2", headers=ADMIN)
    await http.post("/api/hid/events/send_mouse_button?button=right", headers=ADMIN)
    await http.post("/api/hid/events/send_mouse_button?button=LEFT&state=1", headers=ADMIN)
    assert driver.buttons_down == {"left"}
    await http.post("/api/hid/events/send_mouse_button?button=up", headers=ADMIN)  # ignored
    calls = [(c.name, c.args) for c in driver.calls[mark:]]
    assert calls[0][0] == "scroll" and calls[0][1]["delta_y"] == -2  # positive y: up
    assert ("click", {"button": "right", "count": 1, "at": (287, 97)}) in calls


# -- streamer, info, metrics ----------------------------------------------------------------


async def test_snapshot_headers_preview_and_ocr(http: httpx.AsyncClient, device: DeviceRun) -> None:
    fake(device).fill((0, 0, 255))  # BGR red
    shot = await http.get("/api/streamer/snapshot", headers=ADMIN)
    assert shot.status_code == 200 and shot.headers["content-type"] == "image/jpeg"
    assert (shot.headers["x-ustreamer-online"], shot.headers["x-ustreamer-width"],
            shot.headers["x-ustreamer-height"]) == ("true", "320", "200")  # fmt: skip
    assert shot.headers["access-control-allow-origin"] == "*"
    assert float(shot.headers["x-timestamp"]) > 0
    rgb = simplejpeg.decode_jpeg(shot.content, colorspace="RGB")
    assert rgb.shape == (200, 320, 3) and np.all(np.abs(rgb[100, 160].astype(int)
                                                         - (255, 0, 0)) < 16)  # fmt: skip
    preview = await http.get("/api/streamer/snapshot?preview=1", headers=ADMIN)
    small = simplejpeg.decode_jpeg(preview.content, colorspace="RGB")
    assert small.shape[:2] == (40, 64)  # a fifth
    assert preview.headers["x-ustreamer-width"] == "320"  # still the source's
    boxed = await http.get("/api/streamer/snapshot?preview=1&preview_max_width=160",
                           headers=ADMIN)  # fmt: skip
    assert simplejpeg.decode_jpeg(boxed.content).shape[:2] == (100, 160)
    nothing = await http.get("/api/streamer/snapshot?load=1", headers=ADMIN)
    assert nothing.status_code == 503
    assert nothing.json()["result"] == {"error": "UnavailableError",
                                        "error_msg": "Service Unavailable"}  # fmt: skip
    await http.get("/api/streamer/snapshot?save=1", headers=ADMIN)
    state = (await http.get("/api/streamer", headers=ADMIN)).json()["result"]
    assert state["snapshot"]["saved"] == {"online": True, "width": 320, "height": 200}
    assert state["streamer"]["source"] == {
        "online": True, "resolution": {"width": 320, "height": 200},
        "captured_fps": 30, "desired_fps": 30,
    }  # fmt: skip
    loaded = await http.get("/api/streamer/snapshot?load=1", headers=ADMIN)
    assert loaded.status_code == 200 and loaded.headers["content-type"] == "image/jpeg"
    unsupported = await http.post("/api/streamer/set_params?h264_bitrate=100", headers=ADMIN)
    assert unsupported.json()["result"]["error"] == "StreamerH264NotSupported"


def _write(driver: FakeDriver, text: str, at: tuple[int, int]) -> None:
    """Black text on the fake screen (white first), as a window would show it."""
    image = Image.fromarray(np.ascontiguousarray(driver.framebuffer[..., 2::-1]))
    font = ImageFont.truetype("DejaVuSans.ttf", 20)
    ImageDraw.Draw(image).text(at, text, fill=(0, 0, 0), font=font)
    driver.framebuffer[..., :3] = np.asarray(image)[..., ::-1]


async def test_ocr_reads_the_screen_in_kvmds_box(
    http: httpx.AsyncClient, device: DeviceRun
) -> None:
    driver = fake(device)
    driver.fill((255, 255, 255))
    _write(driver, "Alpha", (10, 80))
    _write(driver, "Omega", (200, 80))
    whole = await http.get("/api/streamer/snapshot?ocr=1", headers=ADMIN)
    assert whole.status_code == 200
    assert whole.headers["content-type"] == "text/plain; charset=utf-8"
    assert "Alpha" in whole.text and "Omega" in whole.text
    # right and bottom are coordinates, not sizes: the right half only
    right = await http.get("/api/streamer/snapshot?ocr=1&ocr_langs=eng&ocr_left=160&ocr_top=0"
                           "&ocr_right=-1&ocr_bottom=200", headers=ADMIN)  # fmt: skip
    assert "Omega" in right.text and "Alpha" not in right.text
    left = await http.get("/api/streamer/snapshot?ocr=1&ocr_right=150&ocr_bottom=199",
                          headers=ADMIN)  # fmt: skip
    assert "Alpha" in left.text and "Omega" not in left.text
    bad = await http.get("/api/streamer/snapshot?ocr=1&ocr_langs=eng,xyz", headers=ADMIN)
    assert bad.status_code == 400
    assert bad.content == envelope(False, {
        "error": "ValidatorError",
        "error_msg": "Failed sub-validator on one of the item of ['eng', 'xyz']",
    })  # fmt: skip
    wrapped = (await http.get("/api/streamer/ocr", headers=ADMIN)).json()["result"]
    assert wrapped == {"ocr": {"enabled": True, "langs": {"default": ["eng"],
                                                          "available": ["eng"]}}}  # fmt: skip
    async with await _socket(device) as ws:
        assert await _wait_event(ws, "ocr") == wrapped["ocr"]  # the event is not wrapped
    assert "ocr" in device.plan.dispatcher.capabilities


async def test_info_legacy_and_modern_and_metrics(http: httpx.AsyncClient) -> None:
    legacy = (await http.get("/api/info", headers=ADMIN)).json()["result"]
    assert sorted(legacy) == ["auth", "extras", "fan", "hw", "meta", "node", "system", "uptime"]
    assert legacy["system"]["kvmd"] == {"version": "4.206"}
    assert "platform" not in legacy["system"] and legacy["hw"]["platform"]["type"] == "rpi"
    modern = (await http.get("/api/info?legacy=0", headers=ADMIN)).json()["result"]
    assert sorted(modern) == ["auth", "extras", "fan", "health", "meta", "node", "system",
                              "uptime"]  # fmt: skip
    assert modern["system"]["platform"]["type"] == "rpi"
    some = (await http.get("/api/info?fields=auth,node", headers=ADMIN)).json()["result"]
    assert sorted(some) == ["auth", "node"]
    bad = await http.get("/api/info?fields=hw&legacy=0", headers=ADMIN)
    assert bad.status_code == 400
    assert bad.json()["result"]["error_msg"] == "Failed sub-validator on one of the item of ['hw']"
    metrics = await http.get("/api/export/prometheus/metrics", headers=basic("admin", PASSWORD))
    assert metrics.headers["content-type"] == "text/plain; charset=utf-8"
    assert metrics.text.startswith("# TYPE pikvm_atx_enabled gauge\npikvm_atx_enabled 0\n\n")
    assert "pikvm_hw_mem_total" in metrics.text and "pikvm_fan_monitored 0" in metrics.text
    assert (await http.get("/api/export/prometheus/metrics")).status_code == 401


# -- the socket -----------------------------------------------------------------------------


async def _socket(device: DeviceRun, headers: dict[str, str] | None = None,
                  query: str = "stream=0") -> ClientConnection:  # fmt: skip
    # an unbounded queue: a test reads only some of the events, and a full queue would keep
    # the close frame behind the others
    return await connect(f"ws://{device.address}/api/ws?{query}", max_queue=None,
                         additional_headers=headers if headers is not None else ADMIN)  # fmt: skip


async def _event(ws: ClientConnection) -> tuple[str, Any]:
    while True:
        frame = await asyncio.wait_for(ws.recv(), 10)
        if isinstance(frame, str):
            message = json.loads(frame)
            return message["event_type"], message["event"]


async def test_the_socket_is_refused_as_kvmd_refuses(device: DeviceRun) -> None:
    for headers, status in (({}, 401), ({"X-KVMD-User": "admin", "X-KVMD-Passwd": "x"}, 403)):
        with pytest.raises(InvalidStatus) as refused:
            await _socket(device, headers)
        assert refused.value.response.status_code == status
        body = json.loads(bytes(refused.value.response.body or b""))
        assert body["ok"] is False
    with pytest.raises(InvalidStatus) as bad:
        await _socket(device, query="stream=abc")
    assert bad.value.response.status_code == 400


async def test_the_socket_sends_loop_first_then_full_states(device: DeviceRun) -> None:
    async with await _socket(device) as ws:
        first = await _event(ws)
        assert first == ("loop", {"version": {"major": 4, "minor": 206}})
        seen: dict[str, Any] = {}
        infos: list[str] = []
        while "clients" not in seen:
            event_type, event = await _event(ws)
            if event_type == "info":
                assert len(event) == 1  # one submanager per event
                infos += list(event)
            seen[event_type] = event
        assert {"gpio", "hid", "atx", "msd", "streamer", "ocr", "switch", "hid_keymaps"} <= set(
            seen
        )
        assert sorted(infos) == ["auth", "extras", "fan", "health", "meta", "node", "system",
                                 "uptime"]  # fmt: skip
        assert seen["streamer"]["streamer"]["source"]["resolution"] == {"width": 320,
                                                                        "height": 200}  # fmt: skip
        assert seen["clients"] == {"count": 0}  # stream=0 sessions are not viewers
        assert seen["hid_keymaps"]["keymaps"]["default"] == "en-us"
        await ws.send(json.dumps({"event_type": "ping"}))  # no "event": dropped
        await ws.send(json.dumps({"event_type": "ping", "event": {}}))
        assert await _event(ws) == ("pong", {})
        await ws.send(b"\x00")
        assert await asyncio.wait_for(ws.recv(), 10) == b"\xff"
        async with await _socket(device, query="stream=1") as viewer:  # broadcast to everyone
            assert await _event(viewer) == ("loop", {"version": {"major": 4, "minor": 206}})
            assert await _wait_event(ws, "clients") == {"count": 1}
        await ws.send(b"")  # an empty binary frame ends the session
        await asyncio.wait_for(ws.wait_closed(), 10)


async def _wait_event(ws: ClientConnection, wanted: str) -> Any:
    while True:
        event_type, event = await _event(ws)
        if event_type == wanted:
            return event


async def test_partial_states_deep_merge_into_the_full_one(device: DeviceRun) -> None:
    driver = fake(device)
    async with await _socket(device) as ws:
        full = await _wait_event(ws, "streamer")
        driver.width, driver.height = 640, 480  # the source's resolution changes
        driver.framebuffer = np.zeros((480, 640, 4), dtype=np.uint8)
        part = await _wait_event(ws, "streamer")
        assert part == {"streamer": {"source": {"resolution": {"width": 640, "height": 480}}}}
        merged = deep_merge(full, part)
        assert merged["streamer"]["source"]["online"] is True
        assert merged["params"] == full["params"]
        assert merged["streamer"]["source"]["resolution"] == {"width": 640, "height": 480}


async def test_json_and_binary_hid_frames_reach_the_device(device: DeviceRun) -> None:
    driver = fake(device)
    async with await _socket(device) as ws:
        await _event(ws)

        async def settled(count: int) -> bool:
            return len(driver.calls) >= count

        mark = len(driver.calls)
        frames: list[str | bytes] = [
            json.dumps({"event_type": "key", "event": {"key": "KeyQ", "state": True}}),
            json.dumps({"event_type": "key", "event": {"key": "KeyQ", "state": False}}),
            json.dumps({"event_type": "key", "event": {"key": "nope", "state": True}}),  # dropped
            json.dumps({"event_type": "mouse_move", "event": {"to": {"x": 0, "y": 0}}}),
            b"\x01\x01KeyW",  # press KeyW by name
            b"\x01\x80" + struct.pack(">H", 17),  # release KEY_W (raw evdev)
            b"\x01\x03ShiftLeft",  # press with finish: Shift stays held
            b"\x02\x01left", b"\x02\x80" + struct.pack(">H", 0x110),
            b"\x03" + struct.pack(">hh", 32767, -32768),
            b"\x03\x00",  # a move that is not 4 bytes: dropped
            b"\x04\x00" + struct.pack(">bbbb", -10, 5, -10, 5),
            b"\x04\x00\x05",  # odd: dropped
            b"\x05\x00" + struct.pack(">bb", 0, -3),
            b"\x09whatever",  # unknown op: dropped
            json.dumps({"event_type": "mouse_wheel",
                        "event": {"delta": [{"x": 1, "y": 1}], "squash": True}}),
        ]  # fmt: skip
        for frame in frames:
            await ws.send(frame)
        await ws.send(json.dumps({"event_type": "ping", "event": {}}))
        assert await _wait_event(ws, "pong") == {}  # every frame before it was handled

        calls = [(c.name, {k: v for k, v in c.args.items() if k != "at"})
                 for c in driver.calls[mark:] if c.name != "grab"]  # fmt: skip
        assert calls == [
            ("key", {"key": Key(code="KeyQ"), "down": True}),
            ("key", {"key": Key(code="KeyQ"), "down": False}),
            ("move", {"x": 160, "y": 100}),
            ("key", {"key": Key(code="KeyW"), "down": True}),
            ("key", {"key": Key(code="KeyW"), "down": False}),
            ("key", {"key": Key(code="ShiftLeft"), "down": True}),
            ("button", {"button": "left", "down": True}),
            ("button", {"button": "left", "down": False}),
            ("move", {"x": 319, "y": 0}),
            ("move", {"x": 299, "y": 10}),
            ("scroll", {"delta_x": 0, "delta_y": 3}),
            ("scroll", {"delta_x": 1, "delta_y": -1}),
        ]
        assert driver.keys_down == [Key(code="ShiftLeft")]
        inactivity = await KvmdClient(f"http://{device.address}", password=PASSWORD).call(
            "GET", "/api/hid/inactivity"
        )
        assert inactivity == {"inactivity": 0}


# -- the client's own checks against the face -----------------------------------------------


async def test_the_client_signs_in_every_way_and_reads_events(device: DeviceRun) -> None:
    url = f"http://{device.address}"
    for auth in ("headers", "basic", "cookie"):
        async with KvmdClient(url, password=PASSWORD, auth=auth) as client:
            await client.check()
            assert (await client.hid_state())["mouse"]["absolute"] is True
            async with client.events() as events:
                event_type, loop = await events.__anext__()
                assert (event_type, loop) == ("loop", {"version": {"major": 4, "minor": 206}})
                _, streamer = await events.wait_for(lambda t, s: t == "streamer")
                assert streamer["streamer"]["source"]["online"] is True
    async with KvmdClient(url, password="wrong") as client:
        with pytest.raises(Exception) as refused:
            await client.check()
        assert "ForbiddenError" in str(refused.value)


async def test_pikvm_user_option_renames_the_user(tmp_path: Path) -> None:
    env = {**os.environ, "REMOTEHANDS_AGENT_PASSWORD": PASSWORD}
    remotehands = str(Path(sys.executable).with_name("remotehands"))
    process = subprocess.Popen(
        [remotehands, "agent", "--driver", "fake", "--face", "pikvm", "--pikvm-user",
         "operator", "--listen", "127.0.0.1:0", "--state-dir", str(tmp_path)],
        env=env, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert process.stderr is not None
        line = await asyncio.wait_for(asyncio.to_thread(process.stderr.readline), 20)
        address = line.rsplit("http://", 1)[1].strip()
        async with httpx.AsyncClient(base_url=f"http://{address}") as http:
            ok = await http.get("/api/auth/check", headers={"X-KVMD-User": "operator",
                                                            "X-KVMD-Passwd": PASSWORD})  # fmt: skip
            assert ok.status_code == 200
            assert (await http.get("/api/auth/check", headers=ADMIN)).status_code == 403
    finally:
        process.terminate()
        process.wait(10)


async def test_hid_set_params_checks_and_keeps_the_mouse_output(http: httpx.AsyncClient) -> None:
    relative = await http.post("/api/hid/set_params?mouse_output=usb_rel&jiggler=1", headers=ADMIN)
    assert relative.status_code == 200
    state = (await http.get("/api/hid", headers=ADMIN)).json()["result"]
    assert state["mouse"]["absolute"] is False and state["mouse"]["outputs"]["active"] == "usb_rel"
    assert state["jiggler"]["enabled"] is True
    bad = await http.post("/api/hid/set_params?mouse_output=serial", headers=ADMIN)
    assert bad.json()["result"]["error_msg"] == "The argument 'serial' is not a valid Mouse output"
    connected = await http.post("/api/hid/set_connected", headers=ADMIN)
    assert connected.json()["result"]["error_msg"] == (
        "None argument is not a valid bool (['1', 'true', 'yes'] or ['0', 'false', 'no'])"
    )


async def test_gpio_has_no_channels_and_says_so_as_kvmd(http: httpx.AsyncClient) -> None:
    state = await http.get("/api/gpio", headers=ADMIN)
    assert state.json()["result"] == {
        "model": {"scheme": {"inputs": {}, "outputs": {}},
                  "view": {"header": {"title": []}, "table": []}},
        "state": {"inputs": {}, "outputs": {}},
    }  # fmt: skip
    for path in ("/api/gpio/switch?channel=relay1&state=1", "/api/gpio/pulse?channel=relay1",
                 "/api/gpio/pulse?channel=relay1&delay=0.5&wait=1"):  # fmt: skip
        answer = await http.post(path, headers=ADMIN)
        assert answer.status_code == 400
        assert answer.content == envelope(False, {
            "error": "GpioChannelNotFoundError", "error_msg": "GPIO channel is not found",
        })  # fmt: skip
    bad = await http.post("/api/gpio/switch?channel=1bad&state=1", headers=ADMIN)
    assert bad.json()["result"] == {
        "error": "ValidatorError", "error_msg": "The argument '1bad' is not a valid GPIO channel",
    }  # fmt: skip
    no_state = await http.post("/api/gpio/switch?channel=relay1", headers=ADMIN)
    assert no_state.json()["result"]["error"] == "ValidatorError"
    assert (await http.post("/api/gpio/switch?channel=x&state=1")).status_code == 401


async def test_the_log_streams_the_action_log_as_journal_lines(http: httpx.AsyncClient) -> None:
    await http.post("/api/hid/events/send_key?key=KeyA", headers=ADMIN)
    answer = await http.get("/api/log", headers=ADMIN)
    assert answer.status_code == 200 and answer.headers["content-type"] == "text/plain"
    lines = answer.text.split("\r\n")
    assert lines[-1] == "" and len(lines) > 1
    pattern = r"^\[\d{4}-\d\d-\d\d \d\d:\d\d:\d\d remotehands-agent\.service\] --- .+$"
    assert all(re.match(pattern, line) for line in lines[:-1]), lines
    assert any('keyboard.down {"key": "KeyA"} --- ok' in line for line in lines), lines
    assert (await http.get("/api/log?seek=-1", headers=ADMIN)).json()["result"] == {
        "error": "ValidatorError",
        "error_msg": "The argument '-1' must be log seek and greater or equial than 0",
    }  # fmt: skip
    # follow: what happens after the request comes as it happens
    async with http.stream("GET", "/api/log?seek=3600&follow=1", headers=ADMIN) as followed:
        chunks = followed.aiter_text()
        seen = ""
        while "--- ok" not in seen:
            seen += await asyncio.wait_for(anext(chunks), 10)
        await http.post("/api/hid/events/send_mouse_move?to_x=0&to_y=0", headers=ADMIN)
        while "move" not in seen:
            seen += await asyncio.wait_for(anext(chunks), 10)


async def test_a_new_socket_sends_everyone_the_full_states(device: DeviceRun) -> None:
    driver = fake(device)
    async with await _socket(device) as first:
        await _wait_event(first, "clients")
        driver.width, driver.height = 640, 480
        driver.framebuffer = np.zeros((480, 640, 4), dtype=np.uint8)
        assert "features" not in await _wait_event(first, "streamer")  # a partial change
        async with await _socket(device) as second:
            await _wait_event(second, "clients")
            again: dict[str, Any] = {}  # the first one gets it all again, then the count
            while "clients" not in again:
                event_type, event = await _event(first)
                again[event_type] = event
            full = again["streamer"]
            assert {"features", "limits", "params", "streamer"} <= set(full)
            assert full["streamer"]["source"]["resolution"] == {"width": 640, "height": 480}
            assert {"enabled", "online"} <= set(again["hid"])
            assert "model" in again["gpio"] and again["clients"] == {"count": 0}
            assert {"atx", "msd", "ocr", "switch", "info", "hid_keymaps"} <= set(again)


async def test_a_device_without_ocr_answers_kvmds_ocr_error(tmp_path: Path) -> None:
    agent = Agent.from_config(_config(tmp_path, capabilities=("keyboard", "mouse")))
    async with (
        running_device(agent, "fake") as run,
        httpx.AsyncClient(base_url=f"http://{run.address}", timeout=10) as http,
    ):
        ocr = await http.get("/api/streamer/snapshot?ocr=1", headers=ADMIN)
        assert ocr.status_code == 400
        unavailable = {"error": "OcrError", "error_msg": "Tesseract is not available"}
        assert ocr.content == envelope(False, unavailable)
        state = (await http.get("/api/streamer/ocr", headers=ADMIN)).json()["result"]
        assert state == {"ocr": {"enabled": False, "langs": {"default": [], "available": []}}}
