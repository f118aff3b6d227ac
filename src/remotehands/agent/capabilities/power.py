"""The ``power`` capability: the machine's power, and what each power action was seen to do.

A power action does not answer as soon as the device took the request: the handler reads the
power state before, asks the driver, then watches the power LED until it shows the state the
action leads to, or ``timeout_s`` passed (``wait=false`` reads it once, at once). The answer
holds both states and whether the LED changed (:class:`~remotehands.protocol.results.
PowerResult`), so a caller knows the machine did go off, not only that a button was pressed.
:func:`observe` is the watch, shared with the switch's per-port power.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar, cast

from remotehands.agent.capabilities.registry import handles
from remotehands.agent.context import ActionContext
from remotehands.drivers.base import Power
from remotehands.errors import DeviceTimeoutError
from remotehands.protocol import params as P
from remotehands.protocol import results as R
from remotehands.protocol.models import PowerAction, PowerButton, PowerState

__all__ = [
    "POLL_MAX_S",
    "POLL_S",
    "expected_led",
    "observe",
    "power_click",
    "power_off",
    "power_off_hard",
    "power_on",
    "power_reset_hard",
    "power_restart",
    "power_shutdown",
    "power_state",
]

POLL_S = 0.05
"""How soon the power LED is read again while an action's effect is awaited; the pause grows
by half each time up to :data:`POLL_MAX_S`, so a quick LED is seen at once and a machine that
takes a minute to boot is not asked twenty times a second."""
POLL_MAX_S = 0.5
READ_TIMEOUT_S = 10.0
"""The longest one read of the power state may take."""

T = TypeVar("T")


def _power(ctx: ActionContext) -> Power:
    return cast(Power, ctx.driver)


def expected_led(action: PowerAction | PowerButton, on: bool | None) -> bool | None:
    """The power LED ``action`` leads to from ``on``; ``None`` when it does not change it (a
    reset, a restart) or the LED is unknown."""
    if on is None:
        return None
    if action == "on":
        return True
    if action in ("off", "off_hard", "shutdown", "power_long"):
        return False
    if action == "power":
        return not on
    return None


async def observe(
    read: Callable[[], Awaitable[T]],
    led: Callable[[T], bool | None],
    expected: bool | None,
    *,
    wait: bool,
    timeout_s: float,
) -> tuple[T, bool, float]:
    """Read the state until its LED is ``expected`` or ``timeout_s`` passed; without ``wait``,
    or when nothing is expected, read it once. Answers the last reading, whether the watch timed
    out and how long it took (ms)."""
    started = time.monotonic()
    deadline = started + timeout_s
    pause = POLL_S
    while True:
        try:
            async with asyncio.timeout(READ_TIMEOUT_S):
                after = await read()
        except TimeoutError as err:
            raise DeviceTimeoutError(
                f"the device did not report its power state within {READ_TIMEOUT_S:g} s"
            ) from err
        reached = expected is None or led(after) == expected
        now = time.monotonic()
        if not wait or reached:
            return after, False, round((now - started) * 1000, 3)
        if now >= deadline:
            return after, True, round((now - started) * 1000, 3)
        await asyncio.sleep(min(pause, deadline - now))
        pause = min(pause * 1.5, POLL_MAX_S)


async def _act(
    ctx: ActionContext,
    action: PowerAction | PowerButton,
    label: str,
    request: Callable[[], Awaitable[None]],
    p: P.PowerActionParams,
) -> R.PowerResult:
    power = _power(ctx)
    before = await power.power_state()
    # a dry run (an OS action without a command) changes nothing: there is nothing to wait for
    dry_run = action in before.dry_run
    expected = None if dry_run else expected_led(action, before.on)
    await request()
    after, timed_out, waited_ms = await observe(
        power.power_state, lambda s: s.on, expected, wait=p.wait, timeout_s=p.timeout_s
    )
    return R.PowerResult(
        action=label, before=before, after=after, expected=expected,
        changed=after.on != before.on, timed_out=timed_out, waited_ms=waited_ms,
        dry_run=dry_run,
    )  # fmt: skip


@handles("power.state")
async def power_state(ctx: ActionContext, _: P.NoParams) -> R.PowerStateResult:
    """The power and disk LEDs and the actions the device has."""
    state: PowerState = await _power(ctx).power_state()
    return R.PowerStateResult.model_validate(state.model_dump())


@handles("power.on")
async def power_on(ctx: ActionContext, p: P.PowerActionParams) -> R.PowerResult:
    """Turn the machine on; watch the power LED come on."""
    return await _act(ctx, "on", "on", _power(ctx).power_on, p)


@handles("power.off")
async def power_off(ctx: ActionContext, p: P.PowerActionParams) -> R.PowerResult:
    """Ask the machine to turn off; watch the power LED go out."""
    return await _act(ctx, "off", "off", _power(ctx).power_off, p)


@handles("power.off_hard")
async def power_off_hard(ctx: ActionContext, p: P.PowerActionParams) -> R.PowerResult:
    """Cut the machine's power; watch the power LED go out."""
    return await _act(ctx, "off_hard", "off_hard", _power(ctx).power_off_hard, p)


@handles("power.reset_hard")
async def power_reset_hard(ctx: ActionContext, p: P.PowerActionParams) -> R.PowerResult:
    """Pull the reset line (the power LED stays as it is)."""
    return await _act(ctx, "reset_hard", "reset_hard", _power(ctx).power_reset_hard, p)


@handles("power.restart")
async def power_restart(ctx: ActionContext, p: P.PowerActionParams) -> R.PowerResult:
    """Restart the operating system (the power LED stays on)."""
    return await _act(ctx, "restart", "restart", _power(ctx).power_restart, p)


@handles("power.shutdown")
async def power_shutdown(ctx: ActionContext, p: P.PowerActionParams) -> R.PowerResult:
    """Shut the operating system down; watch the power LED go out."""
    return await _act(ctx, "shutdown", "shutdown", _power(ctx).power_shutdown, p)


@handles("power.click")
async def power_click(ctx: ActionContext, p: P.PowerClickParams) -> R.PowerResult:
    """Press a front-panel button, then watch the power LED for its effect."""

    async def press() -> None:
        await _power(ctx).power_click(p.button)

    return await _act(ctx, p.button, f"click {p.button}", press, p)
