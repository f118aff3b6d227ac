"""Two-factor sign-in with real TOTP codes (and a real clock window), and the audit log's hash
chain: an edited row is caught, concurrent writes keep one chain, the log exports as JSON lines."""

from __future__ import annotations

import asyncio
import itertools
import json
from datetime import timedelta

import pyotp
import pytest
from sqlalchemy import update

from remotehands.server.db.models import AuditEntry
from tests.server.conftest import PASSWORD, Fleet

pytestmark = pytest.mark.anyio


async def _enable_totp(server: Fleet, headers: dict[str, str]) -> tuple[str, list[str]]:
    enrolled = await server.client.post("/v1/auth/totp/enroll", headers=headers)
    assert enrolled.status_code == 200, enrolled.text
    secret = enrolled.json()["secret"]
    assert enrolled.json()["otpauth_uri"].startswith("otpauth://totp/remotehands:")
    code = pyotp.TOTP(secret).at(server.clock())
    confirmed = await server.client.post("/v1/auth/totp/confirm", headers=headers,
                                         json={"code": code})  # fmt: skip
    assert confirmed.status_code == 200, confirmed.text
    codes: list[str] = confirmed.json()["recovery_codes"]
    assert len(codes) == 10
    return secret, codes


async def test_totp_sign_in_within_the_clock_window(server: Fleet) -> None:
    _, headers = await server.user("operator", username="tina")
    secret, recovery = await _enable_totp(server, headers)
    totp = pyotp.TOTP(secret)
    login = {"username": "tina", "password": PASSWORD}
    missing = await server.client.post("/v1/auth/login", json=login)
    assert missing.status_code == 401 and "second factor" in missing.json()["details"]
    now = server.clock()
    good = await server.client.post("/v1/auth/login", json={**login, "totp": totp.at(now)})
    assert good.status_code == 200
    # one 30 s step either side is taken, two are not
    late = totp.at(now - timedelta(seconds=30))
    assert (await server.client.post("/v1/auth/login",
                                     json={**login, "totp": late})).status_code == 200  # fmt: skip
    stale = totp.at(now - timedelta(seconds=90))
    wrong = await server.client.post("/v1/auth/login", json={**login, "totp": stale})
    assert wrong.status_code == 401
    entries = await server.audit(action="auth.login", result="unauthorized")
    assert any("wrong TOTP code" in (e["details"] or "") for e in entries)
    # a recovery code works once
    first = await server.client.post("/v1/auth/login", json={**login, "totp": recovery[0]})
    assert first.status_code == 200
    again = await server.client.post("/v1/auth/login", json={**login, "totp": recovery[0]})
    assert again.status_code == 401
    # the owner of the second factor turns it off with a code
    off = await server.client.post("/v1/auth/totp/disable", headers=headers,
                                   json={"code": totp.at(server.clock())})  # fmt: skip
    assert off.status_code == 204
    assert (await server.client.post("/v1/auth/login", json=login)).status_code == 200


@pytest.fixture
def settings_overrides() -> dict[str, object]:
    return {"totp_required_roles": ["admin"]}


async def test_a_role_that_requires_totp_reaches_only_its_setup(server: Fleet) -> None:
    _, headers = await server.user("admin", username="ada")
    blocked = await server.client.get("/v1/devices", headers=headers)
    assert blocked.status_code == 403 and "two-factor" in blocked.json()["details"]
    await _enable_totp(server, headers)
    secret_login = await server.client.post("/v1/auth/login", json={
        "username": "ada", "password": PASSWORD})  # fmt: skip
    assert secret_login.status_code == 401  # now the code is needed


async def test_an_edited_audit_row_is_caught(server: Fleet) -> None:
    for i in range(5):
        await server.services.audit.record(actor="owner", actor_kind="user",
                                           action="test.step", details=f"step {i}")  # fmt: skip
    verified = await server.client.get("/v1/audit/verify", headers=server.owner)
    assert verified.status_code == 200
    body = verified.json()
    assert body["ok"] is True and body["first_bad"] is None and body["entries"] >= 5
    target = (await server.audit(action="test.step"))[2]  # newest first: the third newest
    async with server.services.db.session() as db:
        await db.execute(update(AuditEntry).where(AuditEntry.id == target["id"])
                         .values(details="nothing happened"))  # fmt: skip
        await db.commit()
    broken = (await server.client.get("/v1/audit/verify", headers=server.owner)).json()
    assert broken == {"ok": False, "entries": broken["entries"], "first_bad": target["id"]}


async def test_concurrent_writes_keep_one_chain_and_export_as_json_lines(server: Fleet) -> None:
    await asyncio.gather(*(
        server.services.audit.record(actor="owner", actor_kind="user", action="test.burst",
                                     details=str(i), wait=i % 2 == 0)
        for i in range(60)
    ))  # fmt: skip
    verified = (await server.client.get("/v1/audit/verify", headers=server.owner)).json()
    assert verified["ok"] is True and verified["entries"] >= 60
    exported = await server.client.get("/v1/audit/export", headers=server.owner)
    assert exported.headers["content-type"].startswith("application/x-ndjson")
    rows = [json.loads(line) for line in exported.text.splitlines()]
    assert len(rows) == verified["entries"]
    assert all(b["prev_hash"] == a["hash"] for a, b in itertools.pairwise(rows))
    viewer = (await server.user("viewer"))[1]
    assert (await server.client.get("/v1/audit/verify", headers=viewer)).status_code == 403
