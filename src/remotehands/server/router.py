"""The fleet router: the one interface a device request goes through on the server.

HTTP routes, bulk actions and anything else that needs a device call a :class:`DeviceRouter`;
they never reach for an agent link themselves. :class:`InProcessRouter` serves the links this
process holds (the default, one replica). A router for several replicas (NATS request/reply to
the replica that holds the link) implements the same Protocol and runs the same tests.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol

from remotehands.errors import DeviceOfflineError

if TYPE_CHECKING:
    from remotehands.server.link.hub import LinkHub

__all__ = ["DeviceRouter", "InProcessRouter"]


class DeviceRouter(Protocol):
    """Carries an action to a device's agent and brings back its result."""

    async def request(
        self, device_id: str, action: str, params: dict[str, Any], timeout_s: float
    ) -> Any:
        """Run ``action`` with ``params`` on the device and return its result.

        Raises :class:`~remotehands.errors.DeviceOfflineError` at once when no agent link holds
        the device, :class:`~remotehands.errors.DeviceTimeoutError` when no reply came within
        ``timeout_s``, and the agent's own error (rebuilt with
        :func:`~remotehands.errors.error_from_wire`) when the action failed there.
        """
        ...

    def is_online(self, device_id: str) -> bool:
        """Whether an agent link holds the device right now."""
        ...


class InProcessRouter:
    """The :class:`DeviceRouter` over the agent links held by this process's :class:`LinkHub`."""

    def __init__(self, hub: LinkHub) -> None:
        self._hub = hub

    async def request(
        self, device_id: str, action: str, params: dict[str, Any], timeout_s: float
    ) -> Any:
        """See :meth:`DeviceRouter.request`."""
        link = self._hub.get(device_id)
        if link is None:
            raise DeviceOfflineError(
                f"device {device_id} is offline: its agent is not connected to the server"
            )
        return await link.request(action, params, timeout_s)

    def is_online(self, device_id: str) -> bool:
        """See :meth:`DeviceRouter.is_online`."""
        return self._hub.get(device_id) is not None
