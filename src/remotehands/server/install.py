"""What ``curl -sSL {server}/install | sh -s -- --token ekvent_...`` runs and installs.

:func:`install_script` is a POSIX ``sh`` script that creates a virtual environment (default
``~/.remotehands/venv``), installs ``remotehands[agent]`` from this server's
``/install/remotehands.tar.gz`` with pip, and runs ``remotehands agent --server {server}
--token ...`` plus whatever follows ``--``. With ``REMOTEHANDS_INSTALL_DRY_RUN=1`` it prints that
command instead of running it.

:func:`build_source_archive` packs the sources of the ``remotehands`` package this server runs
into an sdist-like ``.tar.gz``: the package under ``src/``, a ``pyproject.toml`` with the same
dependencies and extras, and a tiny in-tree PEP 517 backend that turns it into a pure-Python
wheel. That backend needs nothing but the standard library, so installing works without
fetching build tools (and fully offline with ``--reuse-site-packages``, which reuses the packages
of the Python it runs under instead of installing dependencies).
"""

from __future__ import annotations

import functools
import gzip
import io
import json
import re
import tarfile
from importlib import metadata
from pathlib import Path

import remotehands
from remotehands.errors import ConfigError

__all__ = ["ARCHIVE_NAME", "build_source_archive", "install_script", "project_metadata"]

ARCHIVE_NAME = "remotehands.tar.gz"

_FIXED_MTIME = 315532800  # 1980-01-01: archives are the same bytes for the same sources
_EXTRA = re.compile(r"""\s*\bextra\s*==\s*['"]([^'"]+)['"]\s*""")

_SCRIPT = r"""#!/bin/sh
# Installs the remotehands agent from the fleet server @SERVER@ and enrolls this device:
#   curl -sSL @SERVER@/install | sh -s -- --token ekvent_... [options] [-- agent options]
set -eu

SERVER='@SERVER@'
TOKEN=''
VENV="${HOME:-.}/.remotehands/venv"
PYTHON=''
REUSE=0

usage() {
  cat <<'USAGE'
Installs the remotehands agent from its fleet server and enrolls this device.

  curl -sSL @SERVER@/install | sh -s -- --token ekvent_... [options] [-- agent options]

Options:
  --token TOKEN           the enrollment token (required; an admin creates one with
                          POST /v1/devices/enrollment)
  --venv DIR              where to install (default: ~/.remotehands/venv)
  --python PYTHON         the Python (3.11 or newer) to create the environment with
  --server URL            another address of the server (default: @SERVER@)
  --reuse-site-packages   let the environment see that Python's own packages and install
                          only remotehands itself (no dependencies, no network)
  -- ARGS...              passed on to `remotehands agent`

With REMOTEHANDS_INSTALL_DRY_RUN=1 the agent command is printed instead of run.
USAGE
}
say() { printf 'remotehands install: %s\n' "$*" >&2; }
die() { say "$*"; exit 1; }
need_value() { [ "$2" -ge 2 ] || die "$1 needs a value (see --help)"; }

while [ $# -gt 0 ]; do
  case "$1" in
    --token) need_value "$1" $#; TOKEN=$2; shift 2 ;;
    --token=*) TOKEN=${1#--token=}; shift ;;
    --venv) need_value "$1" $#; VENV=$2; shift 2 ;;
    --venv=*) VENV=${1#--venv=}; shift ;;
    --python) need_value "$1" $#; PYTHON=$2; shift 2 ;;
    --python=*) PYTHON=${1#--python=}; shift ;;
    --server) need_value "$1" $#; SERVER=$2; shift 2 ;;
    --server=*) SERVER=${1#--server=}; shift ;;
    --reuse-site-packages) REUSE=1; shift ;;
    -h|--help) usage; exit 0 ;;
    --) shift; break ;;
    *) die "unknown option $1 (options go before --, agent options after it)" ;;
  esac
done

[ -n "$TOKEN" ] \
  || die "missing --token ekvent_... (an admin creates one: POST /v1/devices/enrollment)"
SERVER=${SERVER%/}

if [ -z "$PYTHON" ]; then
  for candidate in python3.13 python3.12 python3.11 python3; do
    if command -v "$candidate" >/dev/null 2>&1 \
      && "$candidate" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
      PYTHON=$candidate
      break
    fi
  done
  [ -n "$PYTHON" ] || die "remotehands needs Python 3.11 or newer (with venv): install python3"
fi

if [ ! -x "$VENV/bin/python" ]; then
  say "creating the environment $VENV"
  mkdir -p "$(dirname "$VENV")"
  if [ "$REUSE" = 1 ]; then
    "$PYTHON" -m venv --system-site-packages "$VENV" \
      || die "could not create $VENV (on Debian/Ubuntu: apt-get install python3-venv)"
  else
    "$PYTHON" -m venv "$VENV" \
      || die "could not create $VENV (on Debian/Ubuntu: apt-get install python3-venv)"
  fi
fi

PACKAGE="remotehands[agent] @ $SERVER/install/remotehands.tar.gz"
say "installing remotehands from $SERVER"
if [ "$REUSE" = 1 ]; then
  "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check \
    --no-deps --no-build-isolation --force-reinstall "$PACKAGE" \
    || die "pip could not install remotehands from $SERVER"
else
  "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check --upgrade "$PACKAGE" \
    || die "pip could not install remotehands from $SERVER"
fi

set -- "$VENV/bin/remotehands" agent --server "$SERVER" --token "$TOKEN" "$@"
if [ -n "${REMOTEHANDS_INSTALL_DRY_RUN:-}" ]; then
  printf '%s\n' "$*"
  exit 0
fi
say "starting the agent"
exec "$@"
"""

_BACKEND = r'''"""A minimal PEP 517 build backend: packs ``src/`` into a pure-Python wheel.

Shipped inside the archive the remotehands server serves at ``/install/remotehands.tar.gz``, so
that installing needs no build tools; it reads ``pyproject.toml``'s ``[project]`` table.
"""

import base64
import hashlib
import io
import os
import tarfile
import tomllib
import zipfile
from pathlib import Path

_ROOT = Path(__file__).resolve().parent.parent
_DATE = (1980, 1, 1, 0, 0, 0)


def _project():
    return tomllib.loads((_ROOT / "pyproject.toml").read_text("utf-8"))["project"]


def _dist_name(project):
    return project["name"].replace("-", "_") + "-" + project["version"]


def _metadata(project):
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
            condition = 'extra == "%s"' % extra
            if marker.strip():
                condition = "(%s) and %s" % (marker.strip(), condition)
            lines.append("Requires-Dist: %s; %s" % (spec.strip(), condition))
    return "\n".join(lines) + "\n"


def _dist_info(project):
    files = {
        "METADATA": _metadata(project),
        "WHEEL": (
            "Wheel-Version: 1.0\nGenerator: remotehands_build\nRoot-Is-Purelib: true\n"
            "Tag: py3-none-any\n"
        ),
    }
    scripts = project.get("scripts", {})
    if scripts:
        files["entry_points.txt"] = "[console_scripts]\n" + "".join(
            "%s = %s\n" % item for item in scripts.items()
        )
    return {name: text.encode() for name, text in files.items()}


def get_requires_for_build_wheel(config_settings=None):
    return []


def get_requires_for_build_sdist(config_settings=None):
    return []


def prepare_metadata_for_build_wheel(metadata_directory, config_settings=None):
    project = _project()
    name = _dist_name(project) + ".dist-info"
    target = Path(metadata_directory) / name
    target.mkdir(parents=True, exist_ok=True)
    for filename, data in _dist_info(project).items():
        (target / filename).write_bytes(data)
    return name


def _record_line(path, data):
    digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
    return "%s,sha256=%s,%d\n" % (path, digest, len(data))


def build_wheel(wheel_directory, config_settings=None, metadata_directory=None):
    project = _project()
    dist = _dist_name(project)
    filename = dist + "-py3-none-any.whl"
    source = _ROOT / "src"
    record = []
    target = os.path.join(wheel_directory, filename)
    with zipfile.ZipFile(target, "w", zipfile.ZIP_DEFLATED) as wheel:

        def add(path, data):
            info = zipfile.ZipInfo(path, _DATE)
            info.external_attr = 0o644 << 16
            info.compress_type = zipfile.ZIP_DEFLATED
            wheel.writestr(info, data)
            record.append(_record_line(path, data))

        for file in sorted(source.rglob("*")):
            if file.is_file() and "__pycache__" not in file.parts:
                add(file.relative_to(source).as_posix(), file.read_bytes())
        for name, data in _dist_info(project).items():
            add(dist + ".dist-info/" + name, data)
        record_path = dist + ".dist-info/RECORD"
        info = zipfile.ZipInfo(record_path, _DATE)
        info.external_attr = 0o644 << 16
        wheel.writestr(info, "".join(record) + record_path + ",,\n")
    return filename


def build_sdist(sdist_directory, config_settings=None):
    project = _project()
    dist = _dist_name(project)
    filename = dist + ".tar.gz"
    with tarfile.open(os.path.join(sdist_directory, filename), "w:gz") as archive:
        for file in sorted(_ROOT.rglob("*")):
            if file.is_file() and "__pycache__" not in file.parts:
                archive.add(file, dist + "/" + file.relative_to(_ROOT).as_posix())
    return filename
'''


def install_script(public_url: str) -> str:
    """The installer script for a server reachable at ``public_url``."""
    url = public_url.rstrip("/")
    if "'" in url:
        raise ConfigError(f"public_url {url!r} cannot contain a single quote")
    return _SCRIPT.replace("@SERVER@", url)


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
        add("_build/remotehands_build.py", _BACKEND.encode())
        for path in sorted(package_dir.rglob("*")):
            if path.is_file() and "__pycache__" not in path.parts and path.suffix != ".pyc":
                add(
                    f"src/remotehands/{path.relative_to(package_dir).as_posix()}", path.read_bytes()
                )
    return buffer.getvalue()
