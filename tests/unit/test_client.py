"""The SDK against a real HTTP server on loopback that imitates the agent and the fleet."""

from __future__ import annotations

import base64
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from remotehands import errors
from remotehands.client import (
    ACTION_METHODS,
    ActionMethods,
    AgentClient,
    AsyncAgentClient,
    AsyncFleetClient,
    FleetClient,
    Result,
    Screenshot,
    action_request,
    find_action,
)
from remotehands.protocol.actions import ACTIONS
from tests.unit.test_client_fakeapi import (
    AGENT_PASSWORD,
    AGENT_TOKEN,
    FLEET_PASSWORD,
    FLEET_TOKEN,
    FLEET_USER,
    IMAGE,
    FakeApi,
    free_port_url,
    serving,
)


@pytest.fixture(scope="module")
def served() -> Iterator[FakeApi]:
    with serving(FakeApi()) as api:
        yield api


@pytest.fixture
def fake(served: FakeApi) -> FakeApi:
    served.reset()
    return served


@pytest.fixture
def agent(fake: FakeApi) -> Iterator[AgentClient]:
    with AgentClient(fake.url, token=AGENT_TOKEN) as client:
        yield client


@pytest.fixture
def fleet(fake: FakeApi) -> Iterator[FleetClient]:
    with FleetClient(fake.url, token=FLEET_TOKEN) as client:
        yield client


# the method table


def test_every_action_but_sleep_has_a_method_named_in_the_table() -> None:
    assert set(ACTION_METHODS) == {a.name for a in ACTIONS} - {"sleep"}
    for action, method in ACTION_METHODS.items():
        assert callable(getattr(ActionMethods, method)), method
        assert find_action(method).name == action
        assert find_action(method.replace("_", "-")).name == action
    # Through vars(): mypy will not read a class attribute of a generic class off the class.
    assert vars(ActionMethods)["type"] is ActionMethods.type_text


def test_unknown_action_is_a_validation_error() -> None:
    with pytest.raises(errors.ValidationError, match="unknown action 'wiggle'"):
        find_action("wiggle")


def test_waits_in_the_parameters_lengthen_the_http_timeout() -> None:
    request = action_request("screenshot", {"wait_stable": True, "timeout_ms": 20_000})
    assert request.extra_s == pytest.approx(20.0)
    steps = [{"type": "sleep", "ms": 1500}, {"type": "keyboard.type", "text": "x"}]
    assert action_request("sequence", {"steps": steps}).extra_s == pytest.approx(1.5)


# every action reaches its route

_SELF = Path(__file__).read_bytes()


CASES: list[tuple[str, tuple[Any, ...], dict[str, Any], str, str, dict[str, Any] | None]] = [
    ("screenshot", (), {"format": "png", "scale": 0.5}, "GET", "/screenshot",
     {"format": "png", "scale": "0.5"}),
    ("screenshot_region", (1, 2, 30, 40), {}, "GET", "/screenshot/region",
     {"x": "1", "y": "2", "width": "30", "height": "40"}),
    ("cursor_position", (), {}, "GET", "/screenshot/cursor-position", {}),
    ("screenshots", ([{"name": "a"}],), {}, "POST", "/screenshots", {"variants": [{"name": "a"}]}),
    ("screens", (), {}, "GET", "/screens", {}),
    ("move", (5, 6), {}, "POST", "/mouse/move", {"x": 5, "y": 6}),
    ("click", (10, 20), {"button": "right"}, "POST", "/mouse/click",
     {"x": 10, "y": 20, "button": "right"}),
    ("click", (), {}, "POST", "/mouse/click", {"button": "left"}),
    ("double_click", (1, 1), {}, "POST", "/mouse/double-click",
     {"x": 1, "y": 1, "button": "left"}),
    ("scroll", (600, 400), {"delta_y": -3}, "POST", "/mouse/scroll",
     {"x": 600, "y": 400, "delta_x": 0, "delta_y": -3}),
    ("drag", (1, 2, 3, 4), {"duration_ms": 100}, "POST", "/mouse/drag",
     {"from_x": 1, "from_y": 2, "to_x": 3, "to_y": 4, "button": "left", "duration_ms": 100}),
    ("mouse_down", ("middle",), {}, "POST", "/mouse/down", {"button": "middle"}),
    ("mouse_up", (), {"x": 3, "y": 4}, "POST", "/mouse/up", {"button": "left", "x": 3, "y": 4}),
    ("type", ("héllo",), {}, "POST", "/keyboard/type", {"text": "héllo"}),
    ("type_text", ("x",), {"duration_ms": 50}, "POST", "/keyboard/type",
     {"text": "x", "duration_ms": 50}),
    ("hotkey", ("ctrl", {"char": "s"}), {}, "POST", "/keyboard/hotkey",
     {"keys": ["ctrl", {"char": "s"}]}),
    ("key", ("ctrl+v",), {}, "POST", "/keyboard/key", {"keys": "ctrl+v"}),
    ("key_down", ("shift",), {}, "POST", "/keyboard/down", {"key": "shift"}),
    ("key_up", ("shift",), {}, "POST", "/keyboard/up", {"key": "shift"}),
    ("clipboard_get", (), {"max_bytes": 10}, "GET", "/clipboard", {"max_bytes": "10"}),
    ("clipboard_set", ("new",), {}, "POST", "/clipboard", {"text": "new"}),
    ("clipboard_slots", (), {}, "GET", "/clipboard/slots", {}),
    ("slot_get", ("panel_1",), {}, "GET", "/clipboard/slots/panel_1", {}),
    ("slot_store", ("panel_1", "t"), {}, "PUT", "/clipboard/slots/panel_1", {"text": "t"}),
    ("slot_delete", ("panel_1",), {}, "DELETE", "/clipboard/slots/panel_1", None),
    ("slots_clear", (), {}, "DELETE", "/clipboard/slots", None),
    ("slot_restore", ("panel_1",), {}, "POST", "/clipboard/slots/panel_1/restore", {}),
    ("clipboard_capture", ([{"slot": "s1", "copy": False}],), {}, "POST", "/clipboard/capture",
     {"captures": [{"slot": "s1", "copy": False}]}),
    ("sequence", ([{"type": "click", "x": 1, "y": 2}],), {"on_error": "continue"}, "POST",
     "/sequence",
     {"steps": [{"type": "mouse.click", "x": 1, "y": 2}], "on_error": "continue"}),
    ("windows", (), {}, "GET", "/windows", {}),
    ("focused_window", (), {}, "GET", "/windows/focused", {}),
    ("dialog", (), {}, "GET", "/windows/dialog", {}),
    ("dialog_close", (), {"wait_dialog_gone_ms": 100}, "POST", "/windows/dialog/close",
     {"wait_dialog_gone_ms": 100}),
    ("focus_window", ("0x3039",), {}, "POST", "/windows/12345/focus", {}),
    ("move_window", ("0x10", 1, 2, 300, 200), {}, "POST", "/windows/16/move",
     {"bounds": {"x": 1, "y": 2, "width": 300, "height": 200}}),
    ("close_window", ("0x10",), {}, "POST", "/windows/16/close", {}),
    ("open_app", ("/usr/bin/gedit", ["a.txt"]), {}, "POST", "/application/open",
     {"path": "/usr/bin/gedit", "args": ["a.txt"]}),
    ("app_running", ("firefox",), {}, "GET", "/application/running", {"name": "firefox"}),
    ("close_app", (12345,), {}, "POST", "/application/close", {"window_id": 12345}),
    ("actions", (), {"limit": 5}, "GET", "/actions", {"limit": "5"}),
    ("power_state", (), {}, "GET", "/power", {}),
    ("power_on", (), {}, "POST", "/power/on", {}),
    ("power_off", (), {"timeout_s": 5}, "POST", "/power/off", {"timeout_s": 5.0}),
    ("power_off_hard", (), {"wait": False}, "POST", "/power/off-hard", {"wait": False}),
    ("power_reset_hard", (), {}, "POST", "/power/reset-hard", {}),
    ("power_click", ("power_long",), {}, "POST", "/power/click", {"button": "power_long"}),
    ("power_restart", (), {}, "POST", "/power/restart", {}),
    ("power_shutdown", (), {}, "POST", "/power/shutdown", {}),
    ("media_state", (), {}, "GET", "/media", {}),
    # the payload is the raw body; the fake records its size and first bytes
    ("media_upload", ("a.iso", __file__), {}, "PUT", "/media/images/a.iso",
     {"size": len(_SELF), "head": _SELF[:16].hex()}),
    ("media_fetch", ("http://x/y.iso",), {}, "POST", "/media/fetch", {"url": "http://x/y.iso"}),
    ("media_mount", ("a.iso",), {"cdrom": False}, "POST", "/media/mount",
     {"name": "a.iso", "cdrom": False}),
    ("media_eject", (), {}, "POST", "/media/eject", {}),
    ("media_remove", ("a b.iso",), {}, "DELETE", "/media/images/a b.iso", None),
    ("switch_ports", (), {}, "GET", "/switch", {}),
    ("switch_set", (2,), {}, "POST", "/switch/active", {"port": 2}),
    ("switch_beacon", (2, False), {}, "POST", "/switch/beacon", {"port": 2, "on": False}),
    ("switch_power", (1, "off_hard"), {}, "POST", "/switch/power",
     {"port": 1, "action": "off_hard"}),
    ("switch_click", (1, "reset"), {"wait": False}, "POST", "/switch/click",
     {"port": 1, "button": "reset", "wait": False}),
    ("audio_status", (), {}, "GET", "/audio", {}),
    ("audio_volume", (40,), {"session_id": "7"}, "POST", "/audio/volume",
     {"volume": 40, "session_id": "7"}),
    ("audio_mute", (), {"device_id": "sink-2"}, "POST", "/audio/mute",
     {"muted": True, "device_id": "sink-2"}),
    ("audio_mute", (False,), {}, "POST", "/audio/mute", {"muted": False}),
    ("audio_default", ("sink-2",), {}, "POST", "/audio/default", {"device_id": "sink-2"}),
    ("audio_move", ("7", "sink-2"), {}, "POST", "/audio/move",
     {"session_id": "7", "device_id": "sink-2"}),
    ("ocr", (), {"region": (1, 2, 30, 40)}, "GET", "/ocr",
     {"x": "1", "y": "2", "width": "30", "height": "40"}),
    ("find_text", ("OK",), {"min_score": 0.5}, "GET", "/ocr/find",
     {"text": "OK", "min_score": "0.5"}),
    ("click_text", ("OK",), {"index": 1}, "POST", "/ocr/click", {"text": "OK", "index": 1}),
    ("wait_for_text", ("Done",), {"gone": True, "timeout_ms": 100}, "GET", "/ocr/wait",
     {"text": "Done", "gone": "true", "timeout_ms": "100"}),
    ("wait_text", ("Done",), {}, "GET", "/ocr/wait", {"text": "Done"}),
    ("act", ([{"type": "click", "x": 1, "y": 2}],), {"scale": 0.5}, "POST", "/act",
     {"steps": [{"type": "mouse.click", "x": 1, "y": 2}], "scale": 0.5}),
]  # fmt: skip


def test_the_cases_cover_every_method() -> None:
    assert {c[0] for c in CASES} >= set(ACTION_METHODS.values())


@pytest.mark.parametrize(("method", "args", "kwargs", "verb", "path", "sent"), CASES)
def test_each_method_sends_its_route(
    agent: AgentClient,
    fake: FakeApi,
    method: str,
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
    verb: str,
    path: str,
    sent: dict[str, Any] | None,
) -> None:
    getattr(agent, method)(*args, **kwargs)
    seen = fake.last
    assert (seen.method, seen.path) == (verb, path)
    assert seen.auth == f"Bearer {AGENT_TOKEN}"
    assert (seen.params if verb == "GET" else seen.body) == sent


@pytest.mark.parametrize(("method", "args", "kwargs", "verb", "path", "sent"), CASES)
def test_each_method_reaches_a_device_of_the_fleet(
    fleet: FleetClient,
    fake: FakeApi,
    method: str,
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
    verb: str,
    path: str,
    sent: dict[str, Any] | None,
) -> None:
    getattr(fleet.device("web-1"), method)(*args, **kwargs)
    seen = fake.last
    assert (seen.method, seen.path) == (verb, "/v1/devices/dev_1" + path)
    assert seen.auth == f"Bearer {FLEET_TOKEN}"
    assert (seen.params if verb == "GET" else seen.body) == sent


# results


def test_screenshot_decodes_the_image_and_saves_it(agent: AgentClient, tmp_path: Path) -> None:
    shot = agent.screenshot(scale=0.5)
    assert isinstance(shot, Screenshot)
    assert shot.image == IMAGE
    assert (shot.width, shot.height, shot["format"]) == (960, 540, "jpeg")
    assert shot.save(tmp_path / "s.jpg").read_bytes() == IMAGE
    assert "<" in repr(shot) and "bytes>" in repr(shot)


def test_a_screenshot_without_inline_image_says_so() -> None:
    with pytest.raises(errors.ValidationError, match="no inline image"):
        _ = Screenshot({"image": None, "width": 1}).image


def test_results_read_as_attributes_at_every_depth(agent: AgentClient) -> None:
    windows = agent.windows()
    assert isinstance(windows[0], Result)
    assert windows[0].bounds.width == 800
    assert agent.cursor_position().x == 512
    with pytest.raises(AttributeError):
        _ = agent.cursor_position().z


def test_images_in_screenshots_and_sequences_are_bytes(agent: AgentClient) -> None:
    assert agent.screenshots([{"name": "a"}]).images[0].image == IMAGE
    done = agent.sequence([{"type": "screenshot"}])
    assert done.results[0].image == IMAGE


def test_an_answer_without_body_is_none(agent: AgentClient) -> None:
    assert agent.slot_delete("panel_1") is None


# credentials


def test_a_password_logs_in_first(fake: FakeApi) -> None:
    with AgentClient(fake.url, password=AGENT_PASSWORD) as client:
        client.click()
        client.move(1, 2)
        assert client.token == AGENT_TOKEN
    logins = [s for s in fake.seen if s.path == "/auth/login"]
    assert len(logins) == 1 and logins[0].body == {"password": AGENT_PASSWORD}
    assert logins[0].auth is None


def test_an_expired_token_is_renewed_once(fake: FakeApi) -> None:
    with AgentClient(fake.url, password=AGENT_PASSWORD) as client:
        client.click()
        fake.queue("POST", "/mouse/click", 401, {"error": "unauthorized", "details": "expired"})
        assert client.click() == {"status": "ok"}
    paths = [s.path for s in fake.seen]
    assert paths == ["/auth/login", "/mouse/click", "/mouse/click", "/auth/login", "/mouse/click"]


def test_a_given_token_is_not_renewed(fake: FakeApi) -> None:
    with AgentClient(fake.url, token="stale") as client, pytest.raises(errors.AuthError) as info:
        client.click()
    assert info.value.details == "log in first: POST /auth/login"
    assert info.value.exit_code == 3


def test_without_credentials_the_error_says_none_were_given(fake: FakeApi) -> None:
    with AgentClient(fake.url) as client, pytest.raises(errors.AuthError, match="no credentials"):
        client.screens()
    fake.agent_open = True
    with AgentClient(fake.url) as client:
        assert client.screens().screens[0].width == 1920


def test_a_wrong_password_is_an_auth_error(fake: FakeApi) -> None:
    with (
        AgentClient(fake.url, password="nope") as client,
        pytest.raises(errors.AuthError, match="wrong password"),
    ):
        client.click()


def test_health_and_logout(fake: FakeApi) -> None:
    with AgentClient(fake.url, password=AGENT_PASSWORD) as client:
        assert client.health() == {"status": "ok"}
        assert client.login()["expires_in_s"] == 28800
        client.logout()
        assert client.token is None


# errors


def test_an_error_answer_raises_its_error(agent: AgentClient) -> None:
    with pytest.raises(errors.NotFoundError, match="no window 999") as info:
        agent.focus_window(999)
    assert info.value.exit_code == 4
    with pytest.raises(errors.ValidationError, match="unknown key name 'bogus'"):
        agent.key("ctrl+bogus")


@pytest.mark.parametrize(
    ("status", "body", "text", "error", "details"),
    [
        (409, {"error": "busy", "details": "held by a sequence"}, None, errors.BusyError,
         "held by a sequence"),
        (500, {"error": "strange_code", "details": "hm"}, None, errors.DeviceError, "hm"),
        (404, {"detail": "Not Found"}, None, errors.NotFoundError, "Not Found"),
        (422, {"detail": [{"loc": ["body", "x"], "msg": "field required"}]}, None,
         errors.ValidationError, "x: field required"),
        (502, None, "Bad Gateway from nginx", errors.DeviceError,
         "POST /mouse/click answered HTTP 502 Bad Gateway: Bad Gateway from nginx"),
        (429, None, "", errors.RateLimitedError, "POST /mouse/click answered HTTP 429"),
        (418, None, "", errors.ValidationError, "answered HTTP 418"),
    ],
)  # fmt: skip
def test_error_answers_of_other_shapes_map_by_status(
    agent: AgentClient,
    fake: FakeApi,
    status: int,
    body: Any,
    text: str | None,
    error: type[errors.RemoteHandsError],
    details: str,
) -> None:
    fake.queue("POST", "/mouse/click", status, body, text=text)
    with pytest.raises(error) as info:
        agent.click()
    assert details in info.value.details


def test_an_answer_that_is_not_json_is_a_device_error(agent: AgentClient, fake: FakeApi) -> None:
    fake.queue("GET", "/screens", 200, text="<html>hello</html>")
    with pytest.raises(errors.DeviceError, match="not JSON"):
        agent.screens()


def test_bad_base64_is_a_device_error(agent: AgentClient, fake: FakeApi) -> None:
    fake.queue("GET", "/screenshot", 200, {"image": "***", "width": 1, "height": 1})
    with pytest.raises(errors.DeviceError, match="not valid base64"):
        agent.screenshot()


def test_parameters_are_checked_before_sending(agent: AgentClient, fake: FakeApi) -> None:
    with pytest.raises(errors.ValidationError, match=r"mouse\.click: x: Input should be a valid"):
        agent.click("left")  # type: ignore[arg-type]  # the mistake under test
    with pytest.raises(errors.ValidationError, match="wiggle: unknown parameter"):
        agent.call("mouse.click", wiggle=1)
    with pytest.raises(errors.ValidationError, match="a slot name is"):
        agent.slot_get("no spaces")
    with pytest.raises(errors.ValidationError, match="needs 'id'"):
        agent.call("window.focus", window_id=5)
    assert fake.requests() == []


def test_an_address_nobody_listens_on_is_offline() -> None:
    url = free_port_url()
    with AgentClient(url) as client, pytest.raises(errors.DeviceOfflineError) as info:
        client.click()
    assert info.value.details == (f"cannot reach {url}: connection refused — is the agent running?")
    assert info.value.exit_code == 7
    with FleetClient(url, token="t") as fleet, pytest.raises(errors.DeviceOfflineError) as info:
        fleet.devices()
    assert "is the server running?" in info.value.details


def test_no_answer_in_time_is_a_timeout(fake: FakeApi) -> None:
    fake.queue("GET", "/screens", 200, {"screens": []}, delay_s=1.0)
    with (
        AgentClient(fake.url, token=AGENT_TOKEN, timeout=0.2) as client,
        pytest.raises(errors.DeviceTimeoutError, match=r"did not answer within 0\.2 s"),
    ):
        client.screens()


@pytest.mark.parametrize("url", ["ftp://host", "nohost", "http://"])
def test_a_bad_url_is_a_config_error(url: str) -> None:
    with pytest.raises(errors.ConfigError, match="bad agent URL"):
        AgentClient(url)


def test_a_transport_can_be_injected() -> None:
    def answer(request: httpx.Request) -> httpx.Response:
        image = base64.b64encode(b"png").decode()
        return httpx.Response(200, json={"image": image, "width": 1, "height": 1})

    with AgentClient("http://agent", transport=httpx.MockTransport(answer)) as client:
        assert client.screenshot().image == b"png"


# the fleet


def test_fleet_login_with_username_and_password(fake: FakeApi) -> None:
    with FleetClient(fake.url, username=FLEET_USER, password=FLEET_PASSWORD) as fleet:
        assert [d.name for d in fleet.devices()] == ["web-1", "db-1", "lab-pc"]
    login = fake.seen[0]
    assert (login.path, login.body) == (
        "/v1/auth/login",
        {"username": FLEET_USER, "password": FLEET_PASSWORD},
    )
    with (
        FleetClient(fake.url, username=FLEET_USER, password="bad") as fleet,
        pytest.raises(errors.AuthError, match="wrong username or password"),
    ):
        fleet.devices()
    with (
        FleetClient(fake.url, username=FLEET_USER) as fleet,
        pytest.raises(errors.ConfigError, match="both a username and a password"),
    ):
        fleet.login()


def test_devices_filters(fleet: FleetClient, fake: FakeApi) -> None:
    found = fleet.devices(status="online", tags=["prod", "web"], search="WEB")
    assert [d.id for d in found] == ["dev_1"]
    assert fake.last.query == {"status": ["online"], "tag": ["prod", "web"], "search": ["WEB"]}


def test_a_device_is_found_by_name_or_id(fleet: FleetClient, fake: FakeApi) -> None:
    assert fleet.device("db-1").id == "dev_2"
    assert fleet.device("DB-1").id == "dev_2"
    assert fleet.device("dev_3").resolve() == "dev_3"
    with pytest.raises(errors.NotFoundError, match="no device is named 'nope'"):
        fleet.device("nope").click()


def test_a_name_two_devices_share_needs_an_id(fleet: FleetClient, fake: FakeApi) -> None:
    fake.devices.append({**fake.devices[0], "id": "dev_9"})
    with pytest.raises(errors.ValidationError, match=r"2 devices are named 'web-1' \(dev_1, dev_9"):
        fleet.device("web-1").click()


def test_a_device_is_resolved_once(fleet: FleetClient, fake: FakeApi) -> None:
    device = fleet.device("web-1")
    device.click()
    device.click()
    assert [s.path for s in fake.requests()] == [
        "/v1/devices",
        "/v1/devices/dev_1/mouse/click",
        "/v1/devices/dev_1/mouse/click",
    ]
    assert repr(device) == "Device('web-1')"


def test_an_offline_device_fails_fast(fleet: FleetClient) -> None:
    with pytest.raises(errors.DeviceOfflineError, match="lab-pc is offline"):
        fleet.device("lab-pc").screenshot()


def test_device_record_update_and_delete(fleet: FleetClient, fake: FakeApi) -> None:
    device = fleet.device("web-1")
    assert device.info().health.cpu_percent == 12.5
    assert device.update(name="web-01", tags=["prod"]).name == "web-01"
    assert fake.last.body == {"name": "web-01", "tags": ["prod"]}
    with pytest.raises(errors.ValidationError, match="nothing to change"):
        device.update()
    assert device.delete() is None
    assert (fake.last.method, fake.last.path) == ("DELETE", "/v1/devices/dev_1")


def test_enrollment(fleet: FleetClient, fake: FakeApi) -> None:
    answer = fleet.enrollment_create("DC1-R3-S8", ["prod"])
    assert answer.token == "ekvent_abc"
    assert fake.last.body == {"suggested_name": "DC1-R3-S8", "suggested_tags": ["prod"]}


def test_tokens_users_and_audit(fleet: FleetClient, fake: FakeApi) -> None:
    assert fleet.tokens_list()[0].prefix == "rh_ab12"
    created = fleet.tokens_create("bot", role="viewer", tags=["lab"], read_only=True)
    assert created.token == "rh_secret"
    assert fake.last.body == {"name": "bot", "role": "viewer", "tags": ["lab"], "read_only": True}
    fleet.tokens_revoke("tok_1")
    assert (fake.last.method, fake.last.path) == ("DELETE", "/v1/tokens/tok_1")
    assert fleet.users_list()[0].role == "owner"
    fleet.users_create("alice", "pw", role="operator")
    assert fake.last.body == {"username": "alice", "password": "pw", "role": "operator"}
    fleet.users_update("alice", role="admin", disabled=True)
    assert (fake.last.method, fake.last.path, fake.last.body) == (
        "PATCH",
        "/v1/users/alice",
        {"role": "admin", "disabled": True},
    )
    fleet.users_update("admin", password="new-pw", current_password="old-pw")
    assert fake.last.body == {"password": "new-pw", "current_password": "old-pw"}
    assert fleet.me().username == "admin"
    with pytest.raises(errors.ValidationError, match="nothing to change"):
        fleet.users_update("alice")
    fleet.users_delete("alice")
    assert (fake.last.method, fake.last.path) == ("DELETE", "/v1/users/alice")
    entries = fleet.audit(device_id="dev_1", since="2026-05-19T00:00:00Z", limit=5)
    assert entries[0].action == "mouse.click"
    assert fake.last.params == {
        "device_id": "dev_1",
        "since": "2026-05-19T00:00:00Z",
        "limit": "5",
    }


def test_audit_times_must_be_aware(fleet: FleetClient) -> None:
    from datetime import UTC, datetime

    fleet.audit(since=datetime(2026, 5, 19, tzinfo=UTC))
    with pytest.raises(errors.ValidationError, match="no time zone"):
        fleet.audit(since=datetime(2026, 5, 19))


def test_bulk(fleet: FleetClient, fake: FakeApi) -> None:
    results = fleet.bulk("screenshot", {"scale": 0.5}, tags=["prod"], concurrency=4)
    assert fake.last.body == {
        "action": "screenshot",
        "params": {"scale": 0.5},
        "selector": {"ids": None, "tags": ["prod"], "status": None},
        "concurrency": 4,
    }
    assert [r.name for r in results] == ["web-1", "db-1"]
    assert results[0].result.image == IMAGE
    offline = fleet.bulk("click", ids=["dev_3"])
    assert fake.last.body["action"] == "mouse.click"
    assert offline[0].error == {"error": "device_offline", "details": "offline"}
    assert fake.last.body["selector"] == {"ids": ["dev_3"], "tags": None, "status": None}
    with pytest.raises(errors.ValidationError, match="choose the devices"):
        fleet.bulk("click")
    with pytest.raises(errors.ValidationError, match=r"invalid parameters for mouse\.move"):
        fleet.bulk("move", {"x": 1}, status="online")


# asyncio twins


@pytest.mark.anyio
async def test_async_agent(fake: FakeApi) -> None:
    async with AsyncAgentClient(fake.url, password=AGENT_PASSWORD) as agent:
        assert await agent.click(10, 20) == {"status": "ok"}
        shot = await agent.screenshot()
        assert shot.image == IMAGE
        assert await agent.health() == {"status": "ok"}
        fake.queue("POST", "/mouse/move", 401, {"error": "unauthorized", "details": "expired"})
        await agent.move(1, 2)
        with pytest.raises(errors.NotFoundError, match="no window 999"):
            await agent.close_window(999)
        await agent.logout()
        assert agent.token is None
    assert [s.path for s in fake.seen].count("/auth/login") == 2


@pytest.mark.anyio
async def test_async_fleet(fake: FakeApi) -> None:
    async with AsyncFleetClient(fake.url, username=FLEET_USER, password=FLEET_PASSWORD) as fleet:
        device = fleet.device("web-1")
        await device.type("hi")
        assert fake.last.path == "/v1/devices/dev_1/keyboard/type"
        assert (await device.info()).name == "web-1"
        await device.update(tags=["x"])
        assert fake.last.body == {"tags": ["x"]}
        assert repr(device) == "AsyncDevice('web-1')"
        assert [d.id for d in await fleet.devices(status="offline")] == ["dev_3"]
        assert await fleet.device("dev_3").resolve() == "dev_3"
        with pytest.raises(errors.NotFoundError):
            await fleet.device("nope").click()
        with pytest.raises(errors.DeviceOfflineError):
            await fleet.device("lab-pc").click()
        await device.delete()
        assert fake.last.method == "DELETE"


@pytest.mark.anyio
async def test_async_errors_translate_too() -> None:
    async with AsyncAgentClient(free_port_url()) as agent:
        with pytest.raises(errors.DeviceOfflineError, match="connection refused"):
            await agent.screens()


# translation of transport failures (httpx's own MockTransport raises them)


def _failing(err: Exception) -> httpx.MockTransport:
    def handler(request: httpx.Request) -> httpx.Response:
        raise err

    return httpx.MockTransport(handler)


def _refused_by_dns() -> httpx.ConnectError:
    try:
        raise socket.gaierror(-2, "Name or service not known")
    except socket.gaierror as cause:
        try:
            raise httpx.ConnectError("failed") from cause
        except httpx.ConnectError as err:
            return err


@pytest.mark.parametrize(
    ("err", "error", "details"),
    [
        (httpx.ConnectTimeout("slow"), errors.DeviceTimeoutError,
         "cannot reach http://agent: no connection within 30 s — is the address right?"),
        (_refused_by_dns(), errors.DeviceOfflineError,
         "cannot reach http://agent: unknown host — is the address right?"),
        (httpx.RemoteProtocolError("peer closed"), errors.DeviceError,
         "the exchange with http://agent failed: peer closed"),
        (httpx.UnsupportedProtocol("nope"), errors.ConfigError, "bad agent URL 'http://agent'"),
    ],
)  # fmt: skip
def test_transport_failures_are_translated(
    err: Exception, error: type[errors.RemoteHandsError], details: str
) -> None:
    with (
        AgentClient("http://agent", transport=_failing(err)) as client,
        pytest.raises(error) as info,
    ):
        client.screens()
    assert details in info.value.details
    assert info.value.__cause__ is err


def test_a_given_token_is_renewed_when_a_password_is_known(fake: FakeApi) -> None:
    with AgentClient(fake.url, password=AGENT_PASSWORD, token="stale") as client:
        client.click()
    assert [s.path for s in fake.seen] == ["/mouse/click", "/auth/login", "/mouse/click"]


def test_a_hotkey_may_be_one_list(agent: AgentClient, fake: FakeApi) -> None:
    agent.hotkey(["ctrl", "s"], duration_ms=10)
    assert fake.last.body == {"keys": ["ctrl", "s"], "duration_ms": 10}


def test_lists_come_unwrapped_whatever_the_wrapper_is_called(
    fleet: FleetClient, fake: FakeApi
) -> None:
    fake.queue("GET", "/v1/audit", 200, {"items": [{"action": "x"}], "total": 1})
    assert fleet.audit() == [{"action": "x"}]
    fake.queue("GET", "/v1/tokens", 200, [{"id": "tok_9"}])
    assert fleet.tokens_list()[0].id == "tok_9"


def test_a_screenshot_answer_must_be_an_object(agent: AgentClient, fake: FakeApi) -> None:
    fake.queue("GET", "/screenshot", 200, [1, 2])
    with pytest.raises(errors.DeviceError, match="must be a JSON object"):
        agent.screenshot()


def test_a_login_answer_without_token_is_refused(fake: FakeApi) -> None:
    fake.queue("POST", "/auth/login", 200, {"status": "ok"})
    with (
        AgentClient(fake.url, password=AGENT_PASSWORD) as client,
        pytest.raises(errors.AuthError, match="answered the login without token"),
    ):
        client.click()


def test_pointer_methods_pass_a_frame_id(agent: AgentClient, fake: FakeApi) -> None:
    agent.click(10, 20, frame_id=3)
    assert fake.last.body == {"x": 10, "y": 20, "button": "left", "frame_id": 3}
    agent.move(1, 2, frame_id=4)
    assert fake.last.body == {"x": 1, "y": 2, "frame_id": 4}
    agent.drag(0, 0, 5, 5, frame_id=5)
    assert fake.last.body["frame_id"] == 5
    agent.click(10, 20)
    assert "frame_id" not in fake.last.body
