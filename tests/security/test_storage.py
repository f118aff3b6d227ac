"""Faults reported truthfully and no audit lost: a full disk under the database (a real tmpfs
filled up), a server restarted after a crash."""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from remotehands.server.app import AUDIT_SPOOL, create_app
from remotehands.server.auth import Passwords
from remotehands.server.settings import ServerSettings
from remotehands.testing.xapps import eventually
from tests.server.conftest import FAST_PASSWORDS, OWNER_PASSWORD, Fleet
from tests.server.link_harness import running_fleet

pytestmark = pytest.mark.anyio


@pytest.fixture
def small_volume(tmp_path: Path) -> Iterator[Path]:
    """A 64 MiB tmpfs mounted for the test (needs root, as CI and this machine have)."""
    volume = tmp_path / "volume"
    volume.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64m", "tmpfs", str(volume)],
                             capture_output=True, text=True, check=False)  # fmt: skip
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.strip()}")
    try:
        yield volume
    finally:
        subprocess.run(["umount", "-l", str(volume)], check=False)


def _fill(volume: Path) -> Path:
    """Fill the volume to the last byte; answers the file to remove to free it."""
    filler = volume / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        for size in (65536, 4096, 1):
            with contextlib.suppress(OSError):
                while True:
                    os.write(fd, b"\0" * size)
    finally:
        os.close(fd)
    with pytest.raises(OSError) as full:
        (volume / "probe").write_bytes(b"x" * 4096)
    assert full.value.errno == errno.ENOSPC
    return filler


async def test_a_full_disk_is_reported_and_loses_no_audit(
    tmp_path: Path, small_volume: Path, migrated_database_url: str
) -> None:
    source = migrated_database_url.removeprefix("sqlite+aiosqlite:///")
    if not migrated_database_url.startswith("sqlite"):
        pytest.skip("the full disk is the SQLite file's volume")
    shutil.copyfile(source, small_volume / "remotehands.db")
    url = f"sqlite+aiosqlite:///{small_volume / 'remotehands.db'}"
    async with running_fleet(tmp_path / "data", database_url=url) as fleet:
        (device,) = await fleet.enroll(1)
        writer = fleet.client(await fleet.login("admin"))
        async with fleet.agent(device):
            base = f"/v1/devices/{device.device_id}"
            assert (await fleet.client().get("/health")).status_code == 200
            filler = _fill(small_volume)
            for _ in range(4):  # the actions run: their audit entries must not be lost
                assert (await fleet.owner.post(f"{base}/mouse/click", json={})).is_success
            await fleet.services.audit.flush()

            async def reported() -> bool:
                health = await fleet.client().get("/health")
                return health.status_code == 503 and health.json()["db"] == "not_writable"

            await eventually(reported, timeout=10)
            health = (await fleet.client().get("/health")).json()
            assert "disk is full" in health["problem"]
            assert health["audit_spooled"] >= 4
            refused = await writer.post("/v1/tokens", json={"name": "t"})
            assert refused.status_code == 503, refused.text
            assert refused.json()["error"] == "unavailable"
            assert "disk is full" in refused.json()["details"]
            assert refused.headers["Retry-After"]
            spool = tmp_path / "data" / AUDIT_SPOOL
            assert spool.exists()

            filler.unlink()

            async def recovered() -> bool:
                health = await fleet.client().get("/health")
                return health.status_code == 200 and "audit_spooled" not in health.json()

            await eventually(recovered, timeout=15)
            query = {"device_id": device.device_id, "action": "mouse.click"}
            entries = (await fleet.owner.get("/v1/audit", params=query)).json()["entries"]
            assert len(entries) == 4
            assert not spool.exists()


async def test_devices_left_online_by_a_crash_are_offline_at_start(
    server: Fleet, tmp_path: Path, migrated_database_url: str
) -> None:
    if not migrated_database_url.startswith("sqlite"):
        pytest.skip("on PostgreSQL other replicas may hold live links")
    device_id = await server.device("left-online", status="online")
    settings = ServerSettings(data_dir=tmp_path / "again", database_url=migrated_database_url)
    app = create_app(settings, passwords=Passwords(FAST_PASSWORDS))
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as http:
            owner = {"username": "owner", "password": OWNER_PASSWORD}
            login = await http.post("/v1/auth/login", json=owner)
            headers = {"Authorization": f"Bearer {login.json()['token']}"}
            device = (await http.get(f"/v1/devices/{device_id}", headers=headers)).json()
    assert device["status"] == "offline"
