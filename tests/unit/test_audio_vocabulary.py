"""The audio actions on the FakeDriver's sound server: each change answers the state read back,
changes made outside the agent show on the next read, bad input and a sound server that is
down answer the errors of the table."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from remotehands.agent.dispatch import Dispatcher
from remotehands.drivers.fake import FakeDriver, FakeSettings
from remotehands.errors import NotFoundError, ServiceUnavailableError, ValidationError

pytestmark = pytest.mark.anyio


@pytest.fixture
async def fake() -> AsyncIterator[tuple[FakeDriver, Dispatcher]]:
    driver = FakeDriver(64, 64)
    dispatcher = Dispatcher(driver)
    yield driver, dispatcher
    await dispatcher.aclose()


async def test_status_lists_devices_and_sessions(fake: tuple[FakeDriver, Dispatcher]) -> None:
    _, dispatcher = fake
    state = await dispatcher.run("audio.status")
    assert [(d["id"], d["default"]) for d in state["devices"]] == [
        ("fake-speakers", True),
        ("fake-headphones", False),
    ]
    assert state["sessions"] == [{"id": "1", "name": "fakeplayer", "pid": 4343, "volume": 100.0,
                                  "muted": False, "device_id": "fake-speakers"}]  # fmt: skip
    assert "audio" in dispatcher.capabilities


async def test_each_change_answers_what_it_changed_read_back(
    fake: tuple[FakeDriver, Dispatcher],
) -> None:
    driver, dispatcher = fake
    changed = await dispatcher.run("audio.volume", {"volume": 35})
    assert changed["device"]["id"] == "fake-speakers" and changed["device"]["volume"] == 35
    assert "session" not in changed
    changed = await dispatcher.run("audio.mute", {"session_id": "1"})
    assert changed == {"status": "ok", "session": {**changed["session"], "muted": True}}
    assert driver.audio_sessions[0].muted
    await dispatcher.run("audio.mute", {"session_id": "1", "muted": False})
    assert not driver.audio_sessions[0].muted
    changed = await dispatcher.run("audio.default", {"device_id": "fake-headphones"})
    assert changed["device"]["default"] is True
    move = {"session_id": "1", "device_id": "fake-headphones"}
    changed = await dispatcher.run("audio.move", move)
    assert changed["session"]["device_id"] == changed["device"]["id"] == "fake-headphones"
    # a change made outside the agent shows on the next read
    driver.audio_devices[1].volume = 12.0
    state = await dispatcher.run("audio.status")
    assert state["devices"][1]["volume"] == 12.0


async def test_bad_input_and_a_sound_server_that_is_down(
    fake: tuple[FakeDriver, Dispatcher],
) -> None:
    driver, dispatcher = fake
    with pytest.raises(ValidationError, match="volume"):
        await dispatcher.run("audio.volume", {"volume": 151})
    with pytest.raises(ValidationError, match="not both"):
        await dispatcher.run("audio.mute", {"device_id": "fake-speakers", "session_id": "1"})
    with pytest.raises(ValidationError, match="device_id"):
        await dispatcher.run("audio.default", {})
    with pytest.raises(NotFoundError, match="no output device 'nope'"):
        await dispatcher.run("audio.default", {"device_id": "nope"})
    with pytest.raises(NotFoundError, match="no audio session '9'"):
        await dispatcher.run("audio.move", {"session_id": "9", "device_id": "fake-speakers"})
    driver.audio_down = "no sound server: start pulseaudio"
    with pytest.raises(ServiceUnavailableError, match="start pulseaudio") as caught:
        await dispatcher.run("audio.status")
    assert (caught.value.code, caught.value.http_status) == ("service_unavailable", 503)
    driver.audio_down = None
    assert (await dispatcher.run("audio.status"))["devices"]


async def test_a_fake_device_without_audio_says_so() -> None:
    settings = FakeSettings(capabilities=frozenset({"screen", "audio"}))
    assert FakeDriver(settings=settings).capabilities == {"screen", "audio"}
    dispatcher = Dispatcher(FakeDriver(settings=FakeSettings(capabilities=frozenset({"screen"}))))
    with pytest.raises(Exception, match="no audio capability"):
        await dispatcher.run("audio.status")


def test_the_audio_group_calls_the_routes_of_its_subcommands() -> None:
    from click.testing import CliRunner

    from remotehands.cli.main import cli
    from tests.unit.test_client_fakeapi import AGENT_PASSWORD, FakeApi, serving

    with serving(FakeApi()) as api:
        env = {"REMOTEHANDS_AGENT_URL": api.url, "REMOTEHANDS_AGENT_PASSWORD": AGENT_PASSWORD}
        runs = {
            ("status",): ("GET", "/audio", None),
            ("volume", "40", "--session", "7"): ("POST", "/audio/volume",
                                                 {"volume": 40.0, "session_id": "7"}),
            ("mute",): ("POST", "/audio/mute", {"muted": True}),
            ("unmute", "--device", "sink-2"): ("POST", "/audio/mute",
                                               {"muted": False, "device_id": "sink-2"}),
            ("default", "sink-2"): ("POST", "/audio/default", {"device_id": "sink-2"}),
            ("move", "7", "sink-2"): ("POST", "/audio/move",
                                      {"session_id": "7", "device_id": "sink-2"}),
        }  # fmt: skip
        for args, (method, path, body) in runs.items():
            result = CliRunner().invoke(cli, ["audio", *args, "--json"], env=env)
            assert result.exit_code == 0, (args, result.output)
            seen = api.last
            assert (seen.method, seen.path, seen.body) == (method, path, body), args
        result = CliRunner().invoke(cli, ["audio", "volume", "200"], env=env)
        assert result.exit_code == 2 and "between 0 and 150" in result.output


def test_a_sound_server_refuses_output_names_pulseaudio_would_misread() -> None:
    from remotehands.agent.soundserver import SoundServer
    from remotehands.errors import ConfigError

    for outputs in ((), ("two words",), ("a=b",), ("",)):
        with pytest.raises(ConfigError):
            SoundServer(outputs)
    assert SoundServer(("rh_one", "rh.two-3")).env == {}  # nothing runs before start()
