"""The demo's API token: reused across runs while it works, else replaced by one that expires
(the old ones revoked), never piling up tokens that never expire."""

from __future__ import annotations

import stat
from pathlib import Path

import httpx
import pytest

from remotehands.cli.demo_cmd import DEMO_TOKEN_NAME, DEMO_TOKEN_TTL_S, demo_token
from tests.server.conftest import Fleet

pytestmark = pytest.mark.anyio


async def test_a_rerun_reuses_the_token_and_a_dead_one_is_replaced(
    server: Fleet, tmp_path: Path
) -> None:
    transport = httpx.ASGITransport(app=server.app, client=("127.0.0.1", 1234))
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver",
                                 headers=server.owner) as http:  # fmt: skip
        first = await demo_token(http, tmp_path)
        assert await demo_token(http, tmp_path) == first
        kept = tmp_path / "demo-token"
        assert kept.read_text() == first and stat.S_IMODE(kept.stat().st_mode) == 0o600
        (listed,) = (await http.get("/v1/tokens")).json()["tokens"]
        assert listed["name"] == DEMO_TOKEN_NAME and listed["expires_at"] is not None
        # the kept token stops working (revoked here): the next run makes a new one
        await http.delete(f"/v1/tokens/{listed['id']}")
        second = await demo_token(http, tmp_path)
        assert second != first and kept.read_text() == second
        me = await http.get("/v1/auth/me", headers={"Authorization": f"Bearer {second}"})
        assert me.status_code == 200
        # a lost file: the new token replaces the old, which is revoked
        kept.unlink()
        third = await demo_token(http, tmp_path)
        tokens = (await http.get("/v1/tokens")).json()["tokens"]
        live = [t for t in tokens if t["revoked_at"] is None]
        assert len(live) == 1 and third != second
    server.clock.advance(DEMO_TOKEN_TTL_S + 1)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
        expired = await http.get("/v1/auth/me", headers={"Authorization": f"Bearer {third}"})
    assert expired.status_code == 401
