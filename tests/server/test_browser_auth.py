"""Browser sessions: the sign-in cookies, their attributes, the CSRF rule, the WebSocket Origin
rule with a cookie, sign-out, and the web console's pages and files."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path

import httpx
import pyotp
import pytest
import websockets
from websockets.typing import Origin

from remotehands.server.app import create_app
from remotehands.server.auth import Passwords
from remotehands.server.auth.browser import CSRF_COOKIE, SESSION_COOKIE, csrf_token
from remotehands.server.http.users import create_user
from remotehands.server.http.web_routes import safe_next
from tests.server.conftest import (
    FAST_PASSWORDS,
    OWNER_PASSWORD,
    PASSWORD,
    Fleet,
    make_settings,
    serve,
)

pytestmark = pytest.mark.anyio

OWNER = {"username": "owner", "password": OWNER_PASSWORD}


def _attributes(response: httpx.Response, name: str) -> tuple[str, set[str], dict[str, str]]:
    """The value, flags and attributes (lowercase) of the cookie ``name`` a response sets."""
    for header in response.headers.get_list("set-cookie"):
        first, *rest = [part.strip() for part in header.split(";")]
        key, _, value = first.partition("=")
        if key == name:
            flags = {part.lower() for part in rest if "=" not in part}
            attrs = {
                k.lower(): v for k, _, v in (part.partition("=") for part in rest if "=" in part)
            }
            return value.strip('"'), flags, attrs
    raise AssertionError(f"no Set-Cookie for {name}: {response.headers.get_list('set-cookie')}")


async def _signin(client: httpx.AsyncClient, body: dict[str, str] = OWNER) -> httpx.Response:
    response = await client.post("/v1/auth/web/signin", json=body)
    assert response.status_code == 200, response.text
    return response


async def test_signin_sets_an_httponly_strict_session_cookie_and_a_readable_csrf_cookie(
    server: Fleet,
) -> None:
    response = await _signin(server.client)
    body = response.json()
    assert body["username"] == "owner" and body["role"] == "owner"
    assert "token" not in body  # the session stays out of reach of the page's scripts
    session, flags, attrs = _attributes(response, SESSION_COOKIE)
    assert session.startswith("rhs_")
    assert "httponly" in flags and "secure" not in flags  # plain HTTP here
    assert attrs["samesite"].lower() == "strict" and attrs["path"] == "/"
    assert int(attrs["max-age"]) == server.settings.session_ttl_s
    csrf, flags, attrs = _attributes(response, CSRF_COOKIE)
    assert "httponly" not in flags and attrs["samesite"].lower() == "strict"
    assert attrs["path"] == "/"
    assert csrf == csrf_token(session) and session not in csrf
    # The cookie is a real session of the API.
    me = await server.client.get("/v1/auth/me")
    assert me.status_code == 200 and me.json()["username"] == "owner"


async def test_cookies_are_secure_when_the_request_came_over_https(server: Fleet) -> None:
    transport = httpx.ASGITransport(app=server.app, client=("127.0.0.1", 1234))
    async with httpx.AsyncClient(transport=transport, base_url="https://testserver") as client:
        response = await _signin(client)
        for name in (SESSION_COOKIE, CSRF_COOKIE):
            assert "secure" in _attributes(response, name)[1], name
        logout = await client.post(
            "/v1/auth/logout", headers={"X-CSRF-Token": client.cookies[CSRF_COOKIE]}
        )
        assert logout.status_code == 204
        assert "secure" in _attributes(logout, SESSION_COOKIE)[1]


async def test_login_for_api_clients_sets_no_cookie(server: Fleet) -> None:
    response = await server.client.post("/v1/auth/login", json=OWNER)
    assert response.status_code == 200 and response.json()["token"].startswith("rhs_")
    assert "set-cookie" not in response.headers


async def test_a_cookie_without_the_csrf_header_cannot_change_anything(server: Fleet) -> None:
    await _signin(server.client)
    body = {"name": "from the browser"}
    missing = await server.client.post("/v1/tokens", json=body)
    assert missing.status_code == 403
    assert missing.json()["error"] == "forbidden" and "X-CSRF-Token" in missing.json()["details"]
    wrong = await server.client.post(
        "/v1/tokens", json=body, headers={"X-CSRF-Token": csrf_token("rhs_someone_else")}
    )
    assert wrong.status_code == 403 and "csrf_mismatch" in wrong.json()["details"]
    # A planted rh_csrf cookie does not help: the header must match the session.
    planted = await server.client.post(
        "/v1/users",
        json={"username": "mallory", "password": PASSWORD, "role": "owner"},
        headers={"X-CSRF-Token": "planted"},
    )
    assert planted.status_code == 403
    listed = await server.client.get("/v1/tokens")
    assert listed.status_code == 200 and listed.json()["tokens"] == []
    good = await server.client.post(
        "/v1/tokens", json=body, headers={"X-CSRF-Token": server.client.cookies[CSRF_COOKIE]}
    )
    assert good.status_code == 201, good.text
    assert [t["name"] for t in (await server.client.get("/v1/tokens")).json()["tokens"]] == [
        "from the browser"
    ]


async def test_bearer_requests_need_no_csrf_header_and_win_over_the_cookie(server: Fleet) -> None:
    _, viewer = await server.user("viewer")
    await _signin(server.client)  # the owner's cookie is in the jar
    response = await server.client.get("/v1/auth/me", headers=viewer)
    assert response.json()["role"] == "viewer"
    created = await server.client.post("/v1/tokens", json={"name": "api"}, headers=server.owner)
    assert created.status_code == 201


async def test_a_wrong_password_and_the_rate_limit_apply_to_the_browser(server: Fleet) -> None:
    wrong = await server.client.post(
        "/v1/auth/web/signin", json={"username": "owner", "password": "nope"}
    )
    assert wrong.status_code == 401 and wrong.json()["details"] == "wrong username or password"
    assert "set-cookie" not in wrong.headers
    for _ in range(server.settings.login_rate_limit):
        await server.client.post(
            "/v1/auth/web/signin", json={"username": "owner", "password": "nope"}
        )
    limited = await server.client.post("/v1/auth/web/signin", json=OWNER)
    assert limited.status_code == 429 and limited.headers["retry-after"]
    # The API's login shares the limit.
    assert (await server.client.post("/v1/auth/login", json=OWNER)).status_code == 429


async def test_signout_clears_the_cookies_and_ends_the_session(server: Fleet) -> None:
    response = await _signin(server.client)
    session = _attributes(response, SESSION_COOKIE)[0]
    csrf = server.client.cookies[CSRF_COOKIE]
    refused = await server.client.post("/v1/auth/logout")
    assert refused.status_code == 403  # sign-out changes state: it needs the header too
    out = await server.client.post("/v1/auth/logout", headers={"X-CSRF-Token": csrf})
    assert out.status_code == 204
    for name in (SESSION_COOKIE, CSRF_COOKIE):
        value, _, attrs = _attributes(out, name)
        assert value == "" and int(attrs["max-age"]) <= 0
    assert SESSION_COOKIE not in server.client.cookies
    stale = {"Cookie": f"{SESSION_COOKIE}={session}"}
    assert (await server.client.get("/v1/auth/me", headers=stale)).status_code == 401


async def test_pages_redirect_to_signin_with_next_until_signed_in(server: Fleet) -> None:
    for path, quoted in (("/", "%2F"), ("/admin", "%2Fadmin"),
                         ("/console/dev_1?x=1", "%2Fconsole%2Fdev_1%3Fx%3D1")):  # fmt: skip
        response = await server.client.get(path)
        assert response.status_code == 303, path
        assert response.headers["location"] == f"/signin?next={quoted}"
    signin = await server.client.get("/signin")
    assert signin.status_code == 200 and 'type="password"' in signin.text
    await _signin(server.client)
    for path, marker in (("/", "dashboard.js"), ("/admin", "admin.js"),
                         ("/console/dev_1", "<title>")):  # fmt: skip
        page = await server.client.get(path)
        assert page.status_code == 200 and marker in page.text, path
        assert page.headers["content-type"].startswith("text/html")
        csp = page.headers["content-security-policy"]
        assert "default-src 'self'" in csp and "script-src 'self'" in csp
        assert "img-src 'self' blob: data:" in csp and "connect-src 'self'" in csp
        assert "unsafe-inline" not in csp


async def test_static_files_are_served_with_revalidation(server: Fleet) -> None:
    response = await server.client.get("/static/js/api.js")
    assert response.status_code == 200
    assert "javascript" in response.headers["content-type"]
    assert response.headers["cache-control"] == "no-cache"
    assert "export async function api(" in response.text
    assert "export function wsUrl(" in response.text and "export function me(" in response.text
    etag = response.headers["etag"]
    again = await server.client.get("/static/js/api.js", headers={"If-None-Match": etag})
    assert again.status_code == 304
    css = await server.client.get("/static/css/app.css")
    assert css.status_code == 200 and css.headers["content-type"].startswith("text/css")
    assert (await server.client.get("/static/../web/__init__.py")).status_code == 404


def test_static_files_name_no_other_host() -> None:
    from remotehands.server.web import STATIC_DIR

    for path in STATIC_DIR.rglob("*"):
        if path.suffix in (".html", ".js", ".css"):
            text = path.read_text()
            assert "http://" not in text and "https://" not in text, path
            assert "<script>" not in text, path  # no inline script (CSP forbids it anyway)


async def test_websocket_with_the_cookie_needs_the_servers_own_origin(tmp_path: Path) -> None:
    settings = make_settings(
        tmp_path, f"sqlite+aiosqlite:///{tmp_path / 'ws.db'}",
        public_url="http://fleet.test:8080", allowed_origins=["http://other.test"],
    )  # fmt: skip
    app = create_app(settings, passwords=Passwords(FAST_PASSWORDS))
    async with serve(app) as url, httpx.AsyncClient(base_url=url) as client:
        await create_user(app.state.services, "owner", OWNER_PASSWORD, "owner")
        await _signin(client)
        cookie = {"Cookie": f"{SESSION_COOKIE}={client.cookies[SESSION_COOKIE]}"}
        ws_url = url.replace("http://", "ws://") + "/v1/events"
        for own in (Origin(url), Origin("http://fleet.test:8080")):
            async with websockets.connect(ws_url, origin=own, additional_headers=cookie):
                pass  # accepted
        refusals: list[tuple[Origin | None, str]] = [
            (None, "Origin"), (Origin("http://evil.test"), "origin"),
            (Origin("http://other.test"), "origin"),
        ]  # fmt: skip
        for origin, why in refusals:
            with pytest.raises(websockets.InvalidStatus) as refused:
                async with websockets.connect(ws_url, origin=origin, additional_headers=cookie):
                    pass
            assert refused.value.response.status_code == 403, origin
            assert why in json.loads(refused.value.response.body)["details"]
        # A token from an allowed origin still works: the cookie rule is for the cookie.
        login = await client.post("/v1/auth/login", json=OWNER)
        token = login.json()["token"]
        async with websockets.connect(
            f"{ws_url}?token={token}", origin=Origin("http://other.test")
        ):
            pass


async def test_the_browser_signs_in_with_the_second_factor_where_the_user_has_one(
    server: Fleet,
) -> None:
    _, headers = await server.user("operator", "twofactor")
    enrolled = await server.client.post("/v1/auth/totp/enroll", headers=headers)
    secret = enrolled.json()["secret"]
    code = pyotp.TOTP(secret).at(server.clock())
    confirmed = await server.client.post(
        "/v1/auth/totp/confirm", headers=headers, json={"code": code}
    )
    assert confirmed.status_code == 200, confirmed.text
    login = {"username": "twofactor", "password": PASSWORD}
    without = await server.client.post("/v1/auth/web/signin", json=login)
    assert without.status_code == 401 and "second factor" in without.json()["details"]
    assert "set-cookie" not in without.headers
    wrong = await server.client.post("/v1/auth/web/signin", json={**login, "totp": "000000"})
    assert wrong.status_code == 401 and "set-cookie" not in wrong.headers
    later = server.clock() + timedelta(seconds=60)  # a fresh code, not the one just used
    server.clock.advance(60)
    good = await server.client.post(
        "/v1/auth/web/signin", json={**login, "totp": pyotp.TOTP(secret).at(later)}
    )
    assert good.status_code == 200 and good.json()["username"] == "twofactor"
    assert _attributes(good, SESSION_COOKIE)[0].startswith("rhs_")


async def test_signin_when_signed_in_goes_on_to_next_on_this_server_only(server: Fleet) -> None:
    await _signin(server.client)
    for asked, target in (
        ("%2Fadmin%3Fx%3D1", "/admin?x=1"),
        ("%2F%2Fevil.test%2F", "/"),
        ("https%3A%2F%2Fevil.test%2F", "/"),
        ("%2F%5Cevil.test", "/"),
        ("%2Fsignin", "/"),
    ):
        response = await server.client.get(f"/signin?next={asked}")
        assert response.status_code == 303 and response.headers["location"] == target, asked
    assert safe_next(None) == "/" and safe_next("/console/dev_1") == "/console/dev_1"
