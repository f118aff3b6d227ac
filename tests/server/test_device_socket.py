"""The server's device socket (``/v1/devices/{id}/ws``) on a real uvicorn and a simulated agent:
messages sent back to back are answered in order, those relayed from the socket's reader and
those served by a task alike; every action is audited, even one whose caller left; the
credential is checked again."""

from __future__ import annotations

import asyncio
from typing import Any

import orjson
import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from remotehands.errors import BusyError
from remotehands.server.http import device_socket
from remotehands.testing.xapps import eventually
from tests.server.link_harness import LiveFleet, fleet_fixture  # noqa: F401 (fixture)

pytestmark = pytest.mark.anyio

WAIT_S = 10.0


def _socket(fleet: LiveFleet, device_id: str, token: str) -> Any:
    url = fleet.base_url.replace("http://", "ws://") + f"/v1/devices/{device_id}/ws"
    return connect(url, additional_headers={"Authorization": f"Bearer {token}"},
                   compression=None, open_timeout=WAIT_S)  # fmt: skip


async def _replies(ws: ClientConnection, n: int) -> list[dict[str, Any]]:
    async with asyncio.timeout(WAIT_S):
        return [orjson.loads(await ws.recv()) for _ in range(n)]


async def _audited(fleet: LiveFleet, action: str) -> list[dict[str, Any]]:
    response = await fleet.owner.get("/v1/audit", params={"action": action, "limit": 500})
    entries: list[dict[str, Any]] = response.json()["entries"]
    return entries


async def test_messages_sent_back_to_back_are_answered_in_order(
    fleet: LiveFleet, monkeypatch: pytest.MonkeyPatch
) -> None:
    (device,) = await fleet.enroll(1)
    token = await fleet.api_token("operator")
    relayed: list[bool] = []
    relay = device_socket._Relay._relay

    def counted(self: device_socket._Relay, frame: str | bytes) -> bool:
        relayed.append(relay(self, frame))
        return relayed[-1]

    monkeypatch.setattr(device_socket._Relay, "_relay", counted)
    async with fleet.agent(device) as agent, _socket(fleet, device.device_id, token) as ws:
        messages: list[str | bytes] = []
        for i in range(40):
            messages.append(orjson.dumps(
                {"id": i, "action": "mouse.move", "params": {"x": i, "y": 1}}).decode()
            )  # fmt: skip
            if i % 10 == 3:  # errors in between: served by the task, in their turn
                messages.append("not json")
            if i % 10 == 6:
                messages.append(orjson.dumps({"id": f"bad{i}", "action": "no.such"}))
            if i % 10 == 8:
                messages.append(orjson.dumps(
                    {"id": f"p{i}", "action": "mouse.move", "params": {"x": "left"}}).decode()
                )  # fmt: skip
        for message in messages:  # all before the first reply
            await ws.send(message)
        replies = await _replies(ws, len(messages))
        expected: list[object] = []
        for message in messages:
            try:
                sent = orjson.loads(message)
            except orjson.JSONDecodeError:
                expected.append(None)
            else:
                expected.append(sent["id"])
        assert [r["id"] for r in replies] == expected
        moves = [r for r in replies if isinstance(r["id"], int)]
        assert all(r["result"] == {"status": "ok"} for r in moves), moves
        errors = [r["error"] for r in replies if not isinstance(r["id"], int)]
        assert errors == ["invalid", "not_found", "invalid"] * 4
        moved = [r["params"] for r in agent.requests if r["action"] == "mouse.move"]
        assert moved == [{"x": i, "y": 1} for i in range(40)]  # one at a time, in order
        # the moves relayed from the socket's reader, the errors served by the task
        assert relayed.count(True) == 40 and relayed.count(False) == 12
    # every move audited once, with its parameters
    entries = await _audited(fleet, "mouse.move")
    ok = sorted(e["params"]["x"] for e in entries if e["result"] == "ok")
    assert ok == list(range(40))
    assert sum(e["result"] == "invalid" for e in entries) == 4


async def test_agent_errors_and_timeouts_come_back_on_the_socket(
    fleet: LiveFleet, monkeypatch: pytest.MonkeyPatch
) -> None:
    (device,) = await fleet.enroll(1)
    token = await fleet.api_token("operator")

    def busy(params: dict[str, object]) -> object:
        raise BusyError("a sequence holds the device")

    async with (
        fleet.agent(device, handlers={"mouse.click": busy}) as agent,
        _socket(fleet, device.device_id, token) as ws,
    ):
        await ws.send(orjson.dumps({"id": 1, "action": "mouse.click", "params": {}}))
        (failed,) = await _replies(ws, 1)
        assert failed["id"] == 1 and failed["error"] == BusyError("x").code, failed
        agent.stop_answering()
        monkeypatch.setattr(fleet.services.settings, "request_timeout_s", 0.3)
        move = {"id": 2, "action": "mouse.move", "params": {"x": 1, "y": 1}}
        await ws.send(orjson.dumps(move))
        await ws.send(orjson.dumps({**move, "id": 3}))
        timed = await _replies(ws, 2)
        assert [(r["id"], r["error"]) for r in timed] == [(2, "timeout"), (3, "timeout")]
    entries = await _audited(fleet, "mouse.click")
    assert [e["result"] for e in entries] == [failed["error"]]
    moves = await _audited(fleet, "mouse.move")
    assert [e["result"] for e in moves] == ["timeout", "timeout"]


async def test_an_action_whose_caller_left_is_still_audited(fleet: LiveFleet) -> None:
    (device,) = await fleet.enroll(1)
    token = await fleet.api_token("operator")
    async with fleet.agent(device) as agent:
        agent.stop_answering()
        async with _socket(fleet, device.device_id, token) as ws:
            await ws.send(orjson.dumps(
                {"id": 1, "action": "mouse.move", "params": {"x": 7, "y": 7}}
            ))  # fmt: skip
            await eventually(lambda: len(agent.requests) > 0, WAIT_S)
        # gone before the reply: the reply comes to a closed socket
        await agent.send_raw(orjson.dumps(
            {"type": "reply", "id": agent.requests[-1]["id"], "result": {"status": "ok"}}
        ).decode())  # fmt: skip

        async def audited() -> bool:
            return any(e["params"] == {"x": 7, "y": 7} for e in await _audited(fleet, "mouse.move"))

        await eventually(audited, WAIT_S)


async def test_a_revoked_token_is_refused_at_the_next_check(
    fleet: LiveFleet, monkeypatch: pytest.MonkeyPatch
) -> None:
    (device,) = await fleet.enroll(1)
    session = await fleet.login("operator")
    created = await fleet.client(session).post("/v1/tokens", json={"name": "ws"})
    token, token_id = created.json()["token"], created.json()["id"]
    async with fleet.agent(device), _socket(fleet, device.device_id, token) as ws:
        move = {"id": 1, "action": "mouse.move", "params": {"x": 1, "y": 1}}
        await ws.send(orjson.dumps(move))
        assert (await _replies(ws, 1))[0]["result"] == {"status": "ok"}
        revoked = await fleet.client(session).delete(f"/v1/tokens/{token_id}")
        assert revoked.status_code in (200, 204), revoked.text
        monkeypatch.setattr(device_socket, "RECHECK_S", 0.0)  # the check is due at once
        await ws.send(orjson.dumps({**move, "id": 2}))
        (refused,) = await _replies(ws, 1)
        assert refused["id"] == 2 and refused["error"] == "unauthorized", refused


async def test_a_fault_of_the_server_closes_the_socket_with_1011_and_nothing_else(
    fleet: LiveFleet, monkeypatch: pytest.MonkeyPatch
) -> None:
    (device,) = await fleet.enroll(1)
    token = await fleet.api_token("operator")
    answer = device_socket._answer

    def broken(*args: Any) -> Any:
        raise RuntimeError("a bug")

    move = {"id": 1, "action": "mouse.move", "params": {"x": 1, "y": 1}}
    async with fleet.agent(device):
        for recheck_s in (device_socket.RECHECK_S, 0.0):  # relayed, then served by the task
            monkeypatch.setattr(device_socket, "RECHECK_S", recheck_s)
            monkeypatch.setattr(device_socket, "_answer", broken)
            async with _socket(fleet, device.device_id, token) as ws:
                await ws.send(orjson.dumps(move))
                with pytest.raises(ConnectionClosed):
                    async with asyncio.timeout(WAIT_S):
                        await ws.recv()
                assert ws.close_code == 1011
        monkeypatch.setattr(device_socket, "_answer", answer)
        async with _socket(fleet, device.device_id, token) as ws:  # the server serves on
            await ws.send(orjson.dumps(move))
            assert (await _replies(ws, 1))[0]["result"] == {"status": "ok"}


async def test_a_caller_that_floods_the_socket_is_held_back_then_served_in_order(
    fleet: LiveFleet, monkeypatch: pytest.MonkeyPatch
) -> None:
    (device,) = await fleet.enroll(1)
    token = await fleet.api_token("operator")
    relays: list[device_socket._Relay] = []
    init = device_socket._Relay.__init__

    def kept(self: device_socket._Relay, *args: Any) -> None:
        init(self, *args)
        relays.append(self)

    monkeypatch.setattr(device_socket._Relay, "__init__", kept)
    monkeypatch.setattr(fleet.services.settings, "request_timeout_s", 1.0)
    n = 2000
    async with fleet.agent(device) as agent, _socket(fleet, device.device_id, token) as ws:
        agent.stop_answering()  # the first move waits: everything after it waits its turn
        for i in range(n):
            move = {"id": i, "action": "mouse.move", "params": {"x": i % 500, "y": 2}}
            await ws.send(orjson.dumps(move))
        await eventually(lambda: bool(relays) and relays[0].paused, WAIT_S)
        # the server stopped reading: what it holds is bounded, the rest waits in the sockets
        assert len(relays[0].backlog) < n, len(relays[0].backlog)
        agent.answering = True
        async with asyncio.timeout(60):
            replies = [orjson.loads(await ws.recv()) for _ in range(n)]
    assert [r["id"] for r in replies] == list(range(n))
    assert replies[0]["error"] == "timeout"  # the one the agent never answered
    assert all(r["result"] == {"status": "ok"} for r in replies[1:])
    assert not relays[0].paused
