"""Oversized request bodies are refused before they are read."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from remotehands.server.app import create_app
from tests.server.conftest import make_settings, serve

pytestmark = pytest.mark.anyio


async def _chunks() -> AsyncIterator[bytes]:
    for _ in range(4):
        yield b"x" * 1024


async def test_a_body_over_the_cap_is_refused_with_413(tmp_path: Path) -> None:
    settings = make_settings(tmp_path, f"sqlite:///{tmp_path / 'db.sqlite'}", max_body_bytes=2048)
    async with serve(create_app(settings)) as url, httpx.AsyncClient(base_url=url) as client:
        declared = await client.post("/v1/auth/login", content=b"x" * 4096,
                                     headers={"Content-Type": "application/json"})  # fmt: skip
        streamed = await client.post("/v1/auth/login", content=_chunks(),
                                     headers={"Content-Type": "application/json"})  # fmt: skip
        small = await client.post("/v1/auth/login", json={"username": "a", "password": "b"})
    for answer in (declared, streamed):
        assert answer.status_code == 413
        assert answer.json() == {
            "error": "invalid",
            "details": "the request body is over 2048 bytes; send less",
        }
    assert small.status_code == 401  # under the cap the route answers as usual
