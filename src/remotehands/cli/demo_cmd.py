"""``remotehands demo``: the whole system on one machine, on its embedded defaults.

The fleet server on SQLite, a virtual desktop (Xvfb, openbox, xterm) and an x11 agent enrolled
through a real enrollment token, all in this process; it prints the web console's URL and the
owner's sign-in first, then the device and a few commands to try, and runs until Ctrl-C.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import secrets
import shutil
import socket
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import click
import httpx

from remotehands.cli.desktop_cmd import parse_size
from remotehands.cli.extras import require_extras
from remotehands.cli.signals import run_until_signal
from remotehands.errors import ConfigError, RemoteHandsError

DEVICE_NAME = "demo-desktop"


@dataclass
class DemoInfo:
    """What the demo prints once everything is up."""

    url: str
    owner: str
    password: str
    token: str
    device_id: str
    device_name: str
    display: str

    @property
    def console_url(self) -> str:
        """The web console (the fleet dashboard; sign in there as the owner)."""
        return self.url + "/"

    def commands(self) -> list[str]:
        """CLI commands worth trying against the demo."""
        rh = _program()
        return [
            f"export REMOTEHANDS_URL={self.url}",
            f"export REMOTEHANDS_TOKEN={self.token}",
            f"{rh} devices",
            f"{rh} screenshot {self.device_name} -o shot.jpg",
            f'{rh} type {self.device_name} "echo hello from remotehands"',
            f"{rh} key {self.device_name} enter",
            f"{rh} windows {self.device_name}",
            f"{rh} audit",
        ]


def announcement(info: DemoInfo) -> list[str]:
    """The lines the demo prints once it is up: the web console and the owner's sign-in first."""
    return [
        f"remotehands demo is up: open {info.console_url} in a browser",
        f"  sign in as:   {info.owner} / {info.password}",
        f"  device:       {info.device_name} ({info.device_id}) on DISPLAY {info.display}",
        f"  API docs:     {info.url}/docs",
        "  try, in another shell:",
        *(f"    {line}" for line in info.commands()),
        "  stop with Ctrl-C",
    ]


def _program() -> str:
    """``remotehands`` when that name finds this very program on PATH, else its full path
    (the demo usually runs from the project's .venv, which is not on PATH)."""
    here = Path(sys.argv[0]).resolve()
    found = shutil.which("remotehands")
    if found is not None and Path(found).resolve() == here:
        return "remotehands"
    return str(here) if here.name == "remotehands" else "remotehands"


def _free_port(host: str) -> int:
    with socket.socket() as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port


def _owner_password(data: Path) -> str:
    """The demo owner's password: from the environment, else kept in the data directory so
    that a second run can print it again."""
    given = os.environ.get("REMOTEHANDS_OWNER_PASSWORD")
    if given:
        return given
    path = data / "demo-owner-password"
    if path.exists():
        return path.read_text().strip()
    data.mkdir(parents=True, exist_ok=True)
    password = secrets.token_urlsafe(12)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(password)
    return password


DEMO_TOKEN_NAME = "demo-cli"  # noqa: S105 -- the name of a token, not a secret
DEMO_TOKEN_TTL_S = 7 * 86400
"""How long the demo's API token lives: a rerun within that time prints the same token."""


async def demo_token(http: httpx.AsyncClient, data: Path) -> str:
    """The demo's API token: the one an earlier run kept in ``data`` while it still works,
    else a new one that expires in :data:`DEMO_TOKEN_TTL_S` (earlier demo tokens revoked), so
    that reruns do not pile up tokens that never expire. ``http`` is logged in as the owner."""
    path = data / "demo-token"
    kept = await asyncio.to_thread(_read_secret, path)
    if kept is not None:
        check = await http.get("/v1/auth/me", headers={"Authorization": f"Bearer {kept}"})
        if check.status_code == 200:
            return kept
    listed = (await http.get("/v1/tokens")).json()["tokens"]
    for old in listed:
        if old["name"] == DEMO_TOKEN_NAME and old["revoked_at"] is None:
            await http.delete(f"/v1/tokens/{old['id']}")
    created = await http.post(
        "/v1/tokens", json={"name": DEMO_TOKEN_NAME, "expires_in_s": DEMO_TOKEN_TTL_S}
    )
    if created.status_code != 201:
        raise ConfigError(f"the demo could not create its API token: {created.text}")
    token: str = created.json()["token"]
    await asyncio.to_thread(_write_secret, path, token)
    return token


def _read_secret(path: Path) -> str | None:
    try:
        return path.read_text().strip() or None
    except FileNotFoundError:
        return None


def _write_secret(path: Path, text: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(text)


async def _wait_online(http: httpx.AsyncClient, device_id: str, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        device = (await http.get(f"/v1/devices/{device_id}")).json()
        if device.get("status") == "online":
            return
        await asyncio.sleep(0.1)
    raise ConfigError(f"the demo agent did not come online within {timeout_s:.0f} s")


async def run_demo(
    data: Path, listen: str, size: tuple[int, int], announce: Any, ready: asyncio.Event | None
) -> None:
    """Bring everything up, call ``announce(DemoInfo)``, then run until cancelled."""
    from remotehands.agent.desktop import VirtualDesktop
    from remotehands.agent.link import hardware_id
    from remotehands.agent.runtime import AgentOptions, run_agent
    from remotehands.agent.soundserver import SoundServer
    from remotehands.server.app import create_app
    from remotehands.server.db.bootstrap import initialise
    from remotehands.server.settings import ServerSettings
    from remotehands.serving import parse_listen, serve_http

    host, port = parse_listen(listen)
    if port == 0:
        port = _free_port(host)
    address = f"{host}:{port}"
    url = f"http://{address}"
    await asyncio.to_thread(data.mkdir, parents=True, exist_ok=True)
    settings = ServerSettings.load(data_dir=data, listen=address, public_url=url)
    password = await asyncio.to_thread(_owner_password, data)
    await initialise(settings, owner="owner", password=password)

    desktop = VirtualDesktop(size=size)
    await asyncio.to_thread(desktop.start)
    display = str(desktop.display)
    sound = SoundServer(("remotehands",))
    app = create_app(settings)
    try:
        driver_settings: dict[str, Any] = {}
        try:  # the desktop's own sound, so the demo has audio to control
            await asyncio.to_thread(sound.start)
            driver_settings["pulse_server"] = sound.address
        except ConfigError as err:  # pulseaudio is missing: the demo runs without audio
            click.echo(f"warning: the demo has no audio: {err.details}", err=True)
        os.environ.update(desktop.env)
        async with (
            serve_http(app, address, lifespan=True, websockets=True),
            httpx.AsyncClient(base_url=url, timeout=30) as http,
        ):
            login = await http.post(
                "/v1/auth/login", json={"username": "owner", "password": password}
            )
            if login.status_code != 200:
                raise ConfigError(
                    f"the demo owner cannot log in ({login.json().get('details')}): remove "
                    f"{data} to start the demo afresh, or set REMOTEHANDS_OWNER_PASSWORD"
                )
            http.headers["Authorization"] = f"Bearer {login.json()['token']}"
            enrollment = (await http.post("/v1/devices/enrollment", json={
                "suggested_name": DEVICE_NAME, "suggested_tags": ["demo"]})).json()  # fmt: skip
            token = await demo_token(http, data)
            options = AgentOptions(driver="x11", display=display, settings=driver_settings,
                                   server=url,
                                   token=enrollment["token"], name=DEVICE_NAME,
                                   state_dir=data / "agent",
                                   # one device across runs, whatever display Xvfb gets
                                   hardware_id=hardware_id("|demo"))  # fmt: skip
            agent = asyncio.create_task(run_agent(options))
            try:
                device_id = await _device_id(http, display, agent)
                await _wait_online(http, device_id, 30)
                device = (await http.get(f"/v1/devices/{device_id}")).json()
                announce(DemoInfo(url=url, owner="owner", password=password, token=token,
                                  device_id=device_id, device_name=device["name"],
                                  display=display))  # fmt: skip
                if ready is not None:
                    ready.set()
                await agent
            finally:
                agent.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await agent
    finally:
        await asyncio.to_thread(sound.stop)
        await asyncio.to_thread(desktop.stop)


async def _device_id(http: httpx.AsyncClient, display: str, agent: asyncio.Task[None]) -> str:
    """The id of the device the demo agent enrolled as (a rerun reuses its credential)."""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if agent.done():
            agent.result()
            raise ConfigError("the demo agent stopped before it enrolled")
        devices = (await http.get("/v1/devices", params={"tag": "demo"})).json()["devices"]
        online = [d for d in devices if d["status"] == "online"]
        if online:
            return str(online[0]["id"])
        await asyncio.sleep(0.1)
    raise ConfigError(f"the demo agent on {display} did not enroll within 30 s")


@click.command()
@click.option(
    "--data",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path("data/demo"),
    show_default=True,
    help="Where the demo keeps its database and the agent's credential.",
)
@click.option(
    "--listen",
    default="127.0.0.1:8080",
    show_default=True,
    metavar="HOST:PORT",
    help="Where the server listens (port 0 picks a free one).",
)
@click.option("--size", default="1920x1080", show_default=True, help="Virtual screen size.")
@click.option(
    "--json",
    "as_json",
    is_flag=True,
    help="Print the URL, credentials and device as one JSON line.",
)
def demo(data: Path, listen: str, size: str, as_json: bool) -> None:
    """Run the whole system on one machine: the fleet server on SQLite, a virtual desktop and
    an agent enrolled through a real enrollment token. Stop it with Ctrl-C."""
    require_extras("demo", "agent", "server")

    def announce(info: DemoInfo) -> None:
        if as_json:
            click.echo(json.dumps({"console_url": info.console_url, **info.__dict__,
                                   "commands": info.commands()}))  # fmt: skip
        else:
            for line in announcement(info):
                click.echo(line)
        sys.stdout.flush()

    try:
        run_until_signal(run_demo(data, listen, parse_size(size), announce, None))
    except RemoteHandsError as err:
        click.echo(f"error: {err.details}", err=True)
        sys.exit(err.exit_code)
