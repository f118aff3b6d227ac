"""The agent-link hello message."""

from remotehands.protocol.link import Hello


def test_hello_of_an_older_agent_names_the_mouse_capability_as_today() -> None:
    hello = Hello(
        device_id="d1", agent_version="0.1.0", driver="x11", device_type="desktop",
        capabilities=["screen", "pointer", "keyboard"], hardware_id="h",
    )  # fmt: skip
    assert hello.capabilities == ["screen", "mouse", "keyboard"]
