"""What a database failure means for whoever runs the server: full, read-only or unreachable,
and what to do about it.

SQLite and PostgreSQL word the same fault differently (``database or disk is full``, ``could not
extend file``, ``attempt to write a readonly database``, ``cannot execute ... in a read-only
transaction``); :func:`storage_problem` turns any of them into one sentence, used by ``/health``
and by the 503 answer of a request that could not write (:mod:`remotehands.server.http.errors`).
"""

from __future__ import annotations

from sqlalchemy.exc import DBAPIError, OperationalError

__all__ = ["STORAGE_ERRORS", "is_storage_error", "storage_problem"]

STORAGE_ERRORS: tuple[type[BaseException], ...] = (OperationalError, DBAPIError, OSError)
"""Exceptions that say the database cannot be used (as opposed to a bad query)."""

_FULL = ("disk is full", "no space left", "could not extend", "disk full", "quota exceeded")
_READ_ONLY = ("readonly", "read-only", "read only")


def is_storage_error(err: BaseException) -> bool:
    """Whether ``err`` is the database failing rather than a bug of a query."""
    if isinstance(err, OperationalError | OSError):
        return True
    return isinstance(err, DBAPIError) and err.connection_invalidated


def storage_problem(err: BaseException) -> str:
    """What is wrong with the database and what to do, in one sentence."""
    message = str(err).lower()
    if any(mark in message for mark in _FULL):
        return (
            "the database's disk is full: free space on it (or grow the volume); the server "
            "takes writes again as soon as there is room, and keeps audit entries meanwhile"
        )
    if any(mark in message for mark in _READ_ONLY):
        return (
            "the database is read-only: make its file and directory writable by the server's "
            "user (or end PostgreSQL's read-only mode); audit entries are kept until then"
        )
    return (
        "the database does not answer: check that it runs and is reachable "
        f"({type(err).__name__}); audit entries are kept until it is back"
    )
