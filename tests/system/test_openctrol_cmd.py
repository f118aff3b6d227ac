"""``remotehands agent --face openctrol`` and ``remotehands agent --driver openctrol``, as
processes: one agent answers Openctrol's API for a fake device, a second fronts it through the
openctrol driver and serves it on its native face."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from remotehands.testing.xapps import wait_until

pytestmark = pytest.mark.slow

REMOTEHANDS = str(Path(sys.executable).with_name("remotehands"))


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _up(url: str) -> bool:
    try:
        return httpx.get(url, timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


def _start(args: list[str], env: dict[str, str]) -> subprocess.Popen[str]:
    ours = ("REMOTEHANDS_AGENT", "REMOTEHANDS_DEVICE", "REMOTEHANDS_OPENCTROL")
    base = {k: v for k, v in os.environ.items() if not k.startswith(ours)}
    return subprocess.Popen(
        [REMOTEHANDS, "agent", *args], env={**base, **env}, stderr=subprocess.PIPE, text=True
    )


def _stop(process: subprocess.Popen[str]) -> str:
    process.terminate()
    try:
        _, err = process.communicate(timeout=20)
    except subprocess.TimeoutExpired:
        process.kill()
        _, err = process.communicate()
    return err


@pytest.fixture
def openctrol_agent() -> Iterator[str]:
    port = _free_port()
    process = _start(
        [
            "--driver",
            "fake",
            "--listen",
            f"127.0.0.1:{port}",
            "--face",
            "openctrol",
            "--openctrol-allow-ha-id",
            "ha-1",
            "--openctrol-allow-ha-id",
            "ha-2",
        ],
        {"REMOTEHANDS_AGENT_PASSWORD": "agent-pw"},
    )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until(lambda: process.poll() is not None or _up(f"{url}/api/v1/health"), timeout=20)
        assert process.poll() is None, process.stderr.read() if process.stderr else ""
        yield url
    finally:
        err = _stop(process)
        assert "Traceback" not in err, err


def test_the_face_takes_its_key_and_allowlist_from_the_command_line(openctrol_agent: str) -> None:
    key = {"X-Openctrol-Key": "agent-pw"}
    with httpx.Client(base_url=openctrol_agent, timeout=10) as http:
        for ha_id in ("ha-1", "ha-2"):
            ok = http.post("/api/v1/sessions/desktop", headers=key, json={"HaId": ha_id})
            assert ok.status_code == 200, ok.text
        refused = http.post("/api/v1/sessions/desktop", headers=key, json={"HaId": "ha-3"})
        assert refused.status_code == 401 and refused.json()["error"] == "unauthorized"
        # the native face is still there, beside it
        assert http.get("/health").json() == {"status": "ok"}


def test_an_allowlist_without_the_face_is_refused() -> None:
    done = subprocess.run(
        [REMOTEHANDS, "agent", "--driver", "fake", "--openctrol-allow-ha-id", "ha-1"],
        env={**os.environ, "REMOTEHANDS_AGENT_PASSWORD": "pw"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2
    assert "add --face openctrol" in done.stderr and "Traceback" not in done.stderr


def test_the_openctrol_driver_fronts_an_openctrol_agent(openctrol_agent: str) -> None:
    port = _free_port()
    front = _start(
        [
            "--driver",
            "openctrol",
            "--device-url",
            openctrol_agent,
            "--setting",
            "ha_id=ha-1",
            "--listen",
            f"127.0.0.1:{port}",
        ],
        {"REMOTEHANDS_DEVICE_PASSWORD": "agent-pw", "REMOTEHANDS_AGENT_PASSWORD": "front-pw"},
    )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until(lambda: front.poll() is not None or _up(f"{url}/health"), timeout=30)
        assert front.poll() is None, front.stderr.read() if front.stderr else ""
        with httpx.Client(base_url=url, timeout=20) as http:
            login = http.post("/auth/login", json={"password": "front-pw"})
            http.headers["Authorization"] = f"Bearer {login.json()['token']}"
            assert http.get("/screens").json()["screens"] == [
                {"id": 0, "width": 1280, "height": 800, "x": 0, "y": 0}
            ]
            shot = http.get("/screenshot")
            assert shot.status_code == 200, shot.text
            assert http.post("/keyboard/type", json={"text": "hi"}).status_code == 200
            assert (
                http.post(
                    "/audio/volume", json={"volume": 25, "device_id": "fake-headphones"}
                ).status_code
                == 200
            )
        with httpx.Client(base_url=openctrol_agent, timeout=10) as back:
            status = back.get("/api/v1/audio/status", headers={"X-Openctrol-Key": "agent-pw"})
            volumes = {d["id"]: d["volume"] for d in status.json()["devices"]}
            assert volumes["fake-headphones"] == pytest.approx(25.0)
    finally:
        err = _stop(front)
        assert "Traceback" not in err, err
