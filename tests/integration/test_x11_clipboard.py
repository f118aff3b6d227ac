"""The x11 driver's clipboard against other real X clients (xclip, a silent owner)."""

from __future__ import annotations

import subprocess
from collections.abc import AsyncIterator

import pytest
from Xlib import X
from Xlib.display import Display

from remotehands.agent.desktop import VirtualDesktop
from remotehands.drivers.x11 import X11Driver
from remotehands.errors import DeviceTimeoutError
from remotehands.testing.xapps import wait_until

pytestmark = [pytest.mark.anyio, pytest.mark.x11]


@pytest.fixture
async def driver(desktop: VirtualDesktop) -> AsyncIterator[X11Driver]:
    x11 = X11Driver(clipboard_timeout_s=1.0)
    await x11.start()
    try:
        yield x11
    finally:
        await x11.close()


def xclip_out(target: str = "UTF8_STRING") -> str:
    result = subprocess.run(
        ["xclip", "-o", "-selection", "clipboard", "-t", target],
        capture_output=True,
        timeout=10,
        check=True,
    )
    return result.stdout.decode("utf-8" if target != "STRING" else "latin-1")


def xclip_in(text: str) -> None:
    """Give the clipboard to xclip, and wait until the server says it owns it.

    xclip forks a child that owns the selection until another client takes it; it exits
    before its SetSelectionOwner request has surely reached the server.
    """
    peer = Display()
    try:
        clipboard = peer.intern_atom("CLIPBOARD")
        before = peer.get_selection_owner(clipboard)
        subprocess.run(
            ["xclip", "-i", "-selection", "clipboard"], input=text.encode(), timeout=10, check=True
        )
        wait_until(lambda: peer.get_selection_owner(clipboard) != before)
    finally:
        peer.close()


@pytest.mark.parametrize("text", ["plain ascii", "héllo ✓ Привет 日本\nline two\ttab", ""])
async def test_clipboard_set_is_read_by_xclip(driver: X11Driver, text: str) -> None:
    await driver.clipboard_set(text)
    assert xclip_out() == text
    assert await driver.clipboard_get() == text  # our own text, without a conversion


async def test_string_target_gets_latin1(driver: X11Driver) -> None:
    await driver.clipboard_set("café ✓")
    assert xclip_out("STRING") == "café ?"
    assert set(xclip_out("TARGETS").split()) >= {"TARGETS", "UTF8_STRING", "STRING", "TEXT"}


@pytest.mark.parametrize("text", ["from xclip", "от xclip: ✓ 日本"])
async def test_text_set_by_xclip_is_read(driver: X11Driver, text: str) -> None:
    await driver.clipboard_set("ours first")
    xclip_in(text)
    assert await driver.clipboard_get() == text


async def test_large_text_goes_both_ways(driver: X11Driver) -> None:
    big = "0123456789abcdef✓\n" * 40_000  # ~800 KB: more than one request, so INCR
    await driver.clipboard_set(big)
    assert xclip_out() == big
    xclip_in(big[::-1])
    assert await driver.clipboard_get() == big[::-1]


async def test_empty_when_nobody_owns_it(driver: X11Driver, desktop: VirtualDesktop) -> None:
    other = X11Driver()
    await other.start()
    await other.clipboard_set("soon gone")
    assert await driver.clipboard_get() == "soon gone"
    await other.close()  # the owner goes away, and its text with it
    assert await driver.clipboard_get() == ""


async def test_an_owner_that_never_answers_times_out(
    driver: X11Driver, desktop: VirtualDesktop
) -> None:
    silent = Display(desktop.display)
    try:
        window = silent.screen().root.create_window(0, 0, 1, 1, 0, X.CopyFromParent)
        window.set_selection_owner(silent.intern_atom("CLIPBOARD"), X.CurrentTime)
        silent.sync()  # owns it, and never reads the requests that come
        with pytest.raises(DeviceTimeoutError, match="did not answer"):
            await driver.clipboard_get()
    finally:
        silent.close()
    assert await driver.clipboard_get() == ""
