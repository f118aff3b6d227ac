"""The devices API: the KVMFleet shape, filters, rename and retag, delete."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import select

from remotehands.server.db.models import Device
from tests.server.conftest import Fleet

pytestmark = pytest.mark.anyio

DEVICE_KEYS = {
    "id",
    "name",
    "tags",
    "status",
    "device_type",
    "agent_version",
    "last_seen",
    "health",
    "capabilities",
    "screens",
}


async def _names(server: Fleet, **params: Any) -> list[str]:
    response = await server.client.get("/v1/devices", headers=server.owner, params=params)
    assert response.status_code == 200, response.text
    return [d["name"] for d in response.json()["devices"]]


async def test_device_shape(server: Fleet) -> None:
    health = {"uptime_seconds": 864000, "cpu_percent": 12.3, "memory_percent": 45.1}
    device_id = await server.device(
        "DC1-R3-S7",
        ["prod", "frankfurt"],
        status="online",
        device_type="pikvm",
        agent_version="0.4.2",
        health=health,
        capabilities=["screen", "keyboard"],
    )
    listed = (await server.client.get("/v1/devices", headers=server.owner)).json()
    assert set(listed) == {"devices"}
    (device,) = listed["devices"]
    assert set(device) == DEVICE_KEYS
    assert device["id"] == device_id
    assert device["tags"] == ["prod", "frankfurt"]
    assert device["status"] == "online"
    assert device["device_type"] == "pikvm"
    assert device["agent_version"] == "0.4.2"
    assert device["health"] == health
    assert device["capabilities"] == ["screen", "keyboard"]
    assert device["screens"] == [{"id": 0, "width": 1024, "height": 768}]
    assert device["last_seen"].endswith("Z")
    got = await server.client.get(f"/v1/devices/{device_id}", headers=server.owner)
    assert got.json() == device


async def test_filters(server: Fleet) -> None:
    await server.device("web-1", ["prod", "web"], status="online")
    await server.device("web-2", ["prod", "web"], status="offline")
    await server.device("db-1", ["prod", "db"], status="online")
    await server.device("Lab_PC", ["lab"], status="online")
    assert await _names(server) == ["Lab_PC", "db-1", "web-1", "web-2"]
    assert await _names(server, status="online") == ["Lab_PC", "db-1", "web-1"]
    assert await _names(server, status="offline") == ["web-2"]
    assert await _names(server, tag="prod") == ["db-1", "web-1", "web-2"]
    assert await _names(server, tag=["prod", "web"]) == ["web-1", "web-2"]
    assert await _names(server, tag=["web", "db"]) == []
    assert await _names(server, search="WEB") == ["web-1", "web-2"]
    assert await _names(server, search="b_p") == ["Lab_PC"]  # _ is literal, not a wildcard
    assert await _names(server, search="%") == []
    assert await _names(server, status="online", tag="prod", search="1") == ["db-1", "web-1"]
    bad = await server.client.get("/v1/devices", headers=server.owner, params={"status": "up"})
    assert bad.status_code == 422
    assert "query.status" in bad.json()["details"]


async def test_unknown_device_is_404(server: Fleet) -> None:
    response = await server.client.get("/v1/devices/dev_nope", headers=server.owner)
    assert response.status_code == 404
    assert response.json() == {"error": "not_found", "details": "no device dev_nope"}


async def test_patch(server: Fleet) -> None:
    device_id = await server.device("old", ["a"])
    with server.services.events.subscribe() as subscription:
        await _patch_twice(server, device_id)
        subscription.close()
        events = [event async for event in subscription]
    assert [e["type"] for e in events] == ["device.updated", "device.updated"]
    assert events[0]["device_id"] == device_id
    assert events[0]["device"]["name"] == "DC1-R3-S8"
    assert events[0]["tags"] == ["prod", "munich"]
    entry = (await server.audit(action="device.update"))[-1]
    assert entry["device_id"] == device_id
    assert entry["params"]["before"] == {"name": "old", "tags": ["a"]}


async def _patch_twice(server: Fleet, device_id: str) -> None:
    response = await server.client.patch(
        f"/v1/devices/{device_id}",
        headers=server.owner,
        json={"name": " DC1-R3-S8 ", "tags": ["prod", "munich", "prod"]},
    )
    assert response.status_code == 200
    assert response.json()["name"] == "DC1-R3-S8"
    assert response.json()["tags"] == ["prod", "munich"]
    got = (await server.client.get(f"/v1/devices/{device_id}", headers=server.owner)).json()
    assert got == response.json()
    only_name = await server.client.patch(
        f"/v1/devices/{device_id}", headers=server.owner, json={"name": "renamed"}
    )
    assert only_name.json()["tags"] == ["prod", "munich"]


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"name": ""}, "body.name"),
        ({"name": "   "}, "body.name"),
        ({"tags": ["ok", "not ok"]}, "body.tags"),
        ({"tags": "prod"}, "body.tags"),
        ({"status": "online"}, "body.status"),
    ],
)
async def test_patch_validation(server: Fleet, body: dict[str, Any], field: str) -> None:
    device_id = await server.device("pc")
    response = await server.client.patch(
        f"/v1/devices/{device_id}", headers=server.owner, json=body
    )
    assert response.status_code == 422
    assert field in response.json()["details"]


async def test_delete_cuts_the_agent_off(server: Fleet) -> None:
    registered = await server.register(suggested_name="gone", suggested_tags=["t"])
    device_id = registered["device_id"]
    credential = registered["auth_token"]
    assert await server.services.authenticator.agent(credential) is not None

    # The cut link itself (closed with CLOSE_CREDENTIAL_REFUSED) is checked with a live agent
    # in tests/server/test_link.py.
    with server.services.events.subscribe() as subscription:
        response = await server.client.delete(f"/v1/devices/{device_id}", headers=server.owner)
        subscription.close()
        events = [event async for event in subscription]
    assert response.status_code == 204
    assert await server.services.authenticator.agent(credential) is None
    deleted = {key: value for key, value in events[-1].items() if key != "at"}
    assert deleted == {"type": "device.deleted", "device_id": device_id, "tags": ["t"]}
    async with server.services.db.session() as db:
        assert await db.scalar(select(Device).where(Device.id == device_id)) is None
    again = await server.client.delete(f"/v1/devices/{device_id}", headers=server.owner)
    assert again.status_code == 404
    entry = (await server.audit(action="device.delete"))[0]
    assert entry["device_id"] == device_id
    assert entry["params"] == {"name": "gone", "tags": ["t"]}


async def test_delete_with_the_real_hub(server: Fleet) -> None:
    """With the link modules present, deleting a device without a link is quiet."""
    device_id = await server.device("pc")
    response = await server.client.delete(f"/v1/devices/{device_id}", headers=server.owner)
    assert response.status_code == 204


async def test_authenticate_agent_ignores_other_credentials(server: Fleet) -> None:
    assert await server.services.authenticator.agent("rhs_whatever") is None
    assert await server.services.authenticator.agent("agt_unknown") is None
