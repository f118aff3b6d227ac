"""Installs by role: ``pip install remotehands`` (the CLI and the SDK), ``[agent]``, ``[server]``
and ``[all]``, each into a fresh virtual environment, and what a command says when its extra is
missing (one line naming the ``pip install``, exit code 2, never a traceback).

Offline: the project's wheel is built once without build isolation, and each environment gets
the wheel (``--no-deps``) plus links to exactly the distributions its extras need, taken from
the development environment's site-packages (the closure of their requirements).
"""

from __future__ import annotations

import importlib.metadata
import os
import subprocess
import sys
import sysconfig
import tomllib
import zipfile
from pathlib import Path
from typing import Any

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

# Builds a wheel and four environments: seconds.
pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
SITE = Path(sysconfig.get_paths()["purelib"])


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """The wheel and what building it said (verbosely, so that a warning would show)."""
    out = tmp_path_factory.mktemp("wheel")
    done = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps",
                           "--no-build-isolation", "--no-index", "-v", "-w", str(out), str(ROOT)],
                          check=True, capture_output=True, text=True, timeout=60)  # fmt: skip
    (wheel,) = out.glob("remotehands-*.whl")
    return wheel, done.stdout + done.stderr


@pytest.fixture(scope="module")
def wheel(built: tuple[Path, str]) -> Path:
    return built[0]


def _closure(extras: tuple[str, ...]) -> set[str]:
    """The installed distributions remotehands with ``extras`` needs, transitively."""
    todo = [("remotehands", extras)]
    seen: set[str] = set()
    found: set[str] = set()
    while todo:
        name, wanted = todo.pop()
        for extra in wanted or ("",):
            key = f"{name}[{extra}]"
            if key in seen:
                continue
            seen.add(key)
            for text in importlib.metadata.requires(name) or []:
                req = Requirement(text)
                if req.marker is not None and not req.marker.evaluate({"extra": extra}):
                    continue
                dep = canonicalize_name(req.name)
                if dep != "remotehands":
                    found.add(dep)
                todo.append((dep, tuple(req.extras)))
    return found


def _populate(venv: Path, extras: tuple[str, ...]) -> None:
    """Link the distributions of ``extras`` into ``venv``'s site-packages."""
    target = Path(sysconfig.get_paths(vars={"base": str(venv), "platbase": str(venv)})["purelib"])
    for name in _closure(extras):
        dist = importlib.metadata.distribution(name)
        for top in {f.parts[0] for f in dist.files or [] if f.parts[0] != ".."}:
            source, link = SITE / top, target / top
            if source.exists() and not link.exists() and top != "__pycache__":
                link.symlink_to(source)


def _venv(root: Path, wheel: Path, extras: tuple[str, ...]) -> Path:
    venv = root / ("venv-" + ("-".join(extras) or "bare"))
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True,
                   timeout=30)  # fmt: skip
    subprocess.run([sys.executable, "-m", "pip", "--python", str(venv / "bin" / "python"),
                    "install", "--no-deps", "--no-index", "-q", str(wheel)],
                   check=True, capture_output=True, timeout=60)  # fmt: skip
    _populate(venv, extras)
    return venv


def _venv_fixture(*extras: str) -> Any:
    """A module fixture: a fresh environment with the wheel and ``extras`` (one per fixture, so
    that no single test pays for building all four)."""

    @pytest.fixture(scope="module")
    def fixture(wheel: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
        return _venv(tmp_path_factory.mktemp("venv"), wheel, extras)

    return fixture


bare = _venv_fixture()
agent_venv = _venv_fixture("agent")
server_venv = _venv_fixture("server")
all_venv = _venv_fixture("all")


def _run(venv: Path, *args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("REMOTEHANDS_") and k not in ("PYTHONPATH", "DISPLAY")}  # fmt: skip
    return subprocess.run([str(venv / "bin" / "remotehands"), *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=30)  # fmt: skip


def _says_install(done: subprocess.CompletedProcess[str], command: str, extra: str) -> None:
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr
    assert done.stderr.strip().splitlines() == [done.stderr.strip()]  # one line
    assert f"`remotehands {command}` needs the {extra} extra" in done.stderr
    assert f"pip install 'remotehands[{extra}]'" in done.stderr


def test_the_wheel_metadata_has_an_spdx_licence_and_a_light_core(
    built: tuple[Path, str],
) -> None:
    wheel, log = built
    # the licence as an SPDX expression: no deprecation warnings from the build
    assert not [line for line in log.splitlines() if "licen" in line.lower() and "warn" in
                line.lower()], log  # fmt: skip
    # no package-data pattern for files that do not exist
    package_data = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"][
        "package-data"
    ]["remotehands"]
    for pattern in package_data:
        assert list((ROOT / "src" / "remotehands").glob(pattern)), pattern
    with zipfile.ZipFile(wheel) as archive:
        (meta,) = [n for n in archive.namelist() if n.endswith(".dist-info/METADATA")]
        text = archive.read(meta).decode()
        names = archive.namelist()
    assert "License-Expression: Apache-2.0" in text
    core = [line.split(":", 1)[1].strip() for line in text.splitlines()
            if line.startswith("Requires-Dist:") and "extra ==" not in line]  # fmt: skip
    assert {canonicalize_name(Requirement(r).name) for r in core} == {
        "pydantic", "click", "httpx", "orjson", "rich", "websockets"}  # fmt: skip
    assert "remotehands/server/installer.sh" in names
    assert "remotehands/server/db/alembic.ini" in names
    for page in ("index.html", "signin.html", "admin.html", "console/index.html",
                 "js/api.js", "css/app.css"):  # fmt: skip
        assert f"remotehands/server/web/static/{page}" in names, page


def test_without_extras_the_cli_and_sdk_work(bare: Path, tmp_path: Path) -> None:
    assert _run(bare, "--help", cwd=tmp_path).returncode == 0
    sdk = subprocess.run([str(bare / "bin" / "python"), "-c",
                          "import remotehands.client, remotehands.protocol.actions"],
                         capture_output=True, text=True, timeout=30)  # fmt: skip
    assert sdk.returncode == 0, sdk.stderr
    # a client command runs as far as its missing target, without an import error
    devices = _run(bare, "devices", cwd=tmp_path)
    assert devices.returncode != 0 and "Traceback" not in devices.stderr
    assert "REMOTEHANDS_URL" in devices.stderr
    assert _run(bare, "agent", "--help", cwd=tmp_path).returncode == 0
    # writing a service needs no extra: the machine may get its extra after
    dry = _run(bare, "server", "install-service", "--dry-run", cwd=tmp_path)
    assert dry.returncode == 0 and "[Service]" in dry.stdout, dry.stderr


def test_without_extras_each_role_names_its_extra(bare: Path, tmp_path: Path) -> None:
    _says_install(_run(bare, "agent", "--driver", "fake", cwd=tmp_path), "agent", "agent")
    _says_install(_run(bare, "desktop", cwd=tmp_path), "desktop", "agent")
    _says_install(_run(bare, "server", "--data", "d", cwd=tmp_path), "server", "server")
    _says_install(_run(bare, "server", "init", "--data", "d", cwd=tmp_path), "server init",
                  "server")  # fmt: skip
    _says_install(_run(bare, "demo", cwd=tmp_path), "demo", "all")
    assert not (tmp_path / "d").exists()  # nothing half-created


def test_the_agent_extra(agent_venv: Path, tmp_path: Path) -> None:
    # the agent runs as far as its own checks (a missing password)
    agent = _run(agent_venv, "agent", "--driver", "fake", cwd=tmp_path)
    assert agent.returncode == 2 and "REMOTEHANDS_AGENT_PASSWORD" in agent.stderr, agent.stderr
    _says_install(_run(agent_venv, "server", "init", cwd=tmp_path), "server init", "server")


def test_the_server_extra(server_venv: Path, tmp_path: Path) -> None:
    init = _run(server_venv, "server", "init", "--data", "s", "--json", cwd=tmp_path)
    assert init.returncode == 0, init.stderr
    assert (tmp_path / "s" / "remotehands.db").exists()
    _says_install(_run(server_venv, "agent", cwd=tmp_path), "agent", "agent")


def test_the_all_extra(all_venv: Path, tmp_path: Path) -> None:
    both = _run(all_venv, "server", "init", "--data", "a", cwd=tmp_path)
    assert both.returncode == 0, both.stderr
    agent = _run(all_venv, "agent", "--driver", "fake", cwd=tmp_path)
    assert agent.returncode == 2 and "REMOTEHANDS_AGENT_PASSWORD" in agent.stderr, agent.stderr
