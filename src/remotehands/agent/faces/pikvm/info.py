"""kvmd's system information: ``/api/info`` (legacy and ``legacy=0`` shapes), the per-key WS
``info`` events and the Prometheus export.

The face reports kvmd 4.206 and ustreamer 6.62, so clients gated on a kvmd version accept it;
the agent's own identity is in ``meta.remotehands`` and in ``extras.remotehands``.
"""

from __future__ import annotations

import platform
import re
import socket
import time
from collections.abc import Iterable, Mapping
from importlib import metadata
from typing import Any, Final

import psutil

from remotehands.agent.faces.pikvm.wire import KvmdError

__all__ = [
    "KVMD_VERSION",
    "SUBMANAGERS",
    "Info",
    "prometheus_text",
]

KVMD_VERSION: Final = (4, 206)
"""The kvmd version the face claims (``system.kvmd.version``, ``loop.version``)."""
USTREAMER_VERSION: Final = "6.62"
SUBMANAGERS: Final = ("auth", "extras", "fan", "health", "meta", "node", "system", "uptime")


def _version() -> str:
    try:
        return metadata.version("remotehands")
    except metadata.PackageNotFoundError:
        return "0"


class Info:
    """The information submanagers of one device."""

    def __init__(self, device: str, *, auth_enabled: bool = True) -> None:
        self.device = device
        self.auth_enabled = auth_enabled
        self.host = socket.gethostname()
        self.agent_version = _version()
        self.started = time.monotonic()

    def submanager(self, name: str) -> Any:
        """One submanager's value in the modern (``legacy=0``, WS) shape."""
        uname = platform.uname()
        if name == "auth":
            return {"enabled": self.auth_enabled}
        if name == "system":
            return {
                "kvmd": {"version": ".".join(map(str, KVMD_VERSION))},
                "streamer": {
                    "app": "ustreamer",
                    "version": USTREAMER_VERSION,
                    "features": {"WITH_GPIO": False, "HAS_PDEATHSIG": True},
                },
                "kernel": {
                    "system": uname.system,
                    "release": uname.release,
                    "version": uname.version,
                    "machine": uname.machine,
                },
                "platform": {
                    "type": "rpi",
                    "base": None,
                    "serial": None,
                    "model": None,
                    "video": None,
                    "board": None,
                },
            }
        if name == "health":
            memory = psutil.virtual_memory()
            return {
                "temp": {"cpu": None},
                "cpu": {"percent": int(psutil.cpu_percent(interval=None))},
                "mem": {
                    "percent": memory.percent,
                    "total": memory.total,
                    "available": memory.available,
                },
                "throttling": None,
            }
        if name == "meta":
            return {
                "server": {"host": self.host},
                "kvm": {},
                "remotehands": {"device": self.device, "version": self.agent_version},
            }
        if name == "extras":
            return {
                "remotehands": {
                    "name": "remotehands",
                    "description": "remotehands agent",
                    "version": self.agent_version,
                    "enabled": True,
                    "started": True,
                    "port": 0,
                }
            }
        if name == "fan":
            return {"monitored": False, "state": None}
        if name == "node":
            return {"host": self.host}
        if name == "uptime":
            total = int(time.time() - psutil.boot_time())
            days, rest = divmod(total, 86400)
            hours, rest = divmod(rest, 3600)
            minutes, seconds = divmod(rest, 60)
            return {
                "total": total,
                "parts": {"days": days, "hours": hours, "minutes": minutes, "seconds": seconds},
            }
        raise KeyError(name)

    def get(self, fields: str | None, legacy: bool) -> dict[str, Any]:
        """``/api/info``'s result for the ``fields`` query (one comma/space list): absent, the
        default set (legacy: everything but ``health``, plus ``hw``); present but empty,
        everything."""
        allowed = (*SUBMANAGERS, "hw") if legacy else SUBMANAGERS
        if fields is None:
            wanted = [n for n in allowed if not (legacy and n == "health")]
        else:
            wanted = [f.lower() for f in re.split(r"[,\t ]+", fields.strip()) if f]
            if any(name not in allowed for name in wanted):
                raise KvmdError.validator(f"Failed sub-validator on one of the item of {wanted!r}")
            wanted = wanted or list(allowed)
        result: dict[str, Any] = {}
        for name in sorted(set(wanted)):
            if name != "hw" and not (legacy and name == "health"):
                result[name] = self.submanager(name)
        if legacy and "system" in result:
            result["system"] = {k: v for k, v in result["system"].items() if k != "platform"}
        if legacy and "hw" in wanted:
            health = self.submanager("health")
            result["hw"] = {"health": health, "platform": self.submanager("system")["platform"]}
        return result

    def events(self) -> Iterable[dict[str, Any]]:
        """The per-key WS ``info`` events, one submanager each."""
        for name in SUBMANAGERS:
            yield {name: self.submanager(name)}


def _flatten(prefix: str, value: Any, out: list[tuple[str, float]]) -> None:
    if value is None:
        return
    if isinstance(value, bool):
        out.append((prefix, 1.0 if value else 0.0))
    elif isinstance(value, int | float):
        out.append((prefix, float(value)))
    elif isinstance(value, Mapping):
        for key in sorted(value):
            name = prefix if key == "parsed_flags" else f"{prefix}_{key}"
            _flatten(name, value[key], out)


def prometheus_text(
    atx: Mapping[str, Any], health: Mapping[str, Any], fan: Mapping[str, Any]
) -> str:
    """kvmd's metrics: every value a gauge, bools as 0/1, nulls left out."""
    metrics: list[tuple[str, float]] = [
        ("pikvm_atx_enabled", 1.0 if atx.get("enabled") else 0.0),
        ("pikvm_atx_power", 1.0 if atx.get("leds", {}).get("power") else 0.0),
    ]
    _flatten("pikvm_hw", health, metrics)
    _flatten("pikvm_fan", fan, metrics)
    lines = []
    for name, value in metrics:
        shown = int(value) if value == int(value) else value
        lines.append(f"# TYPE {name} gauge\n{name} {shown}\n")
    return "\n".join(lines) + "\n"
