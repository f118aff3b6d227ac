"""Log lines of the long-running commands (``agent``, ``server``): text for people, JSON for
supervisors.

JSON lines come from python-json-logger, so a message with quotes, newlines or a traceback is
still one valid JSON object per line (``{"at", "level", "logger", "msg"}``, plus ``exc_info``
for a traceback). Every line goes through the credential redaction of
:mod:`remotehands.server.logredact` first: a token in a URL or a message never reaches a log.
"""

from __future__ import annotations

import logging
import sys
from typing import IO

from remotehands.server.logredact import redact_text

__all__ = ["TEXT_FORMAT", "configure_logging"]

TEXT_FORMAT = "%(asctime)s %(levelname)s %(message)s"
"""The layout of a text log line."""


class _RedactRecord(logging.Filter):
    """Masks credentials in the rendered message (its arguments included)."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        redacted = redact_text(message)
        if redacted != message or record.args:
            record.msg, record.args = redacted, None
        return True


def configure_logging(level: int, as_json: bool, stream: IO[str] | None = None) -> logging.Handler:
    """Send the root logger's records at ``level`` and above to ``stream`` (stderr), as text or
    as JSON lines; returns the handler (replacing any earlier one of this function)."""
    handler = logging.StreamHandler(stream if stream is not None else sys.stderr)
    if as_json:
        from pythonjsonlogger.json import JsonFormatter

        handler.setFormatter(
            JsonFormatter(
                "{asctime}{levelname}{name}{message}",
                style="{",
                rename_fields={
                    "asctime": "at",
                    "levelname": "level",
                    "name": "logger",
                    "message": "msg",
                },
                json_ensure_ascii=False,
            )
        )
    else:
        handler.setFormatter(logging.Formatter(TEXT_FORMAT))
    handler.addFilter(_RedactRecord())
    root = logging.getLogger()
    for old in [h for h in root.handlers if getattr(h, "_remotehands", False)]:
        root.removeHandler(old)
    handler._remotehands = True  # type: ignore[attr-defined]  # marks the handler as ours
    root.addHandler(handler)
    root.setLevel(level)
    return handler
