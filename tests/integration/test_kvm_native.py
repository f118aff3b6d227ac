"""Power, virtual media and the KVM switch on the agent's native face, over real loopback HTTP,
on the FakeDriver: what each action was seen to do, the streamed upload (to files, cancelled by
a client that goes away), and the SDK's agent client with its upload progress."""

from __future__ import annotations

import asyncio
import hashlib
import os
import signal
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from remotehands.agent.auth import TokenStore, password_check
from remotehands.agent.dispatch import Dispatcher
from remotehands.agent.faces.native import create_native_app
from remotehands.agent.runtime import bound_address, serve_http
from remotehands.client import AgentClient, AsyncAgentClient
from remotehands.drivers.fake import FakeDriver, FakeSettings
from remotehands.errors import NotFoundError, ValidationError
from remotehands.testing.xapps import eventually

pytestmark = pytest.mark.anyio

PASSWORD = "correct horse battery staple"
REMOTEHANDS = str(Path(sys.executable).with_name("remotehands"))


@dataclass
class Agent:
    driver: FakeDriver
    http: httpx.AsyncClient
    base: str
    token: str
    media: Path


@pytest.fixture
async def agent(tmp_path: Path) -> AsyncIterator[Agent]:
    media = tmp_path / "media"
    driver = FakeDriver(settings=FakeSettings(media_dir=media, power_delay_s=0.1))
    dispatcher = Dispatcher(driver)
    tokens = TokenStore(password_check(password=PASSWORD, password_file=None, pam=False))
    async with serve_http(create_native_app(dispatcher, tokens), "127.0.0.1:0") as server:
        base = f"http://{bound_address(server)}"
        async with httpx.AsyncClient(base_url=base, timeout=10) as anon:
            token = (await anon.post("/auth/login", json={"password": PASSWORD})).json()["token"]
        async with httpx.AsyncClient(
            base_url=base, timeout=10, headers={"Authorization": f"Bearer {token}"}
        ) as http:
            yield Agent(driver, http, base, token, media)
    await dispatcher.aclose()


async def test_power_actions_answer_what_the_power_led_did(agent: Agent) -> None:
    state = (await agent.http.get("/power")).json()
    assert state["on"] is True and "off_hard" in state["actions"] and "reset" in state["buttons"]

    off = (await agent.http.post("/power/off", json={})).json()
    assert (off["before"]["on"], off["after"]["on"], off["expected"]) == (True, False, False)
    assert off["changed"] is True and off["timed_out"] is False
    assert off["waited_ms"] >= 50  # the LED took the machine's time to go out
    assert (await agent.http.get("/power")).json()["on"] is False

    # without waiting: the request is made, the LED read once, still off
    quick = (await agent.http.post("/power/on", json={"wait": False})).json()
    assert quick["changed"] is False and quick["timed_out"] is False
    assert quick["after"]["on"] is False
    await eventually(lambda: agent.driver.power_led.on, timeout=5)

    # a machine that ignores its buttons: the watch times out and says so
    agent.driver.power_stuck = True
    stuck = (await agent.http.post("/power/off-hard", json={"timeout_s": 0.3})).json()
    assert stuck["changed"] is False and stuck["timed_out"] is True
    assert stuck["after"]["on"] is True and stuck["waited_ms"] >= 300
    agent.driver.power_stuck = False

    reset = (await agent.http.post("/power/click", json={"button": "reset"})).json()
    assert reset["action"] == "click reset" and reset["expected"] is None
    assert reset["changed"] is False and agent.driver.resets == 1
    bad = await agent.http.post("/power/click", json={"button": "eject"})
    assert bad.status_code == 422 and "button" in bad.json()["details"]


async def test_an_upload_streams_into_a_file_and_mounts(agent: Agent) -> None:
    payload = os.urandom(3 << 20)

    async def chunks() -> AsyncIterator[bytes]:
        for start in range(0, len(payload), 256 << 10):
            yield payload[start : start + (256 << 10)]

    put = await agent.http.put("/media/images/debian 12.iso", content=chunks(),
                               headers={"Content-Length": str(len(payload))})  # fmt: skip
    assert put.status_code == 200, put.text
    assert put.json() == {"name": "debian 12.iso", "size": len(payload), "complete": True}
    stored = agent.media / "debian 12.iso"
    assert stored.read_bytes() == payload
    assert agent.driver.images["debian 12.iso"].sha256 == hashlib.sha256(payload).hexdigest()
    assert agent.driver.media_peak_chunk < len(payload)  # it came in pieces

    again = await agent.http.put("/media/images/debian 12.iso", content=b"x")
    assert again.status_code == 422 and "remove it first" in again.json()["details"]
    sneaky = await agent.http.put("/media/images/..hidden", content=b"x")
    assert sneaky.status_code == 422 and "not an image name" in sneaky.json()["details"]
    chunked = await agent.http.put("/media/images/c.iso", content=chunks())
    assert chunked.status_code == 422 and "Content-Length" in chunked.json()["details"]

    mounted = (await agent.http.post("/media/mount", json={"name": "debian 12.iso"})).json()
    assert mounted == {"image": "debian 12.iso", "connected": True, "cdrom": True, "rw": False}
    state = (await agent.http.get("/media")).json()
    assert state["drive"]["connected"] and state["images"][0]["size"] == len(payload)
    busy = await agent.http.delete("/media/images/debian 12.iso")
    assert busy.status_code == 409 and "eject it first" in busy.json()["details"]
    assert (await agent.http.post("/media/eject")).json()["connected"] is False
    assert (await agent.http.delete("/media/images/debian 12.iso")).status_code == 204
    assert not stored.exists() and (await agent.http.get("/media")).json()["images"] == []
    gone = await agent.http.delete("/media/images/debian 12.iso")
    assert gone.status_code == 404


async def test_a_client_that_goes_away_mid_upload_leaves_nothing(agent: Agent) -> None:
    size = 64 << 20
    block = os.urandom(1 << 20)

    class Stop(Exception):
        pass

    async def half() -> AsyncIterator[bytes]:
        for sent in range(size // len(block)):
            if sent == 16:
                # the device shows the image being written; then the client goes away
                images = (await agent.http.get("/media")).json()["images"]
                assert images == [{"name": "big.iso", "size": images[0]["size"],
                                   "complete": False}]  # fmt: skip
                raise Stop
            yield block

    async with httpx.AsyncClient(base_url=agent.base, timeout=10) as client:
        with pytest.raises(Stop):
            await client.put("/media/images/big.iso", content=half(),
                             headers={"Content-Length": str(size),
                                      "Authorization": f"Bearer {agent.token}"})  # fmt: skip

    async def clean() -> bool:
        listed = (await agent.http.get("/media")).json()["images"]
        return listed == [] and list(agent.media.iterdir()) == []

    await eventually(clean, timeout=10)
    log = (await agent.http.get("/actions")).json()
    assert [e["result"] for e in log if e["action"] == "media.upload"] == ["invalid"]


async def test_switch_ports_beacons_and_per_port_power(agent: Agent) -> None:
    ports = (await agent.http.get("/switch")).json()
    assert ports["active"] == 0 and [p["port"] for p in ports["ports"]] == [0, 1, 2, 3]
    shown = (await agent.http.post("/switch/active", json={"port": 2})).json()
    assert shown["active"] == 2
    lit = (await agent.http.post("/switch/beacon", json={"port": 3})).json()
    assert [p["beacon"] for p in lit["ports"]] == [False, False, False, True]
    off = (await agent.http.post("/switch/power", json={"port": 1, "action": "off"})).json()
    assert (off["port"], off["before"], off["after"], off["changed"]) == (1, True, False, True)
    on = (await agent.http.post("/switch/click", json={"port": 1, "button": "power"})).json()
    assert (on["before"], on["after"], on["expected"]) == (False, True, True)
    missing = await agent.http.post("/switch/active", json={"port": 9})
    assert missing.status_code == 404 and "0, 1, 2, 3" in missing.json()["details"]


@pytest.fixture
def image(tmp_path: Path) -> Iterator[Path]:
    path = tmp_path / "image.iso"
    path.write_bytes(os.urandom((5 << 20) + 123))
    yield path


async def test_the_sdk_uploads_a_file_with_progress_sync_and_async(
    agent: Agent, image: Path
) -> None:
    seen: list[tuple[int, int]] = []
    async with AsyncAgentClient(agent.base, password=PASSWORD) as client:
        stored = await client.media_upload(
            "a.iso", image, progress=lambda s, t: seen.append((s, t))
        )
        assert stored == {"name": "a.iso", "size": image.stat().st_size, "complete": True}
        assert seen[-1] == (image.stat().st_size,) * 2 and len(seen) == 6
        assert (agent.media / "a.iso").read_bytes() == image.read_bytes()
        with pytest.raises(NotFoundError):
            await client.media_mount("nope.iso")

    def sync() -> None:
        with AgentClient(agent.base, password=PASSWORD) as client, image.open("rb") as file:
            file.seek(100)  # an open file is sent from where it stands
            assert client.media_upload("b.iso", file)["size"] == image.stat().st_size - 100
            with pytest.raises(ValidationError, match="remove it first"):
                client.media_upload("b.iso", image)
            assert client.power_off(timeout_s=5)["changed"] is True
            assert client.switch_set(3)["active"] == 3

    await asyncio.to_thread(sync)
    assert (agent.media / "b.iso").read_bytes() == image.read_bytes()[100:]


async def test_the_device_fetches_an_image_from_a_url(agent: Agent) -> None:
    payload = os.urandom((2 << 20) + 3)

    async def image(request: Request) -> Response:
        if request.path_params["name"] != "netinst.iso":
            return Response(status_code=404)
        return Response(payload, media_type="application/octet-stream")

    files = Starlette(routes=[Route("/files/{name}", image)])
    async with serve_http(files, "127.0.0.1:0") as server:
        url = f"http://{bound_address(server)}/files/netinst.iso"
        fetched = await agent.http.post("/media/fetch", json={"url": url})
        assert fetched.json() == {"name": "netinst.iso", "size": len(payload), "complete": True}
        assert (agent.media / "netinst.iso").read_bytes() == payload
        named = await agent.http.post("/media/fetch", json={"url": url, "name": "copy.iso"})
        assert named.json()["name"] == "copy.iso"
        missing = await agent.http.post("/media/fetch", json={"url": url + ".nope"})
        assert missing.status_code == 502 and "HTTP 404" in missing.json()["details"]
    bad = await agent.http.post("/media/fetch", json={"url": "ftp://host/x.iso"})
    assert bad.status_code == 422 and "http" in bad.json()["details"]
    names = [i["name"] for i in (await agent.http.get("/media")).json()["images"]]
    assert names == ["copy.iso", "netinst.iso"]


async def test_an_upload_is_no_sequence_step(agent: Agent) -> None:
    steps = [{"type": "media.upload", "size": 3}]
    [step] = (await agent.http.post("/sequence", json={"steps": steps})).json()["results"]
    assert step["ok"] is False and step["error"] == "invalid"
    assert "unknown step type 'media.upload'" in step["details"]
    assert agent.driver.images == {}


async def test_ctrl_c_cancels_a_cli_upload_and_the_device_keeps_nothing(
    agent: Agent, tmp_path: Path
) -> None:
    big = tmp_path / "huge.iso"
    with big.open("wb") as file:
        file.truncate(8 << 30)  # sparse: 8 GiB that take no disk and read fast
    env = {**os.environ, "REMOTEHANDS_AGENT_PASSWORD": PASSWORD}
    cli = subprocess.Popen(
        [REMOTEHANDS, "media", "upload", "--agent", agent.base, str(big)],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )  # fmt: skip
    try:

        def writing() -> bool:
            image = agent.driver.images.get("huge.iso")
            return image is not None and image.size > 0 and not image.complete

        await eventually(writing, timeout=20)
        cli.send_signal(signal.SIGINT)
        _, stderr = await asyncio.to_thread(cli.communicate, timeout=20)
    finally:
        if cli.poll() is None:
            cli.kill()
            await asyncio.to_thread(cli.wait, 5)
    assert cli.returncode == 130, stderr
    assert b"upload of huge.iso cancelled" in stderr

    def clean() -> bool:
        return agent.driver.images == {} and list(agent.media.iterdir()) == []

    await eventually(clean, timeout=20)
