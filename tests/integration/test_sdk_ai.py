"""The SDK's async and sync faces on the new actions, through a real fleet server to an x11
agent: typed results (``as_model``) and the same exception tree as the agent raises."""

from __future__ import annotations

import asyncio

import pytest

from remotehands.client import AsyncFleetClient, FleetClient
from remotehands.client.results import as_model
from remotehands.errors import DeviceTimeoutError, NotFoundError, ValidationError
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
