"""The contract suite's drivers and its ``needs`` marker.

Every test of ``tests/contract`` runs once per driver of :data:`CONTRACT_DRIVERS`: the fake
driver, the fake driver playing a KVM (screen, keyboard, mouse, power, media and a switch), the
x11 driver on a real Xvfb (with the session's PulseAudio server for its audio, where
``pulseaudio`` is installed), the tinypilot driver in front of the agent's own TinyPilot face (on
a fake machine, over loopback HTTP), the pikvm driver in front of the agent's own PiKVM face
of that fake KVM, and the openctrol driver against the agent's Openctrol face fronting a fake
device. A test marked ``@pytest.mark.needs("clipboard", ...)`` is
skipped, with the reason, for a driver that lacks one of those capabilities.
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import sys
import tempfile
import threading
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from remotehands.agent.config import AgentConfig
from remotehands.agent.runtime import Agent, make_driver, plan_device
from remotehands.drivers.base import Driver
from remotehands.drivers.fake import FakeDriver
from remotehands.serving import bound_address, serve_http
from tests.integration.openctrol_harness import PASSWORD, serve_openctrol

_KVM = ["screen", "keyboard", "mouse", "power", "media", "switch"]

CONTRACT_DRIVERS: dict[str, Callable[[pytest.FixtureRequest], tuple[str, dict[str, Any]]]] = {
    "fake": lambda request: ("fake", {"width": 1280, "height": 800}),
    "fake-kvm": lambda request: ("fake", {"serial": "kvm", "capabilities": _KVM}),
    "x11": lambda request: ("x11", _x11_settings(request)),
    "tinypilot": lambda request: ("tinypilot", {}),
    # the pikvm driver, in front of the agent's own PiKVM face of a fake KVM
    "pikvm": lambda request: ("pikvm", request.getfixturevalue("pikvm_face")),
    "openctrol": lambda request: ("openctrol", {}),
}
"""Contract driver id -> (driver name, settings), given the test's request."""


def _x11_settings(request: pytest.FixtureRequest) -> dict[str, Any]:
    settings = {"display": request.getfixturevalue("desktop").display}
    if shutil.which("pulseaudio") is not None:  # its audio on the session's sound server
        settings["pulse_server"] = request.getfixturevalue("sound_server").address
    return settings


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "needs(*capabilities): skip for a driver without these capabilities"
    )


@contextlib.asynccontextmanager
async def _tinypilot_kvm() -> AsyncIterator[dict[str, Any]]:
    """A TinyPilot (the agent's TinyPilot face in front of a 1280x800 fake machine): the
    settings that reach it."""
    machine = FakeDriver(1280, 800)
    plan = plan_device("kvm", machine, listen="127.0.0.1:0", faces=["tinypilot"],
                       password="contract", password_file=None, pam=False)  # fmt: skip
    async with machine, serve_http(plan.app, "127.0.0.1:0") as server:
        yield {"url": f"http://{bound_address(server)}"}


@contextlib.asynccontextmanager
async def _openctrol_agent() -> AsyncIterator[dict[str, Any]]:
    """An Openctrol agent (the agent's Openctrol face in front of a 1280x800 fake device): the
    openctrol driver's settings that reach it."""
    with tempfile.TemporaryDirectory() as tmp:
        key = Path(tmp) / "openctrol.key"
        key.write_text(PASSWORD)
        device = FakeDriver(1280, 800)
        async with serve_openctrol(device, {"allow_ha_ids": ["remotehands"]}) as served:
            yield {"url": served.url, "password_file": str(key)}


DEVICES: dict[str, Callable[[], contextlib.AbstractAsyncContextManager[dict[str, Any]]]] = {
    "tinypilot": _tinypilot_kvm,
    "openctrol": _openctrol_agent,
}
"""Contract driver id -> the device it drives, served for the test: its settings."""


@pytest.fixture
def pikvm_face(tmp_path: Path) -> Iterator[dict[str, Any]]:
    """An agent serving a fake KVM's PiKVM face, on an event loop of its own thread (so that
    the sync ``CONTRACT_DRIVERS`` entry can ask for it); answers the pikvm driver's settings."""
    (tmp_path / "pw").write_text("contract-pw")
    (tmp_path / "pw").chmod(0o600)
    config = AgentConfig.model_validate(
        {
            "state_dir": str(tmp_path / "state"),
            "password_file": str(tmp_path / "pw"),
            "devices": [
                {
                    "name": "kvm",
                    "driver": "fake",
                    "listen": "127.0.0.1:0",
                    "faces": ["native", "pikvm"],
                    "settings": {"serial": "kvm", "capabilities": _KVM},
                }
            ],
        }
    )
    agent = Agent.from_config(config)
    run = agent.devices["kvm"]
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, name="pikvm face", daemon=True)
    thread.start()

    async def start() -> asyncio.Task[None]:
        return asyncio.create_task(agent.run())

    async def stop(task: asyncio.Task[None]) -> None:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)

    task = asyncio.run_coroutine_threadsafe(start(), loop).result(10)
    try:
        asyncio.run_coroutine_threadsafe(run.settled.wait(), loop).result(20)
        assert run.state == "running", run.error
        yield {"url": f"http://{run.address}", "password_file": str(tmp_path / "pw")}
    finally:
        asyncio.run_coroutine_threadsafe(stop(task), loop).result(20)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        loop.close()


_PRESS_AND_DIE = """
import asyncio, json, os, signal, sys
from remotehands.agent.runtime import make_driver
from remotehands.protocol.keys import parse_key

async def main():
    driver = make_driver(sys.argv[1], json.loads(sys.argv[2]))
    await driver.start()
    await driver.key(parse_key("shift"), True)
    await driver.button("left", True)
    os.kill(os.getpid(), signal.SIGKILL)  # as kill -9 would: nothing released

asyncio.run(main())
"""


@pytest.fixture
def left_down(request: pytest.FixtureRequest) -> Callable[[Any], Awaitable[None]]:
    """Leave Shift and the left button down on the driver's device as a killed agent would:
    pressed by another process of the same driver, killed with SIGKILL. A device that lives
    only in this process (the fake drivers, and the network drivers whose device this test
    serves) gets them pressed by the driver itself."""
    name, settings = CONTRACT_DRIVERS[request.node.callspec.params["driver"]](request)

    async def press(driver: Any) -> None:
        if name != "x11":
            from remotehands.protocol.keys import parse_key

            await driver.key(parse_key("shift"), True)
            await driver.button("left", True)
            return
        import json

        process = await asyncio.create_subprocess_exec(
            sys.executable, "-c", _PRESS_AND_DIE, name, json.dumps(settings)
        )
        assert await asyncio.wait_for(process.wait(), 20) == -9

    return press


@pytest.fixture(params=list(CONTRACT_DRIVERS))
async def driver(request: pytest.FixtureRequest) -> AsyncIterator[Any]:
    """A started driver of each kind, built as the agent builds one (name and settings)."""
    name, settings = CONTRACT_DRIVERS[request.param](request)
    async with contextlib.AsyncExitStack() as stack:
        if request.param in DEVICES:
            settings = {**settings, **await stack.enter_async_context(DEVICES[request.param]())}
        instance: Driver = make_driver(name, settings)
        marker = request.node.get_closest_marker("needs")
        async with instance:
            # checked once started: a driver may settle some capabilities as it starts (the x11
            # driver's audio is there when a sound server answers)
            lacking = [c for c in (marker.args if marker else ()) if not instance.has(c)]
            if lacking:
                pytest.skip(f"the {request.param} driver has no {', '.join(lacking)} capability")
            yield instance
