"""The README's first command: ``remotehands demo`` brings the whole system up, and the CLI it
advertises works against it."""

from __future__ import annotations

import io
import json
import os
import select
import signal
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from PIL import Image

# The whole demo (server, agent, display) in processes, driven by the CLI.
pytestmark = pytest.mark.slow

REMOTEHANDS = str(Path(sys.executable).with_name("remotehands"))


def _cli(env: dict[str, str], *args: str) -> Any:
    done = subprocess.run([REMOTEHANDS, *args, "--json"], env=env, capture_output=True,
                          text=True, timeout=20)  # fmt: skip
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


@dataclass
class Demo:
    info: dict[str, Any]
    """What the demo printed (``--json``)."""
    cli_env: dict[str, str]
    """The environment its advertised ``export`` lines make."""


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Demo]:
    """``remotehands demo`` running for the module's tests; it must stop cleanly on SIGINT."""
    foreign = ("REMOTEHANDS_URL", "REMOTEHANDS_TOKEN", "REMOTEHANDS_DATABASE_URL")
    env = {k: v for k, v in os.environ.items() if k not in foreign}
    process = subprocess.Popen(
        [REMOTEHANDS, "demo", "--data", str(tmp_path_factory.mktemp("demo")), "--listen",
         "127.0.0.1:0", "--size", "1280x800", "--json"],
        env=env, stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert process.stdout is not None
        ready, _, _ = select.select([process.stdout], [], [], 25)
        assert ready, "the demo printed nothing within 25 s"
        info = json.loads(process.stdout.readline())
        cli_env = {**env, "REMOTEHANDS_URL": info["url"], "REMOTEHANDS_TOKEN": info["token"]}
        yield Demo(info, cli_env)
    finally:
        process.send_signal(signal.SIGINT)
        code = process.wait(20)
    assert code == 0


# Two tests on one demo, so that the demo's start (a server, an agent, a display) and the CLI's
# runs do not all fall in one test's time bound.


def test_demo_comes_up_and_its_advertised_commands_work(demo: Demo) -> None:
    info = demo.info
    assert info["url"].startswith("http://127.0.0.1:")
    assert info["console_url"] == info["url"] + "/"
    assert info["owner"] == "owner" and len(info["password"]) >= 12
    assert info["token"].startswith("rht_")
    assert f"export REMOTEHANDS_URL={info['url']}" in info["commands"]

    # the advertised commands work as printed, in a shell, whatever PATH holds
    advertised = next(c for c in info["commands"] if c.endswith(" devices"))
    shell = subprocess.run(advertised, shell=True, env=demo.cli_env, capture_output=True,
                           text=True, timeout=20)  # fmt: skip
    assert shell.returncode == 0 and "demo-desktop" in shell.stdout, shell.stderr
    devices = _cli(demo.cli_env, "devices")
    listed = devices["devices"] if isinstance(devices, dict) else devices
    assert [(d["name"], d["status"]) for d in listed] == [("demo-desktop", "online")]


def test_the_demo_serves_the_web_console_to_the_owner(demo: Demo) -> None:
    info = demo.info
    with httpx.Client(base_url=info["url"], timeout=10) as client:
        first = client.get(info["console_url"])
        assert first.status_code == 303 and first.headers["location"] == "/signin?next=%2F"
        signin = client.get("/signin")
        assert signin.status_code == 200 and 'type="password"' in signin.text
        signed = client.post(
            "/v1/auth/web/signin", json={"username": info["owner"], "password": info["password"]}
        )
        assert signed.status_code == 200, signed.text
        dashboard = client.get(info["console_url"])
        assert dashboard.status_code == 200 and "/static/js/dashboard.js" in dashboard.text


def test_the_cli_drives_the_demo_desktop(demo: Demo, tmp_path: Path) -> None:
    cli_env = demo.cli_env
    windows = _cli(cli_env, "windows", "demo-desktop")
    terminal = next(w for w in windows if w["title"] == "terminal")
    b = terminal["bounds"]
    region = f"{b['x']},{b['y']},{b['width']},{b['height']}"
    before = tmp_path / "before.png"
    _cli(cli_env, "screenshot", "demo-desktop", "--region", region, "-o", str(before))
    _cli(cli_env, "type", "demo-desktop", "echo typed through the fleet")
    _cli(cli_env, "key", "demo-desktop", "enter")
    full = tmp_path / "full.png"
    _cli(cli_env, "screenshot", "demo-desktop", "-o", str(full))
    assert Image.open(full).size == (1280, 800)
    after = tmp_path / "after.png"
    _cli(cli_env, "screenshot", "demo-desktop", "--region", region, "-o", str(after))
    first, second = Image.open(before), Image.open(io.BytesIO(after.read_bytes()))
    assert first.size == second.size and first.tobytes() != second.tobytes()

    audit = _cli(cli_env, "audit")
    entries = audit["entries"] if isinstance(audit, dict) else audit
    assert {"keyboard.type", "keyboard.key", "screenshot"} <= {e["action"] for e in entries}


def test_the_demo_desktop_has_audio_to_control(demo: Demo) -> None:
    state = _cli(demo.cli_env, "audio", "demo-desktop")
    assert [(d["id"], d["default"]) for d in state["devices"]] == [("remotehands", True)]
    changed = _cli(demo.cli_env, "audio", "demo-desktop", "volume", "30")
    assert changed["device"]["id"] == "remotehands"
    assert changed["device"]["volume"] == pytest.approx(30, abs=0.01)
    assert _cli(demo.cli_env, "audio", "demo-desktop", "mute")["device"]["muted"] is True
