"""Logging in and out, sessions expiring, failed logins limited, bearer tokens checked."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import httpx
import pytest
import websockets
from fastapi import Depends, WebSocket

from remotehands.errors import ForbiddenError
from remotehands.server.app import create_app
from remotehands.server.auth import (
    Passwords,
    Principal,
    can_act,
    can_see_device,
    require_role,
)
from remotehands.server.http.users import create_user
from tests.server.conftest import (
    FAST_PASSWORDS,
    OWNER_PASSWORD,
    PASSWORD,
    Fleet,
    make_settings,
    serve,
)

pytestmark = pytest.mark.anyio


async def test_login_me_logout(server: Fleet) -> None:
    response = await server.client.post(
        "/v1/auth/login", json={"username": "owner", "password": OWNER_PASSWORD}
    )
    assert response.status_code == 200
    body = response.json()
    assert body["token"].startswith("rhs_")
    assert body["expires_in_s"] == server.settings.session_ttl_s
    headers = {"Authorization": f"Bearer {body['token']}"}

    me = await server.client.get("/v1/auth/me", headers=headers)
    assert me.status_code == 200
    assert me.json() == {
        "kind": "user",
        "user_id": server.owner_id,
        "username": "owner",
        "role": "owner",
        "read_only": False,
        "tags": None,
        "token_id": None,
    }

    assert (await server.client.post("/v1/auth/logout", headers=headers)).status_code == 204
    after = await server.client.get("/v1/auth/me", headers=headers)
    assert after.status_code == 401
    assert after.json()["error"] == "unauthorized"
    # The other session of the owner is untouched.
    assert (await server.client.get("/v1/auth/me", headers=server.owner)).status_code == 200


async def test_usernames_are_case_insensitive(server: Fleet) -> None:
    response = await server.client.post(
        "/v1/auth/login", json={"username": " Owner ", "password": OWNER_PASSWORD}
    )
    assert response.status_code == 200


async def test_session_token_is_stored_hashed(server: Fleet) -> None:
    from sqlalchemy import select

    from remotehands.server.db.models import Session

    token = server.owner["Authorization"].removeprefix("Bearer ")
    async with server.services.db.session() as db:
        hashes = list(await db.scalars(select(Session.token_hash)))
    assert token not in hashes
    assert all(len(h) == 64 for h in hashes)


async def test_session_expires(server: Fleet) -> None:
    headers = await server.login("owner", OWNER_PASSWORD)
    server.clock.advance(server.settings.session_ttl_s - 1)
    assert (await server.client.get("/v1/auth/me", headers=headers)).status_code == 200
    server.clock.advance(2)
    response = await server.client.get("/v1/auth/me", headers=headers)
    assert response.status_code == 401
    assert "expired" in response.json()["details"]


async def test_wrong_password_and_unknown_user_look_the_same(server: Fleet) -> None:
    wrong = await server.client.post(
        "/v1/auth/login", json={"username": "owner", "password": "nope-nope"}
    )
    unknown = await server.client.post(
        "/v1/auth/login", json={"username": "nobody", "password": "nope-nope"}
    )
    assert wrong.status_code == unknown.status_code == 401
    assert (
        wrong.json()
        == unknown.json()
        == {
            "error": "unauthorized",
            "details": "wrong username or password",
        }
    )
    entries = await server.audit(action="auth.login", result="unauthorized")
    assert [e["actor"] for e in entries] == ["owner"]  # unknown names are not audited


async def test_failed_logins_are_rate_limited_per_client_and_username(server: Fleet) -> None:
    limit = server.settings.login_rate_limit
    bad = {"username": "owner", "password": "wrong-password"}
    for _ in range(limit):
        assert (await server.client.post("/v1/auth/login", json=bad)).status_code == 401
    limited = await server.client.post("/v1/auth/login", json=bad)
    assert limited.status_code == 429
    assert limited.json()["error"] == "rate_limited"
    retry_after = int(limited.headers["Retry-After"])
    assert 1 <= retry_after <= 60
    # Even the right password is refused while limited...
    good = {"username": "owner", "password": OWNER_PASSWORD}
    assert (await server.client.post("/v1/auth/login", json=good)).status_code == 429
    # ...but another client address, or another username, is not limited.
    async with server.other_client("10.9.8.7") as other:
        assert (await other.post("/v1/auth/login", json=good)).status_code == 200
    await server.user("viewer", username="vera")
    vera = {"username": "vera", "password": PASSWORD}
    assert (await server.client.post("/v1/auth/login", json=vera)).status_code == 200
    # The window slides: after a minute the client may try again.
    server.clock.advance(61)
    assert (await server.client.post("/v1/auth/login", json=good)).status_code == 200


async def test_success_resets_the_failure_count(server: Fleet) -> None:
    limit = server.settings.login_rate_limit
    bad = {"username": "owner", "password": "wrong-password"}
    good = {"username": "owner", "password": OWNER_PASSWORD}
    for _ in range(limit - 1):
        await server.client.post("/v1/auth/login", json=bad)
    assert (await server.client.post("/v1/auth/login", json=good)).status_code == 200
    for _ in range(limit - 1):
        assert (await server.client.post("/v1/auth/login", json=bad)).status_code == 401


async def test_disabled_user_cannot_log_in_and_loses_sessions(server: Fleet) -> None:
    user_id, headers = await server.user("operator", username="otto")
    response = await server.client.patch(
        f"/v1/users/{user_id}", headers=server.owner, json={"disabled": True}
    )
    assert response.status_code == 200
    assert (await server.client.get("/v1/auth/me", headers=headers)).status_code == 401
    login = await server.client.post(
        "/v1/auth/login", json={"username": "otto", "password": PASSWORD}
    )
    assert login.status_code == 401
    assert "disabled" in login.json()["details"]


@pytest.mark.parametrize(
    "header",
    ["", "Bearer", "Basic dXNlcjpwYXNz", "Bearer rhs_unknown", "Bearer rht_unknown", "Bearer x"],
)
async def test_bad_credentials_are_401(server: Fleet, header: str) -> None:
    headers = {"Authorization": header} if header else {}
    response = await server.client.get("/v1/auth/me", headers=headers)
    assert response.status_code == 401
    assert response.json()["error"] == "unauthorized"
    assert response.json()["details"]


async def test_logout_with_an_api_token_is_refused(server: Fleet) -> None:
    token = (await server.token(server.owner))["token"]
    response = await server.client.post(
        "/v1/auth/logout", headers={"Authorization": f"Bearer {token}"}
    )
    assert response.status_code == 422
    assert "revoke" in response.json()["details"]


async def test_login_is_audited(server: Fleet) -> None:
    entries = await server.audit(action="auth.login")
    assert entries[0]["actor"] == "owner"
    assert entries[0]["result"] == "ok"


def _principal(role: str, **kw: object) -> Principal:
    return Principal("user", "usr_1", "u", role, **kw)  # type: ignore[arg-type]


def test_can_act() -> None:
    for role in ("viewer", "operator", "admin", "owner"):
        can_act(_principal(role), "read")
    with pytest.raises(ForbiddenError):
        can_act(_principal("viewer"), "control")
    for role in ("operator", "admin", "owner"):
        can_act(_principal(role), "control")
    read_only = Principal("token", "usr_1", "u", "owner", True, None, "tok_1")
    can_act(read_only, "read")
    with pytest.raises(ForbiddenError, match="read-only"):
        can_act(read_only, "control")


def test_can_see_device() -> None:
    assert can_see_device(_principal("viewer"), [])
    limited = Principal("token", "usr_1", "u", "admin", False, ["prod", "lab"], "tok_1")
    assert can_see_device(limited, ["lab", "x"])
    assert not can_see_device(limited, ["x"])
    assert not can_see_device(limited, [])
    assert not can_see_device(limited, None)


def test_require_role_refuses_unknown_roles() -> None:
    with pytest.raises(ValueError, match="unknown role"):
        require_role("superuser")


async def test_websocket_routes_take_the_token_from_the_query(tmp_path: Path) -> None:
    """On a real server: ?token= or the header; refused handshakes answer 401/403 JSON."""
    settings = make_settings(tmp_path, f"sqlite+aiosqlite:///{tmp_path / 'ws.db'}")
    app = create_app(settings, passwords=Passwords(FAST_PASSWORDS))

    @app.websocket("/test/ws")
    async def ws(websocket: WebSocket, who: Annotated[Principal, require_role("operator")]) -> None:
        await websocket.accept()
        await websocket.send_json({"user": who.username, "role": who.role})
        await websocket.close()

    async with serve(app) as url, httpx.AsyncClient(base_url=url) as client:
        services = app.state.services
        tokens = {}
        for name, role in (("op", "operator"), ("vi", "viewer")):
            await create_user(services, name, PASSWORD, role)
            body = {"username": name, "password": PASSWORD}
            login = await client.post("/v1/auth/login", json=body)
            tokens[name] = login.json()["token"]
        ws_url = url.replace("http://", "ws://") + "/test/ws"
        async with websockets.connect(f"{ws_url}?token={tokens['op']}") as websocket:
            assert json.loads(await websocket.recv()) == {"user": "op", "role": "operator"}
        async with websockets.connect(
            ws_url, additional_headers={"Authorization": f"Bearer {tokens['op']}"}
        ) as websocket:
            assert json.loads(await websocket.recv())["user"] == "op"
        for query, status, code in (
            (f"?token={tokens['vi']}", 403, "forbidden"),
            ("?token=rhs_nope", 401, "unauthorized"),
            ("", 401, "unauthorized"),
        ):
            with pytest.raises(websockets.InvalidStatus) as refused:
                async with websockets.connect(ws_url + query):
                    pass
            assert refused.value.response.status_code == status
            assert json.loads(refused.value.response.body)["error"] == code


def test_principal_actor() -> None:
    assert _principal("admin").actor == "u"
    token = Principal("token", "usr_1", "u", "admin", False, None, "tok_9")
    assert token.actor == "u/tok_9"


async def test_depends_is_returned(server: Fleet) -> None:
    assert type(require_role("viewer")) is type(Depends(lambda: None))


def test_one_roles_list_for_server_and_cli() -> None:
    import click

    from remotehands.cli import devices_cmd
    from remotehands.protocol import roles
    from remotehands.server import auth

    assert auth.ROLES is roles.ROLES == ("viewer", "operator", "admin", "owner")
    create = devices_cmd.tokens.commands["create"]
    (role,) = [param for param in create.params if param.name == "role"]
    assert isinstance(role.type, click.Choice)
    assert set(role.type.choices) == set(roles.ROLES)
