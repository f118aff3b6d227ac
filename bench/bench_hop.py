"""The cost of the server hop: the same x11 agent asked straight (its native API) and through the
fleet server (``/v1/devices/{id}/...`` over the agent link), side by side in one run.

    .venv/bin/python bench/bench_hop.py [--rounds 60]

Prints median / min / max in milliseconds for a 1080p JPEG q75 screenshot and for one pointer
move. The desktop holds terminals full of text so that the JPEG is a realistic size. Figures,
not a test.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import httpx
from common import Client, free_port, is_up, measure, row, wait_for

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from remotehands.agent.desktop import VirtualDesktop  # noqa: E402

REMOTEHANDS = str(ROOT / ".venv/bin/remotehands")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=60)
    rounds = parser.parse_args().rounds
    procs: list[subprocess.Popen[bytes]] = []
    with VirtualDesktop(size=(1920, 1080)) as desktop, tempfile.TemporaryDirectory() as tmp:
        env = {**os.environ, **desktop.env, "REMOTEHANDS_OWNER_PASSWORD": "bench-owner-pw",
               "REMOTEHANDS_AGENT_PASSWORD": "bench-agent-pw"}  # fmt: skip
        try:
            for i, folder in enumerate(("/usr/lib/python3", "/usr/share/doc", "/usr/bin")):
                procs.append(subprocess.Popen(
                    ["xterm", "-geometry", f"100x40+{i * 600}+{i * 80}", "-e", "sh", "-c",
                     f"ls -la {folder} | head -60; sleep 3600"], env=env))  # fmt: skip
            data = Path(tmp) / "server"
            subprocess.run([REMOTEHANDS, "server", "init", "--data", str(data)], env=env,
                           check=True, capture_output=True)  # fmt: skip
            server_port, agent_port = free_port(), free_port()
            server_url = f"http://127.0.0.1:{server_port}"
            procs.append(subprocess.Popen(
                [REMOTEHANDS, "server", "--data", str(data), "--listen",
                 f"127.0.0.1:{server_port}", "--log-level", "warning"], env=env))  # fmt: skip
            wait_for(lambda: is_up(server_url), "the server start")
            owner = httpx.post(
                server_url + "/v1/auth/login",
                json={"username": "owner", "password": "bench-owner-pw"},
            )
            session = owner.json()["token"]
            enrollment = httpx.post(
                server_url + "/v1/devices/enrollment",
                json={},
                headers={"Authorization": f"Bearer {session}"},
            ).json()
            procs.append(subprocess.Popen(
                [REMOTEHANDS, "agent", "--driver", "x11", "--display", str(desktop.display),
                 "--server", server_url, "--token", enrollment["token"], "--listen",
                 f"127.0.0.1:{agent_port}", "--state-dir", str(Path(tmp) / "agent")],
                env={**env, "MALLOC_MMAP_THRESHOLD_": "67108864",
                     "MALLOC_TRIM_THRESHOLD_": "268435456"}))  # fmt: skip
            fleet = Client(server_port, session)

            def online() -> bool:
                devices = json.loads(fleet.call("GET", "/v1/devices?status=online"))["devices"]
                return bool(devices)

            wait_for(online, "the agent enrolment")
            device = json.loads(fleet.call("GET", "/v1/devices"))["devices"][0]["id"]
            agent_token = httpx.post(
                f"http://127.0.0.1:{agent_port}/auth/login", json={"password": "bench-agent-pw"}
            ).json()["token"]
            agent = Client(agent_port, agent_token)
            time.sleep(1)  # let the terminals finish printing

            shot = "/screenshot?format=jpeg&quality=75"
            size = len(json.loads(agent.call("GET", shot))["image"]) * 3 // 4
            positions = iter(range(10**9))

            def move(client: Client, prefix: str) -> None:
                i = next(positions)
                client.call("POST", prefix + "/mouse/move", {"x": 100 + i % 500, "y": 300})

            print(f"Xvfb 1920x1080, terminals of text (JPEG q75 about {size // 1024} KiB), "
                  f"{rounds} rounds each, one keep-alive HTTP connection per path")  # fmt: skip
            via_server = f"/v1/devices/{device}"
            timings: list[tuple[str, Callable[[], object]]] = [
                ("screenshot - straight from the agent", lambda: agent.call("GET", shot)),
                ("screenshot - through the server", lambda: fleet.call("GET", via_server + shot)),
                ("pointer move - straight from the agent", lambda: move(agent, "")),
                ("pointer move - through the server", lambda: move(fleet, via_server)),
            ]
            for name, fn in timings:
                print(row(name, measure(fn, rounds), width=46))
        finally:
            for proc in reversed(procs):
                proc.terminate()
            for proc in procs:
                proc.wait(15)


if __name__ == "__main__":
    main()
