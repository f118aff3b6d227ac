"""The live console in a real Chromium against the real server, x11 agent on Xvfb and FakeDriver
device of the web harness: the screen on the canvas (both codecs, compared with the X screen and
read by OCR), keyboard and mouse reaching X clients, the key menu, paste, the read-only view of
a viewer, the controls of declared capabilities, media upload, a device going offline."""

from __future__ import annotations

import base64
import io
import re
from collections.abc import Iterator
from typing import Any

import mss
import numpy as np
import numpy.typing as npt
import pytest
from PIL import Image
from playwright.sync_api import Page, expect

from remotehands.agent.ocrengine import engine
from remotehands.testing.xapps import Probe, launch_color_window, launch_probe, wait_until
from tests.web.conftest import ARTIFACTS, FAKE_DEVICE, X11_DEVICE, PageFactory, PageWatch, WebFleet

Pixels = npt.NDArray[np.uint8]

PAINTED = "() => window.__console && window.__console.screen.stats.painted > {n}"


def open_console(
    page_as: PageFactory, web: WebFleet, role: str = "operator", *, device: str = X11_DEVICE,
    codec: str | None = None,
) -> Page:  # fmt: skip
    """The console of ``device`` as ``role``, once its first frame is painted."""
    path = f"/console/{web.devices[device]}" + (f"?codec={codec}" if codec else "")
    page = page_as(role, path=path)
    page.wait_for_function(PAINTED.format(n=0))
    return page


def canvas_pixels(page: Page) -> Pixels:
    """What the console's canvas shows, RGB, at the device's own size."""
    url = page.evaluate("() => document.getElementById('screen').toDataURL('image/png')")
    data = base64.b64decode(url.split(",", 1)[1])
    return np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))


def x_screen() -> Pixels:
    """The X screen itself, RGB."""
    with mss.MSS() as grabber:
        shot = grabber.grab(grabber.monitors[1])
    return np.asarray(shot)[:, :, 2::-1].copy()


def painted(page: Page) -> int:
    count: int = page.evaluate("() => window.__console.screen.stats.painted")
    return count


def canvas_text(page: Page, box: tuple[int, int, int, int]) -> str:
    """OCR of the canvas inside ``box`` (x, y, width, height in device pixels)."""
    x, y, w, h = box
    rgb = canvas_pixels(page)[y : y + h, x : x + w]
    bgrx = np.zeros((h, w, 4), np.uint8)
    bgrx[:, :, :3] = rgb[:, :, ::-1]
    return engine().read(bgrx).text


@pytest.fixture
def probe(web: WebFleet) -> Iterator[Probe]:
    """An input probe window on the x11 device's desktop, focused."""
    with launch_probe("console-probe", x=300, y=200, width=420, height=260) as window:
        window.focus()
        window.wait_for("focus_in")
        yield window


def _click_probe(page: Page, window: Probe) -> None:
    """Click the middle of the probe through the canvas, scaled as the page shows it."""
    cx, cy = window.center()
    box = page.locator("#screen").bounding_box()
    assert box is not None
    size = page.evaluate("() => [screen_el().width, screen_el().height]".replace(
        "screen_el()", "document.getElementById('screen')"))  # fmt: skip
    page.mouse.click(box["x"] + cx * box["width"] / size[0],
                     box["y"] + cy * box["height"] / size[1])  # fmt: skip


# -- the screen ----------------------------------------------------------------------------------


@pytest.mark.parametrize("codec", ["h264", "jpeg-rect"])
def test_the_screen_on_the_canvas_is_the_x_screen(
    page_as: PageFactory, web: WebFleet, codec: str
) -> None:
    page = open_console(page_as, web, codec=codec)
    assert page.evaluate("() => window.__console.screen.stats.codec") == codec
    expected = x_screen()

    def close_enough() -> bool:
        shown = canvas_pixels(page)
        if shown.shape != expected.shape:
            return False
        return float(np.abs(shown.astype(np.int16) - expected).mean()) < 4.0

    wait_until(close_enough, timeout=10)
    assert expected.std() > 10  # a real desktop (a terminal and its title bar), not a blank
    expect(page.locator("#overlay")).to_be_hidden()
    expect(page.locator("#state")).to_have_text("online")


def test_a_moving_screen_comes_at_half_size_and_settles_sharp_at_full_size(
    page_as: PageFactory, web: WebFleet
) -> None:
    page = open_console(page_as, web, codec="h264")
    picture = "() => window.__console.screen.stats.pictureWidth === {w}"
    bitmap = "() => ['width', 'height'].map((k) => document.getElementById('screen')[k])"
    device = [x_screen().shape[1], x_screen().shape[0]]
    page.wait_for_function(picture.format(w=device[0]))
    shown = page.locator("#screen").bounding_box()
    with launch_color_window("console-motion", "#203040", x=0, y=0, width=1000,
                             height=600) as window:  # fmt: skip
        window.animate(["#c03020", "#20c040", "#2040c0"], interval_ms=30)
        # Most of the screen changes at every frame: the agent sends half-size pictures; the
        # canvas's bitmap takes their size and is shown where and as big as the full one was.
        page.wait_for_function(picture.format(w=device[0] // 2), timeout=15_000)
        assert page.evaluate(bitmap) == [device[0] // 2, device[1] // 2]
        assert page.locator("#screen").bounding_box() == pytest.approx(shown, abs=1.5)
        # The device's own size still counts for input and the screenshot.
        size = page.evaluate(
            "() => [window.__console.screen.width, window.__console.screen.height]"
        )
        assert size == device
        window.still()
        # Still again: a full-size key frame, and the canvas shows the screen as it is.
        page.wait_for_function(picture.format(w=device[0]), timeout=15_000)
        assert page.evaluate(bitmap) == device
        assert page.locator("#screen").bounding_box() == pytest.approx(shown, abs=1.5)

        def close_enough() -> bool:
            shown, screen = canvas_pixels(page), x_screen()
            return bool(float(np.abs(shown.astype(np.int16) - screen).mean()) < 4.0)

        # Colours too: the stream says its colour matrix, which the browser follows.
        wait_until(close_enough, timeout=10)
    assert page.evaluate("() => window.__console.screen.stats.errors") == 0


def test_without_videodecoder_the_console_falls_back_to_jpeg_rectangles(
    page_as: PageFactory, web: WebFleet
) -> None:
    page: Page = page_as("operator")
    page.add_init_script("delete window.VideoDecoder")
    page.goto(f"/console/{web.devices[X11_DEVICE]}")
    page.wait_for_function(PAINTED.format(n=0))
    assert page.evaluate("() => window.__console.screen.stats.codec") == "jpeg-rect"


def test_type_a_command_and_see_its_output(page_as: PageFactory, web: WebFleet) -> None:
    page = open_console(page_as, web)
    terminal = [w for w in web.http("operator").get(
        f"/v1/devices/{web.devices[X11_DEVICE]}/windows").json()
        if w["title"] == "terminal"]  # fmt: skip
    assert terminal, "the desktop's xterm is missing"
    bounds = terminal[0]["bounds"]
    box = page.locator("#screen").bounding_box()
    assert box is not None
    width = page.evaluate("() => document.getElementById('screen').width")
    scale = box["width"] / width
    page.mouse.click(box["x"] + (bounds["x"] + 40) * scale, box["y"] + (bounds["y"] + 40) * scale)
    # Keys go by their code, as a keyboard's would: Playwright's type() presses no Shift for
    # "$" or "(", so the command has none.
    page.keyboard.type("basename /tmp/console42.out .out")
    page.keyboard.press("Enter")
    region = (bounds["x"], bounds["y"], min(bounds["width"], 700), bounds["height"])

    def output_shown() -> bool:
        return "console42" in [line.strip() for line in canvas_text(page, region).splitlines()]

    wait_until(output_shown, timeout=20, interval=0.5)


# -- input ---------------------------------------------------------------------------------------


def test_a_click_on_the_canvas_lands_where_it_was_aimed(
    page_as: PageFactory, web: WebFleet, probe: Probe
) -> None:
    page = open_console(page_as, web)
    since = probe.mark()
    _click_probe(page, probe)
    press = probe.wait_for("button_press", since=since)
    cx, cy = probe.center()
    assert press["button"] == 1
    # The canvas is scaled down to the page: one page pixel is more than one device pixel.
    assert abs(press["root_x"] - cx) <= 3 and abs(press["root_y"] - cy) <= 3


def test_keys_and_paste_reach_the_device(page_as: PageFactory, web: WebFleet, probe: Probe) -> None:
    page = open_console(page_as, web)
    _click_probe(page, probe)
    probe.clear()
    page.keyboard.type("ab")
    wait_until(lambda: probe.text() == "ab", timeout=10)
    page.get_by_role("button", name="Paste as keys").click()
    page.get_by_label("Text to type on the device").fill("pasted text")
    page.get_by_role("button", name="Type it").click()
    wait_until(lambda: probe.text() == "abpasted text", timeout=10)


def test_ctrl_alt_del_from_the_menu_reaches_the_device_as_those_keys(
    page_as: PageFactory, web: WebFleet, probe: Probe
) -> None:
    page = open_console(page_as, web)
    since = probe.mark()
    page.get_by_role("button", name="Keys", exact=True).click()
    page.get_by_role("menuitem", name="Ctrl+Alt+Del").click()
    probe.wait_for(lambda e: e.get("event") == "key_release" and e["keysym"] == "Delete",
                   since=since)  # fmt: skip
    pressed = [e["keysym"] for e in probe.events("key_press", since=since)]
    assert pressed[:3] == ["Control_L", "Alt_L", "Delete"]


def test_a_viewer_sees_the_screen_but_its_input_is_refused(
    page_as: PageFactory, web: WebFleet, probe: Probe, web_watch: PageWatch
) -> None:
    viewer = open_console(page_as, web, "viewer")
    expect(viewer.locator("#readonly")).to_be_visible()
    for control in ("#keys-menu", "#paste-button", "#power-button", "#windows-button"):
        expect(viewer.locator(control)).to_be_hidden()
    since = probe.mark()
    _click_probe(viewer, probe)
    viewer.keyboard.type("x")
    # The page sends nothing; and the server refuses a viewer that tries anyway.
    refused = viewer.evaluate("""async (id) => {
        const ws = new WebSocket(`ws://${location.host}/v1/devices/${id}/ws`);
        await new Promise((ok) => ws.onopen = ok);
        const reply = new Promise((ok) => ws.onmessage = (e) => ok(JSON.parse(e.data)));
        ws.send(JSON.stringify({id: 1, action: "keyboard.type", params: {text: "x"}}));
        const answer = await reply;
        ws.close();
        return answer;
    }""", web.devices[X11_DEVICE])  # fmt: skip
    assert refused["error"] == "forbidden"
    # Several consoles on one device: an operator's input works beside the viewer's watch.
    operator = open_console(page_as, web, "operator")
    _click_probe(operator, probe)
    probe.wait_for("button_press", since=since)
    assert not [e for e in probe.events("key_press", since=since) if e["keysym"] == "x"]
    assert painted(viewer) > 0


# -- capabilities --------------------------------------------------------------------------------


def test_power_and_media_controls_only_for_a_device_that_declares_them(
    page_as: PageFactory, web: WebFleet
) -> None:
    buttons = {"power": "#power-button", "media": "#media-button", "audio": "#audio-button",
               "windows": "#windows-button", "clipboard": "#clipboard-button"}  # fmt: skip
    for name in (X11_DEVICE, FAKE_DEVICE):
        declared = set(web.http("operator").get(f"/v1/devices/{web.devices[name]}").json()[
            "capabilities"])  # fmt: skip
        page = open_console(page_as, web, device=name)
        for capability, button in buttons.items():
            shown = expect(page.locator(button))
            if capability in declared:
                shown.to_be_visible()
            else:
                shown.to_be_hidden()
        page.close()
    # The x11 desktop has no virtual media; the FakeDriver device declares power and media.
    assert "media" not in set(web.device(X11_DEVICE)["capabilities"])  # type: ignore[index]
    fake = open_console(page_as, web, device=FAKE_DEVICE)
    expect(fake.locator("#media-button")).to_be_visible()

    fake.locator("#power-button").click()
    expect(fake.locator("#power-state")).to_have_text("Power: on")
    fake.locator("[data-power=off]").click()
    fake.get_by_role("button", name="Cancel").click()  # the confirmation guards it
    expect(fake.locator("#power-state")).to_have_text("Power: on")
    fake.locator("[data-power=off]").click()
    fake.get_by_role("button", name="Confirm").click()
    expect(fake.locator("#power-state")).to_contain_text("Power: off")


def test_media_upload_shows_progress_then_mounts(page_as: PageFactory, web: WebFleet) -> None:
    page = open_console(page_as, web, device=FAKE_DEVICE)
    page.locator("#media-button").click()
    expect(page.locator("#media-drive")).to_have_text("No image mounted")
    image = {"name": "rescue.iso", "mimeType": "application/octet-stream",
             "buffer": bytes(range(256)) * 12_000}  # fmt: skip
    page.locator("#media-file").set_input_files(image)  # type: ignore[arg-type]
    page.locator("#media-upload").click()
    expect(page.locator("#media-status")).to_have_text("mounted rescue.iso", timeout=20_000)
    expect(page.locator("#media-drive")).to_have_text("Mounted: rescue.iso")
    assert page.locator("#media-progress").get_attribute("value") == "100"
    state: dict[str, Any] = web.http("operator").get(
        f"/v1/devices/{web.devices[FAKE_DEVICE]}/media").json()  # fmt: skip
    assert state["drive"]["image"] == "rescue.iso" and state["drive"]["connected"]


# -- a device that goes away ----------------------------------------------------------------------


def _enrollment(web: WebFleet, name: str) -> str:
    answer = web.http("owner").post("/v1/devices/enrollment", json={"suggested_name": name})
    assert answer.status_code in (200, 201), answer.text
    token: str = answer.json()["token"]
    return token


def test_a_device_going_offline_shows_it_and_the_console_resumes(
    page_as: PageFactory, web: WebFleet, web_watch: PageWatch
) -> None:
    # The screen socket refused while the device is away: Chromium logs that as an error.
    web_watch.allow("WebSocket connection to .* failed")
    web_watch.allow("status of 503")
    name = "fake-comeback"
    agent = web.agent_process(_enrollment(web, name), name)
    page: Page | None = None
    try:
        wait_until(lambda: (web.device(name) or {}).get("status") == "online", timeout=20)
        device_id = web.device(name)["id"]  # type: ignore[index]
        web.devices[name] = device_id
        page = open_console(page_as, web, device=name)
        agent.kill()
        expect(page.locator("#overlay")).to_contain_text("offline", timeout=15_000)
        expect(page.locator("#state")).to_have_text("offline")
        before = painted(page)
        agent = web.agent_process(_enrollment(web, name), name)
        expect(page.locator("#overlay")).to_be_hidden(timeout=25_000)
        expect(page.locator("#state")).to_have_text("online")
        page.wait_for_function(PAINTED.format(n=before))
    finally:
        agent.kill()
        web.devices.pop(name, None)
        if page is not None:
            ARTIFACTS.mkdir(parents=True, exist_ok=True)
            page.screenshot(path=str(ARTIFACTS / "console-device-back.png"))
            page.close()  # before the device goes: its console would ask for it
        left = web.device(name)
        if left is not None:  # the other tests' fleet is as it was
            web.http("owner").delete(f"/v1/devices/{left['id']}")


# -- more of the console -------------------------------------------------------------------------


def _streams(web: WebFleet, name: str) -> int:
    link = web.services.hub.get(web.devices[name])
    return 0 if link is None else len(link.watches.streams)


def test_frames_flow_only_while_the_page_is_visible(page_as: PageFactory, web: WebFleet) -> None:
    page = open_console(page_as, web, device=FAKE_DEVICE)
    wait_until(lambda: _streams(web, FAKE_DEVICE) == 1, timeout=10)
    set_hidden = """(hidden) => {
        Object.defineProperty(document, "hidden", {configurable: true, get: () => hidden});
        document.dispatchEvent(new Event("visibilitychange"));
    }"""
    page.evaluate(set_hidden, True)
    wait_until(lambda: _streams(web, FAKE_DEVICE) == 0, timeout=10)
    before = page.evaluate("() => window.__console.screen.stats.frames")
    page.evaluate(set_hidden, False)
    wait_until(lambda: _streams(web, FAKE_DEVICE) == 1, timeout=10)
    page.wait_for_function(f"() => window.__console.screen.stats.frames > {before}")


def test_the_window_list_focuses_a_window(
    page_as: PageFactory, web: WebFleet, probe: Probe
) -> None:
    page = open_console(page_as, web)
    page.locator("#windows-button").click()
    page.locator("#windows-list").get_by_role("button", name="terminal").click()
    focused = f"/v1/devices/{web.devices[X11_DEVICE]}/windows/focused"
    wait_until(lambda: (web.http("operator").get(focused).json() or {}).get("title")
               == "terminal", timeout=10)  # fmt: skip
    expect(page.locator("#panel")).to_be_hidden()


def test_the_clipboard_is_read_and_written(page_as: PageFactory, web: WebFleet) -> None:
    device = f"/v1/devices/{web.devices[X11_DEVICE]}"
    web.http("operator").post(f"{device}/clipboard", json={"text": "from the device"})
    page = open_console(page_as, web)
    page.locator("#clipboard-button").click()
    expect(page.locator("#clipboard-text")).to_have_value("from the device")
    page.locator("#clipboard-text").fill("from the browser")
    page.locator("#clipboard-write").click()
    wait_until(lambda: web.http("operator").get(f"{device}/clipboard").json()["text"]
               == "from the browser", timeout=10)  # fmt: skip


def test_the_audio_volume_slider_sets_the_volume(page_as: PageFactory, web: WebFleet) -> None:
    page = open_console(page_as, web, device=FAKE_DEVICE)
    page.locator("#audio-button").click()
    page.locator("#audio-volume").fill("30")
    expect(page.locator("#audio-value")).to_have_text("30 %")
    status = web.http("operator").get(f"/v1/devices/{web.devices[FAKE_DEVICE]}/audio").json()
    assert next(d for d in status["devices"] if d["default"])["volume"] == 30


def test_a_screenshot_downloads_what_the_screen_shows(page_as: PageFactory, web: WebFleet) -> None:
    page = open_console(page_as, web)
    with page.expect_download() as download:
        page.locator("#screenshot-button").click()
    path = download.value.path()
    assert download.value.suggested_filename.startswith(X11_DEVICE)
    image = Image.open(path)
    assert image.format == "PNG" and image.size == x_screen().shape[1::-1]


def test_the_keyboard_capture_is_left_with_alt_shift_f12(
    page_as: PageFactory, web: WebFleet, probe: Probe
) -> None:
    page = open_console(page_as, web)
    _click_probe(page, probe)
    expect(page.locator("#screen")).to_be_focused()
    page.keyboard.down("Shift")  # held on the device...
    page.keyboard.press("Alt+Shift+F12")
    expect(page.locator("#screen")).not_to_be_focused()
    # ...and released when the capture ends: no key stays down on the device.
    probe.wait_for(lambda e: e.get("event") == "key_release" and e["keysym"] == "Shift_L")
    page.keyboard.up("Shift")
    page.keyboard.press("Tab")  # the page's own keyboard use is back
    expect(page.locator("#screen")).not_to_be_focused()


def test_wheel_and_drag_reach_the_device(page_as: PageFactory, web: WebFleet, probe: Probe) -> None:
    page = open_console(page_as, web)
    _click_probe(page, probe)
    since = probe.mark()
    page.mouse.wheel(0, 300)  # three notches down
    wait_until(lambda: len(probe.events("wheel", since=since)) >= 3, timeout=10)
    assert {e["direction"] for e in probe.events("wheel", since=since)} == {1}

    left, top = probe.client_area()[:2]
    box = page.locator("#screen").bounding_box()
    assert box is not None
    scale = box["width"] / page.evaluate("() => document.getElementById('screen').width")

    def at(x: int, y: int) -> tuple[float, float]:
        return box["x"] + x * scale, box["y"] + y * scale

    since = probe.mark()
    page.mouse.move(*at(left + 40, top + 40))
    page.mouse.down()
    page.mouse.move(*at(left + 200, top + 120), steps=8)
    page.mouse.up()
    release = probe.wait_for("button_release", since=since)
    press = probe.events("button_press", since=since)[0]
    assert abs(press["root_x"] - (left + 40)) <= 3 and abs(press["root_y"] - (top + 40)) <= 3
    assert abs(release["root_x"] - (left + 200)) <= 3
    assert abs(release["root_y"] - (top + 120)) <= 3
    assert probe.events("motion", since=since)  # it moved with the button held


def test_an_upload_that_fails_says_why_and_mounts_nothing(
    page_as: PageFactory, web: WebFleet, web_watch: PageWatch
) -> None:
    web_watch.allow("status of 422")  # the browser logs the refused request itself
    page = open_console(page_as, web, device=FAKE_DEVICE)
    page.locator("#media-button").click()
    drive = page.locator("#media-drive")
    expect(drive).to_contain_text(re.compile("mounted", re.IGNORECASE))
    before = drive.text_content()
    image = {"name": ".hidden.iso", "mimeType": "application/octet-stream", "buffer": b"x" * 4096}
    page.locator("#media-file").set_input_files(image)  # type: ignore[arg-type]
    page.locator("#media-upload").click()
    expect(page.get_by_role("alert")).to_contain_text("upload failed")
    expect(page.get_by_role("alert")).to_contain_text("not an image name")
    expect(drive).to_have_text(before or "")
    state = web.http("operator").get(f"/v1/devices/{web.devices[FAKE_DEVICE]}/media").json()
    assert state["drive"]["image"] != ".hidden.iso"
    assert ".hidden.iso" not in [i["name"] for i in state["images"]]
