"""The vocabulary over the native face's persistent WebSocket, through the SDK's async and sync
agent clients, on the FakeDriver over real loopback."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from remotehands.agent.auth import TokenStore, password_check
from remotehands.agent.dispatch import Dispatcher
from remotehands.agent.faces.native import create_native_app
from remotehands.agent.runtime import bound_address, serve_http
from remotehands.client import AgentClient, AsyncAgentClient
from remotehands.drivers.fake import FakeDriver
from remotehands.errors import AuthError, NotFoundError, ValidationError

pytestmark = pytest.mark.anyio

PASSWORD = "correct horse battery staple"


@pytest.fixture
async def served() -> AsyncIterator[tuple[str, FakeDriver]]:
    driver = FakeDriver(640, 480)
    dispatcher = Dispatcher(driver)
    tokens = TokenStore(password_check(password=PASSWORD, password_file=None, pam=False))
    app = create_native_app(dispatcher, tokens)
    async with serve_http(app, "127.0.0.1:0", websockets=True) as server:  # as the agent does
        yield f"http://{bound_address(server)}", driver
    await dispatcher.aclose()


async def test_actions_over_the_async_websocket_match_http(
    served: tuple[str, FakeDriver],
) -> None:
    base, driver = served
    async with AsyncAgentClient(base, password=PASSWORD, websocket=True) as agent:
        assert await agent.move(10, 20) == {"status": "ok"}
        assert await agent.click(30, 40, button="right") == {"status": "ok"}
        assert driver.pointer == (30, 40)
        await agent.type("over the socket ✓")
        assert driver.typed == ["over the socket ✓"]
        shot = await agent.screenshot(scale=0.5)
        assert shot.image[:2] == b"\xff\xd8" and (shot.width, shot.height) == (320, 240)
        with pytest.raises(NotFoundError, match="no window"):
            await agent.focus_window(999)
        with pytest.raises(ValidationError):
            await agent.move(10_000, 10)
        # one socket for all of it, and concurrent callers are served in turn
        moves = [agent.move(i, i) for i in range(20)]
        assert await asyncio.gather(*moves) == [{"status": "ok"}] * 20
        assert driver.call_names().count("move") >= 22


async def test_the_sync_client_and_a_refused_token(served: tuple[str, FakeDriver]) -> None:
    base, driver = served

    def work() -> None:
        with AgentClient(base, password=PASSWORD, websocket=True) as agent:
            assert agent.key("ctrl+a") == {"status": "ok"}
            assert agent.windows() == []
        with (
            AgentClient(base, token="rha_forged", websocket=True) as forged,
            pytest.raises(AuthError),
        ):
            forged.move(1, 1)

    await asyncio.to_thread(work)
    assert "key" in driver.call_names()
