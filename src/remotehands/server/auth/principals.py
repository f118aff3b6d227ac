"""Principals: who an authenticated caller is and what they may do. Pure: no I/O.

Roles are ordered ``viewer < operator < admin < owner`` (:mod:`remotehands.protocol.roles`); an
API token acts with the lower of its own role and its user's current role, optionally read-only
and limited to devices with some tags.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

from remotehands.errors import ForbiddenError, ValidationError
from remotehands.protocol.roles import ROLES, Role, role_rank

__all__ = [
    "ROLES",
    "USERNAME_PATTERN",
    "Principal",
    "Role",
    "can_act",
    "can_see_device",
    "normalise_username",
    "require_unrestricted",
    "require_writable",
    "role_rank",
]

USERNAME_PATTERN = re.compile(r"^[a-z0-9][a-z0-9_.@-]{0,63}$")


def normalise_username(name: str) -> str:
    """``name`` stripped and lower-cased; raises :class:`ValidationError` unless it is 1-64
    letters, digits and ``_ . @ -``, starting with a letter or digit."""
    value = name.strip().lower()
    if not USERNAME_PATTERN.match(value):
        raise ValidationError(
            f"username {name!r}: 1-64 characters, letters, digits and _ . @ -, starting with a "
            "letter or digit"
        )
    return value


@dataclass(frozen=True)
class Principal:
    """An authenticated caller: a user through a session, or an API token of a user."""

    kind: Literal["user", "token"]
    user_id: str
    username: str
    role: str
    read_only: bool = False
    tags: list[str] | None = None
    """Devices this principal may reach must have one of these tags; None: every device."""
    token_id: str | None = None
    second_factor_missing: bool = False
    """A user whose role needs two-factor sign-in and who has not enabled it: such a session
    reaches only ``/v1/auth/`` (to enable it)."""

    @property
    def actor(self) -> str:
        """How the audit log names this principal: ``alice`` or ``alice/tok_...``."""
        if self.token_id is None:
            return self.username
        return f"{self.username}/{self.token_id}"

    @property
    def rank(self) -> int:
        """:func:`role_rank` of the role."""
        return role_rank(self.role)


def require_writable(principal: Principal) -> None:
    """Refuse read-only tokens (:class:`ForbiddenError`)."""
    if principal.read_only:
        raise ForbiddenError("this API token is read-only")


def require_unrestricted(principal: Principal, what: str) -> None:
    """Refuse tag-limited tokens for routes not about devices (users, audit...)."""
    if principal.tags is not None:
        raise ForbiddenError(f"a token limited to tags cannot reach {what}")


def can_act(principal: Principal, access: Literal["read", "control"]) -> None:
    """Raise :class:`ForbiddenError` unless the principal may perform an action of this
    access: viewers and up may ``read``; operators and up, except read-only tokens, may
    ``control``."""
    if access == "read":
        if principal.rank < role_rank("viewer"):
            raise ForbiddenError(f"role {principal.role} may not read devices")
        return
    if principal.rank < role_rank("operator"):
        raise ForbiddenError(
            f"controlling a device needs the operator role or higher; "
            f"{principal.username} acts as {principal.role}"
        )
    if principal.read_only:
        raise ForbiddenError("this API token is read-only: it may not control devices")


def can_see_device(principal: Principal, device_tags: list[str] | None) -> bool:
    """Whether the principal may see a device with these tags (tag-limited tokens see only
    devices that carry one of their tags)."""
    if principal.tags is None:
        return True
    return bool(set(principal.tags) & set(device_tags or ()))
