"""The web console's test harness: a real fleet server, real agents, a real Chromium.

Fixtures (all real parts, started once per session so the web tests stay fast):

- ``web``: a :class:`WebFleet`: the fleet server (SQLite) serving on loopback in a thread of its
  own, with an owner, an operator and a viewer (:data:`PASSWORDS`); an x11 agent on an
  Xvfb desktop of its own (openbox and an xterm, ``web_desktop``) enrolled as :data:`X11_DEVICE`; a
  FakeDriver agent enrolled as :data:`FAKE_DEVICE`, which declares power, media, switch and audio.
  ``web.http(role)`` is a signed-in ``httpx.Client``; ``web.agent_process(...)`` starts a real
  ``remotehands agent`` process (killed at the end of the test).
- ``browser``: Debian's Chromium (``/usr/bin/chromium``, never a downloaded browser), headless,
  through Playwright's sync API, started once per test module (Playwright's sync API holds an
  event loop in the main thread while it runs, which the async tests of other modules need).
- ``page_as(role)``: a fresh browser context signed in as ``role`` (through
  ``POST /v1/auth/web/signin``, so the cookies are the browser's own) and a page in it;
  ``page_as(None)`` is signed out.
- ``web_watch``: what the pages of the test did. At the end of every test using ``page_as``, a
  screenshot of each page is saved under :data:`ARTIFACTS` (``$REMOTEHANDS_ARTIFACTS`` or
  ``artifacts/web`` in the working directory: ``*.png`` are ignored by git), and the test fails
  if a page logged a console error or an uncaught exception (unless the test expected it with
  ``web_watch.allow(pattern)``) or asked for anything from a host other than the server (such
  a request is aborted, so nothing leaves either way).
"""

from __future__ import annotations

import asyncio
import os
import re
import socket
import subprocess
import sys
import threading
from collections.abc import Callable, Generator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.sync_api import (
    Browser,
    BrowserContext,
    ConsoleMessage,
    Page,
    Playwright,
    Route,
    expect,
    sync_playwright,
)
from playwright.sync_api import Error as PlaywrightError

from remotehands.agent.desktop import VirtualDesktop
from remotehands.agent.runtime import AgentOptions, run_agent
from remotehands.server.app import create_app
from remotehands.server.auth import Passwords
from remotehands.server.db.bootstrap import initialise
from remotehands.server.http.users import create_user
from remotehands.server.services import Services
from remotehands.server.settings import ServerSettings
from remotehands.serving import serve_http
from remotehands.testing.xapps import eventually
from tests.conftest import desktop_as_display
from tests.server.conftest import FAST_PASSWORDS

__all__ = [
    "ARTIFACTS",
    "CHROMIUM",
    "CHROMIUM_ARGS",
    "FAKE_DEVICE",
    "PASSWORDS",
    "THUMBNAIL_OF_A_DEVICE_GOING_AWAY",
    "X11_DEVICE",
    "AgentProcess",
    "PageWatch",
    "WebFleet",
]

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox", "--disable-gpu", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--no-first-run",
]  # fmt: skip
PASSWORDS = {
    "owner": "owner-password-1",
    "admin": "admin-password-1",
    "operator": "operator-password-1",
    "viewer": "viewer-password-1",
}
"""The users of the test fleet, one per role, named after it."""
X11_DEVICE = "desk-x11"
"""The x11 agent's device: its own Xvfb desktop with an xterm (``web_desktop``)."""
FAKE_DEVICE = "kvm-fake"
"""The FakeDriver device: power, media, switch and audio among its capabilities."""
ARTIFACTS = Path(os.environ.get("REMOTEHANDS_ARTIFACTS", "artifacts")) / "web"
"""Where the pages' screenshots are saved."""
VIEWPORT = {"width": 1280, "height": 720}
THUMBNAIL_OF_A_DEVICE_GOING_AWAY = r"status of 50[234] .*/screenshot\?"
"""The console error of a thumbnail asked for just as its device went offline (the browser
logs every failed fetch): tests that take a device away allow it."""
_START_S = 25.0


@dataclass
class AgentProcess:
    """A ``remotehands agent`` process linked to the test fleet."""

    process: subprocess.Popen[bytes]
    name: str

    def kill(self) -> None:
        """Kill it (SIGKILL: no goodbye to the server, as a crash or a pulled cable)."""
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait(10)


@dataclass
class WebFleet:
    """The running test fleet (see the module docstring)."""

    url: str
    devices: dict[str, str]
    """Device ids by name."""
    tmp: Path
    services: Services
    _clients: dict[str, httpx.Client] = field(default_factory=dict)

    def http(self, role: str) -> httpx.Client:
        """An API client signed in (bearer session) as the user of ``role``."""
        if role not in self._clients:
            client = httpx.Client(base_url=self.url, timeout=10)
            login = client.post(
                "/v1/auth/login", json={"username": role, "password": PASSWORDS[role]}
            )
            assert login.status_code == 200, login.text
            client.headers["Authorization"] = f"Bearer {login.json()['token']}"
            self._clients[role] = client
        return self._clients[role]

    def agent_process(
        self, token: str, name: str, *, driver: str = "fake", extra: list[str] | None = None
    ) -> AgentProcess:
        """Start a real agent process enrolling with ``token`` as ``name``."""
        state = self.tmp / f"agent-{name}"
        command = [
            str(Path(sys.executable).parent / "remotehands"), "agent", "--driver", driver,
            "--server", self.url, "--token", token, "--name", name,
            "--state-dir", str(state), *(extra or []),
        ]  # fmt: skip
        log = (self.tmp / f"agent-{name}.log").open("wb")
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
        log.close()
        return AgentProcess(process, name)

    def device(self, name: str) -> dict[str, Any] | None:
        """The device called ``name`` as the API lists it, or None."""
        for device in self.http("owner").get("/v1/devices").json()["devices"]:
            if device["name"] == name:
                found: dict[str, Any] = device
                return found
        return None

    def close(self) -> None:
        for client in self._clients.values():
            client.close()


def _loopback() -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.bind(("127.0.0.1", 0))
    return sock


class _FleetThread(threading.Thread):
    """The server and the in-process agents, on an event loop of their own (Playwright's sync
    API needs the main thread without one)."""

    def __init__(self, tmp: Path, display: str) -> None:
        super().__init__(name="web-fleet", daemon=True)
        self.tmp = tmp
        self.display = display
        self.sock = _loopback()
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}"
        self.ready = threading.Event()
        self.fleet: WebFleet | None = None
        self.error: BaseException | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stopping: asyncio.Event | None = None

    def run(self) -> None:
        try:
            asyncio.run(self._main())
        except BaseException as err:  # handed to the main thread, which raises it
            self.error = err
            self.ready.set()

    async def _main(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stopping = asyncio.Event()
        settings = ServerSettings(
            data_dir=self.tmp / "server",
            database_url=f"sqlite+aiosqlite:///{self.tmp / 'server.db'}",
            public_url=self.url,
            # One address (127.0.0.1) signs everyone in: the per-address limit stays out of
            # the way; the per-user limit is what the rate-limit test meets.
            login_address_rate_limit=10_000,
        )
        passwords = Passwords(FAST_PASSWORDS)
        await initialise(settings, owner="owner", password=PASSWORDS["owner"],
                         passwords=passwords)  # fmt: skip
        app = create_app(settings, passwords=passwords)
        async with serve_http(app, sock=self.sock, lifespan=True, websockets=True):
            services: Services = app.state.services
            for role in ("admin", "operator", "viewer"):
                await create_user(services, role, PASSWORDS[role], role)
            agents = [
                asyncio.create_task(run_agent(await self._options(X11_DEVICE, "x11"))),
                asyncio.create_task(run_agent(await self._options(FAKE_DEVICE, "fake"))),
            ]
            try:
                devices = await self._online([X11_DEVICE, FAKE_DEVICE], agents)
                self.fleet = WebFleet(self.url, devices, self.tmp, services)
                self.ready.set()
                await self._stopping.wait()
            finally:
                for task in agents:
                    task.cancel()
                await asyncio.gather(*agents, return_exceptions=True)

    async def _options(self, name: str, driver: str) -> AgentOptions:
        async with httpx.AsyncClient(base_url=self.url, timeout=10) as http:
            login = await http.post(
                "/v1/auth/login", json={"username": "owner", "password": PASSWORDS["owner"]}
            )
            headers = {"Authorization": f"Bearer {login.json()['token']}"}
            enrollment = await http.post("/v1/devices/enrollment", headers=headers,
                                         json={"suggested_name": name})  # fmt: skip
            token = enrollment.json()["token"]
        return AgentOptions(
            driver=driver, display=self.display if driver == "x11" else None, server=self.url,
            token=token, name=name, state_dir=self.tmp / f"state-{name}",
            hardware_id=f"hw-{name}",
        )  # fmt: skip

    async def _online(self, names: list[str], agents: list[asyncio.Task[None]]) -> dict[str, str]:
        async with httpx.AsyncClient(base_url=self.url, timeout=10) as http:
            login = await http.post(
                "/v1/auth/login", json={"username": "owner", "password": PASSWORDS["owner"]}
            )
            http.headers["Authorization"] = f"Bearer {login.json()['token']}"

            async def online() -> dict[str, str]:
                for task in agents:
                    if task.done():
                        task.result()
                        raise RuntimeError("a test agent stopped before it came online")
                listed = (await http.get("/v1/devices")).json()["devices"]
                found = {d["name"]: d["id"] for d in listed if d["status"] == "online"}
                return found if all(name in found for name in names) else {}

            return await eventually(online, timeout=_START_S, interval=0.05)

    def stop(self) -> None:
        if self._loop is not None and self._stopping is not None:
            self._loop.call_soon_threadsafe(self._stopping.set)
        self.join(20)
        self.sock.close()


@pytest.fixture(scope="session")
def web_desktop() -> Iterator[VirtualDesktop]:
    """The x11 device's desktop: one of its own (the tests compare its screen with the console's,
    type into its terminal and open windows on it), not the session's shared one, which the
    tests before these have used for a quarter of an hour. It is this process's DISPLAY while
    it runs, for the windows the tests open and the screen they read."""
    with desktop_as_display() as running:
        yield running


@pytest.fixture(scope="session")
def web(
    web_desktop: VirtualDesktop, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[WebFleet]:
    """The running test fleet (module docstring)."""
    desktop = web_desktop
    assert desktop.display is not None
    thread = _FleetThread(tmp_path_factory.mktemp("web"), desktop.display)
    thread.start()
    if not thread.ready.wait(_START_S + 15):
        raise RuntimeError("the web test fleet did not start")
    if thread.error is not None:
        raise thread.error
    assert thread.fleet is not None
    try:
        yield thread.fleet
    finally:
        thread.fleet.close()
        thread.stop()


@pytest.fixture(scope="module")
def playwright() -> Iterator[Playwright]:
    """Playwright's sync API, for a module of tests: not for the session, because while it runs
    the main thread has an event loop, and the async tests of other directories (anyio) could
    not start theirs."""
    # The machine may be busy (CI, parallel jobs): waits on the page get 10 s, not 5.
    expect.set_options(timeout=10_000)
    with sync_playwright() as running:
        yield running


@pytest.fixture(scope="module")
def browser(playwright: Playwright) -> Iterator[Browser]:
    """Debian's Chromium, headless, for a module of tests (about a second to start)."""
    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is missing: scripts/system-deps installs it", pytrace=False)
    launched = playwright.chromium.launch(
        executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS
    )
    try:
        yield launched
    finally:
        launched.close()


@dataclass
class PageWatch:
    """What the pages of one test did: console errors, foreign requests; their screenshots."""

    server: str
    test: str
    pages: list[tuple[str, Page]] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    foreign: list[str] = field(default_factory=list)
    allowed: list[re.Pattern[str]] = field(default_factory=list)

    def allow(self, pattern: str) -> None:
        """Expect console errors matching ``pattern`` (a regular expression) in this test."""
        self.allowed.append(re.compile(pattern))

    def own(self, url: str) -> bool:
        """Whether ``url`` is the server's (or a data:/blob: URL of the page itself)."""
        return (
            url.startswith((self.server + "/", "data:", "blob:", "about:"))
            or url
            in (
                self.server,
                self.server.replace("http://", "ws://"),
            )
            or url.startswith(self.server.replace("http://", "ws://") + "/")
        )

    def watch(self, context: BrowserContext, label: str) -> None:
        """Record what pages of ``context`` do, and abort anything bound for another host."""

        def foreign(route: Route) -> None:
            self.foreign.append(route.request.url)
            route.abort("blockedbyclient")

        context.route(lambda url: not self.own(url), foreign)
        context.on("request", lambda request: None if self.own(request.url)
                   else self.foreign.append(request.url))  # fmt: skip

        def on_page(page: Page) -> None:
            self.pages.append((label, page))

            def console(message: ConsoleMessage) -> None:
                if message.type == "error":
                    self.errors.append(f"console: {message.text} ({message.location})")

            page.on("console", console)
            page.on("pageerror", lambda error: self.errors.append(f"uncaught: {error}"))
            page.on("websocket", lambda ws: None if self.own(ws.url)
                    else self.foreign.append(ws.url))  # fmt: skip

        context.on("page", on_page)

    def screenshots(self) -> list[Path]:
        """Save a screenshot of each open page of the test."""
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        saved = []
        for index, (label, page) in enumerate(self.pages):
            if page.is_closed():
                continue
            path = ARTIFACTS / f"{self.test}-{index}-{label}.png"
            try:
                page.screenshot(path=str(path), timeout=5000, full_page=True)
            except PlaywrightError:
                continue  # a page mid-navigation: the test's own result says more
            saved.append(path)
        return saved

    def problems(self) -> list[str]:
        """Console errors not allowed, and requests for other hosts."""
        found = [e for e in self.errors if not any(p.search(e) for p in self.allowed)]
        found += [f"request for another host: {url}" for url in self.foreign]
        return found


_WATCH = pytest.StashKey[PageWatch]()


@pytest.fixture
def web_watch(web: WebFleet, request: pytest.FixtureRequest) -> PageWatch:
    """What this test's pages did (module docstring)."""
    name = re.sub(r"[^A-Za-z0-9_.-]+", "_", request.node.name)
    watch = PageWatch(web.url, name)
    request.node.stash[_WATCH] = watch
    return watch


PageFactory = Callable[..., Page]


@pytest.fixture
def page_as(browser: Browser, web: WebFleet, web_watch: PageWatch) -> Iterator[PageFactory]:
    """``page_as(role)``: a page signed in as the user of ``role`` (None: signed out), in a
    context of its own, 1280x720, watched by ``web_watch``."""
    contexts: list[BrowserContext] = []

    def make(role: str | None, *, path: str | None = None) -> Page:
        context = browser.new_context(base_url=web.url, viewport=VIEWPORT)  # type: ignore[arg-type]
        context.set_default_timeout(10_000)
        contexts.append(context)
        web_watch.watch(context, role or "anonymous")
        if role is not None:
            signed = context.request.post(
                "/v1/auth/web/signin", data={"username": role, "password": PASSWORDS[role]}
            )
            assert signed.ok, signed.text()
        page = context.new_page()
        if path is not None:
            page.goto(path)
        return page

    try:
        yield make
    finally:
        for context in contexts:
            context.close()


def sign_in(page: Page, username: str, password: str) -> None:
    """Fill the sign-in form once its script handles it, and press Enter."""
    expect(page.locator("#submit")).to_be_enabled()  # enabled by signin.js once loaded
    page.get_by_label("Username").fill(username)
    page.get_by_label("Password").fill(password)
    page.get_by_label("Password").press("Enter")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Every web test drives a real browser against agents on Xvfb: marked ``x11`` and
    ``slow`` (the inner loop's ``-m 'not slow'`` leaves them out)."""
    here = Path(__file__).parent
    for item in items:
        if here in item.path.parents:
            item.add_marker(pytest.mark.x11)
            item.add_marker(pytest.mark.slow)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item: pytest.Item) -> Generator[None, None, None]:
    """After a web test: screenshots of its pages, then fail it on console errors or requests
    for other hosts."""
    try:
        outcome = yield
    finally:
        watch = item.stash.get(_WATCH, None)
        if watch is not None:
            watch.screenshots()
    if watch is not None:
        problems = watch.problems()
        if problems:
            pytest.fail("the pages misbehaved:\n  " + "\n  ".join(problems), pytrace=False)
    return outcome
