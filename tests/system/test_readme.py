"""The README works as printed: its ``sh`` and ``python`` blocks run, section by section, in a
temporary directory against a fresh demo.

The conventions (the README's Development section states them too): the first block, the two
commands, stands for the demo this module starts (``remotehands demo`` on a free port) and only
has to be exactly those two commands; the demo's ``REMOTEHANDS_URL`` and ``REMOTEHANDS_TOKEN``
are in the environment, as if its ``export`` lines had been pasted; a block whose first line is
``# (example: not run`` is only shown. Each section runs in its own ``bash -e``, after the blocks
of "Put remotehands on your PATH" (a reader keeps that shell), in the same directory.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import select
import shlex
import signal
import socket
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"
REMOTEHANDS = str(Path(sys.executable).with_name("remotehands"))
NOT_RUN = "# (example: not run"
PATH_SECTION = "Put `remotehands` on your PATH"
_BLOCK = re.compile(r"^```(\w*)\n(.*?)^```", re.MULTILINE | re.DOTALL)


@dataclass
class Block:
    section: str
    language: str
    text: str


def _blocks() -> list[Block]:
    text = README.read_text()
    blocks: list[Block] = []
    for match in _BLOCK.finditer(text):
        headings = re.findall(r"^## (.+)$", text[: match.start()], re.MULTILINE)
        blocks.append(Block(headings[-1] if headings else "", match.group(1), match.group(2)))
    return blocks


def _runnable(section: str) -> list[Block]:
    return [b for b in _blocks()[1:] if b.section == section and b.language in ("sh", "python")
            and not b.text.startswith(NOT_RUN)]  # fmt: skip


SECTIONS = list(dict.fromkeys(b.section for b in _blocks()[1:] if _runnable(b.section)))


def test_the_readme_opens_with_the_two_commands() -> None:
    first = _blocks()[0]
    assert first.section == "" and first.language == "sh"
    commands = [line.split("#")[0].strip() for line in first.text.splitlines()]
    assert commands == ["scripts/demo", "scripts/test"]


@dataclass
class Tutorial:
    cwd: Path
    env: dict[str, str]


@pytest.fixture(scope="module")
def tutorial(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Tutorial]:
    """A demo on a free port and a directory that looks like the checkout to the README."""
    cwd = tmp_path_factory.mktemp("reader")
    (cwd / ".venv").symlink_to(ROOT / ".venv")
    (cwd / "scripts").symlink_to(ROOT / "scripts")
    venv_bin = str(ROOT / ".venv" / "bin")
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("REMOTEHANDS_") and k not in ("DISPLAY", "XAUTHORITY",
                                                             "VIRTUAL_ENV")}  # fmt: skip
    # remotehands is on PATH only once the README puts it there
    env["PATH"] = os.pathsep.join(p for p in env.get("PATH", "").split(os.pathsep)
                                  if p != venv_bin)  # fmt: skip
    demo = subprocess.Popen([REMOTEHANDS, "demo", "--data", str(cwd / "demo-data"), "--listen",
                             "127.0.0.1:0", "--size", "1280x800", "--json"],
                            env=env, stdout=subprocess.PIPE, text=True)  # fmt: skip
    try:
        assert demo.stdout is not None
        ready, _, _ = select.select([demo.stdout], [], [], 25)
        assert ready, "the demo printed nothing within 25 s"
        info = json.loads(demo.stdout.readline())
        yield Tutorial(cwd, {**env, "REMOTEHANDS_URL": info["url"],
                             "REMOTEHANDS_TOKEN": info["token"]})  # fmt: skip
    finally:
        demo.send_signal(signal.SIGINT)
        demo.wait(20)


def _script(blocks: list[Block], cwd: Path, name: str) -> str:
    lines = ["set -eo pipefail"]
    for i, block in enumerate(blocks):
        if block.language == "python":
            path = cwd / f"{name}-{i}.py"
            path.write_text(block.text)
            lines.append(f"python {shlex.quote(str(path))}")
        else:
            lines.append(block.text)
    return "\n".join(lines) + "\n"


def _port_free(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) != 0


@pytest.mark.parametrize("section", SECTIONS)
def test_each_section_runs_as_printed(section: str, tutorial: Tutorial) -> None:
    if section == "Quick tour of the native API":
        assert _port_free(8082), "port 8082 (the agent's default) is taken: stop what holds it"
    blocks = _runnable(section)
    if section != PATH_SECTION:
        blocks = _runnable(PATH_SECTION) + blocks
    name = re.sub(r"\W+", "-", section).strip("-").lower()
    script = _script(blocks, tutorial.cwd, name)
    process = subprocess.Popen(["bash", "-c", script], cwd=tutorial.cwd, env=tutorial.env,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               start_new_session=True)  # fmt: skip
    try:
        out, err = process.communicate(timeout=25)
    finally:
        # what a block left in the background (the tour's desktop and agent)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
    assert process.returncode == 0, f"{section}:\n{out}\n{err}"
    assert "Traceback" not in err, err
    check = _CHECKS.get(section)
    if check is not None:
        check(out, tutorial.cwd)


def _check_path(out: str, cwd: Path) -> None:
    assert out.startswith("remotehands, version ")


def _check_cli(out: str, cwd: Path) -> None:
    assert "demo-desktop" in out and "online" in out
    assert (cwd / "shot.jpg").read_bytes()[:2] == b"\xff\xd8"
    assert "copied\n" in out


def _check_tour(out: str, cwd: Path) -> None:
    assert out.splitlines()[1:] == ["1920", '{"status":"ok"}']


def _check_sdk(out: str, cwd: Path) -> None:
    assert "terminal" in out


def _check_fleet(out: str, cwd: Path) -> None:
    lines = out.strip().splitlines()[1:]
    assert lines[0] == "1280"
    assert json.loads(lines[1]) == {"status": "ok"}
    assert int(lines[2]) > 40


_CHECKS: dict[str, Callable[[str, Path], None]] = {
    PATH_SECTION: _check_path,
    "Drive the demo from the CLI": _check_cli,
    "Quick tour of the native API": _check_tour,
    "The Python SDK": _check_sdk,
    "The fleet API at a glance": _check_fleet,
}


def test_the_readme_names_every_server_setting_and_exit_code() -> None:
    from remotehands.errors import ERRORS
    from remotehands.server.settings import ServerSettings

    text = README.read_text()
    for name in ServerSettings.model_fields:
        assert re.search(rf"^{name} = ", text, re.MULTILINE), f"setting {name} not in README"
    rows = dict(re.findall(r"^\| (\d+) \| (.+) \|$", text, re.MULTILINE))
    for kind in ERRORS:
        assert f"`{kind.code}`" in rows[str(kind.exit_code)], kind.code
    assert set(rows) == {"0", "1", "130"} | {str(kind.exit_code) for kind in ERRORS}
