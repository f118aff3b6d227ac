"""A small stateful PiKVM (kvmd 4.206) for the parts the agent's own face cannot really have:
ATX LEDs that follow the buttons, an MSD store with kvmd's rules, a switch with ports; and
kvmd's two-factor sign-in, a streamer without signal and the event socket's partial states.

Faithful to reference/pikvm-kvmd-compat.md for what it serves (envelope, error names and
statuses, Content-Length uploads with ``remove_incomplete``, ``write_remote`` NDJSON, LED-gated
ATX with its busy region), and nothing else: it is a test double, served on real loopback HTTP.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass, field
from typing import Any

import pyotp
from starlette.applications import Starlette
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route, WebSocketRoute
from starlette.websockets import WebSocket


def envelope(result: dict[str, Any] | None = None, status: int = 200) -> Response:
    body = json.dumps({"ok": status == 200, "result": result or {}}, sort_keys=True, indent=4)
    return Response(body, status_code=status, media_type="application/json; charset=utf-8")


def error(name: str, message: str, status: int = 400) -> Response:
    return envelope({"error": name, "error_msg": message}, status)


@dataclass
class PikvmDouble:
    """The device's state; ``app`` serves it."""

    user: str = "admin"
    password: str = "admin"
    totp_secret: str | None = None
    click_s: float = 0.2
    power: bool = False
    busy: bool = False
    images: dict[str, bytes | int] = field(default_factory=dict)
    incomplete: set[str] = field(default_factory=set)
    drive: dict[str, Any] = field(
        default_factory=lambda: {"image": None, "connected": False, "cdrom": True, "rw": False}
    )
    ports: int = 6
    active: int = -1
    beacons: list[bool] = field(default_factory=list)
    port_power: list[bool] = field(default_factory=list)
    uploads: list[dict[str, Any]] = field(default_factory=list)
    remote: dict[str, bytes] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.beacons = [False] * self.ports
        self.port_power = [True] * self.ports
        routes = [
            Route("/api/auth/check", self.ok, methods=["GET"]),
            Route("/api/info", self.info, methods=["GET"]),
            Route("/api/streamer", self.streamer, methods=["GET"]),
            Route("/api/streamer/snapshot", self.snapshot, methods=["GET"]),
            Route("/api/atx", self.atx, methods=["GET"]),
            Route("/api/atx/power", self.atx_power, methods=["POST"]),
            Route("/api/atx/click", self.atx_click, methods=["POST"]),
            Route("/api/msd", self.msd, methods=["GET"]),
            Route("/api/msd/write", self.msd_write, methods=["POST"]),
            Route("/api/msd/write_remote", self.msd_write_remote, methods=["POST"]),
            Route("/api/msd/set_params", self.msd_set_params, methods=["POST"]),
            Route("/api/msd/set_connected", self.msd_set_connected, methods=["POST"]),
            Route("/api/msd/remove", self.msd_remove, methods=["POST"]),
            Route("/api/switch", self.switch, methods=["GET"]),
            Route("/api/switch/set_active", self.switch_set_active, methods=["POST"]),
            Route("/api/switch/set_beacon", self.switch_set_beacon, methods=["POST"]),
            Route("/api/switch/atx/power", self.switch_atx_power, methods=["POST"]),
        ]
        self.app = Starlette(
            routes=[Route(r.path, self._authed(r.endpoint), methods=r.methods) for r in routes]
            + [WebSocketRoute("/api/ws", self.ws)]
        )

    # -- auth: X-KVMD headers, with the TOTP code as the password's last six characters ----
    def _authorized(self, headers: Any) -> int:
        user, passwd = headers.get("x-kvmd-user", ""), headers.get("x-kvmd-passwd", "")
        if not user:
            return 401
        if self.totp_secret:
            passwd, code = passwd[:-6], passwd[-6:]
            if not pyotp.TOTP(self.totp_secret).verify(code, valid_window=1):
                return 403
        return 200 if (user, passwd) == (self.user, self.password) else 403

    def _authed(self, endpoint: Any) -> Any:
        async def guarded(request: Request) -> Response:
            status = self._authorized(request.headers)
            if status == 401:
                return error("UnauthorizedError", "Unauthorized", 401)
            if status == 403:
                return error("ForbiddenError", "Forbidden", 403)
            response: Response = await endpoint(request)
            return response

        return guarded

    async def ok(self, request: Request) -> Response:
        return envelope()

    async def info(self, request: Request) -> Response:
        return envelope(
            {
                "hw": {"platform": {"type": "rpi", "serial": "000000009a7e1234"}},
                "system": {"kvmd": {"version": "4.206"}},
                "node": {"host": "pikvm"},
            }
        )

    async def streamer(self, request: Request) -> Response:
        return envelope(
            {"streamer": {"source": {"online": False, "resolution": {"width": 640, "height": 480}}}}
        )

    async def snapshot(self, request: Request) -> Response:
        return error("UnavailableError", "Service Unavailable", 503)

    # -- ATX ------------------------------------------------------------------------------
    def atx_state(self) -> dict[str, Any]:
        return {
            "enabled": True,
            "busy": self.busy,
            "acts": {"power": self.busy, "reset": False},
            "leds": {"power": self.power, "hdd": False},
        }

    async def atx(self, request: Request) -> Response:
        return envelope(self.atx_state())

    async def _click(self, then: bool | None) -> None:
        self.busy = True
        await asyncio.sleep(self.click_s)
        if then is not None:
            self.power = then
        self.busy = False

    async def _press(self, then: bool | None, wait: bool) -> Response:
        if self.busy:
            return error(
                "AtxIsBusyError", "Performing another ATX operation, please try again later", 409
            )
        task = asyncio.create_task(self._click(then))
        if wait:
            await task
        else:
            await asyncio.sleep(0)  # the region is entered before answering
        return envelope()

    async def atx_power(self, request: Request) -> Response:
        action = request.query_params.get("action", "")
        wait = request.query_params.get("wait", "0") in ("1", "true", "yes")
        if action == "on":
            return await self._press(True, wait) if not self.power else envelope()
        if action in ("off", "off_hard"):
            return await self._press(False, wait) if self.power else envelope()
        if action == "reset_hard":
            return await self._press(None, wait) if self.power else envelope()
        return error("ValidatorError", f"The argument {action!r} is not a valid ATX power action")

    async def atx_click(self, request: Request) -> Response:
        button = request.query_params.get("button", "")
        wait = request.query_params.get("wait", "0") in ("1", "true", "yes")
        then = {"power": not self.power, "power_long": False, "reset": None}.get(button)
        return await self._press(then, wait)

    # -- MSD ------------------------------------------------------------------------------
    def _size(self, name: str) -> int:
        data = self.images[name]
        return data if isinstance(data, int) else len(data)

    def msd_state(self) -> dict[str, Any]:
        images = {
            name: {
                "complete": name not in self.incomplete,
                "removable": True,
                "writable": not name.endswith(".iso"),
                "size": self._size(name),
                "mod_ts": 1786869863.92,
            }
            for name in self.images
        }
        name = self.drive["image"]
        image = {"name": name, "in_storage": True, **images[name]} if name else None
        return {
            "enabled": True,
            "online": True,
            "busy": False,
            "drive": {**self.drive, "image": image},
            "storage": {
                "images": images,
                "parts": {"": {"size": 1 << 30, "free": 1 << 29, "writable": True}},
                "downloading": None,
                "uploading": None,
            },
        }

    async def msd(self, request: Request) -> Response:
        return envelope(self.msd_state())

    async def msd_write(self, request: Request) -> Response:
        name = request.query_params["image"]
        remove = request.query_params.get("remove_incomplete", "0") in ("1", "true", "yes")
        length = request.headers.get("content-length")
        self.uploads.append(
            {
                "name": name,
                "content-length": length,
                "chunked": "transfer-encoding" in request.headers,
            }
        )
        if length is None:
            return error("ValidatorError", "None argument is not a valid int")
        if name in self.images:
            return error("MsdImageExistsError", "This image is already exists")
        if self.drive["connected"]:
            return error(
                "MsdConnectedError", "MSD is connected to Server, but shouldn't for this operation"
            )
        written = 0
        self.images[name], self.incomplete = 0, self.incomplete | {name}
        try:
            async for chunk in request.stream():  # counted, never kept
                written += len(chunk)
                self.images[name] = written
        except ClientDisconnect:
            pass
        if written == int(length):
            self.incomplete.discard(name)
        elif remove:
            del self.images[name]
            self.incomplete.discard(name)
        return envelope({"image": {"name": name, "size": int(length), "written": written}})

    async def msd_write_remote(self, request: Request) -> Response:
        url = request.query_params["url"]
        name = request.query_params.get("image") or url.rsplit("/", 1)[-1]
        data = self.remote.get(url)
        if data is None:
            return error("ClientResponseError", f"404, message='Not Found', url='{url}'")

        async def lines() -> Any:
            half = len(data) // 2
            yield (
                json.dumps(
                    {
                        "ok": True,
                        "result": {"image": {"name": name, "size": len(data), "written": 0}},
                    }
                )
                + "\r\n"
            )
            yield (
                json.dumps(
                    {
                        "ok": True,
                        "result": {"image": {"name": name, "size": len(data), "written": half}},
                    }
                )
                + "\r\n"
            )
            if data.startswith(b"FAIL"):
                yield (
                    json.dumps(
                        {
                            "ok": False,
                            "result": {
                                "error": "ClientPayloadError",
                                "error_msg": "Response payload is not completed",
                            },
                        }
                    )
                    + "\r\n"
                )
                return
            self.images[name] = data
            yield (
                json.dumps(
                    {
                        "ok": True,
                        "result": {
                            "image": {"name": name, "size": len(data), "written": len(data)}
                        },
                    }
                )
                + "\r\n"
            )

        return StreamingResponse(lines(), media_type="application/x-ndjson")

    async def msd_set_params(self, request: Request) -> Response:
        if self.drive["connected"]:
            return error(
                "MsdConnectedError", "MSD is connected to Server, but shouldn't for this operation"
            )
        query = request.query_params
        if "image" in query:
            if query["image"] and query["image"] not in self.images:
                return error("MsdUnknownImageError", "The image is not found in the storage")
            self.drive["image"] = query["image"] or None
        for key in ("cdrom", "rw"):
            if key in query:
                self.drive[key] = query[key] in ("1", "true", "yes")
        if self.drive["cdrom"]:
            self.drive["rw"] = False
        return envelope()

    async def msd_set_connected(self, request: Request) -> Response:
        connected = request.query_params["connected"] in ("1", "true", "yes")
        if connected and self.drive["image"] is None:
            return error("MsdImageNotSelected", "The image is not selected")
        if connected == self.drive["connected"]:
            name = "MsdConnectedError" if connected else "MsdDisconnectedError"
            return error(name, "MSD is in the wrong state for this operation")
        self.drive["connected"] = connected
        return envelope()

    async def msd_remove(self, request: Request) -> Response:
        name = request.query_params["image"]
        if name not in self.images:
            return error("MsdUnknownImageError", "The image is not found in the storage")
        del self.images[name]
        if self.drive["image"] == name:
            self.drive["image"] = None
        return envelope()

    # -- switch ---------------------------------------------------------------------------
    def switch_state(self) -> dict[str, Any]:
        return {
            "model": {
                "ports": [
                    {
                        "unit": i // 4 + 1,
                        "channel": i % 4 + 1,
                        "name": f"host-{i}",
                        "id": f"{i // 4 + 1}.{i % 4 + 1}",
                    }
                    for i in range(self.ports)
                ]
            },
            "summary": {"active_port": self.active, "synced": True},
            "video": {"links": [i % 2 == 0 for i in range(self.ports)]},
            "beacons": {"ports": list(self.beacons)},
            "atx": {
                "busy": [False] * self.ports,
                "leds": {"power": list(self.port_power), "hdd": [False] * self.ports},
            },
        }

    async def switch(self, request: Request) -> Response:
        return envelope(self.switch_state())

    def _port(self, text: str) -> int:
        value = float(text)
        if value.is_integer():
            return int(value)
        unit, _, channel = text.partition(".")
        return (int(unit) - 1) * 4 + int(channel) - 1

    async def switch_set_active(self, request: Request) -> Response:
        self.active = self._port(request.query_params["port"])
        return envelope()

    async def switch_set_beacon(self, request: Request) -> Response:
        port = self._port(request.query_params["port"])
        self.beacons[port] = request.query_params["state"] in ("1", "true", "yes")
        return envelope()

    async def switch_atx_power(self, request: Request) -> Response:
        port = self._port(request.query_params["port"])
        action = request.query_params["action"]
        self.port_power[port] = action == "on" or (action == "reset_hard" and self.port_power[port])
        return envelope()

    # -- events: a full atx state, then a partial msd one, as kvmd 4.206 sends them -------
    async def ws(self, websocket: WebSocket) -> None:
        if self._authorized(websocket.headers) != 200:
            await websocket.send_denial_response(error("ForbiddenError", "Forbidden", 403))
            return
        await websocket.accept()

        async def send(event_type: str, event: Any) -> None:
            await websocket.send_text(json.dumps({"event_type": event_type, "event": event}))

        await send("loop", {"version": {"major": 4, "minor": 206}})
        await send("atx", self.atx_state())
        await send("msd", self.msd_state())
        await send("msd", {"drive": {"connected": True}})
        await send("msd", {"storage": {"uploading": {"name": "x.iso", "size": 10, "written": 5}}})
        while (await websocket.receive())["type"] != "websocket.disconnect":
            pass
