"""``remotehands server`` raises its open-files limit at start (soft to hard), and says clearly
when even the hard limit is too low for a large fleet."""

from __future__ import annotations

import json
import os
import resource
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from remotehands.server.tuning import WANTED_OPEN_FILES

REMOTEHANDS = str(Path(sys.executable).with_name("remotehands"))


def _limits(soft: int, hard: int) -> Callable[[], None]:
    def apply() -> None:  # in the child, before exec
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))

    return apply


def _nofile(pid: int) -> tuple[int, int]:
    """The soft and hard open-files limits of process ``pid``, as the kernel has them."""
    for line in Path(f"/proc/{pid}/limits").read_text().splitlines():
        if line.startswith("Max open files"):
            soft, hard = line.split()[3:5]
            return int(soft), int(hard)
    raise AssertionError("no open-files line in /proc/PID/limits")


@contextmanager
def _server(tmp_path: Path, soft: int, hard: int) -> Iterator[tuple[subprocess.Popen[str], str]]:
    """``remotehands server`` started with these limits; yields it once it serves, and the
    first line of its standard error."""
    env = {**os.environ, "REMOTEHANDS_DATA_DIR": str(tmp_path / "data")}
    server = subprocess.Popen(
        [REMOTEHANDS, "server", "--listen", "127.0.0.1:0", "--json", "--log-level", "warning"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
        preexec_fn=_limits(soft, hard),  # setrlimit only: safe before exec
    )  # fmt: skip
    try:
        assert server.stdout is not None and server.stderr is not None
        started = json.loads(server.stdout.readline())
        assert started["url"].startswith("http://127.0.0.1:")
        yield server, server.stderr.readline()
    finally:
        server.send_signal(signal.SIGTERM)
        try:
            server.wait(20)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()


def test_the_server_raises_its_soft_limit_to_the_hard_one(tmp_path: Path) -> None:
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard < WANTED_OPEN_FILES:
        pytest.skip(f"this machine's hard open-files limit is {hard}")
    with _server(tmp_path, 1024, hard) as (server, first_error):
        soft_now, hard_now = _nofile(server.pid)
    assert soft_now == hard_now
    assert soft_now >= WANTED_OPEN_FILES
    assert "open-files limit" not in first_error


def test_a_hard_limit_too_low_is_named_with_what_to_do(tmp_path: Path) -> None:
    with _server(tmp_path, 256, 512) as (server, first_error):
        assert _nofile(server.pid) == (512, 512)  # raised as far as it may go
    assert "the open-files limit is 512 (hard limit 512)" in first_error
    assert "LimitNOFILE=" in first_error and str(WANTED_OPEN_FILES) in first_error
