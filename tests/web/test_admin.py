"""Administration in the browser: enrollment (install command), users, API tokens, the audit
log; what a viewer sees; an expired session keeps the page."""

from __future__ import annotations

import re

import httpx
from playwright.sync_api import expect

from tests.web.conftest import (
    PASSWORDS,
    THUMBNAIL_OF_A_DEVICE_GOING_AWAY,
    PageFactory,
    PageWatch,
    WebFleet,
    sign_in,
)


def test_the_enrollment_dialogs_command_enrolls_an_agent_that_appears_live(
    page_as: PageFactory, web: WebFleet, web_watch: PageWatch
) -> None:
    web_watch.allow(THUMBNAIL_OF_A_DEVICE_GOING_AWAY)
    # the cleanup deletes the device: a row refresh already on its way then finds it gone
    web_watch.allow(r"status of 404 .*/v1/devices/dev_[0-9a-f]+'")
    dashboard = page_as("admin", path="/")
    expect(dashboard.locator("#live")).to_have_text("live")
    admin = dashboard.context.new_page()
    admin.goto("/admin")
    admin.get_by_role("button", name="Add a device…").click()
    dialog = admin.get_by_role("dialog")
    dialog.get_by_label("Name (optional)").fill("dialog-agent")
    dialog.get_by_label("Tags (optional, comma-separated)").fill("lab, web")
    dialog.get_by_role("button", name="Create the install command").click()
    command = dialog.locator("#enroll-command")
    expect(command).to_contain_text(f"curl -sSL {web.url}/install | sh -s -- --token ekvent_")
    dialog.get_by_role("button", name="Copy").click()
    expect(dialog.locator("#enroll-copied")).not_to_be_empty()
    token = re.search(r"--token (\S+)", command.inner_text())
    assert token is not None
    agent = web.agent_process(token.group(1), "dialog-agent")
    try:
        row = dashboard.locator("#devices tbody tr", has_text="dialog-agent")
        expect(row.locator(".status")).to_have_text("online", timeout=20_000)
        expect(row.locator(".tags .tag")).to_have_text(["lab", "web"])
        agent.kill()
        expect(row.locator(".status")).to_have_text("offline", timeout=15_000)
    finally:
        agent.kill()
        device = web.device("dialog-agent")
        if device is not None:
            web.http("owner").delete(f"/v1/devices/{device['id']}")


def test_users_are_created_given_a_role_and_deleted(page_as: PageFactory, web: WebFleet) -> None:
    page = page_as("owner", path="/admin")
    section = page.locator("#users-section")
    section.get_by_label("Username").fill("newbie")
    section.get_by_label("Password").fill("newbie-password-1")
    section.get_by_label("Role", exact=True).select_option("operator")
    section.get_by_role("button", name="Create user").click()
    row = section.locator("tr[data-username=newbie]")
    expect(row.get_by_label("role of newbie")).to_have_value("operator")
    # the change is saved, then the table is drawn again from the server's list: the Delete
    # button below must be the new table's, not one a redraw replaces between its two clicks
    with (
        page.expect_response(lambda r: r.request.method == "GET" and r.url.endswith("/v1/users")),
        page.expect_response(lambda r: r.request.method == "PATCH") as patched,
    ):
        row.get_by_label("role of newbie").select_option("viewer")
    assert patched.value.status == 200
    users = web.http("owner").get("/v1/users").json()["users"]
    assert [u["role"] for u in users if u["username"] == "newbie"] == ["viewer"]
    row.get_by_role("button", name="Delete").click()
    row.get_by_role("button", name="Delete newbie?").click()
    expect(row).to_have_count(0)
    users = web.http("owner").get("/v1/users").json()["users"]
    assert "newbie" not in [u["username"] for u in users]


def test_api_tokens_are_shown_once_work_and_are_revoked(
    page_as: PageFactory, web: WebFleet
) -> None:
    page = page_as("operator", path="/admin")
    section = page.locator("#tokens-section")
    section.get_by_label("Name").fill("ci bot")
    section.get_by_label("Role").select_option("viewer")
    section.get_by_label("read-only").check()
    section.get_by_label("Tags").fill("lab")
    section.get_by_role("button", name="Create token").click()
    secret = section.locator("#token-secret-value")
    expect(secret).to_have_text(re.compile(r"^rht_"))
    token = secret.inner_text()
    me = httpx.get(f"{web.url}/v1/auth/me", headers={"Authorization": f"Bearer {token}"})
    assert me.status_code == 200
    assert (me.json()["role"], me.json()["read_only"], me.json()["tags"]) == (
        "viewer", True, ["lab"])  # fmt: skip
    row = section.locator("tbody tr", has_text="ci bot")
    expect(row).to_contain_text("read-only; tags: lab")
    section.get_by_role("button", name="Done").click()
    expect(secret).to_be_hidden()
    page.reload()
    expect(section.locator("tbody tr", has_text="ci bot")).to_have_count(1)
    assert "rht_" not in page.content().replace(token[:8], "")  # the secret is not shown again
    section.locator("tbody tr", has_text="ci bot").get_by_role("button", name="Revoke").click()
    section.get_by_role("button", name="Revoke ci bot?").click()
    expect(section.locator("tbody tr", has_text="ci bot")).to_have_count(0)
    again = httpx.get(f"{web.url}/v1/auth/me", headers={"Authorization": f"Bearer {token}"})
    assert again.status_code == 401


def test_the_audit_log_filters_and_pages(page_as: PageFactory, web: WebFleet) -> None:
    admin = web.http("admin")
    for index in range(27):
        created = admin.post("/v1/tokens", json={"name": f"audit {index}"})
        assert created.status_code == 201
        admin.delete(f"/v1/tokens/{created.json()['id']}")
    page = page_as("owner", path="/admin")
    section = page.locator("#audit-section")
    section.get_by_label("Actor").fill("admin")
    section.get_by_label("Action").fill("token.create")
    section.get_by_role("button", name="Filter").click()
    rows = section.locator("tbody tr")
    expect(rows).to_have_count(25)
    expect(rows.locator("td:nth-child(3)")).to_have_text(["token.create"] * 25)
    expect(section.get_by_role("button", name="Newer")).to_be_disabled()
    section.get_by_role("button", name="Older").click()
    expect(section.locator("#audit-page")).to_have_text("page 2")
    query = {"actor": "admin", "action": "token.create", "limit": "1000"}
    total = len(web.http("owner").get("/v1/audit", params=query).json()["entries"])
    expect(rows).to_have_count(min(25, total - 25))
    section.get_by_role("button", name="Newer").click()
    expect(rows).to_have_count(25)
    section.get_by_label("Action").fill("no.such.action")
    section.get_by_role("button", name="Filter").click()
    expect(rows).to_have_text(["No entries."])


def test_a_viewer_sees_no_admin_controls_and_the_server_refuses_them(
    page_as: PageFactory, web: WebFleet, web_watch: PageWatch
) -> None:
    page = page_as("viewer", path="/admin")
    expect(page.locator("#tokens-section")).to_be_visible()
    expect(page.get_by_role("button", name="Add a device…")).to_be_hidden()
    for section in ("#enroll-section", "#users-section", "#audit-section"):
        expect(page.locator(section)).to_be_hidden()
    expect(page.locator("#token-role option")).to_have_text(["viewer"])
    web_watch.allow("status of 403")
    refused = page.evaluate(
        """async () => {
            const { api } = await import("/static/js/api.js");
            const codes = [];
            for (const [method, path, body] of [
                ["POST", "/v1/devices/enrollment", {}],
                ["GET", "/v1/users", undefined],
                ["GET", "/v1/audit", undefined],
                ["POST", "/v1/users", {username: "x", password: "password-1234"}],
            ]) {
                try { await api(method, path, body); codes.push("allowed"); }
                catch (err) { codes.push(err.status + " " + err.code); }
            }
            return codes;
        }"""
    )
    assert refused == ["403 forbidden"] * 4


def test_a_cookie_without_the_csrf_header_cannot_change_anything(
    page_as: PageFactory, web: WebFleet, web_watch: PageWatch
) -> None:
    web_watch.allow("status of 403")
    page = page_as("operator", path="/")
    answers = page.evaluate(
        """async () => {
            const bare = await fetch("/v1/tokens", {method: "POST",
                headers: {"Content-Type": "application/json"},
                body: JSON.stringify({name: "csrf-less"})});
            const { api } = await import("/static/js/api.js");
            const made = await api("POST", "/v1/tokens", {name: "with csrf"});
            return [bare.status, (await bare.json()).details, made.name];
        }"""
    )
    assert answers[0] == 403 and "X-CSRF-Token" in answers[1] and answers[2] == "with csrf"
    names = [t["name"] for t in web.http("operator").get("/v1/tokens").json()["tokens"]]
    assert "with csrf" in names and "csrf-less" not in names
    # The same with plain httpx against the real server.
    with httpx.Client(base_url=web.url) as client:
        signed = client.post(
            "/v1/auth/web/signin", json={"username": "operator", "password": PASSWORDS["operator"]}
        )
        assert signed.status_code == 200
        assert client.post("/v1/tokens", json={"name": "x"}).status_code == 403
        good = client.post(
            "/v1/tokens",
            json={"name": "httpx"},
            headers={"X-CSRF-Token": client.cookies["rh_csrf"]},
        )
        assert good.status_code == 201, good.text


def test_an_expired_session_returns_to_signin_and_back_to_the_page(
    page_as: PageFactory, web: WebFleet, web_watch: PageWatch
) -> None:
    web_watch.allow("status of 401")
    page = page_as("operator", path="/admin?tab=tokens")
    expect(page.locator("#tokens-section")).to_be_visible()
    # the page's script is running (it names the user once it has its session), so the form
    # below is handled by it and not submitted by the browser itself
    expect(page.locator("#who")).to_have_text("operator (operator)")
    cookies = {c["name"]: c["value"] for c in page.context.cookies()}
    ended = httpx.post(
        f"{web.url}/v1/auth/logout",
        headers={
            "Cookie": f"rh_session={cookies['rh_session']}",
            "X-CSRF-Token": cookies["rh_csrf"],
        },
    )
    assert ended.status_code == 204
    page.locator("#tokens-section").get_by_label("Name").fill("after expiry")
    page.get_by_role("button", name="Create token").click()
    expect(page).to_have_url(f"{web.url}/signin?next=%2Fadmin%3Ftab%3Dtokens")
    sign_in(page, "operator", PASSWORDS["operator"])
    expect(page).to_have_url(f"{web.url}/admin?tab=tokens")
    expect(page.locator("#who")).to_have_text("operator (operator)")
