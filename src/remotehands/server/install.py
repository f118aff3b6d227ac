"""What ``curl -sSL {server}/install | sh -s -- --token ekvent_...`` runs and installs.

:func:`install_script` is a POSIX ``sh`` script (``installer.sh`` beside this module) that creates a
virtual environment (default ``~/.remotehands/venv``), installs ``remotehands[agent]`` from this
server's ``/install/remotehands.tar.gz`` with pip, and runs ``remotehands agent --server {server}
--token ...`` plus whatever follows ``--``. With ``REMOTEHANDS_INSTALL_DRY_RUN=1`` it prints that
command instead of running it.

:func:`build_source_archive` packs the sources of the ``remotehands`` package this server runs into
an sdist-like ``.tar.gz``: the package under ``src/``, a ``pyproject.toml`` with the same
dependencies and extras, and a tiny in-tree PEP 517 backend
(:mod:`remotehands.server.install_backend`) that turns it into a pure-Python wheel. That backend
needs nothing but the standard library, so installing works without fetching build tools (and fully
offline with ``--reuse-site-packages``, which reuses the packages of the Python it runs under
instead of installing dependencies).
"""

from __future__ import annotations

import functools
import gzip
import io
import json
import re
import tarfile
from importlib import metadata, resources
from pathlib import Path

import remotehands
from remotehands.errors import ConfigError

__all__ = ["ARCHIVE_NAME", "build_source_archive", "install_script", "project_metadata"]

ARCHIVE_NAME = "remotehands.tar.gz"

_FIXED_MTIME = 315532800  # 1980-01-01: archives are the same bytes for the same sources
_EXTRA = re.compile(r"""\s*\bextra\s*==\s*['"]([^'"]+)['"]\s*""")

_SCRIPT_FILE = "installer.sh"
"""The installer script, a file of this package (linted with shellcheck, tested function by
function); ``@SERVER@`` in it stands for the server's public address."""
_BACKEND_MODULE = "install_backend.py"
"""The build backend shipped in the archive: :mod:`remotehands.server.install_backend`."""


@functools.cache
def _package_file(name: str) -> str:
    return resources.files("remotehands.server").joinpath(name).read_text("utf-8")


def install_script(public_url: str) -> str:
    """The installer script for a server reachable at ``public_url``."""
    url = public_url.rstrip("/")
    if "'" in url:
        raise ConfigError(f"public_url {url!r} cannot contain a single quote")
    return _package_file(_SCRIPT_FILE).replace("@SERVER@", url)


def _split_requirement(requirement: str) -> tuple[str, str | None]:
    """``(requirement without the extra clause, extra or None)``."""
    spec, sep, marker = requirement.partition(";")
    match = _EXTRA.search(marker)
    if not sep or match is None:
        return requirement.strip(), None
    rest = (marker[: match.start()] + " " + marker[match.end() :]).strip()
    rest = re.sub(r"^(and\s+)|(\s+and)$", "", rest).strip()
    return (f"{spec.strip()}; {rest}" if rest else spec.strip()), match.group(1)


def project_metadata() -> dict[str, object]:
    """The ``[project]`` table of the installed ``remotehands`` (version, dependencies,
    extras, scripts), from its distribution metadata."""
    try:
        dist = metadata.distribution("remotehands")
    except metadata.PackageNotFoundError as err:
        raise ConfigError(
            "remotehands is not installed as a package (pip install -e .), so the server "
            "cannot offer it for download"
        ) from err
    dependencies: list[str] = []
    extras: dict[str, list[str]] = {
        name: [] for name in dist.metadata.get_all("Provides-Extra") or []
    }
    for requirement in dist.requires or []:
        spec, extra = _split_requirement(requirement)
        if extra is None:
            dependencies.append(spec)
        else:
            extras.setdefault(extra, []).append(spec)
    scripts = {ep.name: ep.value for ep in dist.entry_points if ep.group == "console_scripts"}
    return {
        "name": "remotehands",
        "version": remotehands.__version__,
        "description": _first(dist.metadata.get_all("Summary"), ""),
        "requires-python": _first(dist.metadata.get_all("Requires-Python"), ">=3.11"),
        "dependencies": dependencies,
        "optional-dependencies": extras,
        "scripts": scripts,
    }


def _first(values: list[str] | None, default: str) -> str:
    return values[0] if values else default


def _toml_value(value: object) -> str:
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, list):
        if not value:
            return "[]"
        return "[\n" + "".join(f"  {json.dumps(v)},\n" for v in value) + "]"
    raise TypeError(f"cannot write {value!r} as TOML")


def _pyproject(project: dict[str, object]) -> str:
    lines = [
        "[build-system]",
        "requires = []",
        'build-backend = "remotehands_build"',
        'backend-path = ["_build"]',
        "",
        "[project]",
    ]
    tables: dict[str, dict[str, object]] = {}
    for key, value in project.items():
        if isinstance(value, dict):
            tables[key] = value
        else:
            lines.append(f"{key} = {_toml_value(value)}")
    for table, entries in tables.items():
        lines += ["", f"[project.{table}]"]
        lines += [f"{json.dumps(k)} = {_toml_value(v)}" for k, v in entries.items()]
    return "\n".join(lines) + "\n"


@functools.cache
def build_source_archive() -> bytes:
    """The ``.tar.gz`` served at ``/install/remotehands.tar.gz`` (built once per process;
    blocking: call it in a thread)."""
    project = project_metadata()
    package_dir = Path(remotehands.__file__).resolve().parent
    top = f"remotehands-{project['version']}"
    buffer = io.BytesIO()
    with (
        gzip.GzipFile(fileobj=buffer, mode="wb", mtime=_FIXED_MTIME) as zipped,
        tarfile.open(fileobj=zipped, mode="w", format=tarfile.PAX_FORMAT) as archive,
    ):

        def add(name: str, data: bytes) -> None:
            info = tarfile.TarInfo(f"{top}/{name}")
            info.size = len(data)
            info.mtime = _FIXED_MTIME
            info.mode = 0o644
            archive.addfile(info, io.BytesIO(data))

        add("pyproject.toml", _pyproject(project).encode())
        add("_build/remotehands_build.py", _package_file(_BACKEND_MODULE).encode())
        for path in sorted(package_dir.rglob("*")):
            if path.is_file() and "__pycache__" not in path.parts and path.suffix != ".pyc":
                add(
                    f"src/remotehands/{path.relative_to(package_dir).as_posix()}", path.read_bytes()
                )
    return buffer.getvalue()
