"""Enrollment: single-use tokens with a TTL, consumed atomically by agent registration."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from sqlalchemy import func, select

from remotehands.server.db.models import Device, EnrollmentToken
from tests.server.conftest import Fleet

pytestmark = pytest.mark.anyio


async def _count_devices(server: Fleet) -> int:
    async with server.services.db.session() as db:
        return int(await db.scalar(select(func.count()).select_from(Device)) or 0)


async def _register(server: Fleet, token: str, **body: Any) -> Any:
    return await server.client.post(
        "/v1/agent/register",
        json={"enrollment_token": token, "hardware_id": "rpi4-serial-1", **body},
    )


async def test_enrollment_token_shape(server: Fleet) -> None:
    response = await server.client.post(
        "/v1/devices/enrollment",
        headers=server.owner,
        json={"suggested_name": "DC1-R3-S8", "suggested_tags": ["prod"]},
    )
    assert response.status_code == 201
    body = response.json()
    assert set(body) == {"token", "expires_at", "install_cmd"}
    assert body["token"].startswith("ekvent_")
    assert body["install_cmd"] == (
        f"curl -sSL http://fleet.test:8080/install | sh -s -- --token {body['token']}"
    )
    async with server.services.db.session() as db:
        row = await db.scalar(select(EnrollmentToken))
    assert row is not None
    assert row.created_at == server.clock()
    assert (row.expires_at - row.created_at).total_seconds() == server.settings.enrollment_ttl_s
    assert body["token"] not in row.token_hash


async def test_empty_body_is_allowed(server: Fleet) -> None:
    response = await server.client.post("/v1/devices/enrollment", headers=server.owner)
    assert response.status_code == 201


async def test_register_creates_the_device(server: Fleet) -> None:
    token = (await server.enrollment(suggested_name="DC1-R3-S8", suggested_tags=["prod"]))["token"]
    response = await _register(server, token, device_type="pikvm", name="ignored")
    assert response.status_code == 200
    body = response.json()
    assert set(body) == {"device_id", "auth_token", "ws_url"}
    assert body["device_id"].startswith("dev_")
    assert body["auth_token"].startswith("agt_")
    assert body["ws_url"] == "ws://fleet.test:8080/v1/agent/ws"
    device = (
        await server.client.get(f"/v1/devices/{body['device_id']}", headers=server.owner)
    ).json()
    assert device["name"] == "DC1-R3-S8"  # the admin's suggestion wins
    assert device["tags"] == ["prod"]
    assert device["status"] == "offline"
    assert device["device_type"] == "pikvm"
    found = await server.services.authenticator.agent(body["auth_token"])
    assert found is not None and found.id == body["device_id"]
    assert found.hardware_id == "rpi4-serial-1"
    entry = (await server.audit(action="device.register"))[0]
    assert entry["actor_kind"] == "agent"
    assert entry["device_id"] == body["device_id"]
    assert body["auth_token"] not in str(entry)


async def test_name_falls_back_to_the_agent_then_the_hardware_id(server: Fleet) -> None:
    named = await _register(server, (await server.enrollment())["token"], name="from-agent")
    bare = await _register(server, (await server.enrollment())["token"])
    names = []
    for response in (named, bare):
        device_id = response.json()["device_id"]
        got = await server.client.get(f"/v1/devices/{device_id}", headers=server.owner)
        names.append(got.json()["name"])
    assert names == ["from-agent", "rpi4-serial-1"]


async def test_the_agent_adds_tags_to_the_tokens_and_never_drops_them(server: Fleet) -> None:
    token = (await server.enrollment(suggested_tags=["prod", "rack-3"]))["token"]
    response = await _register(server, token, tags=["rack-3", "gpu"])
    device_id = response.json()["device_id"]
    device = (await server.client.get(f"/v1/devices/{device_id}", headers=server.owner)).json()
    assert device["tags"] == ["prod", "rack-3", "gpu"]
    bad = await _register(server, (await server.enrollment())["token"], tags=["no spaces"])
    assert bad.status_code == 422 and "body.tags" in bad.json()["details"]


async def test_https_public_url_gives_wss() -> None:
    from pathlib import Path

    from tests.server.conftest import make_settings

    settings = make_settings(Path("/tmp"), "sqlite+aiosqlite://", public_url="https://f.example/")
    assert settings.ws_base_url == "wss://f.example"


async def test_tokens_are_single_use(server: Fleet) -> None:
    token = (await server.enrollment())["token"]
    assert (await _register(server, token)).status_code == 200
    again = await _register(server, token)
    assert again.status_code == 401
    assert again.json()["error"] == "unauthorized"
    assert "already used" in again.json()["details"]
    assert await _count_devices(server) == 1


async def test_concurrent_registrations_exactly_one_wins(server: Fleet) -> None:
    for _ in range(3):
        token = (await server.enrollment())["token"]
        before = await _count_devices(server)
        responses = await asyncio.gather(*(_register(server, token) for _ in range(2)))
        statuses = sorted(r.status_code for r in responses)
        assert statuses == [200, 401], [r.text for r in responses]
        assert await _count_devices(server) == before + 1


async def test_many_concurrent_registrations(server: Fleet) -> None:
    token = (await server.enrollment())["token"]
    responses = await asyncio.gather(*(_register(server, token) for _ in range(8)))
    assert sorted(r.status_code for r in responses) == [200] + [401] * 7
    assert await _count_devices(server) == 1


async def test_expired_token_is_refused_and_nothing_created(server: Fleet) -> None:
    token = (await server.enrollment())["token"]
    server.clock.advance(server.settings.enrollment_ttl_s)
    response = await _register(server, token)
    assert response.status_code == 401
    assert "expired" in response.json()["details"]
    assert await _count_devices(server) == 0
    async with server.services.db.session() as db:
        row = await db.scalar(select(EnrollmentToken))
    assert row is not None and row.used_at is None and row.device_id is None


async def test_unknown_token(server: Fleet) -> None:
    response = await _register(server, "ekvent_nope")
    assert response.status_code == 401
    assert "unknown enrollment token" in response.json()["details"]
    entry = (await server.audit(action="device.register"))[0]
    assert entry["result"] == "unauthorized"
    assert "ekvent_nope" not in str(entry)


async def test_failed_registrations_are_rate_limited_per_address(server: Fleet) -> None:
    for _ in range(server.settings.register_rate_limit):
        assert (await _register(server, "ekvent_guess")).status_code == 401
    token = (await server.enrollment())["token"]
    limited = await _register(server, token)
    assert limited.status_code == 429
    assert "Retry-After" in limited.headers
    async with server.other_client("192.0.2.7") as other:
        response = await other.post(
            "/v1/agent/register", json={"enrollment_token": token, "hardware_id": "hw"}
        )
        assert response.status_code == 200


async def test_tag_limited_token_enrolls_only_into_its_tags(server: Fleet) -> None:
    token = (await server.token(server.owner, tags=["lab"]))["token"]
    headers = {"Authorization": f"Bearer {token}"}
    outside = await server.client.post(
        "/v1/devices/enrollment", headers=headers, json={"suggested_tags": ["prod"]}
    )
    assert outside.status_code == 403
    inside = await server.client.post(
        "/v1/devices/enrollment", headers=headers, json={"suggested_tags": ["lab"]}
    )
    assert inside.status_code == 201


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"hardware_id": "x"}, "body.enrollment_token"),
        ({"enrollment_token": "ekvent_x"}, "body.hardware_id"),
        ({"enrollment_token": "ekvent_x", "hardware_id": ""}, "body.hardware_id"),
    ],
)
async def test_register_validation(server: Fleet, body: dict[str, Any], field: str) -> None:
    response = await server.client.post("/v1/agent/register", json=body)
    assert response.status_code == 422
    assert field in response.json()["details"]
