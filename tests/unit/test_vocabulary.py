"""The vocabulary walk: every layer checked against :data:`remotehands.protocol.actions.ACTIONS`.

The rule (written in the table's module): SDK method = verb, CLI command = verb with dashes,
agent handler registered by the module of the row's capability, driver Protocol named for the
capability with the verb as its method when the driver does the action in one call; every row
names its result model. A new row that some layer lacks fails here.
"""

from __future__ import annotations

import inspect
import json
import re
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import orjson
import pytest
from click.testing import CliRunner
from PIL import Image, ImageDraw, ImageFont
from pydantic import BaseModel
from starlette.routing import Route

from remotehands.agent.auth import TokenStore, password_check
from remotehands.agent.capabilities import AGENT_CAPABILITIES, HANDLERS, handles
from remotehands.agent.dispatch import Dispatcher
from remotehands.agent.faces.native import create_native_app
from remotehands.cli import actions_cmd, audio_cmd, verbs
from remotehands.cli.main import cli, register
from remotehands.client import (
    ACTION_METHODS,
    ActionMethods,
    AgentClient,
    AsyncAgentClient,
    wire_name,
)
from remotehands.client.fleet import AsyncDevice, Device
from remotehands.client.results import as_model
from remotehands.drivers import base
from remotehands.drivers.base import EncodedFrame
from remotehands.drivers.fake import FakeDriver
from remotehands.drivers.x11.driver import X11Driver
from remotehands.errors import DeviceError, NotFoundError, ValidationError
from remotehands.protocol import params as P
from remotehands.protocol import results as R
from remotehands.protocol.actions import (
    ACTIONS,
    ACTIONS_BY_NAME,
    DRIVER_PRIMITIVES,
    VERBS,
    by_verb,
    match_route,
)
from remotehands.protocol.encoding import jsonable
from remotehands.protocol.models import Bounds
from remotehands.protocol.query import params_from_query
from remotehands.server.http.device_actions import router as device_router
from tests.unit.test_client_fakeapi import AGENT_PASSWORD, FakeApi, serving

PUBLIC = [a for a in ACTIONS if not a.step_only]


def draw_text(driver: FakeDriver, text: str, x: int, y: int, size: int = 24) -> None:
    """Black ``text`` on a white band, drawn into the fake's framebuffer (for OCR)."""
    image = Image.new("RGB", (driver.width, size * 2), "white")
    font = ImageFont.truetype("/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf", size)
    ImageDraw.Draw(image).text((x, size // 2), text, font=font, fill="black")
    band = np.asarray(image)[:, :, ::-1]  # RGB -> BGR
    driver.framebuffer[y - size // 2 : y - size // 2 + size * 2, :, :3] = band


def _concrete(path: str) -> str:
    return re.sub(r"{(\w+)}", lambda m: "123" if m.group(1) == "id" else "slot1", path)


# -- the table itself -------------------------------------------------------------------------


def test_wire_names_and_routes_are_unique() -> None:
    assert len({a.name for a in ACTIONS}) == len(ACTIONS)
    assert len({(a.method, a.path) for a in ACTIONS}) == len(ACTIONS)


def test_each_verb_has_one_own_route_and_a_second_route_keeps_its_older_name() -> None:
    for verb in {a.verb for a in ACTIONS}:
        rows = [a for a in ACTIONS if a.verb == verb]
        assert [a for a in rows if a.primary] == [VERBS[verb]]
        for second in (a for a in rows if not a.primary):
            assert second.aliases, second.name
    assert VERBS["key"].name == "keyboard.key"
    assert ACTIONS_BY_NAME["keyboard.hotkey"].verb == "key"
    assert ACTIONS_BY_NAME["keyboard.hotkey"].sdk_method == "hotkey"


def test_sdk_names_are_unique_and_name_their_action() -> None:
    names = [n for a in PUBLIC for n in a.names]
    assert len(names) == len(set(names))
    for spec in PUBLIC:
        for name in spec.names:
            assert by_verb(name) is spec
            assert by_verb(name.replace("_", "-")) is spec


def test_every_action_has_a_result_model() -> None:
    for spec in ACTIONS:
        assert issubclass(spec.result, BaseModel), spec.name
        assert spec.result.__module__ == R.__name__, spec.name
        assert spec.params.__module__ == P.__name__, spec.name


def test_one_query_parser_keeps_lists_for_list_fields() -> None:
    spec = ACTIONS_BY_NAME["screenshot"]
    pairs = [("format", "png"), ("upload_header", "A: 1"), ("format", "jpeg"),
             ("upload_header", "B: 2")]  # fmt: skip
    assert params_from_query(spec, pairs) == {"format": "jpeg", "upload_header": ["A: 1", "B: 2"]}


# -- the agent --------------------------------------------------------------------------------


def test_the_agent_handles_every_action_once_in_the_module_of_its_capability() -> None:
    assert set(HANDLERS) == {a.name for a in ACTIONS}
    for spec in ACTIONS:
        module = HANDLERS[spec.name].__module__.rsplit(".", 1)[-1]
        assert module == (spec.capability or module), spec.name
        if spec.capability is None:
            assert module in ("sequence", "log"), spec.name


def test_a_second_handler_for_an_action_is_refused() -> None:
    async def again(ctx: Any, params: Any) -> BaseModel:
        return R.Ok()

    with pytest.raises(LookupError, match="two handlers"):
        handles("mouse.click")(again)
    with pytest.raises(LookupError, match="no such action"):
        handles("mouse.wiggle")(again)
    assert HANDLERS["mouse.click"].__name__ == "click"


def test_the_agent_announces_its_own_capabilities() -> None:
    announced = Dispatcher(FakeDriver()).capabilities
    assert set(AGENT_CAPABILITIES) <= set(announced)
    assert FakeDriver.capabilities <= set(announced)

    class ScreenOnly(FakeDriver):
        capabilities = frozenset({"screen"})

    assert Dispatcher(ScreenOnly()).capabilities == [
        "act",
        "ocr",
        "screen",
        "sequence",
        "stability",
    ]


# Parameters for each action on a FakeDriver with a window 0x400001 (and 0x400002 to close).
SAMPLES: dict[str, dict[str, Any]] = {
    "screenshot": {"format": "png"},
    "screenshot.region": {"x": 1, "y": 2, "width": 30, "height": 40, "scale": 0.5},
    "screenshot.cursor": {},
    "screenshots": {"variants": [{"name": "a", "scale_x": 0.5, "scale_y": 0.5}]},
    "screens": {},
    "mouse.move": {"x": 5, "y": 5},
    "mouse.click": {"x": 3, "y": 3},
    "mouse.double_click": {},
    "mouse.scroll": {"delta_y": 2},
    "mouse.drag": {"from_x": 1, "from_y": 1, "to_x": 9, "to_y": 9, "duration_ms": 0},
    "mouse.down": {},
    "mouse.up": {},
    "keyboard.type": {"text": "hé"},
    "keyboard.hotkey": {"keys": ["ctrl", "s"]},
    "keyboard.key": {"keys": "ctrl+v"},
    "keyboard.down": {"key": "shift"},
    "keyboard.up": {"key": "shift"},
    "clipboard.set": {"text": "hello"},
    "clipboard.get": {"max_bytes": 3},
    "clipboard.slot_store": {"name": "a", "text": "xyz"},
    "clipboard.slots": {},
    "clipboard.slot_get": {"name": "a"},
    "clipboard.slot_restore": {"name": "a"},
    "clipboard.capture": {"captures": [{"slot": "b", "settle_ms": 0}]},
    "clipboard.slot_delete": {"name": "a"},
    "clipboard.slots_clear": {},
    "windows.list": {},
    "windows.focused": {},
    "dialog.get": {},
    "dialog.close": {"wait_dialog_gone_ms": 0},
    "window.focus": {"id": 0x400001},
    "window.move": {"id": 0x400001, "bounds": {"x": 1, "y": 2, "width": 30, "height": 40}},
    "window.close": {"id": 0x400002},
    "application.open": {"path": "/bin/true"},
    "application.running": {"name": "nothing-here"},
    "application.close": {"window_id": 0x400001},
    "sleep": {"ms": 1},
    "sequence": {"steps": [{"type": "mouse.click", "x": 1, "y": 1}, {"type": "screens"}]},
    "actions": {"limit": 3},
    "power.state": {},
    "power.off": {"timeout_s": 5},
    "power.on": {"timeout_s": 5},
    "power.off_hard": {"wait": False},
    "power.reset_hard": {},
    "power.click": {"button": "reset"},
    "power.restart": {},
    "power.shutdown": {"wait": False},
    "media.state": {},
    "media.upload": {"name": "needs-a-body.iso"},  # refused without its streamed body
    "media.fetch": {"url": "http://127.0.0.1:9/unreachable.iso"},  # refused: nothing listens
    "media.mount": {"name": "stored.iso", "cdrom": False, "rw": True},
    "media.eject": {},
    "media.remove": {"name": "stored.iso"},
    "switch.ports": {},
    "switch.set": {"port": 2},
    "switch.beacon": {"port": 1, "on": True},
    "switch.power": {"port": 1, "action": "off", "timeout_s": 5},
    "switch.click": {"port": 1, "button": "power", "timeout_s": 5},
    "audio.status": {},
    "audio.volume": {"volume": 30},
    "audio.mute": {"session_id": "1"},
    "audio.default": {"device_id": "fake-headphones"},
    "audio.move": {"session_id": "1", "device_id": "fake-headphones"},
    "ocr": {"x": 0, "y": 100, "width": 320, "height": 100},
    "ocr.find": {"text": "hello world"},
    "ocr.click": {"text": "SAVE"},
    "ocr.wait": {"text": "hello", "timeout_ms": 5000},
    "act": {"steps": [{"type": "mouse.move", "x": 5, "y": 5}], "stable_window_ms": 0},
}

# Actions that SAMPLES runs and that fail on purpose, with the error they give.
REFUSED = {"media.upload": ValidationError, "media.fetch": DeviceError}


async def _one_chunk(data: bytes) -> AsyncIterator[bytes]:
    yield data


@pytest.fixture
async def dispatcher() -> AsyncIterator[Dispatcher]:
    driver = FakeDriver(320, 200)
    draw_text(driver, "Hello World Save", 10, 130)
    driver.add_window("one", Bounds(x=0, y=0, width=50, height=50))
    driver.add_window("two", Bounds(x=10, y=10, width=50, height=50))
    await driver.media_upload("stored.iso", _one_chunk(b"iso"), 3)
    dispatcher = Dispatcher(driver)
    yield dispatcher
    await dispatcher.aclose()


@pytest.mark.anyio
async def test_every_action_answers_its_result_model_and_run_is_its_wire_form(
    dispatcher: Dispatcher,
) -> None:
    assert set(SAMPLES) == {a.name for a in ACTIONS}
    for name, params in SAMPLES.items():  # in an order where each finds what it needs
        spec = ACTIONS_BY_NAME[name]
        if name in REFUSED:
            with pytest.raises(REFUSED[name]):
                await dispatcher.call(name, params)
            continue
        result = await dispatcher.call(name, params)
        assert isinstance(result, spec.result), spec.name
        wire = R.to_wire(result)
        json.dumps(jsonable(wire))  # JSON-ready once images are text
    assert await dispatcher.run("screens") == {
        "screens": [{"id": 0, "width": 320, "height": 200, "x": 0, "y": 0}]
    }
    assert await dispatcher.run("clipboard.slots_clear") is None


@pytest.mark.anyio
async def test_the_sdk_reads_every_answer_back_as_its_result_model(
    dispatcher: Dispatcher,
) -> None:
    steps = [{"type": "screenshot", "format": "png"}, {"type": "windows.list"},
             {"type": "clipboard.slot_restore", "slot_name": "nope"}]  # fmt: skip
    samples = {**SAMPLES, "sequence": {"steps": steps, "on_error": "continue"}}
    for name, params in samples.items():
        if name in REFUSED:
            continue
        wire = await dispatcher.run(name, params)
        sent = orjson.loads(orjson.dumps(jsonable(wire)))  # as HTTP carries it: base64 images
        model = as_model(ACTIONS_BY_NAME[name].sdk_method, sent)
        assert isinstance(model, ACTIONS_BY_NAME[name].result), name
        assert orjson.dumps(jsonable(R.to_wire(model))) == orjson.dumps(jsonable(wire)), name
    with pytest.raises(DeviceError, match="is not a CursorPosition"):
        as_model("screenshot.cursor", {"x": 1})


@pytest.mark.anyio
async def test_call_takes_the_parameter_model_too(dispatcher: Dispatcher) -> None:
    result = await dispatcher.call("screenshot.cursor", P.NoParams())
    assert result == R.CursorPosition(x=0, y=0)
    moved = await dispatcher.call("mouse.move", P.MoveParams(x=7, y=8))
    assert moved == R.Ok()
    assert await dispatcher.run("screenshot.cursor") == {"x": 7, "y": 8}
    assert json.loads(dispatcher.log.recent(5)[1]["params"]) == {"x": 7, "y": 8}  # newest first


# -- a device that encodes its own frames -----------------------------------------------------


class KvmLike(FakeDriver):
    """A FakeDriver that also hands out its own JPEG, as a KVM's streamer would."""

    FRAME = b"\xff\xd8 the device's own JPEG \xff\xd9"

    async def snapshot(self, screen_id: int = 0) -> EncodedFrame | None:
        self._record("snapshot", screen_id=screen_id)
        return EncodedFrame(self.FRAME, "jpeg", self.width, self.height)


@pytest.mark.anyio
async def test_the_device_frame_passes_through_untouched_when_nothing_needs_pixels() -> None:
    driver = KvmLike(320, 200)
    assert isinstance(driver, base.EncodedScreen)
    dispatcher = Dispatcher(driver)
    shot = await dispatcher.run("screenshot", {})
    assert shot["image"] is KvmLike.FRAME
    assert (shot["width"], shot["height"], shot["bytes"]) == (320, 200, len(KvmLike.FRAME))
    assert (shot["native_width"], shot["scale"], shot["stable"]) == (320, 1.0, None)
    assert driver.call_names() == ["snapshot"]
    stable = {"wait_stable": True, "stable_window_ms": 0, "timeout_ms": 50}
    for needs_pixels in ({"scale": 0.5}, {"cursor_ring": True}, {"format": "png"}, stable):
        driver.calls.clear()
        shot = await dispatcher.run("screenshot", needs_pixels)
        assert shot["image"] != KvmLike.FRAME, needs_pixels
        assert "grab" in driver.call_names(), needs_pixels
    driver.calls.clear()
    region = await dispatcher.run("screenshot.region", {"x": 0, "y": 0, "width": 8, "height": 8})
    assert region["image"][:2] == b"\xff\xd8" and region["width"] == 8
    assert driver.call_names() == ["grab"]
    # the frame id of a passed-through frame maps clicks like any other
    await dispatcher.run("mouse.click", {"x": 4, "y": 5, "frame_id": shot["frame_id"]})
    assert driver.pointer == (4, 5)
    await dispatcher.aclose()


# -- the faces --------------------------------------------------------------------------------


def test_the_native_face_serves_exactly_the_table_routes() -> None:
    tokens = TokenStore(password_check(password="pw", password_file=None, pam=False))
    app = create_native_app(Dispatcher(FakeDriver()), tokens)
    served = {
        (method, route.path)
        for route in app.routes
        if isinstance(route, Route) and route.name in ACTIONS_BY_NAME
        for method in route.methods or ()
        if method != "HEAD"
    }
    assert served == {(a.method, a.path) for a in PUBLIC}
    others = {r.path for r in app.routes if isinstance(r, Route)} - {a.path for a in PUBLIC}
    assert others == {"/health", "/auth/login", "/auth/logout", "/auth/token-info"}


def test_the_server_relays_exactly_the_table_routes() -> None:
    paths = {r.path for r in device_router.routes if isinstance(r, Route)}
    assert paths == {"/v1/devices/{device_id}/{path:path}"}
    for spec in ACTIONS:
        found = match_route(spec.method, _concrete(spec.path))
        assert found is not None and found[0] is spec, spec.name
    assert match_route("GET", "/mouse/click") is None


# -- the SDK ----------------------------------------------------------------------------------


def test_the_sdk_has_a_method_for_every_verb_and_alias() -> None:
    assert {a.name: a.sdk_method for a in PUBLIC} == ACTION_METHODS
    for client in (AgentClient, AsyncAgentClient, Device, AsyncDevice):
        assert issubclass(client, ActionMethods)
    for spec in PUBLIC:
        for name in (spec.verb, *spec.names):
            method = getattr(ActionMethods, name)
            assert callable(method), name
            assert wire_name(name) == (spec.name if name != spec.verb else VERBS[name].name)
    assert not hasattr(ActionMethods, "sleep")
    assert vars(ActionMethods)["type"] is vars(ActionMethods)["type_text"]


# -- the CLI ----------------------------------------------------------------------------------


_COMMAND_TABLE = {**verbs.COMMANDS, **actions_cmd.COMMANDS, **audio_cmd.COMMANDS}
"""The device command tables ``remotehands.cli.main`` loads."""


@pytest.fixture(scope="module")
def fake_agent() -> Iterator[FakeApi]:
    for name, (target, help_text) in _COMMAND_TABLE.items():
        register(name, target, help_text)
    with serving(FakeApi()) as api:
        yield api


def _files(tmp: Path) -> dict[str, str]:
    steps = tmp / "steps.json"
    steps.write_text(json.dumps([{"type": "mouse.click", "x": 1, "y": 2}]))
    variants = tmp / "variants.json"
    variants.write_text(json.dumps([{"name": "a", "format": "png"}]))
    image = tmp / "image.iso"
    image.write_bytes(b"\x00iso" * 1000)
    return {"STEPS": str(steps), "VARIANTS": str(variants), "SHOT": str(tmp / "s.png"),
            "IMAGE": str(image)}  # fmt: skip


CLI_ARGS: dict[str, list[str]] = {
    "screenshot": ["-o", "SHOT"],
    "screenshot-region": ["0", "0", "10", "10", "-o", "SHOT"],
    "cursor-position": [],
    "screenshots": ["VARIANTS"],
    "screens": [],
    "move": ["1", "2"],
    "click": ["1", "2"],
    "double-click": ["1", "2"],
    "scroll": ["--dy", "1"],
    "drag": ["1", "2", "3", "4"],
    "mouse-down": [],
    "mouse-up": [],
    "type": ["hi"],
    "type-text": ["hi"],
    "key": ["ctrl+v"],
    "hotkey": ["ctrl", "v"],
    "key-down": ["shift"],
    "key-up": ["shift"],
    "clipboard-get": [],
    "clipboard-set": ["x"],
    "clipboard-slots": [],
    "slot-get": ["s1"],
    "slot-store": ["s1", "t"],
    "slot-delete": ["s1"],
    "slots-clear": [],
    "slot-restore": ["s1"],
    "clipboard-capture": ["s1"],
    "sequence": ["STEPS"],
    "windows": [],
    "focused-window": [],
    "dialog": [],
    "dialog-close": [],
    "focus-window": ["0x10"],
    "move-window": ["0x10", "1", "2", "30", "40"],
    "close-window": ["0x10"],
    "open-app": ["/bin/true"],
    "app-running": ["x"],
    "close-app": ["0x10"],
    "actions": [],
    "power-state": [],
    "power-on": [],
    "power-off": ["--timeout", "5"],
    "power-off-hard": ["--no-wait"],
    "power-reset-hard": [],
    "power-click": ["reset"],
    "power-restart": [],
    "power-shutdown": [],
    "media-state": [],
    "media-upload": ["IMAGE"],
    "media-fetch": ["http://example.com/a.iso"],
    "media-mount": ["a.iso", "--flash", "--rw"],
    "media-eject": [],
    "media-remove": ["a.iso"],
    "switch-ports": [],
    "switch-set": ["1"],
    "switch-beacon": ["1", "--off"],
    "switch-power": ["1", "off-hard"],
    "switch-click": ["1", "reset"],
    "audio-status": [],
    "audio-volume": ["40"],
    "audio-mute": ["--session", "7"],
    "audio-default": ["sink-2"],
    "audio-move": ["7", "sink-2"],
    "ocr": [],
    "find-text": ["hi"],
    "click-text": ["hi"],
    "wait-for-text": ["hi"],
    "wait-text": ["hi"],
    "act": ["STEPS"],
}


def test_the_cli_has_a_command_for_every_verb_and_alias() -> None:
    expected = {name.replace("_", "-") for a in PUBLIC for name in a.names}
    assert set(verbs.VERB_COMMANDS) == expected == set(CLI_ARGS)
    assert expected <= set(_COMMAND_TABLE)
    for name in expected:
        assert verbs.VERB_COMMANDS[name].name == name


@pytest.mark.parametrize("command", sorted(CLI_ARGS))
def test_each_cli_command_calls_its_route(
    command: str, fake_agent: FakeApi, tmp_path: Path
) -> None:
    fake_agent.reset()
    files = _files(tmp_path)
    args = [files.get(a, a) for a in CLI_ARGS[command]]
    env = {"REMOTEHANDS_AGENT_URL": fake_agent.url, "REMOTEHANDS_AGENT_PASSWORD": AGENT_PASSWORD}
    result = CliRunner().invoke(cli, [command, *args], env=env, catch_exceptions=False)
    assert result.exit_code == 0, (result.stdout, result.stderr)
    spec = by_verb(command)
    assert spec is not None
    seen = fake_agent.seen[-1]
    found = match_route(seen.method, seen.path)
    assert found is not None and found[0] is spec, (seen.method, seen.path)


# -- the drivers ------------------------------------------------------------------------------


def _protocol(capability: str) -> type[Any]:
    protocol = getattr(base, capability.capitalize())
    assert issubclass(type(protocol), type(Protocol)), capability
    return protocol  # type: ignore[no-any-return]


def _methods(protocol: type[Any]) -> set[str]:
    return {n for n, v in vars(protocol).items() if inspect.iscoroutinefunction(v)}


def test_every_capability_of_the_table_has_a_protocol_and_its_driver_calls_exist() -> None:
    for spec in ACTIONS:
        if spec.capability is not None and spec.capability not in AGENT_CAPABILITIES:
            protocol = _protocol(spec.capability)
            if spec.verb in _methods(protocol):  # the driver does it in one call: same name
                assert f"{protocol.__name__}.{spec.verb}" in spec.driver, spec.name
        for call in spec.driver:
            protocol_name, method = call.split(".")
            assert method in _methods(getattr(base, protocol_name)), (spec.name, call)
    assert not [a for a in ACTIONS if a.capability is None and a.driver]


def test_a_driver_protocol_method_is_the_verb_of_its_action_or_a_primitive() -> None:
    # The rule of the table, strictly: a Protocol method that is not a primitive is the action
    # it does in one call and carries that action's verb, so an older name such as
    # ``Keyboard.type_text`` or ``Apps.running`` fails here. With the test above (a row whose
    # verb is a method names it), every row's driver calls follow the rule.
    protocols = {p.__name__: (c, p) for c, p in base.CAPABILITY_PROTOCOLS.items()}
    protocols["EncodedScreen"] = ("screen", base.EncodedScreen)
    protocols["PointedMouse"] = ("mouse", base.PointedMouse)
    verbs = {(a.capability, a.verb) for a in ACTIONS}
    for name, (capability, protocol) in protocols.items():
        for method in _methods(protocol):
            call = f"{name}.{method}"
            assert call in DRIVER_PRIMITIVES or (capability, method) in verbs, call
    for call in DRIVER_PRIMITIVES:
        name, method = call.split(".")
        assert method in _methods(protocols[name][1]), call


@pytest.mark.parametrize("driver", [FakeDriver, X11Driver])
def test_drivers_implement_the_protocols_of_the_capabilities_they_declare(
    driver: type[base.Driver],
) -> None:
    for capability in {a.capability for a in ACTIONS if a.capability} & driver.capabilities:
        for method in _methods(_protocol(capability)):
            assert inspect.iscoroutinefunction(getattr(driver, method)), (driver, method)


def test_an_unknown_action_is_not_found() -> None:
    import asyncio

    with pytest.raises(NotFoundError, match="unknown action"):
        asyncio.run(Dispatcher(FakeDriver()).call("mouse.wiggle"))
