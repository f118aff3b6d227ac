"""Loading a driver or a face from its import string, with errors that say what to do.

The agent's name tables (drivers, faces) map names to ``package.module:attr`` strings and
import only what a device uses, so that each role pulls only its extras; an operator may also
name an implementation of their own by its import string.
"""

from __future__ import annotations

import importlib
from typing import Any

from remotehands.errors import ConfigError

__all__ = ["load_object"]


def load_object(target: str, what: str) -> Any:
    """Import ``package.module:attr``; :class:`ConfigError` naming ``what`` when it cannot."""
    module_name, sep, attr = target.partition(":")
    if not sep or not module_name or not attr:
        raise ConfigError(f"{what}: {target!r} is not an import string (package.module:name)")
    try:
        return getattr(importlib.import_module(module_name), attr)
    except ImportError as err:
        if err.name and (module_name + ".").startswith(err.name + "."):
            raise ConfigError(f"{what}: there is no module {module_name}") from err
        raise ConfigError(
            f"{what} needs packages that are not installed ({err.name}): install remotehands[agent]"
        ) from err
    except AttributeError as err:
        raise ConfigError(f"{what}: {module_name} has no {attr}") from err
