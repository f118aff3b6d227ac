"""Recent authentications are cached briefly; every change to users, sessions or tokens made
through the API takes effect at once, and changes made elsewhere within the cache's lifetime."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import update

from remotehands.server.auth import Principal, PrincipalCache
from remotehands.server.db.models import User
from tests.server.conftest import Fleet

pytestmark = pytest.mark.anyio

NOW = datetime(2026, 11, 22, 12, 0, tzinfo=UTC)


class Ticks:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_entries_live_ttl_and_never_outlive_their_credential() -> None:
    ticks = Ticks()
    cache = PrincipalCache(ttl_s=2.0, size=3, clock=ticks)
    alice = Principal("user", "usr_1", "alice", "operator")
    cache.put("a", alice, NOW + timedelta(seconds=30))
    assert cache.get("a", NOW) is alice
    assert cache.get("a", NOW + timedelta(seconds=30)) is None  # the session itself expired
    cache.put("a", alice, None)
    ticks.now += 2.0
    assert cache.get("a", NOW) is None  # stale: the database is asked again
    for key in "bcde":
        cache.put(key, alice, None)
    assert cache.get("b", NOW) is None and cache.get("e", NOW) is alice  # bounded
    cache.clear()
    assert cache.get("e", NOW) is None


async def test_changes_through_the_api_count_at_once(server: Fleet) -> None:
    user_id, headers = await server.user("operator", username="cached-op")
    assert (await server.client.get("/v1/auth/me", headers=headers)).status_code == 200
    disabled = await server.client.patch(f"/v1/users/{user_id}", json={"disabled": True},
                                         headers=server.owner)  # fmt: skip
    assert disabled.status_code == 200
    assert (await server.client.get("/v1/auth/me", headers=headers)).status_code == 401


async def test_changes_made_elsewhere_count_within_the_cache_lifetime(server: Fleet) -> None:
    assert server.services.principals.ttl_s == 2.0
    user_id, headers = await server.user("viewer", username="other-replica")
    assert (await server.client.get("/v1/auth/me", headers=headers)).status_code == 200
    async with server.services.db.session() as db:  # as another replica would
        await db.execute(update(User).where(User.id == user_id).values(disabled=True))
        await db.commit()
    assert (await server.client.get("/v1/auth/me", headers=headers)).status_code == 200
    server.monotonic.advance(2.0)
    assert (await server.client.get("/v1/auth/me", headers=headers)).status_code == 401
