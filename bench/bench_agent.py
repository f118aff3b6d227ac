"""The agent's native API against pyautogui, side by side on the same Xvfb, in one run.

    .venv/bin/python bench/bench_agent.py [--rounds 60]

Prints median / min / max in milliseconds for:
- a 1080p JPEG q75 screenshot: through our HTTP API (request to decoded JSON, base64 image) vs
  pyautogui.screenshot() + Pillow JPEG q75 (in-process, no HTTP at all);
- one input action (pointer move): through our HTTP API vs pyautogui.moveTo;
- typing 100 characters: through our HTTP API vs pyautogui.write.

Figures, not a test: nothing here passes or fails on time. pyautogui is installed on demand with
``--no-deps`` (its Linux dependency python3-xlib would shadow python-xlib).
"""

from __future__ import annotations

import argparse
import base64
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

    with VirtualDesktop(size=(1920, 1080)) as desktop:
        os.environ.update(desktop.env)
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
            client = Client(port, token)

            import pyautogui

            pyautogui.PAUSE = 0
            pyautogui.FAILSAFE = False

            def ours_shot() -> None:
                data = json.loads(client.call("GET", "/screenshot?format=jpeg&quality=75"))
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
                f"Xvfb 1920x1080x24, {rounds} rounds each, remotehands agent over loopback "
                "HTTP vs pyautogui in-process"
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


if __name__ == "__main__":
    main()
