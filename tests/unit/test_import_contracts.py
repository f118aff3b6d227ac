"""The import-linter contract on device protocol clients (``drivers/*/client.py``) holds and
bites: run on a copy of the package with a client added, it refuses a client that imports the
rest of the package and accepts one that imports only outside libraries."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
LINT_IMPORTS = str(Path(sys.executable).with_name("lint-imports"))


def _lint_with_client(tmp_path: Path, source: str) -> subprocess.CompletedProcess[str]:
    shutil.copytree(ROOT / "src" / "remotehands", tmp_path / "src" / "remotehands",
                    ignore=shutil.ignore_patterns("__pycache__"))  # fmt: skip
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    package = tmp_path / "src" / "remotehands" / "drivers" / "kvmdemo"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "client.py").write_text(source)
    env = {**os.environ, "PYTHONPATH": str(tmp_path / "src")}
    return subprocess.run([LINT_IMPORTS, "--no-cache"], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=120)  # fmt: skip


@pytest.mark.parametrize(
    ("source", "imported"),
    [
        ("import json\nfrom remotehands.errors import DeviceError\n", "remotehands.errors"),
        ("from remotehands import __version__\n", "remotehands"),
        ("from remotehands.drivers.base import Held\n", "remotehands.drivers.base"),
    ],
)
def test_a_client_importing_the_package_breaks_the_contract(
    tmp_path: Path, source: str, imported: str
) -> None:
    done = _lint_with_client(tmp_path, source)
    assert done.returncode != 0, done.stdout
    assert "remotehands.drivers.kvmdemo.client is not allowed to import" in done.stdout
    assert f"remotehands.drivers.kvmdemo.client -> {imported} (l." in done.stdout


def test_a_standalone_client_keeps_it(tmp_path: Path) -> None:
    done = _lint_with_client(tmp_path, "import json\n\nimport httpx\n")
    assert done.returncode == 0, done.stdout
    assert "Contracts: 3 kept, 0 broken." in done.stdout
