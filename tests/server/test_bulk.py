"""Bulk actions over a fleet of simulated agents."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest

from remotehands.testing.simagent import Enrolled, run_many
from remotehands.testing.xapps import eventually
from tests.server.link_harness import LiveFleet, running_fleet

# Every test brings 50 simulated agents online over real WebSockets: seconds each.
pytestmark = [pytest.mark.anyio, pytest.mark.slow]


@pytest.fixture(name="fleet")
async def fleet_fixture(tmp_path: Path, database_url: str) -> AsyncIterator[LiveFleet]:
    """A running server whose heartbeat is 5 s, not the harness's 0.2 s: these tests time no
    heartbeats, and the stale-device sweep (by wall time, margin four heartbeats) must not catch
    a device whose link is still being attached while 50 agents connect on a loaded machine."""
    async with running_fleet(tmp_path, database_url=database_url, heartbeat_interval_s=5.0) as f:
        yield f


@asynccontextmanager
async def fifty(
    fleet: LiveFleet,
) -> AsyncIterator[tuple[list[Enrolled], list[Enrolled], list[Enrolled]]]:
    """50 devices online (30 "blue", 20 "green"), and 5 "blue" ones offline."""
    blue = await fleet.enroll(30, tags=["blue", "lab"], name_prefix="blue")
    green = await fleet.enroll(20, tags=["green", "lab"], name_prefix="green")
    offline = await fleet.enroll(5, tags=["blue"], name_prefix="zz-off")
    async with run_many(fleet.ws_url, [d.credential for d in blue + green]):
        yield blue, green, offline


async def test_bulk_over_tags_and_status(fleet: LiveFleet) -> None:
    async with fifty(fleet) as (blue, green, offline):
        response = await fleet.owner.post(
            "/v1/bulk",
            json={
                "action": "mouse.move",
                "params": {"x": 1, "y": 2},
                "selector": {"tags": ["blue"]},
            },
        )
        assert response.status_code == 200, response.text
        results = response.json()["results"]
        assert [r["device_id"] for r in results] == [d.device_id for d in blue + offline]
        ok = [r for r in results if r["ok"]]
        failed = [r for r in results if not r["ok"]]
        assert len(ok) == 30
        assert all(r["result"] == {"status": "ok"} for r in ok)
        assert {r["device_id"] for r in failed} == {d.device_id for d in offline}
        assert all(r["error"]["error"] == "device_offline" for r in failed)
        assert response.json()["total_duration_ms"] > 0

        online = await fleet.owner.post(
            "/v1/bulk",
            json={"action": "screenshot", "selector": {"status": "online", "tags": ["lab"]}},
        )
        online_results = online.json()["results"]
        assert len(online_results) == 50
        assert all(r["ok"] and r["result"]["image"] for r in online_results)
        assert {r["name"] for r in online_results} == {d.name for d in blue + green}


async def test_bulk_by_ids_reports_unknown_ids(fleet: LiveFleet) -> None:
    async with fifty(fleet) as (blue, green, _offline):
        ids = [blue[0].device_id, green[0].device_id, "dev_unknown"]
        response = await fleet.owner.post(
            "/v1/bulk", json={"action": "screens", "selector": {"ids": ids}}
        )
    results = {r["device_id"]: r for r in response.json()["results"]}
    assert results[blue[0].device_id]["ok"] and results[green[0].device_id]["ok"]
    assert results["dev_unknown"]["error"]["error"] == "not_found"


async def test_bulk_streams_ndjson_as_devices_finish(fleet: LiveFleet) -> None:
    async with fifty(fleet) as (blue, green, _offline):
        lines = []
        async with fleet.owner.stream(
            "POST",
            "/v1/bulk",
            params={"stream": "true"},
            json={"action": "mouse.click", "selector": {"tags": ["lab"]}, "concurrency": 8},
        ) as response:
            assert response.status_code == 200
            assert response.headers["content-type"].startswith("application/x-ndjson")
            async for line in response.aiter_lines():
                if line:
                    lines.append(json.loads(line))
    *results, summary = lines
    assert {r["device_id"] for r in results} == {d.device_id for d in blue + green}
    assert all(r["ok"] for r in results)
    assert summary["devices"] == 50 and summary["total_duration_ms"] > 0


async def test_bulk_concurrency_is_bounded(fleet: LiveFleet) -> None:
    devices = await fleet.enroll(12)
    in_flight = 0
    most = 0

    async def slow(params: dict[str, Any]) -> dict[str, str]:
        nonlocal in_flight, most
        in_flight += 1
        most = max(most, in_flight)
        await asyncio.sleep(0.05)
        in_flight -= 1
        return {"status": "ok"}

    agents = [fleet.agent(d, handlers={"mouse.move": slow}) for d in devices]
    for agent in agents:
        await agent.connect()
    try:
        response = await fleet.owner.post(
            "/v1/bulk",
            json={
                "action": "mouse.move",
                "params": {"x": 0, "y": 0},
                "selector": {"ids": [d.device_id for d in devices]},
                "concurrency": 3,
            },
        )
    finally:
        for agent in agents:
            await agent.disconnect()
    assert response.status_code == 200
    assert all(r["ok"] for r in response.json()["results"])
    assert most == 3


async def test_bulk_checks_like_single_actions(fleet: LiveFleet) -> None:
    devices = await fleet.enroll(3, tags=["lab"])
    viewer = fleet.client(await fleet.login("viewer"))
    async with run_many(fleet.ws_url, [d.credential for d in devices], capabilities=["screen"]):
        forbidden = await viewer.post(
            "/v1/bulk", json={"action": "mouse.click", "selector": {"tags": ["lab"]}}
        )
        allowed = await viewer.post(
            "/v1/bulk", json={"action": "screenshot", "selector": {"tags": ["lab"]}}
        )
        unsupported = await fleet.owner.post(
            "/v1/bulk", json={"action": "mouse.click", "selector": {"tags": ["lab"]}}
        )
        bad_params = await fleet.owner.post(
            "/v1/bulk",
            json={"action": "mouse.move", "params": {"x": "a"}, "selector": {"tags": ["lab"]}},
        )
        unknown_action = await fleet.owner.post(
            "/v1/bulk", json={"action": "dance", "selector": {"tags": ["lab"]}}
        )
        empty = await fleet.owner.post("/v1/bulk", json={"action": "screens", "selector": {}})
        nothing = await fleet.owner.post(
            "/v1/bulk", json={"action": "screens", "selector": {"tags": ["nowhere"]}}
        )
        malformed = await fleet.owner.post(
            "/v1/bulk", content=b"{", headers={"Content-Type": "application/json"}
        )
    assert forbidden.status_code == 403
    assert allowed.status_code == 200 and all(r["ok"] for r in allowed.json()["results"])
    assert all(r["error"]["error"] == "unsupported" for r in unsupported.json()["results"])
    assert bad_params.status_code == 422 and "x:" in bad_params.json()["details"]
    assert unknown_action.status_code == 422 and "dance" in unknown_action.json()["details"]
    assert empty.status_code == 422 and "ids" in empty.json()["details"]
    assert nothing.status_code == 422 and "no device matches" in nothing.json()["details"]
    assert malformed.status_code == 422

    async def audited() -> bool:
        response = await fleet.owner.get("/v1/audit", params={"action": "mouse.click"})
        return len(response.json()["entries"]) == 3

    await eventually(audited)


async def test_tag_limited_tokens_select_only_their_devices(fleet: LiveFleet) -> None:
    async with fifty(fleet) as (blue, green, _offline):
        green_only = fleet.client(await fleet.api_token("operator", tags=["green"]))
        response = await green_only.post(
            "/v1/bulk", json={"action": "screens", "selector": {"status": "online"}}
        )
        by_ids = await green_only.post(
            "/v1/bulk", json={"action": "screens", "selector": {"ids": [blue[0].device_id]}}
        )
    assert {r["device_id"] for r in response.json()["results"]} == {d.device_id for d in green}
    assert by_ids.json()["results"][0]["error"]["error"] == "not_found"
