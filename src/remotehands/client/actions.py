"""One SDK method per action, written once for every client.

:class:`ActionMethods` holds a method for each action of
:data:`remotehands.protocol.actions.ACTIONS`; each is a typed signature over one generic
``call(action_name, **params)``. A standalone agent (:class:`~remotehands.client.AgentClient`)
and a device of a fleet (:class:`~remotehands.client.Device`) implement ``call``; so do their
async twins, whose ``call`` returns an awaitable, which is what the type parameter ``R`` says::

    agent.click(x=10, y=20)                  # sync: the result
    await async_agent.click(x=10, y=20)      # async: an awaitable of the result

Each method is named for its action's verb in :data:`remotehands.protocol.actions.ACTIONS` (the
rule is written there); :data:`ACTION_METHODS` is that table's wire name -> method name, so the
CLI and the MCP tools name a verb as the SDK does. Older names stay as aliases (``type_text`` of
``type``; ``hotkey``, the second route of the verb ``key``).

The methods written here have typed signatures; a row of the table that has none yet gets a
method computed from the row when this module is imported (``call`` with the row's wire name and
the keyword parameters given), so every verb of the table is a method on every client.
``media_upload`` streams a file (a path or an open binary file) with progress.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Generic, TypeVar

from remotehands.client.uploads import Progress, UploadBody, UploadSource
from remotehands.protocol.actions import ACTIONS, ActionSpec, by_verb
from remotehands.protocol.models import Button, ImageFormat, PowerAction, PowerButton

__all__ = ["ACTION_METHODS", "ActionMethods", "wire_name"]

R = TypeVar("R")

KeyName = str | Mapping[str, str]
"""A key: a name such as ``"ctrl"``, ``"Enter"``, ``"KeyA"``, or ``{"char": "é"}``."""

ACTION_METHODS: dict[str, str] = {a.name: a.sdk_method for a in ACTIONS if not a.step_only}
"""Wire action name -> SDK method name, from :data:`~remotehands.protocol.actions.ACTIONS`
(the method is the row's verb; the CLI command is the same name with dashes). ``sleep`` is
missing on purpose: it only exists as a step of a sequence."""


def wire_name(name: str) -> str | None:
    """The wire name of an action named by its method or CLI name (``double-click`` ->
    ``mouse.double_click``; older names such as ``type_text`` too); ``None`` when ``name`` is
    none of those."""
    if name in ACTION_METHODS:
        return name
    spec = by_verb(name)
    return spec.name if spec is not None else None


def _keys(keys: Sequence[KeyName] | str) -> list[KeyName] | str:
    return keys if isinstance(keys, str) else list(keys)


class ActionMethods(Generic[R]):
    """The actions of one device; every method is ``call`` with the action's name.

    Results are :class:`~remotehands.client.Result` objects (JSON objects whose keys read as
    attributes), lists of them, ``None`` for answers without a body, and
    :class:`~remotehands.client.Screenshot` for screenshots. Errors are the
    :mod:`remotehands.errors` tree.
    """

    def call(self, action: str, /, **params: Any) -> R:
        """Carry out ``action`` (a wire name such as ``mouse.click`` or a method name such as
        ``click``) with ``params``; parameters set to ``None`` are left out."""
        raise NotImplementedError

    # screen

    def screenshot(
        self,
        *,
        format: ImageFormat | None = None,
        quality: int | None = None,
        scale: float | None = None,
        screen_id: int | None = None,
        cursor_ring: bool | None = None,
        wait_stable: bool | None = None,
        timeout_ms: int | None = None,
        **options: Any,
    ) -> R:
        """The whole screen as a :class:`~remotehands.client.Screenshot` (``.image`` is bytes).

        ``wait_stable`` waits up to ``timeout_ms`` for the screen to stop changing; ``options``
        takes the other knobs of the API (``pixel_delta``, ``upload_url``...).
        """
        return self.call(
            "screenshot",
            format=format,
            quality=quality,
            scale=scale,
            screen_id=screen_id,
            cursor_ring=cursor_ring,
            wait_stable=wait_stable,
            timeout_ms=timeout_ms,
            **options,
        )

    def screenshot_region(
        self,
        x: int,
        y: int,
        width: int,
        height: int,
        *,
        format: ImageFormat | None = None,
        quality: int | None = None,
        scale: float | None = None,
        wait_stable: bool | None = None,
        **options: Any,
    ) -> R:
        """A rectangle of the screen as a :class:`~remotehands.client.Screenshot`."""
        return self.call(
            "screenshot.region",
            x=x,
            y=y,
            width=width,
            height=height,
            format=format,
            quality=quality,
            scale=scale,
            wait_stable=wait_stable,
            **options,
        )

    def cursor_position(self) -> R:
        """Where the pointer is: ``{"x", "y"}``."""
        return self.call("screenshot.cursor")

    def screenshots(
        self, variants: Sequence[Mapping[str, Any]], *, screen_id: int | None = None
    ) -> R:
        """Several variants of one frame (crop, scale, format, upload); images come as bytes."""
        return self.call("screenshots", variants=list(variants), screen_id=screen_id)

    def screens(self) -> R:
        """The screens: ``{"screens": [{"id", "width", "height", ...}]}``."""
        return self.call("screens")

    # pointer

    def move(self, x: int, y: int, *, frame_id: int | None = None) -> R:
        """Move the pointer to ``x``, ``y`` (pixels of screenshot ``frame_id`` when given)."""
        return self.call("mouse.move", x=x, y=y, frame_id=frame_id)

    def click(
        self,
        x: int | None = None,
        y: int | None = None,
        *,
        button: Button = "left",
        frame_id: int | None = None,
    ) -> R:
        """Click at ``x``, ``y`` (or where the pointer is when they are left out); with
        ``frame_id`` the coordinates are pixels of that screenshot, mapped back by the agent."""
        return self.call("mouse.click", x=x, y=y, button=button, frame_id=frame_id)

    def double_click(
        self,
        x: int | None = None,
        y: int | None = None,
        *,
        button: Button = "left",
        frame_id: int | None = None,
    ) -> R:
        """Double-click at ``x``, ``y`` (or where the pointer is)."""
        return self.call("mouse.double_click", x=x, y=y, button=button, frame_id=frame_id)

    def scroll(
        self,
        x: int | None = None,
        y: int | None = None,
        *,
        delta_x: int = 0,
        delta_y: int = 0,
        frame_id: int | None = None,
    ) -> R:
        """Scroll by wheel notches at ``x``, ``y``; positive ``delta_y`` scrolls down."""
        return self.call(
            "mouse.scroll", x=x, y=y, delta_x=delta_x, delta_y=delta_y, frame_id=frame_id
        )

    def drag(
        self,
        from_x: int,
        from_y: int,
        to_x: int,
        to_y: int,
        *,
        button: Button = "left",
        duration_ms: int | None = None,
        frame_id: int | None = None,
    ) -> R:
        """Press at one point, move to the other over ``duration_ms``, release."""
        return self.call(
            "mouse.drag",
            frame_id=frame_id,
            from_x=from_x,
            from_y=from_y,
            to_x=to_x,
            to_y=to_y,
            button=button,
            duration_ms=duration_ms,
        )

    def mouse_down(
        self, button: Button = "left", *, x: int | None = None, y: int | None = None
    ) -> R:
        """Press ``button`` and keep it down."""
        return self.call("mouse.down", button=button, x=x, y=y)

    def mouse_up(self, button: Button = "left", *, x: int | None = None, y: int | None = None) -> R:
        """Release ``button``."""
        return self.call("mouse.up", button=button, x=x, y=y)

    # keyboard

    def type_text(self, text: str, *, duration_ms: int | None = None) -> R:
        """Type ``text`` verbatim (any Unicode), spread over ``duration_ms``."""
        return self.call("keyboard.type", text=text, duration_ms=duration_ms)

    def hotkey(self, *keys: KeyName | Sequence[KeyName], duration_ms: int | None = None) -> R:
        """Press ``keys`` together and release them: ``hotkey("ctrl", "s")``,
        ``hotkey("ctrl+shift+t")``, ``hotkey("ctrl", {"char": "é"})``, ``hotkey(["ctrl", "s"])``."""
        names: list[Any] = list(keys)
        if len(names) == 1 and isinstance(names[0], list | tuple):
            names = list(names[0])
        return self.call("keyboard.hotkey", keys=names, duration_ms=duration_ms)

    def key(self, keys: Sequence[KeyName] | str, *, duration_ms: int | None = None) -> R:
        """Press a key or a combination written ``"ctrl+v"`` (or as a list of keys)."""
        return self.call("keyboard.key", keys=_keys(keys), duration_ms=duration_ms)

    def key_down(self, key: KeyName) -> R:
        """Hold ``key`` down until :meth:`key_up`."""
        return self.call("keyboard.down", key=key)

    def key_up(self, key: KeyName) -> R:
        """Release a held ``key``."""
        return self.call("keyboard.up", key=key)

    # clipboard

    def clipboard_get(self, *, max_bytes: int | None = None) -> R:
        """The clipboard text: ``{"text", "length", "truncated"}``."""
        return self.call("clipboard.get", max_bytes=max_bytes)

    def clipboard_set(self, text: str) -> R:
        """Put ``text`` on the clipboard."""
        return self.call("clipboard.set", text=text)

    def clipboard_slots(self) -> R:
        """The named slots: ``[{"name", "length", "stored_at"}]``."""
        return self.call("clipboard.slots")

    def slot_get(self, name: str) -> R:
        """A slot with its text."""
        return self.call("clipboard.slot_get", name=name)

    def slot_store(self, name: str, text: str) -> R:
        """Store ``text`` in slot ``name``."""
        return self.call("clipboard.slot_store", name=name, text=text)

    def slot_delete(self, name: str) -> R:
        """Delete slot ``name``."""
        return self.call("clipboard.slot_delete", name=name)

    def slots_clear(self) -> R:
        """Delete every slot."""
        return self.call("clipboard.slots_clear")

    def slot_restore(self, name: str) -> R:
        """Put slot ``name`` back on the OS clipboard."""
        return self.call("clipboard.slot_restore", name=name)

    def clipboard_capture(self, captures: Sequence[Mapping[str, Any]]) -> R:
        """For each capture: focus a window, select all, copy, store the text in a slot.

        ``captures`` are ``{"slot", "focus_window_id", "select_all", "copy", "settle_ms"}``.
        """
        return self.call("clipboard.capture", captures=list(captures))

    # sequence

    def sequence(
        self,
        steps: Sequence[Mapping[str, Any]],
        *,
        on_error: str | None = None,
        lock_timeout_ms: int | None = None,
    ) -> R:
        """Run ``steps`` in order under the device lock; each step is ``{"type": action, ...}``
        with the action's parameters (``type`` may be a wire name or a method name)."""
        return self.call(
            "sequence",
            steps=[_step(step) for step in steps],
            on_error=on_error,
            lock_timeout_ms=lock_timeout_ms,
        )

    # windows

    def windows(self) -> R:
        """The top-level windows: ``[{"id", "title", "process_name", "pid", "bounds", ...}]``."""
        return self.call("windows.list")

    def focused_window(self) -> R:
        """The focused window."""
        return self.call("windows.focused")

    def dialog(self) -> R:
        """The active dialog: ``{"dialog": window or None}``."""
        return self.call("dialog.get")

    def dialog_close(
        self, window_id: int | str | None = None, *, wait_dialog_gone_ms: int | None = None
    ) -> R:
        """Close the active dialog (or ``window_id``): Escape first, then a close request."""
        return self.call(
            "dialog.close", window_id=window_id, wait_dialog_gone_ms=wait_dialog_gone_ms
        )

    def focus_window(self, id: int | str) -> R:
        """Focus window ``id`` (a number or ``"0x4400003"``)."""
        return self.call("window.focus", id=id)

    def move_window(
        self,
        id: int | str,
        x: int,
        y: int,
        width: int,
        height: int,
        *,
        lock_timeout_ms: int | None = None,
    ) -> R:
        """Move and resize window ``id``."""
        return self.call(
            "window.move",
            id=id,
            bounds={"x": x, "y": y, "width": width, "height": height},
            lock_timeout_ms=lock_timeout_ms,
        )

    def close_window(self, id: int | str) -> R:
        """Ask window ``id`` to close."""
        return self.call("window.close", id=id)

    # applications

    def open_app(self, path: str, args: Sequence[str] = ()) -> R:
        """Start ``path`` with ``args``: ``{"status", "pid"}``."""
        return self.call("application.open", path=path, args=list(args))

    def app_running(self, name: str) -> R:
        """Whether a program is running, by executable name: ``{"running", "pids"}``."""
        return self.call("application.running", name=name)

    def close_app(self, window_id: int | str) -> R:
        """Close an application's window."""
        return self.call("application.close", window_id=window_id)

    # audio

    def audio_status(self) -> R:
        """The output devices and the playing sessions: ``{"devices": [{"id", "name",
        "volume", "muted", "default"}], "sessions": [{"id", "name", "pid", "volume", "muted",
        "device_id"}]}``; volumes in percent."""
        return self.call("audio.status")

    def audio_volume(
        self, volume: float, *, device_id: str | None = None, session_id: str | None = None
    ) -> R:
        """Set a volume in percent (0-100, up to 150 amplified): of session ``session_id``,
        of device ``device_id``, or of the default device. Answers the device or session as
        the sound server shows it afterwards."""
        return self.call("audio.volume", volume=volume, device_id=device_id, session_id=session_id)

    def audio_mute(
        self, muted: bool = True, *, device_id: str | None = None, session_id: str | None = None
    ) -> R:
        """Mute (``muted=False``: unmute) session ``session_id``, device ``device_id``, or the
        default device."""
        return self.call("audio.mute", muted=muted, device_id=device_id, session_id=session_id)

    def audio_default(self, device_id: str) -> R:
        """Make output device ``device_id`` the default one."""
        return self.call("audio.default", device_id=device_id)

    def audio_move(self, session_id: str, device_id: str) -> R:
        """Play session ``session_id`` on output device ``device_id``."""
        return self.call("audio.move", session_id=session_id, device_id=device_id)

    # log

    def actions(self, *, limit: int | None = None) -> R:
        """The recent action log, newest first."""
        return self.call("actions", limit=limit)

    # power: each action answers what was observed (the states before and after, whether the
    # power LED changed); ``wait=False`` reads the state once instead of watching the LED for up
    # to ``timeout_s``.

    def power_state(self) -> R:
        """The power and disk LEDs and the power actions the device has."""
        return self.call("power.state")

    def power_on(self, *, wait: bool | None = None, timeout_s: float | None = None) -> R:
        """Turn the machine on and watch its power LED come on."""
        return self.call("power.on", wait=wait, timeout_s=timeout_s)

    def power_off(self, *, wait: bool | None = None, timeout_s: float | None = None) -> R:
        """Ask the machine to turn off (the OS may refuse) and watch its power LED."""
        return self.call("power.off", wait=wait, timeout_s=timeout_s)

    def power_off_hard(self, *, wait: bool | None = None, timeout_s: float | None = None) -> R:
        """Cut the machine's power (a long press) and watch its power LED go out."""
        return self.call("power.off_hard", wait=wait, timeout_s=timeout_s)

    def power_reset_hard(self, *, wait: bool | None = None, timeout_s: float | None = None) -> R:
        """Pull the reset line."""
        return self.call("power.reset_hard", wait=wait, timeout_s=timeout_s)

    def power_click(
        self, button: PowerButton, *, wait: bool | None = None, timeout_s: float | None = None
    ) -> R:
        """Press a front-panel button: ``power``, ``power_long`` or ``reset``."""
        return self.call("power.click", button=button, wait=wait, timeout_s=timeout_s)

    def power_restart(self, *, wait: bool | None = None, timeout_s: float | None = None) -> R:
        """Restart the operating system."""
        return self.call("power.restart", wait=wait, timeout_s=timeout_s)

    def power_shutdown(self, *, wait: bool | None = None, timeout_s: float | None = None) -> R:
        """Shut the operating system down and watch the power LED go out."""
        return self.call("power.shutdown", wait=wait, timeout_s=timeout_s)

    # virtual media

    def media_state(self) -> R:
        """The drive, the stored images and the storage left."""
        return self.call("media.state")

    def media_upload(self, name: str, file: UploadSource, *, progress: Progress | None = None) -> R:
        """Store ``file`` (a path, or a binary file open for reading) as the image ``name``,
        streamed; ``progress(sent, total)`` is called after each chunk. Answers the stored
        image (``{"name", "size", "complete"}``)."""
        return self.call("media.upload", name=name, body=UploadBody(file, progress))

    def media_fetch(
        self, url: str, name: str | None = None, *, timeout_s: float | None = None
    ) -> R:
        """Have the device download an image from ``url`` (named after the URL unless
        ``name`` is given), waiting up to ``timeout_s``."""
        return self.call("media.fetch", url=url, name=name, timeout_s=timeout_s)

    def media_mount(self, name: str, *, cdrom: bool | None = None, rw: bool | None = None) -> R:
        """Insert image ``name`` into the drive as a CD-ROM (default) or, with
        ``cdrom=False``, a flash drive (``rw=True``: writable), and connect it."""
        return self.call("media.mount", name=name, cdrom=cdrom, rw=rw)

    def media_eject(self) -> R:
        """Disconnect the drive and take its image out."""
        return self.call("media.eject")

    def media_remove(self, name: str) -> R:
        """Delete the stored image ``name``."""
        return self.call("media.remove", name=name)

    # KVM switch

    def switch_ports(self) -> R:
        """The switch's ports and the active one."""
        return self.call("switch.ports")

    def switch_set(self, port: int) -> R:
        """Show the machine on ``port``."""
        return self.call("switch.set", port=port)

    def switch_beacon(self, port: int, on: bool = True) -> R:
        """Light (or with ``on=False`` clear) the beacon LED of ``port``."""
        return self.call("switch.beacon", port=port, on=on)

    def switch_power(
        self,
        port: int,
        action: PowerAction,
        *,
        wait: bool | None = None,
        timeout_s: float | None = None,
    ) -> R:
        """A power action on the machine of ``port``, watching its power LED."""
        return self.call("switch.power", port=port, action=action, wait=wait,
                         timeout_s=timeout_s)  # fmt: skip

    def switch_click(
        self,
        port: int,
        button: PowerButton,
        *,
        wait: bool | None = None,
        timeout_s: float | None = None,
    ) -> R:
        """Press a front-panel button of the machine of ``port``."""
        return self.call("switch.click", port=port, button=button, wait=wait,
                         timeout_s=timeout_s)  # fmt: skip

    # text on the screen (OCR by the agent) and act-then-settle

    def ocr(
        self,
        *,
        region: tuple[int, int, int, int] | None = None,
        upscale: float | None = None,
        min_confidence: float | None = None,
        screen_id: int | None = None,
    ) -> R:
        """The text of the screen, or of ``region`` (x, y, width, height in native pixels):
        ``{"text", "words": [{"text", "confidence", "box", "line"}], "lines", "region", ...}``."""
        return self.call("ocr", **_region(region), upscale=upscale,
                         min_confidence=min_confidence, screen_id=screen_id)  # fmt: skip

    def find_text(
        self,
        text: str,
        *,
        region: tuple[int, int, int, int] | None = None,
        min_score: float | None = None,
        **options: Any,
    ) -> R:
        """Where ``text`` is on the screen (case-insensitive, fuzzy): ``{"matches": [{"text",
        "score", "box", "x", "y"}]}``, best reading order; ``NotFoundError`` naming the closest
        text when it is not there."""
        return self.call("ocr.find", text=text, **_region(region), min_score=min_score,
                         **options)  # fmt: skip

    def click_text(
        self,
        text: str,
        *,
        index: int | None = None,
        button: Button | None = None,
        double: bool | None = None,
        region: tuple[int, int, int, int] | None = None,
        min_score: float | None = None,
        **options: Any,
    ) -> R:
        """Find ``text`` and click the centre of its box; several matches are refused
        (``ValidationError``) unless ``index`` picks one."""
        return self.call("ocr.click", text=text, index=index, button=button, double=double,
                         **_region(region), min_score=min_score, **options)  # fmt: skip

    def wait_for_text(
        self,
        text: str,
        *,
        gone: bool | None = None,
        timeout_ms: int | None = None,
        region: tuple[int, int, int, int] | None = None,
        min_score: float | None = None,
        **options: Any,
    ) -> R:
        """Wait until ``text`` is on the screen (with ``gone``: until it is not);
        ``DeviceTimeoutError`` after ``timeout_ms``."""
        return self.call("ocr.wait", text=text, gone=gone, timeout_ms=timeout_ms,
                         **_region(region), min_score=min_score, **options)  # fmt: skip

    wait_text = wait_for_text

    def act(
        self,
        steps: Sequence[Mapping[str, Any]] = (),
        *,
        scale: float | None = None,
        format: ImageFormat | None = None,
        timeout_ms: int | None = None,
        screenshot: bool | None = None,
        **options: Any,
    ) -> R:
        """Run ``steps`` (sequence steps, ``{"type": action, ...}``), wait until the screen
        settles and answer ``{"results", "changed", "settled", "timed_out", "changed_regions",
        "screenshot"}``: each step's result, per step whether the screen changed after it, and
        the settled screenshot (``scale`` as asked)."""
        return self.call("act", steps=[_step(step) for step in steps], scale=scale,
                         format=format, timeout_ms=timeout_ms, screenshot=screenshot,
                         **options)  # fmt: skip

    # ``type`` is the action's name everywhere; it is bound last so that the builtin stays
    # visible to everything above in this class body.
    type = type_text


def _computed(spec: ActionSpec) -> Any:
    """The method of a row that has no typed method above: ``call`` with its wire name."""

    def method(self: ActionMethods[Any], **params: Any) -> Any:
        return self.call(spec.name, **params)

    method.__name__ = method.__qualname__ = spec.sdk_method
    method.__doc__ = f"{spec.summary} (``{spec.name}``; keyword parameters as the API's)."
    return method


for _spec in ACTIONS:
    if not _spec.step_only:
        for _name in _spec.names:
            if not hasattr(ActionMethods, _name):
                setattr(ActionMethods, _name, _computed(_spec))


def _region(region: tuple[int, int, int, int] | None) -> dict[str, int]:
    if region is None:
        return {}
    x, y, width, height = region
    return {"x": x, "y": y, "width": width, "height": height}


def _step(step: Mapping[str, Any]) -> dict[str, Any]:
    kind = step.get("type")
    wire = wire_name(kind) if isinstance(kind, str) else None
    return {**step, "type": wire} if wire is not None else dict(step)
