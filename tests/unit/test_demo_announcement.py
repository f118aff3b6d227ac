"""What ``remotehands demo`` prints: the web console's URL and the owner's sign-in first."""

from __future__ import annotations

from remotehands.cli.demo_cmd import DemoInfo, announcement


def test_the_console_and_the_owners_sign_in_come_first() -> None:
    info = DemoInfo(url="http://127.0.0.1:8080", owner="owner", password="pw-123456789",
                    token="rht_x", device_id="dev_1", device_name="demo-desktop",
                    display=":5")  # fmt: skip
    lines = announcement(info)
    assert lines[0] == "remotehands demo is up: open http://127.0.0.1:8080/ in a browser"
    assert lines[1] == "  sign in as:   owner / pw-123456789"
    assert info.console_url == "http://127.0.0.1:8080/"
    assert "  API docs:     http://127.0.0.1:8080/docs" in lines
    assert lines[-1] == "  stop with Ctrl-C"
    assert "    export REMOTEHANDS_TOKEN=rht_x" in lines
