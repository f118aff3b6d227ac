"""The fleet path with real processes on loopback: ``remotehands server`` and ``remotehands
agent --server`` on a real Xvfb, enrolled through a real token, driven through the server."""

from __future__ import annotations

import base64
import os
import signal
import socket
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from remotehands.agent.desktop import VirtualDesktop
from remotehands.testing.xapps import wait_until

# A server and an agent as processes, on a real Xvfb.
pytestmark = [pytest.mark.slow, pytest.mark.x11]

REMOTEHANDS = str(Path(sys.executable).with_name("remotehands"))
# Real processes on a real clock: a loaded machine can stall an agent for a second or more, which
# must not count as three missed heartbeats (the killed agent's socket closes at once anyway).
HEARTBEAT_S = 2.0
OWNER_PASSWORD = "owner-password-for-tests"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@dataclass
class Fleet:
    url: str
    data: Path
    env: dict[str, str]
    http: httpx.Client
    server: subprocess.Popen[bytes]

    def start_server(self) -> None:
        self.server = subprocess.Popen(
            [REMOTEHANDS, "server", "--data", str(self.data), "--listen",
             self.url.removeprefix("http://"), "--log-level", "warning"], env=self.env,
        )  # fmt: skip
        wait_until(lambda: _healthy(self.url), timeout=30)

    def stop_server(self) -> None:
        self.server.send_signal(signal.SIGINT)
        self.server.wait(20)


def _healthy(url: str) -> bool:
    try:
        return httpx.get(url + "/health", timeout=1).status_code == 200
    except httpx.HTTPError:
        return False


@pytest.fixture(scope="module")
def fleet() -> Iterator[Fleet]:
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "server"
        env = {**os.environ, "REMOTEHANDS_OWNER_PASSWORD": OWNER_PASSWORD,
               "REMOTEHANDS_HEARTBEAT_INTERVAL_S": str(HEARTBEAT_S)}  # fmt: skip
        env.pop("REMOTEHANDS_DATABASE_URL", None)
        subprocess.run([REMOTEHANDS, "server", "init", "--data", str(data)], env=env,
                       check=True, capture_output=True)  # fmt: skip
        url = f"http://127.0.0.1:{_free_port()}"
        placeholder: Any = None
        fleet = Fleet(url, data, env, httpx.Client(base_url=url, timeout=30), placeholder)
        fleet.start_server()
        login = fleet.http.post("/v1/auth/login",
                                json={"username": "owner", "password": OWNER_PASSWORD})  # fmt: skip
        fleet.http.headers["Authorization"] = f"Bearer {login.json()['token']}"
        try:
            yield fleet
        finally:
            fleet.stop_server()
            fleet.http.close()


def _agent(fleet: Fleet, desktop: VirtualDesktop, state: Path,
           token: str | None = None) -> subprocess.Popen[bytes]:  # fmt: skip
    args = [REMOTEHANDS, "agent", "--server", fleet.url, "--driver", "x11", "--display",
            str(desktop.display), "--state-dir", str(state)]  # fmt: skip
    if token:
        args += ["--token", token]
    return subprocess.Popen(args, env={**fleet.env, **desktop.env})


def _device(fleet: Fleet, device_id: str) -> dict[str, Any]:
    response = fleet.http.get(f"/v1/devices/{device_id}")
    assert response.status_code == 200, response.text
    device: dict[str, Any] = response.json()
    return device


def _ocr(png: bytes) -> str:
    with tempfile.NamedTemporaryFile(suffix=".png") as f:
        f.write(png)
        f.flush()
        done = subprocess.run(["tesseract", f.name, "stdout", "--psm", "6"], capture_output=True,
                              env={**os.environ, "OMP_THREAD_LIMIT": "1"}, timeout=60)  # fmt: skip
    return done.stdout.decode()


def _enroll_agent(
    fleet: Fleet, desktop: VirtualDesktop, state: Path, name: str
) -> tuple[subprocess.Popen[bytes], dict[str, Any], str]:
    """An agent process enrolled as a new device ``name`` (tagged ``name``), once it is online;
    the device, and the enrollment token it used."""
    enrollment = fleet.http.post("/v1/devices/enrollment", json={
        "suggested_name": name, "suggested_tags": [name]}).json()  # fmt: skip
    assert enrollment["token"].startswith("ekvent_")
    assert fleet.url in enrollment["install_cmd"]
    agent = _agent(fleet, desktop, state, enrollment["token"])

    def online() -> list[dict[str, Any]]:
        devices = fleet.http.get("/v1/devices", params={"tag": name}).json()["devices"]
        return [d for d in devices if d["status"] == "online"]

    try:
        wait_until(lambda: len(online()) == 1, timeout=20)
    except BaseException:
        agent.kill()
        agent.wait(10)
        raise
    return agent, online()[0], enrollment["token"]


# The journey is two tests: work through the server, then going and coming back. Each starts
# processes (server, agent, terminal, OCR) and waits on them, so each has a timeout of its own,
# which a machine busy with other work needs (two 30 s timeouts were seen at a load of 10).


@pytest.mark.timeout(90)
def test_enroll_type_read_back_and_go_offline(
    fleet: Fleet, desktop: VirtualDesktop, tmp_path: Path
) -> None:
    agent, device, _ = _enroll_agent(fleet, desktop, tmp_path / "agent-state", "rack-desktop")
    try:
        device_id = device["id"]
        assert device["name"] == "rack-desktop" and device["device_type"] == "desktop"
        assert {"screen", "keyboard", "mouse", "clipboard", "windows"} <= set(
            device["capabilities"])  # fmt: skip
        assert device["screens"][0]["width"] == 1280
        wait_until(lambda: _device(fleet, device_id)["health"] is not None, timeout=10)
        assert 0 <= _device(fleet, device_id)["health"]["memory_percent"] <= 100

        # a real terminal with a plain shell, in a large font for OCR
        term = subprocess.Popen(
            ["xterm", "-T", "fleet-term", "-geometry", "40x6+20+20", "-fa", "DejaVu Sans Mono",
             "-fs", "22", "-bg", "white", "-fg", "black", "-e", "bash", "--norc",
             "--noprofile"], env={**os.environ, **desktop.env, "PS1": "$ "},
        )  # fmt: skip
        try:
            base = f"/v1/devices/{device_id}"

            def term_window() -> dict[str, Any] | None:
                windows = fleet.http.get(base + "/windows").json()
                return next((w for w in windows if w["title"] == "fleet-term"), None)

            wait_until(lambda: term_window() is not None, timeout=15)
            window = term_window()
            assert window is not None and window["pid"] == term.pid
            focus = fleet.http.post(f"{base}/windows/{window['id']}/focus")
            assert focus.json() == {"status": "ok"}
            typed = fleet.http.post(base + "/keyboard/type",
                                    json={"text": "echo remotehands-$((6*7))\n"})  # fmt: skip
            assert typed.json() == {"status": "ok"}
            b = window["bounds"]

            def screen_text() -> str:
                shot = fleet.http.get(base + "/screenshot/region", params={
                    "x": b["x"], "y": b["y"], "width": b["width"], "height": b["height"],
                    "format": "png"})  # fmt: skip
                assert shot.status_code == 200
                return _ocr(base64.b64decode(shot.json()["image"]))

            # OCR may space out punctuation ("remotehands - 42"): compare without spaces
            wait_until(lambda: "remotehands-42" in screen_text().replace(" ", ""), timeout=30)
        finally:
            term.terminate()
            term.wait(10)

        # every action through the server was audited
        audit = fleet.http.get("/v1/audit", params={"device_id": device_id}).json()["entries"]
        assert {"keyboard.type", "screenshot.region", "window.focus"} <= {
            e["action"] for e in audit}  # fmt: skip

        # kill the agent: offline within three missed heartbeats (plus the watchdog's tick)
        agent.send_signal(signal.SIGKILL)
        agent.wait(10)
        wait_until(lambda: _device(fleet, device_id)["status"] == "offline",
                   timeout=3 * HEARTBEAT_S + 2)  # fmt: skip
        offline = fleet.http.post(f"/v1/devices/{device_id}/mouse/move", json={"x": 1, "y": 1})
        assert offline.status_code == 503 and offline.json()["error"] == "device_offline"
    finally:
        if agent.poll() is None:
            agent.kill()
            agent.wait(10)


@pytest.mark.timeout(90)
def test_agent_and_server_restarts_lose_no_device(
    fleet: Fleet, desktop: VirtualDesktop, tmp_path: Path
) -> None:
    state = tmp_path / "agent-state"
    agent, device, token = _enroll_agent(fleet, desktop, state, "rack-returning")
    try:
        device_id = device["id"]
        count = len(fleet.http.get("/v1/devices").json()["devices"])

        # restart it with its stored credential: the same device comes back
        agent.send_signal(signal.SIGKILL)
        agent.wait(10)
        wait_until(lambda: _device(fleet, device_id)["status"] == "offline", timeout=10)
        agent = _agent(fleet, desktop, state)
        wait_until(lambda: _device(fleet, device_id)["status"] == "online", timeout=20)
        assert len(fleet.http.get("/v1/devices").json()["devices"]) == count

        # restart the server: the agent comes back by itself, no device lost
        fleet.stop_server()
        fleet.start_server()
        wait_until(lambda: _device(fleet, device_id)["status"] == "online", timeout=20)
        moved = fleet.http.post(f"/v1/devices/{device_id}/mouse/move", json={"x": 5, "y": 6})
        assert moved.json() == {"status": "ok"}
        cursor = fleet.http.get(f"/v1/devices/{device_id}/screenshot/cursor-position").json()
        assert cursor == {"x": 5, "y": 6}

        # the used enrollment token cannot enroll a second device
        again = httpx.post(fleet.url + "/v1/agent/register", json={
            "enrollment_token": token, "hardware_id": "other"})  # fmt: skip
        assert again.status_code == 401

        # deleting the device cuts its agent off at once, and the agent stops
        assert fleet.http.delete(f"/v1/devices/{device_id}").status_code == 204
        assert agent.wait(30) != 0
    finally:
        if agent.poll() is None:
            agent.kill()
            agent.wait(10)
