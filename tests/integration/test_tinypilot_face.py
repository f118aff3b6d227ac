"""The TinyPilot face against the reference, shape by shape, over real loopback HTTP (and, for
a client that is not on this machine, the same app called in process with a foreign client
address): the auth rules (loopback, --tinypilot-open, Origin, static keys), 400 and 500
bodies, keystroke and mouseEvent semantics on a FakeDriver that records what reached it."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from remotehands.agent.runtime import DevicePlan, plan_device
from remotehands.drivers.base import FrameArray
from remotehands.drivers.fake import FakeDriver, FakeSettings
from remotehands.errors import ConfigError, DeviceError
from remotehands.protocol.keys import Key
from remotehands.protocol.models import Bounds
from remotehands.serving import bound_address, serve_http

pytestmark = pytest.mark.anyio

PASSWORD = "tiny-face-password"
TEXT = "text/plain; charset=utf-8"


class DarkDriver(FakeDriver):
    """A device whose capture card sees nothing (a KVM whose target is off)."""

    async def grab(self, screen_id: int = 0, region: Bounds | None = None) -> FrameArray:
        raise DeviceError("no video signal: the target machine sends no picture")


@dataclass
class Served:
    url: str
    plan: DevicePlan
    driver: FakeDriver


def _plan(driver: FakeDriver, open_: bool = False) -> DevicePlan:
    return plan_device("tiny", driver, listen="127.0.0.1:0", faces=["native", "tinypilot"],
                       password=PASSWORD, password_file=None, pam=False,
                       face_settings={"tinypilot": {"open": open_}})  # fmt: skip


async def _serve(driver: FakeDriver) -> AsyncIterator[Served]:
    plan = _plan(driver)
    async with driver, serve_http(plan.app, "127.0.0.1:0") as server:
        yield Served(f"http://{bound_address(server)}", plan, driver)


@pytest.fixture
async def served() -> AsyncIterator[Served]:
    async for one in _serve(FakeDriver(321, 201)):
        yield one


async def _token(http: httpx.AsyncClient) -> str:
    response = await http.post("/api/v1/auth")
    assert response.status_code == 200
    token: str = response.json()["token"]
    return token


def _keys(driver: FakeDriver) -> list[tuple[str, bool]]:
    found = []
    for call in driver.calls:
        if call.name == "key":
            key: Key = call.args["key"]
            found.append((str(key), bool(call.args["down"])))
    return found


async def test_auth_hands_tokens_to_loopback_clients_and_refuses_origin(served: Served) -> None:
    async with httpx.AsyncClient(base_url=served.url, timeout=10) as http:
        response = await http.post("/api/v1/auth")
        assert response.status_code == 200
        assert response.headers["content-type"] == "application/json"
        token = response.json()["token"]
        assert list(response.json()) == ["token"] and len(token) == 36 and token.count("-") == 4
        assert response.content == b'{"token":"' + token.encode() + b'"}\n'
        # many tokens, each valid: a new one does not end the old ones
        other = await _token(http)
        for each in (token, other):
            shot = await http.get("/api/v1/screenshot", headers={"Authorization": f"Bearer {each}"})
            assert shot.status_code == 200
        # a request with an Origin header gets no token, whoever asks
        refused = await http.post("/api/v1/auth", headers={"Origin": "http://evil.example"})
        assert refused.status_code == 403 and refused.headers["content-type"] == TEXT
        assert "Origin" in refused.text
        # a loopback address behind a proxy is not a loopback client
        relayed = await http.post("/api/v1/auth", headers={"X-Forwarded-For": "198.51.100.4"})
        assert relayed.status_code == 401 and relayed.headers["content-type"] == TEXT
        # no credentials: 401; wrong ones: 403; both in plain text
        missing = await http.get("/api/v1/screenshot")
        assert missing.status_code == 401 and missing.headers["content-type"] == TEXT
        wrong = await http.get("/api/v1/screenshot", headers={"Authorization": "Bearer nope"})
        assert wrong.status_code == 403 and wrong.text == "Invalid API token or key"


async def test_remote_clients_need_a_key_unless_the_operator_opened_the_face() -> None:
    driver = FakeDriver(64, 48)
    for open_, status in ((False, 401), (True, 200)):
        plan = _plan(driver, open_)
        transport = httpx.ASGITransport(app=plan.app, client=("203.0.113.9", 40000))
        async with httpx.AsyncClient(transport=transport, base_url="http://tiny") as http:
            response = await http.post("/api/v1/auth")
            assert response.status_code == status, response.text
            if not open_:
                assert "--tinypilot-open" in response.text
                # a static key (the agent's password) earns a token from afar
                key = {"Authorization": f"Bearer {PASSWORD}"}
                keyed = await http.post("/api/v1/auth", headers=key)
                assert keyed.status_code == 200 and "token" in keyed.json()
                # and works as a Bearer key by itself, as does a native face's token
                shot = await http.get("/api/v1/screenshot",
                                      headers={"Authorization": f"Bearer {PASSWORD}"})  # fmt: skip
                assert shot.status_code == 200 and shot.content[:2] == b"\xff\xd8"
                login = await http.post("/auth/login", json={"password": PASSWORD})
                native = login.json()["token"]
                shot = await http.get("/api/v1/screenshot",
                                      headers={"Authorization": f"Bearer {native}"})  # fmt: skip
                assert shot.status_code == 200
            # Origin is refused even when open
            origin = await http.post("/api/v1/auth", headers={"Origin": "https://x.example"})
            assert origin.status_code == 403


async def test_screenshot_is_a_jpeg_of_the_screen_or_204_without_signal(served: Served) -> None:
    served.driver.fill((0, 0, 255))
    async with httpx.AsyncClient(base_url=served.url, timeout=10) as http:
        http.headers["Authorization"] = f"Bearer {await _token(http)}"
        shot = await http.get("/api/v1/screenshot")
        assert shot.status_code == 200 and shot.headers["content-type"] == "image/jpeg"
        assert int(shot.headers["content-length"]) == len(shot.content)
        import io

        from PIL import Image

        image = Image.open(io.BytesIO(shot.content))
        assert image.size == (321, 201)
        red, green, blue = image.convert("RGB").getpixel((160, 100))  # type: ignore[misc]
        assert red > 200 and green < 50 and blue < 50
    async for dark in _serve(DarkDriver(64, 48)):
        async with httpx.AsyncClient(base_url=dark.url, timeout=10) as http:
            http.headers["Authorization"] = f"Bearer {await _token(http)}"
            blank = await http.get("/api/v1/screenshot")
            assert blank.status_code == 204 and blank.content == b""


async def test_keystroke_presses_with_modifiers_and_releases_everything(served: Served) -> None:
    driver = served.driver
    async with httpx.AsyncClient(base_url=served.url, timeout=10) as http:
        http.headers["Authorization"] = f"Bearer {await _token(http)}"

        async def stroke(body: dict[str, Any]) -> httpx.Response:
            driver.calls.clear()
            return await http.post("/api/v1/keystroke", json=body)

        ok = await stroke({"code": "KeyH", "shiftLeft": True})
        assert ok.status_code == 200 and ok.content == b""
        assert _keys(driver) == [("ShiftLeft", True), ("KeyH", True), ("KeyH", False),
                                 ("ShiftLeft", False)]  # fmt: skip
        await stroke({"code": "Delete", "ctrlLeft": True, "altRight": True})
        assert _keys(driver) == [("ControlLeft", True), ("AltRight", True), ("Delete", True),
                                 ("Delete", False), ("AltRight", False),
                                 ("ControlLeft", False)]  # fmt: skip
        # a lone modifier stays held until the next keystroke, which releases it
        await stroke({"code": "ShiftLeft", "shiftLeft": True})
        assert _keys(driver) == [("ShiftLeft", True)]
        assert [str(k) for k in driver.keys_down] == ["ShiftLeft"]
        await stroke({"code": "KeyA"})
        assert _keys(driver) == [("ShiftLeft", False), ("KeyA", True), ("KeyA", False)]
        assert driver.keys_down == []
        # ... unless it is flagged there too: then it is released after the key
        await stroke({"code": "ControlLeft", "ctrlLeft": True})
        await stroke({"code": "KeyC", "ctrlLeft": True})
        assert _keys(driver) == [("KeyC", True), ("KeyC", False), ("ControlLeft", False)]
        # Firefox's OSLeft is Meta; a modifier code with no flag is a tap of that key
        await stroke({"code": "OSLeft"})
        assert _keys(driver) == [("MetaLeft", True), ("MetaLeft", False)]

        # malformed requests: 400 with TinyPilot's words, in plain text
        for body, message in (
            ({}, "Keystroke request is missing required field: code"),
            ({"code": "KeyA", "shiftLeft": "yes"}, "Modifier keys must be boolean values: yes"),
            ({"code": 5}, "Key code must be a string: 5"),
            ({"code": "K" * 31}, f"Key code is too long: {'K' * 31}"),
            ({"code": "NoSuchKey"}, "Unrecognized key code: NoSuchKey"),
            ([1, 2], "Keystroke parameter is invalid, expecting a dictionary data type"),
        ):
            bad = await stroke(body)  # type: ignore[arg-type]
            assert (bad.status_code, bad.headers["content-type"], bad.text) == (400, TEXT, message)
            assert driver.calls == []
        form = {"Content-Type": "application/x-www-form-urlencoded"}
        not_json = await http.post("/api/v1/keystroke", content=b"code=KeyA", headers=form)
        assert not_json.status_code == 400


async def test_keystroke_that_cannot_be_forwarded_is_a_500_with_the_reason() -> None:
    blind = FakeDriver(
        settings=FakeSettings(width=64, height=48, capabilities=frozenset({"screen"}))
    )
    async for served in _serve(blind):
        async with httpx.AsyncClient(base_url=served.url, timeout=10) as http:
            http.headers["Authorization"] = f"Bearer {await _token(http)}"
            failed = await http.post("/api/v1/keystroke", json={"code": "KeyA"})
            assert failed.status_code == 500 and failed.headers["content-type"] == TEXT
            assert failed.text.startswith("Failed to forward keystroke: ")
            assert "no keyboard capability" in failed.text
            mouse = await http.post("/api/v1/mouseEvent", json={
                "buttons": 0, "relativeX": 0.5, "relativeY": 0.5, "verticalWheelDelta": 0,
                "horizontalWheelDelta": 0})  # fmt: skip
            assert mouse.status_code == 500
            assert mouse.text.startswith("Failed to forward mouse event: ")


async def test_mouse_event_moves_clicks_and_scrolls_in_relative_coordinates(
    served: Served,
) -> None:
    driver = served.driver  # 321 x 201: 1.0 is pixel 320 and 200
    async with httpx.AsyncClient(base_url=served.url, timeout=10) as http:
        http.headers["Authorization"] = f"Bearer {await _token(http)}"

        async def event(buttons: int, x: float, y: float, v: int = 0, h: int = 0) -> None:
            response = await http.post("/api/v1/mouseEvent", json={
                "buttons": buttons, "relativeX": x, "relativeY": y, "verticalWheelDelta": v,
                "horizontalWheelDelta": h})  # fmt: skip
            assert response.status_code == 200 and response.content == b""

        for x, y, pixel in ((0.0, 0.0, (0, 0)), (1.0, 0.0, (320, 0)), (1.0, 1.0, (320, 200)),
                            (0, 1, (0, 200)), (0.5, 0.5, (160, 100))):  # fmt: skip
            await event(0, x, y)
            assert driver.pointer == pixel
        driver.calls.clear()
        await event(1, 0.5, 0.5)  # left down
        await event(0, 0.5, 0.5)  # left up: a click
        await event(2, 0.25, 0.5)  # right down elsewhere
        await event(0, 0.25, 0.5)
        pressed = [(c.args["button"], c.args["down"]) for c in driver.calls if c.name == "button"]
        assert pressed == [("left", True), ("left", False), ("right", True), ("right", False)]
        assert driver.pointer == (80, 100)
        driver.calls.clear()
        await event(0, 0.25, 0.5, v=-1)  # JS -1: up
        await event(0, 0.25, 0.5, h=1)
        wheel = [(c.args["delta_x"], c.args["delta_y"]) for c in driver.calls if c.name == "scroll"]
        assert wheel == [(0, -1), (1, 0)]

        for body, message in (
            ({"buttons": 0}, "Missing required field: relativeX"),
            ({"buttons": 32, "relativeX": 0, "relativeY": 0, "verticalWheelDelta": 0,
              "horizontalWheelDelta": 0}, "Button state must be <= 0x1f: 32"),
            ({"buttons": 0, "relativeX": 1.5, "relativeY": 0, "verticalWheelDelta": 0,
              "horizontalWheelDelta": 0},
             "Relative position must be a float between 0.0 and 1.0: 1.5"),
            ({"buttons": 0, "relativeX": 0, "relativeY": 0, "verticalWheelDelta": 2,
              "horizontalWheelDelta": 0}, "Wheel value must be -1, 0, or 1: 2"),
            ({"buttons": 0, "relativeX": 0, "relativeY": 0, "verticalWheelDelta": 0,
              "horizontalWheelDelta": 0.5}, "Wheel value must be a int: 0.5"),
            ("x", "Message is invalid, expecting a JSON dictionary"),
        ):  # fmt: skip
            bad = await http.post("/api/v1/mouseEvent", json=body)
            assert (bad.status_code, bad.headers["content-type"], bad.text) == (400, TEXT, message)


async def test_paste_types_text_the_layout_has_and_refuses_the_rest(served: Served) -> None:
    async with httpx.AsyncClient(base_url=served.url, timeout=10) as http:
        http.headers["Authorization"] = f"Bearer {await _token(http)}"
        ok = await http.post("/api/v1/paste", json={"text": "Grüße\r\n", "language": "de-DE"})
        assert ok.status_code == 200
        assert served.driver.typed == ["Grüße\n"]
        refused = await http.post(
            "/api/v1/paste", json={"text": "a\u2013b€\u2013", "language": "en-US"}
        )
        assert refused.status_code == 400
        assert refused.text == "These characters are not supported: '\u2013', '€'"
        # an unknown language is en-US, as TinyPilot does
        assert (await http.post("/api/v1/paste", json={"text": "£", "language": "fr-FR"})
                ).status_code == 400  # fmt: skip
        missing = await http.post("/api/v1/paste", json={"text": "x"})
        assert missing.status_code == 400 and missing.text == "Missing required field: language"
        assert served.driver.typed == ["Grüße\n"]


async def test_unknown_routes_answer_flask_pages_and_the_face_checks_its_settings(
    served: Served,
) -> None:
    async with httpx.AsyncClient(base_url=served.url, timeout=10) as http:
        missing = await http.get("/api/v1/nothing")
        assert missing.status_code == 404
        assert missing.headers["content-type"] == "text/html; charset=utf-8"
        assert "<title>404 Not Found</title>" in missing.text
        wrong = await http.get("/api/v1/auth")
        assert wrong.status_code == 405 and "POST" in wrong.headers["allow"]
        assert "<title>405 Method Not Allowed</title>" in wrong.text
        # the native face still answers its own shapes beside it
        assert (await http.get("/health")).json() == {"status": "ok"}
    with pytest.raises(ConfigError, match="tinypilot face"):
        plan_device("x", FakeDriver(8, 8), listen="127.0.0.1:0", faces=["native", "tinypilot"],
                    password=PASSWORD, password_file=None, pam=False,
                    face_settings={"tinypilot": {"opne": True}})  # fmt: skip
