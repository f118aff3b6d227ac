"""The agent's native API against pyautogui, side by side on the same Xvfb, in one run.

    .venv/bin/python bench/bench_agent.py [--rounds 60]

The desktop holds terminals full of text (as bench_hop.py's does), so the JPEG is a realistic
size rather than that of an empty screen. Prints median / min / max in milliseconds for:
- a 1080p JPEG q75 screenshot: through our HTTP API (request to decoded JSON, base64 image) vs
  pyautogui.screenshot() + Pillow JPEG q75 (in-process, no HTTP at all);
- one input action (pointer move): through our HTTP API vs pyautogui.moveTo;
- typing 100 characters: through our HTTP API vs pyautogui.write.

The HTTP connection is reopened when the agent closed it: a peer's measurement longer than the
agent's keep-alive (5 s) would otherwise end the run with a broken pipe. Only the HTTP API and
the ``remotehands agent`` command are used, so the bench runs against older versions too.

Figures, not a test: nothing here passes or fails on time. pyautogui is installed on demand with
``--no-deps`` (its Linux dependency python3-xlib would shadow python-xlib).
"""

from __future__ import annotations

import argparse
import base64
import http.client
import io
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import httpx
from common import Client, free_port, measure, row

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from remotehands.agent.desktop import VirtualDesktop  # noqa: E402

TEXT = ("The quick brown fox jumps over the lazy dog 0123456789 " * 2)[:100]
FOLDERS = ("/usr/lib/python3", "/usr/share/doc", "/usr/bin")  # what the terminals list


class ReconnectingClient(Client):
    """:class:`common.Client` that opens a new connection when the agent closed the idle one
    (uvicorn drops a keep-alive connection after 5 s without a request)."""

    def call(self, method: str, path: str, body: object = None) -> bytes:
        try:
            return super().call(method, path, body)
        except (BrokenPipeError, ConnectionResetError, http.client.RemoteDisconnected):
            self.conn.close()
            return super().call(method, path, body)


def _ensure_pyautogui() -> None:
    import importlib.util

    if importlib.util.find_spec("pyautogui") is None:
        subprocess.run(
            [
                sys.executable,
                "-m",
                "pip",
                "install",
                "-q",
                "--no-deps",
                "pyautogui",
                "pymsgbox",
                "pytweening",
                "pyscreeze",
                "mouseinfo",
                "pyperclip",
            ],
            check=True,
        )


def _ensure_scrot() -> None:
    """pyautogui grabs the screen on X11 by running scrot and reading back its PNG file."""
    import shutil

    if shutil.which("scrot") is None:
        subprocess.run(
            ["apt-get", "install", "-y", "-qq", "scrot"],
            check=True,
            env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"},
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=60)
    args = parser.parse_args()
    _ensure_pyautogui()
    _ensure_scrot()

    terminals: list[subprocess.Popen[bytes]] = []
    with VirtualDesktop(size=(1920, 1080)) as desktop:
        os.environ.update(desktop.env)
        shown = {**os.environ, **desktop.env}
        for i, folder in enumerate(FOLDERS):
            terminals.append(subprocess.Popen(
                ["xterm", "-geometry", f"100x40+{i * 600}+{i * 80}", "-e", "sh", "-c",
                 f"ls -la {folder} | head -60; sleep 3600"], env=shown))  # fmt: skip
        os.environ["XDG_SESSION_TYPE"] = "x11"  # how pyscreeze learns it may use scrot
        port = free_port()
        env = {
            **os.environ,
            **desktop.env,
            "REMOTEHANDS_AGENT_PASSWORD": "bench",
            "MALLOC_MMAP_THRESHOLD_": "67108864",
            "MALLOC_TRIM_THRESHOLD_": "268435456",
        }
        agent = subprocess.Popen(
            [
                str(ROOT / ".venv/bin/remotehands"),
                "agent",
                "--driver",
                "x11",
                "--display",
                desktop.display,
                "--listen",
                f"127.0.0.1:{port}",
            ],
            env=env,
        )
        try:
            base = f"http://127.0.0.1:{port}"
            deadline = time.monotonic() + 20
            while True:
                try:
                    if httpx.get(base + "/health").status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                if time.monotonic() > deadline:
                    raise SystemExit("the agent did not start")
                time.sleep(0.05)
            token = httpx.post(base + "/auth/login", json={"password": "bench"}).json()["token"]
            client = ReconnectingClient(port, token)
            time.sleep(1)  # let the terminals finish printing
            shot = "/screenshot?format=jpeg&quality=75"
            size = len(json.loads(client.call("GET", shot))["image"]) * 3 // 4

            import pyautogui

            pyautogui.PAUSE = 0
            pyautogui.FAILSAFE = False

            def ours_shot() -> None:
                data = json.loads(client.call("GET", shot))
                assert data["width"] == 1920 and base64.b64decode(data["image"])[:2] == b"\xff\xd8"

            def peer_shot() -> None:
                buf = io.BytesIO()
                pyautogui.screenshot().save(buf, "JPEG", quality=75)

            positions = iter(range(10**9))

            def ours_move() -> None:
                i = next(positions)
                client.call("POST", "/mouse/move", {"x": 100 + i % 500, "y": 200})

            def peer_move() -> None:
                i = next(positions)
                pyautogui.moveTo(100 + i % 500, 200)

            def ours_type() -> None:
                client.call("POST", "/keyboard/type", {"text": TEXT})

            def peer_type() -> None:
                pyautogui.write(TEXT)

            rounds = args.rounds
            print(
                f"Xvfb 1920x1080x24, terminals of text (JPEG q75 about {size // 1024} KiB), "
                f"{rounds} rounds each, remotehands agent over loopback HTTP vs pyautogui "
                "in-process"
            )
            print(row("screenshot 1080p JPEG q75 - remotehands API", measure(ours_shot, rounds)))
            print(row("screenshot 1080p JPEG q75 - pyautogui+PIL", measure(peer_shot, rounds)))
            print(row("pointer move - remotehands API", measure(ours_move, rounds)))
            print(row("pointer move - pyautogui", measure(peer_move, rounds)))
            few = max(5, rounds // 6)
            print(row("type 100 chars - remotehands API", measure(ours_type, few, warmup=1)))
            print(row("type 100 chars - pyautogui", measure(peer_type, few, warmup=1)))
            client.close()
        finally:
            agent.terminate()
            agent.wait(10)
            for terminal in terminals:
                terminal.terminate()
                terminal.wait(10)


if __name__ == "__main__":
    main()
