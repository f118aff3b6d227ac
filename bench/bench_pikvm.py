"""The PiKVM face and the pikvm driver against the agent's native API, on the same Xvfb, in
one run.

    .venv/bin/python bench/bench_pikvm.py [--rounds 40]

One agent fronts the desktop (x11 driver) with its native face and its PiKVM face on one
listener; a second agent fronts that PiKVM face with the pikvm driver. Prints median / min /
max in milliseconds for:

- a 1080p JPEG q80 snapshot: ``GET /api/streamer/snapshot`` (raw JPEG, X-KVMD headers; and with
  the login cookie) vs the native ``GET /screenshot?format=jpeg&quality=80`` (JSON, base64) of
  the same device (goal: the face at most 1.2x the native);
- typing 100 characters: the native ``POST /keyboard/type``; the pikvm driver in process
  (driver -> PiKVM face -> X); the second agent's native ``POST /keyboard/type`` (native API ->
  pikvm driver -> PiKVM face -> X).

Figures, not a test: nothing here passes or fails on time.
"""

from __future__ import annotations

import argparse
import asyncio
import http.client
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
from common import Client, free_port, is_up, measure, row, wait_for

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from remotehands.agent.desktop import VirtualDesktop  # noqa: E402
from remotehands.drivers.pikvm import PikvmDriver  # noqa: E402

TEXT = ("The quick brown fox jumps over the lazy dog 0123456789 " * 2)[:100]
FOLDERS = ("/usr/lib/python3", "/usr/share/doc", "/usr/bin")
PASSWORD = "bench"


class Raw:
    """One keep-alive connection, for the PiKVM face's own headers and answers."""

    def __init__(self, port: int, headers: dict[str, str]) -> None:
        self.port = port
        self.conn = http.client.HTTPConnection("127.0.0.1", port)
        self.headers = headers

    def get(self, path: str) -> tuple[http.client.HTTPResponse, bytes]:
        for attempt in range(2):
            try:
                self.conn.request("GET", path, headers=self.headers)
                response = self.conn.getresponse()
                return response, response.read()
            except (BrokenPipeError, ConnectionResetError, http.client.RemoteDisconnected):
                self.conn.close()
                self.conn = http.client.HTTPConnection("127.0.0.1", self.port)
                if attempt:
                    raise
        raise AssertionError("unreachable")


def _agent(args: list[str], env: dict[str, str]) -> subprocess.Popen[bytes]:
    return subprocess.Popen([str(ROOT / ".venv/bin/remotehands"), "agent", *args], env=env)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=40)
    args = parser.parse_args()
    processes: list[subprocess.Popen[bytes]] = []
    with VirtualDesktop(size=(1920, 1080)) as desktop, tempfile.TemporaryDirectory() as state:
        shown = {**os.environ, **desktop.env}
        for i, folder in enumerate(FOLDERS):
            processes.append(
                subprocess.Popen(
                    [
                        "xterm",
                        "-geometry",
                        f"100x40+{i * 600}+{i * 80}",
                        "-e",
                        "sh",
                        "-c",
                        f"ls -la {folder} | head -60; sleep 3600",
                    ],
                    env=shown,
                )
            )
        desk_port, kvm_port = free_port(), free_port()
        env = {**shown, "REMOTEHANDS_AGENT_PASSWORD": PASSWORD}
        try:
            processes.append(
                _agent(
                    [
                        "--driver",
                        "x11",
                        "--display",
                        desktop.display,
                        "--face",
                        "pikvm",
                        "--listen",
                        f"127.0.0.1:{desk_port}",
                        "--state-dir",
                        f"{state}/desk",
                    ],
                    env,
                )
            )
            desk = f"http://127.0.0.1:{desk_port}"
            wait_for(lambda: is_up(desk), "the desktop's agent answering")
            processes.append(
                _agent(
                    [
                        "--driver",
                        "pikvm",
                        "--device-url",
                        desk,
                        "--device-user",
                        "admin",
                        "--listen",
                        f"127.0.0.1:{kvm_port}",
                        "--state-dir",
                        f"{state}/kvm",
                    ],
                    {**env, "REMOTEHANDS_DEVICE_PASSWORD": PASSWORD},
                )
            )
            kvm = f"http://127.0.0.1:{kvm_port}"
            wait_for(lambda: is_up(kvm), "the pikvm agent answering")
            time.sleep(1)  # let the terminals finish printing

            native = Client(
                desk_port,
                httpx.post(desk + "/auth/login", json={"password": PASSWORD}).json()["token"],
            )
            through = Client(
                kvm_port,
                httpx.post(kvm + "/auth/login", json={"password": PASSWORD}).json()["token"],
            )
            headers = Raw(desk_port, {"X-KVMD-User": "admin", "X-KVMD-Passwd": PASSWORD})
            login = httpx.post(desk + "/api/auth/login", data={"user": "admin", "passwd": PASSWORD})
            cookie = Raw(desk_port, {"Cookie": f"auth_token={login.cookies['auth_token']}"})
            size = len(headers.get("/api/streamer/snapshot")[1])

            def face_headers() -> None:
                answer, body = headers.get("/api/streamer/snapshot")
                assert answer.status == 200 and answer.getheader("X-UStreamer-Width") == "1920"
                assert body[:2] == b"\xff\xd8"

            def face_cookie() -> None:
                assert cookie.get("/api/streamer/snapshot")[0].status == 200

            def native_shot() -> None:
                data = json.loads(native.call("GET", "/screenshot?format=jpeg&quality=80"))
                assert data["width"] == 1920

            loop = asyncio.new_event_loop()
            secret = Path(state) / "pw"
            secret.write_text(PASSWORD)
            driver = PikvmDriver.from_settings(
                {"url": desk, "password_file": str(secret), "auth": "cookie"}
            )
            loop.run_until_complete(driver.start())

            def native_type() -> None:
                native.call("POST", "/keyboard/type", {"text": TEXT})

            def driver_type() -> None:
                loop.run_until_complete(driver.type(TEXT))

            def chained_type() -> None:
                through.call("POST", "/keyboard/type", {"text": TEXT})

            rounds = args.rounds
            print(
                f"Xvfb 1920x1080x24, terminals of text (snapshot JPEG q80 {size // 1024} KiB), "
                f"{rounds} rounds, loopback HTTP"
            )
            shots = {
                "snapshot - native /screenshot (JSON b64)": measure(native_shot, rounds),
                "snapshot - PiKVM face, X-KVMD headers": measure(face_headers, rounds),
                "snapshot - PiKVM face, auth_token cookie": measure(face_cookie, rounds),
            }
            for name, samples in shots.items():
                print(row(name, samples, width=48))
            few = max(5, rounds // 4)
            typing = {
                "type 100 chars - native /keyboard/type": native_type,
                "type 100 chars - pikvm driver -> face -> X": driver_type,
                "type 100 chars - native -> pikvm driver -> face": chained_type,
            }
            for name, call in typing.items():
                print(row(name, measure(call, few, 1), width=48))
            loop.run_until_complete(driver.close())
            loop.close()
        finally:
            for process in reversed(processes):
                process.terminate()
                process.wait(10)


if __name__ == "__main__":
    main()
