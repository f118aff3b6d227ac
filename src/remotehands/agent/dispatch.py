"""The agent's dispatcher: carries out any action of the vocabulary on one device.

Every face (the native HTTP API, the link to the server, later PiKVM/TinyPilot faces) calls
:meth:`Dispatcher.run` with an action name and its parameters, so they all behave the same.
Above the driver it adds what every device gets alike: validation, the capability check, the
device lock, imaging and wait-for-stable, clipboard slots and captures, sequences, held-input
cleanup and the action log.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import logging
import time
from collections import OrderedDict, deque
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime
from typing import Any, cast

import httpx
import pydantic

from remotehands.agent import imaging, screenshots, stability
from remotehands.drivers.base import (
    Apps,
    Clipboard,
    Driver,
    FrameArray,
    Keyboard,
    Mouse,
    Screen,
    Windows,
)
from remotehands.errors import (
    BusyError,
    NotFoundError,
    RemoteHandsError,
    UnsupportedError,
    ValidationError,
)
from remotehands.protocol import actions as A
from remotehands.protocol.keys import Key, parse_key, parse_keys
from remotehands.protocol.models import Bounds, WindowInfo

__all__ = ["ActionLog", "Dispatcher", "validate_params"]

log = logging.getLogger(__name__)

OK: dict[str, Any] = {"status": "ok"}
FRAMES_KEPT = 64
"""How many screenshots' geometry the agent remembers for ``frame_id`` coordinates."""
# A step's own fields win over same-named fields of its action's result (a restored slot's name).
_STEP_OWN = frozenset({"name", "type", "ok", "status"})
_SECRET_FIELDS = frozenset({"text", "password", "upload_header", "headers"})


def validate_params(spec: A.ActionSpec, params: dict[str, Any]) -> A.Params:
    """Validate raw parameters against an action's model; errors name every bad field."""
    try:
        return spec.params.model_validate(params)
    except pydantic.ValidationError as err:
        raise ValidationError(describe_validation(err, spec.name)) from err


def describe_validation(err: pydantic.ValidationError, what: str) -> str:
    """One line naming each bad field and what is wrong with it."""
    problems = []
    for e in err.errors():
        where = ".".join(str(p) for p in e["loc"]) or "body"
        problems.append(f"{where}: {e['msg']}")
    return f"invalid parameters for {what}: " + "; ".join(problems)


class ActionLog:
    """The recent actions of a device, newest last, with secrets and long texts left out."""

    def __init__(self, size: int = 1000) -> None:
        self._entries: deque[dict[str, Any]] = deque(maxlen=size)

    def add(self, action: str, params: dict[str, Any], result: str, duration_ms: float) -> None:
        """Remember one action."""
        shown = {
            k: (f"<{len(v)} chars>" if isinstance(v, str) else "<hidden>")
            if k in _SECRET_FIELDS
            else v
            for k, v in params.items()
        }
        self._entries.append(
            {
                "timestamp": datetime.now(UTC).isoformat().replace("+00:00", "Z"),
                "action": action,
                "params": json.dumps(shown, default=str, ensure_ascii=False),
                "result": result,
                "duration_ms": round(duration_ms, 2),
            }
        )

    def recent(self, limit: int) -> list[dict[str, Any]]:
        """Up to ``limit`` entries, oldest first."""
        return list(self._entries)[-limit:]


Handler = Callable[[Any], Awaitable[Any]]


class Dispatcher:
    """Runs actions on one driver. Create one per device and keep it for the agent's life."""

    def __init__(self, driver: Driver, *, http: httpx.AsyncClient | None = None) -> None:
        self.driver = driver
        self.log = ActionLog()
        self._lock = asyncio.Lock()
        self._screen_lock = asyncio.Lock()
        self._slots: dict[str, tuple[str, datetime]] = {}
        self._frame_ids = itertools.count(1)
        # frame id -> (x, y of its top-left corner on the native screen, scale), newest last
        self._frames: OrderedDict[int, tuple[int, int, float]] = OrderedDict()
        self._http = http
        self._handlers: dict[str, Handler] = {
            "screenshot": self._screenshot,
            "screenshot.region": self._screenshot,
            "screenshot.cursor": self._cursor,
            "screenshots": self._screenshots,
            "screens": self._screens,
            "mouse.move": self._move,
            "mouse.click": self._click,
            "mouse.double_click": self._double_click,
            "mouse.scroll": self._scroll,
            "mouse.drag": self._drag,
            "mouse.down": self._mouse_down,
            "mouse.up": self._mouse_up,
            "keyboard.type": self._type,
            "keyboard.hotkey": self._hotkey,
            "keyboard.key": self._hotkey,
            "keyboard.down": self._key_down,
            "keyboard.up": self._key_up,
            "clipboard.get": self._clipboard_get,
            "clipboard.set": self._clipboard_set,
            "clipboard.slots": self._slots_list,
            "clipboard.slot_get": self._slot_get,
            "clipboard.slot_store": self._slot_store,
            "clipboard.slot_delete": self._slot_delete,
            "clipboard.slots_clear": self._slots_clear,
            "clipboard.slot_restore": self._slot_restore,
            "clipboard.capture": self._capture,
            "windows.list": self._windows,
            "windows.focused": self._focused,
            "dialog.get": self._dialog,
            "dialog.close": self._dialog_close,
            "window.focus": self._window_focus,
            "window.move": self._window_move,
            "window.close": self._window_close,
            "application.open": self._app_open,
            "application.running": self._app_running,
            "application.close": self._app_close,
            "actions": self._actions,
            "sleep": self._sleep,
            "sequence": self._sequence,
        }
        missing = {a.name for a in A.ACTIONS} - set(self._handlers)
        assert not missing, f"actions without a handler: {missing}"

    @property
    def capabilities(self) -> list[str]:
        """The capabilities of the device, as the hello message announces them."""
        return sorted(self.driver.capabilities | {"sequence"})

    async def aclose(self) -> None:
        """Close the HTTP client used for uploads, if this dispatcher made one."""
        if self._http is not None:
            await self._http.aclose()
            self._http = None

    # -- entry point ---------------------------------------------------------------------------
    async def run(self, action: str, params: dict[str, Any] | None = None) -> Any:
        """Validate and carry out one action; raises from :mod:`remotehands.errors`."""
        spec = A.ACTIONS_BY_NAME.get(action)
        if spec is None:
            raise NotFoundError(
                f"unknown action {action!r}: known actions are "
                + ", ".join(a.name for a in A.ACTIONS)
            )
        raw = params or {}
        model = validate_params(spec, raw)
        self._check_capability(spec)
        started = time.perf_counter()
        outcome = "ok"
        try:
            if spec.access == "control" and spec.name not in ("sequence", "actions"):
                timeout = getattr(model, "lock_timeout_ms", 10_000)
                async with self._locked(timeout):
                    return await self._handlers[spec.name](model)
            return await self._handlers[spec.name](model)
        except RemoteHandsError as err:
            outcome = err.code
            raise
        finally:
            if spec.name != "actions":
                self.log.add(spec.name, raw, outcome, (time.perf_counter() - started) * 1000)

    def _check_capability(self, spec: A.ActionSpec) -> None:
        if spec.capability is not None and not self.driver.has(spec.capability):
            raise UnsupportedError(
                f"this device ({self.driver.kind}) has no {spec.capability} capability, so it "
                f"cannot do {spec.name}; it has: {', '.join(sorted(self.driver.capabilities))}"
            )

    @contextlib.asynccontextmanager
    async def _locked(self, timeout_ms: int) -> AsyncIterator[None]:
        try:
            async with asyncio.timeout(timeout_ms / 1000):
                await self._lock.acquire()
        except TimeoutError:
            raise BusyError(
                f"the device is busy with another sequence for more than {timeout_ms} ms; "
                "retry later or raise lock_timeout_ms"
            ) from None
        try:
            yield
        finally:
            self._lock.release()

    # -- capability views ----------------------------------------------------------------------
    @property
    def _screen(self) -> Screen:
        return cast(Screen, self.driver)

    @property
    def _pointer(self) -> Mouse:
        return cast(Mouse, self.driver)

    @property
    def _keyboard(self) -> Keyboard:
        return cast(Keyboard, self.driver)

    @property
    def _clipboard(self) -> Clipboard:
        return cast(Clipboard, self.driver)

    @property
    def _windows_(self) -> Windows:
        return cast(Windows, self.driver)

    @property
    def _apps(self) -> Apps:
        return cast(Apps, self.driver)

    # -- screen --------------------------------------------------------------------------------
    async def _screens(self, _: A.NoParams) -> dict[str, Any]:
        screens = await self._screen.screens()
        return {"screens": [s.model_dump() for s in screens]}

    async def _cursor(self, _: A.NoParams) -> dict[str, int]:
        x, y = await self._screen.cursor_position()
        return {"x": x, "y": y}

    async def _screenshot(self, p: A.ScreenshotParams) -> dict[str, Any]:
        region = None
        if isinstance(p, A.RegionScreenshotParams):
            region = Bounds(x=p.x, y=p.y, width=p.width, height=p.height)
        quality = p.jpeg_quality if p.jpeg_quality is not None else p.quality
        async with self._screen_lock:
            waited: dict[str, Any] = {
                "stable": None, "timed_out": False, "waited_ms": 0, "polls": 0,
                "change_ratio_last": None,
            }  # fmt: skip
            if p.wait_stable:
                settings = stability.StabilityParams(
                    pixel_delta=p.pixel_delta,
                    stable_ratio=p.stable_ratio,
                    stable_window_ms=p.stable_window_ms,
                    timeout_ms=p.timeout_ms,
                    poll_interval_ms=p.poll_interval_ms,
                    min_change_ratio=p.min_change_ratio,
                    ignore_region=imaging.parse_regions(p.ignore_region),
                    watch_region=imaging.parse_regions(p.watch_region),
                )
                # ignore_region and watch_region are screen coordinates, also for a region shot
                outcome = await stability.wait_stable(
                    lambda: self._screen.grab(p.screen_id, region),
                    settings,
                    origin=(region.x, region.y) if region else (0, 0),
                )
                frame: FrameArray = outcome.frame
                waited = {
                    "stable": outcome.stable,
                    "timed_out": outcome.timed_out,
                    "waited_ms": outcome.waited_ms,
                    "polls": outcome.polls,
                    "change_ratio_last": outcome.change_ratio_last,
                }
            else:
                frame = await self._screen.grab(p.screen_id, region)
            cursor = await self._screen.cursor_position() if p.cursor_ring else None
            image, width, height = await asyncio.to_thread(
                self._render, frame, region, cursor, p.scale, p.format, quality
            )
        native_h, native_w = frame.shape[0], frame.shape[1]
        frame_id = self._remember_frame(region, p.scale)
        result: dict[str, Any] = {
            "image": image,
            "format": p.format,
            "width": width,
            "height": height,
            **waited,
            "frame_id": frame_id,
            "native_width": native_w,
            "native_height": native_h,
            "scale": p.scale,
            "bytes": len(image),
        }
        if p.upload_url:
            upload = await screenshots.upload_image(
                self._client(),
                image,
                url=p.upload_url,
                method=p.upload_method,
                upload_format=p.upload_format,
                headers=screenshots.parse_upload_headers(p.upload_header),
                name=p.upload_name,
                image_format=p.format,
            )
            result["upload"] = upload
            if not p.upload_include_inline:
                result["image"] = None
        return result

    def _remember_frame(self, region: Bounds | None, scale: float) -> int:
        frame_id = next(self._frame_ids)
        self._frames[frame_id] = (region.x if region else 0, region.y if region else 0, scale)
        while len(self._frames) > FRAMES_KEPT:
            self._frames.popitem(last=False)
        return frame_id

    def _native(self, frame_id: int | None, x: int, y: int) -> tuple[int, int]:
        """``(x, y)`` in pixels of screenshot ``frame_id`` as native screen pixels."""
        if frame_id is None:
            return x, y
        try:
            left, top, scale = self._frames[frame_id]
        except KeyError:
            raise NotFoundError(
                f"frame {frame_id} is not known (the agent keeps the last {FRAMES_KEPT} "
                "screenshots): take a new screenshot and use its frame_id"
            ) from None
        return left + int(x / scale), top + int(y / scale)

    @staticmethod
    def _render(
        frame: FrameArray,
        region: Bounds | None,
        cursor: tuple[int, int] | None,
        scale: float,
        fmt: str,
        quality: int,
    ) -> tuple[bytes, int, int]:
        if cursor is not None:
            ox, oy = (region.x, region.y) if region else (0, 0)
            frame = imaging.draw_cursor_ring(frame, cursor[0] - ox, cursor[1] - oy)
        if scale != 1.0:
            frame = imaging.scale(frame, scale, scale)
        encoded = imaging.encode(frame, cast(Any, fmt), quality)
        return encoded, int(frame.shape[1]), int(frame.shape[0])

    async def _screenshots(self, p: A.ScreenshotsParams) -> dict[str, Any]:
        try:
            request = screenshots.ScreenshotsRequest.model_validate({"variants": p.variants})
        except pydantic.ValidationError as err:
            raise ValidationError(describe_validation(err, "screenshots")) from err
        async with self._screen_lock:
            frame = (await self._screen.grab(p.screen_id, None)).copy()
        return await screenshots.capture_variants(
            frame, request, window_bounds=self._window_bounds, http=self._client()
        )

    async def _window_bounds(self, window_id: int) -> Bounds:
        return (await self._find_window(window_id)).bounds

    def _client(self) -> httpx.AsyncClient:
        if self._http is None:
            self._http = httpx.AsyncClient(timeout=10.0)
        return self._http

    # -- pointer -------------------------------------------------------------------------------
    async def _move_if(self, p: A.ClickParams | A.ButtonParams | A.ScrollParams) -> None:
        if (p.x is None) != (p.y is None):
            raise ValidationError("give both x and y, or neither to act at the current position")
        if p.x is not None and p.y is not None:
            await self._pointer.move(*self._native(p.frame_id, p.x, p.y))

    async def _move(self, p: A.MoveParams) -> dict[str, Any]:
        await self._pointer.move(*self._native(p.frame_id, p.x, p.y))
        return OK

    async def _click(self, p: A.ClickParams) -> dict[str, Any]:
        await self._move_if(p)
        await self._pointer.click(p.button, 1)
        return OK

    async def _double_click(self, p: A.ClickParams) -> dict[str, Any]:
        await self._move_if(p)
        await self._pointer.click(p.button, 2)
        return OK

    async def _scroll(self, p: A.ScrollParams) -> dict[str, Any]:
        await self._move_if(p)
        await self._pointer.scroll(p.delta_x, p.delta_y)
        return OK

    async def _mouse_down(self, p: A.ButtonParams) -> dict[str, Any]:
        await self._move_if(p)
        await self._pointer.button(p.button, True)
        return OK

    async def _mouse_up(self, p: A.ButtonParams) -> dict[str, Any]:
        await self._move_if(p)
        await self._pointer.button(p.button, False)
        return OK

    async def _drag(self, p: A.DragParams) -> dict[str, Any]:
        from_x, from_y = self._native(p.frame_id, p.from_x, p.from_y)
        to_x, to_y = self._native(p.frame_id, p.to_x, p.to_y)
        await self._pointer.move(to_x, to_y)  # validates the end point before pressing
        await self._pointer.move(from_x, from_y)
        await self._pointer.button(p.button, True)
        try:
            steps = max(2, min(100, p.duration_ms // 10))
            pause = p.duration_ms / 1000 / steps
            for i in range(1, steps + 1):
                x = round(from_x + (to_x - from_x) * i / steps)
                y = round(from_y + (to_y - from_y) * i / steps)
                await self._pointer.move(x, y)
                if pause:
                    await asyncio.sleep(pause)
        finally:
            await self._pointer.button(p.button, False)
        return OK

    # -- keyboard ------------------------------------------------------------------------------
    async def _type(self, p: A.TypeParams) -> dict[str, Any]:
        delay = p.duration_ms / 1000 / len(p.text) if p.duration_ms else 0.0
        await self._keyboard.type_text(p.text, delay)
        return OK

    async def _hotkey(self, p: A.HotkeyParams | A.KeyParams) -> dict[str, Any]:
        keys = parse_keys(p.keys)
        await self.press_combo(keys, p.duration_ms / 1000)
        return OK

    async def press_combo(self, keys: list[Key], hold_s: float = 0.0) -> None:
        """Press keys in order, hold, release in reverse; never leaves one held on failure."""
        pressed: list[Key] = []
        try:
            for key in keys:
                await self._keyboard.key(key, True)
                pressed.append(key)
            if hold_s:
                await asyncio.sleep(hold_s)
        finally:
            for key in reversed(pressed):
                await self._keyboard.key(key, False)

    async def _key_down(self, p: A.KeyHoldParams) -> dict[str, Any]:
        await self._keyboard.key(parse_key(p.key), True)
        return OK

    async def _key_up(self, p: A.KeyHoldParams) -> dict[str, Any]:
        await self._keyboard.key(parse_key(p.key), False)
        return OK

    # -- clipboard -----------------------------------------------------------------------------
    @staticmethod
    def _truncate(text: str, max_bytes: int) -> tuple[str, bool]:
        data = text.encode("utf-8")
        if len(data) <= max_bytes:
            return text, False
        return data[:max_bytes].decode("utf-8", errors="ignore"), True

    async def _clipboard_get(self, p: A.ClipboardGetParams) -> dict[str, Any]:
        text, truncated = self._truncate(await self._clipboard.get_text(), p.max_bytes)
        return {"text": text, "length": len(text), "truncated": truncated}

    async def _clipboard_set(self, p: A.ClipboardSetParams) -> dict[str, Any]:
        await self._clipboard.set_text(p.text)
        return OK

    def _slot(self, name: str) -> tuple[str, datetime]:
        try:
            return self._slots[name]
        except KeyError:
            raise NotFoundError(
                f"no clipboard slot {name!r}: list the slots to see what is stored"
            ) from None

    @staticmethod
    def _stamp(when: datetime) -> str:
        return when.isoformat(timespec="seconds").replace("+00:00", "Z")

    async def _slots_list(self, _: A.NoParams) -> list[dict[str, Any]]:
        return [
            {"name": name, "length": len(text), "stored_at": self._stamp(at)}
            for name, (text, at) in sorted(self._slots.items())
        ]

    async def _slot_get(self, p: A.SlotParams) -> dict[str, Any]:
        text, at = self._slot(p.name)
        return {"name": p.name, "text": text, "length": len(text), "stored_at": self._stamp(at)}

    async def _slot_store(self, p: A.SlotStoreParams) -> dict[str, Any]:
        self._slots[p.name] = (p.text, datetime.now(UTC))
        return {"name": p.name, "length": len(p.text)}

    async def _slot_delete(self, p: A.SlotParams) -> None:
        self._slot(p.name)
        del self._slots[p.name]

    async def _slots_clear(self, _: A.NoParams) -> None:
        self._slots.clear()

    async def _slot_restore(self, p: A.SlotRestoreParams) -> dict[str, Any]:
        name = p.name or p.slot_name
        if not name:
            raise ValidationError("name the slot to restore (slot_name in a sequence step)")
        text, _ = self._slot(name)
        await self._clipboard.set_text(text)
        return {"name": name, "length": len(text)}

    async def _capture(self, p: A.CaptureParams) -> dict[str, Any]:
        results = []
        for capture in p.captures:
            try:
                if capture.focus_window_id is not None:
                    self._check_capability(A.ACTIONS_BY_NAME["window.focus"])
                    await self._windows_.focus_window(A.parse_window_id(capture.focus_window_id))
                if capture.select_all:
                    await self.press_combo(parse_keys("ctrl+a"))
                if capture.copy_:
                    await self.press_combo(parse_keys("ctrl+c"))
                if capture.settle_ms:
                    await asyncio.sleep(capture.settle_ms / 1000)
                raw = await self._clipboard.get_text()
                text, truncated = self._truncate(raw, capture.max_bytes)
                self._slots[capture.slot] = (text, datetime.now(UTC))
                results.append({"slot": capture.slot, "text": text, "length": len(text),
                                "truncated": truncated, "ok": True})  # fmt: skip
            except RemoteHandsError as err:
                results.append({"slot": capture.slot, "ok": False, "error": err.code,
                                "details": err.details})  # fmt: skip
        return {"results": results}

    # -- windows -------------------------------------------------------------------------------
    async def _find_window(self, window_id: int) -> WindowInfo:
        for window in await self._windows_.list_windows():
            if window.id == window_id:
                return window
        raise NotFoundError(f"no window {window_id} ({window_id:#x}): list windows for valid ids")

    async def _windows(self, _: A.NoParams) -> list[dict[str, Any]]:
        return [w.model_dump() for w in await self._windows_.list_windows()]

    async def _focused(self, _: A.NoParams) -> dict[str, Any] | None:
        for window in await self._windows_.list_windows():
            if window.is_focused:
                return window.model_dump()
        return None

    async def _active_dialog(self) -> WindowInfo | None:
        dialogs = [w for w in await self._windows_.list_windows() if w.is_dialog]
        focused = [w for w in dialogs if w.is_focused]
        if focused:
            return focused[0]
        return dialogs[-1] if dialogs else None

    async def _dialog(self, _: A.NoParams) -> dict[str, Any]:
        dialog = await self._active_dialog()
        return {"dialog": dialog.model_dump() if dialog else None}

    async def _gone(self, window_id: int, within_ms: int) -> bool:
        deadline = time.monotonic() + within_ms / 1000
        while True:
            if all(w.id != window_id for w in await self._windows_.list_windows()):
                return True
            if time.monotonic() >= deadline:
                return False
            await asyncio.sleep(0.03)

    async def _dialog_close(self, p: A.DialogCloseParams) -> dict[str, Any]:
        if p.window_id is not None:
            dialog: WindowInfo | None = await self._find_window(A.parse_window_id(p.window_id))
        else:
            dialog = await self._active_dialog()
        if dialog is None:
            return {"status": "ok", "closed_via": None}
        await self._windows_.focus_window(dialog.id)
        if self.driver.has("keyboard"):
            await self.press_combo(parse_keys("Escape"))
            if await self._gone(dialog.id, p.wait_dialog_gone_ms):
                return {"status": "ok", "closed_via": "escape"}
        await self._windows_.close_window(dialog.id)
        if await self._gone(dialog.id, p.wait_dialog_gone_ms):
            return {"status": "ok", "closed_via": "close"}
        raise BusyError(
            f"dialog {dialog.id:#x} ({dialog.title!r}) is still open after Escape and a close "
            f"request; it may be asking a question: take a screenshot and answer it"
        )

    @staticmethod
    def _window_id(p: A.WindowFocusParams) -> int:
        value = p.id if p.id is not None else p.window_id
        if value is None:
            raise ValidationError("name the window: window_id (a number or 0x... id)")
        return A.parse_window_id(value)  # checked by the model already: never raises

    async def _window_focus(self, p: A.WindowFocusParams) -> dict[str, Any]:
        await self._windows_.focus_window(self._window_id(p))
        return OK

    async def _window_move(self, p: A.WindowMoveParams) -> dict[str, Any]:
        window_id = A.parse_window_id(p.id)
        bounds = await self._windows_.move_window(window_id, p.bounds)
        return {"ok": True, "id": str(window_id), "bounds": bounds.model_dump()}

    async def _window_close(self, p: A.WindowParams) -> dict[str, Any]:
        await self._windows_.close_window(p.id)
        return OK

    # -- applications --------------------------------------------------------------------------
    async def _app_open(self, p: A.AppOpenParams) -> dict[str, Any]:
        pid = await self._apps.open_app(p.path, p.args)
        return {"status": "ok", "pid": pid}

    async def _app_running(self, p: A.AppRunningParams) -> dict[str, Any]:
        pids = await self._apps.running(p.name)
        return {"running": bool(pids), "pids": pids}

    async def _app_close(self, p: A.AppCloseParams) -> dict[str, Any]:
        self._check_capability(A.ACTIONS_BY_NAME["window.close"])
        await self._windows_.close_window(A.parse_window_id(p.window_id))
        return OK

    # -- misc ----------------------------------------------------------------------------------
    async def _actions(self, p: A.ActionsParams) -> list[dict[str, Any]]:
        return self.log.recent(p.limit)

    async def _sleep(self, p: A.SleepParams) -> dict[str, Any]:
        await asyncio.sleep(p.ms / 1000)
        return OK

    async def _sequence(self, p: A.SequenceParams) -> dict[str, Any]:
        started = time.perf_counter()
        results: list[dict[str, Any]] = []
        aborted_at: str | int | None = None
        async with self._locked(p.lock_timeout_ms):
            try:
                for index, step in enumerate(p.steps):
                    label = step.name if step.name is not None else index
                    entry = await self._step(step)
                    results.append(entry)
                    if not entry["ok"] and p.on_error == "abort":
                        aborted_at = label
                        break
            finally:
                if aborted_at is not None or any(not r["ok"] for r in results):
                    await self._release_held()
        return {
            "results": results,
            "aborted_at": aborted_at,
            "total_duration_ms": round((time.perf_counter() - started) * 1000),
        }

    async def _step(self, step: A.SequenceStep) -> dict[str, Any]:
        entry: dict[str, Any] = {"name": step.name, "type": step.type}
        started = time.perf_counter()
        spec = A.ACTIONS_BY_NAME.get(step.type)
        try:
            if spec is None or not spec.sequence:
                raise ValidationError(
                    f"unknown step type {step.type!r}: use an action name such as mouse.click, "
                    "keyboard.type, keyboard.key, window.focus, clipboard.slot_restore, sleep, "
                    "dialog.close or screenshot"
                )
            raw = dict(step.model_extra or {})
            model = validate_params(spec, raw)
            self._check_capability(spec)
            outcome = await self._handlers[spec.name](model)
            entry["ok"] = True
            if isinstance(outcome, dict):
                entry.update({k: v for k, v in outcome.items() if k not in _STEP_OWN})
            elif outcome is not None:
                entry["result"] = outcome
            self.log.add(spec.name, raw, "ok", (time.perf_counter() - started) * 1000)
        except RemoteHandsError as err:
            entry.update(ok=False, error=err.code, details=err.details)
        entry["duration_ms"] = round((time.perf_counter() - started) * 1000)
        return entry

    async def _release_held(self) -> None:
        if self.driver.has("keyboard"):
            try:
                await self._keyboard.release_all()
            except RemoteHandsError:
                log.exception("could not release held input after a failed sequence")
