"""The Openctrol face's audio routes on a real PulseAudio server with two null outputs and a
real playing client (``pacat``), through the x11 driver's audio: each change checked with the
server itself (``pactl``); no sound server answers 503 with what to start."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from remotehands.agent.desktop import VirtualDesktop
from remotehands.agent.soundserver import SoundServer
from remotehands.drivers.x11.driver import X11Driver, X11Settings
from tests.integration.openctrol_harness import PASSWORD, serve_openctrol
from tests.soundcheck import default_sink, percent, playing, reset, sink_inputs, sinks

pytestmark = [pytest.mark.anyio, pytest.mark.x11]

KEY = {"X-Openctrol-Key": PASSWORD}


async def test_the_face_changes_a_playing_client_as_the_server_shows(
    desktop: VirtualDesktop, sound_server: SoundServer
) -> None:
    reset(sound_server)
    driver = X11Driver(
        settings=X11Settings(display=desktop.display, audio="on", pulse_server=sound_server.address)
    )
    async with (
        serve_openctrol(driver) as served,
        httpx.AsyncClient(base_url=served.url, headers=KEY, timeout=10) as http,
    ):
        with playing(sound_server) as player:
            index = await player.wait()
            state = (await http.get("/api/v1/audio/state")).json()
            assert state["default_output_device_id"] == "rh_one"
            mine = next(s for s in state["sessions"] if s["id"] == str(index))
            assert mine["name"] == "rh-test-player" and mine["output_device_id"] == "rh_one"

            # the integration's spelling; a session's volume is 0.0-1.0
            body = {
                "SessionId": str(index),
                "Volume": 0.35,
                "Muted": True,
                "OutputDeviceId": "rh_two",
            }
            assert (await http.post("/api/v1/audio/session", json=body)).status_code == 200
            stream = sink_inputs(sound_server)[index]
            assert percent(stream["volume"]) == pytest.approx(35, abs=0.01)
            assert stream["mute"] is True
            assert stream["sink"] == sinks(sound_server)["rh_two"]["index"]

            # a device in the document's scale, then in the integration's
            body = {"device_id": "rh_two", "volume": 0.2, "muted": False}
            assert (await http.post("/api/v1/audio/device", json=body)).status_code == 200
            assert percent(sinks(sound_server)["rh_two"]["volume"]) == pytest.approx(20, abs=0.01)
            body = {"DeviceId": "rh_two", "Volume": 55.0}
            assert (await http.post("/api/v1/audio/device", json=body)).status_code == 200
            assert percent(sinks(sound_server)["rh_two"]["volume"]) == pytest.approx(55, abs=0.01)

            # the master is the default output, 0-100; then another default
            assert (await http.post("/api/v1/audio/master", json={"volume": 45})).json() == {
                "status": "ok"
            }
            assert percent(sinks(sound_server)["rh_one"]["volume"]) == pytest.approx(45, abs=0.01)
            status = (await http.get("/api/v1/audio/status")).json()
            assert status["master"]["volume"] == pytest.approx(45, abs=0.01)
            body = {"DeviceId": "rh_two"}
            assert (await http.post("/api/v1/audio/default", json=body)).status_code == 200
            assert default_sink(sound_server) == "rh_two"
    reset(sound_server)


async def test_no_sound_server_is_503_with_what_to_start(
    desktop: VirtualDesktop, tmp_path: Path
) -> None:
    nowhere = f"unix:{tmp_path}/no-server/native"
    driver = X11Driver(
        settings=X11Settings(display=desktop.display, audio="on", pulse_server=nowhere)
    )
    async with (
        serve_openctrol(driver) as served,
        httpx.AsyncClient(base_url=served.url, headers=KEY, timeout=10) as http,
    ):
        response = await http.get("/api/v1/audio/status")
        assert response.status_code == 503
        body = response.json()
        assert body["error"] == "service_unavailable" and "pulseaudio --start" in body["details"]
        assert (await http.get("/api/v1/rd/monitors")).status_code == 200  # it serves on


async def test_os_power_on_a_linux_desktop(desktop: VirtualDesktop, tmp_path: Path) -> None:
    """Without a command, power is a dry run the answer admits; with one, it runs."""
    marker = tmp_path / "restarted"
    driver = X11Driver(
        settings=X11Settings(
            display=desktop.display, audio="off", power_commands={"restart": f"touch {marker}"}
        )
    )
    async with (
        serve_openctrol(driver) as served,
        httpx.AsyncClient(base_url=served.url, headers=KEY, timeout=10) as http,
    ):
        restart = await http.post("/api/v1/power", json={"action": "restart"})
        assert restart.json() == {"status": "ok", "action": "restart"}
        assert marker.exists()
        shutdown = await http.post("/api/v1/power", json={"Action": "shutdown"})
        assert shutdown.json() == {"status": "ok", "action": "shutdown", "dry_run": True}
