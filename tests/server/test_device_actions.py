"""Device actions through the server: /v1/devices/{id}/<native path> to a simulated agent."""

from __future__ import annotations

import base64
import time
from pathlib import Path
from typing import Any

import pytest

from remotehands.errors import BusyError
from remotehands.testing.simagent import Enrolled
from remotehands.testing.xapps import eventually
from tests.server.link_harness import LiveFleet, fleet_fixture, running_fleet  # noqa: F401 (fixture)

pytestmark = pytest.mark.anyio


async def test_a_screenshot_comes_back_in_the_native_shape(fleet: LiveFleet) -> None:
    (device,) = await fleet.enroll(1)
    async with fleet.agent(device) as agent:
        response = await fleet.owner.get(f"/v1/devices/{device.device_id}/screenshot")
    assert response.status_code == 200
    body = response.json()
    assert base64.b64decode(body["image"]) == agent.image
    assert body["width"] == 1920 and body["height"] == 1080
    assert body["stable"] is True
    assert agent.requests[-1]["action"] == "screenshot"
    assert agent.requests[-1]["params"] == {}


async def test_query_parameters_are_typed_and_repeated_keys_make_lists(fleet: LiveFleet) -> None:
    (device,) = await fleet.enroll(1)
    async with fleet.agent(device) as agent:
        response = await fleet.owner.get(
            f"/v1/devices/{device.device_id}/screenshot/region",
            params=[
                ("x", "10"),
                ("y", "20"),
                ("width", "400"),
                ("height", "300"),
                ("wait_stable", "true"),
                ("upload_header", "A: 1"),
                ("upload_header", "B: 2"),
            ],
        )
    assert response.status_code == 200, response.text
    assert response.json()["width"] == 400
    assert agent.requests[-1]["action"] == "screenshot.region"
    assert agent.requests[-1]["params"] == {
        "x": 10,
        "y": 20,
        "width": 400,
        "height": 300,
        "wait_stable": True,
        "upload_header": ["A: 1", "B: 2"],
    }


async def test_a_click_reaches_the_agent_with_its_parameters(fleet: LiveFleet) -> None:
    (device,) = await fleet.enroll(1)
    async with fleet.agent(device) as agent:
        response = await fleet.owner.post(
            f"/v1/devices/{device.device_id}/mouse/click", json={"x": 5, "y": 6, "button": "right"}
        )
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}
    request = agent.requests[-1]
    assert request["action"] == "mouse.click"
    assert request["params"] == {"x": 5, "y": 6, "button": "right"}


async def test_path_parameters_and_204_answers(fleet: LiveFleet) -> None:
    (device,) = await fleet.enroll(1)
    slot = f"/v1/devices/{device.device_id}/clipboard/slots/panel_1"
    seen: list[dict[str, Any]] = []

    def store(params: dict[str, Any]) -> dict[str, Any]:
        seen.append(params)
        return {"name": params["name"], "length": len(params["text"])}

    async with fleet.agent(
        device,
        capabilities=["clipboard", "windows", "mouse"],
        handlers={"clipboard.slot_store": store},
    ) as agent:
        stored = await fleet.owner.put(slot, json={"text": "hello"})
        deleted = await fleet.owner.delete(slot)
        focus = await fleet.owner.post(f"/v1/devices/{device.device_id}/windows/0x4400003/focus")
        sequence = await fleet.owner.post(
            f"/v1/devices/{device.device_id}/sequence",
            params={"lock_timeout_ms": "2500"},
            json={"steps": [{"type": "mouse.click", "x": 1, "y": 2}]},
        )
    assert stored.status_code == 200
    assert stored.json() == {"name": "panel_1", "length": 5}
    assert seen == [{"name": "panel_1", "text": "hello"}]
    assert deleted.status_code == 204
    assert deleted.content == b""
    assert focus.status_code == 200
    assert agent.requests[-2]["params"] == {"id": "0x4400003"}
    assert sequence.status_code == 200
    assert agent.requests[-1]["params"]["lock_timeout_ms"] == 2500
    # The server waits as long as the parameters ask for, on top of its request timeout.
    assert agent.requests[-1]["timeout_ms"] == 5000 + 2500


async def test_an_action_the_device_cannot_do_is_501_before_the_agent(fleet: LiveFleet) -> None:
    (device,) = await fleet.enroll(1)
    async with fleet.agent(device, capabilities=["screen"]) as agent:
        click = await fleet.owner.post(f"/v1/devices/{device.device_id}/mouse/click", json={})
        sequence = await fleet.owner.post(
            f"/v1/devices/{device.device_id}/sequence",
            json={"steps": [{"type": "screenshot"}, {"type": "keyboard.type", "text": "x"}]},
        )
    assert click.status_code == 501
    assert click.json()["error"] == "unsupported"
    assert "mouse" in click.json()["details"]
    assert sequence.status_code == 501
    assert "keyboard" in sequence.json()["details"]
    assert agent.requests_seen == 0


async def test_an_offline_device_is_503_at_once(fleet: LiveFleet) -> None:
    (device,) = await fleet.enroll(1)
    start = time.monotonic()
    response = await fleet.owner.post(
        f"/v1/devices/{device.device_id}/mouse/move", json={"x": 1, "y": 1}
    )
    # At once: not after the request timeout (5 s here) that waiting on an agent would take. A
    # tighter bound would measure the machine's load, not the server.
    assert time.monotonic() - start < fleet.settings.request_timeout_s / 2
    assert response.status_code == 503
    assert response.json()["error"] == "device_offline"


async def test_unknown_devices_and_paths_are_404(fleet: LiveFleet) -> None:
    (device,) = await fleet.enroll(1)
    unknown_device = await fleet.owner.get("/v1/devices/dev_nope/screenshot")
    unknown_path = await fleet.owner.get(f"/v1/devices/{device.device_id}/no/such/thing")
    wrong_method = await fleet.owner.get(f"/v1/devices/{device.device_id}/mouse/click")
    assert unknown_device.status_code == 404
    assert unknown_device.json() == {"error": "not_found", "details": "no device dev_nope"}
    assert unknown_path.status_code == 404
    assert "/no/such/thing" in unknown_path.json()["details"]
    assert wrong_method.status_code == 404
    assert "GET /mouse/click" in wrong_method.json()["details"]


async def test_bad_parameters_are_422_naming_the_fields(fleet: LiveFleet) -> None:
    (device,) = await fleet.enroll(1)
    base = f"/v1/devices/{device.device_id}"
    async with fleet.agent(device) as agent:
        wrong_type = await fleet.owner.post(f"{base}/mouse/click", json={"x": "left", "y": 1})
        unknown = await fleet.owner.post(f"{base}/mouse/move", json={"x": 1, "y": 1, "z": 3})
        missing = await fleet.owner.get(f"{base}/screenshot/region", params={"x": 1})
        not_json = await fleet.owner.post(
            f"{base}/mouse/click", content=b"{nope", headers={"Content-Type": "application/json"}
        )
        not_object = await fleet.owner.post(f"{base}/mouse/click", json=[1, 2])
    for response in (wrong_type, unknown, missing, not_json, not_object):
        assert response.status_code == 422
        assert response.json()["error"] == "invalid"
    assert "x:" in wrong_type.json()["details"]
    assert "z:" in unknown.json()["details"]
    assert "width:" in missing.json()["details"] and "height:" in missing.json()["details"]
    assert "not valid JSON" in not_json.json()["details"]
    assert "JSON object" in not_object.json()["details"]
    assert agent.requests_seen == 0


async def test_roles_and_token_limits(fleet: LiveFleet) -> None:
    (device,) = await fleet.enroll(1, tags=["lab"])
    (other,) = await fleet.enroll(1, tags=["prod"], name_prefix="other")
    viewer = fleet.client(await fleet.login("viewer"))
    read_only = fleet.client(await fleet.api_token("operator", read_only=True))
    lab_only = fleet.client(await fleet.api_token("operator", tags=["lab"]))
    anonymous = fleet.client()
    base = f"/v1/devices/{device.device_id}"
    async with fleet.agent(device) as agent, fleet.agent(other):
        assert (await viewer.get(f"{base}/screenshot")).status_code == 200
        assert (await viewer.post(f"{base}/mouse/click", json={})).status_code == 403
        assert (await read_only.get(f"{base}/screenshot")).status_code == 200
        refused = await read_only.post(f"{base}/keyboard/type", json={"text": "x"})
        assert refused.status_code == 403
        assert "read-only" in refused.json()["details"]
        assert (await lab_only.post(f"{base}/mouse/click", json={})).status_code == 200
        hidden = await lab_only.post(f"/v1/devices/{other.device_id}/mouse/click", json={})
        assert hidden.status_code == 404
        assert (await anonymous.get(f"{base}/screenshot")).status_code == 401
    assert [r["action"] for r in agent.requests] == ["screenshot", "screenshot", "mouse.click"]


async def test_agent_errors_keep_their_status(fleet: LiveFleet) -> None:
    (device,) = await fleet.enroll(1)

    def busy(params: dict[str, Any]) -> Any:
        raise BusyError("a sequence holds the device; retry later")

    async with fleet.agent(device, handlers={"mouse.click": busy}):
        response = await fleet.owner.post(f"/v1/devices/{device.device_id}/mouse/click", json={})
    assert response.status_code == 409
    assert response.json() == {
        "error": "busy",
        "details": "a sequence holds the device; retry later",
    }


async def test_an_unanswered_action_is_504(tmp_path: Path, database_url: str) -> None:
    async with running_fleet(tmp_path, database_url=database_url, request_timeout_s=0.3) as fleet:
        (device,) = await fleet.enroll(1)
        async with fleet.agent(device) as agent:
            agent.stop_answering()
            response = await fleet.owner.post(
                f"/v1/devices/{device.device_id}/mouse/move", json={"x": 1, "y": 1}
            )
    assert response.status_code == 504
    assert response.json()["error"] == "timeout"


async def _audit(fleet: LiveFleet, device: Enrolled) -> list[dict[str, Any]]:
    response = await fleet.owner.get("/v1/audit", params={"device_id": device.device_id})
    response.raise_for_status()
    entries: list[dict[str, Any]] = response.json()["entries"]
    return entries


async def test_every_call_is_audited(fleet: LiveFleet) -> None:
    (device,) = await fleet.enroll(1)
    base = f"/v1/devices/{device.device_id}"
    long_text = "secret-ish " * 50
    async with fleet.agent(device):
        await fleet.owner.post(f"{base}/mouse/click", json={"x": 1, "y": 2})
        await fleet.owner.post(f"{base}/keyboard/type", json={"text": long_text})
        await fleet.owner.post(f"{base}/mouse/click", json={"x": "bad"})
        await fleet.owner.get(f"{base}/windows")

    async def all_there() -> bool:
        return len(await _audit(fleet, device)) >= 4

    await eventually(all_there)
    entries = {e["action"] + ":" + e["result"]: e for e in await _audit(fleet, device)}
    click = entries["mouse.click:ok"]
    assert click["actor"] == "owner"
    assert click["params"] == {"x": 1, "y": 2}
    assert click["duration_ms"] >= 0
    typed = entries["keyboard.type:ok"]["params"]["text"]
    assert typed.startswith(f"<{len(long_text)} chars hmac:") and "secret" not in typed
    assert entries["mouse.click:invalid"]["params"] == {"x": "bad"}
    assert "windows.list:unsupported" in entries


async def test_a_sequence_with_a_failed_step_is_audited_as_failed(fleet: LiveFleet) -> None:
    (device,) = await fleet.enroll(1)

    def sequence(params: dict[str, Any]) -> dict[str, Any]:
        return {"results": [
            {"name": None, "type": "mouse.click", "ok": True, "status": "ok", "duration_ms": 1},
            {"name": "find", "type": "windows.focus", "ok": False, "error": "not_found",
             "details": "no window 0x1", "duration_ms": 1},
        ], "aborted_at": "find", "total_duration_ms": 2}  # fmt: skip

    async with fleet.agent(device, capabilities=["mouse", "windows"],
                           handlers={"sequence": sequence}):  # fmt: skip
        answer = await fleet.owner.post(f"/v1/devices/{device.device_id}/sequence",
                                        json={"steps": [{"type": "mouse.click"}]})  # fmt: skip
    assert answer.status_code == 200  # the answer is the agent's, a 200 all the same

    async def audited() -> list[dict[str, Any]]:
        response = await fleet.owner.get("/v1/audit", params={"action": "sequence"})
        entries: list[dict[str, Any]] = response.json()["entries"]
        return entries

    (entry,) = await eventually(audited)
    assert entry["result"] == "not_found"
    assert entry["details"] == "step find (windows.focus) failed: no window 0x1"
