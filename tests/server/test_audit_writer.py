"""The audit writer: queued entries are written in order, none is lost at shutdown."""

from __future__ import annotations

import asyncio

import pytest

from remotehands.server.audit import AuditLog
from remotehands.server.db.engine import Database

pytestmark = pytest.mark.anyio


async def test_queued_entries_are_written_in_order_and_drained_at_exit(
    database_url: str,
) -> None:
    async with await Database.open(database_url) as db:
        async with AuditLog(db) as audit:
            await asyncio.gather(*(
                audit.record(actor="alice", actor_kind="user", action=f"mouse.move.{i}",
                             device_id="dev_1", params={"x": i, "password": "hunter2"},
                             wait=False)
                for i in range(300)
            ))  # fmt: skip
            # no flush: leaving the block must write what is still queued
        reader = AuditLog(db)
        entries = await reader.query(device_id="dev_1", limit=1000)
    assert len(entries) == 300
    # newest first; the writer kept the submission order
    assert [e.action for e in reversed(entries)] == [f"mouse.move.{i}" for i in range(300)]
    assert all("password" not in (e.params or {}) for e in entries)


async def test_no_wait_without_a_running_writer_writes_at_once(database_url: str) -> None:
    async with await Database.open(database_url) as db:
        audit = AuditLog(db)
        await audit.record(actor="bob", actor_kind="token", action="keyboard.type", wait=False)
        assert [e.actor for e in await audit.query(actor="bob")] == ["bob"]
