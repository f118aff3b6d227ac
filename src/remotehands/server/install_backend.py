"""A minimal PEP 517 build backend: packs ``src/`` into a pure-Python wheel.

Shipped inside the archive the remotehands server serves at ``/install/remotehands.tar.gz`` (as
``_build/remotehands_build.py``, see :mod:`remotehands.server.install`), so that installing needs
no build tools; it reads ``pyproject.toml``'s ``[project]`` table. It uses nothing but the
standard library and imports nothing from remotehands: it runs before remotehands is installed.

The PEP 517 hooks build the project this file sits in (its parent's parent directory); the
functions :func:`wheel`, :func:`sdist` and :func:`write_metadata` build any project root, so that
tests run them in-process on an unpacked archive.
"""

from __future__ import annotations

import base64
import hashlib
import os
import tarfile
import tomllib
import zipfile
from pathlib import Path
from typing import Any

__all__ = [
    "build_sdist",
    "build_wheel",
    "get_requires_for_build_sdist",
    "get_requires_for_build_wheel",
    "prepare_metadata_for_build_wheel",
    "sdist",
    "wheel",
    "write_metadata",
]

_ROOT = Path(__file__).resolve().parent.parent
_DATE = (1980, 1, 1, 0, 0, 0)  # fixed, so that the same sources give the same wheel

Project = dict[str, Any]
"""The ``[project]`` table of a ``pyproject.toml``."""
ConfigSettings = dict[str, Any] | None
"""What a PEP 517 frontend passes as ``config_settings`` (unused here)."""


def _project(root: Path) -> Project:
    project: Project = tomllib.loads((root / "pyproject.toml").read_text("utf-8"))["project"]
    return project


def _dist_name(project: Project) -> str:
    return str(project["name"]).replace("-", "_") + "-" + str(project["version"])


def _metadata(project: Project) -> str:
    lines = [
        "Metadata-Version: 2.1",
        "Name: " + project["name"],
        "Version: " + project["version"],
    ]
    if project.get("description"):
        lines.append("Summary: " + project["description"])
    if project.get("requires-python"):
        lines.append("Requires-Python: " + project["requires-python"])
    for requirement in project.get("dependencies", []):
        lines.append("Requires-Dist: " + requirement)
    for extra, requirements in project.get("optional-dependencies", {}).items():
        lines.append("Provides-Extra: " + extra)
        for requirement in requirements:
            spec, _, marker = requirement.partition(";")
            condition = f'extra == "{extra}"'
            if marker.strip():
                condition = f"({marker.strip()}) and {condition}"
            lines.append(f"Requires-Dist: {spec.strip()}; {condition}")
    return "\n".join(lines) + "\n"


def _dist_info(project: Project) -> dict[str, bytes]:
    files = {
        "METADATA": _metadata(project),
        "WHEEL": (
            "Wheel-Version: 1.0\nGenerator: remotehands_build\nRoot-Is-Purelib: true\n"
            "Tag: py3-none-any\n"
        ),
    }
    scripts: dict[str, str] = project.get("scripts", {})
    if scripts:
        files["entry_points.txt"] = "[console_scripts]\n" + "".join(
            f"{name} = {target}\n" for name, target in scripts.items()
        )
    return {name: text.encode() for name, text in files.items()}


def _record_line(path: str, data: bytes) -> str:
    digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
    return f"{path},sha256={digest},{len(data)}\n"


def _sources(top: Path) -> list[Path]:
    return [
        file
        for file in sorted(top.rglob("*"))
        if file.is_file() and "__pycache__" not in file.parts
    ]


def write_metadata(root: Path, metadata_directory: str | os.PathLike[str]) -> str:
    """Write the ``.dist-info`` of the project at ``root`` into ``metadata_directory``; returns
    its name."""
    project = _project(root)
    name = _dist_name(project) + ".dist-info"
    target = Path(metadata_directory) / name
    target.mkdir(parents=True, exist_ok=True)
    for filename, data in _dist_info(project).items():
        (target / filename).write_bytes(data)
    return name


def wheel(root: Path, wheel_directory: str | os.PathLike[str]) -> str:
    """Build the pure-Python wheel of the project at ``root`` (its ``src/`` tree) into
    ``wheel_directory``; returns the wheel's file name."""
    project = _project(root)
    dist = _dist_name(project)
    filename = dist + "-py3-none-any.whl"
    source = root / "src"
    record: list[str] = []
    with zipfile.ZipFile(Path(wheel_directory) / filename, "w", zipfile.ZIP_DEFLATED) as archive:

        def add(path: str, data: bytes) -> None:
            info = zipfile.ZipInfo(path, _DATE)
            info.external_attr = 0o644 << 16
            info.compress_type = zipfile.ZIP_DEFLATED
            archive.writestr(info, data)
            record.append(_record_line(path, data))

        for file in _sources(source):
            add(file.relative_to(source).as_posix(), file.read_bytes())
        for name, data in _dist_info(project).items():
            add(dist + ".dist-info/" + name, data)
        record_path = dist + ".dist-info/RECORD"
        info = zipfile.ZipInfo(record_path, _DATE)
        info.external_attr = 0o644 << 16
        archive.writestr(info, "".join(record) + record_path + ",,\n")
    return filename


def sdist(root: Path, sdist_directory: str | os.PathLike[str]) -> str:
    """Pack the project at ``root`` into an sdist in ``sdist_directory``; returns its name."""
    dist = _dist_name(_project(root))
    filename = dist + ".tar.gz"
    with tarfile.open(Path(sdist_directory) / filename, "w:gz") as archive:
        for file in _sources(root):
            archive.add(file, dist + "/" + file.relative_to(root).as_posix())
    return filename


# -- the PEP 517 hooks: the project this file belongs to ------------------------------------


def get_requires_for_build_wheel(config_settings: ConfigSettings = None) -> list[str]:
    """Nothing: the backend needs only the standard library."""
    return []


def get_requires_for_build_sdist(config_settings: ConfigSettings = None) -> list[str]:
    """Nothing: the backend needs only the standard library."""
    return []


def prepare_metadata_for_build_wheel(
    metadata_directory: str, config_settings: ConfigSettings = None
) -> str:
    """PEP 517: :func:`write_metadata` of this project."""
    return write_metadata(_ROOT, metadata_directory)


def build_wheel(
    wheel_directory: str,
    config_settings: ConfigSettings = None,
    metadata_directory: str | None = None,
) -> str:
    """PEP 517: :func:`wheel` of this project."""
    return wheel(_ROOT, wheel_directory)


def build_sdist(sdist_directory: str, config_settings: ConfigSettings = None) -> str:
    """PEP 517: :func:`sdist` of this project."""
    return sdist(_ROOT, sdist_directory)
