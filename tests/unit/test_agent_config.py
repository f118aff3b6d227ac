"""The agent's config file: what it accepts, and the errors that name file, device and field."""

from __future__ import annotations

import textwrap
from pathlib import Path
from typing import Any

import pytest

from remotehands.agent.config import AgentConfig, load_config
from remotehands.agent.runtime import Agent
from remotehands.drivers.fake import FakeDriver
from remotehands.errors import ConfigError


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "agent.toml"
    path.write_text(textwrap.dedent(text))
    return path


def test_a_full_file_is_read_with_paths_taken_from_its_directory(tmp_path: Path) -> None:
    path = _write(
        tmp_path,
        """
        server = "http://fleet.example:8080/"
        state_dir = "state"
        password_file = "faces.pw"

        [[devices]]
        name = "lab-1"
        driver = "fake"
        tags = ["lab", "rack-2"]
        enrollment_token = "ekvent_abc"
        listen = "127.0.0.1:0"
        faces = ["native"]
        password_file = "lab-1.pw"
        [devices.settings]
        width = 640
        height = 480

        [[devices]]
        name = "lab-2"
        driver = "x11"
        [devices.settings]
        display = ":3"
    """,
    )
    config = load_config(path)
    assert config.server == "http://fleet.example:8080"
    assert config.state_dir == tmp_path / "state"
    assert config.password_file == tmp_path / "faces.pw"
    first, second = config.devices
    assert (first.name, first.driver, first.tags) == ("lab-1", "fake", ["lab", "rack-2"])
    assert first.enrollment_token == "ekvent_abc" and first.listen == "127.0.0.1:0"
    assert first.password_file == tmp_path / "lab-1.pw"
    assert first.settings == {"width": 640, "height": 480}
    assert second.faces == ["native"] and second.listen is None and second.tags == []
    assert second.settings == {"display": ":3"}


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("devices = [", "is not valid TOML"),
        ('server = "http://x"\n', "devices is missing"),
        ("devices = []\n", "devices: List should have at least 1 item"),
        ('[[devices]]\nname = "a"\n', "device 'a': driver is missing"),
        ('[[devices]]\ndriver = "fake"\n', "device #1: name is missing"),
        (
            '[[devices]]\nname = "a"\ndriver = "fake"\ncolour = 1\n',
            "device 'a': unknown field 'colour'",
        ),
        (
            '[[devices]]\nname = "a"\ndriver = "fake"\npassword = "hunter2"\n',
            "device 'a': a password is never written in the config file: put it in a file",
        ),
        (
            'password = "x"\n[[devices]]\nname = "a"\ndriver = "fake"\n',
            "a password is never written in the config file",
        ),
        (
            '[[devices]]\nname = "a"\ndriver = "fake"\nlisten = "8082"\n',
            "device 'a': listen: listen address '8082' is not HOST:PORT",
        ),
        (
            'server = "fleet:8080"\n[[devices]]\nname = "a"\ndriver = "fake"\n',
            "server: server 'fleet:8080' must be the fleet's URL",
        ),
        (
            '[[devices]]\nname = "a"\ndriver = "fake"\n[devices.settings]\nwidth = 1\n'
            '[[devices]]\nname = "a"\ndriver = "fake"\n[devices.settings]\nwidth = 2\n',
            "devices 'a' and 'a' have the same name",
        ),
        (
            '[[devices]]\nname = "a"\ndriver = "fake"\nlisten = "127.0.0.1:9001"\n'
            "[devices.settings]\nwidth = 1\n"
            '[[devices]]\nname = "b"\ndriver = "fake"\nlisten = "127.0.0.1:9001"\n',
            "devices 'a' and 'b' have the same listen address 127.0.0.1:9001",
        ),
        (
            '[[devices]]\nname = "a"\ndriver = "fake"\n[[devices]]\nname = "b"\ndriver = "fake"\n',
            "devices 'a' and 'b' have the same driver and settings",
        ),
        (
            '[[devices]]\nname = "a"\ndriver = "fake"\ntags = "lab"\n',
            "device 'a': tags: Input should be a valid list",
        ),
        (
            '[[devices]]\nname = "a"\ndriver = "fake"\n[devices.face_settings.pikvm]\nuser = "x"\n',
            "face_settings for pikvm, which this device does not serve: add it to faces (native)",
        ),
    ],
)
def test_config_errors_name_the_file_the_device_and_the_field(
    tmp_path: Path, text: str, message: str
) -> None:
    path = _write(tmp_path, text)
    with pytest.raises(ConfigError) as err:
        load_config(path)
    assert err.value.details.startswith(str(path))
    assert message in err.value.details


def test_a_missing_file_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"cannot read the agent config .*nope\.toml"):
        load_config(tmp_path / "nope.toml")


def test_planning_errors_name_the_device(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("REMOTEHANDS_AGENT_PASSWORD", raising=False)

    def plan(**device: Any) -> Agent:
        devices = [{"name": "ok", "driver": "fake"}, {"name": "bad", **device}]
        config = AgentConfig.model_validate({"state_dir": str(tmp_path), "devices": devices})
        return Agent.from_config(config)

    small = {"driver": "fake", "settings": {"width": 9}}
    with pytest.raises(ConfigError, match="device 'bad': bad settings for the fake driver: "
                                          "setting 'height'"):  # fmt: skip
        plan(driver="fake", settings={"height": -3})
    with pytest.raises(ConfigError, match="device 'bad': unknown driver 'pikvm-9'"):
        plan(driver="pikvm-9")
    with pytest.raises(ConfigError, match="device 'bad': no password for the agent's API"):
        plan(listen="127.0.0.1:0", **small)
    with pytest.raises(ConfigError, match="device 'bad': cannot read the password file"):
        plan(listen="127.0.0.1:0", password_file=str(tmp_path / "missing.pw"), **small)
    password = tmp_path / "pw"
    password.write_text("secret\n")
    with pytest.raises(ConfigError, match="device 'bad': unknown face 'pikvm-9'"):
        plan(listen="127.0.0.1:0", password_file=str(password), faces=["native", "pikvm-9"],
             **small)  # fmt: skip
    agent = plan(listen="127.0.0.1:0", password_file=str(password), **small)
    assert list(agent.devices) == ["ok", "bad"]
    driver = agent.devices["bad"].plan.driver
    assert isinstance(driver, FakeDriver) and driver.width == 9
    assert [face.name for face in agent.devices["bad"].plan.faces] == ["native"]


def test_device_options_fill_a_network_drivers_settings(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from pydantic import ValidationError

    from remotehands.cli.agent_cmd import _device_settings
    from remotehands.drivers.remote import RemoteSettings

    totp = tmp_path / "totp"
    totp.write_text("JBSW Y3DP\n")
    monkeypatch.setenv("REMOTEHANDS_DEVICE_PASSWORD", "s3cret")
    settings = RemoteSettings.model_validate(_device_settings("https://kvm.local/", "admin", totp))
    assert (settings.url, settings.user) == ("https://kvm.local", "admin")
    assert settings.password() == "s3cret" and settings.totp_secret() == "JBSWY3DP"
    assert "s3cret" not in settings.model_dump_json()  # the variable is named, never copied
    monkeypatch.delenv("REMOTEHANDS_DEVICE_PASSWORD")
    with pytest.raises(ConfigError, match=r"REMOTEHANDS_DEVICE_PASSWORD, which is not set"):
        settings.password()
    with pytest.raises(ValidationError, match="http://HOST"):
        RemoteSettings(url="ftp://kvm.local")
    with pytest.raises(ConfigError, match="is empty"):
        totp.write_text("\n")
        settings.totp_secret()


def test_a_gateway_lists_kvms_whose_secret_files_are_taken_from_its_directory(
    tmp_path: Path,
) -> None:
    (tmp_path / "kvm.key").write_text("the-key\n")
    config = tmp_path / "gateway.toml"
    config.write_text(
        textwrap.dedent("""
        server = "http://fleet:8080"
        [[devices]]
        name = "kvm-1"
        driver = "tinypilot"
        tags = ["rack-1"]
        [devices.settings]
        url = "https://kvm-1.rack"
        password_file = "kvm.key"
        ca_file = "/etc/ssl/kvm.pem"
        layout = "en-GB"
        [[devices]]
        name = "kvm-2"
        driver = "tinypilot"
        [devices.settings]
        url = "https://kvm-2.rack"
    """)
    )
    loaded = load_config(config)
    settings = loaded.devices[0].settings
    assert settings["password_file"] == str(tmp_path / "kvm.key")
    assert settings["ca_file"] == "/etc/ssl/kvm.pem" and settings["layout"] == "en-GB"
    agent = Agent.from_config(loaded)
    driver = agent.devices["kvm-1"].plan.driver
    assert driver.kind == "tinypilot" and driver.device_type == "tinypilot"
    assert driver.settings.password() == "the-key"  # type: ignore[attr-defined]  # RemoteSettings
