"""A gateway agent for a rack: one agent process, a TOML file listing three TinyPilot KVMs, a
real fleet server on loopback.

The KVMs are the agent's own TinyPilot face in front of FakeDriver machines, served over real
loopback HTTP; the third KVM's address answers nothing at first. The two that answer enroll and
act through the fleet as devices of type ``tinypilot``, each with its own hardware id and only
the capabilities a TinyPilot has. The third enrolls too and is online with its health saying
why it cannot serve, apart from its link's health; when its KVM comes up, the agent's retries
start its driver and it serves. When a KVM goes away mid-run its health says so, and the
others keep working.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import textwrap
from pathlib import Path
from typing import Any

import pytest

from remotehands.agent.config import load_config
from remotehands.agent.runtime import Agent, plan_device
from remotehands.drivers.fake import FakeDriver
from remotehands.serving import bound_address, serve_http
from remotehands.testing.xapps import eventually
from tests.integration.conftest import LiveServer
from tests.integration.test_tinypilot_face import DarkDriver

pytestmark = pytest.mark.anyio

PASSWORD = "kvm-face-password"
TINYPILOT_CAPABILITIES = {"screen", "keyboard", "mouse"}


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@contextlib.asynccontextmanager
async def _kvm(machine: FakeDriver, listen: str = "127.0.0.1:0") -> Any:
    """A TinyPilot (the agent's TinyPilot face) in front of ``machine``; answers its URL."""
    plan = plan_device("machine", machine, listen=listen, faces=["tinypilot"], password=PASSWORD,
                       password_file=None, pam=False)  # fmt: skip
    async with machine, serve_http(plan.app, listen) as server:
        yield f"http://{bound_address(server)}"


def _keys(machine: FakeDriver) -> list[str]:
    return [str(c.args["key"]) for c in machine.calls if c.name == "key" and c.args["down"]]


async def test_a_gateway_runs_every_kvm_and_one_failing_never_stops_the_others(
    live_server: LiveServer, tmp_path: Path
) -> None:
    fleet = live_server
    machines = {"kvm-a": FakeDriver(320, 200), "kvm-b": FakeDriver(640, 480)}
    late = FakeDriver(200, 100)
    late_port = _free_port()
    key = tmp_path / "kvm-b.key"
    key.write_text(PASSWORD + "\n")
    async with contextlib.AsyncExitStack() as kvms:
        kvm_a = contextlib.AsyncExitStack()
        kvms.push_async_exit(kvm_a)
        urls = {"kvm-a": await kvm_a.enter_async_context(_kvm(machines["kvm-a"])),
                "kvm-b": await kvms.enter_async_context(_kvm(machines["kvm-b"])),
                "kvm-c": f"http://127.0.0.1:{late_port}"}  # fmt: skip
        tokens = {name: await fleet.enrollment(name) for name in urls}
        config = tmp_path / "gateway.toml"
        config.write_text(
            textwrap.dedent(f"""
            server = "{fleet.url}"
            state_dir = "state"

            [[devices]]
            name = "kvm-a"
            driver = "tinypilot"
            tags = ["rack-1"]
            enrollment_token = "{tokens["kvm-a"]}"
            [devices.settings]
            url = "{urls["kvm-a"]}"

            [[devices]]
            name = "kvm-b"
            driver = "tinypilot"
            tags = ["rack-1"]
            enrollment_token = "{tokens["kvm-b"]}"
            [devices.settings]
            url = "{urls["kvm-b"]}"
            password_file = "{key.name}"
            layout = "de-DE"

            [[devices]]
            name = "kvm-c"
            driver = "tinypilot"
            tags = ["rack-1"]
            enrollment_token = "{tokens["kvm-c"]}"
            [devices.settings]
            url = "{urls["kvm-c"]}"
            timeout_s = 2
        """)
        )
        agent = Agent.from_config(load_config(config), retry_base_s=0.2, retry_cap_s=0.5,
                                  check_interval_s=0.2)  # fmt: skip
        devices = agent.devices
        task = asyncio.create_task(agent.run())
        try:
            for run in devices.values():
                await asyncio.wait_for(run.settled.wait(), 20)
            assert {name: run.state for name, run in devices.items()} == {
                "kvm-a": "running", "kvm-b": "running", "kvm-c": "retrying",
            }  # fmt: skip
            problem = devices["kvm-c"].problem
            assert (
                problem is not None and f"cannot reach the TinyPilot at {urls['kvm-c']}" in problem
            )

            async def fleet_device(name: str) -> dict[str, Any]:
                device = await fleet.device(name)
                assert device is not None, name
                return device

            async def all_online() -> bool:
                for name in urls:
                    device = await fleet.device(name)
                    if device is None or device["status"] != "online" or not device["health"]:
                        return False
                return True

            await eventually(all_online, timeout=20)
            for name in urls:
                device = await fleet_device(name)
                assert device["device_type"] == "tinypilot" and device["tags"] == ["rack-1"]
            hardware = {run.hardware_id for run in devices.values()}
            assert len(hardware) == 3 and None not in hardware

            # the two that answer act through the fleet, each on its own KVM
            for name, width in (("kvm-a", 320), ("kvm-b", 640)):
                device = await fleet_device(name)
                assert set(device["capabilities"]) >= TINYPILOT_CAPABILITIES
                assert not {"clipboard", "windows", "apps"} & set(device["capabilities"])
                assert device["health"]["device"] == {"state": "ok", "reason": None}
                base = f"/v1/devices/{device['id']}"
                screens = (await fleet.http.get(base + "/screens")).json()["screens"]
                assert screens[0]["width"] == width
                typed = await fleet.http.post(base + "/keyboard/type", json={"text": "zy"})
                assert typed.json() == {"status": "ok"}
            # kvm-b types for a German target: Z and Y swapped
            assert _keys(machines["kvm-a"])[-2:] == ["KeyZ", "KeyY"]
            assert _keys(machines["kvm-b"])[-2:] == ["KeyY", "KeyZ"]

            # the third is in the fleet, online, and says why it cannot serve
            down = await fleet_device("kvm-c")
            assert down["health"]["device"]["state"] == "down"
            assert "cannot reach the TinyPilot" in down["health"]["device"]["reason"]
            assert down["health"]["uptime_seconds"] > 0  # the link's own health is apart
            refused = await fleet.http.post(f"/v1/devices/{down['id']}/keyboard/type",
                                            json={"text": "x"})  # fmt: skip
            assert refused.status_code == 502 and refused.json()["error"] == "device_error"

            # its KVM comes up: the retries start its driver and the fleet sees it serve
            async with _kvm(late, f"127.0.0.1:{late_port}"):

                async def third_serves() -> bool:
                    device = await fleet.device("kvm-c")
                    health = (device or {}).get("health") or {}
                    state = (health.get("device") or {}).get("state")
                    return bool((device or {}).get("screens")) and state == "ok"

                await eventually(third_serves, timeout=20)
                assert devices["kvm-c"].state == "running"
                assert devices["kvm-c"].driver_starts == 1
                up = await fleet_device("kvm-c")
                assert up["screens"][0]["width"] == 200
                typed = await fleet.http.post(f"/v1/devices/{up['id']}/keyboard/type",
                                              json={"text": "ok"})  # fmt: skip
                assert typed.json() == {"status": "ok"} and _keys(late)[-2:] == ["KeyO", "KeyK"]

                # kvm-a's KVM goes away mid-run: its health says so, the others work on
                await kvm_a.aclose()

                async def a_failing() -> bool:
                    device = await fleet.device("kvm-a")
                    condition = ((device or {}).get("health") or {}).get("device") or {}
                    return condition.get("state") == "failing"

                await eventually(a_failing, timeout=20)
                failing = await fleet_device("kvm-a")
                assert "cannot reach the TinyPilot" in failing["health"]["device"]["reason"]
                assert failing["status"] == "online"
                b = await fleet_device("kvm-b")
                moved = await fleet.http.post(f"/v1/devices/{b['id']}/mouse/move",
                                              json={"x": 639, "y": 479})  # fmt: skip
                assert moved.json() == {"status": "ok"}
                assert machines["kvm-b"].pointer == (639, 479)
                assert not task.done()
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)

    # each device pinned the id it enrolled under, beside its credential
    state = tmp_path / "state"
    assert len(list(state.glob("credential-*.json"))) == 3
    assert len(list(state.glob("device-*.json"))) == 3


async def test_a_wrong_key_and_no_video_signal_each_say_why(tmp_path: Path) -> None:
    """A gateway without a server: a KVM refusing the agent's key does not start (retried,
    saying so); a KVM with no video signal runs (it can type) and its health says why it
    cannot show the screen."""
    (tmp_path / "wrong.key").write_text("not-the-key\n")
    async with _kvm(FakeDriver(64, 48)) as refusing, _kvm(DarkDriver(64, 48)) as dark:
        config = tmp_path / "gateway.toml"
        config.write_text(
            textwrap.dedent(f"""
            [[devices]]
            name = "refusing"
            driver = "tinypilot"
            [devices.settings]
            url = "{refusing}"
            password_file = "wrong.key"

            [[devices]]
            name = "dark"
            driver = "tinypilot"
            [devices.settings]
            url = "{dark}"
        """)
        )
        agent = Agent.from_config(load_config(config), retry_base_s=0.2, retry_cap_s=0.5,
                                  check_interval_s=0.2)  # fmt: skip
        task = asyncio.create_task(agent.run())
        try:
            refused, blind = agent.devices["refusing"], agent.devices["dark"]
            for run in (refused, blind):
                await asyncio.wait_for(run.settled.wait(), 20)
            assert refused.state == "retrying"
            condition = refused.condition()
            assert condition is not None and condition.state == "down"
            assert "refused the API key (403: Invalid API token or key)" in str(condition.reason)

            def blind_says_why() -> bool:
                found = blind.condition()
                return found is not None and found.state == "failing"

            await eventually(blind_says_why, timeout=20)
            assert blind.state == "running"
            assert str(blind.problem).startswith("no video signal: ")
            await eventually(lambda: refused.start_attempts >= 3, timeout=20)
            assert refused.driver_starts == 0 and not task.done()
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
