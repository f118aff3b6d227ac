"""The agent's password sources, token lifetimes and rate limits, with PAM for real."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from remotehands.agent.auth import TokenStore, password_check
from remotehands.errors import AuthError, ConfigError, RateLimitedError

pytestmark = pytest.mark.anyio

PAM_USER = "rhpamtest"
PAM_PASSWORD = "pam-pass-123"


@pytest.fixture(scope="module")
def unix_user() -> str:
    """A real Unix account with a known password (the suite runs as root, as CI does)."""
    assert os.geteuid() == 0, "the PAM test creates a Unix user: run the suite as root"
    if subprocess.run(["id", PAM_USER], capture_output=True).returncode != 0:
        subprocess.run(["useradd", "-M", "-s", "/usr/sbin/nologin", PAM_USER], check=True)
    subprocess.run(["chpasswd"], input=f"{PAM_USER}:{PAM_PASSWORD}".encode(), check=True)
    return PAM_USER


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_no_password_source_refuses_to_start() -> None:
    with pytest.raises(ConfigError, match="REMOTEHANDS_AGENT_PASSWORD"):
        password_check(password=None, password_file=None, pam=False)


def test_password_file(tmp_path: Path) -> None:
    path = tmp_path / "pw"
    path.write_text("from-a-file\n")
    check = password_check(password=None, password_file=path, pam=False)
    assert check("from-a-file") and not check("from-a-file\n") and not check("other")
    (tmp_path / "empty").write_text("  \n")
    with pytest.raises(ConfigError, match="empty"):
        password_check(password=None, password_file=tmp_path / "empty", pam=False)
    with pytest.raises(ConfigError, match="cannot read"):
        password_check(password=None, password_file=tmp_path / "missing", pam=False)


def test_a_password_file_others_can_read_is_warned_about(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "pw"
    path.write_text("secret\n")
    path.chmod(0o600)
    password_check(password=None, password_file=path, pam=False)
    assert "can be read by other users" not in caplog.text
    path.chmod(0o644)
    password_check(password=None, password_file=path, pam=False)
    assert f"the password file {path} can be read by other users: chmod 600 it" in caplog.text


@pytest.mark.slow  # PAM delays a failed check by about 2 s (pam_unix's fail delay)
def test_pam_checks_the_unix_password(unix_user: str) -> None:
    check = password_check(password=None, password_file=None, pam=True, pam_user=unix_user)
    assert check(PAM_PASSWORD) is True
    assert check("not-the-password") is False


async def test_tokens_expire_and_logout_forgets_them() -> None:
    clock = Clock()
    store = TokenStore(password_check(password="pw", password_file=None, pam=False),
                       ttl_s=60, clock=clock)  # fmt: skip
    token, ttl = await store.login("pw", "10.0.0.1")
    assert ttl == 60 and token.startswith("rha_")
    clock.now += 59
    assert store.remaining(token) == pytest.approx(1)
    clock.now += 2
    with pytest.raises(AuthError, match="expired"):
        store.remaining(token)
    token, _ = await store.login("pw", "10.0.0.1")
    store.logout(token)
    with pytest.raises(AuthError):
        store.remaining(token)


async def test_failed_logins_are_limited_per_client_and_the_window_passes() -> None:
    clock = Clock()
    store = TokenStore(password_check(password="pw", password_file=None, pam=False),
                       max_failures=3, window_s=60, clock=clock)  # fmt: skip
    for _ in range(3):
        with pytest.raises(AuthError):
            await store.login("guess", "attacker")
    with pytest.raises(RateLimitedError):
        await store.login("pw", "attacker")
    assert (await store.login("pw", "someone-else"))[0]
    clock.now += 61
    assert (await store.login("pw", "attacker"))[0]
