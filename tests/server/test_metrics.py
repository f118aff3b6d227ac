"""/metrics (Prometheus text, per-app registry) and /health."""

from __future__ import annotations

from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.server.link_harness import LiveFleet, fleet_fixture, running_fleet  # noqa: F401 (fixture)

pytestmark = pytest.mark.anyio


async def _samples(
    fleet: LiveFleet, token: str | None = None
) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    client = fleet.client(token) if token else fleet.owner
    response = await client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(response.text)
        for sample in family.samples
    }


async def test_metrics_count_links_devices_and_actions(fleet: LiveFleet) -> None:
    first, second = await fleet.enroll(2)
    async with fleet.agent(first), fleet.agent(second, capabilities=["screen"]):
        base = f"/v1/devices/{first.device_id}"
        await fleet.owner.post(f"{base}/mouse/click", json={})
        await fleet.owner.post(f"{base}/mouse/click", json={})
        await fleet.owner.post(f"/v1/devices/{second.device_id}/mouse/click", json={})
        samples = await _samples(fleet, await fleet.login("viewer"))
    assert samples[("remotehands_devices_online", ())] == 2
    assert samples[("remotehands_agent_links", ())] == 2
    ok = (("action", "mouse.click"), ("result", "ok"))
    unsupported = (("action", "mouse.click"), ("result", "unsupported"))
    assert samples[("remotehands_actions_total", ok)] == 2
    assert samples[("remotehands_actions_total", unsupported)] == 1
    assert samples[("remotehands_action_seconds_count", (("action", "mouse.click"),))] == 3


async def test_metrics_need_a_login(fleet: LiveFleet) -> None:
    response = await fleet.client().get("/metrics")
    assert response.status_code == 401


async def test_each_app_counts_for_itself(fleet: LiveFleet, tmp_path: Path) -> None:
    (device,) = await fleet.enroll(1)
    async with fleet.agent(device):
        await fleet.owner.post(f"/v1/devices/{device.device_id}/mouse/click", json={})
    async with running_fleet(tmp_path / "other") as other:
        samples = await _samples(other)
    assert not any(name == "remotehands_actions_total" for name, _ in samples)
    assert samples[("remotehands_agent_links", ())] == 0


async def test_health_is_public(fleet: LiveFleet) -> None:
    (device,) = await fleet.enroll(1)
    anonymous = fleet.client()
    assert (await anonymous.get("/health")).json() == {"status": "ok", "db": "ok", "links": 0}
    async with fleet.agent(device):
        assert (await anonymous.get("/health")).json() == {"status": "ok", "db": "ok", "links": 1}
