"""A small imitation of the agent's native API and the server's /v1 API, served by uvicorn on
loopback, for the SDK and CLI tests (test_client*.py, test_cli*.py import it).

It answers in the shapes of the references (desktopkit, KVMFleet), errors included, validates
action parameters with the same models the agent uses, and records every request it gets.
"""

from __future__ import annotations

import asyncio
import base64
import copy
import json
import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import pydantic
import uvicorn
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, PlainTextResponse, Response

from remotehands.protocol.actions import ACTIONS_BY_NAME, match_route

AGENT_PASSWORD = "agent-pw"
AGENT_TOKEN = "agent-token"
FLEET_USER = "admin"
FLEET_PASSWORD = "fleet-pw"
FLEET_TOKEN = "fleet-token"
IMAGE = b"\xff\xd8\xff\xe0 not really a jpeg"

WINDOWS = [
    {
        "id": 71303171,
        "title": "Terminal",
        "process_name": "xterm",
        "pid": 4321,
        "bounds": {"x": 0, "y": 0, "width": 800, "height": 600},
        "is_focused": True,
        "is_dialog": False,
    },
    {
        "id": 71303200,
        "title": "Save changes?",
        "process_name": "gedit",
        "pid": 4400,
        "bounds": {"x": 100, "y": 100, "width": 300, "height": 120},
        "is_focused": False,
        "is_dialog": True,
    },
]

DEVICES: list[dict[str, Any]] = [
    {
        "id": "dev_1",
        "name": "web-1",
        "tags": ["prod", "web"],
        "status": "online",
        "device_type": "x11",
        "driver": "x11",
        "agent_version": "0.1.0",
        "last_seen": "2026-05-19T10:00:00Z",
        "health": {"uptime_seconds": 100.0, "cpu_percent": 12.5, "memory_percent": 40.0},
        "capabilities": ["screen", "keyboard", "mouse"],
        "screens": [{"id": 0, "width": 1920, "height": 1080}],
    },
    {
        "id": "dev_2",
        "name": "db-1",
        "tags": ["prod"],
        "status": "online",
        "device_type": "pikvm",
        "driver": "pikvm",
        "agent_version": "0.1.0",
        "last_seen": "2026-05-19T10:00:00Z",
        "health": None,
        "capabilities": ["screen"],
        "screens": [],
    },
    {
        "id": "dev_3",
        "name": "lab-pc",
        "tags": ["lab"],
        "status": "offline",
        "device_type": "x11",
        "driver": "x11",
        "agent_version": "0.1.0",
        "last_seen": "2026-05-18T10:00:00Z",
        "health": None,
        "capabilities": [],
        "screens": [],
    },
]


def _error(status: int, code: str, details: str) -> JSONResponse:
    return JSONResponse({"error": code, "details": details}, status_code=status)


class _Answer(Exception):
    """Raised inside the fake to answer at once."""

    def __init__(self, response: Response) -> None:
        self.response = response


@dataclass
class Seen:
    """One request the fake received."""

    method: str
    path: str
    query: dict[str, list[str]]
    body: Any
    auth: str | None

    @property
    def params(self) -> dict[str, str]:
        """The query with one value per key."""
        return {k: v[-1] for k, v in self.query.items()}


@dataclass
class _Queued:
    status: int
    body: Any
    delay_s: float = 0.0
    text: str | None = None


@dataclass
class FakeApi:
    """The fake's state; tests read :attr:`seen` and queue special answers with :meth:`queue`."""

    url: str = ""
    seen: list[Seen] = field(default_factory=list)
    agent_open: bool = False
    clipboard: str = "clip text"
    devices: list[dict[str, Any]] = field(default_factory=list)
    tokens: list[dict[str, Any]] = field(default_factory=list)
    users: list[dict[str, Any]] = field(default_factory=list)
    _queued: dict[tuple[str, str], list[_Queued]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.app = FastAPI()
        self.app.add_api_route(
            "/{path:path}",
            self._handle,
            methods=["GET", "POST", "PUT", "PATCH", "DELETE"],
        )
        self.reset()

    def reset(self) -> None:
        """Back to the initial state."""
        self.seen.clear()
        self._queued.clear()
        self.agent_open = False
        self.clipboard = "clip text"
        self.devices = copy.deepcopy(DEVICES)
        self.tokens = [
            {
                "id": "tok_1",
                "name": "ci",
                "prefix": "rh_ab12",
                "role": "operator",
                "read_only": False,
                "tags": ["lab"],
                "last_used_at": None,
                "revoked_at": None,
            }
        ]
        self.users = [
            {"id": "usr_1", "username": "admin", "role": "owner", "disabled": False,
             "created_at": "2026-05-01T00:00:00Z"},
        ]  # fmt: skip

    def queue(
        self,
        method: str,
        path: str,
        status: int = 200,
        body: Any = None,
        *,
        delay_s: float = 0.0,
        text: str | None = None,
    ) -> None:
        """Answer the next ``method path`` with this instead of the normal answer."""
        self._queued.setdefault((method, path), []).append(_Queued(status, body, delay_s, text))

    def requests(self, *, logins: bool = False) -> list[Seen]:
        """What was received (without logins unless asked)."""
        return [s for s in self.seen if logins or not s.path.endswith("/auth/login")]

    @property
    def last(self) -> Seen:
        """The last request that was not a login."""
        return self.requests()[-1]

    # the app

    async def _handle(self, request: Request, path: str) -> Response:
        raw = await request.body()
        if request.headers.get("content-type") == "application/octet-stream":
            # a streamed action's payload (media.upload): recorded as its size and first bytes
            body: Any = {"size": len(raw), "head": raw[:16].hex()}
        else:
            body = json.loads(raw) if raw else None
        query: dict[str, list[str]] = {}
        for key, value in request.query_params.multi_items():
            query.setdefault(key, []).append(value)
        seen = Seen(request.method, "/" + path, query, body, request.headers.get("authorization"))
        self.seen.append(seen)
        queued = self._queued.get((seen.method, seen.path))
        if queued:
            answer = queued.pop(0)
            if answer.delay_s:
                await asyncio.sleep(answer.delay_s)
            if answer.text is not None:
                return PlainTextResponse(answer.text, status_code=answer.status)
            if answer.body is None:
                return Response(status_code=answer.status)
            return JSONResponse(answer.body, status_code=answer.status)
        try:
            return self._dispatch(seen)
        except _Answer as answer:
            return answer.response

    def _dispatch(self, seen: Seen) -> Response:
        if seen.path == "/health":
            return JSONResponse({"status": "ok"})
        if seen.path == "/auth/login":
            if (seen.body or {}).get("password") != AGENT_PASSWORD:
                return _error(401, "unauthorized", "wrong password")
            return JSONResponse({"token": AGENT_TOKEN, "expires_in_s": 28800})
        if seen.path.startswith("/v1/"):
            return self._fleet(seen)
        if not self.agent_open and seen.auth != f"Bearer {AGENT_TOKEN}":
            return _error(401, "unauthorized", "log in first: POST /auth/login")
        if seen.path == "/auth/logout":
            return JSONResponse({"status": "ok"})
        query = seen.params if seen.method == "GET" else (seen.body or {})
        if "head" in query:  # a streamed payload: its parameters are in the query string
            query = {**seen.params, "size": query["size"]}
        return self._native(seen.method, seen.path, query)

    # the agent's native API

    def _native(self, method: str, path: str, given: dict[str, Any]) -> Response:
        found = match_route(method, path)
        if found is None:
            return _error(404, "not_found", f"no route {method} {path}")
        spec, path_params = found
        params = {**given, **path_params}
        try:
            spec.params.model_validate(params)
        except pydantic.ValidationError as err:
            return _error(422, "invalid", str(err).splitlines()[1])
        result = self.result(spec.name, params)
        if result is None:
            return Response(status_code=204)
        return JSONResponse(result)

    def result(self, action: str, params: dict[str, Any]) -> Any:
        """The answer to ``action``; raises :class:`_Answer` for error answers."""
        window = params.get("id", params.get("window_id"))
        if action.startswith(("window.", "application.close")) and str(window) == "999":
            raise _Answer(_error(404, "not_found", "no window 999"))
        if action in ("screenshot", "screenshot.region"):
            scale = float(params.get("scale", 1.0))
            width = int(params.get("width", 1920))
            height = int(params.get("height", 1080))
            return {
                "image": base64.b64encode(IMAGE).decode(),
                "width": int(width * scale),
                "height": int(height * scale),
                "format": params.get("format", "jpeg"),
                "stable": True,
                "timed_out": False,
            }
        if action in ("keyboard.key", "keyboard.hotkey") and "bogus" in str(params.get("keys")):
            raise _Answer(_error(422, "invalid", "unknown key name 'bogus'"))
        if action == "clipboard.slot_get" and params["name"] == "missing":
            raise _Answer(_error(404, "not_found", "no clipboard slot 'missing'"))
        answers: dict[str, Any] = {
            "screenshot.cursor": {"x": 512, "y": 384},
            "screens": {"screens": [{"id": 0, "width": 1920, "height": 1080, "x": 0, "y": 0}]},
            "windows.list": WINDOWS,
            "windows.focused": WINDOWS[0],
            "dialog.get": {"dialog": WINDOWS[1]},
            "clipboard.get": {
                "text": self.clipboard,
                "length": len(self.clipboard),
                "truncated": False,
            },
            "clipboard.slots": [
                {"name": "panel_1", "length": 5, "stored_at": "2026-05-19T10:15:00Z"}
            ],
            "clipboard.slot_get": {
                "name": params.get("name"),
                "text": "hello",
                "length": 5,
                "stored_at": "2026-05-19T10:15:00Z",
            },
            "clipboard.slot_store": {"name": params.get("name"), "length": 5},
            "clipboard.slot_delete": None,
            "clipboard.slots_clear": None,
            "clipboard.slot_restore": {"name": params.get("name"), "length": 5},
            "clipboard.capture": {
                "results": [
                    {"slot": c["slot"], "text": "x", "length": 1, "truncated": False, "ok": True}
                    for c in params.get("captures", [])
                ]
            },
            "application.open": {"status": "ok", "pid": 4242},
            "application.running": {
                "running": params.get("name") == "firefox",
                "pids": [1234] if params.get("name") == "firefox" else [],
            },
            "window.move": {"ok": True, "id": str(window), "bounds": params.get("bounds")},
            "actions": [
                {
                    "timestamp": "2026-05-19T10:15:00Z",
                    "action": "mouse.click",
                    "params": '{"x": 1}',
                    "result": "ok",
                    "duration_ms": 4,
                }
            ],
            "screenshots": {
                "native_width": 1920,
                "native_height": 1080,
                "images": [
                    {"name": v.get("name"), "image": base64.b64encode(IMAGE).decode(), "ok": True}
                    for v in params.get("variants", [])
                ],
            },
        }
        answers |= self._kvm_answers(action, params)
        if action == "clipboard.set":
            self.clipboard = params["text"]
        if action == "sequence":
            return self._sequence(params)
        return answers.get(action, {"status": "ok"})

    def _kvm_answers(self, action: str, params: dict[str, Any]) -> dict[str, Any]:
        power = {"on": True, "hdd": False, "busy": False, "actions": ["on", "off"],
                 "buttons": ["power", "reset"]}  # fmt: skip
        off = {**power, "on": False}
        observed = {"before": power, "after": off, "expected": False, "changed": True,
                    "timed_out": False, "waited_ms": 1200.0}  # fmt: skip
        drive = {"image": "a.iso", "connected": True, "cdrom": True, "rw": False}
        image = {"name": params.get("name") or "a.iso", "size": params.get("size", 4000),
                 "complete": True}  # fmt: skip
        ports = {"active": 1, "ports": [
            {"port": 0, "name": "a", "video": True, "beacon": False, "power": True},
            {"port": 1, "name": "b", "video": True, "beacon": True, "power": False},
        ]}  # fmt: skip
        answers: dict[str, Any] = {
            "power.state": power,
            "media.state": {"online": True, "busy": False, "drive": drive, "images": [image],
                            "storage_size": 1 << 30, "storage_free": 1 << 29},
            "media.upload": image,
            "media.fetch": image,
            "media.mount": drive,
            "media.eject": {**drive, "image": None, "connected": False},
            "media.remove": None,
            "switch.ports": ports,
            "switch.set": ports,
            "switch.beacon": ports,
        }  # fmt: skip
        if action.startswith("power.") and action != "power.state":
            answers[action] = {"action": action[6:], **observed}
        if action in ("switch.power", "switch.click"):
            answers[action] = {"port": params.get("port"), "action": "off", **observed,
                               "before": True, "after": False}  # fmt: skip
        return answers

    def _sequence(self, params: dict[str, Any]) -> dict[str, Any]:
        results: list[dict[str, Any]] = []
        aborted = None
        for index, step in enumerate(params["steps"]):
            name = step.get("name") or f"step-{index}"
            entry: dict[str, Any] = {"name": name, "type": step["type"], "duration_ms": 3}
            if str(step.get("window_id")) == "999":
                entry |= {"ok": False, "error": "not_found", "details": "no window 999"}
            else:
                entry["ok"] = True
                if step["type"] == "screenshot":
                    entry |= {"image": base64.b64encode(IMAGE).decode(), "format": "jpeg"}
            results.append(entry)
            if not entry["ok"] and params.get("on_error", "abort") == "abort":
                aborted = name
                break
        return {"results": results, "aborted_at": aborted, "total_duration_ms": 9}

    # the server's /v1 API

    def _device(self, ref: str) -> dict[str, Any]:
        for device in self.devices:
            if device["id"] == ref:
                return device
        raise _Answer(_error(404, "not_found", f"no device {ref}"))

    def _fleet(self, seen: Seen) -> Response:
        method, path, body = seen.method, seen.path, seen.body or {}
        if path == "/v1/auth/login":
            if body.get("username") != FLEET_USER or body.get("password") != FLEET_PASSWORD:
                return _error(401, "unauthorized", "wrong username or password")
            return JSONResponse({"token": FLEET_TOKEN, "expires_in_s": 43200})
        if seen.auth != f"Bearer {FLEET_TOKEN}":
            return _error(401, "unauthorized", "invalid or expired token")
        parts = path.split("/")[2:]
        if parts == ["devices"] and method == "GET":
            return JSONResponse({"devices": self._select(seen.query)})
        if parts == ["devices", "enrollment"] and method == "POST":
            return JSONResponse(
                {
                    "token": "ekvent_abc",
                    "expires_at": "2026-05-19T10:30:00Z",
                    "install_cmd": "curl -sSL http://fleet/install | sh -s -- --token ekvent_abc",
                }
            )
        if parts[0] == "devices" and len(parts) == 2:
            device = self._device(parts[1])
            if method == "PATCH":
                device.update(body)
            if method == "DELETE":
                self.devices.remove(device)
                return Response(status_code=204)
            return JSONResponse(device)
        if parts[0] == "devices" and len(parts) > 2:
            device = self._device(parts[1])
            if device["status"] != "online":
                return _error(503, "device_offline", f"{device['name']} is offline")
            query = seen.params if method == "GET" else body
            if "head" in query:  # a streamed payload: its parameters are in the query string
                query = {**seen.params, "size": query["size"]}
            return self._native(method, "/" + "/".join(parts[2:]), query)
        if parts == ["tokens"]:
            if method == "POST":
                return JSONResponse({"id": "tok_2", "token": "rh_secret", **body}, status_code=201)
            return JSONResponse({"tokens": self.tokens})
        if parts[0] == "tokens" and method == "DELETE":
            return Response(status_code=204)
        if parts == ["users"]:
            if method == "POST":
                user = {"id": "usr_2", "username": body["username"], "role": body["role"]}
                return JSONResponse(user, status_code=201)
            return JSONResponse({"users": self.users})
        if parts[0] == "users" and len(parts) == 2:
            if method == "DELETE":
                return Response(status_code=204)
            return JSONResponse({"id": "usr_2", "username": parts[1], **body})
        if parts == ["auth", "me"]:
            return JSONResponse({"kind": "user", "user_id": "usr_1", "username": "admin",
                                 "role": "owner", "read_only": False, "tags": None,
                                 "token_id": None})  # fmt: skip
        if parts == ["audit"]:
            return JSONResponse(
                {
                    "entries": [
                        {
                            "at": "2026-05-19T10:15:00Z",
                            "actor": "admin",
                            "device_id": "dev_1",
                            "action": "mouse.click",
                            "result": "ok",
                            "duration_ms": 4.2,
                            "details": None,
                        }
                    ]
                }
            )
        if parts == ["bulk"] and method == "POST":
            return JSONResponse({"results": self._bulk(body)})
        return JSONResponse({"detail": "Not Found"}, status_code=404)

    def _select(self, query: dict[str, list[str]]) -> list[dict[str, Any]]:
        chosen = []
        for device in self.devices:
            if "status" in query and device["status"] != query["status"][-1]:
                continue
            if not set(query.get("tag", [])) <= set(device["tags"]):
                continue
            if "search" in query and query["search"][-1].lower() not in device["name"].lower():
                continue
            chosen.append(device)
        return chosen

    def _bulk(self, body: dict[str, Any]) -> list[dict[str, Any]]:
        selector = body["selector"]
        spec = ACTIONS_BY_NAME[body["action"]]
        results = []
        for device in self.devices:
            if selector["ids"] is not None and device["id"] not in selector["ids"]:
                continue
            if not set(selector["tags"] or ()) <= set(device["tags"]):
                continue
            if selector["status"] and device["status"] != selector["status"]:
                continue
            entry = {"device_id": device["id"], "name": device["name"]}
            if device["status"] != "online":
                entry |= {
                    "ok": False,
                    "error": {"error": "device_offline", "details": "offline"},
                }
            else:
                entry |= {"ok": True, "result": self.result(spec.name, body["params"])}
            results.append(entry)
        return results


class _Server(uvicorn.Server):
    def __init__(self, config: uvicorn.Config) -> None:
        super().__init__(config)
        self.ready = threading.Event()

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets=sockets)
        self.ready.set()


@contextmanager
def serving(api: FakeApi) -> Iterator[FakeApi]:
    """Serve ``api`` on a free loopback port (set as ``api.url``) until the block ends."""
    sock = socket.socket(
        socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP
    )  # asyncio sets TCP_NODELAY only for IPPROTO_TCP sockets
    sock.bind(("127.0.0.1", 0))
    sock.listen(128)
    api.url = f"http://127.0.0.1:{sock.getsockname()[1]}"
    server = _Server(uvicorn.Config(api.app, log_level="warning", lifespan="off"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    try:
        if not server.ready.wait(15):
            raise RuntimeError("the fake API did not start within 15 s")
        yield api
    finally:
        server.should_exit = True
        thread.join(15)
        sock.close()


def free_port_url() -> str:
    """The URL of a loopback port nobody listens on."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{sock.getsockname()[1]}"
