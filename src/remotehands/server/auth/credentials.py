"""Credentials: random strings with a recognisable prefix, stored only as their SHA-256.

=============  =============================  ==========================================
prefix         what                           table
=============  =============================  ==========================================
``rhs_``       a login session                ``sessions``
``rht_``       an API token                   ``api_tokens``
``ekvent_``    an enrollment token (1 use)    ``enrollment_tokens``
``agt_``       a device's agent credential    ``devices.credential_hash``
=============  =============================  ==========================================
"""

from __future__ import annotations

import hashlib
import secrets

__all__ = [
    "AGENT_PREFIX",
    "API_TOKEN_PREFIX",
    "ENROLLMENT_PREFIX",
    "SESSION_PREFIX",
    "hash_secret",
    "new_secret",
]

SESSION_PREFIX = "rhs_"
API_TOKEN_PREFIX = "rht_"  # noqa: S105 - a prefix, not a secret
ENROLLMENT_PREFIX = "ekvent_"
AGENT_PREFIX = "agt_"


def new_secret(prefix: str) -> str:
    """A fresh credential: ``prefix`` plus 256 random bits, URL-safe."""
    return prefix + secrets.token_urlsafe(32)


def hash_secret(secret: str) -> str:
    """The SHA-256 hex digest under which a credential is stored (secrets are random enough
    that a slow hash adds nothing)."""
    return hashlib.sha256(secret.encode()).hexdigest()
