"""OS power as a capability of a desktop: the x11 agent restarts and shuts down its machine by
the operator's commands — harmless ones here (``touch``), nothing is ever powered off — and
without a command does a dry run that its result, its action log and the fleet's audit say was
one; the ATX actions are refused with what to use instead."""

from __future__ import annotations

import asyncio
import textwrap
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from click.testing import CliRunner

from remotehands.agent.auth import TokenStore, password_check
from remotehands.agent.config import load_config
from remotehands.agent.desktop import VirtualDesktop
from remotehands.agent.dispatch import Dispatcher
from remotehands.agent.faces.native import create_native_app
from remotehands.agent.runtime import Agent, bound_address, serve_http
from remotehands.cli.main import cli
from remotehands.drivers.x11.driver import X11Driver, X11Settings
from remotehands.testing.xapps import eventually
from tests.integration.conftest import LiveServer

pytestmark = pytest.mark.anyio

PASSWORD = "correct horse battery staple"


@pytest.fixture
async def agent(desktop: VirtualDesktop, tmp_path: Path) -> AsyncIterator[httpx.AsyncClient]:
    """An x11 agent whose restart command touches a file; shutdown has no command."""
    commands = {"restart": f"touch {tmp_path / 'restarted'}"}
    settings = X11Settings(display=desktop.display, audio="off", power_commands=commands)
    driver = X11Driver(settings=settings)
    assert "power" in driver.capabilities
    dispatcher = Dispatcher(driver)
    tokens = TokenStore(password_check(password=PASSWORD, password_file=None, pam=False))
    app = create_native_app(dispatcher, tokens)
    async with (
        driver,
        serve_http(app, "127.0.0.1:0") as server,
        httpx.AsyncClient(base_url=f"http://{bound_address(server)}", timeout=10) as c,
    ):
        login = await c.post("/auth/login", json={"password": PASSWORD})
        c.headers["Authorization"] = f"Bearer {login.json()['token']}"
        yield c
    await dispatcher.aclose()


async def _json(response: httpx.Response, status: int = 200) -> Any:
    assert response.status_code == status, response.text
    return response.json()


async def test_restart_runs_the_command_and_shutdown_is_a_dry_run(
    agent: httpx.AsyncClient, tmp_path: Path
) -> None:
    state = await _json(await agent.get("/power"))
    assert state == {"on": True, "hdd": None, "busy": False, "actions": ["restart", "shutdown"],
                     "buttons": [], "dry_run": ["shutdown"]}  # fmt: skip
    restarted = await _json(await agent.post("/power/restart", json={}))
    assert restarted["action"] == "restart" and restarted["dry_run"] is False
    assert (tmp_path / "restarted").exists()
    # no command: nothing is done, nothing is waited for, and the answer says so
    shut = await _json(await agent.post("/power/shutdown", json={"timeout_s": 20}))
    assert shut["dry_run"] is True and shut["expected"] is None
    assert shut["timed_out"] is False and shut["waited_ms"] < 5000
    assert shut["before"]["on"] is True and shut["after"]["on"] is True
    log = await _json(await agent.get("/actions", params={"limit": 5}))
    assert [(e["action"], e["result"]) for e in log][-2:] == [
        ("power.restart", "ok"),
        ("power.shutdown", "dry_run"),
    ]


async def test_the_atx_actions_are_refused_with_what_to_use(agent: httpx.AsyncClient) -> None:
    atx: list[tuple[str, dict[str, Any]]] = [
        ("/power/on", {}), ("/power/off", {}), ("/power/off-hard", {}),
        ("/power/reset-hard", {}), ("/power/click", {"button": "reset"}),
    ]  # fmt: skip
    for path, body in atx:
        refused = await _json(await agent.post(path, json=body), 501)
        assert refused["error"] == "unsupported", path
        assert "a desktop cannot" in refused["details"] and "power_restart" in refused["details"]


async def test_the_fleet_audits_a_dry_run_as_one(
    live_server: LiveServer, desktop: VirtualDesktop, tmp_path: Path
) -> None:
    token = await live_server.enrollment("desk-power")
    marker = tmp_path / "restarted"
    config = tmp_path / "agent.toml"
    config.write_text(
        textwrap.dedent(f"""
        server = "{live_server.url}"
        state_dir = "state"

        [[devices]]
        name = "desk-power"
        driver = "x11"
        enrollment_token = "{token}"
        [devices.settings]
        display = "{desktop.display}"
        audio = "off"
        [devices.settings.power_commands]
        restart = "touch {marker}"
    """)
    )
    task = asyncio.create_task(Agent.from_config(load_config(config)).run())
    try:

        async def online() -> dict[str, Any] | None:
            device = await live_server.device("desk-power")
            return device if device is not None and device["status"] == "online" else None

        device = await eventually(online, timeout=20)
        assert "power" in device["capabilities"]
        base = f"/v1/devices/{device['id']}"
        restarted = await _json(await live_server.http.post(base + "/power/restart", json={}))
        assert restarted["dry_run"] is False and marker.exists()
        shut = await _json(await live_server.http.post(base + "/power/shutdown", json={}))
        assert shut["dry_run"] is True

        async def audited() -> list[tuple[str, str]]:
            response = await live_server.http.get("/v1/audit", params={"device_id": device["id"]})
            entries = response.json()["entries"]
            found = [(e["action"], e["result"]) for e in entries if e["action"].startswith("power")]
            return found if len(found) == 2 else []

        assert sorted(await eventually(audited, timeout=10)) == [
            ("power.restart", "ok"),
            ("power.shutdown", "dry_run"),
        ]
        # and the power command says so
        session = live_server.http.headers["Authorization"].removeprefix("Bearer ")
        env = {"REMOTEHANDS_URL": live_server.url, "REMOTEHANDS_TOKEN": session}
        said = await asyncio.to_thread(
            CliRunner().invoke, cli, ["power", "desk-power", "shutdown"], env=env
        )
        assert said.exit_code == 0, said.output
        assert "shutdown: a dry run, nothing was done" in said.stdout
        said = await asyncio.to_thread(CliRunner().invoke, cli, ["power", "desk-power"], env=env)
        assert "dry runs (no command configured): shutdown" in said.stdout
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
