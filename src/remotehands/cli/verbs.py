"""Every verb's CLI command, gathered: the command table ``remotehands.cli.main`` loads for the
vocabulary (the CLI name of each verb and alias, by the rule of
:mod:`remotehands.protocol.actions`).

Each verb's command is made with :func:`~remotehands.cli.actions_cmd.device_command` in the module
of its group (the desktop's in :mod:`~remotehands.cli.actions_cmd`, the others in ``act_cmd``,
``ocr_cmd``, ``power_cmd``, ``media_cmd``, ``switch_cmd``, ``audio_cmd``) and joins
:data:`~remotehands.cli.actions_cmd.VERB_COMMANDS` as that module loads. This module loads them
all and names each command ``verb_<name>``, so that the CLI imports one by its import string.
"""

from __future__ import annotations

from remotehands.cli import (  # noqa: F401 -- imported for the commands they add
    act_cmd,
    audio_cmd,
    media_cmd,
    ocr_cmd,
    power_cmd,
    switch_cmd,
)
from remotehands.cli.actions_cmd import VERB_COMMANDS
from remotehands.protocol.actions import ACTIONS

__all__ = ["COMMANDS", "VERB_COMMANDS"]

for _name, _command in VERB_COMMANDS.items():
    globals()["verb_" + _name.replace("-", "_")] = _command

_SUMMARIES = {
    name.replace("_", "-"): spec.summary
    for spec in ACTIONS
    if not spec.step_only
    for name in spec.names
}

COMMANDS: dict[str, tuple[str, str]] = {
    name: (f"remotehands.cli.verbs:verb_{name.replace('-', '_')}", _SUMMARIES[name] + ".")
    for name in VERB_COMMANDS
}
"""Command name -> ("module:attribute", one-line help), for ``remotehands.cli.main``."""
