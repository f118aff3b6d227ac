"""The x11 driver against a real X server (Xvfb), real windows and real input."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import numpy as np
import psutil
import pytest
from Xlib import X
from Xlib.display import Display

from remotehands.agent.desktop import VirtualDesktop
from remotehands.drivers.base import (
    Apps,
    Audio,
    Clipboard,
    Keyboard,
    Mouse,
    Power,
    Screen,
    Windows,
)
from remotehands.drivers.x11 import X11Driver
from remotehands.errors import ConfigError, NotFoundError, ValidationError
from remotehands.protocol.keys import Key
from remotehands.protocol.models import Bounds, Button, ScreenInfo, WindowInfo
from remotehands.testing.xapps import (
    Event,
    Probe,
    eventually,
    launch_color_window,
    launch_dialog,
    launch_probe,
)

pytestmark = [pytest.mark.anyio, pytest.mark.x11]


@pytest.fixture
async def driver(desktop: VirtualDesktop) -> AsyncIterator[X11Driver]:
    x11 = X11Driver()
    await x11.start()
    try:
        yield x11
    finally:
        await x11.close()


@pytest.fixture
def peer(desktop: VirtualDesktop) -> Iterator[Display]:
    """An independent X connection, to check what the server saw."""
    display = Display(desktop.display)
    try:
        yield display
    finally:
        display.close()


@pytest.fixture
async def probe(driver: X11Driver, request: pytest.FixtureRequest) -> AsyncIterator[Probe]:
    """A focused probe window."""
    with launch_probe(f"probe {request.node.name}", x=300, y=200) as window:
        await driver.focus_window(window.window_id)
        await window.wait_for_async("focus_in")
        yield window


def _keymap(display: Display) -> list[tuple[int, ...]]:
    first = display.display.info.min_keycode
    count = display.display.info.max_keycode - first + 1
    return [tuple(row) for row in display.get_keyboard_mapping(first, count)]


def _spare_keycodes(display: Display) -> list[int]:
    first = display.display.info.min_keycode
    return [first + i for i, row in enumerate(_keymap(display)) if not any(row)]


def _keys_down(display: Display) -> set[int]:
    bits = display.query_keymap()
    return {code for code in range(256) if bits[code // 8] & (1 << (code % 8))}


def _key(kind: str, keysym: str) -> Callable[[Event], bool]:
    return lambda e: e["event"] == kind and e["keysym"] == keysym


async def _window(driver: X11Driver, window_id: int) -> WindowInfo:
    async def listed() -> WindowInfo | None:
        return next((w for w in await driver.windows() if w.id == window_id), None)

    window = await eventually(listed)
    assert window is not None  # eventually returns only a truthy value
    return window


# -- the contract --------------------------------------------------------------------------


async def test_declares_its_kind_and_capabilities(driver: X11Driver) -> None:
    assert driver.kind == "x11"
    # OS power always; audio where a sound server answered as it started (the user's, if any:
    # tests/integration/test_audio.py gives it one of its own)
    assert driver.capabilities - {"audio"} == {"screen", "keyboard", "mouse", "clipboard",
                                               "windows", "apps", "power"}  # fmt: skip
    for protocol in (Screen, Mouse, Keyboard, Clipboard, Windows, Apps, Power, Audio):
        assert isinstance(driver, protocol)


async def test_close_is_idempotent_and_final(desktop: VirtualDesktop) -> None:
    x11 = X11Driver(desktop.display)
    await x11.start()
    await x11.close()
    await x11.close()
    with pytest.raises(Exception, match="closed"):
        await x11.move(1, 1)


async def test_unset_display_is_a_config_error(
    desktop: VirtualDesktop, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("DISPLAY")
    with pytest.raises(ConfigError, match="DISPLAY"):
        await X11Driver().start()


async def test_unreachable_display_is_a_config_error(desktop: VirtualDesktop) -> None:
    with pytest.raises(ConfigError, match=":4093"):
        await X11Driver(":4093").start()


# -- screen --------------------------------------------------------------------------------


async def test_screens_report_the_desktop(driver: X11Driver) -> None:
    assert await driver.screens() == [ScreenInfo(id=0, width=1280, height=800)]


async def test_grab_shows_what_a_window_drew(driver: X11Driver) -> None:
    quadrants = ["#ff0000", "#00ff00", "#0000ff", "#ffffff"]
    bgrx = [(0, 0, 255), (0, 255, 0), (255, 0, 0), (255, 255, 255)]
    with launch_color_window("colours", x=300, y=200, width=200, height=160,
                             quadrants=quadrants) as window:  # fmt: skip
        await driver.focus_window(window.window_id)  # on top of anything else
        x, y, width, height = window.client_area()
        # The middle of each quadrant, in desktop pixels.
        centres = [(x + width // 4 + (i % 2) * width // 2, y + height // 4 + (i // 2) * height // 2)
                   for i in range(4)]  # fmt: skip

        async def painted() -> bool:
            frame = await driver.grab()
            return all(
                tuple(frame[cy, cx, :3]) == bgr for (cx, cy), bgr in zip(centres, bgrx, strict=True)
            )

        await eventually(painted)
        frame = await driver.grab()
        assert frame.shape == (800, 1280, 4)
        assert frame.dtype == np.uint8

        region = await driver.grab(0, Bounds(x=x, y=y, width=width, height=height))
        assert region.shape == (height, width, 4)
        for i, bgr in enumerate(bgrx):
            quadrant = region[(i // 2) * height // 2 : (i // 2 + 1) * height // 2,
                              (i % 2) * width // 2 : (i % 2 + 1) * width // 2, :3]  # fmt: skip
            assert (quadrant == bgr).all(), f"quadrant {i} is not {quadrants[i]}"


async def test_grab_reuses_its_buffer(driver: X11Driver) -> None:
    first = await driver.grab(0, Bounds(x=0, y=0, width=64, height=32))
    second = await driver.grab(0, Bounds(x=10, y=10, width=64, height=32))
    assert np.shares_memory(first, second)


async def test_grab_of_an_off_screen_region_is_invalid(driver: X11Driver) -> None:
    for region in (
        Bounds(x=-1, y=0, width=10, height=10),
        Bounds(x=1275, y=0, width=10, height=10),
        Bounds(x=0, y=795, width=10, height=10),
    ):
        with pytest.raises(ValidationError, match="not inside screen 0"):
            await driver.grab(0, region)
    with pytest.raises(NotFoundError, match="no screen 3"):
        await driver.grab(3)


# -- keyboard ------------------------------------------------------------------------------


async def test_typed_ascii_arrives_verbatim(driver: X11Driver, probe: Probe) -> None:
    text = "Hello, World! ~`@#$%^&*()_+{}|:\"<>? 0123456789 -=[]\\;',./\nnext\tline"
    await driver.type(text)
    await eventually(lambda: probe.text() == text)


async def test_typed_unicode_arrives_verbatim_and_the_keymap_is_restored(
    driver: X11Driver, probe: Probe, peer: Display
) -> None:
    before = _keymap(peer)
    text = "héllo ✓ Привет 日本"
    await driver.type(text)
    await eventually(lambda: probe.text() == text)
    await eventually(lambda: _keymap(peer) == before)  # borrowed keycodes go back once typing idles


async def test_more_unmapped_characters_than_spare_keycodes(
    driver: X11Driver, probe: Probe, peer: Display
) -> None:
    before = _keymap(peer)
    # One more than the ~18 spare keycodes of Xvfb's keymap, so that typing rebinds some.
    # Latin Extended-A: DejaVu has the glyphs, so the probe draws them at once. (Every keymap
    # change makes the window manager grab its keys again, which costs openbox ~60 ms.)
    spares = len(_spare_keycodes(peer))
    text = "".join(chr(0x100 + i) for i in range(spares + 1))
    await driver.type(text)
    await eventually(lambda: probe.text() == text)
    await eventually(lambda: _keymap(peer) == before)


async def test_type_with_a_delay(driver: X11Driver, probe: Probe) -> None:
    await driver.type("a✓b", delay_s=0.01)
    await eventually(lambda: probe.text() == "a✓b")


async def test_untypable_characters_are_refused_before_typing(
    driver: X11Driver, probe: Probe
) -> None:
    mark = probe.mark()
    with pytest.raises(ValidationError, match="U\\+0007"):
        await driver.type("ab\x07c")
    assert probe.keys(since=mark) == []


async def test_a_held_key_stays_down_until_released(
    driver: X11Driver, probe: Probe, peer: Display
) -> None:
    mark = probe.mark()
    await driver.key(Key(code="ShiftLeft"), down=True)
    press = await probe.wait_for_async(_key("key_press", "Shift_L"), since=mark)
    assert press["keycode"] in _keys_down(peer)
    assert probe.events("key_release", since=mark) == []
    await driver.type("x")  # typing lets go of the held Shift and presses it again
    await eventually(lambda: probe.text() == "x")
    assert press["keycode"] in _keys_down(peer)

    mark = probe.mark()
    await driver.key(Key(code="ShiftLeft"), down=False)
    await probe.wait_for_async(_key("key_release", "Shift_L"), since=mark)
    assert press["keycode"] not in _keys_down(peer)


async def test_code_keys_press_physical_keys(driver: X11Driver, probe: Probe) -> None:
    async def tap(*codes: str) -> None:
        for code in codes:
            await driver.key(Key(code=code), down=True)
        for code in reversed(codes):
            await driver.key(Key(code=code), down=False)

    await tap("KeyA")
    await tap("ShiftLeft", "KeyB")
    await tap("Digit4")
    await tap("Enter")
    await tap("Backquote")
    await eventually(lambda: probe.text() == "aB4\n`")


async def test_char_keys_use_their_keysym_with_shift(driver: X11Driver, probe: Probe) -> None:
    for char in ("A", "é"):
        await driver.key(Key(char=char), down=True)
        await driver.key(Key(char=char), down=False)
    await eventually(lambda: probe.text() == "Aé")


async def test_release_all_releases_keys_and_buttons(
    driver: X11Driver, probe: Probe, peer: Display
) -> None:
    before = _keymap(peer)
    await driver.key(Key(code="ControlLeft"), down=True)
    await driver.key(Key(char="ж"), down=True)  # on a borrowed keycode, kept while held
    await driver.move(*probe.center())
    await driver.button("middle", down=True)
    await eventually(lambda: len(_keys_down(peer)) >= 2)
    assert peer.screen().root.query_pointer().mask & X.Button2Mask
    assert _keymap(peer) != before

    await driver.release_all()
    await eventually(lambda: not _keys_down(peer))
    assert not peer.screen().root.query_pointer().mask & X.Button2Mask
    assert _keymap(peer) == before


async def test_unknown_key_code_is_invalid(driver: X11Driver) -> None:
    with pytest.raises(ValidationError, match="NoSuchKey"):
        await driver.key(Key(code="NoSuchKey"), down=True)


# -- pointer -------------------------------------------------------------------------------


async def test_move_and_cursor_position(driver: X11Driver) -> None:
    await driver.move(640, 400)
    assert await driver.cursor_position() == (640, 400)
    await driver.move(1279, 799)
    assert await driver.cursor_position() == (1279, 799)


async def test_pointer_off_the_screen_is_invalid(driver: X11Driver) -> None:
    for x, y in ((-1, 0), (0, -1), (1280, 10), (10, 800)):
        with pytest.raises(ValidationError, match="off the screen"):
            await driver.move(x, y)


async def test_clicks_reach_the_window_with_their_buttons(driver: X11Driver, probe: Probe) -> None:
    x, y = probe.center()
    await driver.move(x, y)
    buttons: tuple[tuple[Button, int], ...] = (("left", 1), ("right", 3), ("middle", 2))
    for name, number in buttons:
        mark = probe.mark()
        await driver.click(name)
        press = await probe.wait_for_async("button_press", since=mark)
        release = await probe.wait_for_async("button_release", since=mark)
        assert (press["button"], press["root_x"], press["root_y"]) == (number, x, y)
        assert (release["button"], release["root_x"], release["root_y"]) == (number, x, y)


async def test_double_click(driver: X11Driver, probe: Probe) -> None:
    await driver.move(*probe.center())
    mark = probe.mark()
    await driver.click("left", count=2)
    double = await probe.wait_for_async("double_click", since=mark)
    assert double["button"] == 1
    await eventually(lambda: len(probe.events("button_release", since=mark)) == 2)
    assert [e["button"] for e in probe.buttons(since=mark)] == [1, 1, 1, 1]


async def test_click_at_moves_and_clicks_in_one_call(driver: X11Driver, probe: Probe) -> None:
    x, y = probe.center()
    await driver.move(10, 10)
    mark = probe.mark()
    await driver.click_at(x + 5, y + 3, "right", 2)
    await eventually(lambda: len(probe.events("button_release", since=mark)) == 2)
    presses = probe.events("button_press", since=mark)
    assert [(e["button"], e["root_x"], e["root_y"]) for e in presses] == [(3, x + 5, y + 3)] * 2
    assert await driver.cursor_position() == (x + 5, y + 3)
    # Off the screen: refused before anything is pressed, and the pointer stays.
    mark = probe.mark()
    with pytest.raises(ValidationError, match="off the screen"):
        await driver.click_at(1280, 5)
    await driver.click("left")
    press = await probe.wait_for_async("button_press", since=mark)
    assert [e["button"] for e in probe.buttons(since=mark)][:1] == [1]
    assert (press["root_x"], press["root_y"]) == (x + 5, y + 3)


async def test_click_count_out_of_range_is_invalid(driver: X11Driver) -> None:
    with pytest.raises(ValidationError, match="count"):
        await driver.click("left", count=0)
    with pytest.raises(ValidationError, match="unknown button"):
        await driver.click("fourth")  # type: ignore[arg-type]  # what a bad request sends


async def test_drag_presses_moves_and_releases(driver: X11Driver, probe: Probe) -> None:
    x, y, width, height = probe.client_area()
    start, end = (x + 20, y + 20), (x + width - 30, y + height - 40)
    await driver.move(*start)
    mark = probe.mark()
    await driver.button("left", down=True)
    await driver.move(*end)
    await driver.button("left", down=False)
    release = await probe.wait_for_async("button_release", since=mark)
    press = await probe.wait_for_async("button_press", since=mark)
    motion = await probe.wait_for_async(
        lambda e: e["event"] == "motion" and e["state"] & X.Button1Mask, since=mark
    )
    assert (press["button"], press["root_x"], press["root_y"]) == (1, *start)
    assert (motion["root_x"], motion["root_y"]) == end
    assert (release["button"], release["root_x"], release["root_y"]) == (1, *end)


async def test_scroll_sends_wheel_notches(driver: X11Driver, probe: Probe) -> None:
    await driver.move(*probe.center())
    for dx, dy, axis, direction, notches in (
        (0, 3, "vertical", 1, 3),
        (0, -2, "vertical", -1, 2),
        (2, 0, "horizontal", 1, 2),
        (-1, 0, "horizontal", -1, 1),
    ):
        mark = probe.mark()
        await driver.scroll(dx, dy)

        def scrolled(m: int = mark, n: int = notches) -> bool:
            return len(probe.events("wheel", since=m)) == n

        await eventually(scrolled)
        wheel = probe.events("wheel", since=mark)
        assert {(e["axis"], e["direction"]) for e in wheel} == {(axis, direction)}


# -- windows -------------------------------------------------------------------------------


async def test_window_list_shows_the_probe(driver: X11Driver, probe: Probe) -> None:
    info = await _window(driver, probe.window_id)
    assert info.title == probe.title
    assert info.pid == probe.pid
    assert info.process_name == psutil.Process(probe.pid).name()
    assert info.is_focused
    assert not info.is_dialog
    x, y, width, height = probe.client_area()
    assert info.bounds.contains(x, y) and info.bounds.contains(x + width - 1, y + height - 1)
    assert info.bounds.width >= width and info.bounds.height >= height


async def test_the_terminal_is_listed(driver: X11Driver, desktop: VirtualDesktop) -> None:
    windows = await driver.windows()
    assert any(w.pid == desktop.pids["xterm"] and w.process_name == "xterm" for w in windows)


async def test_focus_moves_between_windows(driver: X11Driver) -> None:
    with (
        launch_probe("first", x=100, y=100) as first,
        launch_probe("second", x=500, y=300) as second,
    ):
        for target, other in ((first, second), (second, first), (first, second)):
            mark = target.mark()
            await driver.focus_window(target.window_id)
            await target.wait_for_async("focus_in", since=mark)
            focused = [w.id for w in await driver.windows() if w.is_focused]
            assert focused == [target.window_id]
            stacked = [w.id for w in await driver.windows()]
            assert stacked.index(target.window_id) > stacked.index(other.window_id)


async def test_move_window_answers_the_bounds_it_got(driver: X11Driver, probe: Probe) -> None:
    target = Bounds(x=120, y=90, width=520, height=330)
    assert await driver.move_window(probe.window_id, target) == target
    assert (await _window(driver, probe.window_id)).bounds == target
    target = Bounds(x=10, y=20, width=300, height=200)
    assert await driver.move_window(probe.window_id, target) == target


async def test_close_window_closes_it(driver: X11Driver) -> None:
    with launch_probe("to close") as window:
        await _window(driver, window.window_id)
        await driver.close_window(window.window_id)
        window.proc.wait(timeout=10)

        async def gone() -> bool:
            return all(w.id != window.window_id for w in await driver.windows())

        await eventually(gone)


async def test_dialog_is_detected(driver: X11Driver) -> None:
    with launch_dialog("main window", "a dialog") as app:
        dialog = await _window(driver, app.dialog_id)
        main = await _window(driver, app.window_id)
        assert dialog.is_dialog and dialog.title == "a dialog"
        assert not main.is_dialog and main.title == "main window"


async def test_unknown_window_is_not_found(driver: X11Driver) -> None:
    unknown = 0x7FFFFFF
    with pytest.raises(NotFoundError, match="no top-level window"):
        await driver.focus_window(unknown)
    with pytest.raises(NotFoundError):
        await driver.move_window(unknown, Bounds(x=0, y=0, width=100, height=100))
    with pytest.raises(NotFoundError):
        await driver.close_window(unknown)


# -- apps ----------------------------------------------------------------------------------


async def test_open_app_starts_it_on_the_display(
    driver: X11Driver, desktop: VirtualDesktop, tmp_path: Path
) -> None:
    out = tmp_path / "display.txt"
    pid = await driver.open_app("sh", ["-c", f'echo "$DISPLAY" > {out}.tmp && mv {out}.tmp {out}'])
    assert pid > 0
    await eventually(out.exists)
    assert out.read_text().strip() == desktop.display


async def test_running_finds_programs_by_name(driver: X11Driver) -> None:
    pid = await driver.open_app("/bin/sleep", ["30"])
    try:
        assert pid in await driver.app_running("sleep")
        assert await driver.app_running("no-such-program-here") == []
    finally:
        process = psutil.Process(pid)
        process.terminate()
        process.wait(timeout=5)


async def test_open_missing_app_is_not_found(driver: X11Driver) -> None:
    with pytest.raises(NotFoundError, match="/no/such/program"):
        await driver.open_app("/no/such/program", [])
    with pytest.raises(NotFoundError, match="no-such-program-here"):
        await driver.open_app("no-such-program-here", [])


# -- without a window manager --------------------------------------------------------------


async def test_windows_without_a_window_manager(
    desktop: VirtualDesktop, monkeypatch: pytest.MonkeyPatch
) -> None:
    with VirtualDesktop(size=(800, 600), window_manager=False, terminal=False) as bare:
        monkeypatch.setenv("DISPLAY", bare.env["DISPLAY"])
        monkeypatch.setenv("XAUTHORITY", bare.env["XAUTHORITY"])
        x11 = X11Driver()
        await x11.start()
        try:
            with launch_probe("bare", x=50, y=60) as window, launch_dialog("m", "d") as app:
                info = await _window(x11, window.window_id)
                assert (info.title, info.pid) == ("bare", window.pid)
                await x11.focus_window(window.window_id)
                await window.wait_for_async("focus_in")
                target = Bounds(x=100, y=110, width=300, height=200)
                assert await x11.move_window(window.window_id, target) == target
                assert (await _window(x11, app.dialog_id)).is_dialog
                await x11.close_window(window.window_id)  # WM_DELETE_WINDOW, from us
                window.proc.wait(timeout=10)
        finally:
            await x11.close()
