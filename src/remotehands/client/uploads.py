"""The payload of a streamed action (``media_upload``): a file read in chunks as it is sent.

:class:`UploadBody` reads a path or an open binary file from its start each time it is
iterated (so a request refused for an expired login can be sent again), one chunk at a time,
never the whole file, and reports progress after each chunk as ``progress(sent, total)``. The
sync clients iterate it; the async ones iterate it with ``async for``, reading on a thread so
that the event loop stays free.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import BinaryIO

from remotehands.errors import ConfigError, ValidationError

__all__ = ["CHUNK", "Progress", "UploadBody", "UploadSource"]

CHUNK = 1 << 20
"""How much is read and sent at a time."""

Progress = Callable[[int, int], object]
"""Called with the bytes sent so far and the total after each chunk."""

UploadSource = str | os.PathLike[str] | BinaryIO
"""What can be uploaded: a path, or a seekable binary file open for reading (read from where
it is to its end)."""


class UploadBody:
    """A file to stream as a request body: see the module docstring."""

    def __init__(self, source: UploadSource, progress: Progress | None = None) -> None:
        self.progress = progress
        self.sent = 0
        if isinstance(source, str | os.PathLike):
            self._path: Path | None = Path(source)
            self._file: BinaryIO | None = None
            try:
                self.size = self._path.stat().st_size
            except OSError as err:
                raise ConfigError(f"cannot read {source}: {err.strerror or err}") from err
            if not self._path.is_file():
                raise ConfigError(f"{source} is not a file")
            self._start = 0
        else:
            self._path = None
            self._file = source
            try:
                self._start = source.tell()
                self.size = source.seek(0, os.SEEK_END) - self._start
                source.seek(self._start)
            except (OSError, ValueError, AttributeError) as err:
                raise ValidationError(
                    "upload a path or a seekable file opened in binary mode (its size must be "
                    f"known before sending): {err}"
                ) from err

    def _open(self) -> tuple[BinaryIO, bool]:
        if self._path is not None:
            try:
                return self._path.open("rb"), True
            except OSError as err:
                raise ConfigError(f"cannot read {self._path}: {err.strerror or err}") from err
        assert self._file is not None
        self._file.seek(self._start)
        return self._file, False

    def _advance(self, data: bytes) -> None:
        self.sent += len(data)
        if self.sent > self.size:
            raise ValidationError(f"the file grew while it was sent (over {self.size} bytes)")
        if self.progress is not None:
            self.progress(self.sent, self.size)

    def __iter__(self) -> Iterator[bytes]:
        self.sent = 0
        file, owned = self._open()
        try:
            while self.sent < self.size:
                data = file.read(min(CHUNK, self.size - self.sent))
                if not data:
                    raise ValidationError(f"the file shrank while it was sent ({self.sent} of "
                                          f"{self.size} bytes)")  # fmt: skip
                self._advance(data)
                yield data
        finally:
            if owned:
                file.close()

    async def __aiter__(self) -> AsyncIterator[bytes]:
        self.sent = 0
        file, owned = await asyncio.to_thread(self._open)
        try:
            while self.sent < self.size:
                data = await asyncio.to_thread(file.read, min(CHUNK, self.size - self.sent))
                if not data:
                    raise ValidationError(f"the file shrank while it was sent ({self.sent} of "
                                          f"{self.size} bytes)")  # fmt: skip
                self._advance(data)
                yield data
        finally:
            if owned:
                with contextlib.suppress(OSError):
                    file.close()
