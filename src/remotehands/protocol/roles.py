"""The roles of fleet users and API tokens, lowest first: the one list every layer uses.

A role may do everything the roles below it may: ``viewer`` reads devices, ``operator`` also
controls them, ``admin`` also manages users, tokens and enrollment, ``owner`` also manages
admins.
"""

from __future__ import annotations

from typing import Literal

__all__ = ["ROLES", "Role", "role_rank"]

Role = Literal["viewer", "operator", "admin", "owner"]
"""A role's name."""

ROLES: tuple[Role, ...] = ("viewer", "operator", "admin", "owner")
"""Every role, lowest first."""


def role_rank(role: str) -> int:
    """The position of ``role`` in :data:`ROLES` (higher may more); -1 for unknown roles."""
    try:
        return ROLES.index(role)
    except ValueError:
        return -1
