"""The audit writer: queued entries are written in order, those of one moment in one
transaction, none is lost at shutdown."""

from __future__ import annotations

import asyncio

import pytest
from sqlalchemy import event

from remotehands.server.audit import WRITE_LINGER_S, AuditLog
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


async def test_entries_of_one_moment_share_a_transaction_and_flush_does_not_linger(
    database_url: str,
) -> None:
    async with await Database.open(database_url) as db:
        commits: list[int] = []
        event.listen(db.engine.sync_engine, "commit", lambda _conn: commits.append(1))
        async with AuditLog(db) as audit:
            # An agent acting as fast as it can: one action after another, each audited.
            for i in range(40):
                await audit.record(actor="alice", actor_kind="user", action="mouse.move",
                                   device_id="dev_2", params={"x": i}, wait=False)  # fmt: skip
                await asyncio.sleep(0)
            await audit.flush()
            # Written together, not a transaction each.
            assert len(commits) < 10
            entries = await audit.query(device_id="dev_2", limit=100)
            assert [e.params for e in reversed(entries)] == [{"x": i} for i in range(40)]
            # One entry alone and a flush: written at once, whatever the linger.
            done = len(commits)
            await audit.record(actor="alice", actor_kind="user", action="mouse.click",
                               device_id="dev_2", wait=False)  # fmt: skip
            await asyncio.wait_for(audit.flush(), WRITE_LINGER_S * 100)
            assert len(commits) == done + 1
            assert (await audit.verify()).ok
