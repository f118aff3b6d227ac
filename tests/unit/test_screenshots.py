"""remotehands.agent.screenshots: variants of a real frame, uploads to a real loopback server."""

from __future__ import annotations

import asyncio
import email.parser
import email.policy
import io
import socket
import threading
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import numpy as np
import pydantic
import pytest
from PIL import Image

from remotehands.agent.screenshots import (
    ScreenshotsRequest,
    Upload,
    Variant,
    capture_variants,
    parse_upload_headers,
    upload,
    uploaded_url,
)
from remotehands.errors import NotFoundError, ValidationError
from remotehands.protocol.models import Bounds

# -- a loopback upload server ----------------------------------------------------------------


@dataclass
class Received:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes


@dataclass
class UploadServer:
    """Records every request; answers ``status`` with ``headers`` and ``body``."""

    url: str = ""
    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""
    release: threading.Event = field(default_factory=threading.Event)
    hold: bool = False  # wait for ``release`` before answering
    received: list[Received] = field(default_factory=list)


def make_handler(state: UploadServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def handle_any(self) -> None:
            length = int(self.headers.get("Content-Length", "0"))
            body = self.rfile.read(length)
            state.received.append(
                Received(
                    self.command,
                    self.path,
                    {k.lower(): v for k, v in self.headers.items()},
                    body,
                )
            )
            if state.hold:
                state.release.wait(5)
            self.send_response(state.status)
            for name, value in state.headers.items():
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(state.body)))
            self.end_headers()
            self.wfile.write(state.body)

        do_POST = do_PUT = do_PATCH = handle_any

        def log_message(self, format: str, *args: Any) -> None:
            pass

    return Handler


@pytest.fixture
def server() -> Iterator[UploadServer]:
    state = UploadServer()
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), make_handler(state))
    httpd.daemon_threads = True
    state.url = f"http://127.0.0.1:{httpd.server_address[1]}"
    thread = threading.Thread(target=httpd.serve_forever, args=(0.02,), daemon=True)
    thread.start()
    yield state
    state.release.set()
    httpd.shutdown()
    httpd.server_close()
    thread.join(5)


@pytest.fixture
async def http() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(trust_env=False) as client:
        yield client


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# -- frames ----------------------------------------------------------------------------------


def screen(width: int = 1920, height: int = 1080) -> np.ndarray:
    """A grey screen with a red box at (400, 200) 800x600 and a blue band at the bottom."""
    frame = np.empty((height, width, 4), np.uint8)
    frame[...] = (90, 90, 90, 255)
    frame[200:800, 400:1200] = (0, 0, 255, 255)
    frame[height - 40 :, :] = (255, 0, 0, 255)
    return frame


def rgb(data: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(data)).convert("RGB")).astype(int)


def near(pixel: np.ndarray, colour: tuple[int, int, int], tolerance: int = 12) -> bool:
    return bool(np.all(np.abs(pixel - np.array(colour)) <= tolerance))


def request(*variants: dict[str, Any]) -> ScreenshotsRequest:
    return ScreenshotsRequest.model_validate({"variants": list(variants)})


# -- models ----------------------------------------------------------------------------------


def test_variant_defaults_follow_the_reference() -> None:
    variant = Variant(name="overview")
    assert (variant.format, variant.jpeg_quality, variant.scale_x, variant.scale_y) == (
        "png",
        75,
        1.0,
        1.0,
    )
    assert variant.crop is None and variant.window_id is None and variant.upload is None
    upload = Upload(url="https://store.example.com/upload")
    assert (upload.method, upload.format, upload.name, upload.include_inline) == (
        "POST",
        "raw",
        "screenshot",
        True,
    )
    assert upload.timeout_ms == 10_000 and upload.headers == {}


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"variants": []}, "at least 1"),
        ({"variants": [{"name": f"v{i}"} for i in range(17)]}, "at most 16"),
        ({"variants": [{"name": "a"}, {"name": "a"}]}, "names must differ"),
        (
            {
                "variants": [
                    {"name": "a", "window_id": 5, "crop": {"x": 0, "y": 0, "width": 1, "height": 1}}
                ]
            },
            "not both",
        ),
        ({"variants": [{"name": "a", "format": "gif"}]}, "format"),
        ({"variants": [{"name": "a", "jpeg_quality": 0}]}, "jpeg_quality"),
        ({"variants": [{"name": "a", "scale_x": 0}]}, "scale_x"),
        ({"variants": [{"name": "a", "window_id": "0xZZ"}]}, "not a number"),
        ({"variants": [{"name": "a", "upload": {"url": "ftp://x/y"}}]}, "http"),
        ({"variants": [{"name": "a", "upload": {"url": "/relative"}}]}, "http"),
        ({"variants": [{"name": "a", "upload": {"url": "http://x", "method": "GET"}}]}, "method"),
        (
            {
                "variants": [
                    {"name": "a", "upload": {"url": "http://x", "headers": {"A": "b\r\nc"}}}
                ]
            },
            "line break",
        ),
        ({"variants": [{"name": "a", "colour": "red"}]}, "colour"),
    ],
)
def test_request_validation(body: dict[str, Any], message: str) -> None:
    with pytest.raises(pydantic.ValidationError, match=message):
        ScreenshotsRequest.model_validate(body)


def test_window_id_accepts_hex_and_method_any_case() -> None:
    variant = Variant.model_validate(
        {"name": "w", "window_id": "0x4400003", "upload": {"url": "http://h/", "method": "put"}}
    )
    assert variant.window_id == 0x4400003
    assert variant.upload is not None and variant.upload.method == "PUT"


def test_parse_upload_headers() -> None:
    assert parse_upload_headers(["Authorization: Bearer a:b", "X-Tag:one", "x-tag: two"]) == {
        "Authorization": "Bearer a:b",
        "X-Tag": "one, two",
    }
    assert parse_upload_headers([]) == {}
    for bad in ("no colon", ": value", "Bad Name: v", "X: a\nb"):
        with pytest.raises(ValidationError):
            parse_upload_headers([bad])


# -- capture_variants ------------------------------------------------------------------------


@pytest.mark.anyio
async def test_the_reference_example(server: UploadServer, http: httpx.AsyncClient) -> None:
    server.headers = {"Location": "https://store.example.com/files/abc123.jpg"}
    body = request(
        {"name": "overview"},
        {
            "name": "calc_zoom",
            "crop": {"x": 400, "y": 200, "width": 800, "height": 600},
            "scale_x": 2.0,
            "scale_y": 2.0,
            "format": "jpeg",
            "jpeg_quality": 70,
            "upload": {
                "url": f"{server.url}/upload",
                "headers": {"Authorization": "Bearer t0ken"},
                "include_inline": False,
            },
        },
    )
    answer = await capture_variants(screen(), body, http=http)

    assert answer["native_width"] == 1920 and answer["native_height"] == 1080
    overview, zoom = answer["images"]
    assert list(overview) == [
        "name", "image", "format", "width", "height", "scale_x", "scale_y", "crop",
        "window_id", "url", "ok",
    ]  # fmt: skip
    assert overview["image"].startswith(b"\x89PNG")
    assert {k: v for k, v in overview.items() if k != "image"} == {
        "name": "overview",
        "format": "png",
        "width": 1920,
        "height": 1080,
        "scale_x": 1.0,
        "scale_y": 1.0,
        "crop": None,
        "window_id": None,
        "url": None,
        "ok": True,
    }
    pixels = rgb(overview["image"])
    assert pixels.shape == (1080, 1920, 3)
    assert tuple(pixels[500, 800]) == (255, 0, 0) and tuple(pixels[1070, 10]) == (0, 0, 255)

    assert zoom["image"] is None
    assert zoom["ok"] is True and "error" not in zoom
    assert (zoom["format"], zoom["width"], zoom["height"]) == ("jpeg", 1600, 1200)
    assert zoom["crop"] == {"x": 400, "y": 200, "width": 800, "height": 600}
    assert zoom["url"] == "https://store.example.com/files/abc123.jpg"
    assert zoom["upload"]["ok"] is True and zoom["upload"]["status"] == 200
    response = zoom["upload"]["response"]
    assert response["status"] == 200 and response["body"] == ""
    assert response["headers"]["location"] == "https://store.example.com/files/abc123.jpg"

    (sent,) = server.received
    assert (sent.method, sent.path) == ("POST", "/upload")
    assert sent.headers["content-type"] == "image/jpeg"
    assert sent.headers["authorization"] == "Bearer t0ken"
    uploaded = rgb(sent.body)
    assert uploaded.shape == (1200, 1600, 3)
    assert near(uploaded[600, 800], (255, 0, 0))


@pytest.mark.anyio
async def test_a_bad_crop_fails_only_its_variant(http: httpx.AsyncClient) -> None:
    body = request(
        {"name": "bad", "crop": {"x": 600, "y": 400, "width": 100, "height": 100}},
        {"name": "good", "format": "jpeg", "scale_x": 0.5, "scale_y": 0.5},
    )
    answer = await capture_variants(screen(640, 480), body, http=http)
    bad, good = answer["images"]
    assert bad["ok"] is False and bad["image"] is None and bad["width"] is None
    assert "640x480 frame" in bad["error"]
    assert bad["crop"] == {"x": 600, "y": 400, "width": 100, "height": 100}
    assert good["ok"] is True and (good["width"], good["height"]) == (320, 240)
    assert rgb(good["image"]).shape == (240, 320, 3)


@pytest.mark.anyio
async def test_webp_and_quarter_scale(http: httpx.AsyncClient) -> None:
    body = request({"name": "w", "format": "webp", "scale_x": 0.25, "scale_y": 0.25})
    (image,) = (await capture_variants(screen(), body, http=http))["images"]
    assert image["image"][8:12] == b"WEBP"
    pixels = rgb(image["image"])
    assert pixels.shape == (270, 480, 3)
    assert near(pixels[125, 200], (255, 0, 0))


@pytest.mark.anyio
async def test_a_refused_upload_fails_only_its_variant(
    server: UploadServer, http: httpx.AsyncClient
) -> None:
    server.status, server.body = 403, b'{"error":"forbidden"}'
    server.headers = {"Content-Type": "application/json"}
    body = request(
        {"name": "up", "format": "jpeg", "upload": {"url": server.url}},
        {"name": "plain", "format": "jpeg"},
    )
    up, plain = (await capture_variants(screen(320, 200), body, http=http))["images"]
    assert up["ok"] is False and "HTTP 403" in up["error"]
    assert up["image"] is not None  # include_inline defaults to true
    assert up["upload"]["ok"] is False and up["upload"]["status"] == 403
    assert up["upload"]["response"]["body"] == '{"error":"forbidden"}'
    assert up["url"] is None
    assert plain["ok"] is True


@pytest.mark.anyio
async def test_an_unreachable_upload(http: httpx.AsyncClient) -> None:
    url = f"http://127.0.0.1:{closed_port()}/x"
    body = request({"name": "up", "format": "jpeg", "upload": {"url": url}})
    (up,) = (await capture_variants(screen(64, 64), body, http=http))["images"]
    assert up["ok"] is False and "failed" in up["error"] and url in up["error"]
    assert up["upload"] == {"ok": False, "status": None, "response": None, "error": up["error"]}


@pytest.mark.anyio
async def test_a_slow_upload_times_out(server: UploadServer, http: httpx.AsyncClient) -> None:
    server.hold = True
    body = request(
        {"name": "up", "format": "jpeg", "upload": {"url": server.url, "timeout_ms": 200}}
    )
    (up,) = (await capture_variants(screen(64, 64), body, http=http))["images"]
    assert up["ok"] is False and "timed out after 0.2 s" in up["error"]


@pytest.mark.anyio
async def test_multipart_upload_with_put(server: UploadServer, http: httpx.AsyncClient) -> None:
    server.status, server.headers = 201, {"Location": "/files/1.png"}
    body = request(
        {
            "name": "form",
            "crop": {"x": 400, "y": 200, "width": 100, "height": 50},
            "upload": {
                "url": f"{server.url}/store/",
                "method": "PUT",
                "format": "multipart",
                "name": "shot",
                "headers": {"Content-Type": "text/plain", "X-Device": "d1"},
            },
        }
    )
    (image,) = (await capture_variants(screen(), body, http=http))["images"]
    assert image["ok"] is True
    assert image["url"] == f"{server.url}/files/1.png"  # made absolute
    (sent,) = server.received
    assert sent.method == "PUT" and sent.headers["x-device"] == "d1"
    assert sent.headers["content-type"].startswith("multipart/form-data; boundary=")
    message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(
        f"Content-Type: {sent.headers['content-type']}\r\n\r\n".encode() + sent.body
    )
    (part,) = message.iter_parts()
    assert part.get_param("name", header="content-disposition") == "shot"
    assert part.get_filename() == "shot.png"
    assert part.get_content_type() == "image/png"
    data = part.get_payload(decode=True)
    assert isinstance(data, bytes)
    assert data == image["image"]
    assert rgb(data).shape == (50, 100, 3)


@pytest.mark.anyio
async def test_window_variants(http: httpx.AsyncClient) -> None:
    windows = {
        7: Bounds(x=400, y=200, width=800, height=600),
        8: Bounds(x=-100, y=1000, width=400, height=300),  # partly off screen
        9: Bounds(x=5000, y=5000, width=10, height=10),
    }

    async def window_bounds(window_id: int) -> Bounds:
        if window_id not in windows:
            raise NotFoundError(f"no window {window_id}")
        return windows[window_id]

    body = request(
        {"name": "w7", "window_id": 7, "format": "jpeg"},
        {"name": "w8", "window_id": 8, "format": "png"},
        {"name": "w9", "window_id": 9},
        {"name": "w10", "window_id": "0xa"},
    )
    images = (await capture_variants(screen(), body, window_bounds=window_bounds, http=http))[
        "images"
    ]
    w7, w8, w9, w10 = images
    assert w7["ok"] and (w7["width"], w7["height"]) == (800, 600) and w7["window_id"] == 7
    assert w7["crop"] == {"x": 400, "y": 200, "width": 800, "height": 600}
    assert near(rgb(w7["image"])[300, 400], (255, 0, 0))
    assert w8["ok"] and w8["crop"] == {"x": 0, "y": 1000, "width": 300, "height": 80}
    assert tuple(rgb(w8["image"])[70, 10]) == (0, 0, 255)
    assert not w9["ok"] and "outside the 1920x1080 screen" in w9["error"]
    assert not w10["ok"] and w10["error"] == "no window 10" and w10["window_id"] == 10


@pytest.mark.anyio
async def test_window_variants_without_windows(http: httpx.AsyncClient) -> None:
    (image,) = (await capture_variants(screen(64, 64), request({"name": "w", "window_id": 1}),
                                       http=http))["images"]  # fmt: skip
    assert image["ok"] is False and "list its windows" in image["error"]


# -- upload --------------------------------------------------------------------------------


@pytest.mark.anyio
async def test_upload_raw_keeps_a_given_content_type(
    server: UploadServer, http: httpx.AsyncClient
) -> None:
    answer = (
        await upload(
            http,
            b"\xff\xd8 not really",
            url=f"{server.url}/a?b=c",
            image_format="jpeg",
            method="patch",
            headers={"content-type": "application/octet-stream"},
        )
    ).model_dump()
    assert answer["ok"] is True and "error" not in answer
    (sent,) = server.received
    assert (sent.method, sent.path, sent.body) == ("PATCH", "/a?b=c", b"\xff\xd8 not really")
    assert sent.headers["content-type"] == "application/octet-stream"
    assert uploaded_url(server.url, answer) is None


@pytest.mark.anyio
async def test_upload_caps_the_answer_body(server: UploadServer, http: httpx.AsyncClient) -> None:
    server.body = b"x" * 200_000
    answer = (await upload(http, b"img", url=server.url, image_format="png")).model_dump()
    assert len(answer["response"]["body"]) == 64 * 1024


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"url": "file:///etc/passwd"}, "http"),
        ({"url": "http://h/", "method": "DELETE"}, "method"),
        ({"url": "http://h/", "upload_format": "form"}, "format"),
        ({"url": "http://h/", "headers": {"Bad Name": "x"}}, "header name"),
        ({"url": "http://[::1/"}, "bad upload URL"),
    ],
)
async def test_upload_refuses_bad_requests(
    http: httpx.AsyncClient, kwargs: dict[str, Any], message: str
) -> None:
    with pytest.raises(ValidationError, match=message):
        await upload(http, b"img", image_format="png", **kwargs)


@pytest.mark.anyio
async def test_a_window_lookup_that_hangs(http: httpx.AsyncClient) -> None:
    async def never(window_id: int) -> Bounds:
        await asyncio.Event().wait()
        raise AssertionError

    body = request({"name": "w", "window_id": 3}, {"name": "full", "format": "jpeg"})
    hung, full = (
        await capture_variants(
            screen(64, 64), body, window_bounds=never, http=http, window_timeout_s=0.05
        )
    )["images"]
    assert hung["ok"] is False and "window 3 took over 0.05 s" in hung["error"]
    assert full["ok"] is True


def test_headers_http_cannot_carry() -> None:
    with pytest.raises(ValidationError, match="cannot carry"):
        parse_upload_headers(["X-Name: caf\u00e9 \u2615"])


def test_uploaded_url_keeps_an_unjoinable_location() -> None:
    answer = {"response": {"headers": {"location": "http://[::1/x"}}}
    assert uploaded_url("http://h/", answer) == "http://[::1/x"
