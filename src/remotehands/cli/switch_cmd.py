"""``remotehands switch DEVICE [ports|set PORT|beacon PORT|power PORT ACTION|click PORT BTN]``."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, cast

import click

from remotehands.cli.actions_cmd import device_command, device_group
from remotehands.cli.output import Column, emit, table
from remotehands.cli.power_cmd import report_power
from remotehands.client import ActionMethods
from remotehands.protocol.models import PowerAction, PowerButton

__all__ = ["COMMANDS", "switch"]

_PORTS: list[Column] = [
    ("PORT", "port"),
    ("NAME", "name"),
    ("VIDEO", "video"),
    ("POWER", "power"),
    ("BEACON", "beacon"),
]


def _show(state: Mapping[str, Any]) -> None:
    rows = [{**p, "port": f"{p['port']}{' *' if p['port'] == state.get('active') else ''}"}
            for p in state.get("ports") or []]  # fmt: skip
    table(rows, _PORTS, "this switch has no ports")


def _port(value: str) -> int:
    if not value.isdigit():
        raise click.UsageError(f"PORT is a port number (0, 1, ...), not {value!r}")
    return int(value)


@device_group("switch", default="ports")
def switch() -> None:
    """A KVM switch: its ports (* marks the one shown), beacons and per-port power.

    \b
    Examples:
      remotehands switch rack-1
      remotehands switch rack-1 set 2
      remotehands switch rack-1 power 2 off-hard
    """


@device_command("ports", "[DEVICE]", counts=(0,), parent=switch, verb="switch_ports")
def switch_ports(hands: ActionMethods[Any], rest: list[str]) -> None:
    """List the ports and the active one."""
    state = hands.switch_ports()
    emit(state, lambda: _show(state))


@device_command("set", "[DEVICE] PORT", counts=(1,), parent=switch, verb="switch_set")
def switch_set(hands: ActionMethods[Any], rest: list[str]) -> None:
    """Show the machine on PORT."""
    state = hands.switch_set(_port(rest[0]))
    emit(state, f"port {state.get('active')} is shown")


@device_command("beacon", "[DEVICE] PORT", counts=(1,), parent=switch, verb="switch_beacon")
@click.option("--off", is_flag=True, help="Clear the beacon instead of lighting it.")
def switch_beacon(hands: ActionMethods[Any], rest: list[str], off: bool) -> None:
    """Light (or with --off clear) the beacon LED of PORT."""
    state = hands.switch_beacon(_port(rest[0]), not off)
    emit(state, f"beacon of port {rest[0]} {'cleared' if off else 'lit'}")


@device_command("power", "[DEVICE] PORT ACTION", counts=(2,), parent=switch, verb="switch_power")
@click.option("--no-wait", "no_wait", is_flag=True, help="Do not watch the port's power LED.")
@click.option("--timeout", "timeout_s", type=click.FloatRange(0, 600, min_open=True),
              help="How long to watch the power LED, in seconds (default 30).")  # fmt: skip
def switch_power(
    hands: ActionMethods[Any], rest: list[str], no_wait: bool, timeout_s: float | None
) -> None:
    """A power action on the machine of PORT: on, off, off-hard or reset-hard."""
    action = rest[1].replace("-", "_")
    if action not in ("on", "off", "off_hard", "reset_hard"):
        raise click.UsageError(f"ACTION is on, off, off-hard or reset-hard, not {rest[1]!r}")
    result = hands.switch_power(_port(rest[0]), cast(PowerAction, action),
                                wait=False if no_wait else None, timeout_s=timeout_s)  # fmt: skip
    report_power(result, f"port {rest[0]} {rest[1]}", lambda led: led)


@device_command("click", "[DEVICE] PORT BUTTON", counts=(2,), parent=switch, verb="switch_click")
@click.option("--no-wait", "no_wait", is_flag=True, help="Do not watch the port's power LED.")
@click.option("--timeout", "timeout_s", type=click.FloatRange(0, 600, min_open=True),
              help="How long to watch the power LED, in seconds (default 30).")  # fmt: skip
def switch_click(
    hands: ActionMethods[Any], rest: list[str], no_wait: bool, timeout_s: float | None
) -> None:
    """Press a front-panel button of the machine of PORT: power, power_long or reset."""
    button = rest[1].replace("-", "_")
    if button not in ("power", "power_long", "reset"):
        raise click.UsageError(f"BUTTON is power, power_long or reset, not {rest[1]!r}")
    result = hands.switch_click(_port(rest[0]), cast(PowerButton, button),
                                wait=False if no_wait else None, timeout_s=timeout_s)  # fmt: skip
    report_power(result, f"port {rest[0]} click {button}", lambda led: led)


COMMANDS: dict[str, tuple[str, str]] = {
    "switch": ("remotehands.cli.switch_cmd:switch", "A KVM switch: ports, active port, power."),
}
"""Command name -> ("module:attribute", one-line help), for ``remotehands.cli.main``."""
