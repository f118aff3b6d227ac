"""Several variants of one frame (``POST /screenshots``) and screenshot uploads.

A variant crops (a rectangle or a window), scales and encodes the frame, and may upload the
result to a URL, raw or as a multipart form. Each variant succeeds or fails on its own: a crop
outside the screen or an upload refused gives that variant ``ok: false`` and an ``error``; the
others are still answered. Encoding runs in threads, at most one a core; uploads run together,
each with a timeout.

:func:`upload` and :func:`parse_upload_headers` serve ``GET /screenshot``'s ``upload_*``
parameters too.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Awaitable, Callable, Iterable, Mapping
from typing import Any, Final

import httpx

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
from remotehands.protocol.params import (
    MAX_VARIANTS,
    UPLOAD_TIMEOUT_S,
    ScreenshotsRequest,
    Upload,
    UploadFormat,
    UploadMethod,
    Variant,
    check_header,
    check_url,
)
from remotehands.protocol.results import (
    ScreenshotsResult,
    UploadAnswer,
    UploadResult,
    VariantImage,
)

__all__ = [
    "MAX_VARIANTS",
    "ScreenshotsRequest",
    "Upload",
    "UploadFormat",
    "UploadMethod",
    "Variant",
    "WindowBounds",
    "capture_variants",
    "make_variants",
    "parse_upload_headers",
    "upload",
    "uploaded_url",
]

WindowBounds = Callable[[int], Awaitable[Bounds]]
"""Looks a window up by id and answers its bounds on the screen."""

_BODY_LIMIT: Final = 64 << 10  # bytes of an upload's answer kept for the response
_EXTENSIONS: Final = {"jpeg": "jpg", "png": "png", "webp": "webp"}


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
        check_header(name, value)
        key = folded.setdefault(name.lower(), name)
        headers[key] = f"{headers[key]}, {value}" if key in headers else value
    return headers


async def upload(
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
) -> UploadResult:
    """Send ``data`` to ``url`` and answer the reference's ``upload`` object.

    ``raw`` sends the image as the body with its ``Content-Type`` (unless ``headers`` sets one);
    ``multipart`` sends a form with the file in field ``name``. The whole exchange has
    ``timeout_s``; redirects are not followed. The answer is ``{"ok", "status", "response":
    {"status", "headers", "body"}}`` (``response`` ``None`` when no answer came), plus ``error``
    when not ``ok`` (no answer, or a status outside 2xx); the answer's body is cut at 64 KiB.
    A bad URL, method or header raises :class:`~remotehands.errors.ValidationError`.
    """
    check_url(url)
    verb = method.upper()
    if verb not in ("POST", "PUT", "PATCH"):
        raise ValidationError(f"bad upload method {method!r}: use POST, PUT or PATCH")
    mime = MIME_TYPES[image_format]
    sent = dict(headers or {})
    for key, value in sent.items():
        check_header(key, value)
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
    return UploadResult(
        ok=ok,
        status=response.status_code,
        response=UploadAnswer(
            status=response.status_code,
            headers=dict(response.headers.items()),
            body=body.decode(response.encoding or "utf-8", errors="replace"),
        ),
        error=None if ok else f"the upload to {url} was refused: HTTP {response.status_code}",
    )


async def _read_capped(response: httpx.Response) -> bytes:
    body = bytearray()
    async for chunk in response.aiter_bytes():
        body += chunk[: _BODY_LIMIT - len(body)]
        if len(body) >= _BODY_LIMIT:
            break
    return bytes(body)


def _failed(error: str) -> UploadResult:
    return UploadResult(ok=False, status=None, response=None, error=error)


def uploaded_url(upload_url: str, answer: UploadResult | Mapping[str, Any]) -> str | None:
    """Where the upload's answer says the image now is: its ``Location`` header, made absolute
    against ``upload_url``; ``None`` without one."""
    if isinstance(answer, UploadResult):
        location = answer.response.headers.get("location") if answer.response else None
    else:
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
    """:func:`make_variants` in its wire form (a dict)."""
    result = await make_variants(
        frame, request, window_bounds=window_bounds, http=http, window_timeout_s=window_timeout_s
    )
    wire: dict[str, Any] = result.model_dump()
    return wire


async def make_variants(
    frame: FrameArray,
    request: ScreenshotsRequest,
    *,
    window_bounds: WindowBounds | None = None,
    http: httpx.AsyncClient,
    window_timeout_s: float = 10.0,
) -> ScreenshotsResult:
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

    async def make(variant: Variant) -> VariantImage:
        area = variant.crop
        image: bytes | None = None
        width = height = None
        url: str | None = None
        sent: UploadResult | None = None
        error: str | None = None
        try:
            area = await area_of(variant)
            async with encoders:
                image, width, height = await asyncio.to_thread(_render, frame, area, variant)
        except RemoteHandsError as err:
            error = err.details
        if image is not None and variant.upload is not None:
            spec = variant.upload
            sent = await upload(
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
            url = uploaded_url(spec.url, sent)
            error = sent.error
            if not spec.include_inline:
                image = None
        return VariantImage(
            name=variant.name,
            image=image,
            format=variant.format,
            width=width,
            height=height,
            scale_x=variant.scale_x,
            scale_y=variant.scale_y,
            crop=area,
            window_id=variant.window_id,
            url=url,
            ok=error is None,
            upload=sent,
            error=error,
        )

    async with asyncio.TaskGroup() as group:
        tasks = [group.create_task(make(variant)) for variant in request.variants]
    return ScreenshotsResult(
        native_width=native_w,
        native_height=native_h,
        images=[task.result() for task in tasks],
    )
