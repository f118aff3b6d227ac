"""OCR and act on a real Xvfb desktop: the x11 driver under the agent's dispatcher, a real Tk
window of known text, real tesseract."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Iterator

import pytest

from remotehands.agent.desktop import VirtualDesktop
from remotehands.agent.dispatch import Dispatcher
from remotehands.drivers.x11 import X11Driver
from remotehands.errors import DeviceTimeoutError, NotFoundError, ValidationError
from remotehands.protocol import results as R
from remotehands.testing.xapps import eventually
from tests.integration.textapp import TextApp, launch_text_app

pytestmark = [pytest.mark.anyio, pytest.mark.x11]


@pytest.fixture
async def hands(desktop: VirtualDesktop) -> AsyncIterator[Dispatcher]:
    driver = X11Driver()
    await driver.start()
    dispatcher = Dispatcher(driver)
    try:
        yield dispatcher
    finally:
        await dispatcher.aclose()
        await driver.close()


@pytest.fixture
def app(desktop: VirtualDesktop) -> Iterator[TextApp]:
    with launch_text_app(x=60, y=60, animate_ms=600) as running:
        yield running


def _inside(box: dict[str, int] | R.TextMatch, area: list[int]) -> bool:
    x, y = (box.x, box.y) if isinstance(box, R.TextMatch) else (box["x"], box["y"])
    ax, ay, aw, ah = area
    return ax - 2 <= x <= ax + aw + 2 and ay - 2 <= y <= ay + ah + 2


async def test_ocr_reads_text_at_every_size_with_its_boxes(hands: Dispatcher, app: TextApp) -> None:
    labels = app.ready["labels"]
    left = min(a[0] for a in labels.values()) - 10
    top = min(a[1] for a in labels.values()) - 10
    region = {"x": left, "y": top, "width": 400, "height": 300}
    result = await hands.call("ocr", region)
    assert isinstance(result, R.OcrResult)
    assert result.upscale == 1.5 and result.region.x == left
    for text, area in labels.items():
        line = next((ln for ln in result.lines if ln.text.lower() == text.lower()), None)
        assert line is not None, (text, [ln.text for ln in result.lines])
        centre = {"x": line.box.x + line.box.width // 2, "y": line.box.y + line.box.height // 2}
        assert _inside(centre, area), (text, line.box, area)
        assert line.confidence > 60
    words = {w.text for w in result.words}
    assert {"Alpha", "Bravo", "Charlie", "Delta"} <= words
    # the whole screen, scaled up 1.5x: every size
    whole = await hands.call("ocr", {})
    assert isinstance(whole, R.OcrResult) and whole.region.width == 1280
    assert whole.upscale == 1.5
    for text in labels:
        assert text in whole.text, (text, whole.text)


async def test_find_text_is_fuzzy_and_case_insensitive_and_not_found_names_the_closest(
    hands: Dispatcher, app: TextApp
) -> None:
    found = await hands.call("ocr.find", {"text": "bravo EIGHT four"})
    assert isinstance(found, R.TextMatches) and len(found.matches) == 1
    assert _inside(found.matches[0], app.ready["labels"]["Bravo eight four"])
    typo = await hands.call("ocr.find", {"text": "Charlee nine two"})
    assert isinstance(typo, R.TextMatches) and typo.matches[0].score < 1.0
    with pytest.raises(NotFoundError, match=r"'Zulu forty' is not on the screen.*closest"):
        await hands.call("ocr.find", {"text": "Zulu forty"})


async def test_click_text_presses_the_button_and_refuses_an_ambiguous_phrase(
    hands: Dispatcher, app: TextApp
) -> None:
    with pytest.raises(ValidationError, match=r"times.*index"):
        await hands.call("ocr.click", {"text": "nine", "min_score": 0.9})
    clicked = await hands.call("ocr.click", {"text": "Apply"})
    assert isinstance(clicked, R.TextClicked)
    assert _inside(clicked.clicked, app.ready["apply"])
    await eventually(lambda: app.seen("applied"))
    waited = await hands.call("ocr.wait", {"text": "Apply", "gone": True, "timeout_ms": 5000})
    assert isinstance(waited, R.TextWaited) and not waited.present


async def test_wait_for_text_times_out_with_what_it_saw(hands: Dispatcher, app: TextApp) -> None:
    entry = app.ready["entry"]
    region = {"x": entry[0], "y": entry[1], "width": entry[2], "height": entry[3]}
    with pytest.raises(DeviceTimeoutError, match="did not appear within 300 ms"):
        await hands.call("ocr.wait", {"text": "hello there", "timeout_ms": 300, **region})
    waited = await hands.call(
        "act", {"steps": [{"type": "keyboard.type", "text": "hello there"}], "screenshot": False}
    )
    assert isinstance(waited, R.ActResult) and waited.changed == [True]
    seen = await hands.call("ocr.wait", {"text": "hello there", "timeout_ms": 5000, **region})
    assert isinstance(seen, R.TextWaited) and seen.present


async def test_act_returns_once_the_animation_stops_with_the_regions_that_changed(
    hands: Dispatcher, app: TextApp
) -> None:
    x, y = app.centre("animate")
    started = time.monotonic()
    result = await hands.call(
        "act",
        {"steps": [{"type": "mouse.move", "x": x, "y": y}, {"type": "mouse.click"}],
         "scale": 0.5},
    )  # fmt: skip
    returned = time.monotonic()
    assert isinstance(result, R.ActResult)
    assert result.settled and not result.timed_out
    animating, stopped = app.seen("animating"), app.seen("stopped")
    assert animating is not None and stopped is not None  # it answered after the animation
    animation = stopped["at"] - animating["at"]
    assert animation >= 0.55
    timing = (result.settle_ms, result.polls, result.total_duration_ms, returned - stopped["at"],
              stopped["at"] - started, animation)  # fmt: skip
    # from the click's effect (the animation's start) to the answer: the animation plus less
    # than 300 ms; the click itself may wait on a loaded machine, so the clock starts there
    assert returned - animating["at"] < animation + 0.3, timing
    assert [r.ok for r in result.results] == [True, True]
    assert result.changed[1] is True
    cx, cy, cw, ch = app.ready["canvas"]
    assert any(
        r.x <= cx + cw // 2 < r.x + r.width and r.y <= cy + ch // 2 < r.y + r.height
        for r in result.changed_regions
    ), result.changed_regions
    shot = result.screenshot
    assert shot is not None and shot.image is not None and shot.image[:2] == b"\xff\xd8"
    assert (shot.width, shot.height, shot.scale) == (640, 400, 0.5)


async def test_act_that_never_settles_times_out_with_the_last_screenshot(
    hands: Dispatcher, app: TextApp
) -> None:
    x, y = app.centre("animate")
    result = await hands.call(
        "act",
        {"steps": [{"type": "mouse.click", "x": x, "y": y}], "timeout_ms": 250,
         "stable_window_ms": 200},
    )  # fmt: skip
    assert isinstance(result, R.ActResult)
    assert result.timed_out and not result.settled
    assert result.screenshot is not None and result.screenshot.image
    # a step without a visible effect says so
    await eventually(lambda: app.seen("stopped"))
    quiet = await hands.call(
        "act", {"steps": [{"type": "mouse.move", "x": 5, "y": 790}], "screenshot": False,
                "timeout_ms": 3000},
    )  # fmt: skip
    assert isinstance(quiet, R.ActResult) and quiet.settled
    assert quiet.changed == [False]
    # at most the entry's blinking caret, one cell wide
    assert all(r.width <= 16 and r.height <= 48 for r in quiet.changed_regions)
    assert quiet.screenshot is None
