"""Private files: directories 0700 and files 0600, whatever the umask.

The server's data directory holds its database and keys, the agent's state directory its device
credentials and certificates: no other local user may read them. The modes are set explicitly
(``chmod`` after creating), never left to the umask of whoever started the process.
"""

from __future__ import annotations

import contextlib
import os
import secrets
from pathlib import Path

__all__ = ["DIR_MODE", "FILE_MODE", "private_dir", "private_file", "read_or_create_secret",
           "write_private"]  # fmt: skip

DIR_MODE = 0o700
FILE_MODE = 0o600


def private_dir(path: Path) -> Path:
    """Create ``path`` (and its parents) if missing, and make it 0700."""
    path.mkdir(mode=DIR_MODE, parents=True, exist_ok=True)
    os.chmod(path, DIR_MODE)
    return path


def private_file(path: Path) -> None:
    """Make ``path`` 0600, creating it empty if missing."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT, FILE_MODE)
    os.close(fd)
    os.chmod(path, FILE_MODE)


def write_private(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically, 0600 from its first byte, in a 0700 directory."""
    private_dir(path.parent)
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, FILE_MODE)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.chmod(tmp, FILE_MODE)
        tmp.replace(path)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise


def read_or_create_secret(path: Path, size: int = 32) -> bytes:
    """The random secret kept in ``path``, made (0600) on first use."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        data = b""
    if len(data) >= size:
        os.chmod(path, FILE_MODE)
        return data
    data = secrets.token_bytes(size)
    write_private(path, data)
    return data
