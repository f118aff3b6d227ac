"""Keep credentials out of the server's logs.

Browsers cannot set headers on a WebSocket, so ``/v1/events`` also takes ``?token=...``, and
uvicorn logs every path with its query string. This filter masks such tokens (and anything
that looks like one of our credentials) in the records of the uvicorn loggers.
"""

from __future__ import annotations

import logging
import re

__all__ = ["install_log_redaction", "mask_credentials", "redact_text"]

_QUERY_TOKEN = re.compile(r"([?&](?:token|access_token)=)[^&\s\"']+", re.IGNORECASE)
_CREDENTIAL = re.compile(r"\b(rhs|rht|agt|ekvent)_[A-Za-z0-9_\-]{8,}")
_LOGGERS = ("uvicorn", "uvicorn.error", "uvicorn.access")


def mask_credentials(text: str) -> str:
    """``text`` with every string shaped like one of our credentials masked."""
    return _CREDENTIAL.sub(lambda m: f"{m.group(1)}_[redacted]", text)


def redact_text(text: str) -> str:
    """``text`` with query-string tokens and credential-like strings masked."""
    return mask_credentials(_QUERY_TOKEN.sub(r"\1[redacted]", text))


class _Redact(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        if record.args:
            record.args = tuple(
                redact_text(a) if isinstance(a, str) else a
                for a in (record.args if isinstance(record.args, tuple) else (record.args,))
            )
        if isinstance(record.msg, str):
            record.msg = redact_text(record.msg)
        return True


_FILTER = _Redact()


def install_log_redaction() -> None:
    """Attach the filter to the uvicorn loggers (idempotent)."""
    for name in _LOGGERS:
        logger = logging.getLogger(name)
        if _FILTER not in logger.filters:
            logger.addFilter(_FILTER)
