"""kvmd's streamer on a remotehands device: its state and its snapshots.

A snapshot is the device's ``screenshot`` action in JPEG (the device's own JPEG passes through
untouched where the driver has one), answered raw with ustreamer's ``X-UStreamer-*`` headers.
A desktop always has a picture, so ``source.online`` is true and snapshots never wait for a
streamer to start (a deliberate, compatible difference: kvmd answers 503 while ustreamer is
down). ``preview`` scales the frame down inside ``preview_max_width`` x ``preview_max_height``
(both 0: a fifth of the source), keeping its aspect ratio. ``ocr=1`` is the face's (the
device's ``ocr`` action, which reads the screen as it is now: with ``load=1`` too, not the
saved frame).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Final

from starlette.responses import Response

from remotehands.agent.dispatch import Dispatcher
from remotehands.agent.faces.pikvm.wire import KvmdError, valid_int
from remotehands.errors import DeviceError, DeviceOfflineError, DeviceTimeoutError
from remotehands.protocol.encoding import jsonable

__all__ = ["Snapshot", "Streamer"]

_NO_CACHE: Final = {
    "Access-Control-Allow-Origin": "*",
    "Cache-Control": "no-store, no-cache, must-revalidate, proxy-revalidate, pre-check=0, "
    "post-check=0, max-age=0",
    "Pragma": "no-cache",
    "Expires": "Mon, 3 Jan 2000 12:34:56 GMT",
}


@dataclass(frozen=True)
class Snapshot:
    """One frame as ustreamer hands it out."""

    data: bytes
    width: int
    height: int
    timestamp: float
    online: bool = True

    def headers(self) -> dict[str, str]:
        """The headers kvmd copies from ustreamer (sorted by name, as kvmd sorts them)."""
        headers = {
            **_NO_CACHE,
            "X-Timestamp": f"{self.timestamp:.6f}",
            "X-UStreamer-Height": str(self.height),
            "X-UStreamer-Online": "true" if self.online else "false",
            "X-UStreamer-Width": str(self.width),
        }
        return dict(sorted(headers.items()))

    def response(self, body: bytes | None = None) -> Response:
        """The raw JPEG answer (``body``: a preview of this frame instead)."""
        response = Response(self.data if body is None else body, media_type="image/jpeg")
        # kvmd's spelling of the names (Starlette would lower-case them)
        response.raw_headers += [(k.encode(), v.encode()) for k, v in self.headers().items()]
        return response

    def saved_state(self) -> dict[str, Any]:
        """``snapshot.saved`` of the streamer state."""
        return {"online": self.online, "width": self.width, "height": self.height}


class Streamer:
    """The streamer of one device."""

    def __init__(self, dispatcher: Dispatcher) -> None:
        self.dispatcher = dispatcher
        self.quality = 80
        self.desired_fps = 30
        self.saved: Snapshot | None = None

    async def resolution(self) -> tuple[int, int]:
        """Screen 0's size."""
        screens = jsonable(await self.dispatcher.run("screens"))["screens"]
        return int(screens[0]["width"]), int(screens[0]["height"])

    async def state(self) -> dict[str, Any]:
        """``/api/streamer`` (the WS ``streamer`` event); a device that shows no picture now
        (a KVM without signal behind this agent) is ``source.online: false``."""
        online = True
        try:
            width, height = await self.resolution()
        except (DeviceError, DeviceOfflineError, DeviceTimeoutError):
            online, width, height = False, 0, 0
        params = {"desired_fps": self.desired_fps, "quality": self.quality}
        return {
            "features": {"quality": True, "resolution": False, "h264": False},
            "limits": {"desired_fps": {"min": 0, "max": 120}},
            "params": dict(params),
            "applied": dict(params),
            "snapshot": {"saved": self.saved.saved_state() if self.saved else None},
            "streamer": {
                "instance_id": "",
                "encoder": {"type": "CPU", "quality": self.quality},
                "sinks": {"jpeg": {"has_clients": False}, "h264": {"has_clients": False}},
                "source": {
                    "online": online,
                    "resolution": {"width": width, "height": height},
                    "captured_fps": self.desired_fps,
                    "desired_fps": self.desired_fps,
                },
                "stream": {"queued_fps": 0, "clients": 0, "clients_stat": {}},
            },
        }

    async def take(self, *, scale: float = 1.0, quality: int | None = None) -> Snapshot:
        """A fresh JPEG of screen 0 (scaled when ``scale`` < 1)."""
        params: dict[str, Any] = {"format": "jpeg", "quality": quality or self.quality}
        if scale != 1.0:
            params["scale"] = scale
        shot = await self.dispatcher.run("screenshot", params)
        return Snapshot(
            data=shot["image"],
            width=int(shot["native_width"]),
            height=int(shot["native_height"]),
            timestamp=time.time(),
        )

    @staticmethod
    def preview_scale(width: int, height: int, max_width: int, max_height: int) -> float:
        """How much a preview shrinks a frame: to fit the box, never up; 0 x 0 is a fifth."""
        if not max_width and not max_height:
            max_width, max_height = max(1, width // 5), max(1, height // 5)
        fit_w = max_width / width if max_width else 1.0
        fit_h = max_height / height if max_height else 1.0
        return min(1.0, fit_w, fit_h)

    def set_params(self, query: dict[str, str]) -> None:
        """``/api/streamer/set_params``: quality and desired_fps; the features this streamer
        lacks are kvmd's ``...NotSupported`` errors."""
        if query.get("resolution"):
            raise KvmdError(
                "StreamerResolutionNotSupported",
                "This streamer does not support resolution settings",
            )
        if query.get("h264_bitrate") or query.get("h264_gop"):
            raise KvmdError("StreamerH264NotSupported", "This streamer does not support H264")
        if query.get("quality"):
            self.quality = valid_int(query["quality"], lo=1, hi=100, name="stream quality")
        if query.get("desired_fps"):
            self.desired_fps = valid_int(query["desired_fps"], lo=0, hi=120, name="stream FPS")
