"""The fleet dashboard: devices live from the event stream, thumbnails, filters, links."""

from __future__ import annotations

import re
import time

from playwright.sync_api import WebSocketRoute, expect

from tests.web.conftest import (
    FAKE_DEVICE,
    THUMBNAIL_OF_A_DEVICE_GOING_AWAY,
    X11_DEVICE,
    PageFactory,
    PageWatch,
    WebFleet,
)


def test_the_x11_device_is_online_with_a_thumbnail_and_its_name_opens_its_console(
    page_as: PageFactory, web: WebFleet
) -> None:
    page = page_as("viewer", path="/")
    row = page.locator("#devices tbody tr", has_text=X11_DEVICE)
    expect(row.locator(".status")).to_have_text("online")
    expect(row.locator(".type")).to_have_text("desktop")
    expect(row.locator(".thumb img")).to_have_attribute("src", re.compile(r"^data:image/jpeg"))
    expect(page.locator("#live")).to_have_text("live")
    row.get_by_role("link", name=X11_DEVICE).click()
    expect(page).to_have_url(f"{web.url}/console/{web.devices[X11_DEVICE]}")


def test_filters_and_sorting(page_as: PageFactory) -> None:
    page = page_as("operator", path="/")
    names = page.locator("#devices tbody td.name")
    expect(names).to_have_count(2)
    page.get_by_label("Search").fill("kvm")
    expect(names).to_have_text([FAKE_DEVICE])
    page.get_by_label("Search").fill("")
    page.get_by_role("button", name="Name").click()  # ascending by default: now descending
    expect(names).to_have_text(sorted([X11_DEVICE, FAKE_DEVICE], reverse=True))
    expect(page.locator("th[data-sort=name]")).to_have_attribute("aria-sort", "descending")
    page.get_by_label("Status").select_option("offline")
    expect(names).to_have_count(0)
    expect(page.locator("#empty")).to_be_visible()
    assert "status=offline" in page.url


def test_a_new_agent_appears_without_a_reload_and_goes_offline_when_killed(
    page_as: PageFactory, web: WebFleet, web_watch: PageWatch
) -> None:
    web_watch.allow(THUMBNAIL_OF_A_DEVICE_GOING_AWAY)
    page = page_as("viewer", path="/")
    expect(page.locator("#live")).to_have_text("live")
    page.evaluate("window.__same_page = true")
    created = web.http("owner").post(
        "/v1/devices/enrollment", json={"suggested_name": "late-agent", "suggested_tags": ["late"]}
    )
    assert created.status_code == 201, created.text
    agent = web.agent_process(created.json()["token"], "late-agent")
    try:
        row = page.locator("#devices tbody tr", has_text="late-agent")
        expect(row.locator(".status")).to_have_text("online", timeout=20_000)
        expect(row.locator(".tags")).to_have_text("late")
        agent.kill()
        expect(row.locator(".status")).to_have_text("offline", timeout=15_000)
        assert page.evaluate("window.__same_page") is True  # no reload
    finally:
        agent.kill()
        device = web.device("late-agent")
        if device is not None:
            web.http("owner").delete(f"/v1/devices/{device['id']}")


def test_a_lost_event_stream_reconnects_and_updates_keep_coming(
    page_as: PageFactory, web: WebFleet
) -> None:
    streams: list[WebSocketRoute] = []

    def relay(route: WebSocketRoute) -> None:
        streams.append(route)
        route.connect_to_server()

    page = page_as("viewer")
    page.context.route_web_socket(re.compile(r"/v1/events$"), relay)
    page.goto("/")
    live = page.locator("#live")
    expect(live).to_have_text("live")
    assert len(streams) == 1
    streams[0].close(code=1011, reason="cut by the test")
    deadline = time.monotonic() + 10
    while len(streams) < 2 and time.monotonic() < deadline:
        page.wait_for_timeout(50)  # lets Playwright deliver the reconnection
    assert len(streams) == 2, "the dashboard did not reconnect its event stream"
    expect(live).to_have_text("live")
    device = web.devices[FAKE_DEVICE]
    owner = web.http("owner")
    try:
        assert owner.patch(f"/v1/devices/{device}", json={"tags": ["after-cut"]}).is_success
        row = page.locator("#devices tbody tr", has_text=FAKE_DEVICE)
        expect(row.locator(".tags")).to_have_text("after-cut")
    finally:
        owner.patch(f"/v1/devices/{device}", json={"tags": []})
