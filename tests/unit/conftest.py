"""Fixtures shared by the unit tests."""

import pytest


@pytest.fixture
def anyio_backend() -> str:
    """Async tests run on asyncio, the loop the agent and server use."""
    return "asyncio"
