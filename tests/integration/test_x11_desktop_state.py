"""The x11 driver tells a locked screen and a greeter from the desktop (the Openctrol face's
health reports it), on a desktop of its own (a locker there would lock the shared one): a real
grab of the keyboard and the pointer taken by another X client standing in as a locker, a real
i3lock, and a window of a greeter's class standing in for LightDM's (it cannot run without its
display manager), and logind's LockedHint from a stand-in logind on a real dbus-daemon (this
machine has no systemd)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path

import httpx
import pytest
from Xlib import X, display

from remotehands.agent.desktop import VirtualDesktop
from remotehands.drivers.logind import session_locked
from remotehands.drivers.x11.driver import X11Driver, X11Settings
from remotehands.testing.xapps import eventually
from tests.integration.openctrol_harness import serve_openctrol

pytestmark = pytest.mark.anyio


@pytest.fixture(scope="module")
def own_desktop() -> Iterator[VirtualDesktop]:
    saved = {key: os.environ.get(key) for key in ("DISPLAY", "XAUTHORITY")}
    with VirtualDesktop(size=(640, 480), window_manager=False) as running:
        os.environ.update(running.env)  # its cookie, for the driver and the clients here
        try:
            yield running
        finally:
            for key, value in saved.items():
                if value is None:
                    os.environ.pop(key, None)
                else:
                    os.environ[key] = value


@pytest.fixture
async def x11(own_desktop: VirtualDesktop) -> AsyncIterator[X11Driver]:
    driver = X11Driver(own_desktop.display)
    await driver.start()
    try:
        yield driver
    finally:
        await driver.close()


def _is(x11: X11Driver, state: str) -> Callable[[], Awaitable[bool]]:
    async def check() -> bool:
        return await x11.desktop_state() == state

    return check


class Client:
    """Another X client: one override-redirect window, mapped, and the grabs it takes."""

    def __init__(self, name: str | None, geometry: tuple[int, int, int, int], *, input_only: bool,
                 wm_class: tuple[str, str] | None = None) -> None:  # fmt: skip
        self.dpy = display.Display(name)
        root = self.dpy.screen().root
        x, y, width, height = geometry
        self.window = root.create_window(
            x, y, width, height, 0,
            0 if input_only else X.CopyFromParent,
            X.InputOnly if input_only else X.InputOutput,
            X.CopyFromParent, override_redirect=True,
        )  # fmt: skip
        if wm_class is not None:
            self.window.set_wm_class(*wm_class)
        self.window.map()
        self.dpy.sync()

    def grab(self) -> None:
        status = self.window.grab_keyboard(False, X.GrabModeAsync, X.GrabModeAsync, X.CurrentTime)
        assert status == X.GrabSuccess
        status = self.window.grab_pointer(False, 0, X.GrabModeAsync, X.GrabModeAsync, X.NONE,
                                          X.NONE, X.CurrentTime)  # fmt: skip
        assert status == X.GrabSuccess

    def close(self) -> None:
        self.dpy.close()


async def test_an_idle_desktop_is_the_desktop(x11: X11Driver) -> None:
    assert await x11.desktop_state() == "desktop"
    # Asking for the grabs left none behind: another client still gets them.
    client = Client(x11.display, (0, 0, 10, 10), input_only=False)
    try:
        client.grab()
    finally:
        client.close()


async def test_a_client_holding_both_grabs_with_an_input_only_window_is_a_locker(
    x11: X11Driver, own_desktop: VirtualDesktop
) -> None:
    locker = Client(own_desktop.display, (0, 0, 1, 1), input_only=True)  # as xtrlock does
    try:
        assert await x11.desktop_state() == "desktop"  # the window alone locks nothing
        locker.grab()
        assert await x11.desktop_state() == "locked"
    finally:
        locker.close()
    await eventually(_is(x11, "desktop"), timeout=5)


async def test_a_full_screen_grabbing_window_is_a_locker_and_a_grabbing_menu_is_not(
    x11: X11Driver, own_desktop: VirtualDesktop
) -> None:
    menu = Client(own_desktop.display, (50, 50, 120, 200), input_only=False)
    try:
        menu.grab()  # an open menu grabs the keyboard and the pointer too
        assert await x11.desktop_state() == "desktop"
    finally:
        menu.close()
    cover = Client(own_desktop.display, (0, 0, 640, 480), input_only=False)
    try:
        cover.grab()
        assert await x11.desktop_state() == "locked"
    finally:
        cover.close()


async def test_a_greeters_window_is_the_login_screen(
    x11: X11Driver, own_desktop: VirtualDesktop
) -> None:
    greeter = Client(own_desktop.display, (0, 0, 640, 480), input_only=False,
                     wm_class=("lightdm-gtk-greeter", "Lightdm-gtk-greeter"))  # fmt: skip
    try:
        assert await x11.desktop_state() == "login_screen"
    finally:
        greeter.close()


@pytest.mark.skipif(shutil.which("i3lock") is None, reason="i3lock is not installed")
async def test_a_real_i3lock_is_a_locked_screen(
    x11: X11Driver, own_desktop: VirtualDesktop
) -> None:
    env = {**own_desktop.env, "PATH": "/usr/bin:/bin"}
    locker = subprocess.Popen(["i3lock", "--nofork"], env=env)
    try:
        await eventually(_is(x11, "locked"), timeout=10)
    finally:
        locker.terminate()
        locker.wait(10)
    await eventually(_is(x11, "desktop"), timeout=10)


async def test_the_openctrol_health_reports_the_x11_desktop_state(
    own_desktop: VirtualDesktop,
) -> None:
    async with (
        serve_openctrol(X11Driver(own_desktop.display), rate=5.0) as served,
        httpx.AsyncClient(base_url=served.url, timeout=10) as http,
    ):

        async def state() -> str:
            health = (await http.get("/api/v1/health")).json()
            return str(health["remote_desktop"]["desktop_state"])

        assert await state() == "desktop"
        locker = Client(own_desktop.display, (0, 0, 640, 480), input_only=False)
        try:
            locker.grab()
            assert await state() == "locked"
        finally:
            locker.close()

        async def back() -> bool:
            return await state() == "desktop"

        await eventually(back, timeout=5)


@pytest.fixture
def private_bus(tmp_path: Path) -> Iterator[str]:
    """A real dbus-daemon of its own, its address."""
    if shutil.which("dbus-daemon") is None:
        pytest.skip("dbus-daemon is not installed")
    daemon = subprocess.Popen(
        ["dbus-daemon", "--session", "--nofork", "--print-address",
         f"--address=unix:path={tmp_path / 'bus'}"],
        stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    assert daemon.stdout is not None
    try:
        yield daemon.stdout.readline().strip()
    finally:
        daemon.terminate()
        daemon.wait(10)


async def test_loginds_locked_hint_makes_the_desktop_locked(
    own_desktop: VirtualDesktop, private_bus: str
) -> None:
    logind = subprocess.Popen(
        [sys.executable, str(Path(__file__).parents[1] / "doubles" / "logind.py"), private_bus,
         str(own_desktop.display)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    assert logind.stdin is not None and logind.stdout is not None
    driver = X11Driver(settings=X11Settings(display=own_desktop.display, logind_bus=private_bus))
    await driver.start()
    try:
        assert logind.stdout.readline().strip() == "ready"
        assert await session_locked(own_desktop.display, private_bus) is False
        assert await driver.desktop_state() == "desktop"
        logind.stdin.write("lock\n")
        logind.stdin.flush()
        assert logind.stdout.readline().strip() == "locked"
        assert await session_locked(own_desktop.display, private_bus) is True
        assert await driver.desktop_state() == "locked"
        # Another display's session says nothing about this one.
        assert await session_locked(":99", private_bus) is None
        logind.stdin.write("unlock\n")
        logind.stdin.flush()
        assert logind.stdout.readline().strip() == "unlocked"
        assert await driver.desktop_state() == "desktop"
    finally:
        await driver.close()
        logind.terminate()
        logind.wait(10)


async def test_no_bus_or_no_logind_leaves_the_display_to_tell(
    tmp_path: Path, private_bus: str
) -> None:
    assert await session_locked(":0", f"unix:path={tmp_path / 'nothing-here'}") is None
    assert await session_locked(":0", private_bus) is None  # a bus without logind
