"""The security commands of the CLI against a live server: ``audit verify``, ``users totp``,
and ``login`` asking for the code."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from pathlib import Path

import pyotp
import pytest

from tests.server.conftest import PASSWORD
from tests.server.link_harness import LiveFleet

pytestmark = pytest.mark.anyio

CLI = str(Path(sys.executable).with_name("remotehands"))


async def _run(
    *args: str, stdin: str = "", env: dict[str, str] | None = None
) -> tuple[int, str, str]:
    process = await asyncio.create_subprocess_exec(
        CLI, *args, stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE, env={**os.environ, **(env or {})},
    )  # fmt: skip
    out, err = await asyncio.wait_for(process.communicate(stdin.encode()), 25)
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()


async def test_audit_verify_and_totp_from_the_cli(fleet: LiveFleet) -> None:
    session = await fleet.login("operator")
    username = (await fleet.client(session).get("/v1/auth/me")).json()["username"]
    owner_token = fleet.owner.headers["Authorization"].removeprefix("Bearer ")
    code, out, _ = await _run("audit", "verify", "--url", fleet.base_url, "--token", owner_token,
                              "--json")  # fmt: skip
    assert code == 0, out
    assert json.loads(out)["ok"] is True

    # enable through the API, then log in from the CLI: it asks for the code
    user = fleet.client(session)
    secret = (await user.post("/v1/auth/totp/enroll")).json()["secret"]
    confirmed = await user.post("/v1/auth/totp/confirm", json={"code": pyotp.TOTP(secret).now()})
    assert confirmed.status_code == 200
    code, out, err = await _run("login", "--url", fleet.base_url, "--username", username,
                                "--json", stdin=pyotp.TOTP(secret).now() + "\n",
                                env={"REMOTEHANDS_PASSWORD": PASSWORD})  # fmt: skip
    assert code == 0, err
    assert "Authentication code" in err
    token = json.loads(out)["token"]
    code, out, err = await _run("users", "totp", "disable", "--code", pyotp.TOTP(secret).now(),
                                "--url", fleet.base_url, "--token", token)  # fmt: skip
    assert code == 0, err
    assert "off" in out
