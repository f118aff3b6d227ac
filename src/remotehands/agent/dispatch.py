"""The agent's dispatcher: carries out any action of the vocabulary on one device.

Every face (the native HTTP API, the link to the server, later PiKVM/TinyPilot faces) calls
:meth:`Dispatcher.run` (the wire form) or :meth:`Dispatcher.call` (the result model) with an
action name and its parameters, so they all behave the same. The dispatcher only dispatches:
it validates the parameters, checks the capability, takes the device lock for control actions,
runs the handler its capability module registered (:mod:`remotehands.agent.capabilities`) and
logs the action. What the agent adds above the driver lives in its own modules: frame ids
(:mod:`~remotehands.agent.frames`), clipboard slots (:mod:`~remotehands.agent.slots`),
sequences, the action log (:mod:`~remotehands.agent.actionlog`).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping
from typing import Any

import httpx
from pydantic import BaseModel

from remotehands.agent.actionlog import ActionLog
from remotehands.agent.capabilities import AGENT_CAPABILITIES, HANDLERS
from remotehands.agent.context import ActionContext
from remotehands.agent.framesource import FrameSources
from remotehands.drivers.base import Driver, Held, Keyboard, Mouse, Screen
from remotehands.errors import NotFoundError, RemoteHandsError, ValidationError
from remotehands.protocol import actions as A
from remotehands.protocol.keys import CODES, Key
from remotehands.protocol.results import SequenceResult, to_wire
from remotehands.protocol.validation import describe_validation, validated

__all__ = ["DRY_RUN", "ActionLog", "Dispatcher", "describe_validation", "validate_params"]

DRY_RUN = "dry_run"
"""The outcome logged (and audited by the server) for an action whose result says it was only a
dry run (``dry_run: true``: a desktop's power action without a configured command)."""

_UNLOCKED = frozenset({"sequence", "actions"})  # a sequence locks by itself; the log reads only


def _field(model: BaseModel, name: str, default: Any) -> Any:
    """The model's field ``name``, or ``default`` when it has none (its fields live in its
    ``__dict__``)."""
    return model.__dict__.get(name, default)


def validate_params(spec: A.ActionSpec, params: Mapping[str, Any]) -> A.Params:
    """Validate raw parameters against an action's model; errors name every bad field."""
    return validated(spec.params, params, spec.name)


class Dispatcher:
    """Runs actions on one driver. Create one per device and keep it for the agent's life."""

    def __init__(
        self,
        driver: Driver,
        *,
        http: httpx.AsyncClient | None = None,
        frames: FrameSources | None = None,
    ) -> None:
        """``frames``: the device's frame sources, which every consumer of its live frames
        (its link, its faces) takes from :attr:`frame_sources`; made here for a driver with a
        screen when not given. Input run here makes them capture at once."""
        self.driver = driver
        if frames is None and isinstance(driver, Screen) and driver.has("screen"):
            frames = FrameSources(driver)
        provided = {name: c.needs for name, c in AGENT_CAPABILITIES.items()}
        self.context = ActionContext(driver, http=http, provided=provided, frame_sources=frames)
        missing = {a.name for a in A.ACTIONS} - set(HANDLERS)
        if missing:
            raise LookupError(f"actions without a handler: {sorted(missing)}")

    @property
    def frame_sources(self) -> FrameSources | None:
        """The device's live frames (one source per screen); None without a screen."""
        return self.context.frame_sources

    @property
    def log(self) -> ActionLog:
        """The device's recent actions."""
        return self.context.log

    @property
    def _lock(self) -> asyncio.Lock:
        return self.context.lock

    @property
    def capabilities(self) -> list[str]:
        """The capabilities of the device, as the hello message announces them: the driver's,
        and the agent's own whose driver capability is there."""
        own = {
            name
            for name, capability in AGENT_CAPABILITIES.items()
            if capability.needs is None or self.driver.has(capability.needs)
        }
        return sorted(self.driver.capabilities | own)

    async def aclose(self) -> None:
        """Close the HTTP client used for uploads, if this dispatcher made one."""
        await self.context.aclose()

    async def release_input(self, *, everything: bool = False) -> Held:
        """Let go of held keys and buttons; answers what was down before.

        By default what this driver pressed and holds (a link that was lost leaves no key down
        behind it). ``everything`` also releases what the device reports down without this
        driver having pressed it: at start, the keys and buttons a killed agent left held on
        the display (a stuck Shift would shift all that is typed next). Keys the device names
        only by keycode are left alone: there is no name to release them by.
        """
        driver = self.driver
        if not (driver.has("keyboard") and isinstance(driver, Keyboard)):
            return Held()
        down = await driver.held()
        await driver.release_all()
        if everything:
            still = await driver.held()
            for code in sorted(still.keys):
                if code in CODES:
                    await driver.key(Key(code=code), False)
            if driver.has("mouse") and isinstance(driver, Mouse):
                for button in sorted(still.buttons):
                    await driver.button(button, False)
        return down

    async def run(self, action: str, params: Mapping[str, Any] | None = None) -> Any:
        """Validate and carry out one action; answer its wire form (JSON-ready, images as
        ``bytes``). Raises from :mod:`remotehands.errors`."""
        return to_wire(await self.call(action, params))

    async def call(
        self, action: str, params: Mapping[str, Any] | A.Params | None = None
    ) -> BaseModel:
        """Validate and carry out one action; answer its result model (the row's ``result``).

        ``params`` are raw values (validated here) or the action's own parameter model.
        Raises from :mod:`remotehands.errors`.
        """
        spec = A.ACTIONS_BY_NAME.get(action)
        if spec is None:
            raise NotFoundError(
                f"unknown action {action!r}: known actions are "
                + ", ".join(a.name for a in A.ACTIONS)
            )
        if isinstance(params, A.Params):
            if not isinstance(params, spec.params):
                raise ValidationError(
                    f"{spec.name} takes {spec.params.__name__}, not {type(params).__name__}"
                )
            model = params
            raw = params.model_dump(mode="json", by_alias=True, exclude_unset=True)
        else:
            raw = dict(params or {})
            model = validate_params(spec, raw)
        self.context.check(spec)
        handler = HANDLERS[spec.name]
        started = time.perf_counter()
        outcome = "ok"
        try:
            # A streamed upload may last minutes: it does not keep the device's input waiting.
            if spec.access == "control" and spec.name not in _UNLOCKED and not spec.streamed:
                # Looked up in the model's fields, not with getattr: a pydantic model answers
                # a missing attribute through __getattr__, slowly (tens of microseconds).
                timeout = _field(model, "lock_timeout_ms", 10_000)
                async with self.context.locked(timeout):
                    result = await handler(self.context, model)
            else:
                result = await handler(self.context, model)
            if isinstance(result, SequenceResult) and result.failed_step is not None:
                outcome = result.failed_step.error or "error"  # a 200 all the same
            elif _field(result, "dry_run", False) is True:
                outcome = DRY_RUN  # the log says nothing was done, not that it was
            return result
        except RemoteHandsError as err:
            outcome = err.code
            raise
        finally:
            self.context.input_done(spec)
            if spec.name != "actions":
                self.log.add(spec.name, raw, outcome, (time.perf_counter() - started) * 1000)
