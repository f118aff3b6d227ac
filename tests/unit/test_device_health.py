"""The device's own condition in an agent's health: on the wire only when known, and shown by
the CLI beside the machine's figures."""

from __future__ import annotations

from remotehands.cli.devices_cmd import _health
from remotehands.protocol.link import Heartbeat, decode, encode
from remotehands.protocol.models import DeviceCondition, Health


def test_the_device_condition_rides_heartbeats_and_is_left_out_when_unknown() -> None:
    machine = Health(uptime_seconds=5, cpu_percent=1.5, memory_percent=20)
    assert machine.model_dump() == {"uptime_seconds": 5, "cpu_percent": 1.5,
                                    "memory_percent": 20}  # fmt: skip
    down = machine.model_copy(
        update={"device": DeviceCondition(state="down", reason="cannot reach the TinyPilot")}
    )
    beat = Heartbeat.model_validate(decode(encode(Heartbeat(health=down))))
    assert beat.health.device == DeviceCondition(state="down", reason="cannot reach the TinyPilot")
    # an older agent's heartbeat (no device) still reads
    old = Heartbeat.model_validate(
        {
            "type": "heartbeat",
            "health": {"uptime_seconds": 1, "cpu_percent": 2, "memory_percent": 3},
        }
    )
    assert old.health.device is None and "device" not in old.health.model_dump()


def test_the_cli_says_why_a_device_cannot_serve() -> None:
    health = {"uptime_seconds": 5, "cpu_percent": 1.5, "memory_percent": 20.0}
    assert _health({"health": health}) == "cpu 1.5% mem 20.0%"
    assert _health({"health": {**health, "device": {"state": "ok", "reason": None}}}) == (
        "cpu 1.5% mem 20.0%"
    )
    failing = {**health, "device": {"state": "failing", "reason": "no video signal: ..."}}
    assert (
        _health({"health": failing}) == "cpu 1.5% mem 20.0%; device failing: no video signal: ..."
    )
    assert _health({}) == "-"
