"""``remotehands server install-service`` / ``agent install-service``: the unit files pass
``systemd-analyze verify``, the files get tight permissions, a dry run changes nothing, and
what cannot work is refused before anything is made. The enrollment installer chooses the
service when systemd runs."""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from remotehands.server.install import install_script

REMOTEHANDS = str(Path(sys.executable).with_name("remotehands"))


def _rh(*args: str, cwd: Path, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([REMOTEHANDS, *args], cwd=cwd, env={**os.environ, **env},
                          capture_output=True, text=True, timeout=30)  # fmt: skip


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def _verify(*units: Path) -> None:
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        pytest.fail("systemd-analyze is needed (apt-get install systemd: scripts/system-deps)")
    done = subprocess.run([analyze, "verify", *map(str, units)], capture_output=True, text=True,
                          timeout=30)  # fmt: skip
    assert done.returncode == 0 and not done.stdout.strip() and not done.stderr.strip(), (
        done.stdout + done.stderr)  # fmt: skip


def test_server_unit_under_a_prefix(tmp_path: Path) -> None:
    done = _rh("server", "install-service", "--prefix", "root", "--data", "/srv/rh",
               "--listen", "0.0.0.0:9000", "--database-url", "postgresql://rh:s3cret@db/rh",
               cwd=tmp_path)  # fmt: skip
    assert done.returncode == 0, done.stderr
    root = tmp_path / "root"
    unit = root / "etc/systemd/system/remotehands-server.service"
    text = unit.read_text()
    assert f"ExecStart={REMOTEHANDS} server --data /srv/rh --listen 0.0.0.0:9000\n" in text
    assert "User=remotehands\n" in text and "ReadWritePaths=/srv/rh\n" in text
    assert "s3cret" not in text  # credentials stay in the root-only environment file
    env = root / "etc/remotehands/server.env"
    assert env.read_text() == 'REMOTEHANDS_DATABASE_URL="postgresql://rh:s3cret@db/rh"\n'
    assert _mode(env) == 0o600 and _mode(unit) == 0o644
    assert _mode(root / "srv/rh") == 0o700
    _verify(unit)
    # a second install keeps what the first put in the environment file
    again = _rh("server", "install-service", "--prefix", "root", "--data", "/srv/rh",
                "--public-url", "https://fleet.example", cwd=tmp_path)  # fmt: skip
    assert again.returncode == 0, again.stderr
    assert env.read_text() == ('REMOTEHANDS_DATABASE_URL="postgresql://rh:s3cret@db/rh"\n'
                               'REMOTEHANDS_PUBLIC_URL="https://fleet.example"\n')  # fmt: skip


def test_agent_unit_under_a_prefix(tmp_path: Path) -> None:
    done = _rh("agent", "install-service", "--prefix", "root", "--server", "http://fleet:8080",
               "--token", "ekvent_abcdef", "--display", ":0", "--password-env", "PW",
               "--user", "alice", "--", "--driver", "x11", "--name", "desk",
               cwd=tmp_path, PW='pa"ss')  # fmt: skip
    assert done.returncode == 0, done.stderr
    root = tmp_path / "root"
    unit = root / "etc/systemd/system/remotehands-agent.service"
    text = unit.read_text()
    assert (f"ExecStart={REMOTEHANDS} agent --state-dir /var/lib/remotehands-agent --driver x11 "
            "--name desk\n") in text  # fmt: skip
    assert "User=alice\n" in text and "ekvent_" not in text
    env = root / "etc/remotehands/agent.env"
    assert env.read_text() == ('DISPLAY=":0"\nREMOTEHANDS_AGENT_PASSWORD="pa\\"ss"\n'
                               'REMOTEHANDS_ENROLLMENT_TOKEN="ekvent_abcdef"\n'
                               'REMOTEHANDS_SERVER="http://fleet:8080"\n')  # fmt: skip
    assert _mode(env) == 0o600 and _mode(root / "var/lib/remotehands-agent") == 0o700
    _verify(unit)


def test_a_dry_run_prints_the_steps_and_changes_nothing(tmp_path: Path) -> None:
    done = _rh("server", "install-service", "--dry-run", "--user", "rh-nobody-here",
               cwd=tmp_path)  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("would create the system user rh-nobody-here\n")
    assert "would systemctl enable --now remotehands-server\n" in done.stdout
    assert "[Service]\nType=exec\nUser=rh-nobody-here\n" in done.stdout
    assert list(tmp_path.iterdir()) == []


def test_refusals_come_before_any_change(tmp_path: Path) -> None:
    spaced = _rh("server", "install-service", "--prefix", "root", "--data", "/srv/a b",
                 cwd=tmp_path)  # fmt: skip
    assert spaced.returncode == 2 and "cannot go in a unit file" in spaced.stderr
    missing = _rh("agent", "install-service", "--prefix", "root", "--password-env", "NOPE_X",
                  cwd=tmp_path)  # fmt: skip
    assert missing.returncode == 2 and "NOPE_X: that variable is not set" in missing.stderr
    assert not (tmp_path / "root").exists()
    if Path("/run/systemd/system").is_dir() and os.geteuid() == 0:
        return  # a real machine: a real install would go ahead
    real = _rh("server", "install-service", "--user", "rh-nobody-here", cwd=tmp_path)
    assert real.returncode == 2
    assert "needs root" in real.stderr or "systemd is not running" in real.stderr
    assert not Path("/etc/systemd/system/remotehands-server.service").exists()
    for done in (spaced, missing, real):
        assert "Traceback" not in done.stderr and len(done.stderr.strip().splitlines()) == 1


def _installer(body: str, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    script = tmp_path / "install.sh"
    script.write_text(install_script("http://fleet.test:8080/"))
    env = {**os.environ, "REMOTEHANDS_INSTALL_LIBRARY": "1", "HOME": str(tmp_path),
           "REMOTEHANDS_INSTALL_DRY_RUN": "1"}  # fmt: skip
    return subprocess.run([shutil.which("dash") or "/bin/sh", "-c", f". {script}\n{body}"],
                          env=env, capture_output=True, text=True, timeout=30)  # fmt: skip


def test_the_installer_leaves_a_service_when_systemd_runs(tmp_path: Path) -> None:
    service = _installer("parse_args --token ekvent_1 --service\nrun_agent --driver x11",
                         tmp_path)  # fmt: skip
    assert service.returncode == 0, service.stderr
    assert service.stdout == (
        "/opt/remotehands/venv/bin/remotehands agent install-service --server "
        "http://fleet.test:8080 --token ekvent_1 -- --driver x11\n"
    )
    foreground = _installer("parse_args --token ekvent_1 --no-service\nrun_agent --name x",
                            tmp_path)  # fmt: skip
    assert foreground.stdout == (
        f"{tmp_path}/.remotehands/venv/bin/remotehands agent --server http://fleet.test:8080 "
        "--token ekvent_1 --name x\n"
    )
    auto = _installer('parse_args --token t\necho "$SERVICE"', tmp_path)
    systemd_runs = os.geteuid() == 0 and Path("/run/systemd/system").is_dir()
    assert auto.stdout == ("1\n" if systemd_runs else "0\n")


def test_an_existing_user_runs_the_service_in_its_own_group(tmp_path: Path) -> None:
    done = _rh("agent", "install-service", "--prefix", "root", "--user", "root", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    text = (tmp_path / "root/etc/systemd/system/remotehands-agent.service").read_text()
    assert "User=root\nGroup=root\n" in text
