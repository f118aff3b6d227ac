"""What a log may keep of an action's parameters: never typed text or clipboard contents.

The audit log of the server and the action log of the agent both show parameters to people who
may not see the secrets a user typed (a password typed into a login box, a clipboard holding a
key). :func:`mask_params` replaces, at any depth (a ``sequence``'s steps included), the text of
:data:`TEXT_FIELDS` by its length and, given a key, a keyed hash of it (so two entries that
typed the same text can be matched without showing it), and hides :data:`HIDDEN_FIELDS`
altogether.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping
from typing import Any

__all__ = ["HIDDEN", "HIDDEN_FIELDS", "TEXT_FIELDS", "mask_params", "mask_text"]

TEXT_FIELDS = frozenset({"text"})
"""Parameters holding what is typed or put on the clipboard."""
HIDDEN_FIELDS = frozenset({"password", "upload_header", "headers"})
"""Parameters shown as :data:`HIDDEN` whatever they hold."""
HIDDEN = "<hidden>"


def mask_text(text: str, key: bytes | None = None) -> str:
    """``<N chars>``, or ``<N chars hmac:HEX>`` with ``key`` (HMAC-SHA256, 16 hex digits)."""
    if key is None:
        return f"<{len(text)} chars>"
    digest = hmac.new(key, text.encode("utf-8", "surrogatepass"), hashlib.sha256).hexdigest()
    return f"<{len(text)} chars hmac:{digest[:16]}>"


def mask_params(value: Any, key: bytes | None = None) -> Any:
    """A copy of ``value`` with typed text and clipboard contents masked at any depth."""
    if isinstance(value, Mapping):
        masked: dict[str, Any] = {}
        for name, item in value.items():
            name = str(name)
            if name in HIDDEN_FIELDS:
                masked[name] = HIDDEN
            elif name in TEXT_FIELDS and isinstance(item, str):
                masked[name] = mask_text(item, key)
            else:
                masked[name] = mask_params(item, key)
        return masked
    if isinstance(value, list | tuple):
        return [mask_params(item, key) for item in value]
    return value
