"""API tokens: shown once, stored hashed, listed without secrets, revocable, limited."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from remotehands.server.db.models import ApiToken
from tests.server.conftest import Fleet

pytestmark = pytest.mark.anyio


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def test_create_use_list_revoke(server: Fleet) -> None:
    created = await server.token(server.owner, name="ci")
    assert set(created) == {
        "id",
        "token",
        "name",
        "role",
        "read_only",
        "tags",
        "created_at",
        "expires_at",
    }
    assert created["id"].startswith("tok_")
    assert created["token"].startswith("rht_")
    assert created["role"] == "owner"
    assert created["read_only"] is False
    assert created["tags"] is None

    me = (await server.client.get("/v1/auth/me", headers=bearer(created["token"]))).json()
    assert me["kind"] == "token"
    assert me["token_id"] == created["id"]
    assert me["username"] == "owner"

    listed = (await server.client.get("/v1/tokens", headers=server.owner)).json()["tokens"]
    assert len(listed) == 1
    row = listed[0]
    assert row["id"] == created["id"]
    assert row["prefix"] == created["token"][: len(row["prefix"])]
    assert len(row["prefix"]) < 16
    assert "token" not in row
    assert created["token"] not in str(listed)
    assert row["last_used_at"] is not None  # the /me call above
    assert row["username"] == "owner"

    async with server.services.db.session() as db:
        stored = await db.scalar(select(ApiToken.token_hash))
    assert stored is not None and created["token"] not in stored

    revoke = await server.client.delete(f"/v1/tokens/{created['id']}", headers=server.owner)
    assert revoke.status_code == 204
    refused = await server.client.get("/v1/auth/me", headers=bearer(created["token"]))
    assert refused.status_code == 401
    assert (await server.client.get("/v1/tokens", headers=server.owner)).json()["tokens"] == []
    with_revoked = await server.client.get(
        "/v1/tokens", headers=server.owner, params={"include_revoked": "true"}
    )
    assert with_revoked.json()["tokens"][0]["revoked_at"] is not None
    # Revoking again is harmless; an unknown token is 404.
    again = await server.client.delete(f"/v1/tokens/{created['id']}", headers=server.owner)
    assert again.status_code == 204
    unknown = await server.client.delete("/v1/tokens/tok_nope", headers=server.owner)
    assert unknown.status_code == 404
    actions = [e["action"] for e in await server.audit(actor="owner")]
    assert "token.create" in actions and "token.revoke" in actions


async def test_role_is_at_most_the_creators(server: Fleet) -> None:
    _, operator = await server.user("operator")
    too_high = await server.client.post(
        "/v1/tokens", headers=operator, json={"name": "x", "role": "admin"}
    )
    assert too_high.status_code == 403
    lower = await server.token(operator, role="viewer")
    assert lower["role"] == "viewer"
    assert (await server.token(operator))["role"] == "operator"


async def test_token_role_follows_a_demoted_user(server: Fleet) -> None:
    admin_id, admin = await server.user("admin")
    token = (await server.token(admin))["token"]
    assert (await server.client.get("/v1/users", headers=bearer(token))).status_code == 200
    await server.client.patch(
        f"/v1/users/{admin_id}", headers=server.owner, json={"role": "viewer"}
    )
    me = (await server.client.get("/v1/auth/me", headers=bearer(token))).json()
    assert me["role"] == "viewer"
    assert (await server.client.get("/v1/users", headers=bearer(token))).status_code == 403


async def test_read_only_token_cannot_change_anything(server: Fleet) -> None:
    token = (await server.token(server.owner, read_only=True))["token"]
    device_id = await server.device("pc-1")
    headers = bearer(token)
    assert (await server.client.get("/v1/devices", headers=headers)).status_code == 200
    assert (await server.client.get("/v1/audit", headers=headers)).status_code == 200
    for method, path, body in (
        ("PATCH", f"/v1/devices/{device_id}", {"name": "x"}),
        ("DELETE", f"/v1/devices/{device_id}", None),
        ("POST", "/v1/devices/enrollment", {}),
        ("POST", "/v1/users", {"username": "u", "password": "password-1", "role": "viewer"}),
        ("POST", "/v1/tokens", {"name": "wider"}),
    ):
        response = await server.client.request(method, path, headers=headers, json=body)
        assert response.status_code == 403, (method, path, response.text)
        assert "read-only" in response.json()["details"]


async def test_tag_limited_token_sees_only_its_devices(server: Fleet) -> None:
    prod = await server.device("web-1", ["prod", "web"])
    lab = await server.device("lab-1", ["lab"])
    await server.device("bare")
    token = (await server.token(server.owner, tags=["prod", "edge"]))["token"]
    headers = bearer(token)
    listed = (await server.client.get("/v1/devices", headers=headers)).json()["devices"]
    assert [d["id"] for d in listed] == [prod]
    assert (await server.client.get(f"/v1/devices/{prod}", headers=headers)).status_code == 200
    hidden = await server.client.get(f"/v1/devices/{lab}", headers=headers)
    assert hidden.status_code == 404  # as if it did not exist
    assert (await server.client.delete(f"/v1/devices/{lab}", headers=headers)).status_code == 404
    # It may not move a device out of its reach, nor reach users or the audit log.
    escape = await server.client.patch(
        f"/v1/devices/{prod}", headers=headers, json={"tags": ["lab"]}
    )
    assert escape.status_code == 403
    retag = await server.client.patch(
        f"/v1/devices/{prod}", headers=headers, json={"tags": ["edge"]}
    )
    assert retag.status_code == 200
    assert (await server.client.get("/v1/users", headers=headers)).status_code == 403
    assert (await server.client.get("/v1/audit", headers=headers)).status_code == 403


async def test_tokens_never_mint_wider_tokens(server: Fleet) -> None:
    limited = (await server.token(server.owner, tags=["prod"], role="admin"))["token"]
    headers = bearer(limited)
    unlimited = await server.client.post("/v1/tokens", headers=headers, json={"name": "x"})
    assert unlimited.status_code == 403
    other = await server.client.post(
        "/v1/tokens", headers=headers, json={"name": "x", "tags": ["lab"]}
    )
    assert other.status_code == 403
    narrower = await server.client.post(
        "/v1/tokens", headers=headers, json={"name": "x", "tags": ["prod"], "role": "viewer"}
    )
    assert narrower.status_code == 201
    assert narrower.json()["tags"] == ["prod"]


async def test_empty_tags_mean_unlimited(server: Fleet) -> None:
    created = await server.token(server.owner, tags=[])
    assert created["tags"] is None


async def test_tokens_expire(server: Fleet) -> None:
    created = await server.token(server.owner, expires_in_s=60)
    assert created["expires_at"] is not None
    headers = bearer(created["token"])
    assert (await server.client.get("/v1/auth/me", headers=headers)).status_code == 200
    server.clock.advance(61)
    response = await server.client.get("/v1/auth/me", headers=headers)
    assert response.status_code == 401
    assert "expired" in response.json()["details"]


async def test_users_see_and_revoke_only_their_own_tokens(server: Fleet) -> None:
    _, alice = await server.user("operator", username="alice")
    _, bob = await server.user("operator", username="bob")
    _, admin = await server.user("admin", username="adam")
    alices = await server.token(alice, name="alice's")
    await server.token(bob, name="bob's")
    owners = await server.token(server.owner, name="owner's")

    def names(response: object) -> list[str]:
        return sorted(t["name"] for t in response.json()["tokens"])  # type: ignore[attr-defined]

    assert names(await server.client.get("/v1/tokens", headers=alice)) == ["alice's"]
    assert names(await server.client.get("/v1/tokens", headers=admin)) == [
        "alice's",
        "bob's",
        "owner's",
    ]
    stranger = await server.client.delete(f"/v1/tokens/{alices['id']}", headers=bob)
    assert stranger.status_code == 404
    higher = await server.client.delete(f"/v1/tokens/{owners['id']}", headers=admin)
    assert higher.status_code == 403
    lower = await server.client.delete(f"/v1/tokens/{alices['id']}", headers=admin)
    assert lower.status_code == 204


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({}, "body.name"),
        ({"name": "x", "role": "root"}, "body.role"),
        ({"name": "x", "tags": ["bad tag"]}, "body.tags"),
        ({"name": "x", "read_only": "maybe"}, "body.read_only"),
        ({"name": "x", "expires_in_s": 0}, "body.expires_in_s"),
    ],
)
async def test_create_validation(server: Fleet, body: dict[str, object], field: str) -> None:
    response = await server.client.post("/v1/tokens", headers=server.owner, json=body)
    assert response.status_code == 422
    assert field in response.json()["details"]
