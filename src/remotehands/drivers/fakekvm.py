"""The fake device's power, virtual media and KVM switch: mixins of :class:`FakeDriver`.

Each capability is a mixin with real state, so every layer above a driver (the agent's
handlers, the faces, the server, the SDK, the CLI) can be tested without hardware:

- :class:`FakePower`: a machine behind ATX wiring. Its power LED follows the power actions
  after ``power_delay_s`` (the time a real machine takes to boot or shut down), so the agent's
  watch of the LED has something to wait for; ``power_stuck`` plays a machine that ignores the
  buttons.
- :class:`FakeMedia`: a virtual-media store. An upload is streamed: to a file in ``media_dir``
  (written under a temporary name and renamed when complete), or, without a directory, only
  counted and hashed (SHA-256), never kept in memory. An image being written is listed with
  ``complete=False``; one whose upload failed or was cancelled is gone.
- :class:`FakeSwitch`: a KVM switch of ``switch_ports`` ports, each with a beacon LED and a
  machine whose power LED follows the per-port power actions like :class:`FakePower`'s.

A mixin takes its settings from :class:`FakeKvmSettings` (which
:class:`~remotehands.drivers.fake.FakeSettings` extends) and initialises its state in
``__init__`` before passing on to the next base, so that more mixins (audio) are added to
``FakeDriver``'s bases the same way.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast
from urllib.parse import unquote, urlsplit

import httpx
from pydantic import Field

from remotehands.drivers.base import DriverSettings
from remotehands.errors import (
    BusyError,
    DeviceError,
    DeviceTimeoutError,
    NotFoundError,
    UnsupportedError,
    ValidationError,
)
from remotehands.protocol.models import (
    MediaDrive,
    MediaImage,
    MediaState,
    PowerAction,
    PowerButton,
    PowerState,
    SwitchPort,
    SwitchState,
)
from remotehands.protocol.params import check_image_name

__all__ = [
    "KVM_CAPABILITIES",
    "FakeKvmSettings",
    "FakeMedia",
    "FakePower",
    "FakeSwitch",
    "StoredImage",
]

KVM_CAPABILITIES = frozenset({"power", "media", "switch"})
"""The capabilities these mixins give the fake device."""

_ACTIONS: list[PowerAction] = ["on", "off", "off_hard", "reset_hard", "restart", "shutdown"]
_BUTTONS: list[PowerButton] = ["power", "power_long", "reset"]
_FETCH_CHUNK = 1 << 20


class FakeKvmSettings(DriverSettings):
    """The settings of the fake device's power, virtual media and switch."""

    power_on: bool = True
    """Whether the machine is on when the driver starts."""
    power_delay_s: float = Field(0.05, ge=0, le=60)
    """How long the power LED takes to follow a power action."""
    media_dir: Path | None = None
    """Where uploaded images are written; unset: they are only counted and hashed."""
    media_size: int = Field(64 << 30, ge=0)
    """The storage's size in bytes."""
    switch_ports: int = Field(4, ge=0, le=64)
    """How many ports the KVM switch has."""


class _Recorder:
    """What the mixins need of the driver they are mixed into."""

    settings: DriverSettings

    def _record(self, name: str, **args: Any) -> None:
        record = getattr(super(), "_record", None)
        if record is not None:
            record(name, **args)

    @property
    def _kvm(self) -> FakeKvmSettings:
        return cast(FakeKvmSettings, self.settings)


class _Led:
    """A power LED that follows a machine's power after a delay, as a real one does."""

    def __init__(self, on: bool) -> None:
        self.on = on
        self._change: asyncio.TimerHandle | None = None

    @property
    def busy(self) -> bool:
        return self._change is not None

    def become(self, on: bool, delay_s: float) -> None:
        """Turn to ``on`` after ``delay_s`` (at once when 0), replacing a pending change."""
        if self._change is not None:
            self._change.cancel()
            self._change = None
        if delay_s <= 0:
            self.on = on
            return

        def settle() -> None:
            self.on = on
            self._change = None

        self._change = asyncio.get_running_loop().call_later(delay_s, settle)

    def cancel(self) -> None:
        if self._change is not None:
            self._change.cancel()
            self._change = None


def _press(led: _Led, action: PowerAction | PowerButton, delay_s: float) -> None:
    """What a machine does for a power action or a button: graceful requests and buttons take
    ``delay_s`` (booting, shutting down), a hard off takes a moment too."""
    if action in ("on",) and not led.on:
        led.become(True, delay_s)
    elif action in ("off", "shutdown", "off_hard", "power_long") and led.on:
        led.become(False, delay_s)
    elif action == "power":
        led.become(not led.on, delay_s)
    # reset_hard, reset and restart leave the power LED as it is: the machine restarts on.


class FakePower(_Recorder):
    """A machine behind ATX wiring: see the module docstring."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.power_led = _Led(self._kvm.power_on)
        self.power_stuck = False
        """Set to play a machine that ignores its buttons (the LED never changes)."""
        self.power_delay_s = self._kvm.power_delay_s
        self.resets = 0
        """How many times the reset line was pulled (or the OS restarted)."""

    def _power(self, action: PowerAction | PowerButton) -> None:
        self._record(f"power_{action}")
        if action in ("reset_hard", "reset", "restart") and self.power_led.on:
            self.resets += 1
        if not self.power_stuck:
            _press(self.power_led, action, self.power_delay_s)

    async def power_state(self) -> PowerState:
        return PowerState(on=self.power_led.on, hdd=self.power_led.on and self.power_led.busy,
                          busy=self.power_led.busy, actions=list(_ACTIONS),
                          buttons=list(_BUTTONS))  # fmt: skip

    async def power_on(self) -> None:
        self._power("on")

    async def power_off(self) -> None:
        self._power("off")

    async def power_off_hard(self) -> None:
        self._power("off_hard")

    async def power_reset_hard(self) -> None:
        self._power("reset_hard")

    async def power_click(self, button: PowerButton) -> None:
        self._power(button)

    async def power_restart(self) -> None:
        if not self.power_led.on:
            raise DeviceError("the machine is off: its operating system cannot restart; power "
                              "it on first")  # fmt: skip
        self._power("restart")

    async def power_shutdown(self) -> None:
        if not self.power_led.on:
            raise DeviceError("the machine is off already")
        self._power("shutdown")


@dataclass
class StoredImage:
    """One image of the fake store: its size, its SHA-256, and its file when it has one."""

    name: str
    size: int
    sha256: str
    complete: bool = True
    path: Path | None = None


class FakeMedia(_Recorder):
    """A virtual-media store and drive: see the module docstring."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.images: dict[str, StoredImage] = {}
        self.drive = MediaDrive()
        self.media_peak_chunk = 0
        """The largest chunk an upload handed over (a check that nothing came whole)."""
        if self._kvm.media_dir is not None:
            self._kvm.media_dir.mkdir(parents=True, exist_ok=True)
            for path in sorted(self._kvm.media_dir.iterdir()):
                if path.is_file() and not path.name.startswith("."):
                    # Hashing every stored file at start would read gigabytes: an image found
                    # on disk is known by its name and size.
                    self.images[path.name] = StoredImage(path.name, path.stat().st_size, "",
                                                         path=path)  # fmt: skip

    def _used(self) -> int:
        return sum(image.size for image in self.images.values())

    async def media_state(self) -> MediaState:
        size = self._kvm.media_size
        return MediaState(
            online=True,
            busy=any(not image.complete for image in self.images.values()),
            drive=self.drive.model_copy(),
            images=[MediaImage(name=i.name, size=i.size, complete=i.complete)
                    for i in sorted(self.images.values(), key=lambda i: i.name)],
            storage_size=size,
            storage_free=max(0, size - self._used()),
        )  # fmt: skip

    def _check_new(self, name: str, size: int | None) -> None:
        try:
            check_image_name(name)
        except ValueError as err:
            raise ValidationError(str(err)) from None
        found = self.images.get(name)
        if found is not None:
            if not found.complete:
                raise BusyError(f"the image {name} is being written right now; wait for it")
            raise ValidationError(f"an image called {name} is stored already: remove it first "
                                  "or choose another name")  # fmt: skip
        free = self._kvm.media_size - self._used()
        if size is not None and size > free:
            raise ValidationError(f"the image {name} ({size} bytes) does not fit: {free} bytes "
                                  "of storage are free; remove images first")  # fmt: skip

    async def _store(self, name: str, chunks: AsyncIterator[bytes], size: int | None) -> MediaImage:
        """Stream ``chunks`` into the image ``name``: registered as incomplete while it is
        written, complete at the end, gone when anything fails or the caller is cancelled."""
        self._check_new(name, size)
        folder = self._kvm.media_dir
        final = folder / name if folder is not None else None
        partial = folder / f".{name}.part" if folder is not None else None
        image = self.images[name] = StoredImage(name, 0, "", complete=False, path=final)
        digest = hashlib.sha256()
        fd: int | None = None
        try:
            if partial is not None:
                fd = await asyncio.to_thread(
                    os.open, partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644
                )
            async for data in chunks:
                if size is not None and image.size + len(data) > size:
                    raise ValidationError(f"the image {name} got more than the {size} bytes "
                                          "announced")  # fmt: skip
                self.media_peak_chunk = max(self.media_peak_chunk, len(data))
                # Hashing and writing run off the event loop (both release the GIL).
                if fd is not None:
                    await asyncio.to_thread(_write_all, fd, data, digest)
                else:
                    await asyncio.to_thread(digest.update, data)
                image.size += len(data)
            if size is not None and image.size != size:
                raise ValidationError(f"the image {name} ended after {image.size} of the {size} "
                                      "bytes announced")  # fmt: skip
            if fd is not None:
                await asyncio.to_thread(os.fsync, fd)
                os.close(fd)
                fd = None
                assert partial is not None and final is not None
                await asyncio.to_thread(os.replace, partial, final)
        except BaseException:
            self.images.pop(name, None)
            if fd is not None:
                os.close(fd)
            if partial is not None:
                with contextlib.suppress(OSError):
                    partial.unlink()
            raise
        image.sha256 = digest.hexdigest()
        image.complete = True
        self._record("media_upload", image=name, size=image.size)
        return MediaImage(name=name, size=image.size, complete=True)

    async def media_upload(self, name: str, chunks: AsyncIterator[bytes], size: int) -> MediaImage:
        return await self._store(name, chunks, size)

    async def media_fetch(self, url: str, name: str | None = None) -> MediaImage:
        if name is None:
            name = unquote(urlsplit(url).path.rstrip("/").rpartition("/")[2])
            if not name:
                raise ValidationError(f"{url} names no file: give the image a name")
        self._check_new(name, None)
        started = time.monotonic()
        try:
            async with (
                httpx.AsyncClient(timeout=30.0, follow_redirects=True) as http,
                http.stream("GET", url) as response,
            ):
                if response.status_code != 200:
                    raise DeviceError(f"fetching {url} failed: HTTP {response.status_code}")
                length = response.headers.get("content-length")
                size = int(length) if length and length.isdigit() else None
                return await self._store(name, response.aiter_bytes(_FETCH_CHUNK), size)
        except httpx.TimeoutException as err:
            raise DeviceTimeoutError(
                f"fetching {url} stalled after {time.monotonic() - started:.0f} s"
            ) from err
        except httpx.HTTPError as err:
            raise DeviceError(f"fetching {url} failed: {err}") from err

    async def media_mount(self, name: str, cdrom: bool = True, rw: bool = False) -> MediaDrive:
        image = self.images.get(name)
        if image is None:
            raise NotFoundError(f"no image {name}: list the images with media.state")
        if not image.complete:
            raise BusyError(f"the image {name} is still being written")
        if cdrom and rw:
            raise UnsupportedError("a CD-ROM is read-only: mount it as a flash drive to write")
        if self.drive.connected and self.drive.image != name:
            raise BusyError(f"the drive holds {self.drive.image}: eject it first")
        self._record("media_mount", image=name, cdrom=cdrom, rw=rw)
        self.drive = MediaDrive(image=name, connected=True, cdrom=cdrom, rw=rw)
        return self.drive.model_copy()

    async def media_eject(self) -> MediaDrive:
        self._record("media_eject")
        self.drive = MediaDrive(cdrom=self.drive.cdrom)
        return self.drive.model_copy()

    async def media_remove(self, name: str) -> None:
        image = self.images.get(name)
        if image is None:
            raise NotFoundError(f"no image {name}: list the images with media.state")
        if not image.complete:
            raise BusyError(f"the image {name} is being written right now")
        if self.drive.image == name:
            raise BusyError(f"the image {name} is in the drive: eject it first")
        self._record("media_remove", image=name)
        del self.images[name]
        if image.path is not None:
            await asyncio.to_thread(image.path.unlink, True)


def _write_all(fd: int, data: bytes, digest: Any) -> None:
    digest.update(data)
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        view = view[written:]


class FakeSwitch(_Recorder):
    """A KVM switch: see the module docstring."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        count = self._kvm.switch_ports
        self.switch_active: int | None = 0 if count else None
        self.switch_beacons = [False] * count
        self.switch_leds = [_Led(True) for _ in range(count)]

    def _port(self, port: int) -> int:
        count = len(self.switch_leds)
        if not 0 <= port < count:
            raise NotFoundError(
                f"no port {port}: the switch has ports 0-{count - 1}"
                if count
                else "this fake device has no switch ports"
            )
        return port  # fmt: skip

    async def switch_ports(self) -> SwitchState:
        return SwitchState(active=self.switch_active, ports=[
            SwitchPort(port=i, name=f"port {i}", video=self.switch_leds[i].on,
                       beacon=self.switch_beacons[i], power=self.switch_leds[i].on)
            for i in range(len(self.switch_leds))
        ])  # fmt: skip

    async def switch_set(self, port: int) -> None:
        self.switch_active = self._port(port)
        self._record("switch_set", port=port)

    async def switch_beacon(self, port: int, on: bool) -> None:
        self.switch_beacons[self._port(port)] = on
        self._record("switch_beacon", port=port, on=on)

    async def switch_power(self, port: int, action: PowerAction) -> None:
        led = self.switch_leds[self._port(port)]
        if action in ("restart", "shutdown"):
            raise UnsupportedError(f"{action} is asked of an operating system, not of a switch "
                                   "port: use on, off, off_hard or reset_hard")  # fmt: skip
        self._record("switch_power", port=port, action=action)
        _press(led, action, cast(FakeKvmSettings, self.settings).power_delay_s)

    async def switch_click(self, port: int, button: PowerButton) -> None:
        led = self.switch_leds[self._port(port)]
        self._record("switch_click", port=port, button=button)
        _press(led, button, cast(FakeKvmSettings, self.settings).power_delay_s)
