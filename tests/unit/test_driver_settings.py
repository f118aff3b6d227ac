"""Drivers built from a name and a mapping of settings, their capabilities checked against the
Protocols they implement, and their hardware ids."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from remotehands.agent.plugins import load_object
from remotehands.agent.runtime import DRIVERS, make_driver
from remotehands.drivers.base import (
    CAPABILITIES,
    CAPABILITY_PROTOCOLS,
    Driver,
    DriverSettings,
    Held,
    missing_methods,
    protocol_methods,
)
from remotehands.drivers.fake import FakeDriver, FakeSettings
from remotehands.drivers.remote import RemoteSettings
from remotehands.drivers.x11.driver import X11Driver, X11Settings
from remotehands.errors import ConfigError, DeviceError

pytestmark = pytest.mark.anyio


def test_every_driver_is_built_from_its_name_and_settings_alike() -> None:
    fake = make_driver("fake", {"width": 320, "height": "200"})
    assert isinstance(fake, FakeDriver) and (fake.width, fake.height) == (320, 200)
    assert fake.settings == FakeSettings(width=320, height=200)
    x11 = make_driver("x11", {"display": ":7", "timeout_s": 3})
    assert isinstance(x11, X11Driver)
    assert x11.settings == X11Settings(display=":7", timeout_s=3.0)
    # the import string of a driver class works as its name
    assert isinstance(make_driver("remotehands.drivers.fake:FakeDriver"), FakeDriver)
    for name, target in DRIVERS.items():
        # a network driver needs at least the device's address
        remote = issubclass(load_object(target, name).Settings, RemoteSettings)
        assert make_driver(name, {"url": "http://device.example"} if remote else {}).kind == name


def test_bad_settings_name_the_setting_and_what_to_do() -> None:
    with pytest.raises(ConfigError) as unknown:
        make_driver("fake", {"widht": 300})
    assert "unknown setting 'widht'" in unknown.value.details
    assert "the fake driver takes: width, height" in unknown.value.details
    with pytest.raises(ConfigError) as bad:
        make_driver("fake", {"width": 0})
    assert (
        "setting 'width'" in bad.value.details and "greater than or equal to 1" in bad.value.details
    )
    with pytest.raises(ConfigError, match="setting 'timeout_s'"):
        make_driver("x11", {"timeout_s": "soon"})
    with pytest.raises(ConfigError, match=r"unknown setting .display.*fake"):
        make_driver("fake", {"display": ":1"})


def test_unknown_drivers_and_non_drivers_are_refused() -> None:
    with pytest.raises(
        ConfigError, match=r"unknown driver 'nope': choose one of fake, (\w+, )*x11"
    ):
        make_driver("nope")
    with pytest.raises(ConfigError, match="not a driver class"):
        make_driver("remotehands.drivers.fake:FakeWindow")
    with pytest.raises(ConfigError, match=r"there is no module remotehands\.nowhere"):
        make_driver("remotehands.nowhere:Driver")
    with pytest.raises(ConfigError, match="has no Missing"):
        make_driver("remotehands.drivers.fake:Missing")


def test_the_capability_table_covers_the_protocols() -> None:
    assert set(CAPABILITY_PROTOCOLS) == {"screen", "keyboard", "mouse", "clipboard", "windows",
                                         "apps", "power", "media", "switch", "audio"}  # fmt: skip
    assert set(CAPABILITY_PROTOCOLS) <= set(CAPABILITIES)
    assert "release_all" in protocol_methods(CAPABILITY_PROTOCOLS["keyboard"])
    assert "held" in protocol_methods(CAPABILITY_PROTOCOLS["keyboard"])
    for cls in (FakeDriver, X11Driver):
        assert missing_methods(cls, cls.capabilities) == {}


def test_a_declared_capability_must_be_implemented() -> None:
    with pytest.raises(TypeError) as lacking:

        class HalfMouse(Driver):
            capabilities = frozenset({"mouse"})

            async def move(self, x: int, y: int) -> None:
                pass

    message = str(lacking.value)
    assert "HalfMouse declares capabilities it does not implement" in message
    assert "mouse needs button, click, scroll" in message

    with pytest.raises(TypeError, match="teleport needs <no Protocol>"):

        class Teleporter(Driver):
            capabilities = frozenset({"teleport"})

    with pytest.raises(TypeError, match="clipboard needs clipboard_get"):

        class SyncClipboard(Driver):  # methods that are not coroutines do not count
            capabilities = frozenset({"clipboard"})

            def clipboard_get(self) -> str:
                return ""

            async def clipboard_set(self, text: str) -> None:
                pass

    class Clip(Driver):
        kind = "clip"
        capabilities = frozenset({"clipboard"})

        async def clipboard_get(self) -> str:
            return ""

        async def clipboard_set(self, text: str) -> None:
            pass

    assert Clip().has("clipboard") and not Clip().has("screen")


class Announces(Driver):
    """A driver whose device announces a capability its class has no code for."""

    kind = "announces"

    def __init__(self, settings: DriverSettings | None = None) -> None:
        super().__init__(settings)
        self.capabilities = frozenset({"screen"})


def test_a_driver_changing_its_capabilities_per_device_is_still_checked() -> None:
    with pytest.raises(ConfigError, match=r"declares capabilities it lacks: \['screen'\]"):
        make_driver(f"{__name__}:Announces")


async def test_hardware_ids_come_from_the_device() -> None:
    a, b = FakeDriver(320, 200), FakeDriver(640, 480)
    assert await a.hardware_id() == await FakeDriver(320, 200).hardware_id()
    assert await a.hardware_id() != await b.hardware_id()
    assert await make_driver("fake", {"serial": "KVM-0042"}).hardware_id() == "KVM-0042"
    # x11: this machine and the display, as agents before 0.2 derived it (credentials match)
    machine = Path("/etc/machine-id").read_text().strip()
    expected = hashlib.sha256(f"{machine}|x11|:5".encode()).hexdigest()[:32]
    assert await X11Driver(":5").hardware_id() == expected
    assert await X11Driver(":6").hardware_id() != expected


async def test_fake_start_failure_and_held_input() -> None:
    failing = make_driver("fake", {"fail_start": "no answer from the KVM"})
    with pytest.raises(DeviceError, match="refused to start: no answer from the KVM"):
        await failing.start()
    driver = FakeDriver()
    assert await driver.held() == Held() and not await driver.held()
    with pytest.raises(TypeError):
        FakeDriver(10, settings=FakeSettings())
