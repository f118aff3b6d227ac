"""Per-process state made fleet-wide: the principal cache and the limits on failed logins and
registrations.

**Revocations.** A change to users, sessions or tokens clears this replica's
:class:`~remotehands.server.auth.authentication.PrincipalCache` (as on one server) and tells
every replica to clear theirs (``rh.auth.clear``), so that a revoked token is refused by the
others as soon as the message arrives (milliseconds), not after the cache's lifetime.

**Rate limits.** Each failure and success is counted here and sent to the other replicas
(``rh.ratelimit``), which count it in their own sliding windows: every replica sees every
failure, so the limit holds for the fleet, not per replica. Counting in memory and spreading
over NATS, rather than in the shared database, keeps a flood of failed logins from becoming a
flood of database writes (exactly what an attacker would like), and the windows are a minute
long: a replica that starts, or reconnects, missing the last minute's failures is the worst
case, as with a restart of one server today.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable
from typing import Any

from nats.aio.msg import Msg
from nats.aio.subscription import Subscription

from remotehands.server.auth.authentication import PrincipalCache
from remotehands.server.cluster.bus import Outbox, guarded
from remotehands.server.cluster.connection import NatsConnection
from remotehands.server.cluster.wire import PREFIX
from remotehands.server.ratelimit import LoginLimiter, RateLimiter

__all__ = [
    "AUTH_CLEAR",
    "RATE_LIMIT",
    "SharedLoginLimiter",
    "SharedPrincipalCache",
    "SharedRateLimiter",
    "SharedState",
]

AUTH_CLEAR = f"{PREFIX}.auth.clear"
RATE_LIMIT = f"{PREFIX}.ratelimit"


class SharedPrincipalCache(PrincipalCache):
    """A :class:`PrincipalCache` whose :meth:`clear` clears every replica's."""

    def __init__(self, outbox: Outbox, replica_id: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._outbox = outbox
        self._replica_id = replica_id

    def clear(self) -> None:
        """Forget everything here and on every other replica."""
        super().clear()
        self._outbox.send(AUTH_CLEAR, {"replica": self._replica_id})

    def clear_here(self) -> None:
        """Forget everything here only (another replica's revocation)."""
        super().clear()


class SharedLoginLimiter(LoginLimiter):
    """A :class:`LoginLimiter` whose failures and successes count on every replica."""

    def __init__(self, outbox: Outbox, replica_id: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._outbox = outbox
        self._replica_id = replica_id

    def failed(self, ip: str, username: str) -> None:
        """Count one failure here and on every other replica."""
        super().failed(ip, username)
        self._outbox.send(RATE_LIMIT, {"replica": self._replica_id, "limiter": "login",
                                       "op": "failed", "ip": ip, "username": username})  # fmt: skip

    def succeeded(self, ip: str, username: str) -> None:
        """Forget the pair's and username's failures here and on every other replica."""
        super().succeeded(ip, username)
        self._outbox.send(RATE_LIMIT, {"replica": self._replica_id, "limiter": "login",
                                       "op": "succeeded", "ip": ip,
                                       "username": username})  # fmt: skip


class SharedRateLimiter(RateLimiter):
    """A :class:`RateLimiter` (of ``name``) whose failures and resets count on every replica."""

    def __init__(self, outbox: Outbox, replica_id: str, name: str, limit: int,
                 clock: Callable[[], float] = time.monotonic) -> None:  # fmt: skip
        super().__init__(limit, clock=clock)
        self._outbox = outbox
        self._replica_id = replica_id
        self.name = name

    def failed(self, key: str) -> None:
        """Count one failure for ``key`` here and on every other replica."""
        super().failed(key)
        self._outbox.send(RATE_LIMIT, {"replica": self._replica_id, "limiter": self.name,
                                       "op": "failed", "key": key})  # fmt: skip

    def reset(self, key: str) -> None:
        """Forget ``key``'s failures here and on every other replica."""
        super().reset(key)
        self._outbox.send(RATE_LIMIT, {"replica": self._replica_id, "limiter": self.name,
                                       "op": "reset", "key": key})  # fmt: skip


class SharedState:
    """Applies the other replicas' revocations and failures to this replica's cache and
    limiters; an async context manager (its subscriptions live for the block)."""

    def __init__(
        self,
        nats: NatsConnection,
        principals: SharedPrincipalCache,
        login: SharedLoginLimiter,
        limiters: list[SharedRateLimiter],
    ) -> None:
        self._nats = nats
        self._principals = principals
        self._login = login
        self._limiters = {limiter.name: limiter for limiter in limiters}
        self._subs: list[Subscription] = []
        self.applied = 0
        """Messages of other replicas applied here."""

    async def __aenter__(self) -> SharedState:
        client = self._nats.client
        self._subs = [
            await client.subscribe(AUTH_CLEAR, cb=guarded("auth", self._on_clear)),
            await client.subscribe(RATE_LIMIT, cb=guarded("ratelimit", self._on_limit)),
        ]
        return self

    async def __aexit__(self, *exc: object) -> None:
        for sub in self._subs:
            with contextlib.suppress(Exception):  # NATS already closed: nothing to undo
                await sub.unsubscribe()

    def _theirs(self, message: dict[str, Any]) -> bool:
        return message.get("replica") != self._nats.replica_id

    async def _on_clear(self, message: dict[str, Any], msg: Msg) -> None:
        if self._theirs(message):
            self.applied += 1
            self._principals.clear_here()

    async def _on_limit(self, message: dict[str, Any], msg: Msg) -> None:
        if not self._theirs(message):
            return
        self.applied += 1
        op, name = message.get("op"), message.get("limiter")
        if name == "login":
            ip, username = str(message.get("ip")), str(message.get("username"))
            if op == "failed":
                LoginLimiter.failed(self._login, ip, username)
            elif op == "succeeded":
                LoginLimiter.succeeded(self._login, ip, username)
            return
        limiter = self._limiters.get(str(name))
        if limiter is None:
            return
        key = str(message.get("key"))
        if op == "failed":
            RateLimiter.failed(limiter, key)
        elif op == "reset":
            RateLimiter.reset(limiter, key)
