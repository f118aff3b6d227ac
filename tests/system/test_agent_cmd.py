"""``remotehands agent``: one device from its options or every device of a config file, and
what cannot work refused with one clear line and exit code 2."""

from __future__ import annotations

import functools
import json
import os
import queue
import signal
import socket
import subprocess
import sys
import threading
from pathlib import Path
from typing import IO, Any

import httpx
import pytest

from remotehands.testing.xapps import wait_until

# Each test starts the agent as its own process (or several): seconds each.
pytestmark = pytest.mark.slow

REMOTEHANDS = str(Path(sys.executable).with_name("remotehands"))


def _agent(*args: str, password: str | None = "pw") -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "REMOTEHANDS_AGENT_PASSWORD"}
    if password is not None:
        env["REMOTEHANDS_AGENT_PASSWORD"] = password
    return subprocess.run([REMOTEHANDS, "agent", *args], env=env, capture_output=True,
                          text=True, timeout=60)  # fmt: skip


def test_a_busy_port_is_a_clear_error() -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        done = _agent("--driver", "fake", "--listen", f"127.0.0.1:{port}")
    assert done.returncode == 2
    assert f"error: could not listen on 127.0.0.1:{port}" in done.stderr
    assert "Traceback" not in done.stderr


def test_bad_settings_are_clear_errors() -> None:
    unknown = _agent("--driver", "nope")
    assert unknown.returncode == 2 and "unknown driver 'nope'" in unknown.stderr
    listen = _agent("--driver", "fake", "--listen", "localhost")
    assert listen.returncode == 2 and "HOST:PORT" in listen.stderr
    no_password = _agent("--driver", "fake", password=None)
    assert no_password.returncode == 2 and "--password-file" in no_password.stderr
    not_enrolled = _agent("--driver", "fake", "--server", "http://127.0.0.1:9",
                          "--state-dir", "/nonexistent/state")  # fmt: skip
    assert not_enrolled.returncode == 2 and "--token ekvent_" in not_enrolled.stderr
    for done in (unknown, listen, no_password, not_enrolled):
        assert "Traceback" not in done.stderr


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def test_config_runs_every_device_it_lists(tmp_path: Path) -> None:
    password = tmp_path / "faces.pw"
    password.write_text("pw-from-file\n")
    password.chmod(0o600)
    ports = {"left": _free_port(), "right": _free_port()}
    config = tmp_path / "agent.toml"
    config.write_text("".join(
        f'[[devices]]\nname = "{name}"\ndriver = "fake"\nlisten = "127.0.0.1:{port}"\n'
        f'password_file = "faces.pw"\n[devices.settings]\nwidth = {300 + i}\n\n'
        for i, (name, port) in enumerate(ports.items())
    ))  # fmt: skip
    env = {k: v for k, v in os.environ.items() if k != "REMOTEHANDS_AGENT_PASSWORD"}
    agent = subprocess.Popen([REMOTEHANDS, "agent", "--config", str(config)], env=env,
                             stderr=subprocess.PIPE, text=True)  # fmt: skip
    try:
        for i, port in enumerate(ports.values()):
            base = f"http://127.0.0.1:{port}"
            wait_until(functools.partial(_answers, base + "/health"), timeout=30)
            login = httpx.post(base + "/auth/login", json={"password": "pw-from-file"})
            headers = {"Authorization": f"Bearer {login.json()['token']}"}
            screens = httpx.get(base + "/screens", headers=headers).json()
            assert screens["screens"][0]["width"] == 300 + i
        assert agent.poll() is None
    finally:
        agent.send_signal(signal.SIGINT)
        _, stderr = agent.communicate(timeout=30)
    assert agent.returncode == 0, stderr
    assert "device left: native on http://127.0.0.1:" in stderr
    assert "Traceback" not in stderr


def test_config_errors_are_clear(tmp_path: Path) -> None:
    config = tmp_path / "agent.toml"
    config.write_text('[[devices]]\nname = "x"\ndriver = "fake"\n[devices.settings]\nwidht = 3\n')
    bad = _agent("--config", str(config))
    assert bad.returncode == 2
    assert "device 'x': bad settings for the fake driver: unknown setting 'widht'" in bad.stderr
    mixed = _agent("--config", str(config), "--driver", "fake")
    assert mixed.returncode == 2 and "--driver cannot go with --config" in mixed.stderr
    missing = _agent("--config", str(tmp_path / "none.toml"))
    assert missing.returncode == 2 and "cannot read the agent config" in missing.stderr
    setting = _agent("--driver", "fake", "--setting", "width")
    assert setting.returncode == 2 and "is not KEY=VALUE" in setting.stderr
    value = _agent("--driver", "fake", "--setting", "width=wide")
    assert value.returncode == 2
    assert "bad settings for the fake driver: setting 'width'" in value.stderr
    for done in (bad, mixed, missing, setting, value):
        assert "Traceback" not in done.stderr


def _answers(url: str) -> bool:
    try:
        return httpx.get(url, timeout=1).status_code == 200
    except httpx.HTTPError:
        return False


def test_an_agent_fronts_a_tinypilot_served_by_another_agents_tinypilot_face() -> None:
    """``--face tinypilot --tinypilot-open`` on one agent, ``--driver tinypilot --device-url``
    on another: the second one's native face shows the first one's device."""
    kvm_port, front_port = _free_port(), _free_port()
    env = {k: v for k, v in os.environ.items() if k != "REMOTEHANDS_AGENT_PASSWORD"}
    kvm = subprocess.Popen(
        [REMOTEHANDS, "agent", "--driver", "fake", "--setting", "width=333", "--face",
         "tinypilot", "--tinypilot-open", "--listen", f"127.0.0.1:{kvm_port}"],
        env={**env, "REMOTEHANDS_AGENT_PASSWORD": "kvm-pw"}, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    front: subprocess.Popen[str] | None = None
    try:
        kvm_url = f"http://127.0.0.1:{kvm_port}"
        wait_until(functools.partial(_answers, kvm_url + "/health"), timeout=30)
        # opened: a client that is not on this machine gets a token without credentials
        relayed = httpx.post(kvm_url + "/api/v1/auth", headers={"X-Forwarded-For": "192.0.2.1"})
        assert relayed.status_code == 200 and "token" in relayed.json()
        front = subprocess.Popen(
            [REMOTEHANDS, "agent", "--driver", "tinypilot", "--device-url", kvm_url,
             "--listen", f"127.0.0.1:{front_port}"],
            env={**env, "REMOTEHANDS_AGENT_PASSWORD": "front-pw",
                 "REMOTEHANDS_DEVICE_PASSWORD": "kvm-pw"},
            stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        base = f"http://127.0.0.1:{front_port}"
        wait_until(functools.partial(_answers, base + "/health"), timeout=30)
        login = httpx.post(base + "/auth/login", json={"password": "front-pw"})
        headers = {"Authorization": f"Bearer {login.json()['token']}"}
        assert httpx.get(base + "/screens", headers=headers).json()["screens"][0]["width"] == 333
        typed = httpx.post(base + "/keyboard/type", json={"text": "Hi!"}, headers=headers)
        assert typed.json() == {"status": "ok"}
    finally:
        for process in (front, kvm):
            if process is not None:
                process.send_signal(signal.SIGINT)
                process.communicate(timeout=30)
    assert kvm.returncode == 0 and front is not None and front.returncode == 0


def test_json_logs_are_one_object_per_line_and_start_up_is_info() -> None:
    port = _free_port()
    env = {**os.environ, "REMOTEHANDS_AGENT_PASSWORD": "pw"}
    agent = subprocess.Popen([REMOTEHANDS, "agent", "--driver", "fake", "--json", "--listen",
                              f"127.0.0.1:{port}"], env=env, stderr=subprocess.PIPE,
                             text=True)  # fmt: skip
    assert agent.stderr is not None
    lines: queue.Queue[str] = queue.Queue()

    def read(stream: IO[str]) -> None:
        for line in stream:
            lines.put(line)

    reader = threading.Thread(target=read, args=(agent.stderr,), daemon=True)
    reader.start()
    records: list[dict[str, Any]] = []
    try:
        wait_until(functools.partial(_answers, f"http://127.0.0.1:{port}/health"), timeout=30)
        # /health may answer while start-up is still under way (the line comes once the
        # listener is up): wait for the line itself before the signal
        while not any(str(r["msg"]).startswith("device ") for r in records):
            records.append(json.loads(lines.get(timeout=30)))
    finally:
        agent.send_signal(signal.SIGINT)
        agent.wait(timeout=30)
        reader.join(timeout=30)
    while not lines.empty():
        records.append(json.loads(lines.get_nowait()))
    started = [r for r in records if str(r["msg"]).startswith("device ")]
    assert started and started[0]["level"] == "INFO"
    assert f"on http://127.0.0.1:{port}" in started[0]["msg"]
