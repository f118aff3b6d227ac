"""The audit log: who did what to which device, with what result and how long it took.

:meth:`AuditLog.record` never raises into its caller (an action that worked must not fail because
its audit row could not be written), and loses nothing when the database cannot take it (full,
read-only, unreachable): such entries go to a spool file (JSON lines, fsynced, 0600) and are
written to the database, oldest first, once it takes writes again. It never stores
secrets: keys such as ``password`` or ``token`` are removed from the parameters, credentials
recognisable by their prefix are masked wherever they appear, and so are the values of
``Authorization``-like header strings.

The log is tamper-evident: each entry carries ``prev_hash``, the hash of the entry written before
it, and ``hash``, the SHA-256 of its own fields and ``prev_hash`` (:func:`entry_hash`). Writes
are serialized (a lock in this process, and on PostgreSQL a transaction-scoped advisory lock
shared by every replica), so the chain has no forks; :meth:`AuditLog.verify` walks it and names
the first entry that does not match (an edited row, or the one after a deleted row).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import hashlib
import json
import logging
import os
import re
from collections.abc import AsyncIterator, Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, cast

from sqlalchemy import Table, insert, or_, select, text
from sqlalchemy.exc import SQLAlchemyError

from remotehands.server.auth.principals import Principal
from remotehands.server.db.engine import Database
from remotehands.server.db.models import AuditEntry
from remotehands.server.logredact import mask_credentials

__all__ = ["ACTOR_KINDS", "AuditLog", "ChainCheck", "entry_hash", "redact"]

_AUDIT_TABLE = cast(Table, AuditEntry.__table__)
logger = logging.getLogger(__name__)

ACTOR_KINDS = ("user", "token", "agent", "system")

RECORD_TIMEOUT_S = 10.0
"""The longest writing one audit row may take before it is given up (and logged)."""

QUEUE_SIZE = 10_000
"""Entries waiting for the writer before ``AuditLog.record(wait=False)`` makes its callers wait."""
WRITE_BATCH = 500
"""The most entries written in one transaction."""
WRITE_LINGER_S = 0.05
"""How long the writer lets queued entries gather before it writes them: one transaction for the
actions of that moment (an agent acting every couple of milliseconds queues dozens), instead of
one per action competing with the actions for the event loop. :meth:`AuditLog.flush` (every
audit read, shutdown) ends the wait at once."""

_CHAIN_LOCK_ID = 0x61756469745F  # "audit_": any constant shared by every replica
VERIFY_BATCH = 1000

SPOOL_RETRY_S = 5.0
"""How often spooled entries are tried again while nothing new comes to write."""
_SPOOLED_FIELDS = ("actor", "actor_kind", "device_id", "action", "params", "result",
                   "duration_ms", "details")  # fmt: skip

REDACTED = "[redacted]"

_SECRET_KEYS = frozenset(
    {
        "password",
        "current_password",
        "new_password",
        "token",
        "auth_token",
        "enrollment_token",
        "access_token",
        "refresh_token",
        "secret",
        "client_secret",
        "authorization",
        "proxy_authorization",
        "cookie",
        "credential",
        "credentials",
        "api_key",
        "x_api_key",
    }
)
_SECRET_KEY_PARTS = ("password", "secret", "passphrase")
_SECRET_HEADER = re.compile(
    r"^\s*(authorization|proxy-authorization|cookie|x-api-key|x-auth-token)\s*:", re.IGNORECASE
)


@functools.lru_cache(maxsize=4096)
def _is_secret_key(key: str) -> bool:
    normal = key.strip().lower().replace("-", "_")
    return normal in _SECRET_KEYS or any(part in normal for part in _SECRET_KEY_PARTS)


def redact(value: Any) -> Any:
    """``value`` with secret keys removed and credential-like strings masked (a copy)."""
    if isinstance(value, dict):
        return {str(k): redact(v) for k, v in value.items() if not _is_secret_key(str(k))}
    if isinstance(value, list | tuple):
        return [redact(v) for v in value]
    if isinstance(value, str):
        header = _SECRET_HEADER.match(value)
        if header:
            return f"{header.group(1)}: {REDACTED}"
        return mask_credentials(value)
    if isinstance(value, bytes | bytearray | memoryview):
        return f"<{len(value)} bytes>"
    return value


@dataclass(frozen=True, slots=True)
class ChainCheck:
    """What :meth:`AuditLog.verify` found."""

    ok: bool
    entries: int
    """Entries checked (those of the chain, up to the first bad one)."""
    first_bad: int | None
    """The id of the first entry that does not match; None when all do."""


def _at(value: datetime) -> str:
    moment = value if value.tzinfo is not None else value.replace(tzinfo=UTC)
    return moment.astimezone(UTC).isoformat()


@dataclass(frozen=True, slots=True)
class _Pending:
    """An entry on its way to the database (the queue, the spool): its fields, no ORM object
    (making one costs more than the rest of recording an action)."""

    at: datetime
    actor: str
    actor_kind: str
    device_id: str | None
    action: str
    params: dict[str, Any] | None
    result: str
    duration_ms: float
    details: str | None


def entry_hash(entry: AuditEntry) -> str:
    """SHA-256 (hex) of an entry's fields and the hash before it, in a canonical JSON form."""
    return _chain_hash(entry.prev_hash, entry)


def _chain_hash(prev: str | None, entry: AuditEntry | _Pending) -> str:
    data = {
        "prev": prev,
        "at": _at(entry.at),
        "actor": entry.actor,
        "actor_kind": entry.actor_kind,
        "device_id": entry.device_id,
        "action": entry.action,
        "params": entry.params,
        "result": entry.result,
        "duration_ms": float(entry.duration_ms),
        "details": entry.details,
    }
    canonical = json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=False,
                           default=str)  # fmt: skip
    return hashlib.sha256(canonical.encode()).hexdigest()


class AuditLog:
    """Writes and reads the ``audit`` table."""

    def __init__(
        self,
        db: Database,
        clock: Callable[[], datetime] | None = None,
        *,
        key: bytes | None = None,
        spool: Path | None = None,
    ) -> None:
        self._db = db
        self.key = key
        """The key of the hashes of typed text kept in place of the text (None: length only)."""
        self._spool = spool
        self._spool_lock = asyncio.Lock()
        self._chain_lock = asyncio.Lock()
        self._held: list[_Pending] = []
        """Entries neither the database nor the spool took (its disk full too): kept here."""
        self.spooled = _count_lines(spool) if spool is not None else 0
        """Entries in the spool (or held in memory), waiting for the database."""
        self._clock = clock or (lambda: datetime.now(UTC))
        self._queue: asyncio.Queue[_Pending] | None = None
        self._writer_task: asyncio.Task[None] | None = None
        self._flush_asked = asyncio.Event()
        """Set by :meth:`flush`: the writer writes what is queued without lingering."""

    async def record(
        self,
        *,
        actor: str,
        actor_kind: str,
        action: str,
        device_id: str | None = None,
        params: dict[str, Any] | None = None,
        result: str = "ok",
        duration_ms: float = 0.0,
        details: str | None = None,
        wait: bool = True,
    ) -> None:
        """Append one entry; logs and swallows any failure.

        ``wait=False`` is for hot paths (device actions: a keep-alive connection's next request
        must not wait on the database): the entry is queued for the writer task, which writes
        entries in order, what is queued together in one transaction, and writes what is left
        when the ``async with`` block ends. A full queue makes the caller wait; entries are
        never dropped. Without a running writer the entry is written at once.
        """
        try:
            entry = self._pending(actor, actor_kind, action, device_id,
                                  redact(params) if params is not None else None,
                                  result, duration_ms, details)  # fmt: skip
            await self._keep(entry, wait)
        except Exception:
            logger.exception("could not write the audit entry %s by %s", action, actor)

    def record_soon(
        self,
        *,
        actor: str,
        actor_kind: str,
        action: str,
        device_id: str | None = None,
        params: dict[str, Any] | None = None,
        result: str = "ok",
        duration_ms: float = 0.0,
        details: str | None = None,
    ) -> bool:
        """:meth:`record` with ``wait=False`` without a coroutine, for callbacks: True when the
        entry is queued for the writer (or failed and was logged, as :meth:`record` does);
        False, nothing recorded, when that would wait (no writer running, its queue full):
        then await :meth:`record`."""
        queue = self._queue
        if queue is None or queue.full():
            return False
        try:
            entry = self._pending(actor, actor_kind, action, device_id,
                                  redact(params) if params is not None else None,
                                  result, duration_ms, details)  # fmt: skip
            queue.put_nowait(entry)
        except Exception:
            logger.exception("could not write the audit entry %s by %s", action, actor)
        return True

    async def _keep(self, entry: _Pending, wait: bool) -> None:
        """Queue ``entry`` for the writer (``wait=False`` with a writer running), else write it."""
        if not wait and self._queue is not None:
            await self._queue.put(entry)
        else:
            await self._write_or_spool([entry])

    def _pending(
        self,
        actor: str,
        actor_kind: str,
        action: str,
        device_id: str | None,
        redacted_params: dict[str, Any] | None,
        result: str,
        duration_ms: float,
        details: str | None,
    ) -> _Pending:
        return _Pending(
            at=self._clock(),
            actor=actor[:128],
            actor_kind=actor_kind,
            device_id=device_id,
            action=action[:64],
            params=redacted_params,
            result=result[:32],
            duration_ms=float(duration_ms),
            details=redact(details) if details is not None else None,
        )

    async def record_many(
        self,
        *,
        actor: str,
        actor_kind: str,
        action: str,
        params: dict[str, Any] | None,
        outcomes: Iterable[tuple[str | None, str, float, str | None]],
    ) -> None:
        """:meth:`record` (``wait=False``) one entry per ``(device_id, result, duration_ms,
        details)`` of ``outcomes``: one action with the same ``params`` on many devices (a bulk
        action), whose parameters are redacted once rather than once a device."""
        try:
            redacted = redact(params) if params is not None else None
        except Exception:
            logger.exception("could not redact the audit entries of %s by %s", action, actor)
            return
        for device_id, result, duration_ms, details in outcomes:
            try:
                entry = self._pending(actor, actor_kind, action, device_id, redacted, result,
                                      duration_ms, details)  # fmt: skip
                await self._keep(entry, wait=False)
            except Exception:
                logger.exception("could not write the audit entry %s by %s", action, actor)

    async def record_for(
        self,
        principal: Principal,
        action: str,
        *,
        device_id: str | None = None,
        params: dict[str, Any] | None = None,
        result: str = "ok",
        duration_ms: float = 0.0,
        details: str | None = None,
        wait: bool = True,
    ) -> None:
        """:meth:`record` an entry by ``principal``: the audit log names it by its
        :attr:`~remotehands.server.auth.Principal.actor` and its kind (``user`` or ``token``)."""
        await self.record(
            actor=principal.actor,
            actor_kind=principal.kind,
            action=action,
            device_id=device_id,
            params=params,
            result=result,
            duration_ms=duration_ms,
            details=details,
            wait=wait,
        )

    async def _write(self, entries: list[_Pending]) -> None:
        """Append ``entries`` to the chain in one transaction (one multi-row insert)."""
        async with (
            self._chain_lock,
            asyncio.timeout(RECORD_TIMEOUT_S),
            self._db.session() as session,
        ):
            if self._db.dialect == "postgresql":
                await session.execute(text("SELECT pg_advisory_xact_lock(:id)"),
                                      {"id": _CHAIN_LOCK_ID})  # fmt: skip
            prev = await session.scalar(
                select(AuditEntry.hash)
                .where(AuditEntry.hash.is_not(None))
                .order_by(AuditEntry.id.desc())
                .limit(1)
            )
            rows = []
            for entry in entries:
                row = {name: getattr(entry, name) for name in _SPOOLED_FIELDS}
                row["at"], row["prev_hash"] = entry.at, prev
                row["hash"] = prev = _chain_hash(prev, entry)
                rows.append(row)
            # the table, not the ORM class: a plain executemany, without the ORM's bulk bookkeeping
            await session.execute(insert(_AUDIT_TABLE), rows)
            await session.commit()

    async def export(self) -> AsyncIterator[dict[str, Any]]:
        """Every entry, oldest first, as JSON-ready dicts, read in batches."""
        last_id = -1
        while True:
            async with self._db.session() as session:
                batch = list((await session.scalars(
                    select(AuditEntry).where(AuditEntry.id > last_id)
                    .order_by(AuditEntry.id).limit(VERIFY_BATCH)
                )).all())  # fmt: skip
            if not batch:
                return
            for entry in batch:
                yield {"id": entry.id, "at": _at(entry.at), "prev_hash": entry.prev_hash,
                       "hash": entry.hash,
                       **{name: getattr(entry, name) for name in _SPOOLED_FIELDS}}  # fmt: skip
                last_id = entry.id

    async def verify(self) -> ChainCheck:
        """Walk the chain from its first entry; the first that does not match is named."""
        await self.flush()
        checked, prev, last_id = 0, None, -1
        while True:
            async with self._db.session() as session:
                batch = list((await session.scalars(
                    select(AuditEntry).where(AuditEntry.hash.is_not(None),
                                             AuditEntry.id > last_id)
                    .order_by(AuditEntry.id).limit(VERIFY_BATCH)
                )).all())  # fmt: skip
            if not batch:
                return ChainCheck(ok=True, entries=checked, first_bad=None)
            for entry in batch:
                if entry.prev_hash != prev or entry.hash != entry_hash(entry):
                    return ChainCheck(ok=False, entries=checked, first_bad=entry.id)
                checked += 1
                prev, last_id = entry.hash, entry.id

    async def _write_or_spool(self, entries: list[_Pending]) -> None:
        """Write ``entries``, or spool them when the database fails; after a write that
        worked, write what the spool holds."""
        try:
            await self._write(entries)
        except Exception as err:
            if self._spool is None:
                raise
            async with self._spool_lock:
                try:
                    await asyncio.to_thread(_append_spool, self._spool, entries)
                except OSError as spool_err:
                    logger.error("the audit spool %s cannot take entries either (%s): "
                                 "keeping them in memory", self._spool, spool_err)  # fmt: skip
                    self._held.extend(entries)
                self.spooled += len(entries)
            logger.error("the database did not take %d audit entries (%s); they wait in %s",
                         len(entries), err, self._spool)  # fmt: skip
            return
        if self.spooled:
            await self.drain_spool()

    async def drain_spool(self) -> int:
        """Write the spooled entries to the database and empty the spool; answers how many.
        Raises (keeping the spool) when the database still fails."""
        if self._spool is None:
            return 0
        async with self._spool_lock:
            entries = await asyncio.to_thread(_read_spool, self._spool)
            if entries:
                for start in range(0, len(entries), WRITE_BATCH):
                    # written batch by batch: a batch already in is not written twice
                    await self._write(entries[start : start + WRITE_BATCH])
                    await asyncio.to_thread(_rewrite_spool, self._spool,
                                            entries[start + WRITE_BATCH :])  # fmt: skip
                logger.warning("%d spooled audit entries written to the database",
                               len(entries))  # fmt: skip
            if self._held:  # newer than the spool's: they came when it failed too
                await self._write(self._held)
                self._held = []
            count, self.spooled = self.spooled, 0
            return count

    async def _writer(self, queue: asyncio.Queue[_Pending]) -> None:
        while True:
            try:
                async with asyncio.timeout(SPOOL_RETRY_S if self.spooled else None):
                    first = await queue.get()
            except TimeoutError:
                with contextlib.suppress(Exception):  # still failing: the next round retries
                    await self.drain_spool()
                continue
            if queue.qsize() < WRITE_BATCH - 1 and not self._flush_asked.is_set():
                with contextlib.suppress(TimeoutError):  # the entries of this moment, together
                    async with asyncio.timeout(WRITE_LINGER_S):
                        await self._flush_asked.wait()
            batch = [first]
            while not queue.empty() and len(batch) < WRITE_BATCH:
                batch.append(queue.get_nowait())
            try:
                await self._write_or_spool(batch)
            except Exception:
                logger.exception("could not write %d audit entries", len(batch))
            finally:
                if queue.empty():
                    self._flush_asked.clear()
                for _ in batch:
                    queue.task_done()

    async def __aenter__(self) -> AuditLog:
        if self.spooled:
            try:
                await self.drain_spool()
            except (SQLAlchemyError, OSError, TimeoutError) as err:  # retried every SPOOL_RETRY_S
                logger.error("%d spooled audit entries still wait for the database: %s",
                             self.spooled, err)  # fmt: skip
        self._queue = asyncio.Queue(maxsize=QUEUE_SIZE)
        self._writer_task = asyncio.create_task(self._writer(self._queue), name="audit-writer")
        return self

    async def __aexit__(self, *exc: object) -> None:
        queue, task = self._queue, self._writer_task
        self._queue, self._writer_task = None, None
        if queue is None or task is None:
            return
        self._flush_asked.set()
        try:
            async with asyncio.timeout(RECORD_TIMEOUT_S):
                await queue.join()
        except TimeoutError:
            logger.error("%d audit entries could not be written at shutdown", queue.qsize())
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task

    async def flush(self) -> None:
        """Wait until every queued entry is written (tests, shutdown)."""
        if self._queue is not None:
            self._flush_asked.set()
            await self._queue.join()

    async def query(
        self,
        *,
        device_id: str | None = None,
        actor: str | None = None,
        action: str | None = None,
        result: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        limit: int = 100,
    ) -> list[AuditEntry]:
        """Entries matching every given filter, newest first.

        ``actor`` matches a user's own entries and those of the user's API tokens (recorded as
        ``user/tok_...``); ``since`` is inclusive, ``until`` exclusive.
        """
        statement = select(AuditEntry)
        if device_id is not None:
            statement = statement.where(AuditEntry.device_id == device_id)
        if actor is not None:
            escaped = actor.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
            statement = statement.where(
                or_(AuditEntry.actor == actor, AuditEntry.actor.like(f"{escaped}/%", escape="\\"))
            )
        if action is not None:
            statement = statement.where(AuditEntry.action == action)
        if result is not None:
            statement = statement.where(AuditEntry.result == result)
        if since is not None:
            statement = statement.where(AuditEntry.at >= since)
        if until is not None:
            statement = statement.where(AuditEntry.at < until)
        statement = statement.order_by(AuditEntry.at.desc(), AuditEntry.id.desc()).limit(limit)
        async with self._db.session() as session:
            return list((await session.scalars(statement)).all())


def _to_line(entry: _Pending) -> str:
    data = {name: getattr(entry, name) for name in _SPOOLED_FIELDS}
    data["at"] = entry.at.isoformat()
    return json.dumps(data, default=str, ensure_ascii=False)


def _from_line(line: str) -> _Pending:
    data = json.loads(line)
    data["at"] = datetime.fromisoformat(data["at"])
    return _Pending(**data)


def _append_spool(path: Path, entries: list[_Pending]) -> None:
    """Append ``entries`` durably (fsync) to the spool, created 0600."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    with os.fdopen(fd, "a", encoding="utf-8") as f:
        f.write("".join(_to_line(entry) + "\n" for entry in entries))
        f.flush()
        os.fsync(f.fileno())


def _read_spool(path: Path) -> list[_Pending]:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return []
    return [_from_line(line) for line in text.splitlines() if line.strip()]


def _rewrite_spool(path: Path, rest: list[_Pending]) -> None:
    if not rest:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
        return
    tmp = path.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write("".join(_to_line(entry) + "\n" for entry in rest))
        f.flush()
        os.fsync(f.fileno())
    tmp.replace(path)


def _count_lines(path: Path) -> int:
    try:
        with path.open("rb") as f:
            return sum(1 for line in f if line.strip())
    except FileNotFoundError:
        return 0
