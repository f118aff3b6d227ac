"""``remotehands power DEVICE [state|on|off|off-hard|reset-hard|click-power|click-reset|...]``.

Each power action answers what was observed: the power LED before and after, and whether it
changed within ``--timeout`` seconds. When a change was awaited and did not come, the command
says so on stderr and exits with status 1, so a script can tell "pressed" from "done".
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, cast

import click

from remotehands.cli.actions_cmd import device_command, device_group
from remotehands.cli.output import emit
from remotehands.client import ActionMethods
from remotehands.protocol.models import PowerButton

__all__ = ["COMMANDS", "power"]


def _led(on: Any) -> str:
    return "unknown" if on is None else ("on" if on else "off")


def show_power_state(state: Mapping[str, Any]) -> None:
    """Print a power state: the LEDs and what the device can do."""
    line = f"power: {_led(state.get('on'))}"
    if state.get("hdd") is not None:
        line += f", disk: {'busy' if state['hdd'] else 'idle'}"
    if state.get("busy"):
        line += " (the device is busy with a power action)"
    click.echo(line)
    if state.get("actions"):
        click.echo(f"actions: {', '.join(state['actions'])}")
    if state.get("buttons"):
        click.echo(f"buttons: {', '.join(state['buttons'])}")
    if state.get("dry_run"):
        click.echo(f"dry runs (no command configured): {', '.join(state['dry_run'])}")


def report_power(result: Mapping[str, Any], what: str, led: Callable[[Any], Any]) -> None:
    """Print what a power action was seen to do (``led`` reads the LED of a state); exit 1 when
    an awaited change did not come."""
    before, after = led(result.get("before")), led(result.get("after"))
    seconds = float(result.get("waited_ms") or 0) / 1000

    def human() -> None:
        if result.get("dry_run"):
            click.echo(f"{what}: a dry run, nothing was done (the device has no command for it)")
        elif result.get("changed"):
            click.echo(f"{what}: power LED {_led(before)} -> {_led(after)} ({seconds:.1f} s)")
        elif result.get("timed_out"):
            click.echo(f"{what}: requested, but the power LED is still {_led(after)} after "
                       f"{seconds:.1f} s", err=True)  # fmt: skip
        else:
            click.echo(f"{what}: done; power LED {_led(after)}")

    emit(result, human)
    if result.get("timed_out"):
        raise click.exceptions.Exit(1)


def _state_led(state: Any) -> Any:
    return state.get("on") if isinstance(state, Mapping) else None


def _wait_options(body: Callable[..., None]) -> Callable[..., None]:
    body = click.option(
        "--timeout",
        "timeout_s",
        type=click.FloatRange(0, 600, min_open=True),
        help="How long to watch the power LED, in seconds (default 30).",
    )(body)
    return click.option("--no-wait", "no_wait", is_flag=True,
                        help="Do not watch the power LED: read it once.")(body)  # fmt: skip


def _watch(no_wait: bool, timeout_s: float | None) -> dict[str, Any]:
    return {"wait": False if no_wait else None, "timeout_s": timeout_s}


@device_group("power", default="state")
def power() -> None:
    """The machine's power: its state, power actions and front-panel buttons.

    \b
    Examples:
      remotehands power rack-1                 # the power and disk LEDs
      remotehands power rack-1 on              # and wait for the power LED
      remotehands power rack-1 off-hard --timeout 10
      remotehands power rack-1 click-reset --json
    """


@device_command("state", "[DEVICE]", counts=(0,), parent=power, verb="power_state")
def power_state(hands: ActionMethods[Any], rest: list[str]) -> None:
    """Show the power and disk LEDs and the power actions the device has."""
    state = hands.power_state()
    emit(state, lambda: show_power_state(state))


def _action(name: str, verb: str, doc: str) -> None:
    def command(
        hands: ActionMethods[Any], rest: list[str], no_wait: bool, timeout_s: float | None
    ) -> None:
        result = getattr(hands, verb)(**_watch(no_wait, timeout_s))
        report_power(result, f"power {name}", _state_led)

    command.__doc__ = doc
    device_command(name, "[DEVICE]", counts=(0,), parent=power, verb=verb)(_wait_options(command))


for _name, _verb, _doc in (
    ("on", "power_on", "Turn the machine on and watch its power LED come on."),
    ("off", "power_off", "Ask the machine to turn off (the OS may refuse) and watch its LED."),
    ("off-hard", "power_off_hard", "Cut the machine's power (a long press of the button)."),
    ("reset-hard", "power_reset_hard", "Pull the reset line."),
    ("restart", "power_restart", "Restart the operating system."),
    ("shutdown", "power_shutdown", "Shut the operating system down."),
):
    _action(_name, _verb, _doc)


def _click(hands: ActionMethods[Any], button: PowerButton, no_wait: bool,
           timeout_s: float | None) -> None:  # fmt: skip
    result = hands.power_click(button, **_watch(no_wait, timeout_s))
    report_power(result, f"click {button}", _state_led)


@device_command("click", "[DEVICE] BUTTON", counts=(1,), parent=power, verb="power_click")
@_wait_options
def power_click(
    hands: ActionMethods[Any], rest: list[str], no_wait: bool, timeout_s: float | None
) -> None:
    """Press a front-panel button: power, power_long or reset."""
    button = rest[0].replace("-", "_")
    if button not in ("power", "power_long", "reset"):
        raise click.UsageError(f"BUTTON is power, power_long or reset, not {rest[0]!r}")
    _click(hands, cast(PowerButton, button), no_wait, timeout_s)


@device_command("click-power", "[DEVICE]", counts=(0,), parent=power)
@_wait_options
def click_power(
    hands: ActionMethods[Any], rest: list[str], no_wait: bool, timeout_s: float | None
) -> None:
    """Press the power button briefly."""
    _click(hands, "power", no_wait, timeout_s)


@device_command("click-reset", "[DEVICE]", counts=(0,), parent=power)
@_wait_options
def click_reset(
    hands: ActionMethods[Any], rest: list[str], no_wait: bool, timeout_s: float | None
) -> None:
    """Press the reset button."""
    _click(hands, "reset", no_wait, timeout_s)


COMMANDS: dict[str, tuple[str, str]] = {
    "power": ("remotehands.cli.power_cmd:power", "The machine's power: state, on, off, reset."),
}
"""Command name -> ("module:attribute", one-line help), for ``remotehands.cli.main``."""
