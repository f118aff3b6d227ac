"""The pikvm driver: the vocabulary's Protocols on a PiKVM, through :mod:`.client`.

Screen: the streamer's JPEG (passed through untouched as the device's own encoded frame, or
decoded for pixels); the screen's size is the streamer's source resolution. Keyboard: keys by
kvmd's web names (the vocabulary's codes), text through ``/api/hid/print``. Mouse: absolute
moves mapped from pixels to -32768..32767 as kvmd's web UI maps them, buttons, the wheel
(split in notches of at most 127). Power (ATX), media (MSD) and the switch, where the device has
them: the driver narrows its capabilities to what the device reports when it starts.

Device errors become ours, keeping the device's words: 409 is :class:`BusyError`, a 503 of the
streamer :class:`DeviceError` "no video signal", kvmd's ``...DisabledError``
:class:`UnsupportedError`, other 400s :class:`ValidationError`, a device that cannot be reached
:class:`DeviceError` (:class:`DeviceTimeoutError` when it does not answer in time).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable
from typing import Any, Literal, TypeVar

from pydantic import Field

from remotehands.drivers.base import Driver, EncodedFrame, FrameArray, Held
from remotehands.drivers.pikvm.client import KvmdApiError, KvmdClient, Snapshot
from remotehands.drivers.pikvm.keymap import WEB_KEYS, to_kvmd
from remotehands.drivers.remote import RemoteSettings
from remotehands.errors import (
    BusyError,
    ConfigError,
    DeviceError,
    DeviceTimeoutError,
    NotFoundError,
    RemoteHandsError,
    UnsupportedError,
    ValidationError,
)
from remotehands.protocol.keys import Key, parse_key
from remotehands.protocol.models import (
    Bounds,
    Button,
    MediaDrive,
    MediaImage,
    MediaState,
    PowerAction,
    PowerButton,
    PowerState,
    ScreenInfo,
    SwitchPort,
    SwitchState,
)

__all__ = ["PikvmDriver", "PikvmSettings", "translate"]

T = TypeVar("T")

_ALL = frozenset({"screen", "keyboard", "mouse", "power", "media", "switch"})
_ATX_ACTIONS: tuple[PowerAction, ...] = ("on", "off", "off_hard", "reset_hard")
_ATX_BUTTONS: tuple[PowerButton, ...] = ("power", "power_long", "reset")


class PikvmSettings(RemoteSettings):
    """Settings of the pikvm driver (``[devices.settings]`` of a ``driver = "pikvm"`` device)."""

    user: str | None = Field("admin", min_length=1, max_length=128)
    """The kvmd user."""
    auth: Literal["headers", "basic", "cookie"] = "headers"
    """How to sign in: X-KVMD headers or HTTP Basic on every request, or a login cookie."""
    keymap: str | None = None
    """The keymap ``/api/hid/print`` types with (the device's default when unset)."""


def translate(err: KvmdApiError, url: str, doing: str) -> RemoteHandsError:
    """A kvmd error as ours, with the device's own words."""
    said = f"{err.error}: {err.message}" if err.status else err.message
    text = f"the PiKVM at {url} could not {doing}: {said}"
    if err.status == 0:
        if err.error == "IncompleteUpload":
            return ValidationError(f"{err.message}; nothing was kept")
        if "Timeout" in err.error:
            return DeviceTimeoutError(
                f"the PiKVM at {url} did not answer in time to {doing} ({err.error})"
            )
        return DeviceError(f"cannot reach the PiKVM at {url} to {doing}: {said}")
    if err.status == 409:
        return BusyError(text + " (retry once it is done)")
    if err.status in (401, 403):
        return DeviceError(
            text + " (check the device's user, password and TOTP secret: "
            "--device-user, REMOTEHANDS_DEVICE_PASSWORD, --device-totp-file)"
        )
    if err.status == 503:
        return DeviceError(f"no video signal: {text}")
    if err.status == 400:
        if err.error.endswith("DisabledError"):
            return UnsupportedError(text)
        if err.error in ("MsdUnknownImageError",):
            return NotFoundError(text)
        return ValidationError(text)
    return DeviceError(text)


class PikvmDriver(Driver):
    """A PiKVM: screen, keyboard and mouse; power, media and switch where it has them."""

    kind = "pikvm"
    device_type = "pikvm"
    capabilities = _ALL
    Settings = PikvmSettings

    def __init__(self, settings: PikvmSettings | None = None) -> None:
        if settings is None:
            raise ConfigError("the pikvm driver needs its url: --device-url https://pikvm")
        super().__init__(settings)
        self.settings: PikvmSettings = settings
        self._client: KvmdClient | None = None
        self._size: tuple[int, int] | None = None
        self._pointer = (0, 0)
        self._keys: list[str] = []
        self._buttons: list[Button] = []
        self.info: dict[str, Any] = {}

    # -- life -----------------------------------------------------------------------------

    @property
    def client(self) -> KvmdClient:
        """The kvmd client (after :meth:`start`)."""
        if self._client is None:
            raise DeviceError(f"the pikvm driver of {self.settings.url} is not started")
        return self._client

    async def _do(self, doing: str, call: Awaitable[T]) -> T:
        try:
            return await call
        except KvmdApiError as err:
            raise translate(err, self.settings.url, doing) from err

    async def start(self) -> None:
        """Sign in, read what the device is and has."""
        settings = self.settings
        verify: bool | str = str(settings.ca_file) if settings.ca_file else settings.verify_tls
        self._client = KvmdClient(
            settings.url,
            user=settings.user or "admin",
            password=settings.password() or "",
            totp_secret=settings.totp_secret(),
            auth=settings.auth,
            verify=verify,
            timeout_s=settings.timeout_s,
        )
        self.info = await self._do("read its information", self.client.info())
        capabilities = {"screen", "keyboard", "mouse"}
        atx = await self._do("read its ATX state", self.client.atx_state())
        if atx.get("enabled"):
            capabilities.add("power")
        msd = await self._do("read its MSD state", self.client.msd_state())
        if msd.get("enabled"):
            capabilities.add("media")
        try:
            switch = await self.client.switch_state()
        except KvmdApiError:
            switch = {}  # kvmd before the switch existed has no /api/switch
        if switch.get("model", {}).get("ports"):
            capabilities.add("switch")
        self.capabilities = frozenset(capabilities)

    async def close(self) -> None:
        """Release what this driver holds, then close the connection."""
        if self._client is None:
            return
        with contextlib.suppress(RemoteHandsError):  # a device gone away holds nothing of ours
            await self.release_all()
        await self._client.aclose()
        self._client = None

    async def check(self) -> None:
        """``/api/streamer``, one cheap request: it fails when the PiKVM is unreachable or
        refuses the credential, and while its streamer runs and sees no picture. A stopped
        streamer (``streamer: null``: kvmd runs it only while someone watches) is no fault."""
        state = await self._do("read its streamer state", self.client.streamer_state())
        source = (state.get("streamer") or {}).get("source")
        if source is not None and not source.get("online"):
            raise DeviceError(
                f"no video signal: the PiKVM at {self.settings.url} sees no picture (is the "
                "machine on and its HDMI cable in?)"
            )

    async def hardware_id(self) -> str:
        """The device's own serial number, else its host name (from ``/api/info``)."""
        platform = (self.info.get("hw") or {}).get("platform") or {}
        serial = platform.get("serial")
        if serial:
            return f"pikvm-{serial}"
        host = (self.info.get("node") or {}).get("host") or (
            ((self.info.get("meta") or {}).get("server") or {}).get("host")
        )
        return f"pikvm-host-{host}" if host else await super().hardware_id()

    # -- screen ---------------------------------------------------------------------------

    async def _resolution(self) -> tuple[int, int]:
        state = await self._do("read its streamer state", self.client.streamer_state())
        source = (state.get("streamer") or {}).get("source") or {}
        resolution = source.get("resolution") or {}
        width, height = int(resolution.get("width", 0)), int(resolution.get("height", 0))
        if not source.get("online") or not width or not height:
            if self._size is not None:
                return self._size
            raise DeviceError(
                f"no video signal: the PiKVM at {self.settings.url} sees no "
                "picture (is the machine on and its HDMI cable in?)"
            )
        self._size = (width, height)
        return self._size

    async def screens(self) -> list[ScreenInfo]:
        """The one screen the streamer captures."""
        width, height = await self._resolution()
        return [ScreenInfo(id=0, width=width, height=height)]

    def _check_screen(self, screen_id: int) -> None:
        if screen_id != 0:
            raise NotFoundError(f"no screen {screen_id}: a PiKVM has one screen, 0")

    async def _snapshot(self) -> Snapshot:
        shot = await self._do("take a snapshot", self.client.snapshot())
        self._size = (shot.width, shot.height)
        return shot

    async def snapshot(self, screen_id: int = 0) -> EncodedFrame | None:
        """The streamer's JPEG, untouched."""
        self._check_screen(screen_id)
        shot = await self._snapshot()
        return EncodedFrame(data=shot.data, format="jpeg", width=shot.width, height=shot.height)

    async def grab(self, screen_id: int = 0, region: Bounds | None = None) -> FrameArray:
        """The streamer's JPEG decoded to BGRX (cropped to ``region``)."""
        import simplejpeg

        self._check_screen(screen_id)
        shot = await self._snapshot()
        frame: FrameArray = await asyncio.to_thread(
            simplejpeg.decode_jpeg, shot.data, colorspace="BGRX"
        )
        if region is not None:
            if (
                region.x < 0
                or region.y < 0
                or region.x + region.width > frame.shape[1]
                or (region.y + region.height > frame.shape[0])
            ):
                raise ValidationError(
                    f"the region {region} is not inside the "
                    f"{frame.shape[1]}x{frame.shape[0]} screen"
                )
            frame = frame[region.y : region.y + region.height, region.x : region.x + region.width]
        return frame

    async def cursor_position(self) -> tuple[int, int]:
        """Where this driver last put the pointer (a KVM cannot see the cursor)."""
        return self._pointer

    # -- mouse ----------------------------------------------------------------------------

    async def move(self, x: int, y: int) -> None:
        """An absolute move to the pixel ``(x, y)``."""
        width, height = self._size or await self._resolution()
        if not (0 <= x < width and 0 <= y < height):
            raise ValidationError(f"({x}, {y}) is off the {width}x{height} screen")
        await self._do(
            "move the mouse", self.client.send_mouse_move(to_kvmd(x, width), to_kvmd(y, height))
        )
        self._pointer = (x, y)

    async def move_relative(self, dx: int, dy: int) -> None:
        """A relative move (for a PiKVM whose mouse is relative), split in steps of 127."""
        while dx or dy:
            step_x, step_y = max(-127, min(127, dx)), max(-127, min(127, dy))
            await self._do("move the mouse", self.client.send_mouse_relative(step_x, step_y))
            dx, dy = dx - step_x, dy - step_y

    async def button(self, button: Button, down: bool) -> None:
        """Press or release a button."""
        await self._do(
            f"{'press' if down else 'release'} the {button} button",
            self.client.send_mouse_button(button, down),
        )
        if down and button not in self._buttons:
            self._buttons.append(button)
        elif not down and button in self._buttons:
            self._buttons.remove(button)

    async def click(self, button: Button = "left", count: int = 1) -> None:
        """Click ``count`` times."""
        for _ in range(count):
            await self._do(f"click the {button} button", self.client.send_mouse_button(button))

    async def scroll(self, delta_x: int, delta_y: int) -> None:
        """Wheel notches (positive ``delta_y`` down: kvmd's positive is up)."""
        dx, dy = delta_x, -delta_y
        while dx or dy:
            step_x, step_y = max(-127, min(127, dx)), max(-127, min(127, dy))
            await self._do("scroll", self.client.send_mouse_wheel(step_x, step_y))
            dx, dy = dx - step_x, dy - step_y

    # -- keyboard -------------------------------------------------------------------------

    @staticmethod
    def key_name(key: Key) -> str:
        """kvmd's web name of a key (a character names the key typing it on a US layout)."""
        code = key.code
        if code is None and key.char is not None:
            code = parse_key(key.char).code if len(key.char) == 1 else None
        if code is None or code not in WEB_KEYS:
            raise ValidationError(
                f"a PiKVM has no key {key}: press one of kvmd's {len(WEB_KEYS)} "
                "keys (KeyA, Enter, ControlLeft...) or type the text"
            )
        return code

    async def key(self, key: Key, down: bool) -> None:
        """Press or release one key (exactly that: ``state`` is always sent)."""
        name = self.key_name(key)
        await self._do(
            f"{'press' if down else 'release'} {name}", self.client.send_key(name, state=down)
        )
        if down and name not in self._keys:
            self._keys.append(name)
        elif not down and name in self._keys:
            self._keys.remove(name)

    async def type(self, text: str, delay_s: float = 0.0) -> None:
        """Type ``text`` through ``/api/hid/print`` (no truncation)."""
        await self._do(
            "type text",
            self.client.print_text(
                text,
                keymap=self.settings.keymap,
                limit=0,
                delay_s=delay_s / 2 if delay_s else None,
            ),
        )

    async def send_shortcut(self, names: list[str]) -> None:
        """kvmd's own shortcut: press in order, release in reverse."""
        await self._do("press a shortcut", self.client.send_shortcut(names))

    async def release_all(self) -> None:
        """Release every key and button this driver pressed."""
        for name in list(reversed(self._keys)):
            await self._do(f"release {name}", self.client.send_key(name, state=False))
            self._keys.remove(name)
        for button in list(self._buttons):
            await self.button(button, False)

    async def held(self) -> Held:
        """What this driver holds down (a KVM cannot read the host's keyboard state)."""
        return Held(keys=frozenset(self._keys), buttons=frozenset(self._buttons))

    # -- power ----------------------------------------------------------------------------

    async def power_state(self) -> PowerState:
        """The ATX LEDs."""
        atx = await self._do("read its ATX state", self.client.atx_state())
        leds = atx.get("leds") or {}
        return PowerState(
            on=bool(leds.get("power")),
            hdd=bool(leds.get("hdd")),
            busy=bool(atx.get("busy")),
            actions=list(_ATX_ACTIONS),
            buttons=list(_ATX_BUTTONS),
        )

    async def _atx(self, action: str) -> None:
        await self._do(f"power {action}", self.client.atx_power(action))

    async def power_on(self) -> None:
        """Short press of power, when the LED is off."""
        await self._atx("on")

    async def power_off(self) -> None:
        """Short press of power, when the LED is on."""
        await self._atx("off")

    async def power_off_hard(self) -> None:
        """Long press of power, when the LED is on."""
        await self._atx("off_hard")

    async def power_reset_hard(self) -> None:
        """The reset button, when the LED is on."""
        await self._atx("reset_hard")

    async def power_click(self, button: PowerButton) -> None:
        """Press a front-panel button whatever the power state."""
        await self._do(f"click {button}", self.client.atx_click(button))

    async def power_restart(self) -> None:
        """Not through a KVM."""
        raise UnsupportedError(
            "a PiKVM cannot ask the operating system to restart: use "
            "power_reset_hard, or an agent on the machine"
        )

    async def power_shutdown(self) -> None:
        """Not through a KVM."""
        raise UnsupportedError(
            "a PiKVM cannot ask the operating system to shut down: use "
            "power_off (a short press), or an agent on the machine"
        )

    # -- media ----------------------------------------------------------------------------

    async def media_state(self) -> MediaState:
        """The drive and the stored images."""
        msd = await self._do("read its MSD state", self.client.msd_state())
        return media_state(msd)

    async def media_upload(self, name: str, chunks: AsyncIterator[bytes], size: int) -> MediaImage:
        """Stream an image to the device. A failed or cancelled upload leaves nothing: kvmd
        drops the incomplete image itself (``remove_incomplete``) once it sees the upload
        broken off, and this waits for that (removing it if the device kept it)."""
        known = {image.name for image in (await self.media_state()).images}
        try:
            result = await self._do(
                f"upload {name}", self.client.msd_write(name, chunks, size, remove_incomplete=True)
            )
        except BaseException:
            if name not in known:
                await asyncio.shield(self._drop_incomplete(name))
            raise
        image = result.get("image") or {}
        written = int(image.get("written", size))
        if written != size:
            await self._drop_incomplete(name)
            raise DeviceError(
                f"the PiKVM at {self.settings.url} took {written} of the {size} "
                f"bytes of {name}; nothing was kept"
            )
        return MediaImage(name=str(image.get("name", name)), size=written, complete=True)

    async def _drop_incomplete(self, name: str) -> None:
        """Wait (at most ``timeout_s``) until the device no longer lists the incomplete image
        ``name``, removing it once the device stopped writing it."""
        try:
            async with asyncio.timeout(self.settings.timeout_s):
                while True:
                    state = await self.client.msd_state()
                    storage = state.get("storage") or {}
                    image = (storage.get("images") or {}).get(name)
                    if image is None or image.get("complete", True):
                        return
                    if not storage.get("uploading") and not state.get("busy"):
                        with contextlib.suppress(KvmdApiError):
                            await self.client.msd_remove(name)
                    await asyncio.sleep(0.05)
        except (TimeoutError, KvmdApiError):
            pass  # the device keeps it marked incomplete; its own clean-up is kvmd's

    async def media_fetch(self, url: str, name: str | None = None) -> MediaImage:
        """The device downloads ``url`` itself."""
        last: dict[str, Any] = {}

        async def run() -> None:
            nonlocal last
            async for progress in self.client.msd_write_remote(url, name):
                last = progress.get("image") or last

        await self._do(f"download {url}", run())
        size = int(last.get("size") or last.get("written") or 0)
        return MediaImage(
            name=str(last.get("name", name or url.rsplit("/", 1)[-1])),
            size=size,
            complete=int(last.get("written", 0)) >= size,
        )

    async def media_mount(self, name: str, cdrom: bool = True, rw: bool = False) -> MediaDrive:
        """Select ``name`` and connect the drive (disconnecting it first when connected)."""
        state = await self.media_state()
        if name not in {image.name for image in state.images}:
            raise NotFoundError(f"the PiKVM at {self.settings.url} has no image {name!r}")
        if state.drive.connected:
            await self._do("disconnect the drive", self.client.msd_set_connected(False))
        await self._do(f"select {name}", self.client.msd_set_params(image=name, cdrom=cdrom, rw=rw))
        await self._do("connect the drive", self.client.msd_set_connected(True))
        return (await self.media_state()).drive

    async def media_eject(self) -> MediaDrive:
        """Disconnect the drive and clear its image."""
        state = await self.media_state()
        if state.drive.connected:
            await self._do("disconnect the drive", self.client.msd_set_connected(False))
        if state.drive.image is not None:
            await self._do("clear the drive's image", self.client.msd_set_params(image=""))
        return (await self.media_state()).drive

    async def media_remove(self, name: str) -> None:
        """Delete a stored image."""
        state = await self.media_state()
        if name not in {image.name for image in state.images}:
            raise NotFoundError(f"the PiKVM at {self.settings.url} has no image {name!r}")
        await self._do(f"remove {name}", self.client.msd_remove(name))

    # -- switch ---------------------------------------------------------------------------

    async def switch_ports(self) -> SwitchState:
        """The switch's ports and the active one."""
        state = await self._do("read its switch", self.client.switch_state())
        return switch_state(state)

    async def switch_set(self, port: int) -> None:
        """Show ``port``."""
        await self._do(f"switch to port {port}", self.client.switch_set_active(port))

    async def switch_beacon(self, port: int, on: bool) -> None:
        """Light or clear a port's beacon."""
        await self._do(f"set the beacon of port {port}", self.client.switch_set_beacon(port, on))

    async def switch_power(self, port: int, action: PowerAction) -> None:
        """A power action through the switch's ATX wiring of ``port``."""
        if action not in _ATX_ACTIONS:
            raise UnsupportedError(
                f"the switch's ATX cannot {action}: use one of {', '.join(_ATX_ACTIONS)}"
            )
        await self._do(f"power {action} port {port}", self.client.switch_atx_power(port, action))

    async def switch_click(self, port: int, button: PowerButton) -> None:
        """Press a front-panel button of ``port``'s machine."""
        await self._do(f"click {button} on port {port}", self.client.switch_atx_click(port, button))


def media_state(msd: dict[str, Any]) -> MediaState:
    """kvmd's ``/api/msd`` as the vocabulary's :class:`MediaState`."""
    drive = msd.get("drive") or {}
    storage = msd.get("storage") or {}
    image = drive.get("image") or {}
    root = (storage.get("parts") or {}).get("") or {}
    images = [
        MediaImage(
            name=name, size=int(info.get("size", 0)), complete=bool(info.get("complete", True))
        )
        for name, info in sorted((storage.get("images") or {}).items())
    ]
    return MediaState(
        online=bool(msd.get("online")),
        busy=bool(msd.get("busy")),
        drive=MediaDrive(
            image=image.get("name"),
            connected=bool(drive.get("connected")),
            cdrom=bool(drive.get("cdrom", True)),
            rw=bool(drive.get("rw")),
        ),
        images=images,
        storage_size=root.get("size"),
        storage_free=root.get("free"),
    )


def switch_state(state: dict[str, Any]) -> SwitchState:
    """kvmd's ``/api/switch`` as the vocabulary's :class:`SwitchState`."""
    ports = (state.get("model") or {}).get("ports") or []
    video = (state.get("video") or {}).get("links") or []
    beacons = (state.get("beacons") or {}).get("ports") or []
    power = ((state.get("atx") or {}).get("leds") or {}).get("power") or []
    active = int((state.get("summary") or {}).get("active_port", -1))

    def at(items: list[Any], index: int) -> Any:
        return items[index] if index < len(items) else None

    return SwitchState(
        active=active if active >= 0 else None,
        ports=[
            SwitchPort(
                port=i,
                name=str(port.get("name") or ""),
                video=at(video, i),
                beacon=bool(at(beacons, i)),
                power=at(power, i),
            )
            for i, port in enumerate(ports)
        ],
    )
