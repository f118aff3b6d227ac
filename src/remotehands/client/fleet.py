"""Clients of a remotehands server (the fleet's ``/v1`` API)::

    from remotehands.client import FleetClient

    with FleetClient("https://hands.example.com", token=os.environ["REMOTEHANDS_TOKEN"]) as fleet:
        for device in fleet.devices(status="online", tags=["prod"]):
            print(device.name)
        web1 = fleet.device("web-1")          # a name or an id
        web1.click(x=100, y=200)              # POST /v1/devices/{id}/mouse/click
        fleet.bulk("screenshot", {"scale": 0.5}, tags=["prod"])

A device's actions are the methods of :class:`Device` (the same as a standalone agent's);
``fleet.device(name)`` resolves the name through ``GET /v1/devices?search=`` on first use.
With ``username`` and ``password`` instead of a token the client logs in
(``POST /v1/auth/login``) on first use and again when the session expires.
"""

from __future__ import annotations

from collections.abc import Awaitable, Mapping, Sequence
from datetime import datetime
from typing import Any, Generic, TypeVar

import httpx

from remotehands.client.actions import ActionMethods
from remotehands.client.http import AsyncHTTP, SyncHTTP
from remotehands.client.request import (
    Request,
    action_request,
    find_action,
    path_segment,
    validate_params,
    wait_seconds,
)
from remotehands.client.results import unwrap
from remotehands.client.socket import AsyncActionSocket, NoSocketError, SyncActionSocket
from remotehands.errors import ConfigError, NotFoundError, ValidationError

__all__ = ["AsyncDevice", "AsyncFleetClient", "Device", "FleetClient", "FleetMethods"]

R = TypeVar("R")


class _FleetLogin:
    """Logging in to a server: ``POST /v1/auth/login {"username", "password"}``."""

    base_url: str
    _username: str | None
    _password: str | None
    totp: str | None = None
    """The second factor's code (or a recovery code) for users who enabled one."""

    def _can_login(self) -> bool:
        return self._username is not None and self._password is not None

    def _login_request(self) -> Request:
        if self._username is None or self._password is None:
            raise ConfigError(f"to log in to {self.base_url} give both a username and a password")
        return Request(
            "POST",
            "/v1/auth/login",
            json={
                "username": self._username,
                "password": self._password,
                **({"totp": self.totp} if self.totp else {}),
            },
            auth=False,
        )


def _device_path(device_id: str) -> str:
    return f"/v1/devices/{path_segment(device_id)}"


def _search(ref: str) -> Request:
    return Request("GET", "/v1/devices", query={"search": ref}, parse=unwrap("devices"))


def _pick(devices: Any, ref: str) -> str | None:
    """The id of the device named (or with id) ``ref`` among ``devices``."""
    if not isinstance(devices, list):
        return None
    for device in devices:
        if isinstance(device, dict) and device.get("id") == ref:
            return ref
    named = [d for d in devices if isinstance(d, dict) and d.get("name") == ref]
    if not named:
        named = [
            d
            for d in devices
            if isinstance(d, dict) and str(d.get("name", "")).casefold() == ref.casefold()
        ]
    if len(named) > 1:
        ids = ", ".join(str(d.get("id")) for d in named)
        raise ValidationError(f"{len(named)} devices are named {ref!r} ({ids}): use an id")
    return str(named[0]["id"]) if named else None


def _not_found(ref: str) -> NotFoundError:
    return NotFoundError(
        f"no device is named {ref!r} or has that id (`remotehands devices` lists them)"
    )


def _clean(values: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in values.items() if v is not None and v != [] and v != ()}


def _when(value: datetime | str | None) -> str | None:
    if isinstance(value, datetime):
        if value.tzinfo is None:
            raise ValidationError(f"{value!r} has no time zone: give an aware datetime")
        return value.isoformat()
    return value


class FleetMethods(Generic[R]):
    """The fleet's own endpoints: devices, enrollment, tokens, users, audit, bulk.

    Lists come back as lists of :class:`~remotehands.client.Result`; ``R`` is the result for the
    blocking client and an awaitable of it for the async one.
    """

    def _send(self, request: Request) -> R:
        raise NotImplementedError

    def audit_verify(self) -> R:
        """Check the audit log's hash chain: ``{"ok", "entries", "first_bad"}``."""
        return self._send(Request("GET", "/v1/audit/verify"))

    def totp_enroll(self) -> R:
        """Start two-factor sign-in for the logged-in user: ``{"secret", "otpauth_uri"}``."""
        return self._send(Request("POST", "/v1/auth/totp/enroll"))

    def totp_confirm(self, code: str) -> R:
        """Turn two-factor sign-in on with a code: ``{"recovery_codes": [...]}`` (shown once)."""
        return self._send(Request("POST", "/v1/auth/totp/confirm", json={"code": code}))

    def totp_disable(self, code: str) -> R:
        """Turn two-factor sign-in off with a code or a recovery code."""
        return self._send(Request("POST", "/v1/auth/totp/disable", json={"code": code}))

    def me(self) -> R:
        """Who the credentials belong to: ``{"kind", "user_id", "username", "role",
        "read_only", "tags", "token_id"}``."""
        return self._send(Request("GET", "/v1/auth/me"))

    # devices

    def devices(
        self, status: str | None = None, tags: Sequence[str] = (), search: str | None = None
    ) -> R:
        """The devices, filtered by ``status`` (``online``/``offline``), every tag of ``tags``
        and a ``search`` on the name."""
        query = _clean({"status": status, "tag": list(tags), "search": search})
        return self._send(Request("GET", "/v1/devices", query=query, parse=unwrap("devices")))

    def device_get(self, device_id: str) -> R:
        """One device by id (its status, tags, health, capabilities, screens...)."""
        return self._send(Request("GET", _device_path(device_id)))

    def device_update(
        self, device_id: str, *, name: str | None = None, tags: Sequence[str] | None = None
    ) -> R:
        """Rename a device and/or replace its tags."""
        body = _clean({"name": name})
        if tags is not None:
            body["tags"] = list(tags)
        if not body:
            raise ValidationError("nothing to change: give a new name or tags")
        return self._send(Request("PATCH", _device_path(device_id), json=body))

    def device_delete(self, device_id: str) -> R:
        """Delete a device; its agent is cut off and its credential revoked."""
        return self._send(Request("DELETE", _device_path(device_id)))

    def enrollment_create(
        self, suggested_name: str | None = None, suggested_tags: Sequence[str] = ()
    ) -> R:
        """A single-use enrollment token for a new device: ``{"token", "expires_at",
        "install_cmd"}``."""
        body: dict[str, Any] = {"suggested_tags": list(suggested_tags)}
        if suggested_name is not None:
            body["suggested_name"] = suggested_name
        return self._send(Request("POST", "/v1/devices/enrollment", json=body))

    # API tokens

    def tokens_list(self) -> R:
        """The API tokens (never their secrets)."""
        return self._send(Request("GET", "/v1/tokens", parse=unwrap("tokens")))

    def tokens_create(
        self,
        name: str,
        *,
        role: str | None = None,
        tags: Sequence[str] = (),
        read_only: bool = False,
        expires_in_s: int | None = None,
    ) -> R:
        """A new API token; the answer's ``token`` is shown this once. ``tags`` restricts it to
        devices with those tags, ``read_only`` to actions that only observe."""
        body = _clean({"name": name, "role": role, "expires_in_s": expires_in_s})
        body["tags"] = list(tags)
        body["read_only"] = read_only
        return self._send(Request("POST", "/v1/tokens", json=body))

    def tokens_revoke(self, token_id: str) -> R:
        """Revoke an API token."""
        return self._send(Request("DELETE", f"/v1/tokens/{path_segment(token_id)}"))

    # users

    def users_list(self) -> R:
        """The users and their roles."""
        return self._send(Request("GET", "/v1/users", parse=unwrap("users")))

    def users_create(self, username: str, password: str, role: str = "viewer") -> R:
        """A new user with ``role`` (owner, admin, operator or viewer)."""
        body = {"username": username, "password": password, "role": role}
        return self._send(Request("POST", "/v1/users", json=body))

    def users_update(
        self,
        user: str,
        *,
        role: str | None = None,
        password: str | None = None,
        disabled: bool | None = None,
        current_password: str | None = None,
    ) -> R:
        """Change a user's role, password or whether the account is disabled (``user`` is an id
        or a username); changing your own password needs ``current_password``."""
        body = _clean({"role": role, "password": password, "disabled": disabled})
        if not body:
            raise ValidationError("nothing to change: give a role, a password or disabled")
        if current_password is not None:
            body["current_password"] = current_password
        return self._send(Request("PATCH", f"/v1/users/{path_segment(user)}", json=body))

    def users_delete(self, user: str) -> R:
        """Delete a user (and the user's API tokens)."""
        return self._send(Request("DELETE", f"/v1/users/{path_segment(user)}"))

    # audit

    def audit(
        self,
        *,
        device_id: str | None = None,
        actor: str | None = None,
        action: str | None = None,
        result: str | None = None,
        since: datetime | str | None = None,
        until: datetime | str | None = None,
        limit: int | None = None,
        **filters: Any,
    ) -> R:
        """Audit entries matching every filter, newest first (``since`` inclusive, ``until``
        exclusive); ``filters`` passes further query parameters through."""
        query = _clean(
            {
                "device_id": device_id,
                "actor": actor,
                "action": action,
                "result": result,
                "since": _when(since),
                "until": _when(until),
                "limit": limit,
                **filters,
            }
        )
        return self._send(Request("GET", "/v1/audit", query=query, parse=unwrap("entries")))

    # bulk

    def bulk(
        self,
        action: str,
        params: Mapping[str, Any] | None = None,
        *,
        ids: Sequence[str] = (),
        tags: Sequence[str] = (),
        status: str | None = None,
        concurrency: int | None = None,
    ) -> R:
        """Run ``action`` with ``params`` on the devices with any of ``ids``, every tag of
        ``tags`` and ``status``; the answer is a list of per-device results
        ``{"device_id", "name", "ok", "result" or "error": {"error", "details"},
        "duration_ms"}``. Images in the results are bytes."""
        spec = find_action(action)
        if not ids and not tags and status is None:
            raise ValidationError(
                "choose the devices: ids, tags or a status (status='online' for all online)"
            )
        values = validate_params(spec, params or {})
        body: dict[str, Any] = {
            "action": spec.name,
            "params": values,
            # An unused part is null: an empty list would be a criterion that matches nothing.
            "selector": {"ids": list(ids) or None, "tags": list(tags) or None, "status": status},
        }
        if concurrency is not None:
            body["concurrency"] = concurrency
        return self._send(
            Request(
                "POST", "/v1/bulk", json=body, extra_s=wait_seconds(values), parse=unwrap("results")
            )
        )


class FleetClient(_FleetLogin, SyncHTTP, FleetMethods[Any]):
    """A remotehands server, blocking calls. Give a ``token`` (an API token or a session) or a
    ``username`` and ``password``."""

    role = "server"

    def __init__(
        self,
        base_url: str,
        token: str | None = None,
        username: str | None = None,
        password: str | None = None,
        timeout: float = 30.0,
        *,
        transport: httpx.BaseTransport | None = None,
        websocket: bool = False,
    ) -> None:
        super().__init__(base_url, token=token, timeout=timeout, transport=transport)
        self._username = username
        self._password = password
        self.websocket = websocket
        """Whether devices send their actions over one WebSocket each
        (``/v1/devices/{id}/ws``) instead of a request per action."""
        self._sockets: dict[str, SyncActionSocket] = {}

    def socket(self, device_id: str) -> SyncActionSocket:
        """The WebSocket of device ``device_id`` (opened on first use)."""
        found = self._sockets.get(device_id)
        if found is None:
            if self._token is None and self._can_login():
                self.login()
            found = SyncActionSocket(
                self.base_url + _device_path(device_id), lambda: self._token, self.timeout
            )
            self._sockets[device_id] = found
        return found

    def close(self) -> None:
        """Close the devices' WebSockets and the HTTP connections."""
        for socket in self._sockets.values():
            socket.close()
        self._sockets.clear()
        super().close()

    def device(self, ref: str) -> Device:
        """A handle on the device named or with id ``ref``; nothing is sent until it is used."""
        return Device(self, ref)

    def resolve_device(self, ref: str) -> str:
        """The id of the device named or with id ``ref``; :class:`NotFoundError` if none."""
        found = _pick(self._send(_search(ref)), ref)
        if found is not None:
            return found
        try:
            device = self._send(Request("GET", _device_path(ref)))
        except NotFoundError as err:
            raise _not_found(ref) from err
        return str(device["id"])


class Device(ActionMethods[Any]):
    """One device of a fleet: its actions (see :class:`ActionMethods`) and its record."""

    def __init__(self, fleet: FleetClient, ref: str) -> None:
        self.fleet = fleet
        self.ref = ref
        self._id: str | None = None

    def resolve(self) -> str:
        """The device's id (resolved from its name on first use)."""
        if self._id is None:
            self._id = self.fleet.resolve_device(self.ref)
        return self._id

    @property
    def id(self) -> str:
        """The device's id (resolved from its name on first use)."""
        return self.resolve()

    def call(self, action: str, /, **params: Any) -> Any:
        """Carry out ``action`` on this device: ``/v1/devices/{id}`` + the action's path (or
        a message on the device's WebSocket when the fleet client uses them)."""
        if self.fleet.websocket:
            try:
                return self.fleet.socket(self.id).call(action, params)
            except NoSocketError:
                self.fleet.websocket = False  # an older server: HTTP from now on
        request = action_request(action, params)
        return self.fleet._send(request.under(_device_path(self.id)))

    def info(self) -> Any:
        """The device's record."""
        return self.fleet.device_get(self.id)

    def update(self, *, name: str | None = None, tags: Sequence[str] | None = None) -> Any:
        """Rename the device and/or replace its tags."""
        return self.fleet.device_update(self.id, name=name, tags=tags)

    def delete(self) -> Any:
        """Delete the device."""
        return self.fleet.device_delete(self.id)

    def __repr__(self) -> str:
        return f"Device({self.ref!r})"


class AsyncFleetClient(_FleetLogin, AsyncHTTP, FleetMethods[Awaitable[Any]]):
    """:class:`FleetClient` for asyncio: the same methods, each returning an awaitable."""

    role = "server"

    def __init__(
        self,
        base_url: str,
        token: str | None = None,
        username: str | None = None,
        password: str | None = None,
        timeout: float = 30.0,
        *,
        transport: httpx.AsyncBaseTransport | None = None,
        websocket: bool = False,
    ) -> None:
        super().__init__(base_url, token=token, timeout=timeout, transport=transport)
        self._username = username
        self._password = password
        self.websocket = websocket
        """Whether devices send their actions over one WebSocket each."""
        self._sockets: dict[str, AsyncActionSocket] = {}

    async def socket(self, device_id: str) -> AsyncActionSocket:
        """The WebSocket of device ``device_id`` (opened on first use)."""
        found = self._sockets.get(device_id)
        if found is None:
            if self._token is None and self._can_login():
                await self.login()
            found = AsyncActionSocket(
                self.base_url + _device_path(device_id), lambda: self._token, self.timeout
            )
            self._sockets[device_id] = found
        return found

    async def aclose(self) -> None:
        """Close the devices' WebSockets and the HTTP connections."""
        for socket in self._sockets.values():
            await socket.aclose()
        self._sockets.clear()
        await super().aclose()

    def device(self, ref: str) -> AsyncDevice:
        """A handle on the device named or with id ``ref``; nothing is sent until it is used."""
        return AsyncDevice(self, ref)

    async def resolve_device(self, ref: str) -> str:
        """The id of the device named or with id ``ref``; :class:`NotFoundError` if none."""
        found = _pick(await self._send(_search(ref)), ref)
        if found is not None:
            return found
        try:
            device = await self._send(Request("GET", _device_path(ref)))
        except NotFoundError as err:
            raise _not_found(ref) from err
        return str(device["id"])


class AsyncDevice(ActionMethods[Awaitable[Any]]):
    """:class:`Device` for asyncio."""

    def __init__(self, fleet: AsyncFleetClient, ref: str) -> None:
        self.fleet = fleet
        self.ref = ref
        self._id: str | None = None

    async def resolve(self) -> str:
        """The device's id (resolved from its name on first use)."""
        if self._id is None:
            self._id = await self.fleet.resolve_device(self.ref)
        return self._id

    async def call(self, action: str, /, **params: Any) -> Any:
        """Carry out ``action`` on this device: ``/v1/devices/{id}`` + the action's path (or
        a message on the device's WebSocket when the fleet client uses them)."""
        if self.fleet.websocket:
            socket = await self.fleet.socket(await self.resolve())
            try:
                return await socket.call(action, params)
            except NoSocketError:
                self.fleet.websocket = False  # an older server: HTTP from now on
        request = action_request(action, params)
        return await self.fleet._send(request.under(_device_path(await self.resolve())))

    async def info(self) -> Any:
        """The device's record."""
        return await self.fleet.device_get(await self.resolve())

    async def update(self, *, name: str | None = None, tags: Sequence[str] | None = None) -> Any:
        """Rename the device and/or replace its tags."""
        return await self.fleet.device_update(await self.resolve(), name=name, tags=tags)

    async def delete(self) -> Any:
        """Delete the device."""
        return await self.fleet.device_delete(await self.resolve())

    def __repr__(self) -> str:
        return f"AsyncDevice({self.ref!r})"
