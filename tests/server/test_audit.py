"""The audit log: filters, order, limits, secrets removed, failures never reach the caller."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

from remotehands.server.audit import AuditLog, redact
from remotehands.server.db.engine import Database
from tests.server.conftest import Fleet

pytestmark = pytest.mark.anyio


async def _seed(server: Fleet) -> dict[str, Any]:
    audit = server.services.audit
    start = server.clock()
    await audit.record(actor="alice", actor_kind="user", action="mouse.click", device_id="dev_a")
    server.clock.advance(10)
    await audit.record(
        actor="alice/tok_1",
        actor_kind="token",
        action="keyboard.type",
        device_id="dev_b",
        result="device_offline",
        duration_ms=12.5,
        details="device dev_b is offline",
    )
    server.clock.advance(10)
    await audit.record(actor="bob", actor_kind="user", action="mouse.click", device_id="dev_b")
    server.clock.advance(10)
    await audit.record(actor="alicia", actor_kind="user", action="screenshot", device_id="dev_a")
    return {"start": start}


async def _actions(server: Fleet, **query: Any) -> list[str]:
    query.setdefault("action", None)
    params = {k: v for k, v in query.items() if v is not None}
    return [
        f"{e['actor']}:{e['action']}"
        for e in await server.audit(**params)
        if e["action"] != "auth.login"
    ]


async def test_entries_and_filters(server: Fleet) -> None:
    seeded = await _seed(server)
    assert await _actions(server) == [
        "alicia:screenshot",
        "bob:mouse.click",
        "alice/tok_1:keyboard.type",
        "alice:mouse.click",
    ]
    assert await _actions(server, device_id="dev_a") == ["alicia:screenshot", "alice:mouse.click"]
    # A user's filter includes the user's tokens, not users whose names start alike.
    assert await _actions(server, actor="alice") == [
        "alice/tok_1:keyboard.type",
        "alice:mouse.click",
    ]
    assert await _actions(server, actor="alice/tok_1") == ["alice/tok_1:keyboard.type"]
    assert await _actions(server, action="mouse.click") == ["bob:mouse.click", "alice:mouse.click"]
    assert await _actions(server, result="device_offline") == ["alice/tok_1:keyboard.type"]
    start = seeded["start"]
    since = (start + timedelta(seconds=10)).isoformat()
    until = (start + timedelta(seconds=30)).isoformat()
    assert await _actions(server, since=since, until=until) == [
        "bob:mouse.click",
        "alice/tok_1:keyboard.type",
    ]
    naive = (start + timedelta(seconds=30)).replace(tzinfo=None).isoformat()
    assert await _actions(server, since=naive) == ["alicia:screenshot"]
    assert len(await server.audit(limit=2)) == 2

    entry = next(e for e in await server.audit(result="device_offline"))
    assert set(entry) == {
        "id",
        "at",
        "actor",
        "actor_kind",
        "device_id",
        "action",
        "params",
        "result",
        "duration_ms",
        "details",
    }
    assert entry["actor_kind"] == "token"
    assert entry["duration_ms"] == 12.5
    assert entry["details"] == "device dev_b is offline"
    assert entry["at"].endswith("Z")


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"limit": 0}, "query.limit"),
        ({"limit": 1001}, "query.limit"),
        ({"since": "yesterday"}, "query.since"),
    ],
)
async def test_bad_filters(server: Fleet, params: dict[str, Any], field: str) -> None:
    response = await server.client.get("/v1/audit", headers=server.owner, params=params)
    assert response.status_code == 422
    assert field in response.json()["details"]


async def test_limit_defaults_to_100(server: Fleet) -> None:
    for i in range(105):
        await server.services.audit.record(actor="x", actor_kind="system", action=f"a{i}")
    entries = await server.audit(actor="x")
    assert len(entries) == 100
    assert entries[0]["action"] == "a104"
    assert len(await server.audit(actor="x", limit=1000)) == 105


async def test_secrets_never_stored(server: Fleet) -> None:
    await server.services.audit.record(
        actor="alice",
        actor_kind="user",
        action="anything",
        params={
            "password": "hunter22",
            "Current-Password": "hunter23",
            "token": "rht_secretsecret",
            "auth_token": "agt_secretsecret",
            "enrollment_token": "ekvent_secretsecret",
            "nested": {"secret": "s3cr3t", "client_secret": "s3", "keep": 1},
            "upload_header": ["Authorization: Bearer abcdef", "X-Other: fine"],
            "note": "used rhs_abcdefghijklmnop to log in",
            "x": 5,
        },
    )
    entry = (await server.audit(action="anything"))[0]
    assert entry["params"] == {
        "nested": {"keep": 1},
        "upload_header": ["Authorization: [redacted]", "X-Other: fine"],
        "note": "used rhs_[redacted] to log in",
        "x": 5,
    }


def test_redact_leaves_plain_values_alone() -> None:
    assert redact({"a": [1, "b", None, 2.5]}) == {"a": [1, "b", None, 2.5]}
    assert redact({"data": b"\x00" * 10}) == {"data": "<10 bytes>"}


async def test_record_never_raises(tmp_path: Any) -> None:
    database = Database(f"sqlite+aiosqlite:///{tmp_path / 'no-tables.db'}")  # never migrated
    try:
        await AuditLog(database).record(actor="a", actor_kind="user", action="x")
    finally:
        await database.close()


async def test_admin_changes_are_audited(server: Fleet) -> None:
    """users, tokens, devices patch/delete, enrollment create and register all leave entries."""
    user = await server.client.post(
        "/v1/users",
        headers=server.owner,
        json={"username": "u1", "password": "password-1234", "role": "viewer"},
    )
    await server.client.patch(
        f"/v1/users/{user.json()['id']}", headers=server.owner, json={"role": "operator"}
    )
    await server.client.delete(f"/v1/users/{user.json()['id']}", headers=server.owner)
    token = await server.token(server.owner)
    await server.client.delete(f"/v1/tokens/{token['id']}", headers=server.owner)
    device = (await server.register())["device_id"]
    await server.client.patch(f"/v1/devices/{device}", headers=server.owner, json={"name": "n"})
    await server.client.delete(f"/v1/devices/{device}", headers=server.owner)
    actions = {e["action"] for e in await server.audit()}
    assert actions >= {
        "user.create",
        "user.update",
        "user.delete",
        "token.create",
        "token.revoke",
        "enrollment.create",
        "device.register",
        "device.update",
        "device.delete",
    }


async def test_admin_entries_name_the_principal(server: Fleet) -> None:
    """An admin route's entry names who acted as the principal says: a session by its user, an
    API token by its user and token id."""
    token = await server.token(server.owner, name="automation")
    with_token = {"Authorization": f"Bearer {token['token']}"}
    created = await server.client.post(
        "/v1/users",
        headers=with_token,
        json={"username": "by-token", "password": "password-1234", "role": "viewer"},
    )
    assert created.status_code == 201, created.text
    (entry,) = await server.audit(action="user.create")
    assert entry["actor"] == f"owner/{token['id']}"
    assert entry["actor_kind"] == "token"
    assert entry["params"]["username"] == "by-token"
    (created_token,) = await server.audit(action="token.create")
    assert created_token["actor"] == "owner"
    assert created_token["actor_kind"] == "user"
