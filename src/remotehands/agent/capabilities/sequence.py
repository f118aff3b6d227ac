"""The agent's own ``sequence``: an ordered batch of actions under the device lock, and the
``sleep`` that only exists as one of its steps.

Each step is validated and checked against the device's capabilities on its own; a failed step
gives ``ok: false`` with its error and, unless ``on_error`` is ``continue``, stops the batch.
After a failure the driver releases every key and button still held.
"""

from __future__ import annotations

import asyncio
import logging
import time

from remotehands.agent.capabilities.registry import HANDLERS, handles
from remotehands.agent.context import ActionContext
from remotehands.errors import RemoteHandsError, ValidationError
from remotehands.protocol import params as P
from remotehands.protocol import results as R
from remotehands.protocol.actions import ACTIONS_BY_NAME
from remotehands.protocol.validation import validated

__all__ = ["release_held", "run_sequence", "run_step", "sleep"]

log = logging.getLogger(__name__)


@handles("sleep")
async def sleep(ctx: ActionContext, p: P.SleepParams) -> R.Ok:
    """Pause."""
    await asyncio.sleep(p.ms / 1000)
    return R.Ok()


@handles("sequence")
async def run_sequence(ctx: ActionContext, p: P.SequenceParams) -> R.SequenceResult:
    """Run the steps in order under the device lock."""
    started = time.perf_counter()
    results: list[R.StepResult] = []
    aborted_at: str | int | None = None
    async with ctx.locked(p.lock_timeout_ms):
        try:
            for index, step in enumerate(p.steps):
                entry = await run_step(ctx, step)
                results.append(entry)
                if not entry.ok and p.on_error == "abort":
                    aborted_at = step.name if step.name is not None else index
                    break
        finally:
            if aborted_at is not None or any(not r.ok for r in results):
                await release_held(ctx)
    return R.SequenceResult(
        results=results,
        aborted_at=aborted_at,
        total_duration_ms=round((time.perf_counter() - started) * 1000),
    )


async def run_step(ctx: ActionContext, step: P.SequenceStep) -> R.StepResult:
    """Validate, check and run one step; its failure is its result (``ok: false``), not an
    exception."""
    started = time.perf_counter()
    spec = ACTIONS_BY_NAME.get(step.type)
    try:
        if spec is None or not spec.sequence:
            raise ValidationError(
                f"unknown step type {step.type!r}: use an action name such as mouse.click, "
                "keyboard.type, keyboard.key, window.focus, clipboard.slot_restore, sleep, "
                "dialog.close or screenshot"
            )
        raw = dict(step.model_extra or {})
        model = validated(spec.params, raw, spec.name)
        ctx.check(spec)
        try:
            outcome = await HANDLERS[spec.name](ctx, model)
        finally:
            ctx.input_done(spec)  # a viewer sees each step, not only the sequence's end
        ctx.log.add(spec.name, raw, "ok", (time.perf_counter() - started) * 1000)
        entry = R.StepResult(name=step.name, type=step.type, ok=True, outcome=outcome)
    except RemoteHandsError as err:
        entry = R.StepResult(
            name=step.name, type=step.type, ok=False, error=err.code, details=err.details
        )
    entry.duration_ms = round((time.perf_counter() - started) * 1000)
    return entry


async def release_held(ctx: ActionContext) -> None:
    """Release every key still held (after a failed batch), logging a failure to do so."""
    if ctx.driver.has("keyboard"):
        try:
            await ctx.keyboard.release_all()
        except RemoteHandsError:
            log.exception("could not release held input after a failed sequence")
