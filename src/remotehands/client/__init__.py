"""The Python SDK: hands on one standalone agent or on the devices of a fleet.

::

    from remotehands.client import AgentClient, FleetClient

    with AgentClient("http://127.0.0.1:8082", password="...") as agent:
        agent.click(x=100, y=200)
        agent.type("hello")
        agent.screenshot().save("screen.jpg")

    with FleetClient("https://hands.example.com", token="...") as fleet:
        fleet.device("web-1").key("ctrl+s")
        fleet.bulk("screenshot", {"scale": 0.5}, tags=["prod"])

Every action of :data:`remotehands.protocol.actions.ACTIONS` is a method with the action's
name (:data:`ACTION_METHODS`), the same on an agent and on a fleet's device, and
``call(action, **params)`` reaches any of them by its wire name. ``AsyncAgentClient`` and
``AsyncFleetClient`` are the asyncio twins. Failures raise the :mod:`remotehands.errors` tree:
an error answer as its own error, an unreachable address as ``DeviceOfflineError``, no answer
in time as ``DeviceTimeoutError``.

The SDK imports only :mod:`remotehands.protocol` and :mod:`remotehands.errors`.
"""

from remotehands.client.actions import ACTION_METHODS, ActionMethods, wire_name
from remotehands.client.agent import AgentClient, AsyncAgentClient
from remotehands.client.fleet import (
    AsyncDevice,
    AsyncFleetClient,
    Device,
    FleetClient,
    FleetMethods,
)
from remotehands.client.request import Request, action_request, find_action
from remotehands.client.results import Result, Screenshot

__all__ = [
    "ACTION_METHODS",
    "ActionMethods",
    "AgentClient",
    "AsyncAgentClient",
    "AsyncDevice",
    "AsyncFleetClient",
    "Device",
    "FleetClient",
    "FleetMethods",
    "Request",
    "Result",
    "Screenshot",
    "action_request",
    "find_action",
    "wire_name",
]
