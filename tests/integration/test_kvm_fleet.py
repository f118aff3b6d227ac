"""Power, virtual media and the KVM switch through the fleet server: a real server on loopback
and FakeDriver devices linked to it in-process. The relay of every new route, the streamed upload
over the agent link (and its cancellation), roles, the audit log, bulk power actions, the SDK's
fleet clients and the CLI."""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from remotehands.agent.dispatch import Dispatcher
from remotehands.agent.link import AgentLink, load_or_enroll
from remotehands.cli.main import cli
from remotehands.client import AsyncFleetClient, FleetClient
from remotehands.drivers.fake import FakeDriver, FakeSettings
from remotehands.errors import ForbiddenError, ValidationError
from remotehands.server.http.users import create_user
from remotehands.testing.xapps import eventually
from tests.integration.conftest import LiveServer

pytestmark = pytest.mark.anyio


@dataclass
class Linked:
    id: str
    driver: FakeDriver
    media: Path

    @property
    def base(self) -> str:
        return f"/v1/devices/{self.id}"


@asynccontextmanager
async def linked(
    server: LiveServer, tmp: Path, name: str, **settings: Any
) -> AsyncIterator[Linked]:
    """A FakeDriver device enrolled as ``name`` (with more ``settings``) and linked to the
    server until the block ends."""
    media = tmp / name / "media"
    credential = await load_or_enroll(server.url, await server.enrollment(name),
                                      state_dir=tmp / name / "state", hardware=f"hw-{name}",
                                      device_type="desktop")  # fmt: skip
    driver = FakeDriver(settings=FakeSettings(media_dir=media, serial=name, **settings))
    dispatcher = Dispatcher(driver)
    link = AgentLink(credential, dispatcher, driver_name="fake", device_type="desktop",
                     hardware=f"hw-{name}", backoff_base_s=0.05, backoff_cap_s=0.2)  # fmt: skip
    task = asyncio.create_task(link.run())
    try:
        await asyncio.wait_for(link.connected.wait(), 20)
        device = Linked(credential.device_id, driver, media)

        async def online() -> bool:
            got = (await server.http.get(device.base)).json()
            return bool(got["status"] == "online" and "power" in got["capabilities"])

        await eventually(online, timeout=10)
        yield device
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await dispatcher.aclose()


async def _payload(size: int, block: bytes, before: Callable[[int], Awaitable[None]] | None = None
                   ) -> AsyncIterator[bytes]:  # fmt: skip
    sent = 0
    while sent < size:
        if before is not None:
            await before(sent)
        piece = block[: size - sent]
        sent += len(piece)
        yield piece


async def test_power_media_and_switch_through_the_server_are_relayed_and_audited(
    live_server: LiveServer, tmp_path: Path
) -> None:
    http = live_server.http
    async with linked(live_server, tmp_path, "rack-1") as device:
        state = await http.get(device.base + "/power")
        assert state.status_code == 200 and state.json()["on"] is True
        off = (await http.post(device.base + "/power/off", json={"timeout_s": 5})).json()
        assert (off["before"]["on"], off["after"]["on"], off["changed"]) == (True, False, True)
        on = (await http.post(device.base + "/power/click", json={"button": "power"})).json()
        assert on["after"]["on"] is True and on["action"] == "click power"

        block = os.urandom(1 << 20)
        size = (6 << 20) + 17
        put = await http.put(device.base + "/media/images/boot.iso", content=_payload(size, block),
                             headers={"Content-Length": str(size)})  # fmt: skip
        assert put.status_code == 200, put.text
        assert put.json() == {"name": "boot.iso", "size": size, "complete": True}
        expected = (block * 7)[:size]
        assert (device.media / "boot.iso").read_bytes() == expected
        flash = {"name": "boot.iso", "cdrom": False, "rw": True}
        mounted = await http.post(device.base + "/media/mount", json=flash)
        assert mounted.json() == {"image": "boot.iso", "connected": True, "cdrom": False,
                                  "rw": True}  # fmt: skip
        listed = (await http.get(device.base + "/media")).json()
        assert [i["name"] for i in listed["images"]] == ["boot.iso"]
        assert listed["storage_free"] == listed["storage_size"] - size
        assert (await http.post(device.base + "/media/eject")).json()["image"] is None
        assert (await http.delete(device.base + "/media/images/boot.iso")).status_code == 204
        assert list(device.media.iterdir()) == []

        shown = (await http.post(device.base + "/switch/active", json={"port": 3})).json()
        assert shown["active"] == 3 and device.driver.switch_active == 3
        port = (await http.post(device.base + "/switch/power",
                                json={"port": 2, "action": "off_hard"})).json()  # fmt: skip
        assert (port["before"], port["after"], port["timed_out"]) == (True, False, False)

        audit = (await http.get("/v1/audit", params={"device_id": device.id})).json()["entries"]
        seen = {(e["action"], e["result"]) for e in audit}
        assert {("power.off", "ok"), ("power.click", "ok"), ("media.upload", "ok"),
                ("media.mount", "ok"), ("media.remove", "ok"), ("switch.set", "ok"),
                ("switch.power", "ok")} <= seen  # fmt: skip
        upload = next(e for e in audit if e["action"] == "media.upload")
        assert upload["params"] == {"name": "boot.iso", "size": size}


async def test_viewers_read_power_media_and_ports_but_only_operators_act(
    live_server: LiveServer, tmp_path: Path
) -> None:
    services = live_server.app.state.services
    headers = {}
    for role in ("viewer", "operator"):
        await create_user(services, f"{role}-1", "a-long-password-1", role)
        login = await live_server.http.post(
            "/v1/auth/login", json={"username": f"{role}-1", "password": "a-long-password-1"}
        )
        headers[role] = {"Authorization": f"Bearer {login.json()['token']}"}
    http = live_server.http
    async with linked(live_server, tmp_path, "rack-2") as device:
        for path in ("/power", "/media", "/switch"):
            assert (
                await http.get(device.base + path, headers=headers["viewer"])
            ).status_code == 200
        for method, path, body in (("POST", "/power/on", {}), ("POST", "/media/eject", None),
                                   ("POST", "/switch/active", {"port": 1}),
                                   ("DELETE", "/media/images/x.iso", None)):  # fmt: skip
            refused = await http.request(method, device.base + path, json=body,
                                         headers=headers["viewer"])  # fmt: skip
            assert refused.status_code == 403, path
            assert refused.json()["error"] == "forbidden"
        upload = await http.put(device.base + "/media/images/v.iso", content=b"x" * 1000,
                                headers=headers["viewer"])  # fmt: skip
        assert upload.status_code == 403 and device.driver.images == {}
        allowed = await http.put(device.base + "/media/images/o.iso", content=b"x" * 1000,
                                 headers=headers["operator"])  # fmt: skip
        assert allowed.status_code == 200 and list(device.driver.images) == ["o.iso"]
        async with AsyncFleetClient(live_server.url, token=headers["viewer"]["Authorization"][7:]
                                    ) as viewer:  # fmt: skip
            with pytest.raises(ForbiddenError):
                await viewer.device(device.id).power_off()
        audit = (await http.get("/v1/audit", params={"action": "media.upload"})).json()
        assert [e["result"] for e in audit["entries"]] == ["ok", "forbidden"]


async def test_a_client_gone_mid_upload_cancels_it_on_the_device(
    live_server: LiveServer, tmp_path: Path
) -> None:
    async with linked(live_server, tmp_path, "rack-3") as device:
        size = 256 << 20

        class Gone(Exception):
            pass

        async def part_way(sent: int) -> None:
            if sent == 32 << 20:
                # the image is on the device, incomplete; then the client goes away
                await eventually(lambda: "big.iso" in device.driver.images, timeout=10)
                assert device.driver.images["big.iso"].complete is False
                raise Gone

        with pytest.raises(Gone):
            await live_server.http.put(
                device.base + "/media/images/big.iso",
                content=_payload(size, os.urandom(1 << 20), part_way),
                headers={"Content-Length": str(size)},
            )

        def clean() -> bool:
            return device.driver.images == {} and list(device.media.iterdir()) == []

        await eventually(clean, timeout=10)
        hub = live_server.app.state.services.hub
        await eventually(lambda: hub.get(device.id).transfers.active == [], timeout=10)
        # and the same name uploads whole afterwards
        again = await live_server.http.put(device.base + "/media/images/big.iso",
                                           content=b"y" * 4096)  # fmt: skip
        assert again.json() == {"name": "big.iso", "size": 4096, "complete": True}


async def test_a_device_refusing_an_upload_answers_why_through_the_server(
    live_server: LiveServer, tmp_path: Path
) -> None:
    async with linked(live_server, tmp_path, "small", media_size=1 << 20) as device:
        size = 2 << 20
        refused = await live_server.http.put(
            device.base + "/media/images/too-big.iso",
            content=_payload(size, os.urandom(1 << 20)),
            headers={"Content-Length": str(size)},
        )
        assert refused.status_code == 422
        assert "does not fit: 1048576 bytes of storage are free" in refused.json()["details"]
        assert device.driver.images == {} and list(device.media.iterdir()) == []
        hub = live_server.app.state.services.hub
        assert hub.get(device.id).transfers.active == []
        fits = await live_server.http.put(device.base + "/media/images/ok.iso", content=b"z" * 10)
        assert fits.json()["size"] == 10


async def test_bulk_power_actions_over_a_selection(live_server: LiveServer, tmp_path: Path) -> None:
    async with (
        linked(live_server, tmp_path, "node-a") as a,
        linked(live_server, tmp_path, "node-b") as b,
    ):
        for device in (a, b):
            await live_server.http.patch(device.base, json={"tags": ["rack"]})
        body = {"action": "power.off", "params": {"timeout_s": 5}, "selector": {"tags": ["rack"]}}
        answer = (await live_server.http.post("/v1/bulk", json=body)).json()
        assert [r["name"] for r in answer["results"]] == ["node-a", "node-b"]
        for entry in answer["results"]:
            assert entry["ok"], entry
            assert (entry["result"]["before"]["on"], entry["result"]["after"]["on"]) == (
                True,
                False,
            )
        assert not a.driver.power_led.on and not b.driver.power_led.on
        states = await live_server.http.post(
            "/v1/bulk", json={"action": "power.state", "selector": {"ids": [a.id, b.id]}}
        )
        assert [r["result"]["on"] for r in states.json()["results"]] == [False, False]
        streamed = await live_server.http.post(
            "/v1/bulk", json={"action": "media.upload", "params": {"name": "x.iso"},
                              "selector": {"tags": ["rack"]}},
        )  # fmt: skip
        assert streamed.status_code == 422 and "not through /v1/bulk" in streamed.text


async def test_the_sdk_fleet_clients_upload_with_progress_and_act(
    live_server: LiveServer, tmp_path: Path
) -> None:
    image = tmp_path / "disk.img"
    image.write_bytes(os.urandom((3 << 20) + 5))
    token = live_server.http.headers["Authorization"][7:]
    async with linked(live_server, tmp_path, "sdk-1") as device:
        progress: list[int] = []
        async with AsyncFleetClient(live_server.url, token=token) as fleet:
            hands = fleet.device("sdk-1")
            stored = await hands.media_upload(
                "disk.img", image, progress=lambda sent, total: progress.append(sent)
            )
            assert stored["size"] == image.stat().st_size
            assert progress == [1 << 20, 2 << 20, 3 << 20, (3 << 20) + 5]
            assert (await hands.power_state())["on"] is True
            assert (await hands.switch_beacon(1))["ports"][1]["beacon"] is True
        assert (device.media / "disk.img").read_bytes() == image.read_bytes()

        def sync() -> None:
            with FleetClient(live_server.url, token=token) as fleet:
                hands = fleet.device(device.id)
                assert hands.media_mount("disk.img", cdrom=False)["connected"] is True
                with pytest.raises(ValidationError, match="CD-ROM is read-only"):
                    hands.media_mount("disk.img", rw=True)
                assert hands.power_shutdown(timeout_s=5)["after"]["on"] is False

        await asyncio.to_thread(sync)


async def test_the_cli_drives_power_media_and_the_switch(
    live_server: LiveServer, tmp_path: Path
) -> None:
    image = tmp_path / "cli.iso"
    image.write_bytes(os.urandom(2 << 20))
    env = {"REMOTEHANDS_URL": live_server.url,
           "REMOTEHANDS_TOKEN": live_server.http.headers["Authorization"][7:]}  # fmt: skip

    def run(*args: str) -> Any:
        result = CliRunner().invoke(cli, list(args), env=env, catch_exceptions=False)
        return result

    async with linked(live_server, tmp_path, "cli-1") as device:
        state = await asyncio.to_thread(run, "power", "cli-1")
        assert state.exit_code == 0 and "power: on" in state.stdout
        off = await asyncio.to_thread(run, "power", "cli-1", "off", "--json")
        assert off.exit_code == 0 and json.loads(off.stdout)["after"]["on"] is False
        on = await asyncio.to_thread(run, "power-on", "cli-1")
        assert on.exit_code == 0 and "power LED off -> on" in on.stdout
        device.driver.power_stuck = True
        stuck = await asyncio.to_thread(run, "power", "cli-1", "off-hard", "--timeout", "0.2")
        assert stuck.exit_code == 1 and "still on" in stuck.stderr
        device.driver.power_stuck = False

        up = await asyncio.to_thread(run, "media", "cli-1", "upload", str(image))
        assert up.exit_code == 0, up.stderr
        assert "stored cli.iso (2.0 MiB)" in up.stdout
        assert (device.media / "cli.iso").read_bytes() == image.read_bytes()
        mounted = await asyncio.to_thread(run, "media", "cli-1", "mount", "cli.iso", "--cdrom")
        assert "drive: cli.iso as a CD-ROM, connected" in mounted.stdout
        listed = await asyncio.to_thread(run, "media", "cli-1", "--json")
        assert json.loads(listed.stdout)["images"][0]["name"] == "cli.iso"
        busy = await asyncio.to_thread(run, "media", "cli-1", "remove", "cli.iso")
        assert busy.exit_code != 0 and "eject it first" in busy.stderr

        ports = await asyncio.to_thread(run, "switch", "cli-1", "set", "2")
        assert ports.exit_code == 0 and device.driver.switch_active == 2
        table = await asyncio.to_thread(run, "switch", "cli-1")
        assert "2 *" in table.stdout
