"""Signing in and out in the browser, and the pages it opens."""

from __future__ import annotations

from playwright.sync_api import Page, expect

from tests.web.conftest import PASSWORDS, X11_DEVICE, PageFactory, PageWatch, WebFleet


def test_sign_in_with_enter_returns_to_next_and_shows_the_x11_device(
    page_as: PageFactory, web: WebFleet
) -> None:
    page: Page = page_as(None)
    page.goto("/admin")
    expect(page).to_have_url(f"{web.url}/signin?next=%2Fadmin")
    page.get_by_label("Username").fill("operator")
    page.get_by_label("Password").fill(PASSWORDS["operator"])
    page.get_by_label("Password").press("Enter")
    expect(page).to_have_url(f"{web.url}/admin")
    page.goto("/")
    row = page.locator("#devices tbody tr", has_text=X11_DEVICE)
    expect(row.locator(".status")).to_have_text("online")
    expect(page.locator("#who")).to_have_text("operator (operator)")


def test_a_wrong_password_says_so(page_as: PageFactory, web_watch: PageWatch) -> None:
    web_watch.allow("status of 401")
    page = page_as(None, path="/signin")
    page.get_by_label("Username").fill("viewer")
    page.get_by_label("Password").fill("not the password")
    page.get_by_label("Password").press("Enter")
    expect(page.get_by_role("alert")).to_have_text("Wrong username or password.")
    expect(page.get_by_label("Password")).to_be_focused()
