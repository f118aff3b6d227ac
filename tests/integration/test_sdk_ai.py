"""The SDK's async and sync faces on the new actions, through a real fleet server to an x11
agent: typed results (``as_model``) and the same exception tree as the agent raises."""

from __future__ import annotations

import asyncio

import pytest

from remotehands.client import AsyncFleetClient, FleetClient
from remotehands.client.results import as_model
from remotehands.errors import DeviceTimeoutError, ForbiddenError, NotFoundError, ValidationError
from remotehands.protocol import results as R
from tests.integration.textapp import TextApp
from tests.integration.x11fleet import DEVICE, Fleet, app_fixture, fleet_fixture  # noqa: F401

pytestmark = [pytest.mark.anyio, pytest.mark.x11, pytest.mark.slow]


async def test_the_async_sdk_reads_clicks_and_acts_with_typed_results(
    fleet: Fleet, app: TextApp
) -> None:
    async with AsyncFleetClient(fleet.server.url, token=fleet.operator) as client:
        device = client.device(DEVICE)
        read = as_model("ocr", await device.ocr(region=(0, 0, 640, 400)))
        assert isinstance(read, R.OcrResult) and "Bravo eight four" in read.text
        found = as_model("find_text", await device.find_text("charlie nine two"))
        assert isinstance(found, R.TextMatches) and len(found.matches) == 1
        with pytest.raises(NotFoundError, match="closest"):
            await device.find_text("Zulu forty")
        with pytest.raises(ValidationError, match="index"):
            await device.click_text("nine", min_score=0.9)
        with pytest.raises(DeviceTimeoutError, match="did not appear"):
            await device.wait_text("never shown here", timeout_ms=200)
        ax, ay = app.centre("animate")
        acted = await device.act([{"type": "click", "x": ax, "y": ay}], scale=0.25)
        result = as_model("act", acted)
        assert isinstance(result, R.ActResult) and result.settled
        assert result.screenshot is not None and result.screenshot.width == 320
        assert isinstance(acted["screenshot"]["image"], bytes)


async def test_the_sync_sdk_is_the_same_over_the_server(fleet: Fleet, app: TextApp) -> None:
    def work() -> R.TextClicked:
        with FleetClient(fleet.server.url, token=fleet.operator) as client:
            device = client.device(DEVICE)
            with pytest.raises(NotFoundError, match="not on the screen"):
                device.find_text("Zulu forty")
            clicked = as_model("click_text", device.click_text("Apply"))
            assert isinstance(clicked, R.TextClicked)
            return clicked

    # the server runs on this event loop: the blocking client runs in a thread
    clicked = await asyncio.to_thread(work)
    x, y, w, h = app.ready["apply"]
    assert x <= clicked.clicked.x <= x + w and y <= clicked.clicked.y <= y + h
    await asyncio.to_thread(app.wait, "applied")


async def test_the_sdk_over_the_servers_device_websocket(fleet: Fleet, app: TextApp) -> None:
    async with AsyncFleetClient(fleet.server.url, token=fleet.operator, websocket=True) as client:
        device = client.device(DEVICE)
        ex, ey = app.centre("entry")
        assert await device.click(ex, ey) == {"status": "ok"}
        assert await device.type("socket typed") == {"status": "ok"}
        seen = as_model("wait_for_text", await device.wait_text("socket typed", timeout_ms=5000))
        assert isinstance(seen, R.TextWaited) and seen.present
        with pytest.raises(NotFoundError, match="closest"):
            await device.find_text("Zulu forty")
        shot = await device.screenshot(scale=0.5)
        assert shot.image[:2] == b"\xff\xd8" and shot.width == 640
    audit = (await fleet.server.http.get("/v1/audit", params={"action": "keyboard.type"})).json()
    assert any(e["result"] == "ok" for e in audit["entries"])  # audited like HTTP calls
    async with AsyncFleetClient(fleet.server.url, token=fleet.read_only, websocket=True) as viewer:
        device = viewer.device(DEVICE)
        assert (await device.cursor_position())["x"] >= 0
        with pytest.raises(ForbiddenError):
            await device.click(1, 1)
    # Each action is audited once its reply is on its way: the refused one too.
    clicks = (await fleet.server.http.get("/v1/audit", params={"action": "mouse.click"})).json()
    assert {"ok", "forbidden"} <= {e["result"] for e in clicks["entries"]}
