"""The device and fleet commands, through ``remotehands``'s own group, against the loopback fake
of the agent and the server: the requests they make, what they print, their exit codes."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result

from remotehands.cli import actions_cmd, devices_cmd, login_cmd, verbs
from remotehands.cli.main import _COMMANDS, cli, register
from tests.unit.test_client_fakeapi import (
    AGENT_PASSWORD,
    AGENT_TOKEN,
    FLEET_PASSWORD,
    FLEET_TOKEN,
    IMAGE,
    FakeApi,
    free_port_url,
    serving,
)

ENV_NAMES = (
    "REMOTEHANDS_AGENT_URL",
    "REMOTEHANDS_AGENT_PASSWORD",
    "REMOTEHANDS_AGENT_TOKEN",
    "REMOTEHANDS_URL",
    "REMOTEHANDS_TOKEN",
    "REMOTEHANDS_USERNAME",
    "REMOTEHANDS_PASSWORD",
)


@pytest.fixture(scope="module", autouse=True)
def registered() -> None:
    for table in (verbs.COMMANDS, actions_cmd.COMMANDS, devices_cmd.COMMANDS, login_cmd.COMMANDS):
        for name, (target, help_text) in table.items():
            register(name, target, help_text)


@pytest.fixture(scope="module")
def served() -> Iterator[FakeApi]:
    with serving(FakeApi()) as api:
        yield api


@pytest.fixture
def fake(served: FakeApi) -> FakeApi:
    served.reset()
    return served


def run(
    args: list[str], env: dict[str, str] | None = None, input: str | bytes | None = None
) -> Result:
    """``remotehands ARGS`` with only the REMOTEHANDS_* variables of ``env``."""
    clean: dict[str, str | None] = dict.fromkeys(ENV_NAMES)
    clean.update(env or {})
    return CliRunner().invoke(cli, args, env=clean, input=input, catch_exceptions=False)


def agent_env(fake: FakeApi) -> dict[str, str]:
    return {"REMOTEHANDS_AGENT_URL": fake.url, "REMOTEHANDS_AGENT_PASSWORD": AGENT_PASSWORD}


def fleet_env(fake: FakeApi) -> dict[str, str]:
    return {"REMOTEHANDS_URL": fake.url, "REMOTEHANDS_TOKEN": FLEET_TOKEN}


def on_agent(fake: FakeApi, *args: str, input: str | bytes | None = None) -> Result:
    return run(list(args), agent_env(fake), input=input)


def on_fleet(fake: FakeApi, *args: str, input: str | bytes | None = None) -> Result:
    return run(list(args), fleet_env(fake), input=input)


def ok(result: Result) -> Result:
    assert result.exit_code == 0, (result.stdout, result.stderr)
    return result


# registration and help


def test_the_command_tables_point_at_commands() -> None:
    import importlib

    import click

    for table in (verbs.COMMANDS, actions_cmd.COMMANDS, devices_cmd.COMMANDS, login_cmd.COMMANDS):
        for name, (target, help_text) in table.items():
            module, attr = target.split(":")
            command = getattr(importlib.import_module(module), attr)
            assert isinstance(command, click.Command)
            assert command.name == name
            assert help_text.endswith(".")
    assert set(verbs.COMMANDS) | set(actions_cmd.COMMANDS) <= set(_COMMANDS)


@pytest.mark.parametrize(
    "args",
    [
        [name]
        for name in (
            *verbs.COMMANDS,
            *actions_cmd.COMMANDS,
            *devices_cmd.COMMANDS,
            *login_cmd.COMMANDS,
        )
    ]
    + [["clipboard", "set"], ["windows", "move"], ["apps", "open"], ["device", "tag"]]
    + [["tokens", "create"], ["users", "create"]],
)
def test_every_command_has_help(args: list[str]) -> None:
    result = ok(run([*args, "--help"]))
    assert "Usage: " in result.stdout
    assert "--json" in result.stdout


def test_help_shows_examples_and_the_device_argument() -> None:
    text = ok(run(["click", "--help"])).stdout
    assert "[DEVICE] [X Y]" in text
    assert "remotehands click web-1 100 200" in text
    assert "--agent URL" in text and "--url URL" in text


# targets


def test_without_a_target_the_error_names_the_variables() -> None:
    result = run(["click", "1", "2"])
    assert result.exit_code == 2
    assert result.stderr == (
        "error: no target: pass --agent URL or set REMOTEHANDS_AGENT_URL for a standalone "
        "agent, or set REMOTEHANDS_URL and REMOTEHANDS_TOKEN (or pass --url and --token) for a "
        "fleet server\n"
    )
    assert "Traceback" not in result.output


def test_a_server_without_token_says_how_to_get_one(fake: FakeApi) -> None:
    result = run(["click", "web-1"], {"REMOTEHANDS_URL": fake.url})
    assert result.exit_code == 2
    assert "set REMOTEHANDS_TOKEN (`remotehands login` prints one) or pass --token" in (
        result.stderr
    )
    result = run(["devices"])
    assert result.stderr == (
        "error: no server: set REMOTEHANDS_URL and REMOTEHANDS_TOKEN (or pass --url and --token)\n"
    )


def test_options_beat_the_environment(fake: FakeApi) -> None:
    env = {"REMOTEHANDS_AGENT_URL": "http://127.0.0.1:9", "REMOTEHANDS_AGENT_PASSWORD": "x"}
    ok(run(["click", "--url", fake.url, "--token", FLEET_TOKEN, "web-1", "1", "2"], env))
    assert fake.last.path == "/v1/devices/dev_1/mouse/click"
    ok(run(["cursor", "--agent", fake.url, "--token", AGENT_TOKEN], fleet_env(fake)))
    assert (fake.last.path, fake.last.auth) == (
        "/screenshot/cursor-position",
        f"Bearer {AGENT_TOKEN}",
    )


def test_the_agent_password_comes_from_the_named_variable(fake: FakeApi) -> None:
    env = {"MY_PW": AGENT_PASSWORD}
    ok(run(["cursor", "--agent", fake.url, "--password-env", "MY_PW"], env))
    assert fake.seen[0].body == {"password": AGENT_PASSWORD}
    result = run(["cursor", "--agent", fake.url, "--password-env", "UNSET_PW"])
    assert (result.exit_code, result.stderr) == (2, "error: --password-env UNSET_PW: $UNSET_PW "
                                                   "is not set\n")  # fmt: skip


def test_a_missing_agent_password_says_which_variable(fake: FakeApi) -> None:
    result = run(["cursor", "--agent", fake.url])
    assert result.exit_code == 3
    assert "no credentials were given" in result.stderr
    assert "set REMOTEHANDS_AGENT_PASSWORD" in result.stderr


def test_an_agent_takes_no_device_and_a_server_needs_one(fake: FakeApi) -> None:
    result = on_agent(fake, "move", "web-1", "1", "2")
    assert result.exit_code == 2
    assert "expected [DEVICE] X Y" in result.stderr
    result = on_agent(fake, "clipboard", "web-1", "get")
    assert result.exit_code == 2 and "No such command 'web-1'" in result.stderr
    result = on_fleet(fake, "cursor")
    assert result.exit_code == 2
    assert "name the DEVICE (a name or an id) first" in result.stderr


def test_an_unreachable_agent_exits_7(fake: FakeApi) -> None:
    url = free_port_url()
    result = run(["click"], {"REMOTEHANDS_AGENT_URL": url})
    assert result.exit_code == 7
    assert (
        result.stderr == f"error: cannot reach {url}: connection refused — is the agent running?\n"
    )


# pointer and keyboard


def test_click_on_an_agent(fake: FakeApi) -> None:
    result = ok(on_agent(fake, "click", "10", "20", "--button", "right"))
    assert result.stdout == "clicked right at 10,20\n"
    assert (fake.last.path, fake.last.body) == (
        "/mouse/click",
        {"x": 10, "y": 20, "button": "right"},
    )


def test_click_on_a_device_of_the_fleet_with_json(fake: FakeApi) -> None:
    result = ok(on_fleet(fake, "click", "web-1", "--double", "--json"))
    assert json.loads(result.stdout) == {"status": "ok"}
    assert (fake.last.path, fake.last.body) == (
        "/v1/devices/dev_1/mouse/double-click",
        {"button": "left"},
    )


@pytest.mark.parametrize(
    ("args", "path", "body", "shown"),
    [
        (["move", "640", "400"], "/mouse/move", {"x": 640, "y": 400}, "moved to 640,400"),
        (["scroll", "--dy", "-3"], "/mouse/scroll", {"delta_x": 0, "delta_y": -3},
         "scrolled dx=0 dy=-3"),
        (["scroll", "--x", "5", "--y", "6", "--dx", "2"], "/mouse/scroll",
         {"x": 5, "y": 6, "delta_x": 2, "delta_y": 0}, "scrolled dx=2 dy=0 at 5,6"),
        (["drag", "1", "2", "3", "4", "--duration-ms", "50"], "/mouse/drag",
         {"from_x": 1, "from_y": 2, "to_x": 3, "to_y": 4, "button": "left", "duration_ms": 50},
         "dragged left from 1,2 to 3,4"),
        (["mouse-down", "--button", "middle"], "/mouse/down", {"button": "middle"},
         "pressed middle"),
        (["mouse-up", "7", "8"], "/mouse/up", {"button": "left", "x": 7, "y": 8},
         "released left at 7,8"),
        (["type", "héllo wörld"], "/keyboard/type", {"text": "héllo wörld"}, "typed 11 characters"),
        (["key", "ctrl+shift+t"], "/keyboard/key", {"keys": "ctrl+shift+t"},
         "pressed ctrl+shift+t"),
        (["hotkey", "ctrl", "alt", "Delete"], "/keyboard/hotkey",
         {"keys": ["ctrl", "alt", "Delete"]}, "pressed ctrl+alt+Delete"),
        (["key-down", "shift"], "/keyboard/down", {"key": "shift"}, "holding shift"),
        (["key-up", "shift"], "/keyboard/up", {"key": "shift"}, "released shift"),
    ],
)  # fmt: skip
def test_input_commands(
    fake: FakeApi, args: list[str], path: str, body: dict[str, Any], shown: str
) -> None:
    result = ok(on_agent(fake, *args))
    assert result.stdout == shown + "\n"
    assert (fake.last.method, fake.last.path, fake.last.body) == ("POST", path, body)
    ok(on_fleet(fake, args[0], "db-1", *args[1:]))
    assert (fake.last.path, fake.last.body) == ("/v1/devices/dev_2" + path, body)


def test_type_reads_stdin_for_a_dash(fake: FakeApi) -> None:
    ok(on_fleet(fake, "type", "web-1", "-", input="line one\nline two\n"))
    assert fake.last.body == {"text": "line one\nline two\n"}


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["click", "1"], "expected [DEVICE] [X Y] (DEVICE first on a fleet server), got 1"),
        (["move", "a", "2"], "X must be a whole number, not 'a'"),
        (["scroll"], "give --dy N (negative scrolls up) and/or --dx N"),
        (["scroll", "--x", "1", "--dy", "1"], "give both --x and --y, or neither"),
        (["screenshot", "--region", "1,2,3"], "--region takes X,Y,WIDTH,HEIGHT"),
    ],
)
def test_usage_errors_exit_2(fake: FakeApi, args: list[str], message: str) -> None:
    result = on_agent(fake, *args)
    assert result.exit_code == 2
    assert message in result.stderr
    assert fake.requests() == []


def test_an_error_answer_prints_one_line_and_its_exit_code(fake: FakeApi) -> None:
    result = on_agent(fake, "key", "ctrl+bogus")
    assert (result.exit_code, result.stdout, result.stderr) == (
        2,
        "",
        "error: unknown key name 'bogus'\n",
    )
    result = on_agent(fake, "windows", "focus", "999", "--json")
    assert result.exit_code == 4
    assert json.loads(result.stdout) == {"error": "not_found", "details": "no window 999"}
    assert result.stderr == "error: no window 999\n"
    result = on_fleet(fake, "click", "lab-pc")
    assert (result.exit_code, result.stderr) == (7, "error: lab-pc is offline\n")
    result = on_fleet(fake, "click", "nope")
    assert result.exit_code == 4 and "no device is named 'nope'" in result.stderr


# screen


def test_screenshot_writes_the_file_and_says_so(
    fake: FakeApi, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    target = tmp_path / "shot.png"
    result = ok(on_fleet(fake, "screenshot", "web-1", "-o", str(target), "--scale", "0.5"))
    assert target.read_bytes() == IMAGE
    assert result.stdout == f"wrote {target} ({len(IMAGE)} B, 960x540)\n"
    assert fake.last.path == "/v1/devices/dev_1/screenshot"
    assert fake.last.params == {"format": "png", "scale": "0.5"}
    monkeypatch.chdir(tmp_path)
    result = ok(on_agent(fake, "screenshot", "--wait-stable", "--timeout-ms", "100", "--json"))
    data = json.loads(result.stdout)
    assert data["bytes"] == len(IMAGE) and "image" not in data
    assert Path(data["path"]).name.startswith("screenshot-") and data["path"].endswith(".jpg")
    assert (tmp_path / data["path"]).read_bytes() == IMAGE
    assert fake.last.params == {"wait_stable": "true", "timeout_ms": "100"}


def test_screenshot_of_a_region_to_stdout(fake: FakeApi) -> None:
    result = ok(on_agent(fake, "screenshot", "--region", "10,20,300,200", "-o", "-"))
    assert result.stdout_bytes == IMAGE
    assert "300x200" in result.stderr
    assert fake.last.path == "/screenshot/region"
    assert fake.last.params == {"x": "10", "y": "20", "width": "300", "height": "200"}
    result = on_agent(fake, "screenshot", "-o", "-", "--json")
    assert result.exit_code == 2


def test_screenshot_into_a_missing_directory_is_a_clear_error(
    fake: FakeApi, tmp_path: Path
) -> None:
    result = on_agent(fake, "screenshot", "-o", str(tmp_path / "no" / "such.jpg"))
    assert result.exit_code == 2
    assert result.stderr.startswith(f"error: cannot write {tmp_path / 'no' / 'such.jpg'}:")


def test_cursor_and_screens(fake: FakeApi) -> None:
    assert ok(on_agent(fake, "cursor")).stdout == "512,384\n"
    assert json.loads(ok(on_agent(fake, "cursor", "--json")).stdout) == {"x": 512, "y": 384}
    assert ok(on_fleet(fake, "screens", "web-1")).stdout == (
        "ID  WIDTH  HEIGHT  X  Y\n0   1920   1080    0  0\n"
    )


# clipboard, windows, apps


def test_clipboard_group(fake: FakeApi) -> None:
    assert ok(on_fleet(fake, "clipboard", "web-1")).stdout == "clip text\n"
    assert fake.last.path == "/v1/devices/dev_1/clipboard"
    assert ok(on_agent(fake, "clipboard")).stdout == "clip text\n"
    assert ok(on_agent(fake, "clipboard", "get", "--raw")).stdout == "clip text"
    ok(on_fleet(fake, "clipboard", "web-1", "set", "-", input="piped"))
    assert fake.last.body == {"text": "piped"}
    ok(on_fleet(fake, "clipboard", "set", "web-1", "second"))
    assert fake.last.body == {"text": "second"}
    data = json.loads(ok(on_fleet(fake, "clipboard", "--json", "web-1", "get")).stdout)
    assert data["text"] == "second"
    assert ok(on_agent(fake, "clipboard", "slots")).stdout == (
        "NAME     LENGTH  STORED\npanel_1  5       2026-05-19T10:15:00Z\n"
    )
    assert ok(on_agent(fake, "clipboard", "slot-get", "panel_1")).stdout == "hello\n"
    result = on_agent(fake, "clipboard", "slot-get", "missing")
    assert (result.exit_code, result.stderr) == (4, "error: no clipboard slot 'missing'\n")
    assert ok(on_agent(fake, "clipboard", "slot-store", "n1", "abc")).stdout == (
        "stored 3 characters in n1\n"
    )
    assert (fake.last.method, fake.last.path) == ("PUT", "/clipboard/slots/n1")
    assert ok(on_agent(fake, "clipboard", "slot-delete", "n1")).stdout == "deleted slot n1\n"
    assert ok(on_agent(fake, "clipboard", "slots-clear", "--json")).stdout == "null\n"
    ok(on_agent(fake, "clipboard", "slot-restore", "n1"))
    assert fake.last.path == "/clipboard/slots/n1/restore"
    result = ok(on_agent(fake, "clipboard", "capture", "p1", "--window", "0x10", "--no-copy"))
    assert fake.last.body == {
        "captures": [{"slot": "p1", "select_all": True, "copy": False, "focus_window_id": 16}]
    }
    assert "p1    yes" in result.stdout


def test_windows_group(fake: FakeApi) -> None:
    listed = ok(on_fleet(fake, "windows", "web-1")).stdout.splitlines()
    assert listed[0].split() == ["ID", "PID", "PROCESS", "GEOMETRY", "FLAGS", "TITLE"]
    assert listed[1].split() == ["71303171", "4321", "xterm", "800x600+0+0", "focused",
                                 "Terminal"]  # fmt: skip
    assert listed[2].split()[-3:] == ["dialog", "Save", "changes?"]
    assert json.loads(ok(on_agent(fake, "windows", "list", "--json")).stdout)[0]["pid"] == 4321
    assert json.loads(ok(on_fleet(fake, "windows", "web-1", "--json")).stdout)[1]["is_dialog"]
    assert (
        "windows [OPTIONS] [DEVICE] COMMAND" in ok(on_fleet(fake, "windows", "web-1", "-h")).stdout
    )
    assert "Terminal" in ok(on_agent(fake, "windows", "focused")).stdout
    ok(on_agent(fake, "windows", "focus", "0x4400003"))
    assert fake.last.path == "/windows/71303171/focus"
    ok(on_fleet(fake, "windows", "web-1", "move", "12", "1", "2", "300", "200"))
    assert (fake.last.path, fake.last.body) == (
        "/v1/devices/dev_1/windows/12/move",
        {"bounds": {"x": 1, "y": 2, "width": 300, "height": 200}},
    )
    ok(on_agent(fake, "windows", "close", "12"))
    assert fake.last.path == "/windows/12/close"
    assert "Save changes?" in ok(on_agent(fake, "windows", "dialog")).stdout
    ok(on_agent(fake, "windows", "dialog-close", "--wait-ms", "10"))
    assert fake.last.body == {"wait_dialog_gone_ms": 10}


def test_apps_group(fake: FakeApi) -> None:
    result = ok(on_fleet(fake, "apps", "web-1", "open", "/usr/bin/xterm", "-e", "top"))
    assert result.stdout == "started /usr/bin/xterm (pid 4242)\n"
    assert fake.last.body == {"path": "/usr/bin/xterm", "args": ["-e", "top"]}
    assert ok(on_agent(fake, "apps", "running", "firefox")).stdout == (
        "firefox is running (pid 1234)\n"
    )
    assert ok(on_agent(fake, "apps", "running", "vim")).stdout == "vim is not running\n"
    ok(on_agent(fake, "apps", "close", "77"))
    assert fake.last.body == {"window_id": 77}
    result = on_agent(fake, "apps", "close", "0xZZ")
    assert result.exit_code == 2 and "'0xZZ' is not a window id" in result.stderr
    result = on_fleet(fake, "apps", "web-1")
    assert result.exit_code == 2 and "name a command: open, running, close" in result.stderr


# sequence, log, call


def test_sequence_from_a_file(fake: FakeApi, tmp_path: Path) -> None:
    steps = [{"type": "keyboard.key", "keys": "ctrl+v"}, {"type": "screenshot", "name": "snap"}]
    path = tmp_path / "seq.json"
    path.write_text(json.dumps({"steps": steps, "on_error": "continue"}))
    result = ok(on_fleet(fake, "sequence", "web-1", str(path)))
    assert fake.last.body == {"steps": steps, "on_error": "continue"}
    assert result.stdout.splitlines()[0].split() == ["NAME", "TYPE", "OK", "MS", "DETAILS"]
    assert "snap    screenshot    yes" in result.stdout
    data = json.loads(ok(on_fleet(fake, "sequence", "web-1", str(path), "--json")).stdout)
    assert data["results"][1]["image"] == __import__("base64").b64encode(IMAGE).decode()


def test_a_failed_step_sets_the_exit_status(fake: FakeApi) -> None:
    steps = [{"type": "window.focus", "window_id": 999}, {"type": "mouse.click"}]
    result = on_agent(fake, "sequence", "-", input=json.dumps(steps))
    assert result.exit_code == 4
    assert "aborted at step-0" in result.stdout
    assert result.stderr == "error: no window 999\n"
    result = on_agent(fake, "sequence", "-", "--json", input=json.dumps(steps))
    assert result.exit_code == 4
    assert json.loads(result.stdout)["aborted_at"] == "step-0"


def test_a_bad_sequence_file(fake: FakeApi, tmp_path: Path) -> None:
    result = on_agent(fake, "sequence", "-", input="{not json")
    assert result.exit_code == 2 and "stdin is not valid JSON" in result.stderr
    result = on_agent(fake, "sequence", str(tmp_path / "none.json"))
    assert result.exit_code == 2 and "cannot read" in result.stderr
    result = on_agent(fake, "sequence", "-", input='{"steps": 3}')
    assert result.exit_code == 2 and "a list of steps" in result.stderr


def test_actions_log_and_call(fake: FakeApi) -> None:
    result = ok(on_agent(fake, "actions", "--limit", "3"))
    assert "mouse.click" in result.stdout and fake.last.params == {"limit": "3"}
    result = ok(on_fleet(fake, "call", "web-1", "mouse.move", "--params", '{"x": 1, "y": 2}'))
    assert json.loads(result.stdout) == {"status": "ok"}
    assert fake.last.path == "/v1/devices/dev_1/mouse/move"
    result = on_agent(fake, "call", "mouse.move", "--params", "[1]")
    assert result.exit_code == 2 and "must be a JSON object" in result.stderr
    result = on_agent(fake, "call", "mouse.move", "--params", "{")
    assert result.exit_code == 2 and "not valid JSON" in result.stderr


# the fleet


def test_devices_table_and_filters(fake: FakeApi) -> None:
    lines = ok(on_fleet(fake, "devices")).stdout.splitlines()
    assert lines[0].split() == ["ID", "NAME", "STATUS", "TYPE", "TAGS", "LAST", "SEEN", "AGENT"]
    assert lines[1].split()[:5] == ["dev_1", "web-1", "online", "x11", "prod,web"]
    assert len(lines) == 4
    result = ok(on_fleet(fake, "devices", "--status", "online", "--tag", "prod", "--json"))
    assert [d["id"] for d in json.loads(result.stdout)] == ["dev_1", "dev_2"]
    assert fake.last.query == {"status": ["online"], "tag": ["prod"]}
    assert ok(on_fleet(fake, "devices", "--search", "zzz")).stdout == "no devices\n"


def test_device_group(fake: FakeApi) -> None:
    shown = ok(on_fleet(fake, "device", "show", "web-1")).stdout
    assert "status        online" in shown and "cpu 12.5% mem 40.0%" in shown
    ok(on_fleet(fake, "device", "rename", "web-1", "web-01"))
    assert (fake.last.method, fake.last.body) == ("PATCH", {"name": "web-01"})
    assert ok(on_fleet(fake, "device", "tag", "web-01", "eu", "prod")).stdout == (
        "web-01: tags prod,web,eu\n"
    )
    assert fake.last.body == {"tags": ["prod", "web", "eu"]}
    ok(on_fleet(fake, "device", "tag", "web-01", "--remove", "web"))
    assert fake.last.body == {"tags": ["prod", "eu"]}
    ok(on_fleet(fake, "device", "tag", "web-01", "--set"))
    assert fake.last.body == {"tags": []}
    result = on_fleet(fake, "device", "delete", "db-1", input="n\n")
    assert result.exit_code == 1 and fake.last.method != "DELETE"
    result = ok(on_fleet(fake, "device", "delete", "db-1", "--yes"))
    assert result.stdout == "deleted db-1 (dev_2)\n"
    assert (fake.last.method, fake.last.path) == ("DELETE", "/v1/devices/dev_2")


def test_enroll_prints_the_token_and_the_install_command(fake: FakeApi) -> None:
    result = ok(on_fleet(fake, "enroll", "--name", "DC1", "--tag", "prod", "--tag", "eu"))
    assert "token:      ekvent_abc" in result.stdout
    assert "  curl -sSL http://fleet/install | sh -s -- --token ekvent_abc" in result.stdout
    assert fake.last.body == {"suggested_name": "DC1", "suggested_tags": ["prod", "eu"]}


def test_tokens(fake: FakeApi) -> None:
    assert "rh_ab12" in ok(on_fleet(fake, "tokens", "list")).stdout
    result = ok(
        on_fleet(fake, "tokens", "create", "bot", "--role", "viewer", "--read-only",
                 "--expires-days", "2")
    )  # fmt: skip
    assert result.stdout.splitlines()[-1] == "rh_secret"
    assert fake.last.body == {
        "name": "bot",
        "role": "viewer",
        "expires_in_s": 172800,
        "tags": [],
        "read_only": True,
    }
    assert json.loads(ok(on_fleet(fake, "tokens", "--json", "revoke", "tok_1")).stdout) == {
        "revoked": "tok_1"
    }


def test_users(fake: FakeApi) -> None:
    assert "owner" in ok(on_fleet(fake, "users", "list")).stdout
    env = {**fleet_env(fake), "NEW_PW": "s3cret"}
    ok(run(["users", "create", "alice", "--role", "operator", "--password-env", "NEW_PW"], env))
    assert fake.last.body == {"username": "alice", "password": "s3cret", "role": "operator"}
    ok(on_fleet(fake, "users", "create", "bob", input="pw1\npw1\n"))
    assert fake.last.body == {"username": "bob", "password": "pw1", "role": "viewer"}
    ok(on_fleet(fake, "users", "update", "bob", "--role", "admin", "--disable"))
    assert fake.last.body == {"role": "admin", "disabled": True}
    env = {**fleet_env(fake), "NEW": "new-pw", "OLD": "old-pw"}
    ok(run(["users", "update", "admin", "--password-env", "NEW", "--current-password-env",
            "OLD"], env))  # fmt: skip
    assert fake.last.body == {"password": "new-pw", "current_password": "old-pw"}
    result = on_fleet(fake, "users", "update", "bob")
    assert result.exit_code == 2 and "nothing to change" in result.stderr
    ok(on_fleet(fake, "users", "delete", "bob", "--yes"))
    assert (fake.last.method, fake.last.path) == ("DELETE", "/v1/users/bob")


def test_audit(fake: FakeApi) -> None:
    result = ok(on_fleet(fake, "audit", "--device", "web-1", "--since", "2h", "--limit", "5"))
    assert "mouse.click" in result.stdout
    params = fake.last.params
    assert params["device_id"] == "dev_1" and params["limit"] == "5"
    assert params["since"].endswith("Z") and params["since"].startswith("20")
    ok(on_fleet(fake, "audit", "--since", "2026-05-19T00:00:00Z", "--actor", "admin"))
    assert fake.last.params == {"since": "2026-05-19T00:00:00Z", "actor": "admin"}


def test_bulk(fake: FakeApi, tmp_path: Path) -> None:
    result = ok(
        on_fleet(fake, "bulk", "screenshot", "--tag", "prod", "--params", '{"scale": 0.5}',
                 "--save-dir", str(tmp_path))
    )  # fmt: skip
    assert fake.last.body["selector"] == {"ids": None, "tags": ["prod"], "status": None}
    assert "2 ok, 0 failed" in result.stdout
    assert (tmp_path / "web-1.jpg").read_bytes() == IMAGE
    result = on_fleet(fake, "bulk", "click", "--status", "offline")
    assert result.exit_code == 7
    assert "0 ok, 1 failed" in result.stdout
    assert result.stderr == "error: lab-pc: offline\n"
    result = on_fleet(fake, "bulk", "click")
    assert result.exit_code == 2 and "choose the devices" in result.stderr


def test_a_revoked_token_hints_at_login(fake: FakeApi) -> None:
    result = run(["devices"], {"REMOTEHANDS_URL": fake.url, "REMOTEHANDS_TOKEN": "old"})
    assert result.exit_code == 3
    assert result.stderr == (
        "error: invalid or expired token — check REMOTEHANDS_TOKEN (`remotehands login` prints "
        "a fresh one)\n"
    )


def test_login_prints_exports(fake: FakeApi) -> None:
    result = ok(
        run(["login", "--url", fake.url, "--username", "admin"], input=f"{FLEET_PASSWORD}\n")
    )
    assert result.stdout == (
        f"export REMOTEHANDS_URL={fake.url}\nexport REMOTEHANDS_TOKEN={FLEET_TOKEN}\n"
        "# valid for 12 h\n"
    )
    assert "Password of admin" in result.stderr
    env = {"REMOTEHANDS_AGENT_PASSWORD": AGENT_PASSWORD}
    result = ok(run(["login", "--agent", fake.url, "--json"], env))
    data = json.loads(result.stdout)
    assert data["env"] == {
        "REMOTEHANDS_AGENT_URL": fake.url,
        "REMOTEHANDS_AGENT_TOKEN": AGENT_TOKEN,
    }
    result = run(["login", "--url", fake.url, "--username", "admin"], input="bad\n")
    assert result.exit_code == 3 and "wrong username or password" in result.stderr
    assert run(["login"]).exit_code == 2


def test_an_agent_token_from_login_is_used(fake: FakeApi) -> None:
    env = {"REMOTEHANDS_AGENT_URL": fake.url, "REMOTEHANDS_AGENT_TOKEN": AGENT_TOKEN}
    ok(run(["cursor"], env))
    assert [s.path for s in fake.seen] == ["/screenshot/cursor-position"]


def test_group_options_come_before_the_subcommand(fake: FakeApi) -> None:
    env = {"REMOTEHANDS_AGENT_PASSWORD": AGENT_PASSWORD}
    assert ok(run(["clipboard", "--agent", fake.url, "get"], env)).stdout == "clip text\n"
    assert ok(run(["windows", "--agent", fake.url, "--json"], env)).stdout.startswith("[")
    assert "[DEVICE] COMMAND [ARGS]..." in ok(run(["windows", "--help"])).stdout


def test_a_wrong_agent_password_hints_at_the_variable(fake: FakeApi) -> None:
    result = run(["cursor"], {"REMOTEHANDS_AGENT_URL": fake.url, "REMOTEHANDS_AGENT_PASSWORD": "x"})
    assert result.exit_code == 3
    assert result.stderr == (
        "error: wrong password — check the agent's password ($REMOTEHANDS_AGENT_PASSWORD) or "
        "REMOTEHANDS_AGENT_TOKEN\n"
    )


def test_sizes_read_well() -> None:
    from remotehands.cli.output import human_size

    assert [human_size(n) for n in (5, 187_802, 3 * 1024 * 1024)] == [
        "5 B",
        "183.4 KiB",
        "3.0 MiB",
    ]


def test_pointer_commands_take_a_frame(fake: FakeApi) -> None:
    env = agent_env(fake)
    ok(run(["click", "10", "20", "--frame", "7"], env))
    assert fake.last.body == {"x": 10, "y": 20, "button": "left", "frame_id": 7}
    ok(run(["move", "3", "4", "--frame", "8"], env))
    assert fake.last.body == {"x": 3, "y": 4, "frame_id": 8}
    ok(run(["drag", "1", "2", "3", "4", "--frame", "9"], env))
    assert fake.last.body["frame_id"] == 9
    bad = run(["click", "1", "2", "--frame", "0"], env)
    assert bad.exit_code == 2 and "--frame" in bad.output


def test_a_command_typo_gets_a_did_you_mean() -> None:
    result = run(["screnshot"])
    assert result.exit_code == 2
    assert "No such command 'screnshot'. Did you mean screenshot, screenshots or screens?" in (
        result.stderr
    )
    assert "Did you mean devices or device?" in run(["devics"]).stderr
    unknown = run(["zzzz"])
    assert unknown.exit_code == 2 and "Did you mean" not in unknown.stderr


def test_a_server_url_ending_in_v1_is_not_doubled(fake: FakeApi) -> None:
    ok(run(["devices"], {"REMOTEHANDS_URL": fake.url + "/v1/", "REMOTEHANDS_TOKEN": FLEET_TOKEN}))
    assert fake.last.path == "/v1/devices"


def test_audit_times_that_are_not_times_name_the_accepted_forms(fake: FakeApi) -> None:
    result = on_fleet(fake, "audit", "--since", "yesterday")
    assert result.exit_code == 2
    assert "'yesterday' is not a time: give a duration ago (30s, 15m, 2h, 7d) or an ISO 8601" in (
        result.stderr
    )
    assert "--until" in on_fleet(fake, "audit", "--until", "soon").stderr
    ok(on_fleet(fake, "audit", "--since", "2026-05-19"))


def test_users_create_without_a_terminal_names_password_env(fake: FakeApi) -> None:
    result = on_fleet(fake, "users", "create", "carol", input="")
    assert result.exit_code == 2
    assert "no terminal to ask on" in result.stderr and "--password-env VAR" in result.stderr
