"""ATX, MSD and the switch on the PiKVM face, over real loopback HTTP, in front of a FakeDriver
device that has power, virtual media and a switch; and the pikvm driver's power, media and
switch code driving that device through the face (driver -> face -> FakeDriver)."""

from __future__ import annotations

import hashlib
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from remotehands.agent.config import AgentConfig
from remotehands.agent.runtime import Agent, DeviceRun
from remotehands.drivers.fake import FakeDriver
from remotehands.drivers.pikvm import PikvmDriver
from remotehands.errors import NotFoundError, ValidationError
from remotehands.serving import bound_address, serve_http
from remotehands.testing.agents import running_device
from remotehands.testing.xapps import eventually

pytestmark = pytest.mark.anyio

PASSWORD = "kvm-face-pw"
ADMIN = {"X-KVMD-User": "admin", "X-KVMD-Passwd": PASSWORD}


@pytest.fixture
async def device(tmp_path: Path) -> AsyncIterator[DeviceRun]:
    password = tmp_path / "agent.pw"
    password.write_text(PASSWORD)
    password.chmod(0o600)
    config = AgentConfig.model_validate(
        {
            "state_dir": str(tmp_path / "state"),
            "password_file": str(password),
            "devices": [
                {
                    "name": "kvm",
                    "driver": "fake",
                    "listen": "127.0.0.1:0",
                    "faces": ["native", "pikvm"],
                    "settings": {
                        "width": 320,
                        "height": 200,
                        "power_delay_s": 0.05,
                        "media_dir": str(tmp_path / "media"),
                        "switch_ports": 6,
                        "capabilities": ["screen", "keyboard", "mouse", "power", "media", "switch"],
                    },
                }
            ],
        }
    )
    (tmp_path / "media").mkdir()
    async with running_device(Agent.from_config(config), "kvm") as run:
        yield run


@pytest.fixture
async def http(device: DeviceRun) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(
        base_url=f"http://{device.address}", headers=ADMIN, timeout=20
    ) as client:
        yield client


@pytest.fixture
async def pikvm(device: DeviceRun, tmp_path: Path) -> AsyncIterator[PikvmDriver]:
    secret = tmp_path / "device.pw"
    secret.write_text(PASSWORD)
    driver = PikvmDriver.from_settings(
        {"url": f"http://{device.address}", "auth": "cookie", "password_file": str(secret)}
    )
    await driver.start()
    try:
        yield driver
    finally:
        await driver.close()


def fake(device: DeviceRun) -> FakeDriver:
    driver = device.plan.driver
    assert isinstance(driver, FakeDriver)
    return driver


async def result(response: httpx.Response, status: int = 200) -> Any:
    assert response.status_code == status, response.text
    return response.json()["result"]


# -- ATX --------------------------------------------------------------------------------------


async def test_atx_follows_the_power_led_and_is_gated_on_it(
    http: httpx.AsyncClient, device: DeviceRun
) -> None:
    assert await result(await http.get("/api/atx")) == {
        "enabled": True,
        "busy": False,
        "acts": {"power": False, "reset": False},
        "leds": {"power": True, "hdd": False},
    }
    calls = len(fake(device).calls)
    await result(await http.post("/api/atx/power?action=on"))  # on already: a silent no-op
    assert "power_on" not in fake(device).call_names()[calls:]
    await result(await http.post("/api/atx/power?action=off&wait=1"))
    assert (await result(await http.get("/api/atx")))["leds"]["power"] is False
    await result(await http.post("/api/atx/power?action=reset_hard"))  # off: nothing to reset
    assert "power_reset_hard" not in fake(device).call_names()[calls:]
    await result(await http.post("/api/atx/click?button=POWER&wait=true"))
    assert (await result(await http.get("/api/atx")))["leds"]["power"] is True
    bad = await result(await http.post("/api/atx/power?action=explode"), 400)
    assert bad == {
        "error": "ValidatorError",
        "error_msg": "The argument 'explode' is not a valid ATX power action",
    }
    metrics = (await http.get("/api/export/prometheus/metrics")).text
    assert "pikvm_atx_enabled 1\n" in metrics and "pikvm_atx_power 1\n" in metrics


async def test_the_driver_powers_the_machine_through_the_face(
    pikvm: PikvmDriver, device: DeviceRun
) -> None:
    assert pikvm.capabilities == {"screen", "keyboard", "mouse", "power", "media", "switch"}
    state = await pikvm.power_state()
    assert (state.on, state.actions) == (True, ["on", "off", "off_hard", "reset_hard"])
    await pikvm.power_off_hard()

    async def off() -> bool:
        return (await pikvm.power_state()).on is False

    await eventually(off)
    await pikvm.power_click("power")

    async def on() -> bool:
        return (await pikvm.power_state()).on is True

    await eventually(on)


# -- MSD --------------------------------------------------------------------------------------


async def test_msd_write_select_connect_and_remove(http: httpx.AsyncClient) -> None:
    empty = await result(await http.get("/api/msd"))
    assert empty["enabled"] and empty["online"] and empty["drive"]["image"] is None
    assert empty["storage"]["images"] == {} and empty["storage"]["uploading"] is None
    data = bytes(range(256)) * 4096  # 1 MiB
    written = await result(await http.post("/api/msd/write?image=boot.iso", content=data))
    assert written == {"image": {"name": "boot.iso", "size": len(data), "written": len(data)}}
    again = await result(await http.post("/api/msd/write?image=boot.iso", content=b"x"), 400)
    assert again == {"error": "MsdImageExistsError", "error_msg": "This image is already exists"}

    async def chunked() -> AsyncIterator[bytes]:
        yield b"abc"

    no_length = await result(await http.post("/api/msd/write?image=c.img", content=chunked()), 400)
    assert no_length["error_msg"] == "None argument is not a valid int"
    unknown = await result(await http.post("/api/msd/set_params?image=nope.iso"), 400)
    assert unknown["error"] == "MsdUnknownImageError"
    not_selected = await result(await http.post("/api/msd/set_connected?connected=1"), 400)
    assert not_selected["error"] == "MsdImageNotSelected"
    await result(await http.post("/api/msd/set_params?image=boot.iso&cdrom=1&rw=1"))
    state = await result(await http.get("/api/msd"))
    assert state["drive"]["image"]["name"] == "boot.iso" and state["drive"]["rw"] is False
    assert state["drive"]["connected"] is False
    assert state["storage"]["images"]["boot.iso"]["size"] == len(data)
    # reading an image back: checked as kvmd checks it, then a disabled MSD's answer
    disabled = {"error": "MsdDisabledError", "error_msg": "MSD is disabled"}
    assert await result(await http.get("/api/msd/read?image=boot.iso"), 400) == disabled
    bad = await result(await http.get("/api/msd/read?image=boot.iso&compress=gzip"), 400)
    assert bad["error_msg"] == "The argument 'gzip' is not a valid Compression mode"
    missing = await result(await http.get("/api/msd/read?image=nope.iso"), 400)
    assert missing["error"] == "MsdUnknownImageError"
    await result(await http.post("/api/msd/set_connected?connected=1"))
    state = await result(await http.get("/api/msd"))
    assert state["drive"]["connected"] is True and state["drive"]["cdrom"] is True
    read = await result(await http.get("/api/msd/read?image=boot.iso&compress=zstd"), 400)
    assert read["error"] == "MsdConnectedError"
    busy = await result(await http.post("/api/msd/set_params?image="), 400)
    assert busy["error"] == "MsdConnectedError"
    assert (await result(await http.post("/api/msd/remove?image=boot.iso"), 400))["error"] == (
        "MsdConnectedError"
    )
    await result(await http.post("/api/msd/set_connected?connected=0"))
    twice = await result(await http.post("/api/msd/set_connected?connected=0"), 400)
    assert twice["error"] == "MsdDisconnectedError"
    await result(await http.post("/api/msd/remove?image=boot.iso"))
    gone = await result(await http.get("/api/msd"))
    assert gone["storage"]["images"] == {} and gone["drive"]["image"] is None
    await result(await http.post("/api/msd/reset"))


async def test_write_remote_answers_ndjson(http: httpx.AsyncClient, tmp_path: Path) -> None:
    payload = b"remote image " * 10_000

    async def image(request: Request) -> Response:
        return Response(payload, media_type="application/octet-stream")

    async def missing(request: Request) -> Response:
        return Response("no", status_code=404)

    app = Starlette(routes=[Route("/images/remote.img", image), Route("/gone.img", missing)])
    async with serve_http(app, "127.0.0.1:0") as server:
        base = f"http://{bound_address(server)}"
        answer = await http.post(
            "/api/msd/write_remote", params={"url": f"{base}/images/remote.img"}
        )
        assert answer.status_code == 200
        assert answer.headers["content-type"].startswith("application/x-ndjson")
        lines = [json.loads(line) for line in answer.text.split("\r\n") if line]
        assert lines[0] == {
            "ok": True,
            "result": {"image": {"name": "remote.img", "size": 0, "written": 0}},
        }
        assert lines[-1] == {
            "ok": True,
            "result": {
                "image": {"name": "remote.img", "size": len(payload), "written": len(payload)}
            },
        }
        failed = await http.post("/api/msd/write_remote", params={"url": f"{base}/gone.img"})
        last = json.loads([line for line in failed.text.split("\r\n") if line][-1])
        assert failed.status_code == 200 and last["ok"] is False
        assert "404" in last["result"]["error_msg"]
    state = await result(await http.get("/api/msd"))
    assert sorted(state["storage"]["images"]) == ["remote.img"]


async def test_the_driver_streams_mounts_and_removes_images(
    pikvm: PikvmDriver, device: DeviceRun, tmp_path: Path
) -> None:
    size = 3 * 1024 * 1024 + 17
    digest = hashlib.sha256()

    async def chunks() -> AsyncIterator[bytes]:
        sent = 0
        while sent < size:
            block = bytes([sent % 251]) * min(256 * 1024, size - sent)
            digest.update(block)
            sent += len(block)
            yield block

    image = await pikvm.media_upload("debian.iso", chunks(), size)
    assert image.model_dump() == {"name": "debian.iso", "size": size, "complete": True}
    stored = tmp_path / "media" / "debian.iso"
    assert hashlib.sha256(stored.read_bytes()).hexdigest() == digest.hexdigest()
    drive = await pikvm.media_mount("debian.iso", cdrom=True)
    assert (drive.image, drive.connected, drive.cdrom) == ("debian.iso", True, True)
    state = await pikvm.media_state()
    assert [i.name for i in state.images] == ["debian.iso"] and state.storage_free is not None
    ejected = await pikvm.media_eject()
    assert (ejected.image, ejected.connected) == (None, False)
    await pikvm.media_remove("debian.iso")
    with pytest.raises(NotFoundError):
        await pikvm.media_remove("debian.iso")
    with pytest.raises(ValidationError, match="MsdImageExistsError"):
        await pikvm.media_upload("twice.img", _once(b"abc"), 3)
        await pikvm.media_upload("twice.img", _once(b"abc"), 3)


async def _once(data: bytes) -> AsyncIterator[bytes]:
    yield data


# -- switch -----------------------------------------------------------------------------------


async def test_the_switch_numbers_ports_as_kvmd(http: httpx.AsyncClient) -> None:
    state = await result(await http.get("/api/switch"))
    assert len(state["model"]["ports"]) == 6 and len(state["model"]["units"]) == 2
    assert [p["id"] for p in state["model"]["ports"]] == ["1.1", "1.2", "1.3", "1.4", "2.1", "2.2"]
    await result(await http.post("/api/switch/set_active?port=2.2"))  # 1-based unit.channel
    state = await result(await http.get("/api/switch"))
    assert state["summary"] == {"active_port": 5, "active_id": "2.2", "synced": True}
    assert state["usb"]["links"] == [False] * 5 + [True]
    await result(await http.post("/api/switch/set_active?port=1.0"))  # the integer 1
    assert (await result(await http.get("/api/switch")))["summary"]["active_port"] == 1
    await result(await http.post("/api/switch/set_active_next"))
    assert (await result(await http.get("/api/switch")))["summary"]["active_port"] == 2
    await result(await http.post("/api/switch/set_beacon?port=0&state=1"))
    assert (await result(await http.get("/api/switch")))["beacons"]["ports"][0] is True
    await result(await http.post("/api/switch/atx/power?port=3&action=off"))
    await result(await http.post("/api/switch/atx/click?port=3&button=reset"))
    bad = await result(await http.post("/api/switch/set_active?port=99"), 400)
    assert bad["error"] == "ValidatorError"


EDID = "00FFFFFFFFFFFF00" + "00" * 120  # 128 bytes


async def test_switch_port_params_colors_and_edids_are_kept(http: httpx.AsyncClient) -> None:
    params = "port=1.2&name=Build%09box&atx_click_power_delay=1.5&atx_click_reset_delay=0&dummy=1"
    await result(await http.post(f"/api/switch/set_port_params?{params}"))
    port = (await result(await http.get("/api/switch")))["model"]["ports"][1]
    assert port["name"] == "Build box" and port["video"] == {"dummy": True}
    assert port["atx"]["click_delays"] == {"power": 1.5, "power_long": 5.5, "reset": 0.5}
    too_long = await result(
        await http.post("/api/switch/set_port_params?port=0&atx_click_power_long_delay=11"), 400
    )
    assert (
        too_long["error_msg"] == "The argument '11.0' must be ATX delay and lesser or equal then 10"
    )
    await result(
        await http.post("/api/switch/set_port_params?port=1&name=&atx_click_power_delay=0")
    )
    port = (await result(await http.get("/api/switch")))["model"]["ports"][1]
    assert port["name"] != "Build box" and port["atx"]["click_delays"]["power"] == 0.5

    await result(await http.post("/api/switch/set_colors?active=FF8000:10:01F4&beacon=default"))
    colors = (await result(await http.get("/api/switch")))["colors"]
    assert colors["active"] == {"red": 255, "green": 128, "blue": 0, "brightness": 16,
                                "blink_ms": 500}  # fmt: skip
    assert sorted(colors) == ["active", "beacon", "bootloader", "flashing", "inactive"]
    bad_color = await result(await http.post("/api/switch/set_colors?active=red"), 400)
    assert bad_color["error_msg"] == "The argument 'red' is not a valid switch color"

    created = await result(await http.post(f"/api/switch/edids/create?name=Wide&data={EDID}"))
    edid_id = created["id"]
    assert list(created) == ["id"] and len(edid_id) == 36
    await result(await http.post(f"/api/switch/set_port_params?port=2&edid_id={edid_id.upper()}"))
    edids = (await result(await http.get("/api/switch")))["edids"]
    assert edids["all"][edid_id] == {"name": "Wide", "data": EDID, "parsed": None}
    assert edids["used"] == ["default", "default", edid_id, "default", "default", "default"]
    await result(await http.post(f"/api/switch/edids/change?id={edid_id}&name=Narrow"))
    edids = (await result(await http.get("/api/switch")))["edids"]
    assert edids["all"][edid_id]["name"] == "Narrow" and edids["all"][edid_id]["data"] == EDID
    short = await result(await http.post("/api/switch/edids/create?name=x&data=00FF"), 400)
    assert short["error_msg"] == "The argument '00FF' is not a valid switch EDID data"
    await result(await http.post(f"/api/switch/edids/remove?id={edid_id}"))
    edids = (await result(await http.get("/api/switch")))["edids"]
    assert edid_id not in edids["all"] and edids["used"][2] == "default"
    unknown = {"error": "SwitchUnknownEdidError", "error_msg": "No specified EDID ID found"}
    assert await result(await http.post(f"/api/switch/edids/remove?id={edid_id}"), 400) == unknown
    assert (
        await result(await http.post(f"/api/switch/set_port_params?port=0&edid_id={edid_id}"), 400)
        == unknown
    )
    no_default = await result(await http.post("/api/switch/edids/remove?id=default"), 400)
    assert no_default["error_msg"] == "The argument 'default' is not a valid switch EDID ID"
    await result(await http.post("/api/switch/reset?unit=0&bootloader=1"))
    assert (await result(await http.post("/api/switch/reset"), 400))["error"] == "ValidatorError"


async def test_the_driver_switches_ports_through_the_face(pikvm: PikvmDriver) -> None:
    state = await pikvm.switch_ports()
    assert len(state.ports) == 6
    await pikvm.switch_set(4)
    assert (await pikvm.switch_ports()).active == 4
    await pikvm.switch_beacon(2, True)
    assert (await pikvm.switch_ports()).ports[2].beacon is True
    await pikvm.switch_power(1, "off_hard")

    async def off() -> bool:
        return (await pikvm.switch_ports()).ports[1].power is False

    await eventually(off)


async def test_the_driver_checks_the_kvm_cheaply(pikvm: PikvmDriver) -> None:
    await pikvm.check()  # the face's device shows a picture: nothing to report
