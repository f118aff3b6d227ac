"""Several variants of one frame (``POST /screenshots``) and screenshot uploads.

A variant crops (a rectangle or a window), scales and encodes the frame, and may upload the
result to a URL, raw or as a multipart form. Each variant succeeds or fails on its own: a crop
outside the screen or an upload refused gives that variant ``ok: false`` and an ``error``; the
others are still answered. Encoding runs in threads, at most one a core; uploads run together,
each with a timeout.

:func:`upload_image` and :func:`parse_upload_headers` serve ``GET /screenshot``'s ``upload_*``
parameters too.
"""

from __future__ import annotations

import asyncio
import os
import re
from collections.abc import Awaitable, Callable, Iterable, Mapping
from typing import Any, Final, Literal, Self

import httpx
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from remotehands.agent.imaging import (
    MIME_TYPES,
    ImageFormat,
    clip_bounds,
    crop,
    encode,
    scale,
)
from remotehands.drivers.base import FrameArray
from remotehands.errors import (
    DeviceTimeoutError,
    RemoteHandsError,
    UnsupportedError,
    ValidationError,
)
from remotehands.protocol.models import Bounds

__all__ = [
    "MAX_VARIANTS",
    "ScreenshotsRequest",
    "Upload",
    "UploadFormat",
    "UploadMethod",
    "Variant",
    "WindowBounds",
    "capture_variants",
    "parse_upload_headers",
    "upload_image",
    "uploaded_url",
]

UploadMethod = Literal["POST", "PUT", "PATCH"]
"""HTTP methods an upload may use."""

UploadFormat = Literal["raw", "multipart"]
"""``raw``: the image is the body; ``multipart``: a ``multipart/form-data`` file field."""

WindowBounds = Callable[[int], Awaitable[Bounds]]
"""Looks a window up by id and answers its bounds on the screen."""

MAX_VARIANTS: Final = 16
"""How many variants one request may ask for."""

UPLOAD_TIMEOUT_S: Final = 10.0
"""How long an upload may take, connection to last byte of the answer, unless told."""

_BODY_LIMIT: Final = 64 << 10  # bytes of an upload's answer kept for the response
_EXTENSIONS: Final = {"jpeg": "jpg", "png": "png", "webp": "webp"}
_TOKEN: Final = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")  # an RFC 9110 field name
_BAD_VALUE: Final = re.compile(r"[\x00\r\n]")


def _check_url(url: str) -> str:
    try:
        parsed = httpx.URL(url)
    except httpx.InvalidURL as err:
        raise ValidationError(f"bad upload URL {url!r}: {err}") from err
    if parsed.scheme not in ("http", "https") or not parsed.host:
        raise ValidationError(f"bad upload URL {url!r}: use an absolute http:// or https:// URL")
    return url


def _check_header(name: str, value: str) -> None:
    if not _TOKEN.fullmatch(name):
        raise ValidationError(f"bad upload header name {name!r}")
    if _BAD_VALUE.search(value):
        raise ValidationError(f"upload header {name} holds a line break or NUL")
    try:
        value.encode("latin-1")
    except UnicodeEncodeError as err:
        raise ValidationError(f"upload header {name} holds characters HTTP cannot carry") from err


def parse_upload_headers(lines: Iterable[str]) -> dict[str, str]:
    """``["Name: value", ...]`` (the repeatable ``upload_header`` parameter) as a dict.

    A name given twice gets its values joined with ``", "``. A line without ``:``, a bad name or
    a value with a line break raises :class:`~remotehands.errors.ValidationError`.
    """
    headers: dict[str, str] = {}
    folded: dict[str, str] = {}  # lower-case name -> the spelling first seen
    for line in lines:
        name, colon, value = line.partition(":")
        name, value = name.strip(), value.strip()
        if not colon or not name:
            raise ValidationError(f"bad upload header {line!r}: expected 'Name: value'")
        _check_header(name, value)
        key = folded.setdefault(name.lower(), name)
        headers[key] = f"{headers[key]}, {value}" if key in headers else value
    return headers


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Upload(_Model):
    """Where and how a variant's image is sent."""

    url: str
    """An absolute ``http://`` or ``https://`` URL."""
    method: UploadMethod = "POST"
    headers: dict[str, str] = Field(default_factory=dict)
    """Sent with the upload (``Authorization``, ...); ``Content-Type`` is ours for multipart."""
    include_inline: bool = True
    """Also answer the image in the response; ``false`` answers ``image: null``."""
    format: UploadFormat = "raw"
    name: str = Field(default="screenshot", min_length=1, max_length=100)
    """The multipart field's name (and file name, with the format's extension)."""
    timeout_ms: int = Field(default=int(UPLOAD_TIMEOUT_S * 1000), ge=1, le=300_000)

    @field_validator("method", mode="before")
    @classmethod
    def _upper(cls, value: object) -> object:
        return value.upper() if isinstance(value, str) else value

    @field_validator("url")
    @classmethod
    def _absolute_http(cls, value: str) -> str:
        try:
            return _check_url(value)
        except ValidationError as err:
            raise ValueError(err.details) from err

    @field_validator("headers")
    @classmethod
    def _sendable(cls, value: dict[str, str]) -> dict[str, str]:
        try:
            for name, text in value.items():
                _check_header(name, text)
        except ValidationError as err:
            raise ValueError(err.details) from err
        return value


class Variant(_Model):
    """One image made from the frame: crop (or window), scale, format, upload."""

    name: str = Field(min_length=1, max_length=100)
    crop: Bounds | None = None
    """A rectangle of the screen, in native pixels; it must lie inside the screen."""
    scale_x: float = Field(default=1.0, gt=0, le=8)
    scale_y: float = Field(default=1.0, gt=0, le=8)
    format: ImageFormat = "png"
    jpeg_quality: int = Field(default=75, ge=1, le=100)
    """Quality of JPEG and WebP variants."""
    window_id: int | None = None
    """Crop to this window's bounds (clipped to the screen); ``0x..`` strings are accepted."""
    upload: Upload | None = None

    @field_validator("window_id", mode="before")
    @classmethod
    def _hex_id(cls, value: object) -> object:
        if isinstance(value, str):
            try:
                return int(value, 0)
            except ValueError as err:
                raise ValueError(f"window_id {value!r} is not a number") from err
        return value

    @model_validator(mode="after")
    def _one_area(self) -> Self:
        if self.crop is not None and self.window_id is not None:
            raise ValueError("give crop or window_id, not both")
        return self


class ScreenshotsRequest(_Model):
    """The body of ``POST /screenshots``: 1 to 16 variants with distinct names."""

    variants: list[Variant] = Field(min_length=1, max_length=MAX_VARIANTS)

    @field_validator("variants")
    @classmethod
    def _distinct_names(cls, value: list[Variant]) -> list[Variant]:
        seen: set[str] = set()
        for variant in value:
            if variant.name in seen:
                raise ValueError(f"two variants are named {variant.name!r}: names must differ")
            seen.add(variant.name)
        return value


async def upload_image(
    http: httpx.AsyncClient,
    data: bytes,
    *,
    url: str,
    image_format: ImageFormat,
    method: str = "POST",
    upload_format: UploadFormat = "raw",
    headers: Mapping[str, str] | None = None,
    name: str = "screenshot",
    timeout_s: float = UPLOAD_TIMEOUT_S,
) -> dict[str, Any]:
    """Send ``data`` to ``url`` and answer the reference's ``upload`` object.

    ``raw`` sends the image as the body with its ``Content-Type`` (unless ``headers`` sets one);
    ``multipart`` sends a form with the file in field ``name``. The whole exchange has
    ``timeout_s``; redirects are not followed. The answer is ``{"ok", "status", "response":
    {"status", "headers", "body"}}`` (``response`` ``None`` when no answer came), plus ``error``
    when not ``ok`` (no answer, or a status outside 2xx); the answer's body is cut at 64 KiB.
    A bad URL, method or header raises :class:`~remotehands.errors.ValidationError`.
    """
    _check_url(url)
    verb = method.upper()
    if verb not in ("POST", "PUT", "PATCH"):
        raise ValidationError(f"bad upload method {method!r}: use POST, PUT or PATCH")
    mime = MIME_TYPES[image_format]
    sent = dict(headers or {})
    for key, value in sent.items():
        _check_header(key, value)
    request_args: dict[str, Any]
    if upload_format == "multipart":
        # httpx writes the Content-Type with the form's boundary; a caller's would break it
        sent = {k: v for k, v in sent.items() if k.lower() != "content-type"}
        filename = f"{name}.{_EXTENSIONS[image_format]}"
        request_args = {"files": {name: (filename, data, mime)}}
    elif upload_format == "raw":
        if not any(k.lower() == "content-type" for k in sent):
            sent["Content-Type"] = mime
        request_args = {"content": data}
    else:
        raise ValidationError(f"bad upload format {upload_format!r}: use raw or multipart")
    try:
        async with asyncio.timeout(timeout_s):
            request = http.build_request(
                verb, url, headers=sent, timeout=httpx.Timeout(timeout_s), **request_args
            )
            response = await http.send(request, stream=True)
            try:
                body = await _read_capped(response)
            finally:
                await response.aclose()
    except (TimeoutError, httpx.TimeoutException) as err:
        return _failed(f"the upload to {url} timed out after {timeout_s:g} s ({err!r})")
    except httpx.HTTPError as err:
        return _failed(f"the upload to {url} failed: {type(err).__name__}: {err}")
    ok = 200 <= response.status_code < 300
    answer: dict[str, Any] = {
        "ok": ok,
        "status": response.status_code,
        "response": {
            "status": response.status_code,
            "headers": dict(response.headers.items()),
            "body": body.decode(response.encoding or "utf-8", errors="replace"),
        },
    }
    if not ok:
        answer["error"] = f"the upload to {url} was refused: HTTP {response.status_code}"
    return answer


async def _read_capped(response: httpx.Response) -> bytes:
    body = bytearray()
    async for chunk in response.aiter_bytes():
        body += chunk[: _BODY_LIMIT - len(body)]
        if len(body) >= _BODY_LIMIT:
            break
    return bytes(body)


def _failed(error: str) -> dict[str, Any]:
    return {"ok": False, "status": None, "response": None, "error": error}


def uploaded_url(upload_url: str, answer: Mapping[str, Any]) -> str | None:
    """Where the upload's answer says the image now is: its ``Location`` header, made absolute
    against ``upload_url``; ``None`` without one."""
    response = answer.get("response")
    location = response["headers"].get("location") if response else None
    if not location:
        return None
    try:
        return str(httpx.URL(upload_url).join(location))
    except httpx.InvalidURL:
        return str(location)


def _render(frame: FrameArray, area: Bounds | None, variant: Variant) -> tuple[bytes, int, int]:
    view = frame if area is None else crop(frame, area)
    image = scale(view, variant.scale_x, variant.scale_y)
    data = encode(image, variant.format, variant.jpeg_quality)
    return data, int(image.shape[1]), int(image.shape[0])


async def capture_variants(
    frame: FrameArray,
    request: ScreenshotsRequest,
    *,
    window_bounds: WindowBounds | None = None,
    http: httpx.AsyncClient,
    window_timeout_s: float = 10.0,
) -> dict[str, Any]:
    """Make every variant of ``frame`` and answer the reference's ``POST /screenshots`` body:
    ``{"native_width", "native_height", "images": [...]}``, one image object a variant, in
    order. ``image`` values are raw ``bytes`` (the HTTP face base64-encodes them).

    ``frame`` must not change until this returns (pass a copy if ``grab`` reuses its buffer).
    ``window_bounds`` resolves ``window_id`` variants (given ``window_timeout_s`` to answer);
    without it they fail as unsupported.
    """
    native_h, native_w = int(frame.shape[0]), int(frame.shape[1])
    encoders = asyncio.Semaphore(os.cpu_count() or 1)

    async def area_of(variant: Variant) -> Bounds | None:
        if variant.window_id is None:
            return variant.crop
        if window_bounds is None:
            raise UnsupportedError("window_id needs a device that can list its windows")
        try:
            async with asyncio.timeout(window_timeout_s):
                bounds = await window_bounds(variant.window_id)
        except TimeoutError as err:
            raise DeviceTimeoutError(
                f"looking up window {variant.window_id} took over {window_timeout_s:g} s"
            ) from err
        clipped = clip_bounds(bounds, native_w, native_h)
        if clipped is None:
            raise ValidationError(
                f"window {variant.window_id} lies outside the {native_w}x{native_h} screen"
            )
        return clipped

    async def make(variant: Variant) -> dict[str, Any]:
        area = variant.crop
        image: bytes | None = None
        width = height = None
        url: str | None = None
        upload: dict[str, Any] | None = None
        error: str | None = None
        try:
            area = await area_of(variant)
            async with encoders:
                image, width, height = await asyncio.to_thread(_render, frame, area, variant)
        except RemoteHandsError as err:
            error = err.details
        if image is not None and variant.upload is not None:
            spec = variant.upload
            upload = await upload_image(
                http,
                image,
                url=spec.url,
                image_format=variant.format,
                method=spec.method,
                upload_format=spec.format,
                headers=spec.headers,
                name=spec.name,
                timeout_s=spec.timeout_ms / 1000,
            )
            url = uploaded_url(spec.url, upload)
            error = upload.get("error")
            if not spec.include_inline:
                image = None
        entry: dict[str, Any] = {
            "name": variant.name,
            "image": image,
            "format": variant.format,
            "width": width,
            "height": height,
            "scale_x": variant.scale_x,
            "scale_y": variant.scale_y,
            "crop": None if area is None else area.model_dump(),
            "window_id": variant.window_id,
            "url": url,
            "ok": error is None,
        }
        if upload is not None:
            entry["upload"] = upload
        if error is not None:
            entry["error"] = error
        return entry

    async with asyncio.TaskGroup() as group:
        tasks = [group.create_task(make(variant)) for variant in request.variants]
    return {
        "native_width": native_w,
        "native_height": native_h,
        "images": [task.result() for task in tasks],
    }
