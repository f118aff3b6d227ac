"""Users and the role rules: who may create, change and delete whom."""

from __future__ import annotations

import pytest

from tests.server.conftest import PASSWORD, Fleet

pytestmark = pytest.mark.anyio


async def _create(server: Fleet, headers: dict[str, str], username: str, role: str) -> int:
    response = await server.client.post(
        "/v1/users",
        headers=headers,
        json={"username": username, "password": PASSWORD, "role": role},
    )
    return response.status_code


async def test_create_list_get_user(server: Fleet) -> None:
    response = await server.client.post(
        "/v1/users",
        headers=server.owner,
        json={"username": "Ada", "password": PASSWORD, "role": "admin"},
    )
    assert response.status_code == 201
    ada = response.json()
    assert ada["username"] == "ada"
    assert ada["role"] == "admin"
    assert ada["disabled"] is False
    assert ada["id"].startswith("usr_")
    assert "password" not in str(ada)

    listed = (await server.client.get("/v1/users", headers=server.owner)).json()["users"]
    assert [u["username"] for u in listed] == ["ada", "owner"]

    by_id = await server.client.get(f"/v1/users/{ada['id']}", headers=server.owner)
    by_name = await server.client.get("/v1/users/ada", headers=server.owner)
    assert by_id.json() == by_name.json() == ada

    # The new user can log in.
    await server.login("ada")
    entries = await server.audit(action="user.create")
    assert entries[0]["params"] == {"user_id": ada["id"], "username": "ada", "role": "admin"}


async def test_duplicate_username(server: Fleet) -> None:
    assert await _create(server, server.owner, "dup", "viewer") == 201
    response = await server.client.post(
        "/v1/users",
        headers=server.owner,
        json={"username": "DUP", "password": PASSWORD, "role": "viewer"},
    )
    assert response.status_code == 422
    assert "already exists" in response.json()["details"]


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"username": "x y", "password": PASSWORD}, "body.username"),
        ({"username": "ok", "password": "short"}, "body.password"),
        ({"username": "ok", "password": PASSWORD, "role": "owner"}, "body.role"),
        ({"username": "ok", "password": PASSWORD, "role": "god"}, "body.role"),
        ({"username": "ok", "password": PASSWORD, "extra": 1}, "body.extra"),
    ],
)
async def test_create_validation_names_the_field(
    server: Fleet, body: dict[str, object], field: str
) -> None:
    response = await server.client.post("/v1/users", headers=server.owner, json=body)
    assert response.status_code == 422
    assert response.json()["error"] == "invalid"
    assert field in response.json()["details"]


@pytest.mark.parametrize(
    ("creator", "role", "status"),
    [
        ("owner", "admin", 201),
        ("owner", "operator", 201),
        ("owner", "viewer", 201),
        ("admin", "admin", 403),
        ("admin", "operator", 201),
        ("admin", "viewer", 201),
        ("operator", "viewer", 403),
        ("viewer", "viewer", 403),
    ],
)
async def test_new_roles_are_below_the_creator(
    server: Fleet, creator: str, role: str, status: int
) -> None:
    headers = await server.headers(creator)
    assert await _create(server, headers, f"new-{role}", role) == status


async def test_admin_cannot_touch_equal_or_higher_roles(server: Fleet) -> None:
    _, admin = await server.user("admin", username="adam")
    other_admin, _ = await server.user("admin", username="alma")
    operator, _ = await server.user("operator", username="opal")
    for target in (other_admin, server.owner_id):
        patch = await server.client.patch(
            f"/v1/users/{target}", headers=admin, json={"disabled": True}
        )
        assert patch.status_code == 403, patch.text
        delete = await server.client.delete(f"/v1/users/{target}", headers=admin)
        assert delete.status_code == 403
    # Promoting an operator to admin is granting the admin's own role: refused.
    promote = await server.client.patch(
        f"/v1/users/{operator}", headers=admin, json={"role": "admin"}
    )
    assert promote.status_code == 403
    demote = await server.client.patch(
        f"/v1/users/{operator}", headers=admin, json={"role": "viewer"}
    )
    assert demote.status_code == 200
    assert demote.json()["role"] == "viewer"


async def test_owner_manages_admins(server: Fleet) -> None:
    admin_id, admin = await server.user("admin", username="adam")
    demote = await server.client.patch(
        f"/v1/users/{admin_id}", headers=server.owner, json={"role": "operator"}
    )
    assert demote.status_code == 200
    # The role applies at once to the existing session.
    assert (await server.client.get("/v1/users", headers=admin)).status_code == 403
    new_password = "brand-new-password"
    reset = await server.client.patch(
        f"/v1/users/{admin_id}", headers=server.owner, json={"password": new_password}
    )
    assert reset.status_code == 200
    assert (await server.client.get("/v1/auth/me", headers=admin)).status_code == 401
    await server.login("adam", new_password)
    assert (
        await server.client.delete(f"/v1/users/{admin_id}", headers=server.owner)
    ).status_code == 204
    assert (
        await server.client.get(f"/v1/users/{admin_id}", headers=server.owner)
    ).status_code == 404
    actions = [e["action"] for e in await server.audit(actor="owner")]
    assert actions[:3] == ["user.delete", "user.update", "user.update"]


async def test_nobody_can_make_an_owner(server: Fleet) -> None:
    admin_id, _ = await server.user("admin")
    response = await server.client.patch(
        f"/v1/users/{admin_id}", headers=server.owner, json={"role": "owner"}
    )
    assert response.status_code == 422
    assert "body.role" in response.json()["details"]


async def test_own_password_needs_the_current_one(server: Fleet) -> None:
    user_id, headers = await server.user("viewer", username="vic")
    other_session = await server.login("vic")
    missing = await server.client.patch(
        f"/v1/users/{user_id}", headers=headers, json={"password": "another-password"}
    )
    assert missing.status_code == 422
    assert "current_password" in missing.json()["details"]
    wrong = await server.client.patch(
        f"/v1/users/{user_id}",
        headers=headers,
        json={"password": "another-password", "current_password": "not-it-at-all"},
    )
    assert wrong.status_code == 403
    right = await server.client.patch(
        f"/v1/users/{user_id}",
        headers=headers,
        json={"password": "another-password", "current_password": PASSWORD},
    )
    assert right.status_code == 200
    assert (await server.client.get("/v1/auth/me", headers=headers)).status_code == 200
    assert (await server.client.get("/v1/auth/me", headers=other_session)).status_code == 401
    await server.login("vic", "another-password")
    entry = (await server.audit(action="user.update"))[0]
    assert entry["params"]["changed"] == ["password"]
    assert "another-password" not in str(entry)


async def test_nobody_changes_their_own_role_or_state(server: Fleet) -> None:
    user_id, headers = await server.user("admin")
    for body in ({"role": "viewer"}, {"disabled": True}):
        response = await server.client.patch(f"/v1/users/{user_id}", headers=headers, json=body)
        assert response.status_code == 403
    owner = await server.client.patch(
        f"/v1/users/{server.owner_id}", headers=server.owner, json={"role": "admin"}
    )
    assert owner.status_code == 403
    assert (
        await server.client.delete(f"/v1/users/{server.owner_id}", headers=server.owner)
    ).status_code == 403


async def test_viewers_see_only_themselves(server: Fleet) -> None:
    user_id, headers = await server.user("viewer")
    assert (await server.client.get(f"/v1/users/{user_id}", headers=headers)).status_code == 200
    other = await server.client.get(f"/v1/users/{server.owner_id}", headers=headers)
    assert other.status_code == 403
    assert (await server.client.get("/v1/users", headers=headers)).status_code == 403


async def test_deleting_a_user_revokes_their_tokens(server: Fleet) -> None:
    user_id, headers = await server.user("operator")
    token = (await server.token(headers))["token"]
    bearer = {"Authorization": f"Bearer {token}"}
    assert (await server.client.get("/v1/auth/me", headers=bearer)).status_code == 200
    assert (
        await server.client.delete(f"/v1/users/{user_id}", headers=server.owner)
    ).status_code == 204
    assert (await server.client.get("/v1/auth/me", headers=bearer)).status_code == 401
    assert (await server.client.get("/v1/auth/me", headers=headers)).status_code == 401


async def test_unknown_user_is_404(server: Fleet) -> None:
    response = await server.client.patch(
        "/v1/users/usr_nope", headers=server.owner, json={"disabled": True}
    )
    assert response.status_code == 404
    assert response.json() == {"error": "not_found", "details": "no user usr_nope"}
