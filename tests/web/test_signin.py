"""Signing in and out in the browser, and the pages it opens."""

from __future__ import annotations

import re
from urllib.parse import quote

import httpx
from playwright.sync_api import Page, expect

from tests.web.conftest import (
    PASSWORDS,
    X11_DEVICE,
    PageFactory,
    PageWatch,
    WebFleet,
    sign_in,
)


def test_sign_in_with_enter_returns_to_next_and_shows_the_x11_device(
    page_as: PageFactory, web: WebFleet
) -> None:
    page: Page = page_as(None)
    page.goto("/admin")
    expect(page).to_have_url(f"{web.url}/signin?next=%2Fadmin")
    sign_in(page, "operator", PASSWORDS["operator"])
    expect(page).to_have_url(f"{web.url}/admin")
    page.goto("/")
    row = page.locator("#devices tbody tr", has_text=X11_DEVICE)
    expect(row.locator(".status")).to_have_text("online")
    expect(page.locator("#who")).to_have_text("operator (operator)")


def test_a_wrong_password_says_so(page_as: PageFactory, web_watch: PageWatch) -> None:
    web_watch.allow("status of 401")
    page = page_as(None, path="/signin")
    sign_in(page, "viewer", "not the password")
    expect(page.get_by_role("alert")).to_have_text("Wrong username or password.")
    expect(page.get_by_label("Password")).to_be_focused()


def test_the_rate_limit_says_when_to_try_again(
    page_as: PageFactory, web: WebFleet, web_watch: PageWatch
) -> None:
    web_watch.allow("status of 40[19]|status of 429")
    created = web.http("owner").post(
        "/v1/users", json={"username": "locked-out", "password": "locked-password-1"}
    )
    assert created.status_code == 201, created.text
    wrong = {"username": "locked-out", "password": "wrong"}
    limit = web.services.settings.login_rate_limit
    with httpx.Client(base_url=web.url) as client:
        for _ in range(limit):
            assert client.post("/v1/auth/web/signin", json=wrong).status_code == 401
    page = page_as(None, path="/signin")
    page.get_by_label("Username").fill("locked-out")
    page.get_by_label("Password").fill("locked-password-1")
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("alert")).to_have_text(
        re.compile(r"^Too many failed sign-ins\. Try again in \d+ s\.$")
    )
    expect(page).to_have_url(f"{web.url}/signin")


def test_next_leads_only_to_this_servers_pages(page_as: PageFactory, web: WebFleet) -> None:
    for target in ("//evil.test/x", "https://evil.test/", "/\\evil.test", "javascript:alert(1)"):
        page = page_as(None, path="/signin?next=" + quote(target, safe=""))
        sign_in(page, "viewer", PASSWORDS["viewer"])
        expect(page).to_have_url(f"{web.url}/")
        page.close()


def test_the_keyboard_reaches_a_device_and_opens_its_console(
    page_as: PageFactory, web: WebFleet
) -> None:
    page = page_as("operator", path="/")
    link = page.get_by_role("link", name=X11_DEVICE)
    expect(link).to_be_visible()
    for _ in range(30):
        page.keyboard.press("Tab")
        if link.evaluate("node => node === document.activeElement"):
            break
    else:
        raise AssertionError("Tab never reached the device's link")
    outline = link.evaluate("node => getComputedStyle(node).outlineStyle")
    assert outline != "none"  # the focus is visible
    page.keyboard.press("Enter")
    expect(page).to_have_url(f"{web.url}/console/{web.devices[X11_DEVICE]}")


def test_signing_out_ends_the_session(
    page_as: PageFactory, web: WebFleet, web_watch: PageWatch
) -> None:
    # the dashboard's requests in flight as the session ends are answered 401, and its event
    # stream reconnecting meanwhile is refused (the browser logs each as a console error): that
    # is signing out working, not a fault of the page
    web_watch.allow("status of 401|/v1/events' failed: HTTP Authentication failed")
    page = page_as("viewer", path="/")
    cookies = {c["name"]: c["value"] for c in page.context.cookies()}
    page.get_by_role("button", name="Sign out").click()
    expect(page).to_have_url(f"{web.url}/signin")
    assert not [c for c in page.context.cookies() if c["name"] in ("rh_session", "rh_csrf")]
    stale = httpx.get(
        f"{web.url}/v1/auth/me", headers={"Cookie": f"rh_session={cookies['rh_session']}"}
    )
    assert stale.status_code == 401
    page.goto("/")
    expect(page).to_have_url(f"{web.url}/signin?next=%2F")
