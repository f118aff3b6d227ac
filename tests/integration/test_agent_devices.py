"""An agent of many devices, in-process against a real fleet server on loopback: three
FakeDriver devices and one more from a TOML file, one whose driver fails at start and one whose
enrollment is refused; the other two enroll, come online and act through the server, and keep
their credentials (one file each) for the next start. The one whose driver does not start
enrolls too, its health saying why, while the agent retries its driver; the refused one
stops."""

from __future__ import annotations

import asyncio
import logging
import textwrap
from pathlib import Path

import pytest

from remotehands.agent.config import load_config
from remotehands.agent.dispatch import Dispatcher
from remotehands.agent.link import AgentLink, load_or_enroll
from remotehands.agent.runtime import Agent
from remotehands.drivers.fake import FakeDriver
from remotehands.errors import AuthError, ConfigError, DeviceError
from remotehands.testing.xapps import eventually
from tests.integration.conftest import LiveServer

pytestmark = pytest.mark.anyio


@pytest.fixture(name="fleet")
def _fleet(live_server: LiveServer) -> LiveServer:
    return live_server


async def _stop(task: asyncio.Task[None]) -> None:
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)


async def test_many_devices_in_one_agent_and_one_failure_stops_alone(
    fleet: LiveServer, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    tokens = {name: await fleet.enrollment(name) for name in ("desk-a", "desk-b", "broken")}
    config = tmp_path / "agent.toml"
    config.write_text(
        textwrap.dedent(f"""
        server = "{fleet.url}"
        state_dir = "state"

        [[devices]]
        name = "desk-a"
        driver = "fake"
        tags = ["lab"]
        enrollment_token = "{tokens["desk-a"]}"
        [devices.settings]
        width = 320
        height = 200

        [[devices]]
        name = "desk-b"
        driver = "fake"
        enrollment_token = "{tokens["desk-b"]}"
        [devices.settings]
        width = 640
        height = 480

        [[devices]]
        name = "broken"
        driver = "fake"
        enrollment_token = "{tokens["broken"]}"
        [devices.settings]
        fail_start = "the KVM does not answer"

        [[devices]]
        name = "refused"
        driver = "fake"
        enrollment_token = "ekvent_not-a-token"
        [devices.settings]
        serial = "refused-1"
    """)
    )
    agent = Agent.from_config(load_config(config))
    devices = agent.devices
    caplog.set_level(logging.ERROR, logger="remotehands.agent.runtime")
    task = asyncio.create_task(agent.run())
    try:
        for run in devices.values():
            await asyncio.wait_for(run.settled.wait(), 20)
        assert {name: run.state for name, run in devices.items()} == {
            "desk-a": "running", "desk-b": "running", "broken": "retrying", "refused": "failed",
        }  # fmt: skip
        assert isinstance(devices["broken"].error, DeviceError)
        assert isinstance(devices["refused"].error, AuthError)
        logged = caplog.text
        assert (
            "device broken (fake driver) does not start; retrying it, the others run on" in logged
        )
        assert "the KVM does not answer" in logged and "device refused (fake driver)" in logged

        # the two healthy devices are online and act through the server, each on its driver
        async def online() -> bool:
            for name in ("desk-a", "desk-b"):
                device = await fleet.device(name)
                if device is None or device["status"] != "online":
                    return False
            return True

        await eventually(online, timeout=20)
        # the config's tags were added at enrollment
        assert [(await fleet.device(n) or {}).get("tags") for n in ("desk-a", "desk-b")] == [
            ["lab"],
            [],
        ]
        for name, width in (("desk-a", 320), ("desk-b", 640)):
            device = await fleet.device(name)
            assert device is not None
            base = f"/v1/devices/{device['id']}"
            assert (await fleet.http.get(base + "/screens")).json()["screens"][0]["width"] == width
            typed = await fleet.http.post(base + "/keyboard/type", json={"text": f"to {name}"})
            assert typed.json() == {"status": "ok"}
            driver = devices[name].plan.driver
            assert isinstance(driver, FakeDriver) and driver.typed == [f"to {name}"]
        assert devices["desk-a"].hardware_id != devices["desk-b"].hardware_id

        # the broken one is in the fleet, its health saying why, apart from its link's
        async def broken_says_why() -> bool:
            device = await fleet.device("broken")
            health = (device or {}).get("health") or {}
            return (device or {}).get("status") == "online" and "device" in health

        await eventually(broken_says_why, timeout=20)
        broken = await fleet.device("broken")
        assert broken is not None and broken["health"]["device"] == {
            "state": "down", "reason": "the fake device refused to start: the KVM does not answer"
        }  # fmt: skip
        assert devices["broken"].driver_starts == 0 and devices["broken"].state == "retrying"
        assert not task.done()
    finally:
        await _stop(task)

    # each device kept its own credential: the next start needs no token and is the same device
    assert len(list((tmp_path / "state").glob("credential-*.json"))) == 3
    ids = {name: (await fleet.device(name) or {}).get("id") for name in ("desk-a", "desk-b")}
    again = Agent.from_config(load_config(config))
    task = asyncio.create_task(again.run())
    try:
        for name in ("desk-a", "desk-b"):
            run = again.devices[name]
            await asyncio.wait_for(run.settled.wait(), 20)
            assert run.state == "running" and run.link is not None
            assert run.link.credential.device_id == ids[name]
            # one frame source per screen of the device, shared by its link (and faces)
            assert run.plan.frames is not None and run.link.frames is run.plan.frames
            await asyncio.wait_for(run.link.connected.wait(), 20)

        # a device whose link dies (deleted on the server: its credential is refused) stops
        # alone; the other one still acts
        assert (await fleet.http.delete(f"/v1/devices/{ids['desk-b']}")).status_code == 204
        await eventually(lambda: again.devices["desk-b"].state == "failed", timeout=20)
        assert isinstance(again.devices["desk-b"].error, AuthError)
        moved = await fleet.http.post(f"/v1/devices/{ids['desk-a']}/mouse/move",
                                      json={"x": 7, "y": 8})  # fmt: skip
        assert moved.json() == {"status": "ok"} and not task.done()
    finally:
        await _stop(task)


async def test_an_agent_whose_every_device_failed_says_so(tmp_path: Path) -> None:
    config = tmp_path / "agent.toml"
    config.write_text(
        textwrap.dedent("""
        server = "http://127.0.0.1:9"
        [[devices]]
        name = "one"
        driver = "fake"
        enrollment_token = "ekvent_x"
    """)
    )
    with pytest.raises(ConfigError, match=r"no device is running: one: cannot reach the server"):
        await asyncio.wait_for(Agent.from_config(load_config(config)).run(), 20)


async def test_a_driver_that_does_not_start_is_retried_until_it_does(tmp_path: Path) -> None:
    """A gateway whose only KVM is down keeps running and retrying it (with backoff), its
    state saying why; nothing else stops it."""
    config = tmp_path / "agent.toml"
    config.write_text(
        textwrap.dedent("""
        [[devices]]
        name = "one"
        driver = "fake"
        [devices.settings]
        fail_start = "unplugged"
    """)
    )
    agent = Agent.from_config(load_config(config), retry_base_s=0.01, retry_cap_s=0.05)
    run = agent.devices["one"]
    task = asyncio.create_task(agent.run())
    try:
        await asyncio.wait_for(run.settled.wait(), 20)
        assert run.state == "retrying" and run.problem is not None and "unplugged" in run.problem
        condition = run.condition()
        assert condition is not None and condition.state == "down"
        await eventually(lambda: run.start_attempts >= 4, timeout=20)
        assert run.state == "retrying" and not task.done() and run.driver_starts == 0
    finally:
        await _stop(task)


async def test_a_link_refused_before_its_welcome_stops_instead_of_retrying(
    fleet: LiveServer, tmp_path: Path
) -> None:
    """A device deleted on the server before its link first connects: the server closes the
    link at hello with "credential refused"; the agent stops that link (AuthError) rather than
    retrying forever."""
    token = await fleet.enrollment("gone")
    credential = await load_or_enroll(
        fleet.url, token, state_dir=tmp_path, hardware="hw-gone", device_type="desktop"
    )
    assert (await fleet.http.delete(f"/v1/devices/{credential.device_id}")).status_code == 204
    driver = FakeDriver()
    async with driver:
        link = AgentLink(credential, Dispatcher(driver), driver_name="fake",
                         device_type="desktop", hardware="hw-gone")  # fmt: skip
        with pytest.raises(AuthError, match="refused this device's credential"):
            await asyncio.wait_for(link.run(), 20)
