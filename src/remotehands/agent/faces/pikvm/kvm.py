"""kvmd's ATX, MSD and switch on a remotehands device, through the vocabulary's ``power.*``,
``media.*`` and ``switch.*`` actions.

ATX is enabled where the device has ``power``: ``/api/atx/power`` is gated on the power LED as
kvmd's is (``on`` only when it is off, the others only when it is on; otherwise a silent 200),
``wait`` is the vocabulary's wait for the LED. MSD is enabled where the device has ``media``:
kvmd selects an image (``set_params``) and connects the drive in two steps, the vocabulary
mounts in one, so the face keeps the selection and mounts it on ``set_connected=1``.
``/api/msd/write`` streams the body to ``media.upload`` (Content-Length required, as kvmd
requires it) and shows its progress in ``storage.uploading``; ``write_remote`` runs
``media.fetch`` and answers kvmd's NDJSON stream. The switch is the device's ``switch``
capability, four ports a unit as PiKVM Switch units have.

The switch's port names, ATX delays, EDIDs and colours are the face's own (:class:`Switch`).
``/api/msd/read`` checks its request and then answers a disabled MSD's ``MsdDisabledError``:
the vocabulary's media cannot read an image back.
"""

from __future__ import annotations

import asyncio
import json
import re
import uuid
from collections.abc import AsyncIterator
from typing import Any, Final

from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response, StreamingResponse

from remotehands.agent.dispatch import Dispatcher
from remotehands.agent.faces.pikvm.wire import (
    KvmdError,
    check_in,
    json_response,
    not_none_string,
    raise_error,
    raw_limit,
    valid_bool,
    valid_int,
    valid_number,
)
from remotehands.errors import NotFoundError, RemoteHandsError, ValidationError
from remotehands.protocol.params import MediaUploadParams

__all__ = ["Atx", "Msd", "Switch"]

PORTS_PER_UNIT: Final = 4
_CLICK_DELAYS: Final = {"power": 0.5, "power_long": 5.5, "reset": 0.5}


def _msd_error(name: str, message: str, status: int = 400) -> KvmdError:
    return KvmdError(name, message, status)


def msd_connected() -> KvmdError:
    """kvmd's error for an operation refused while the drive is connected."""
    return _msd_error(
        "MsdConnectedError", "MSD is connected to Server, but shouldn't for this operation"
    )


_ATX_ACTIONS: Final = frozenset({"on", "off", "off_hard", "reset_hard"})


class Atx:
    """ATX through ``power.*``."""

    def __init__(self, dispatcher: Dispatcher) -> None:
        self.dispatcher = dispatcher

    async def _power(self) -> dict[str, Any] | None:
        """The device's power state when it has ATX: power actions or front-panel buttons.
        A desktop's own power (restart and shutdown asked of its OS) is no ATX: ``None``."""
        if not self.dispatcher.driver.has("power"):
            return None
        power: dict[str, Any] = await self.dispatcher.run("power.state")
        if power.get("buttons") or set(power.get("actions") or ()) & _ATX_ACTIONS:
            return power
        return None

    async def state(self) -> dict[str, Any]:
        """``/api/atx`` (kvmd's ``disabled`` plugin without ATX)."""
        power = await self._power()
        if power is None:
            return {
                "enabled": False,
                "busy": False,
                "acts": {"power": False, "reset": False},
                "leds": {"power": False, "hdd": False},
            }
        return {
            "enabled": True,
            "busy": bool(power["busy"]),
            "acts": {"power": False, "reset": False},
            "leds": {"power": bool(power["on"]), "hdd": bool(power["hdd"])},
        }

    async def _check(self) -> None:
        if await self._power() is None:
            raise KvmdError("AtxDisabledError", "ATX is disabled")

    async def power(self, request: Request) -> Response:
        """``POST /api/atx/power?action=on|off|off_hard|reset_hard&wait=``."""
        query = request.query_params
        await self._check()
        action = check_in(
            query.get("action"), "ATX power action", ("on", "off", "off_hard", "reset_hard")
        )
        wait = valid_bool(query.get("wait", "0"))
        state = await self.state()
        if state["busy"]:
            raise KvmdError(
                "AtxIsBusyError", "Performing another ATX operation, please try again later", 409
            )
        led = state["leds"]["power"]
        if (action == "on") == led:
            return json_response()  # kvmd's silent no-op: the LED already shows it
        await self.dispatcher.run(f"power.{action}", {"wait": wait})
        return json_response()

    async def click(self, request: Request) -> Response:
        """``POST /api/atx/click?button=power|power_long|reset&wait=``."""
        query = request.query_params
        await self._check()
        button = check_in(query.get("button"), "ATX button", ("power", "power_long", "reset"))
        wait = valid_bool(query.get("wait", "0"))
        await self.dispatcher.run("power.click", {"button": button, "wait": wait})
        return json_response()


class Msd:
    """Virtual media through ``media.*``."""

    def __init__(self, dispatcher: Dispatcher) -> None:
        self.dispatcher = dispatcher
        self.selected: str | None = None
        self.cdrom = True
        self.rw = False
        self.uploading: dict[str, Any] | None = None
        self.downloading: dict[str, Any] | None = None

    @property
    def enabled(self) -> bool:
        """Whether the device has media."""
        return self.dispatcher.driver.has("media")

    def _check(self) -> None:
        if not self.enabled:
            raise KvmdError("MsdDisabledError", "MSD is disabled")

    async def _media(self) -> dict[str, Any]:
        media: dict[str, Any] = await self.dispatcher.run("media.state")
        if self.selected is not None and self.selected not in {i["name"] for i in media["images"]}:
            self.selected = None  # removed behind our back
        return media

    async def state(self) -> dict[str, Any]:
        """``/api/msd``."""
        if not self.enabled:
            return {
                "enabled": False,
                "online": False,
                "busy": False,
                "drive": None,
                "storage": None,
            }
        media = await self._media()
        if not media["online"]:
            return {"enabled": True, "online": False, "busy": False, "drive": None, "storage": None}
        images = {i["name"]: _image(i) for i in media["images"]}
        drive = media["drive"]
        connected = bool(drive["connected"])
        name = drive["image"] if connected else self.selected
        cdrom, rw = (drive["cdrom"], drive["rw"]) if connected else (self.cdrom, self.rw)
        image = None
        if name is not None and name in images:
            image = {"name": name, "in_storage": True, **images[name]}
        size, free = media.get("storage_size"), media.get("storage_free")
        parts = {"": {"size": size or 0, "free": free or 0, "writable": True}}
        return {
            "enabled": True,
            "online": True,
            "busy": bool(media["busy"])
            or self.uploading is not None
            or self.downloading is not None,
            "drive": {"image": image, "connected": connected, "cdrom": bool(cdrom), "rw": bool(rw)},
            "storage": {
                "images": images,
                "parts": parts,
                "downloading": self.downloading,
                "uploading": self.uploading,
            },
        }

    async def _connected(self) -> bool:
        media = await self._media()
        return bool(media["drive"]["connected"])

    def _busy(self) -> None:
        if self.uploading is not None or self.downloading is not None:
            raise KvmdError(
                "MsdIsBusyError", "Performing another MSD operation, please try again later", 409
            )

    async def set_params(self, request: Request) -> Response:
        """``POST /api/msd/set_params?image=&cdrom=&rw=``: the selection, kept until the drive
        is connected."""
        self._check()
        self._busy()
        query = request.query_params
        if await self._connected():
            raise msd_connected()
        media = await self._media()
        names = {i["name"] for i in media["images"]}
        image, cdrom, rw = self.selected, self.cdrom, self.rw
        if "image" in query:
            value = query["image"]
            if re.match(r"^[a-z][a-z0-9+.-]*://", value):
                raise _msd_error("MsdRemoteDisabledError", "Remote images binding is disabled")
            if value:
                image = valid_image_name(value)
                if image not in names:
                    raise _msd_error(
                        "MsdUnknownImageError", "The image is not found in the storage"
                    )
            else:
                image = None
        if query.get("cdrom") is not None:
            cdrom = valid_bool(query["cdrom"])
        if query.get("rw") is not None:
            rw = valid_bool(query["rw"])
        if cdrom or (image is not None and image.lower().endswith(".iso")):
            rw = False
        self.selected, self.cdrom, self.rw = image, cdrom, rw
        return json_response()

    async def set_connected(self, request: Request) -> Response:
        """``POST /api/msd/set_connected?connected=``."""
        self._check()
        connected = valid_bool(request.query_params.get("connected"))
        self._busy()
        now = await self._connected()
        if connected:
            if now:
                raise msd_connected()
            if self.selected is None:
                raise _msd_error("MsdImageNotSelected", "The image is not selected")
            await self.dispatcher.run(
                "media.mount", {"name": self.selected, "cdrom": self.cdrom, "rw": self.rw}
            )
        else:
            if not now:
                raise _msd_error(
                    "MsdDisconnectedError",
                    "MSD is disconnected from Server, but should be for this operation",
                )
            media = await self._media()
            self.selected = media["drive"]["image"]
            self.cdrom, self.rw = bool(media["drive"]["cdrom"]), bool(media["drive"]["rw"])
            await self.dispatcher.run("media.eject")
        return json_response()

    async def write(self, request: Request) -> Response:
        """``POST /api/msd/write?image=&prefix=&remove_incomplete=``: the raw body streamed to
        ``media.upload``."""
        self._check()
        query = request.query_params
        name = valid_image_name(query.get("image"))
        prefix = query.get("prefix")
        if prefix:
            name = valid_image_name(f"{prefix.strip('/')}/{name}")
        valid_bool(query.get("remove_incomplete", "0"))
        size = int(valid_number(request.headers.get("content-length"), lo=0, name="int"))
        self._busy()
        if await self._connected():
            raise msd_connected()
        if name in {i["name"] for i in (await self._media())["images"]}:
            raise _msd_error("MsdImageExistsError", "This image is already exists")
        self.uploading = {"name": name, "size": size, "written": 0}
        progress = self.uploading

        async def chunks() -> AsyncIterator[bytes]:
            try:
                async for chunk in request.stream():
                    if chunk:
                        progress["written"] += len(chunk)
                        yield chunk
            except ClientDisconnect:
                raise ValidationError(
                    f"the client went away after {progress['written']} bytes of {name}"
                ) from None

        try:
            params = MediaUploadParams(name=name, size=size).with_body(chunks())
            image = await self.dispatcher.call("media.upload", params)
        finally:
            self.uploading = None
        written = int(getattr(image, "size", progress["written"]))
        return json_response({"image": {"name": name, "size": size, "written": written}})

    async def write_remote(self, request: Request) -> Response:
        """``POST /api/msd/write_remote?url=&image=&timeout=``: ``media.fetch``, answered as
        kvmd's NDJSON progress stream (errors after the start are a line of their own)."""
        self._check()
        query = request.query_params
        url = not_none_string(query.get("url"), "URL")
        if not re.match(r"^https?://[^/]+", url):
            raise raise_error(url, "URL")
        image = query.get("image") or url.split("?")[0].rstrip("/").rsplit("/", 1)[-1]
        if not image:
            raise KvmdError.validator("Can't determine filename")
        name = valid_image_name(image)
        prefix = query.get("prefix")
        if prefix:
            name = valid_image_name(f"{prefix.strip('/')}/{name}")
        timeout = float(valid_number(query.get("timeout", "10"), lo=0.1, kind=float, name="float"))
        valid_bool(query.get("insecure", "0"))
        valid_bool(query.get("remove_incomplete", "0"))
        self._busy()
        if await self._connected():
            raise msd_connected()
        if name in {i["name"] for i in (await self._media())["images"]}:
            raise _msd_error("MsdImageExistsError", "This image is already exists")
        self.downloading = {"name": name, "size": 0, "readed": 0}
        fetch = asyncio.create_task(
            self.dispatcher.run(
                "media.fetch",
                {"url": url, "name": name, "timeout_s": max(timeout, 600.0)},
            )
        )

        def line(ok: bool, result: dict[str, Any]) -> bytes:
            return json.dumps({"ok": ok, "result": result}).encode() + b"\r\n"

        async def lines() -> AsyncIterator[bytes]:
            try:
                yield line(True, {"image": {"name": name, "size": 0, "written": 0}})
                while True:
                    done, _ = await asyncio.wait({fetch}, timeout=1.0)
                    if done:
                        break
                    yield line(True, {"image": {"name": name, "size": 0, "written": 0}})
                try:
                    got = fetch.result()
                except RemoteHandsError as err:
                    yield line(False, {"error": type(err).__name__, "error_msg": err.details})
                    return
                size = int(got["size"])
                yield line(True, {"image": {"name": name, "size": size, "written": size}})
            finally:
                self.downloading = None
                if not fetch.done():
                    fetch.cancel()

        return StreamingResponse(lines(), media_type="application/x-ndjson")

    async def read(self, request: Request) -> Response:
        """``GET /api/msd/read?image=&compress=``: checked as kvmd checks it, then refused as
        a disabled MSD refuses it (400 ``MsdDisabledError``): the vocabulary's media has no
        action that reads an image back."""
        self._check()
        query = request.query_params
        name = valid_image_name(query.get("image"))
        check_in(query.get("compress", ""), "Compression mode", ("", "none", "lzma", "zstd"))
        self._busy()
        media = await self._media()
        if media["drive"]["connected"]:
            raise msd_connected()
        if name not in {i["name"] for i in media["images"]}:
            raise _msd_error("MsdUnknownImageError", "The image is not found in the storage")
        raise KvmdError("MsdDisabledError", "MSD is disabled")

    async def remove(self, request: Request) -> Response:
        """``POST /api/msd/remove?image=``."""
        self._check()
        name = valid_image_name(request.query_params.get("image"))
        self._busy()
        media = await self._media()
        if media["drive"]["connected"]:
            raise msd_connected()
        if name not in {i["name"] for i in media["images"]}:
            raise _msd_error("MsdUnknownImageError", "The image is not found in the storage")
        try:
            await self.dispatcher.run("media.remove", {"name": name})
        except NotFoundError as err:
            raise _msd_error(
                "MsdUnknownImageError", "The image is not found in the storage"
            ) from err
        if self.selected == name:
            self.selected = None
        return json_response()

    async def reset(self, request: Request) -> Response:
        """``POST /api/msd/reset``: eject, forget the selection, cdrom back on, rw off."""
        self._check()
        if await self._connected():
            await self.dispatcher.run("media.eject")
        self.selected, self.cdrom, self.rw = None, True, False
        return json_response()


def _image(image: dict[str, Any]) -> dict[str, Any]:
    return {
        "complete": bool(image["complete"]),
        "removable": True,
        "writable": not image["name"].lower().endswith(".iso"),
        "size": int(image["size"]),
        "mod_ts": 0.0,
    }


def valid_image_name(arg: str | None) -> str:
    """kvmd's image name check: printable parts, none starting with a dot or ``lost+found``."""
    raw_limit(arg, 4096)
    text = not_none_string(arg, "MSD image name")
    parts = [p for p in text.split("/") if p]
    if not parts or any(
        p.startswith(".") or p == "lost+found" or len(p) > 255 or not p.isprintable() for p in parts
    ):
        raise raise_error(text if parts else "/", "MSD image name")
    return "/".join(parts)


COLOR_ROLES: Final = ("inactive", "active", "flashing", "beacon", "bootloader")
_DEFAULT_COLORS: Final = {
    "inactive": "000000:00:0000",
    "active": "00FF00:40:0000",
    "flashing": "00FF00:40:0100",
    "beacon": "0000FF:40:0100",
    "bootloader": "FF0000:40:0100",
}
"""The face's own LED colours (no LEDs behind them): ``RRGGBB:brightness:blink ms``, in hex."""
DEFAULT_EDID: Final = "default"


def _color(text: str) -> dict[str, int]:
    rgb, brightness, blink = text.split(":")
    return {
        "red": int(rgb[0:2], 16),
        "green": int(rgb[2:4], 16),
        "blue": int(rgb[4:6], 16),
        "brightness": int(brightness, 16),
        "blink_ms": int(blink, 16),
    }


def _check_re(arg: str | None, name: str, pattern: str) -> str:
    text = not_none_string(arg, name)
    if re.match(pattern, text) is None:
        raise raise_error(text, name)
    return text


def valid_edid_id(arg: str | None, allow_default: bool) -> str:
    """kvmd's EDID id: a UUID (any case), or ``default`` where that is allowed."""
    pattern = "(?i)^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$"
    if allow_default:
        pattern += "|^default$"
    return _check_re(arg, "switch EDID ID", pattern).lower()


def valid_edid_data(arg: str | None) -> str:
    """kvmd's EDID data: 128 or 256 bytes in hex, white space ignored; upper case."""
    name = "switch EDID data"
    text = re.sub(r"\s", "", not_none_string(arg, name))
    return _check_re(text, name, "(?i)^([0-9a-f]{256}|[0-9a-f]{512})$").upper()


def valid_color(arg: str | None) -> str:
    """kvmd's LED colour ``RRGGBB:BB:MMMM`` (hex), or ``default``."""
    text = _check_re(
        arg, "switch color", "(?i)^[0-9a-f]{6}:[0-9a-f]{2}:[0-9a-f]{4}$|^default$"
    ).upper()
    return "default" if text == "DEFAULT" else text


def valid_port_name(arg: str | None, name: str = "switch port name") -> str:
    """kvmd's port name: what is not printable becomes a space, 255 characters at most, runs
    of white space one space."""
    text = not_none_string(arg, name)
    text = "".join(c if c.isprintable() else " " for c in text)[:255]
    return re.sub(r"\s+", " ", text).strip()


def _unknown_edid() -> KvmdError:
    return KvmdError("SwitchUnknownEdidError", "No specified EDID ID found")


class Switch:
    """A KVM switch through ``switch.*``, four ports a unit.

    The port names, ATX click delays, dummy plugs, EDIDs and LED colours kvmd keeps for its
    switch are the face's own (the vocabulary has no such actions): kept in memory, shown in
    the state, checked with kvmd's validators; they change nothing on the device.
    """

    def __init__(self, dispatcher: Dispatcher) -> None:
        self.dispatcher = dispatcher
        self.names: dict[int, str] = {}
        self.delays: dict[str, dict[int, float]] = {key: {} for key in _CLICK_DELAYS}
        self.dummy: dict[int, bool] = {}
        self.edids: dict[str, dict[str, Any]] = {
            DEFAULT_EDID: {"name": "Default", "data": "", "parsed": None}
        }
        self.used: dict[int, str] = {}
        self.colors: dict[str, str] = dict(_DEFAULT_COLORS)

    @property
    def enabled(self) -> bool:
        """Whether the device has a switch."""
        return self.dispatcher.driver.has("switch")

    async def _ports(self) -> dict[str, Any]:
        if not self.enabled:
            return {"active": None, "ports": []}
        ports: dict[str, Any] = await self.dispatcher.run("switch.ports")
        return ports

    async def state(self) -> dict[str, Any]:
        """``/api/switch``."""
        ports = await self._ports()
        items = ports["ports"]
        count = len(items)
        units = (count + PORTS_PER_UNIT - 1) // PORTS_PER_UNIT
        active = ports["active"] if ports["active"] is not None else -1

        def port_id(index: int) -> str:
            return f"{index // PORTS_PER_UNIT + 1}.{index % PORTS_PER_UNIT + 1}"

        return {
            "model": {
                "firmware": {"version": 9},
                "units": [{"firmware": {"version": 9, "devbuild": False}}] * units,
                "ports": [
                    {
                        "unit": i // PORTS_PER_UNIT + 1,
                        "channel": i % PORTS_PER_UNIT + 1,
                        "name": self.names.get(i, p["name"]),
                        "id": port_id(i),
                        "atx": {
                            "click_delays": {
                                key: self.delays[key].get(i, default)
                                for key, default in _CLICK_DELAYS.items()
                            }
                        },
                        "video": {"dummy": self.dummy.get(i, False)},
                    }
                    for i, p in enumerate(items)
                ],
                "limits": {
                    "atx": {
                        "click_delays": {
                            k: {"default": v, "min": 0, "max": 10} for k, v in _CLICK_DELAYS.items()
                        }
                    }
                },
            },
            "summary": {
                "active_port": active,
                "active_id": port_id(active) if active >= 0 else "",
                "synced": True,
            },
            "edids": {
                "all": {key: dict(edid) for key, edid in self.edids.items()},
                "used": [self.used.get(i, DEFAULT_EDID) for i in range(count)],
            },
            "colors": {role: _color(self.colors[role]) for role in COLOR_ROLES},
            "video": {"links": [bool(p["video"]) for p in items]},
            "usb": {"links": [i == active for i in range(count)]},
            "beacons": {
                "uplinks": [False] * units,
                "downlinks": [False] * units,
                "ports": [bool(p["beacon"]) for p in items],
            },
            "atx": {
                "busy": [False] * count,
                "leds": {"power": [bool(p["power"]) for p in items], "hdd": [False] * count},
            },
        }

    def _check(self) -> None:
        if not self.enabled:
            raise KvmdError("SwitchOperationError", "No switch found")

    @staticmethod
    def port(arg: str | None) -> int:
        """kvmd's port: an integer is 0-based, ``unit.channel`` is 1-based."""
        raw_limit(arg, 16)
        text = not_none_string(arg, "switch port")
        try:
            value = float(text)
            if value.is_integer():
                port = int(value)  # "1" and "1.0" alike (kvmd's quirk)
            else:
                unit, _, channel = text.partition(".")
                port = (int(unit) - 1) * PORTS_PER_UNIT + int(channel) - 1
        except ValueError:
            raise raise_error(text, "switch port") from None
        if not 0 <= port < 20:
            raise raise_error(text, "switch port")
        return port

    async def set_active(self, request: Request) -> Response:
        """``POST /api/switch/set_active?port=``."""
        self._check()
        await self.dispatcher.run(
            "switch.set", {"port": self.port(request.query_params.get("port"))}
        )
        return json_response()

    async def _step(self, step: int) -> Response:
        self._check()
        ports = await self._ports()
        count = len(ports["ports"])
        if count:
            active = ports["active"] if ports["active"] is not None else -1
            await self.dispatcher.run("switch.set", {"port": (active + step) % count})
        return json_response()

    async def set_active_prev(self, request: Request) -> Response:
        """``POST /api/switch/set_active_prev``."""
        return await self._step(-1)

    async def set_active_next(self, request: Request) -> Response:
        """``POST /api/switch/set_active_next``."""
        return await self._step(1)

    async def set_beacon(self, request: Request) -> Response:
        """``POST /api/switch/set_beacon?state=&port=`` (``uplink``/``downlink`` are accepted
        and light nothing: the vocabulary has port beacons only)."""
        self._check()
        query = request.query_params
        state = valid_bool(query.get("state"))
        if "port" in query:
            await self.dispatcher.run(
                "switch.beacon", {"port": self.port(query["port"]), "on": state}
            )
        else:
            valid_int(query.get("uplink", query.get("downlink")), lo=0, name="unit")
        return json_response()

    async def set_port_params(self, request: Request) -> Response:
        """``POST /api/switch/set_port_params?port=&edid_id=&dummy=&name=&atx_click_..._delay=``:
        an empty name or a zero delay is the default again."""
        self._check()
        query = request.query_params
        port = self.port(query.get("port"))
        edid = valid_edid_id(query["edid_id"], True) if "edid_id" in query else None
        dummy = valid_bool(query["dummy"]) if "dummy" in query else None
        name = valid_port_name(query["name"]) if "name" in query else None
        delays = {
            key: float(
                valid_number(
                    query[f"atx_click_{key}_delay"], lo=0, hi=10, kind=float, name="ATX delay"
                )
            )
            for key in _CLICK_DELAYS
            if f"atx_click_{key}_delay" in query
        }
        if edid is not None:
            if edid not in self.edids:
                raise _unknown_edid()
            self.used[port] = edid
        if dummy is not None:
            self.dummy[port] = dummy
        if name is not None:
            if name:
                self.names[port] = name
            else:
                self.names.pop(port, None)
        for key, delay in delays.items():
            if delay:
                self.delays[key][port] = delay
            else:
                self.delays[key].pop(port, None)
        return json_response()

    async def set_colors(self, request: Request) -> Response:
        """``POST /api/switch/set_colors?inactive=&active=&...``: query only (``default``
        resets a role)."""
        self._check()
        query = request.query_params
        given = {role: valid_color(query[role]) for role in COLOR_ROLES if role in query}
        for role, color in given.items():
            self.colors[role] = _DEFAULT_COLORS[role] if color == "default" else color
        return json_response()

    async def reset(self, request: Request) -> Response:
        """``POST /api/switch/reset?unit=&bootloader=``: checked; there is no unit to reboot."""
        self._check()
        query = request.query_params
        valid_int(query.get("unit"), lo=0, name="int")
        valid_bool(query.get("bootloader", "0"))
        return json_response()

    async def edid_create(self, request: Request) -> Response:
        """``POST /api/switch/edids/create?name=&data=`` -> ``{"id": <uuid>}``."""
        self._check()
        query = request.query_params
        name = valid_port_name(query.get("name"), "switch EDID name")
        data = valid_edid_data(query.get("data"))
        if not name:
            raise raise_error(name, "switch EDID name")
        edid_id = str(uuid.uuid4())
        self.edids[edid_id] = {"name": name, "data": data, "parsed": None}
        return json_response({"id": edid_id})

    async def edid_change(self, request: Request) -> Response:
        """``POST /api/switch/edids/change?id=&name=&data=``."""
        self._check()
        query = request.query_params
        edid_id = valid_edid_id(query.get("id"), False)
        name = valid_port_name(query["name"], "switch EDID name") if "name" in query else ""
        data = valid_edid_data(query["data"]) if query.get("data") else ""
        if edid_id not in self.edids:
            raise _unknown_edid()
        old = self.edids[edid_id]
        self.edids[edid_id] = {
            "name": name or old["name"],
            "data": data or old["data"],
            "parsed": None,
        }
        return json_response()

    async def edid_remove(self, request: Request) -> Response:
        """``POST /api/switch/edids/remove?id=``: ports that used it are back on the default."""
        self._check()
        edid_id = valid_edid_id(request.query_params.get("id"), False)
        if edid_id not in self.edids:
            raise _unknown_edid()
        del self.edids[edid_id]
        self.used = {port: used for port, used in self.used.items() if used != edid_id}
        return json_response()

    async def atx_power(self, request: Request) -> Response:
        """``POST /api/switch/atx/power?port=&action=``."""
        self._check()
        query = request.query_params
        port = self.port(query.get("port"))
        action = check_in(
            query.get("action"), "ATX power action", ("on", "off", "off_hard", "reset_hard")
        )
        await self.dispatcher.run("switch.power", {"port": port, "action": action, "wait": False})
        return json_response()

    async def atx_click(self, request: Request) -> Response:
        """``POST /api/switch/atx/click?port=&button=``."""
        self._check()
        query = request.query_params
        port = self.port(query.get("port"))
        button = check_in(query.get("button"), "ATX button", ("power", "power_long", "reset"))
        await self.dispatcher.run("switch.click", {"port": port, "button": button, "wait": False})
        return json_response()
