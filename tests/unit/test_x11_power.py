"""The x11 driver's OS power: the operator's commands run (harmless ones here: ``touch``), an
action without a command is a dry run that logs and says so in the state, the ATX actions are
refused with what to do instead. Nothing here powers anything off."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
from click.testing import CliRunner

from remotehands.cli.main import cli
from remotehands.drivers.base import Power
from remotehands.drivers.x11.driver import X11Driver
from remotehands.errors import ConfigError, DeviceError, UnsupportedError

pytestmark = pytest.mark.anyio


def _driver(**commands: str) -> X11Driver:
    # The power methods need no X connection: the driver is never started here.
    return X11Driver.from_settings({"display": ":99", "power_commands": commands})


async def test_configured_commands_run_and_say_it(tmp_path: Path) -> None:
    restarted, shut = tmp_path / "restarted", tmp_path / "shut down"
    driver = _driver(restart=f"touch {restarted}", shutdown=f"touch '{shut}'")
    assert isinstance(driver, Power)
    state = await driver.power_state()
    assert (state.on, state.actions, state.buttons, state.dry_run) == (
        True, ["restart", "shutdown"], [], [],
    )  # fmt: skip
    await driver.power_restart()
    assert restarted.exists() and not shut.exists()
    await driver.power_shutdown()
    assert shut.exists()


async def test_without_a_command_it_is_a_dry_run_that_logs(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    marker = tmp_path / "restarted"
    driver = _driver(restart=f"touch {marker}")
    assert (await driver.power_state()).dry_run == ["shutdown"]  # it has no command
    with caplog.at_level(logging.WARNING, logger="remotehands.drivers.x11.power"):
        await driver.power_shutdown()
    assert "power shutdown: dry run, nothing done" in caplog.text
    assert "--power-command shutdown=CMD" in caplog.text
    assert not marker.exists()
    assert (await _driver().power_state()).dry_run == ["restart", "shutdown"]


async def test_a_failing_command_is_a_device_error_with_its_output() -> None:
    driver = _driver(restart="sh -c 'echo no permission >&2; exit 3'",
                     shutdown="/nonexistent/poweroff")  # fmt: skip
    with pytest.raises(DeviceError, match="failed with status 3: no permission"):
        await driver.power_restart()
    with pytest.raises(DeviceError, match="cannot run '/nonexistent/poweroff'"):
        await driver.power_shutdown()


async def test_the_atx_actions_are_a_kvms() -> None:
    driver = _driver()
    for call in (driver.power_on(), driver.power_off(), driver.power_off_hard(),
                 driver.power_reset_hard(), driver.power_click("reset")):  # fmt: skip
        with pytest.raises(UnsupportedError, match=r"a desktop cannot .* from its own agent"):
            await call


def test_bad_power_commands_are_refused_before_anything_runs() -> None:
    with pytest.raises(ConfigError, match="power_commands"):
        X11Driver.from_settings({"power_commands": {"reboot": "x"}})
    with pytest.raises(ConfigError, match="cannot be split"):
        X11Driver.from_settings({"power_commands": {"restart": "echo 'unclosed"}})
    with pytest.raises(ConfigError, match="empty"):
        X11Driver.from_settings({"power_commands": {"restart": " "}})
    result = CliRunner().invoke(cli, ["agent", "--power-command", "reboot=now"])
    assert result.exit_code == 2 and "restart=CMD or shutdown=CMD" in result.output
