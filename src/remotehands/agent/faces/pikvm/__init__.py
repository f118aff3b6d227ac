"""The PiKVM face: kvmd's HTTP and WebSocket API under ``/api/...``, fronting any device.

It is the face named ``pikvm`` (``remotehands agent --face pikvm``): routes, the envelope with
sorted keys, status codes, error names, headers and quirks as
``reference/pikvm-kvmd-compat.md`` describes kvmd 4.206. Every action goes through the device's
:class:`~remotehands.agent.dispatch.Dispatcher`, so locks, the action log and audit apply.

Served: ``/api/auth/{login,check,logout}`` (headers, cookie and Basic, with kvmd's
400/401/403 split; the login form urlencoded or multipart; user ``admin`` unless ``user`` is
set in the face's settings, the agent's password), ``/api/info``,
``/api/export/prometheus/metrics``, ``/api/log`` (the device's action log as kvmd's journal
lines, :mod:`.logs`), ``/api/hid`` and its events, print, keymaps, set_params, set_connected,
reset and inactivity, ``/api/streamer`` with snapshots (save, load, preview, and ``ocr=1``
through the ``ocr`` action where the device has OCR, kvmd's ``OcrError`` where not),
set_params and ocr, ``/api/ws`` (a new socket sends every socket the full states again, as
kvmd does), ``/api/gpio`` (no channels: switch and pulse are ``GpioChannelNotFoundError``),
and ATX, MSD and the switch through the vocabulary's power, media and switch actions
(:mod:`.kvm`; kvmd's ``...DisabledError`` or an empty switch where the device lacks them).
Unknown routes and methods are aiohttp's plain ``404: Not Found`` / ``405: Method Not
Allowed``, answered before authentication as kvmd's are.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, Final

from pydantic import BaseModel, ConfigDict, Field
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response, StreamingResponse
from starlette.routing import BaseRoute, Route, WebSocketRoute
from starlette.websockets import WebSocket

from remotehands.agent.faces.base import Face, FaceContext
from remotehands.agent.faces.pikvm import ws as _ws
from remotehands.agent.faces.pikvm.auth import (
    AUTH_COOKIE,
    Sessions,
    valid_passwd,
    valid_token,
    valid_user,
)
from remotehands.agent.faces.pikvm.hid import HELD_KEYS, MOUSE_BUTTONS, WEB_KEYS, Hid, clamp_delta
from remotehands.agent.faces.pikvm.hid import clamp_move as _clamp_move
from remotehands.agent.faces.pikvm.info import Info, prometheus_text
from remotehands.agent.faces.pikvm.kvm import Atx, Msd, Switch
from remotehands.agent.faces.pikvm.logs import log_lines
from remotehands.agent.faces.pikvm.streamer import Streamer
from remotehands.agent.faces.pikvm.wire import (
    KvmdError,
    check_in,
    error_response,
    json_response,
    not_none_string,
    plain_error,
    raise_error,
    valid_bool,
    valid_int,
    valid_number,
    valid_string_list,
)
from remotehands.errors import (
    BusyError,
    DeviceError,
    DeviceOfflineError,
    DeviceTimeoutError,
    NotFoundError,
    RemoteHandsError,
    UnsupportedError,
    ValidationError,
)

__all__ = ["HELD_KEYS", "PikvmFace", "PikvmSettings", "pikvm_face"]

log = logging.getLogger(__name__)

KEYMAPS = ("de", "en-gb", "en-us", "fr", "ja")
"""The keymap names ``/api/hid/print`` accepts. The face types text as Unicode, so every
keymap types the same characters; the name is checked as kvmd checks it."""
DEFAULT_KEYMAP = "en-us"
OCR_LANGS: Final = ("eng",)
"""The languages the agent's OCR engine reads (its tesseract is started with English)."""
OCR_UPSCALE: Final = 2.0
"""kvmd reads a grey copy scaled up twice; the ``ocr`` action greys and scales the same way."""

Endpoint = Callable[[Request], Awaitable[Response]]


class PikvmSettings(BaseModel):
    """The face's settings (``[devices.face_settings.pikvm]``, or ``--pikvm-user``)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    user: str = Field(
        "admin", min_length=1, max_length=128, pattern=r"^[a-z_]([a-z0-9@._-]*[a-z0-9_-])?$"
    )
    """The kvmd user that signs in with the agent's password."""


def kvmd_error(err: RemoteHandsError, area: str = "") -> KvmdError:
    """Our error as kvmd would name it: busy is ``<Area>IsBusyError`` (409), a bad value a
    ``ValidatorError`` (400), what the device cannot do an ``OperationError`` (400), a device
    that failed ``UnavailableError`` (503), each with our message."""
    if isinstance(err, BusyError):
        return KvmdError(f"{area}IsBusyError", err.details, 409)
    if isinstance(err, ValidationError):
        return KvmdError.validator(err.details)
    if isinstance(err, UnsupportedError | NotFoundError):
        return KvmdError("OperationError", err.details, 400)
    if isinstance(err, DeviceError | DeviceOfflineError | DeviceTimeoutError):
        return KvmdError("UnavailableError", err.details, 503)
    return KvmdError("OperationError", err.details, 400)


class PikvmFace:
    """The state of one device's PiKVM face: its sessions, HID, streamer and sockets."""

    def __init__(self, context: FaceContext) -> None:
        self.context = context
        self.settings = PikvmSettings.model_validate(dict(context.settings))
        self.dispatcher = context.dispatcher
        self.sessions = Sessions(context.tokens, user=self.settings.user)
        self.hid = Hid(context.dispatcher)
        self.info = Info(context.device)
        self.streamer = Streamer(context.dispatcher)
        self.atx = Atx(context.dispatcher)
        self.msd = Msd(context.dispatcher)
        self.switch = Switch(context.dispatcher)
        self.sockets: set[_ws.Socket] = set()

    def has(self, capability: str) -> bool:
        """Whether the device has a driver capability."""
        return self.dispatcher.driver.has(capability)

    # -- the wrapper every route goes through ---------------------------------------------

    def exposed(self, handler: Endpoint, *, auth: bool = True, area: str = "") -> Endpoint:
        """Authenticate (unless ``auth`` is false), run, and map errors as kvmd does."""

        async def endpoint(request: Request) -> Response:
            try:
                if auth:
                    await self.sessions.check(request)
                return await handler(request)
            except KvmdError as err:
                return error_response(err)
            except RemoteHandsError as err:
                return error_response(kvmd_error(err, area))
            except Exception:
                log.exception("pikvm face: %s %s failed", request.method, request.url.path)
                return plain_error(500)

        return endpoint

    # -- auth -----------------------------------------------------------------------------

    async def login(self, request: Request) -> Response:
        """``POST /api/auth/login``: form fields user, passwd, expire, redirect."""
        form = await _form(request)
        user = valid_user(form.get("user", ""))
        passwd = valid_passwd(form.get("passwd", ""))
        expire = valid_int(form.get("expire", "0"), lo=0, name="expiration time")
        redirect = form.get("redirect", "")
        if redirect not in ("", "/", "/kvm", "/kvm/"):
            raise raise_error(redirect, "redirect")
        client = request.client.host if request.client else "unknown"
        if not await self.sessions.authorize(user, passwd, client):
            raise KvmdError("ForbiddenError", "Forbidden", 403)
        token = self.sessions.login(user, expire)
        # written by hand: Starlette would spell it SameSite=strict, kvmd (aiohttp) Strict
        if redirect:
            response: Response = RedirectResponse(redirect, status_code=302)
            response.raw_headers.append(
                (b"set-cookie", f"{AUTH_COOKIE}={token}; Path=/; SameSite=Strict".encode())
            )
            return response
        response = json_response()
        response.raw_headers.append(
            (b"set-cookie", f"{AUTH_COOKIE}={token}; HttpOnly; Path=/; SameSite=Strict".encode())
        )
        return response

    async def check(self, request: Request) -> Response:
        """``GET /api/auth/check``: the chain already ran."""
        return json_response()

    async def logout(self, request: Request) -> Response:
        """``POST /api/auth/logout``: every session of the cookie's user ends."""
        token = valid_token(request.cookies.get(AUTH_COOKIE) or None)
        self.sessions.logout(token)
        return json_response()

    # -- info -----------------------------------------------------------------------------

    async def get_info(self, request: Request) -> Response:
        """``GET /api/info?fields=...&legacy=...``."""
        legacy = valid_bool(request.query_params.get("legacy", "1"))
        return json_response(self.info.get(request.query_params.get("fields"), legacy))

    async def metrics(self, request: Request) -> Response:
        """``GET /api/export/prometheus/metrics``."""
        text = prometheus_text(
            await self.atx_state(), self.info.submanager("health"), self.info.submanager("fan")
        )
        return Response(text, media_type="text/plain; charset=utf-8")

    # -- HID ------------------------------------------------------------------------------

    async def hid_state(self, request: Request) -> Response:
        """``GET /api/hid``."""
        return json_response(self.hid.state())

    async def hid_set_params(self, request: Request) -> Response:
        """``POST /api/hid/set_params``: checked as kvmd checks them, then kept."""
        query = request.query_params
        if query.get("keyboard_output") is not None:
            check_in(query["keyboard_output"], "Keyboard output", ("usb", "ps2", "disabled"))
        if query.get("mouse_output") is not None:
            output = check_in(
                query["mouse_output"],
                "Mouse output",
                ("usb", "usb_win98", "usb_rel", "ps2", "disabled"),
            )
            if output in ("usb", "usb_rel"):  # the outputs this face offers (others ignored)
                self.hid.mouse_output = output
        if query.get("jiggler") is not None:
            self.hid.jiggler = valid_bool(query["jiggler"])
        return json_response()

    async def hid_set_connected(self, request: Request) -> Response:
        """``POST /api/hid/set_connected``: a no-op past its check, as on OTG."""
        valid_bool(request.query_params.get("connected"))
        return json_response()

    async def hid_reset(self, request: Request) -> Response:
        """``POST /api/hid/reset``: release everything held."""
        await self.hid.reset()
        return json_response()

    async def hid_inactivity(self, request: Request) -> Response:
        """``GET /api/hid/inactivity``."""
        return json_response({"inactivity": self.hid.inactivity()})

    def keymaps(self) -> dict[str, Any]:
        """The ``hid_keymaps`` state."""
        return {"keymaps": {"default": DEFAULT_KEYMAP, "available": list(KEYMAPS)}}

    async def hid_keymaps(self, request: Request) -> Response:
        """``GET /api/hid/keymaps``."""
        return json_response(self.keymaps())

    async def hid_print(self, request: Request) -> Response:
        """``POST /api/hid/print``: the body typed, answered once it is typed."""
        body = await request.body()
        query = request.query_params
        text = body.decode(_charset(request), errors="replace")
        limit = valid_int(query.get("limit", "1024"), lo=0)
        if limit > 0:
            text = text[:limit]
        keymap = query.get("keymap", DEFAULT_KEYMAP)
        if keymap not in KEYMAPS:
            raise raise_error(keymap, "keymap")
        slow = valid_bool(query.get("slow", "0"))
        delay = float(
            valid_number(
                query.get("delay", "0.02" if slow else "0"),
                lo=0,
                hi=5,
                kind=float,
                name="keys delay",
            )
        )
        await self.hid.print(text, delay)
        return json_response()

    async def send_key(self, request: Request) -> Response:
        """``POST /api/hid/events/send_key``: no ``state`` presses with ``finish``."""
        query = request.query_params
        key = check_in(query.get("key"), "Keyboard key", WEB_KEYS, lower=False)
        if "state" in query:
            state = valid_bool(query["state"])
            finish = valid_bool(query.get("finish", "0"))
            await self.hid.key(key, state, finish)
        else:
            await self.hid.key(key, True, True)
        return json_response()

    async def send_shortcut(self, request: Request) -> Response:
        """``POST /api/hid/events/send_shortcut?keys=ControlLeft,AltLeft,Delete``."""
        names = valid_string_list(request.query_params.get("keys"))
        for name in names:
            if name not in WEB_KEYS:
                raise KvmdError.validator(f"Failed sub-validator on one of the item of {names!r}")
        if names:
            await self.hid.shortcut(names)
        return json_response()

    async def send_mouse_button(self, request: Request) -> Response:
        """``POST /api/hid/events/send_mouse_button``: no ``state`` clicks."""
        query = request.query_params
        button = check_in(query.get("button"), "Mouse button", MOUSE_BUTTONS)
        state = valid_bool(query["state"]) if "state" in query else None
        await self.hid.mouse_button(button, state)
        return json_response()

    async def send_mouse_move(self, request: Request) -> Response:
        """``POST /api/hid/events/send_mouse_move?to_x=&to_y=`` (clamped)."""
        query = request.query_params
        x = _clamp_move(valid_int(query.get("to_x"), name="Mouse move"))
        y = _clamp_move(valid_int(query.get("to_y"), name="Mouse move"))
        await self.hid.move(x, y)
        return json_response()

    def _delta(self, request: Request) -> list[tuple[int, int]]:
        query = request.query_params
        dx = clamp_delta(valid_int(query.get("delta_x"), name="Mouse delta"))
        dy = clamp_delta(valid_int(query.get("delta_y"), name="Mouse delta"))
        return [(dx, dy)]

    async def send_mouse_relative(self, request: Request) -> Response:
        """``POST /api/hid/events/send_mouse_relative?delta_x=&delta_y=``."""
        await self.hid.relative(self._delta(request))
        return json_response()

    async def send_mouse_wheel(self, request: Request) -> Response:
        """``POST /api/hid/events/send_mouse_wheel?delta_x=&delta_y=`` (positive y: up)."""
        await self.hid.wheel(self._delta(request))
        return json_response()

    # -- streamer -------------------------------------------------------------------------

    async def streamer_state(self, request: Request) -> Response:
        """``GET /api/streamer``."""
        return json_response(await self.streamer.state())

    async def snapshot(self, request: Request) -> Response:
        """``GET /api/streamer/snapshot``: a raw JPEG, its text with ``ocr``."""
        query = request.query_params
        save = valid_bool(query.get("save", "0"))
        load = valid_bool(query.get("load", "0"))
        valid_bool(query.get("allow_offline", "0"))
        if valid_bool(query.get("ocr", "0")) and not save and not load:
            # the ocr action grabs the screen itself: no JPEG to take first
            return await self._ocr(query)
        if load:
            shot = self.streamer.saved
            if shot is None:
                raise KvmdError("UnavailableError", "Service Unavailable", 503)
        else:
            try:
                shot = await self.streamer.take()
            except (DeviceError, DeviceOfflineError, DeviceTimeoutError) as err:
                # kvmd's answer when no frame comes (our reason is in the agent's log)
                log.info("pikvm face: no snapshot: %s", err.details)
                raise KvmdError("UnavailableError", "Service Unavailable", 503) from err
            if save:
                self.streamer.saved = shot
        if valid_bool(query.get("ocr", "0")):
            return await self._ocr(query)
        if valid_bool(query.get("preview", "0")):
            max_w = valid_int(query.get("preview_max_width", "0"), lo=0)
            max_h = valid_int(query.get("preview_max_height", "0"), lo=0)
            quality = valid_int(
                query.get("preview_quality", "80"), lo=1, hi=100, name="stream quality"
            )
            scale = Streamer.preview_scale(shot.width, shot.height, max_w, max_h)
            preview = await self.streamer.take(scale=scale, quality=quality)
            return shot.response(preview.data)
        return shot.response()

    async def _ocr(self, query: Mapping[str, str]) -> Response:
        """The text of the screen through the ``ocr`` action (kvmd's ``OcrError`` where the
        device has no OCR). The box is kvmd's: ``ocr_right``/``ocr_bottom`` are coordinates,
        not sizes, -1 is the image's edge, and a box with nothing inside is the whole image."""
        state = self.ocr_state()
        available = state["langs"]["available"]
        langs = valid_string_list(
            query.get("ocr_langs", ",".join(state["langs"]["default"])), name="OCR langs list"
        )
        for lang in langs:
            if lang not in available:
                raise KvmdError.validator(f"Failed sub-validator on one of the item of {langs!r}")
        left, top, right, bottom = (
            valid_int(query.get(f"ocr_{side}", "-1")) for side in ("left", "top", "right", "bottom")
        )
        if not state["enabled"]:
            raise KvmdError("OcrError", "Tesseract is not available")
        params: dict[str, Any] = {"upscale": OCR_UPSCALE}
        if (left, top, right, bottom) != (-1, -1, -1, -1):
            width, height = await self.streamer.resolution()
            box = _ocr_box(left, top, right, bottom, width, height)
            if box is not None:
                params.update(zip(("x", "y", "width", "height"), box, strict=True))
        try:
            read = await self.dispatcher.run("ocr", params)
        except (DeviceError, DeviceOfflineError, DeviceTimeoutError) as err:
            log.info("pikvm face: no snapshot to read: %s", err.details)
            raise KvmdError("UnavailableError", "Service Unavailable", 503) from err
        return Response(str(read["text"]), media_type="text/plain; charset=utf-8")

    async def remove_snapshot(self, request: Request) -> Response:
        """``DELETE /api/streamer/snapshot``."""
        self.streamer.saved = None
        return json_response()

    async def streamer_set_params(self, request: Request) -> Response:
        """``POST /api/streamer/set_params``."""
        self.streamer.set_params(dict(request.query_params))
        return json_response()

    async def streamer_reset(self, request: Request) -> Response:
        """``POST /api/streamer/reset``: nothing to restart."""
        return json_response()

    def ocr_state(self) -> dict[str, Any]:
        """The ``ocr`` state (the WS event; ``/api/streamer/ocr`` wraps it in ``ocr``):
        enabled where the device has the agent's ``ocr`` capability, with the languages its
        engine reads."""
        if "ocr" not in self.dispatcher.capabilities:
            return {"enabled": False, "langs": {"default": [], "available": []}}
        return {
            "enabled": True,
            "langs": {"default": list(OCR_LANGS), "available": list(OCR_LANGS)},
        }

    async def streamer_ocr(self, request: Request) -> Response:
        """``GET /api/streamer/ocr``."""
        return json_response({"ocr": self.ocr_state()})

    # -- gpio, ATX, MSD, switch -----------------------------------------------------------

    @staticmethod
    def gpio_state() -> dict[str, Any]:
        """No user GPIO channels."""
        return {
            "model": {
                "scheme": {"inputs": {}, "outputs": {}},
                "view": {"header": {"title": []}, "table": []},
            },
            "state": {"inputs": {}, "outputs": {}},
        }

    async def gpio(self, request: Request) -> Response:
        """``GET /api/gpio``."""
        return json_response(self.gpio_state())

    async def gpio_switch(self, request: Request) -> Response:
        """``POST /api/gpio/switch?channel=&state=&wait=``: there is no channel to switch."""
        query = request.query_params
        valid_gpio_channel(query.get("channel"))
        valid_bool(query.get("state"))
        valid_bool(query.get("wait", "0"))
        raise KvmdError("GpioChannelNotFoundError", "GPIO channel is not found")

    async def gpio_pulse(self, request: Request) -> Response:
        """``POST /api/gpio/pulse?channel=&delay=&wait=``: there is no channel to pulse."""
        query = request.query_params
        valid_gpio_channel(query.get("channel"))
        valid_number(query.get("delay", "0"), lo=0, kind=float, name="float")
        valid_bool(query.get("wait", "0"))
        raise KvmdError("GpioChannelNotFoundError", "GPIO channel is not found")

    # -- log ------------------------------------------------------------------------------

    async def log(self, request: Request) -> Response:
        """``GET /api/log?seek=&follow=``: the device's action log as kvmd's journal lines."""
        query = request.query_params
        seek = valid_int(query.get("seek", "0"), lo=0, name="log seek")
        follow = valid_bool(query.get("follow", "0"))
        lines = log_lines(self.dispatcher.log, seek, follow)
        # kvmd's streamed text/plain carries no charset (Starlette would add one)
        return StreamingResponse(lines, headers={"content-type": "text/plain"})

    async def atx_state(self) -> dict[str, Any]:
        """The ``atx`` state."""
        return await self.atx.state()

    async def atx_get(self, request: Request) -> Response:
        """``GET /api/atx``."""
        return json_response(await self.atx.state())

    async def msd_state(self) -> dict[str, Any]:
        """The ``msd`` state."""
        return await self.msd.state()

    async def msd_get(self, request: Request) -> Response:
        """``GET /api/msd``."""
        return json_response(await self.msd.state())

    async def switch_state(self) -> dict[str, Any]:
        """The ``switch`` state."""
        return await self.switch.state()

    async def switch_get(self, request: Request) -> Response:
        """``GET /api/switch``."""
        return json_response(await self.switch.state())

    # -- the socket -----------------------------------------------------------------------

    async def socket(self, websocket: WebSocket) -> None:
        """``/api/ws``: authenticated on upgrade, refused with kvmd's envelope."""
        try:
            await self.sessions.check(websocket)
            stream = valid_bool(websocket.query_params.get("stream", "1"))
        except KvmdError as err:
            await websocket.send_denial_response(error_response(err))
            return
        await websocket.accept()
        socket = _ws.Socket(websocket, self.hid, stream)
        states = {
            "gpio": _const(self.gpio_state()),
            "hid": _const_fn(self.hid.state),
            "atx": self.atx_state,
            "msd": self.msd_state,
            "streamer": self.streamer.state,
            "ocr": _const_fn(self.ocr_state),
            "switch": self.switch_state,
        }
        initial: list[tuple[str, Any]] = []
        for event_type, read in states.items():
            try:
                initial.append((event_type, await read()))
            except RemoteHandsError as err:
                log.warning("pikvm face: the %s state is unreadable: %s", event_type, err)
        initial += [("info", event) for event in self.info.events()]
        initial.append(("hid_keymaps", self.keymaps()))

        async def joined() -> None:
            # kvmd triggers every subsystem on a connect: everyone gets the full states again
            for other in list(self.sockets):
                try:
                    await other.send_full(initial, states)
                except Exception as err:  # noqa: BLE001 -- a socket going away misses them
                    log.debug("pikvm face: full states not sent: %s", err)
            self.sockets.add(socket)
            await self._broadcast_clients()

        try:
            await _ws.serve(
                socket, initial=initial, states=states, info=self.info.submanager, joined=joined
            )
        finally:
            self.sockets.discard(socket)
            await self._broadcast_clients()

    async def _broadcast_clients(self) -> None:
        count = sum(1 for s in self.sockets if s.stream)
        for other in list(self.sockets):
            try:
                await other.send("clients", {"count": count})
            except Exception as err:  # noqa: BLE001 -- a socket going away misses the count
                log.debug("pikvm face: clients event not sent: %s", err)

    # -- routes ---------------------------------------------------------------------------

    def routes(self) -> list[BaseRoute]:
        """Every route of the face."""
        x = self.exposed
        get, post, delete = ["GET"], ["POST"], ["DELETE"]
        table: list[tuple[str, Endpoint, list[str], dict[str, Any]]] = [
            ("/api/auth/login", self.login, post, {"auth": False}),
            ("/api/auth/check", self.check, get, {}),
            ("/api/auth/logout", self.logout, post, {}),
            ("/api/info", self.get_info, get, {}),
            ("/api/export/prometheus/metrics", self.metrics, get, {}),
            ("/api/hid", self.hid_state, get, {}),
            ("/api/hid/set_params", self.hid_set_params, post, {}),
            ("/api/hid/set_connected", self.hid_set_connected, post, {}),
            ("/api/hid/reset", self.hid_reset, post, {}),
            ("/api/hid/inactivity", self.hid_inactivity, get, {}),
            ("/api/hid/keymaps", self.hid_keymaps, get, {}),
            ("/api/hid/print", self.hid_print, post, {}),
            ("/api/hid/events/send_key", self.send_key, post, {}),
            ("/api/hid/events/send_shortcut", self.send_shortcut, post, {}),
            ("/api/hid/events/send_mouse_button", self.send_mouse_button, post, {}),
            ("/api/hid/events/send_mouse_move", self.send_mouse_move, post, {}),
            ("/api/hid/events/send_mouse_relative", self.send_mouse_relative, post, {}),
            ("/api/hid/events/send_mouse_wheel", self.send_mouse_wheel, post, {}),
            ("/api/streamer", self.streamer_state, get, {}),
            ("/api/streamer/snapshot", self.snapshot, get, {}),
            ("/api/streamer/snapshot", self.remove_snapshot, delete, {}),
            ("/api/streamer/set_params", self.streamer_set_params, post, {}),
            ("/api/streamer/reset", self.streamer_reset, post, {}),
            ("/api/streamer/ocr", self.streamer_ocr, get, {}),
            ("/api/gpio", self.gpio, get, {}),
            ("/api/gpio/switch", self.gpio_switch, post, {"area": "GpioChannel"}),
            ("/api/gpio/pulse", self.gpio_pulse, post, {"area": "GpioChannel"}),
            ("/api/log", self.log, get, {}),
            ("/api/atx", self.atx_get, get, {}),
            ("/api/atx/power", self.atx.power, post, {"area": "Atx"}),
            ("/api/atx/click", self.atx.click, post, {"area": "Atx"}),
            ("/api/msd", self.msd_get, get, {}),
            ("/api/msd/read", self.msd.read, get, {"area": "Msd"}),
            ("/api/switch", self.switch_get, get, {}),
        ]
        msd = self.msd
        for path, handler in (
            ("set_params", msd.set_params),
            ("set_connected", msd.set_connected),
            ("write", msd.write),
            ("write_remote", msd.write_remote),
            ("remove", msd.remove),
            ("reset", msd.reset),
        ):
            table.append((f"/api/msd/{path}", handler, post, {"area": "Msd"}))
        switch = self.switch
        for path, handler in (
            ("set_active", switch.set_active),
            ("set_active_prev", switch.set_active_prev),
            ("set_active_next", switch.set_active_next),
            ("set_beacon", switch.set_beacon),
            ("set_port_params", switch.set_port_params),
            ("set_colors", switch.set_colors),
            ("reset", switch.reset),
            ("edids/create", switch.edid_create),
            ("edids/change", switch.edid_change),
            ("edids/remove", switch.edid_remove),
            ("atx/power", switch.atx_power),
            ("atx/click", switch.atx_click),
        ):
            table.append((f"/api/switch/{path}", handler, post, {"area": "Switch"}))
        routes: list[BaseRoute] = [
            Route(path, x(handler, **options), methods=methods)
            for path, handler, methods, options in table
        ]
        routes.append(WebSocketRoute("/api/ws", self.socket))
        return routes


def _const(value: dict[str, Any]) -> _ws.States:
    async def read() -> dict[str, Any]:
        return value

    return read


def _const_fn(fn: Callable[[], dict[str, Any]]) -> _ws.States:
    async def read() -> dict[str, Any]:
        return fn()

    return read


def valid_gpio_channel(arg: str | None) -> str:
    """kvmd's GPIO channel name: a letter or ``_``, then letters, digits, ``_.-``; 255 at most."""
    text = not_none_string(arg, "GPIO channel")
    if re.match(r"^[a-zA-Z_][a-zA-Z0-9_.-]*$", text) is None:
        raise raise_error(text, "GPIO channel")
    if len(text) > 255:
        raise KvmdError.validator(f"The argument {text!r} is not a valid GPIO channel")
    return text


def _ocr_box(
    left: int, top: int, right: int, bottom: int, width: int, height: int
) -> tuple[int, int, int, int] | None:
    """kvmd's crop box as x, y, width, height: -1 (any negative) is the edge, the box is
    clipped to the image, and ``None`` (the whole image) when nothing is left inside."""
    left = min(left, width) if left >= 0 else 0
    top = min(top, height) if top >= 0 else 0
    right = min(right, width) if right >= 0 else width
    bottom = min(bottom, height) if bottom >= 0 else height
    if right <= left or bottom <= top:
        return None
    return left, top, right - left, bottom - top


def _charset(request: Request) -> str:
    content_type = request.headers.get("content-type", "")
    for part in content_type.split(";")[1:]:
        name, _, value = part.strip().partition("=")
        if name.lower() == "charset" and value:
            return value.strip('"')
    return "utf-8"


async def _form(request: Request) -> dict[str, str]:
    """The fields of a urlencoded or multipart form (kvmd reads forms only: a JSON body, or
    any other, has no fields). Files sent as fields are not the strings kvmd wants: left out."""
    try:
        form = await request.form(max_files=4, max_fields=64)
    except HTTPException:
        return {}  # a malformed body has no fields either: kvmd's 400 for the empty user
    try:
        return {name: value for name, value in form.items() if isinstance(value, str)}
    finally:
        await form.close()


async def _unrouted(request: Request, exc: Exception) -> Response:
    status = exc.status_code if isinstance(exc, HTTPException) else 404
    return plain_error(405 if status == 405 else 404)


def pikvm_face(context: FaceContext) -> Face:
    """The PiKVM face of a device (the ``pikvm`` entry of the face table)."""
    face = PikvmFace(context)
    return Face(name="pikvm", routes=face.routes(), error_handler=_unrouted, prefixes=("/api/",))
