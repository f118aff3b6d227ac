"""TLS on the server and the agent, and agents pinning the server: a fleet over HTTPS with a
pinned agent, one with a wrong pin that never links, certificates kept and checked."""

from __future__ import annotations

import asyncio
import datetime as dt
import stat
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from remotehands.agent.auth import TokenStore, password_check
from remotehands.agent.dispatch import Dispatcher
from remotehands.agent.faces.native import create_native_app
from remotehands.agent.link import AgentLink, load_or_enroll
from remotehands.agent.runtime import agent_tls
from remotehands.drivers.fake import FakeDriver
from remotehands.errors import AuthError, ConfigError
from remotehands.server.app import create_app
from remotehands.server.auth import Passwords
from remotehands.server.http.users import create_user
from remotehands.server.settings import ServerSettings
from remotehands.serving import bound_address, serve_http
from remotehands.testing.xapps import eventually
from remotehands.tls import fingerprint, load, normalise_fingerprint, self_signed
from tests.server.conftest import FAST_PASSWORDS, PASSWORD, loopback_socket

pytestmark = pytest.mark.anyio

WRONG = "sha256:" + "ab" * 32


@asynccontextmanager
async def tls_server(
    tmp_path: Path, database_url: str
) -> AsyncIterator[tuple[str, httpx.AsyncClient, str]]:
    """The fleet server over HTTPS (self-signed); yields its URL, an owner's client and the
    certificate's fingerprint."""
    sock = loopback_socket()
    url = f"https://127.0.0.1:{sock.getsockname()[1]}"
    settings = ServerSettings(data_dir=tmp_path / "server", database_url=database_url,
                              public_url=url, tls=True)  # fmt: skip
    files = settings.tls_files()
    assert files is not None
    app = create_app(settings, passwords=Passwords(FAST_PASSWORDS))
    try:
        async with serve_http(app, sock=sock, lifespan=True, websockets=True,
                              ssl=files.uvicorn_options()):  # fmt: skip
            await create_user(app.state.services, "owner", PASSWORD, "owner")
            async with httpx.AsyncClient(base_url=url, verify=False, timeout=20) as http:
                owner = {"username": "owner", "password": PASSWORD}
                login = await http.post("/v1/auth/login", json=owner)
                http.headers["Authorization"] = f"Bearer {login.json()['token']}"
                yield url, http, files.fingerprint
    finally:
        sock.close()


async def test_a_pinned_agent_links_over_tls(tmp_path: Path, migrated_database_url: str) -> None:
    async with tls_server(tmp_path, migrated_database_url) as (url, http, pin):
        created = (await http.post("/v1/devices/enrollment", json={})).json()
        assert f"--server-fingerprint {pin}" in created["install_cmd"]
        assert "--pinnedpubkey sha256//" in created["install_cmd"]
        credential = await load_or_enroll(url, created["token"], state_dir=tmp_path / "agent",
                                          hardware="hw-tls", device_type="desktop",
                                          pin=pin)  # fmt: skip
        assert credential.ws_url.startswith("wss://")
        dispatcher = Dispatcher(FakeDriver(64, 64))
        link = AgentLink(credential, dispatcher, driver_name="fake", device_type="desktop",
                         hardware="hw-tls", pin=pin)  # fmt: skip
        task = asyncio.create_task(link.run())
        try:
            await asyncio.wait_for(link.connected.wait(), 20)
            base = f"/v1/devices/{credential.device_id}"

            async def online() -> bool:
                return bool((await http.get(base)).json()["status"] == "online")

            await eventually(online, timeout=10)
            moved = await http.post(f"{base}/mouse/move", json={"x": 3, "y": 4})
            assert moved.json() == {"status": "ok"}
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
            await dispatcher.aclose()


async def test_a_wrong_pin_never_links(tmp_path: Path, migrated_database_url: str) -> None:
    async with tls_server(tmp_path, migrated_database_url) as (url, http, pin):
        created = (await http.post("/v1/devices/enrollment", json={})).json()
        with pytest.raises(AuthError, match="not the pinned"):
            await load_or_enroll(url, created["token"], state_dir=tmp_path / "a",
                                 hardware="hw-x", device_type="desktop", pin=WRONG)  # fmt: skip
        # the token was never sent: it still enrolls the right agent
        credential = await load_or_enroll(url, created["token"], state_dir=tmp_path / "b",
                                          hardware="hw-x", device_type="desktop",
                                          pin=pin)  # fmt: skip
        dispatcher = Dispatcher(FakeDriver(64, 64))
        link = AgentLink(credential, dispatcher, driver_name="fake", device_type="desktop",
                         hardware="hw-x", pin=WRONG)  # fmt: skip
        with pytest.raises(AuthError, match="not the pinned"):
            await asyncio.wait_for(link.run(), 20)
        assert link.connections == 0
        await dispatcher.aclose()


async def test_the_agent_serves_https_with_a_kept_certificate(tmp_path: Path) -> None:
    files = agent_tls(tmp_path / "state", tls=True, cert=None, key=None,
                      listen="127.0.0.1:0")  # fmt: skip
    assert files is not None
    again = agent_tls(tmp_path / "state", tls=True, cert=None, key=None, listen="127.0.0.1:0")
    assert again is not None and again.fingerprint == files.fingerprint  # kept, not remade
    for path in (files.cert, files.key):
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(files.cert.parent.stat().st_mode) == 0o700
    dispatcher = Dispatcher(FakeDriver(64, 64))
    tokens = TokenStore(password_check(password="pw", password_file=None, pam=False))
    async with serve_http(create_native_app(dispatcher, tokens), "127.0.0.1:0",
                          ssl=files.uvicorn_options()) as server:  # fmt: skip
        address = bound_address(server)
        async with httpx.AsyncClient(verify=False) as http:
            health = await http.get(f"https://{address}/health")
            assert health.json() == {"status": "ok"}
            stream = health.extensions["network_stream"]
            der = stream.get_extra_info("ssl_object").getpeercert(binary_form=True)
    assert fingerprint(der) == files.fingerprint
    await dispatcher.aclose()


def _expired(tmp_path: Path) -> tuple[Path, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "old")])
    now = dt.datetime.now(dt.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(1)
            .not_valid_before(now - dt.timedelta(days=10))
            .not_valid_after(now - dt.timedelta(days=1)).sign(key, hashes.SHA256()))  # fmt: skip
    cert_path, key_path = tmp_path / "old.crt", tmp_path / "old.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                           serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))  # fmt: skip
    return cert_path, key_path


def test_an_expired_or_mismatched_certificate_is_refused(tmp_path: Path) -> None:
    cert, key = _expired(tmp_path)
    with pytest.raises(ConfigError, match="expired on"):
        load(cert, key)
    fresh = self_signed(tmp_path / "fresh")
    with pytest.raises(ConfigError, match="does not belong"):
        load(fresh.cert, key)
    with pytest.raises(ConfigError, match="not a certificate fingerprint"):
        normalise_fingerprint("md5:abcd")
    assert normalise_fingerprint("SHA256:" + ":".join(["AB"] * 32)) == "sha256:" + "ab" * 32
