"""``remotehands act``: run steps, then get the settled screen, what changed and each step's
result in one call::

    remotehands act web-1 steps.json -o settled.jpg --scale 0.5

The command joins :data:`remotehands.cli.actions_cmd.VERB_COMMANDS` when that module loads.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import click

from remotehands.cli.actions_cmd import _read_json, device_command
from remotehands.cli.output import Column, emit, fail, table
from remotehands.client import ActionMethods
from remotehands.errors import ConfigError, ValidationError, error_from_wire

__all__ = ["act"]

_COLUMNS: list[Column] = [
    ("NAME", "name"),
    ("TYPE", "type"),
    ("OK", "ok"),
    ("CHANGED", "changed"),
    ("MS", "duration_ms"),
    ("DETAILS", lambda r: r.get("details") or r.get("error") or ""),
]


@device_command("act", "[DEVICE] [FILE]", counts=(0, 1))
@click.option("-o", "--output", metavar="PATH", help="Write the settled screenshot here.")
@click.option("--scale", type=click.FloatRange(0, 4, min_open=True), help="Screenshot scale.")
@click.option("--timeout-ms", type=click.IntRange(0, 600_000), help="Settle at most (5000).")
@click.option("--on-error", type=click.Choice(["abort", "continue"]), help="Default: abort.")
def act(
    hands: ActionMethods[Any],
    rest: list[str],
    output: str | None,
    scale: float | None,
    timeout_ms: int | None,
    on_error: str | None,
) -> None:
    """Run the steps in FILE (- reads stdin; none: only wait), wait until the screen settles,
    and print each step's result, whether the screen changed after it, the regions that
    changed and whether it settled. -o writes the settled screenshot.

    \b
    Example FILE (a sequence's steps):
      [{"type": "mouse.click", "x": 500, "y": 400},
       {"type": "keyboard.type", "text": "hello"},
       {"type": "keyboard.key", "keys": "Return"}]
    """
    steps: Any = _read_json(rest[0], "act steps") if rest else []
    if isinstance(steps, dict):
        steps = steps.get("steps")
    if not isinstance(steps, list):
        raise ValidationError('act steps are a list of steps or {"steps": [...]}')
    result = hands.act(
        steps, scale=scale, timeout_ms=timeout_ms, screenshot=output is not None or None,
        on_error=on_error,
    )  # fmt: skip
    shot = result.get("screenshot") or {}
    if output is not None and isinstance(shot.get("image"), bytes):
        try:
            Path(output).write_bytes(shot["image"])
        except OSError as err:
            raise ConfigError(f"cannot write {output}: {err.strerror or err}") from err
    rows = [
        {**step, "changed": changed}
        for step, changed in zip(result.get("results", []), result.get("changed", []), strict=False)
    ]

    def show() -> None:
        table(rows, _COLUMNS, "no steps ran")
        state = "settled" if result.get("settled") else "did not settle (timed out)"
        boxes = result.get("changed_regions", [])
        regions = " ".join(f"{r['x']},{r['y']} {r['width']}x{r['height']}" for r in boxes)
        click.echo(f"{state} after {result.get('settle_ms')} ms; changed: {regions or 'nothing'}")
        if output is not None:
            click.echo(f"wrote {output} (frame {shot.get('frame_id')})")

    emit(result, show)
    failed = [s for s in rows if isinstance(s, Mapping) and not s.get("ok", True)]
    if failed:
        step = failed[0]
        code = str(step.get("error") or "device_error")
        fail(error_from_wire(code, str(step.get("details") or "a step failed")), echo_json=False)
