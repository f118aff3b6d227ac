"""Who is calling and what they may do, in six modules:

- :mod:`~remotehands.server.auth.credentials`: token formats, prefixes, hashing of tokens;
- :mod:`~remotehands.server.auth.passwords`: the argon2 hasher;
- :mod:`~remotehands.server.auth.principals`: who, role, token restrictions, what they may do
  (pure);
- :mod:`~remotehands.server.auth.authentication`: database lookups and the principal cache;
- :mod:`~remotehands.server.auth.browser`: the browser's session and CSRF cookies;
- :mod:`~remotehands.server.auth.dependencies`: FastAPI dependencies reading the bearer
  credential (or the browser's cookie).

This package re-exports their public names, so ``from remotehands.server.auth import ...``
reaches any of them.
"""

from __future__ import annotations

from remotehands.server.auth.authentication import (
    TOKEN_TOUCH_INTERVAL_S,
    Authenticator,
    PrincipalCache,
)
from remotehands.server.auth.credentials import (
    AGENT_PREFIX,
    API_TOKEN_PREFIX,
    ENROLLMENT_PREFIX,
    SESSION_PREFIX,
    hash_secret,
    new_secret,
)
from remotehands.server.auth.dependencies import (
    WS_CLOSE_FORBIDDEN,
    WS_CLOSE_UNAUTHORIZED,
    WebSocketRefused,
    check_origin,
    client_ip,
    credential_from_cookie,
    request_credential,
    require_role,
)
from remotehands.server.auth.passwords import MIN_PASSWORD, Passwords
from remotehands.server.auth.principals import (
    ROLES,
    USERNAME_PATTERN,
    Principal,
    Role,
    can_act,
    can_see_device,
    normalise_username,
    require_unrestricted,
    require_writable,
    role_rank,
)

__all__ = [
    "AGENT_PREFIX",
    "API_TOKEN_PREFIX",
    "ENROLLMENT_PREFIX",
    "MIN_PASSWORD",
    "ROLES",
    "SESSION_PREFIX",
    "TOKEN_TOUCH_INTERVAL_S",
    "USERNAME_PATTERN",
    "WS_CLOSE_FORBIDDEN",
    "WS_CLOSE_UNAUTHORIZED",
    "Authenticator",
    "Passwords",
    "Principal",
    "PrincipalCache",
    "Role",
    "WebSocketRefused",
    "can_act",
    "can_see_device",
    "check_origin",
    "client_ip",
    "credential_from_cookie",
    "hash_secret",
    "new_secret",
    "normalise_username",
    "request_credential",
    "require_role",
    "require_unrestricted",
    "require_writable",
    "role_rank",
]
