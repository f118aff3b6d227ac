"""Secrets are never stored or shown in clear: typed text and clipboard contents at any depth
of a sequence, in the audit log and the action log; private files whatever the umask."""

from __future__ import annotations

import json
import os
import stat
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from remotehands.agent.dispatch import Dispatcher
from remotehands.agent.link import load_or_enroll
from remotehands.drivers.fake import FakeDriver
from remotehands.server.app import AUDIT_KEY, create_app
from remotehands.server.auth import Passwords
from remotehands.server.settings import ServerSettings
from remotehands.testing.xapps import eventually
from tests.server.conftest import FAST_PASSWORDS
from tests.server.link_harness import LiveFleet

pytestmark = pytest.mark.anyio

SECRET = "hunter2-typed-password"


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.fixture
def loose_umask() -> Iterator[None]:
    """A umask that leaves new files readable by everyone, as many shells have."""
    old = os.umask(0o022)
    try:
        yield
    finally:
        os.umask(old)


async def test_typed_and_clipboard_text_is_never_audited_in_clear(fleet: LiveFleet) -> None:
    (device,) = await fleet.enroll(1)
    base = f"/v1/devices/{device.device_id}"
    async with fleet.agent(device):
        await fleet.owner.post(f"{base}/keyboard/type", json={"text": SECRET})
        await fleet.owner.post(f"{base}/keyboard/type", json={"text": SECRET})
        await fleet.owner.post(f"{base}/clipboard", json={"text": SECRET})
        await fleet.owner.post(f"{base}/sequence", json={"steps": [
            {"type": "keyboard.type", "text": SECRET},
            {"type": "clipboard.set", "text": SECRET},
        ]})  # fmt: skip

        async def written() -> bool:
            entries = await fleet.owner.get("/v1/audit", params={"device_id": device.device_id})
            return len(entries.json()["entries"]) >= 4

        await eventually(written)
    response = await fleet.owner.get("/v1/audit", params={"device_id": device.device_id})
    assert SECRET not in response.text
    entries = response.json()["entries"]
    types = [e["params"]["text"] for e in entries if e["action"] == "keyboard.type"]
    assert len(types) == 2 and types[0] == types[1]  # equal texts can be matched...
    assert types[0].startswith(f"<{len(SECRET)} chars hmac:")  # ...without being shown
    [sequence] = [e for e in entries if e["action"] == "sequence"]
    assert [s["text"] for s in sequence["params"]["steps"]] == [types[0], types[0]]


async def test_the_action_log_masks_text_at_any_depth() -> None:
    dispatcher = Dispatcher(FakeDriver(100, 100))
    await dispatcher.run("keyboard.type", {"text": SECRET})
    await dispatcher.run("sequence", {"steps": [
        {"type": "keyboard.type", "text": SECRET},
        {"type": "clipboard.set", "text": SECRET},
    ]})  # fmt: skip
    log = await dispatcher.run("actions", {"limit": 10})
    assert SECRET not in json.dumps(log)
    [sequence] = [entry for entry in log if entry["action"] == "sequence"]
    steps = json.loads(sequence["params"])["steps"]
    assert all(step["text"].startswith(f"<{len(SECRET)} chars") for step in steps)
    await dispatcher.aclose()


async def test_the_server_data_is_private_whatever_the_umask(
    tmp_path: Path, loose_umask: None
) -> None:
    data = tmp_path / "data"
    settings = ServerSettings(data_dir=data)
    app = create_app(settings, passwords=Passwords(FAST_PASSWORDS))
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as http:
            await http.post("/v1/auth/login", json={"username": "x", "password": "y"})
        assert _mode(data) == 0o700
        files = list(data.iterdir())
        assert {f.name for f in files} >= {"remotehands.db", AUDIT_KEY}
        for file in files:
            assert _mode(file) == 0o600, file


async def test_the_agent_state_is_private_whatever_the_umask(
    fleet: LiveFleet, tmp_path: Path, loose_umask: None
) -> None:
    created = await fleet.owner.post("/v1/devices/enrollment", json={})
    state = tmp_path / "state"
    await load_or_enroll(fleet.base_url, created.json()["token"], state_dir=state,
                         hardware="hw-private", device_type="desktop")  # fmt: skip
    assert _mode(state) == 0o700
    for file in state.iterdir():
        assert _mode(file) == 0o600, file
