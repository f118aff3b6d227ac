"""The ``switch`` capability: a KVM switch's ports, the one shown, beacons and per-port power.

Per-port power actions answer what was observed on the port's power LED, as the device's own
power actions do (:func:`remotehands.agent.capabilities.power.observe`).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import cast

from remotehands.agent.capabilities.power import expected_led, observe
from remotehands.agent.capabilities.registry import handles
from remotehands.agent.context import ActionContext
from remotehands.drivers.base import Switch
from remotehands.errors import NotFoundError
from remotehands.protocol import params as P
from remotehands.protocol import results as R
from remotehands.protocol.models import PowerAction, PowerButton, SwitchState

__all__ = ["switch_beacon", "switch_click", "switch_ports", "switch_power", "switch_set"]


def _switch(ctx: ActionContext) -> Switch:
    return cast(Switch, ctx.driver)


def _result(state: SwitchState) -> R.SwitchStateResult:
    return R.SwitchStateResult.model_validate(state.model_dump())


def _port_led(state: SwitchState, port: int) -> bool | None:
    for one in state.ports:
        if one.port == port:
            return one.power
    ports = ", ".join(str(p.port) for p in state.ports) or "none"
    raise NotFoundError(f"no port {port} on this switch; its ports are: {ports}")


@handles("switch.ports")
async def switch_ports(ctx: ActionContext, _: P.NoParams) -> R.SwitchStateResult:
    """Every port and the active one."""
    return _result(await _switch(ctx).switch_ports())


@handles("switch.set")
async def switch_set(ctx: ActionContext, p: P.SwitchPortParams) -> R.SwitchStateResult:
    """Show the machine on ``port``; answers the switch's state after."""
    switch = _switch(ctx)
    _port_led(await switch.switch_ports(), p.port)
    await switch.switch_set(p.port)
    return _result(await switch.switch_ports())


@handles("switch.beacon")
async def switch_beacon(ctx: ActionContext, p: P.SwitchBeaconParams) -> R.SwitchStateResult:
    """Light or clear a port's beacon; answers the switch's state after."""
    switch = _switch(ctx)
    _port_led(await switch.switch_ports(), p.port)
    await switch.switch_beacon(p.port, p.on)
    return _result(await switch.switch_ports())


async def _act(
    ctx: ActionContext,
    port: int,
    action: PowerAction | PowerButton,
    label: str,
    request: Callable[[], Awaitable[None]],
    p: P.PowerActionParams,
) -> R.SwitchPowerResult:
    switch = _switch(ctx)
    before = _port_led(await switch.switch_ports(), port)
    expected = expected_led(action, before)
    await request()
    state, timed_out, waited_ms = await observe(
        switch.switch_ports, lambda s: _port_led(s, port), expected,
        wait=p.wait, timeout_s=p.timeout_s,
    )  # fmt: skip
    after = _port_led(state, port)
    return R.SwitchPowerResult(
        port=port, action=label, before=before, after=after, expected=expected,
        changed=after != before, timed_out=timed_out, waited_ms=waited_ms,
    )  # fmt: skip


@handles("switch.power")
async def switch_power(ctx: ActionContext, p: P.SwitchPowerParams) -> R.SwitchPowerResult:
    """A power action on a port's machine, then its power LED watched for the effect."""

    async def request() -> None:
        await _switch(ctx).switch_power(p.port, p.action)

    return await _act(ctx, p.port, p.action, p.action, request, p)


@handles("switch.click")
async def switch_click(ctx: ActionContext, p: P.SwitchClickParams) -> R.SwitchPowerResult:
    """Press a front-panel button of a port's machine, then watch its power LED."""

    async def request() -> None:
        await _switch(ctx).switch_click(p.port, p.button)

    return await _act(ctx, p.port, p.button, f"click {p.button}", request, p)
