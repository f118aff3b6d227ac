"""Reading a real PulseAudio server as the server itself reports it (``pactl -f json``, not our
own reads), changing it from outside the agent, and a real client playing on it."""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from remotehands.agent.soundserver import SoundServer
from remotehands.testing.xapps import eventually

__all__ = ["Player", "default_sink", "pactl", "percent", "playing", "reset", "sink_inputs", "sinks"]

NORM = 65536
"""PulseAudio's 100 % volume (PA_VOLUME_NORM)."""


def pactl(server: SoundServer, *args: str) -> Any:
    """Run ``pactl -f json ARGS`` against ``server``; its JSON answer, or None when it printed
    nothing (a change)."""
    env = {**os.environ, **server.env}
    done = subprocess.run(["pactl", "-f", "json", *args], env=env, capture_output=True,
                          text=True, timeout=10, check=True)  # fmt: skip
    return json.loads(done.stdout) if done.stdout.strip() else None


def percent(volume: dict[str, Any]) -> float:
    """A ``pactl`` volume (per channel) as the mean percentage."""
    values = [float(channel["value"]) for channel in volume.values()]
    return sum(values) / len(values) / NORM * 100


def sinks(server: SoundServer) -> dict[str, dict[str, Any]]:
    """The server's sinks by name."""
    return {sink["name"]: sink for sink in pactl(server, "list", "sinks")}


def sink_inputs(server: SoundServer) -> dict[int, dict[str, Any]]:
    """The server's sink inputs by index."""
    return {stream["index"]: stream for stream in pactl(server, "list", "sink-inputs")}


def default_sink(server: SoundServer) -> str:
    """The name of the server's default sink."""
    name: str = pactl(server, "info")["default_sink_name"]
    return name


def reset(server: SoundServer) -> None:
    """The outputs as the fixture made them: ``rh_one`` the default, both at 100 %, unmuted."""
    pactl(server, "set-default-sink", "rh_one")
    for name in ("rh_one", "rh_two"):
        pactl(server, "set-sink-volume", name, "100%")
        pactl(server, "set-sink-mute", name, "0")


class Player:
    """``pacat`` playing silence (``/dev/zero``, without end) to the server: an application
    session. ``index`` is its sink input once :meth:`wait` saw it on the server."""

    def __init__(self, server: SoundServer, name: str = "rh-test-player") -> None:
        self.server = server
        self.name = name
        self.index: int | None = None
        env = {**os.environ, **server.env}
        self.proc = subprocess.Popen(
            ["pacat", "--playback", f"--client-name={name}", "--stream-name=silence",
             "/dev/zero"],
            env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )  # fmt: skip

    def _find(self) -> list[int]:
        # a list, so that sink input 0 is found too (eventually waits for a truthy value)
        pid = str(self.proc.pid)
        return [index for index, stream in sink_inputs(self.server).items()
                if stream["properties"].get("application.process.id") == pid]  # fmt: skip

    async def wait(self) -> int:
        """Wait until the server lists the stream; its sink input index."""
        self.index = (await eventually(self._find, timeout=10))[0]
        return self.index

    def stop(self) -> None:
        """End the client."""
        self.proc.terminate()
        self.proc.wait(timeout=5)


@contextmanager
def playing(server: SoundServer, name: str = "rh-test-player") -> Iterator[Player]:
    """A :class:`Player` for the block."""
    player = Player(server, name)
    try:
        yield player
    finally:
        player.stop()
