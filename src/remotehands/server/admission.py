"""Admission of agents: registrations and link handshakes at the pace the database can take.

When a server restarts or a network comes back, thousands of agents dial at once; each
handshake authenticates (a database read) and marks its device online (a write), each
registration writes a device. Admitted all at once they queue on the connection pool and
SQLite's single writer until their timeouts fire, and the agents retry into the same crowd.
:class:`Admission` lets ``limit`` of them work at once and ``queue`` more wait their turn;
past that an agent is answered ``503`` with ``Retry-After`` at once (an agent honours it:
back-pressure, not a failure), the wait it is told growing with the crowd ahead of it, spread by
jitter so that the refused come back at an even pace.
"""

from __future__ import annotations

import asyncio
import math
import random
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import ClassVar

from remotehands.ratelimit import RateLimitExceeded

__all__ = ["Admission", "AdmissionFull", "Ticket"]

MIN_RETRY_AFTER_S = 1.0
"""The least an agent refused admission is told to wait (``Retry-After`` counts whole seconds)."""
MAX_RETRY_AFTER_S = 30.0
"""The most: about an agent's own backoff cap."""


class AdmissionFull(RateLimitExceeded):
    """Too many agents are being admitted right now: come back after ``retry_after_s``
    (``503`` with ``Retry-After``; the wire code says it is a rate limit)."""

    http_status: ClassVar[int] = 503


class Admission:
    """At most ``limit`` admissions at once and ``queue`` waiting; an async context manager
    per admission (:meth:`admit`).

    ``pace_s`` is what one admission is reckoned to take: a refused agent is told to wait for
    the crowd ahead of it (``(working + waiting) / limit * pace_s``), within
    :data:`MIN_RETRY_AFTER_S` and :data:`MAX_RETRY_AFTER_S`, times a random factor in [1, 2)
    (the jitter: the refused do not come back together). A waiting admission gives up after
    ``wait_s`` and is refused the same way.
    """

    def __init__(
        self, limit: int, queue: int, *, pace_s: float = 0.05, wait_s: float = 10.0
    ) -> None:
        if limit < 1 or queue < 0:
            raise ValueError("an admission needs a limit of at least 1 and a queue of at least 0")
        self.limit = limit
        self.queue = queue
        self.pace_s = pace_s
        self.wait_s = wait_s
        self._slots = asyncio.Semaphore(limit)
        self.working = 0
        """Admissions running now."""
        self.waiting = 0
        """Admissions waiting for a slot."""
        self.refused = 0
        """Admissions refused since the start (a counter)."""

    def retry_after(self) -> float:
        """What a refused agent is told to wait now, in seconds (jittered)."""
        ahead = (self.working + self.waiting) / self.limit * self.pace_s
        base = min(MAX_RETRY_AFTER_S, max(MIN_RETRY_AFTER_S, ahead))
        return base * random.uniform(1.0, 2.0)

    def _refuse(self, what: str) -> AdmissionFull:
        self.refused += 1
        wait = self.retry_after()
        return AdmissionFull(
            f"the server is admitting {self.working} agents and {self.waiting} more wait: "
            f"{what} again after {math.ceil(wait)} s",
            wait,
        )

    async def enter(self, what: str = "try") -> Ticket:
        """One admission, held until its :meth:`Ticket.release`; raises :class:`AdmissionFull`
        (``what`` names the retry in its message) when the queue is full or the wait too
        long."""
        if self._slots.locked() and self.waiting >= self.queue:
            raise self._refuse(what)
        self.waiting += 1
        try:
            async with asyncio.timeout(self.wait_s):
                await self._slots.acquire()
        except TimeoutError as err:
            raise self._refuse(what) from err
        finally:
            self.waiting -= 1
        self.working += 1
        return Ticket(self)

    @asynccontextmanager
    async def admit(self, what: str = "try") -> AsyncIterator[None]:
        """Hold one admission while the block runs (see :meth:`enter`)."""
        ticket = await self.enter(what)
        try:
            yield
        finally:
            ticket.release()

    def _release(self) -> None:
        self.working -= 1
        self._slots.release()


class Ticket:
    """One admission held; :meth:`release` it once the database work is done (again: no-op)."""

    def __init__(self, admission: Admission) -> None:
        self._admission: Admission | None = admission

    def release(self) -> None:
        """Let the next agent in."""
        if self._admission is not None:
            self._admission._release()
            self._admission = None
