"""Audio on a real PulseAudio server: the x11 driver's agent, over its native face on loopback,
changes a real playing client's volume, mute and routing and the outputs' — each checked with
the server itself (``pactl -f json``); changes made outside show on the next read; a sound
server that is not running answers 503 with what to start while the agent serves on; and the
``remotehands audio`` command reaches the same server through a live fleet server."""

from __future__ import annotations

import asyncio
import contextlib
import json
import textwrap
from collections.abc import AsyncIterator
from dataclasses import dataclass
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
from remotehands.agent.soundserver import SoundServer
from remotehands.cli.main import cli
from remotehands.drivers.pulse import PulseAudio
from remotehands.drivers.x11.driver import X11Driver, X11Settings
from remotehands.errors import ServiceUnavailableError
from remotehands.testing.xapps import eventually
from tests.integration.conftest import LiveServer
from tests.soundcheck import default_sink, pactl, percent, playing, reset, sink_inputs, sinks

pytestmark = pytest.mark.anyio

PASSWORD = "correct horse battery staple"


@dataclass
class Served:
    driver: X11Driver
    http: httpx.AsyncClient


@pytest.fixture
async def serve_x11(desktop: VirtualDesktop) -> Any:
    """Serve an x11 driver with these settings over the native face on loopback."""

    @contextlib.asynccontextmanager
    async def serve(**settings: Any) -> AsyncIterator[Served]:
        driver = X11Driver(settings=X11Settings(display=desktop.display, **settings))
        dispatcher = Dispatcher(driver)
        tokens = TokenStore(password_check(password=PASSWORD, password_file=None, pam=False))
        async with driver, serve_http(create_native_app(dispatcher, tokens), "127.0.0.1:0") as s:
            base = f"http://{bound_address(s)}"
            async with httpx.AsyncClient(base_url=base, timeout=10) as http:
                login = await http.post("/auth/login", json={"password": PASSWORD})
                http.headers["Authorization"] = f"Bearer {login.json()['token']}"
                yield Served(driver, http)
        await dispatcher.aclose()

    return serve


async def _ok(response: httpx.Response) -> Any:
    assert response.status_code == 200, response.text
    return response.json()


async def test_the_agent_changes_a_playing_client_as_the_server_itself_shows(
    sound_server: SoundServer, serve_x11: Any
) -> None:
    reset(sound_server)
    async with serve_x11(audio="on", pulse_server=sound_server.address) as agent:
        assert "audio" in agent.driver.capabilities
        http = agent.http
        with playing(sound_server) as player:
            index = await player.wait()
            session = str(index)
            state = await _ok(await http.get("/audio"))
            devices = {d["id"]: d for d in state["devices"]}
            assert set(devices) >= {"rh_one", "rh_two"} and devices["rh_one"]["default"]
            mine = next(s for s in state["sessions"] if s["id"] == session)
            assert mine["name"] == "rh-test-player" and mine["pid"] == player.proc.pid
            assert mine["device_id"] == "rh_one"

            # the session's volume, mute and routing, as the server reports them
            body = {"volume": 35, "session_id": session}
            changed = await _ok(await http.post("/audio/volume", json=body))
            assert changed["session"]["volume"] == pytest.approx(35, abs=0.01)
            assert percent(sink_inputs(sound_server)[index]["volume"]) == pytest.approx(
                35, abs=0.01
            )
            await _ok(await http.post("/audio/mute", json={"session_id": session}))
            assert sink_inputs(sound_server)[index]["mute"] is True
            await _ok(await http.post("/audio/mute", json={"session_id": session, "muted": False}))
            assert sink_inputs(sound_server)[index]["mute"] is False
            body = {"session_id": session, "device_id": "rh_two"}
            moved = await _ok(await http.post("/audio/move", json=body))
            assert moved["session"]["device_id"] == moved["device"]["id"] == "rh_two"
            assert (
                sink_inputs(sound_server)[index]["sink"] == sinks(sound_server)["rh_two"]["index"]
            )

            # the outputs: one named, the default one, the default itself
            await _ok(await http.post("/audio/volume", json={"volume": 20, "device_id": "rh_two"}))
            assert percent(sinks(sound_server)["rh_two"]["volume"]) == pytest.approx(20, abs=0.01)
            muted = await _ok(await http.post("/audio/mute", json={}))
            assert muted["device"]["id"] == "rh_one" and muted["device"]["muted"] is True
            assert sinks(sound_server)["rh_one"]["mute"] is True
            await _ok(await http.post("/audio/default", json={"device_id": "rh_two"}))
            assert default_sink(sound_server) == "rh_two"

            # changes made outside the agent show on the next read
            pactl(sound_server, "set-sink-volume", "rh_one", "63%")
            pactl(sound_server, "set-sink-input-mute", session, "1")
            pactl(sound_server, "move-sink-input", session, "rh_one")
            state = await _ok(await http.get("/audio"))
            devices = {d["id"]: d for d in state["devices"]}
            assert devices["rh_one"]["volume"] == pytest.approx(63, abs=0.01)
            assert devices["rh_two"]["default"] and not devices["rh_one"]["default"]
            mine = next(s for s in state["sessions"] if s["id"] == session)
            assert mine["muted"] is True and mine["device_id"] == "rh_one"

            # bad input: unknown ids are 404, out-of-range or contradictory values 422
            bad: list[tuple[str, dict[str, Any], int]] = [
                ("/audio/default", {"device_id": "no_such_sink"}, 404),
                ("/audio/move", {"session_id": "9999", "device_id": "rh_one"}, 404),
                ("/audio/volume", {"volume": 151}, 422),
                ("/audio/mute", {"device_id": "rh_one", "session_id": session}, 422),
                ("/audio/default", {}, 422),
            ]
            for path, wrong, status in bad:
                response = await http.post(path, json=wrong)
                assert response.status_code == status, (path, wrong, response.text)

        # the client ended: its session is gone from the next read
        def ended() -> bool:
            return index not in sink_inputs(sound_server)

        await eventually(ended, timeout=10)
        state = await _ok(await http.get("/audio"))
        assert session not in {s["id"] for s in state["sessions"]}
    reset(sound_server)


async def test_no_sound_server_is_503_with_what_to_start_and_the_agent_serves_on(
    serve_x11: Any, tmp_path: Path
) -> None:
    nowhere = f"unix:{tmp_path}/no-server/native"
    async with serve_x11(audio="on", pulse_server=nowhere) as agent:
        for _ in range(2):  # and again: nothing is left broken by the first failure
            response = await agent.http.get("/audio")
            assert response.status_code == 503
            body = response.json()
            assert body["error"] == "service_unavailable"
            assert nowhere in body["details"] and "pulseaudio --start" in body["details"]
        assert (await agent.http.post("/audio/volume", json={"volume": 5})).status_code == 503
        assert (await agent.http.get("/screens")).status_code == 200
    # "auto": no sound server as the driver starts means no audio capability at all
    async with serve_x11(audio="auto", pulse_server=nowhere) as agent:
        assert "audio" not in agent.driver.capabilities
        response = await agent.http.get("/audio")
        assert response.status_code == 501 and response.json()["error"] == "unsupported"
        assert f"no sound server answered at {nowhere}" in response.json()["details"]
    async with serve_x11(audio="off") as agent:
        assert "audio" not in agent.driver.capabilities


async def test_a_sound_server_that_stops_and_comes_back(serve_x11: Any, tmp_path: Path) -> None:
    """The server goes away under a running agent: 503 while it is gone, the other actions
    serve on, and the agent reconnects by itself once a server answers at that address again."""
    server = SoundServer(("solo",), directory=tmp_path / "pulse")
    await asyncio.to_thread(server.start)
    try:
        async with serve_x11(audio="auto", pulse_server=server.address) as agent:
            assert "audio" in agent.driver.capabilities
            state = await _ok(await agent.http.get("/audio"))
            assert [d["id"] for d in state["devices"]] == ["solo"]
            await asyncio.to_thread(server.stop)
            response = await agent.http.get("/audio")
            assert response.status_code == 503, response.text
            assert response.json()["error"] == "service_unavailable"
            assert (await agent.http.get("/screens")).status_code == 200
            await asyncio.to_thread(server.start)
            state = await _ok(await agent.http.get("/audio"))
            assert [d["id"] for d in state["devices"]] == ["solo"]
    finally:
        await asyncio.to_thread(server.stop)


async def test_the_audio_command_through_a_fleet_server(
    live_server: LiveServer, sound_server: SoundServer, desktop: VirtualDesktop, tmp_path: Path
) -> None:
    reset(sound_server)
    token = await live_server.enrollment("desk-audio")
    silent = await live_server.enrollment("desk-silent")
    config = tmp_path / "agent.toml"
    config.write_text(
        textwrap.dedent(f"""
        server = "{live_server.url}"
        state_dir = "state"

        [[devices]]
        name = "desk-audio"
        driver = "x11"
        enrollment_token = "{token}"
        [devices.settings]
        display = "{desktop.display}"
        audio = "on"
        pulse_server = "{sound_server.address}"

        [[devices]]
        name = "desk-silent"
        driver = "x11"
        enrollment_token = "{silent}"
        [devices.settings]
        display = "{desktop.display}"
        audio = "on"
        pulse_server = "unix:{tmp_path}/no-server/native"
    """)
    )
    agent = Agent.from_config(load_config(config))
    task = asyncio.create_task(agent.run())
    env = {
        "REMOTEHANDS_URL": live_server.url,
        "REMOTEHANDS_TOKEN": live_server.http.headers["Authorization"].removeprefix("Bearer "),
    }

    def run(*args: str) -> Any:
        result = CliRunner().invoke(cli, ["audio", "desk-audio", *args, "--json"], env=env)
        assert result.exit_code == 0, (args, result.output)
        return json.loads(result.stdout)

    try:

        async def online() -> bool:
            for name in ("desk-audio", "desk-silent"):
                device = await live_server.device(name)
                if device is None or device["status"] != "online":
                    return False
            return True

        await eventually(online, timeout=20)
        with playing(sound_server, "rh-fleet-player") as player:
            index = await player.wait()
            state = await asyncio.to_thread(run, "status")
            assert any(s["name"] == "rh-fleet-player" for s in state["sessions"])
            await asyncio.to_thread(run, "volume", "45", "--session", str(index))
            assert percent(sink_inputs(sound_server)[index]["volume"]) == pytest.approx(
                45, abs=0.01
            )
            await asyncio.to_thread(run, "move", str(index), "rh_two")
            assert (
                sink_inputs(sound_server)[index]["sink"] == sinks(sound_server)["rh_two"]["index"]
            )
            await asyncio.to_thread(run, "mute", "--device", "rh_two")
            assert sinks(sound_server)["rh_two"]["mute"] is True
            await asyncio.to_thread(run, "unmute", "--device", "rh_two")
            assert sinks(sound_server)["rh_two"]["mute"] is False
            await asyncio.to_thread(run, "default", "rh_two")
            assert default_sink(sound_server) == "rh_two"
            # the verb command of the table reaches the same route
            result = await asyncio.to_thread(
                CliRunner().invoke, cli, ["audio-status", "desk-audio", "--json"], env=env
            )
            assert result.exit_code == 0, result.output
        # a device whose sound server is not running: 503 through the fleet, exit status 7
        result = await asyncio.to_thread(
            CliRunner().invoke, cli, ["audio", "desk-silent", "status"], env=env
        )
        assert result.exit_code == 7, result.output
        assert "no sound server answers" in result.stderr and "pulseaudio --start" in result.stderr
        device = await live_server.device("desk-silent")
        assert device is not None
        response = await live_server.http.get(f"/v1/devices/{device['id']}/audio")
        assert response.status_code == 503
        assert response.json()["error"] == "service_unavailable"
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        reset(sound_server)


async def test_the_sound_server_is_found_the_standard_way(
    sound_server: SoundServer, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """Without a pulse_server setting, PULSE_SERVER leads to the server, else the socket in
    XDG_RUNTIME_DIR; the error names where it looked."""
    assert sound_server.runtime_dir is not None
    monkeypatch.delenv("PULSE_SERVER", raising=False)
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(sound_server.runtime_dir))
    found = PulseAudio()
    try:
        assert "rh_one" in {d.id for d in (await found.audio_status()).devices}
    finally:
        await found.close()
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(tmp_path))
    monkeypatch.setenv("PULSE_SERVER", str(sound_server.address))
    found = PulseAudio()
    try:
        assert "rh_two" in {d.id for d in (await found.audio_status()).devices}
    finally:
        await found.close()
    monkeypatch.delenv("PULSE_SERVER")
    with pytest.raises(ServiceUnavailableError, match=f"unix:{tmp_path}/pulse/native"):
        await PulseAudio().audio_status()
