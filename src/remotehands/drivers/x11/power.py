"""OS power of the desktop the agent runs on: restart and shutdown by the operator's commands.

The agent never guesses how a machine is restarted (``systemctl reboot`` needs a polkit rule or
root, a kiosk may want a wrapper script): the operator configures one command per action
(``--power-command restart=CMD``, the x11 setting ``power_commands``). A command is split as a
shell would split it (``shlex``) and run without a shell, detached from the agent's session
so that it outlives the agent it is about to stop. An action with no command is a dry run: it
logs the command it would need and changes nothing, and ``PowerState.dry_run`` lists it for
whoever reads the state (a power action's result holds the state before and after it).

The ATX actions (power on, a long press, the reset line, front-panel buttons) need hardware
between the machine and whoever presses: a desktop's own agent cannot do them.
"""

from __future__ import annotations

import asyncio
import logging
import shlex
import subprocess
from collections.abc import Mapping
from typing import Literal, cast

from remotehands.errors import ConfigError, DeviceError, DeviceTimeoutError, UnsupportedError
from remotehands.protocol.models import PowerAction, PowerState

__all__ = ["COMMAND_TIMEOUT_S", "Commands", "OsAction", "OsPower", "check_commands"]

log = logging.getLogger(__name__)

OsAction = Literal["restart", "shutdown"]
"""A power action the operating system does itself."""

COMMAND_TIMEOUT_S = 30.0
"""How long a power command may run before the action reports it as still running."""

_OUTPUT_LIMIT = 2000


Commands = Mapping[OsAction, str] | Mapping[str, str]
"""Action -> the command line that does it."""


def check_commands(commands: Commands) -> dict[OsAction, list[str]]:
    """Each configured command split into its arguments; :class:`ConfigError` for an unknown
    action, an empty command or one ``shlex`` cannot split."""
    split: dict[OsAction, list[str]] = {}
    for action, command in commands.items():
        if action not in ("restart", "shutdown"):
            raise ConfigError(
                f"no OS power action {action!r}: power commands are for restart and shutdown"
            )
        try:
            argv = shlex.split(command)
        except ValueError as err:
            raise ConfigError(f"the {action} command {command!r} cannot be split: {err}") from err
        if not argv:
            raise ConfigError(f"the {action} command is empty: give the program to run")
        split[cast(OsAction, action)] = argv
    return split


class OsPower:
    """Restart and shutdown of this machine by configured commands, dry runs without them."""

    def __init__(self, commands: Commands, *, timeout_s: float = COMMAND_TIMEOUT_S) -> None:
        self.commands = check_commands(commands)
        self.timeout_s = timeout_s

    def state(self) -> PowerState:
        """On (the agent answering is the machine running), what it can do, and which of that
        is only a dry run (no command configured)."""
        actions: list[OsAction] = ["restart", "shutdown"]
        dry: list[PowerAction] = [action for action in actions if action not in self.commands]
        return PowerState(on=True, actions=list(actions), dry_run=dry)

    async def run(self, action: OsAction) -> None:
        """Run the command of ``action``, or log the dry run when there is none.

        :class:`DeviceError` when the command cannot start or fails (its output in the
        message), :class:`DeviceTimeoutError` when it still runs after ``timeout_s`` (it is left
        running: it may be the shutdown under way).
        """
        argv = self.commands.get(action)
        if argv is None:
            log.warning(
                "power %s: dry run, nothing done: no command is configured for it "
                "(remotehands agent --power-command %s=CMD, or the x11 setting power_commands)",
                action,
                action,
            )
            return
        log.warning("power %s: running %s", action, shlex.join(argv))
        try:
            proc = await asyncio.create_subprocess_exec(
                *argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT, start_new_session=True,
            )  # fmt: skip
        except OSError as err:
            raise DeviceError(f"power {action}: cannot run {argv[0]!r}: {err}") from err
        try:
            async with asyncio.timeout(self.timeout_s):
                output, _ = await proc.communicate()
        except TimeoutError as err:
            raise DeviceTimeoutError(
                f"power {action}: {shlex.join(argv)} still runs after {self.timeout_s:g} s "
                "(left running)"
            ) from err
        if proc.returncode != 0:
            text = output[-_OUTPUT_LIMIT:].decode(errors="replace").strip()
            raise DeviceError(
                f"power {action}: {shlex.join(argv)} failed with status {proc.returncode}"
                + (f": {text}" if text else "")
            )

    @staticmethod
    def unsupported(action: str) -> UnsupportedError:
        """The error of an ATX action asked of a desktop's own agent."""
        return UnsupportedError(
            f"a desktop cannot {action} from its own agent: that needs a KVM wired to the "
            "machine's power and reset lines (front it with a pikvm or tinypilot driver); this "
            "device can restart and shut down its operating system (power_restart, "
            "power_shutdown)"
        )
