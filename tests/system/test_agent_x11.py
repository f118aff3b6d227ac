"""The whole agent as users run it: ``remotehands agent --driver x11`` in its own process on a
real Xvfb, driven over loopback HTTP, observed through real X clients."""

from __future__ import annotations

import base64
import io
import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from PIL import Image

from remotehands.agent.desktop import VirtualDesktop
from remotehands.testing.xapps import (
    launch_color_window,
    launch_dialog,
    launch_probe,
    wait_until,
)

# The agent in its own process on a real Xvfb, with real X clients: seconds a test.
pytestmark = [pytest.mark.slow, pytest.mark.x11]

PASSWORD = "s3cret-agent-pw"
REMOTEHANDS = str(Path(sys.executable).with_name("remotehands"))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@pytest.fixture(scope="module")
def agent_url(desktop: VirtualDesktop) -> Iterator[str]:
    port = _free_port()
    env = {**os.environ, **desktop.env, "REMOTEHANDS_AGENT_PASSWORD": PASSWORD}
    proc = subprocess.Popen(
        [REMOTEHANDS, "agent", "--driver", "x11", "--display", _display(desktop),
         "--listen", f"127.0.0.1:{port}"],
        env=env, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"

    def healthy() -> bool:
        assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
        try:
            return httpx.get(url + "/health", timeout=1).status_code == 200
        except httpx.HTTPError:
            return False

    wait_until(healthy, timeout=20)
    try:
        yield url
    finally:
        proc.terminate()
        assert proc.wait(10) == 0


@pytest.fixture(scope="module")
def api(agent_url: str) -> Iterator[httpx.Client]:
    token = httpx.post(agent_url + "/auth/login", json={"password": PASSWORD}).json()["token"]
    with httpx.Client(base_url=agent_url, headers={"Authorization": f"Bearer {token}"},
                      timeout=20) as client:  # fmt: skip
        yield client


def _image(payload: dict[str, Any]) -> Image.Image:
    return Image.open(io.BytesIO(base64.b64decode(payload["image"]))).convert("RGB")


def _close(rgb: object, expected: tuple[int, int, int], tol: int = 24) -> bool:
    assert isinstance(rgb, tuple), rgb  # getpixel of an RGB image: (r, g, b)
    return all(abs(a - b) <= tol for a, b in zip(rgb, expected, strict=True))


def _display(desktop: VirtualDesktop) -> str:
    assert desktop.display is not None  # set by start()
    return desktop.display


def test_agent_refuses_to_start_without_a_password(desktop: VirtualDesktop) -> None:
    env = {k: v for k, v in os.environ.items() if k != "REMOTEHANDS_AGENT_PASSWORD"}
    done = subprocess.run(
        [REMOTEHANDS, "agent", "--driver", "x11", "--display", _display(desktop), "--listen",
         f"127.0.0.1:{_free_port()}"], env=env, capture_output=True, text=True, timeout=30,
    )  # fmt: skip
    assert done.returncode == 2
    assert "REMOTEHANDS_AGENT_PASSWORD" in done.stderr and "Traceback" not in done.stderr


def test_screenshots_show_what_a_window_drew(api: httpx.Client) -> None:
    with launch_color_window("shot-target", color="#00c000", x=300, y=200, width=200,
                             height=150) as window:  # fmt: skip
        x, y, w, h = window.client_area()
        cx, cy = x + w // 2, y + h // 2
        full = api.get("/screenshot", params={"format": "png"}).json()
        assert (full["width"], full["height"]) == (1280, 800)
        assert _image(full).getpixel((cx, cy)) == (0, 192, 0)

        area: dict[str, str | int] = {
            "x": x + 10, "y": y + 10, "width": 50, "height": 40, "format": "png"
        }  # fmt: skip
        region = api.get("/screenshot/region", params=area).json()
        crop = _image(region)
        assert crop.size == (50, 40)
        assert crop.getpixel((0, 0)) == crop.getpixel((49, 39)) == (0, 192, 0)

        scaled = api.get("/screenshot", params={"scale": 0.5, "quality": 90}).json()
        half = _image(scaled)
        assert half.size == (640, 400) and scaled["native_width"] == 1280
        assert _close(half.getpixel((cx // 2, cy // 2)), (0, 192, 0))

        variants = api.post("/screenshots", json={"variants": [
            {"name": "overview", "scale_x": 0.25, "scale_y": 0.25, "format": "jpeg"},
            {"name": "zoom", "crop": {"x": x, "y": y, "width": 40, "height": 30},
             "scale_x": 2.0, "scale_y": 2.0, "format": "png"},
        ]}).json()  # fmt: skip
        assert variants["native_width"] == 1280
        zoom = variants["images"][1]
        assert (zoom["width"], zoom["height"], zoom["ok"]) == (80, 60, True)
        assert _image(zoom).getpixel((40, 30)) == (0, 192, 0)


def test_typed_text_arrives_verbatim(api: httpx.Client) -> None:
    text = "héllo ✓ Привет 日本"
    with launch_probe("type-target", x=200, y=150) as probe:
        assert api.post(f"/windows/{probe.window_id}/focus").json() == {"status": "ok"}
        probe.focus()
        assert api.post("/keyboard/type", json={"text": "ASCII ok; "}).status_code == 200
        assert api.post("/keyboard/type", json={"text": text}).status_code == 200
        wait_until(lambda: probe.text() == "ASCII ok; " + text)
        api.post("/keyboard/hotkey", json={"keys": ["ctrl", {"char": "a"}]})
        wait_until(lambda: any(e["keysym"] == "a" and e["state"] & 4 for e in probe.keys()))  # noqa: SIM118


def test_clicks_drags_and_scrolls_reach_the_window(api: httpx.Client) -> None:
    with launch_probe("pointer-target", x=250, y=150) as probe:
        x, y, _, _ = probe.client_area()
        mark = probe.mark()
        api.post("/mouse/click", json={"button": "right", "x": x + 40, "y": y + 30})
        api.post("/mouse/click", json={"button": "middle", "x": x + 50, "y": y + 60})
        probe.wait_for(lambda e: e["event"] == "button_release" and e["button"] == 2,
                       since=mark)  # fmt: skip
        presses = [(e["button"], e["root_x"], e["root_y"])
                   for e in probe.buttons(since=mark) if e["event"] == "button_press"]  # fmt: skip
        assert presses == [(3, x + 40, y + 30), (2, x + 50, y + 60)]

        mark = probe.mark()
        api.post("/mouse/drag", json={"from_x": x + 10, "from_y": y + 10, "to_x": x + 110,
                                      "to_y": y + 90, "duration_ms": 100})  # fmt: skip
        release = probe.wait_for(lambda e: e["event"] == "button_release", since=mark)
        assert (release["button"], release["root_x"], release["root_y"]) == (1, x + 110, y + 90)
        motions = [e for e in probe.events("motion", since=mark) if e["state"] & 256]
        assert len(motions) >= 3  # interpolated motion with the button held

        mark = probe.mark()
        api.post("/mouse/scroll", json={"x": x + 20, "y": y + 20, "delta_x": 0, "delta_y": 3})
        wait_until(lambda: len([e for e in probe.events("wheel", since=mark)
                                if e["direction"] == 1]) == 3)  # fmt: skip

        mark = probe.mark()
        api.post("/mouse/double-click", json={"x": x + 30, "y": y + 30})
        probe.wait_for(lambda e: e["event"] == "double_click", since=mark)


def test_clipboard_round_trip_with_another_x_client(api: httpx.Client,
                                                    desktop: VirtualDesktop) -> None:  # fmt: skip
    env = {**os.environ, **desktop.env}
    text = "clip ✓ Привет"
    assert api.post("/clipboard", json={"text": text}).json() == {"status": "ok"}
    out = subprocess.run(["xclip", "-o", "-selection", "clipboard"], env=env,
                         capture_output=True, timeout=10)  # fmt: skip
    assert out.stdout.decode() == text
    subprocess.run(["xclip", "-i", "-selection", "clipboard"], input="from xclip ü".encode(),
                   env=env, timeout=10, check=True)  # fmt: skip
    wait_until(lambda: api.get("/clipboard").json()["text"] == "from xclip ü")


def test_windows_list_and_dialog_detection(api: httpx.Client) -> None:
    with launch_dialog("Main window", "Confirm delete?", x=100, y=100) as app:
        windows = api.get("/windows").json()
        by_id = {w["id"]: w for w in windows}
        main = by_id[app.window_id]
        assert main["title"] == "Main window" and main["pid"] == app.pid
        assert main["process_name"] and main["is_dialog"] is False
        assert by_id[app.dialog_id]["is_dialog"] is True
        dialog = api.get("/windows/dialog").json()["dialog"]
        assert dialog["id"] == app.dialog_id and dialog["title"] == "Confirm delete?"
        moved = api.post(f"/windows/{app.window_id}/move", json={"bounds": {
            "x": 50, "y": 60, "width": 500, "height": 320}}).json()  # fmt: skip
        assert moved["ok"] is True and moved["id"] == str(app.window_id)
        wait_until(lambda: {"width": 500, "height": 320}.items()
                   <= {w["id"]: w for w in api.get("/windows").json()}[app.window_id]
                   ["bounds"].items())  # fmt: skip
        missing = api.post("/windows/123456789/focus")
        assert missing.status_code == 404 and missing.json()["error"] == "not_found"


def test_wait_stable_on_still_and_animated_screens(api: httpx.Client) -> None:
    params: dict[str, str | int] = {
        "wait_stable": "true", "stable_window_ms": 300, "poll_interval_ms": 50, "format": "jpeg"
    }  # fmt: skip
    with launch_color_window("animated", color="#0000ff", x=600, y=300, width=120,
                             height=90) as window:  # fmt: skip
        still = api.get("/screenshot", params=params).json()
        assert still["stable"] is True and still["timed_out"] is False

        window.animate(["#ff0000", "#00ff00", "#0000ff"], interval_ms=40)
        try:
            # A loaded machine can stall the animation for a whole stable window (the wait then
            # rightly finds the screen stable) or between the last two polls: of a few tries,
            # one must time out with the screen still changing at its last poll.
            def timed_out_moving() -> dict[str, Any] | None:
                shot: dict[str, Any] = api.get(
                    "/screenshot", params={**params, "timeout_ms": 700}
                ).json()
                unstable = shot["stable"] is False and shot["timed_out"] is True
                return shot if unstable and shot["change_ratio_last"] > 0 else None

            moving = wait_until(timed_out_moving, timeout=20)
            assert moving is not None and moving["waited_ms"] >= 600 and moving["polls"] >= 2
            x, y, w, h = window.client_area()
            ignored = api.get("/screenshot", params={
                **params, "timeout_ms": 3000,
                "ignore_region": f"{x - 5},{y - 5},{w + 10},{h + 10}"}).json()  # fmt: skip
            assert ignored["stable"] is True
            watched = api.get("/screenshot", params={
                **params, "timeout_ms": 3000, "watch_region": "0,0,300,200"}).json()  # fmt: skip
            assert watched["stable"] is True
        finally:
            window.still()


def test_input_errors_are_clear_and_the_agent_keeps_serving(api: httpx.Client) -> None:
    off = api.post("/mouse/move", json={"x": 5000, "y": 10})
    assert off.status_code == 422 and "off" in off.json()["details"]
    unknown = api.post("/keyboard/hotkey", json={"keys": ["ctrl", "bogus"]})
    assert unknown.status_code == 422 and "bogus" in unknown.json()["details"]
    huge = api.post("/keyboard/type", json={"text": "x" * 200_000})
    assert huge.status_code == 422
    assert api.get("/health").json() == {"status": "ok"}
    assert api.get("/screenshot/cursor-position").status_code == 200
