"""The pikvm driver against a stateful PiKVM double (tests/doubles/pikvm.py) on real loopback
HTTP, for what the agent's own face cannot really have: two-factor sign-in, ATX LEDs and their
busy region, kvmd's MSD rules (Content-Length uploads, incomplete images removed), the
NDJSON of write_remote, a streamer without signal, switch ports and the event socket's partial
states deep-merged."""

from __future__ import annotations

import asyncio
import subprocess
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pyotp
import pytest
import uvicorn

from remotehands.agent.config import AgentConfig
from remotehands.agent.runtime import Agent
from remotehands.drivers.pikvm import PikvmDriver
from remotehands.drivers.pikvm.client import KvmdClient
from remotehands.errors import (
    BusyError,
    DeviceError,
    DeviceOfflineError,
    DeviceTimeoutError,
    NotFoundError,
)
from remotehands.serving import bound_address, serve_http
from remotehands.testing.agents import running_device
from remotehands.testing.xapps import eventually
from tests.doubles.pikvm import PikvmDouble

pytestmark = pytest.mark.anyio

SECRET = pyotp.random_base32()


@pytest.fixture
async def double() -> AsyncIterator[tuple[PikvmDouble, str]]:
    device = PikvmDouble(password="s3cret", totp_secret=SECRET)
    async with serve_http(device.app, "127.0.0.1:0", websockets=True) as server:
        yield device, f"http://{bound_address(server)}"


def _driver(url: str, tmp_path: Path, secret: str = SECRET) -> PikvmDriver:
    (tmp_path / "pw").write_text("s3cret")
    (tmp_path / "totp").write_text(secret)
    return PikvmDriver.from_settings(
        {"url": url, "password_file": str(tmp_path / "pw"), "totp_file": str(tmp_path / "totp")}
    )


@pytest.fixture
async def pikvm(double: tuple[PikvmDouble, str], tmp_path: Path) -> AsyncIterator[PikvmDriver]:
    driver = _driver(double[1], tmp_path)
    await driver.start()
    try:
        yield driver
    finally:
        await driver.close()


async def test_two_factor_sign_in_and_the_devices_own_id(
    pikvm: PikvmDriver, double: tuple[PikvmDouble, str], tmp_path: Path
) -> None:
    assert pikvm.capabilities == {"screen", "keyboard", "mouse", "power", "media", "switch"}
    assert await pikvm.hardware_id() == "pikvm-000000009a7e1234"
    (tmp_path / "other").mkdir()
    wrong = _driver(double[1], tmp_path / "other", secret=pyotp.random_base32())
    with pytest.raises(DeviceError, match="ForbiddenError: Forbidden"):
        await wrong.start()
    await wrong.close()


async def test_no_video_signal_is_said(pikvm: PikvmDriver) -> None:
    with pytest.raises(DeviceError, match="no video signal"):
        await pikvm.snapshot()
    with pytest.raises(DeviceError, match="no video signal"):
        await pikvm.screens()
    with pytest.raises(DeviceError, match="no video signal"):
        await pikvm.check()  # what the agent's health reports


async def test_a_kvm_gone_away_fails_the_check(tmp_path: Path) -> None:
    device = PikvmDouble(password="s3cret", totp_secret=SECRET)
    async with serve_http(device.app, "127.0.0.1:0", websockets=True) as server:
        driver = _driver(f"http://{bound_address(server)}", tmp_path)
        await driver.start()
    try:
        with pytest.raises((DeviceError, DeviceOfflineError, DeviceTimeoutError)):
            await driver.check()
    finally:
        await driver.close()


async def test_atx_leds_follow_and_busy_is_busy(
    pikvm: PikvmDriver, double: tuple[PikvmDouble, str]
) -> None:
    device, _ = double
    assert (await pikvm.power_state()).on is False
    await pikvm.power_on()
    assert (await pikvm.power_state()).busy is True
    with pytest.raises(BusyError, match="Performing another ATX operation"):
        await pikvm.power_click("reset")

    async def on() -> bool:
        return (await pikvm.power_state()).on is True

    await eventually(on)
    await pikvm.power_off()  # a short press while on
    await eventually(lambda: not device.busy)
    assert device.power is False


async def test_uploads_stream_with_a_length_and_leave_nothing_half_written(
    pikvm: PikvmDriver, double: tuple[PikvmDouble, str]
) -> None:
    device, _ = double
    size = 8 * 1024 * 1024

    async def chunks() -> AsyncIterator[bytes]:
        for _ in range(size // 65536):
            yield b"\0" * 65536

    image = await pikvm.media_upload("big.iso", chunks(), size)
    assert image.model_dump() == {"name": "big.iso", "size": size, "complete": True}
    assert device.uploads[-1] == {"name": "big.iso", "content-length": str(size), "chunked": False}
    assert device.images["big.iso"] == size  # counted by the device, never held by us

    async def broken() -> AsyncIterator[bytes]:
        yield b"\0" * 65536
        raise OSError("the source file went away")

    with pytest.raises((DeviceError, OSError)):
        await pikvm.media_upload("half.img", broken(), size)
    await eventually(lambda: "half.img" not in device.images)
    drive = await pikvm.media_mount("big.iso")
    assert (drive.image, drive.connected) == ("big.iso", True)
    drive = await pikvm.media_mount("big.iso", cdrom=False, rw=False)  # remount: disconnects
    assert (drive.connected, drive.cdrom) == (True, False)
    assert (await pikvm.media_eject()).connected is False
    with pytest.raises(NotFoundError):
        await pikvm.media_mount("nope.iso")


async def test_fetches_report_the_devices_own_failure(
    pikvm: PikvmDriver, double: tuple[PikvmDouble, str]
) -> None:
    device, _ = double
    device.remote["http://mirror/ok.img"] = b"x" * 1000
    device.remote["http://mirror/bad.img"] = b"FAIL" * 100
    image = await pikvm.media_fetch("http://mirror/ok.img")
    assert image.model_dump() == {"name": "ok.img", "size": 1000, "complete": True}
    with pytest.raises(DeviceError, match="ClientPayloadError: Response payload is not"):
        await pikvm.media_fetch("http://mirror/bad.img")
    with pytest.raises(Exception, match="404, message='Not Found'"):
        await pikvm.media_fetch("http://mirror/missing.img")


async def test_switch_ports(pikvm: PikvmDriver, double: tuple[PikvmDouble, str]) -> None:
    device, _ = double
    state = await pikvm.switch_ports()
    assert state.active is None and len(state.ports) == 6
    assert state.ports[1].model_dump() == {
        "port": 1,
        "name": "host-1",
        "video": False,
        "beacon": False,
        "power": True,
    }
    await pikvm.switch_set(5)
    assert device.active == 5 and (await pikvm.switch_ports()).active == 5
    await pikvm.switch_beacon(3, True)
    assert device.beacons[3] is True
    await pikvm.switch_power(3, "off")
    assert (await pikvm.switch_ports()).ports[3].power is False


async def test_partial_events_deep_merge(double: tuple[PikvmDouble, str]) -> None:
    _, url = double
    client = KvmdClient(url, password="s3cret", totp_secret=SECRET)
    async with client, client.events() as events:
        assert (await events.__anext__()) == ("loop", {"version": {"major": 4, "minor": 206}})
        _, atx = await events.__anext__()
        assert atx["leds"] == {"power": False, "hdd": False}
        _, full = await events.__anext__()
        assert full["drive"]["connected"] is False
        _, merged = await events.__anext__()
        assert merged["drive"]["connected"] is True and merged["drive"]["cdrom"] is True
        _, merged = await events.__anext__()
        assert merged["storage"]["uploading"] == {"name": "x.iso", "size": 10, "written": 5}
        assert merged["storage"]["parts"][""]["size"] == 1 << 30  # kept from the full state
        assert events.states["msd"] == merged


async def test_a_face_in_front_of_the_driver_passes_the_device_on(tmp_path: Path) -> None:
    """An agent fronting the double with the pikvm driver serves the PiKVM face itself: the
    double's LEDs, images and missing signal show through it, in kvmd's shapes."""
    device = PikvmDouble(password="s3cret", power=True)
    async with serve_http(device.app, "127.0.0.1:0", websockets=True) as server:
        (tmp_path / "device.pw").write_text("s3cret")
        (tmp_path / "agent.pw").write_text("agent-pw")
        config = AgentConfig.model_validate(
            {
                "state_dir": str(tmp_path / "state"),
                "password_file": str(tmp_path / "agent.pw"),
                "devices": [
                    {
                        "name": "rack-1",
                        "driver": "pikvm",
                        "listen": "127.0.0.1:0",
                        "faces": ["native", "pikvm"],
                        "settings": {
                            "url": f"http://{bound_address(server)}",
                            "password_file": str(tmp_path / "device.pw"),
                        },
                    }
                ],
            }
        )
        agent = Agent.from_config(config)
        async with running_device(agent, "rack-1") as run:
            assert run.hardware_id == "pikvm-000000009a7e1234"
            headers = {"X-KVMD-User": "admin", "X-KVMD-Passwd": "agent-pw"}
            async with httpx.AsyncClient(base_url=f"http://{run.address}", headers=headers) as http:
                streamer = (await http.get("/api/streamer")).json()["result"]
                assert streamer["streamer"]["source"]["online"] is False
                snapshot = await http.get("/api/streamer/snapshot")
                assert snapshot.status_code == 503
                assert snapshot.json()["result"] == {
                    "error": "UnavailableError",
                    "error_msg": "Service Unavailable",
                }
                atx = (await http.get("/api/atx")).json()["result"]
                assert atx["enabled"] is True and atx["leds"]["power"] is True
                device.images["a.iso"] = 100
                msd = (await http.get("/api/msd")).json()["result"]
                assert msd["storage"]["images"]["a.iso"]["size"] == 100
                ports = (await http.get("/api/switch")).json()["result"]
                assert len(ports["model"]["ports"]) == 6


async def test_https_with_a_self_signed_certificate(tmp_path: Path) -> None:
    """PiKVMs serve HTTPS with a self-signed certificate: refused unless told (verify_tls
    false) or given the certificate (ca_file); the event socket follows the same rule."""
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "1",
            "-subj",
            "/CN=pikvm",
            "-addext",
            "subjectAltName=IP:127.0.0.1",
            "-keyout",
            str(key),
            "-out",
            str(cert),
        ],
        check=True,
        capture_output=True,
    )
    device = PikvmDouble(password="s3cret")
    config = uvicorn.Config(
        device.app,
        host="127.0.0.1",
        port=0,
        log_level="warning",
        ssl_certfile=str(cert),
        ssl_keyfile=str(key),
        ws="websockets-sansio",
    )
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    try:
        await eventually(lambda: server.started)
        url = f"https://{bound_address(server)}"
        (tmp_path / "pw").write_text("s3cret")
        base = {"url": url, "password_file": str(tmp_path / "pw")}
        strict = PikvmDriver.from_settings(base)
        with pytest.raises(DeviceError, match=r"CERTIFICATE_VERIFY_FAILED|certificate verify"):
            await strict.start()
        await strict.close()
        for extra in ({"verify_tls": False}, {"ca_file": str(cert)}):
            driver = PikvmDriver.from_settings({**base, **extra})
            await driver.start()
            assert (await driver.power_state()).on is False
            await driver.close()
        client = KvmdClient(url, password="s3cret", verify=str(cert))
        async with client, client.events() as events:
            assert (await events.__anext__())[0] == "loop"
    finally:
        server.should_exit = True
        await task
