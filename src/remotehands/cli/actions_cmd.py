"""Device commands: ``remotehands click``, ``type``, ``screenshot``, ``clipboard``, ``windows``...

Each command is one action of the SDK (rule 2: the same verb on every layer) on a target chosen
by :mod:`remotehands.cli.target`: a standalone agent (``--agent URL``), or a device of a fleet
server, named by the first argument::

    remotehands click --agent http://127.0.0.1:8082 100 200
    REMOTEHANDS_URL=... REMOTEHANDS_TOKEN=... remotehands click web-1 100 200

Positional arguments are taken as a list and split here, because whether the first one is a
DEVICE depends on the target.
"""

from __future__ import annotations

import copy
import inspect
import sys
from collections.abc import Callable, Container, Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import click
import orjson

from remotehands.cli.output import Column, emit, fail, human_size, json_mode, reports_errors, table
from remotehands.cli.target import (
    DEVICE_META,
    open_hands,
    resolve_target,
    target_kind,
    target_params,
)
from remotehands.client import ActionMethods
from remotehands.errors import ConfigError, ValidationError, error_from_wire
from remotehands.protocol.actions import by_verb, parse_window_id
from remotehands.protocol.models import Button

__all__ = ["COMMANDS", "VERB_COMMANDS", "DeviceGroup", "device_command"]

BUTTONS = ("left", "right", "middle")
Body = Callable[..., None]


def _ints(values: Sequence[str], names: str) -> list[int]:
    numbers = []
    for value, name in zip(values, names.split(), strict=True):
        try:
            numbers.append(int(value))
        except ValueError:
            raise click.UsageError(f"{name} must be a whole number, not {value!r}") from None
    return numbers


def _window(value: str) -> int:
    """A window id argument: 12345 or 0x4400003."""
    try:
        return parse_window_id(value)
    except ValueError as err:
        raise click.UsageError(str(err)) from None


def _text_arg(value: str) -> str:
    """TEXT, or all of stdin when TEXT is ``-``."""
    return sys.stdin.read() if value == "-" else value


VERB_COMMANDS: dict[str, click.Command] = {}
"""CLI name -> command, one for each SDK name of :data:`~remotehands.protocol.actions.ACTIONS`
(the rule: the verb with ``_`` written ``-``); filled as the commands below are made."""


def _as_verb(command: click.Command, sdk_name: str) -> None:
    """Serve ``command`` as the CLI command of ``sdk_name``'s action and of its other names
    (a copy under the rule's name when the command has another, such as ``clipboard get``)."""
    spec = by_verb(sdk_name)
    if spec is None:
        raise LookupError(f"{sdk_name!r} names no action of the table")
    for name in spec.names:
        cli_name = name.replace("_", "-")
        if command.name == cli_name:
            VERB_COMMANDS[cli_name] = command
        else:
            twin = copy.copy(command)
            twin.name = cli_name
            VERB_COMMANDS[cli_name] = twin


def device_command(
    name: str,
    usage: str,
    counts: Container[int],
    *,
    parent: click.Group | None = None,
    context_settings: dict[str, Any] | None = None,
    verb: str | None = None,
) -> Callable[[Body], click.Command]:
    """Make ``body(hands, rest, **options)`` a command taking ``[DEVICE]`` and ``usage``.

    ``counts`` are the numbers of arguments allowed after the DEVICE; ``hands`` is the agent or
    the device; the body prints through :func:`remotehands.cli.output.emit`. The command serves
    as the CLI command of ``verb`` (an SDK name), or of its own name when that is a verb and it
    has no ``parent``.
    """

    def decorate(body: Body) -> click.Command:
        def callback(args: tuple[str, ...], **options: Any) -> None:
            ctx = click.get_current_context()
            target = resolve_target()
            rest = list(args)
            device: str | None = ctx.meta.get(DEVICE_META)
            if device is None and target.kind == "server" and rest:
                device = rest.pop(0)
            if len(rest) not in counts:
                shown = f"{usage} (DEVICE first on a fleet server)" if "DEVICE" in usage else usage
                raise click.UsageError(f"expected {shown}, got {len(args)} arguments", ctx)
            with open_hands(target, device) as hands:
                body(hands, rest, **options)

        # click's decorators leave a function's options on it, last first.
        own: list[click.Parameter] = list(reversed(getattr(body, "__click_params__", [])))
        command = click.Command(
            name,
            callback=reports_errors(callback),
            params=[click.Argument(["args"], nargs=-1, metavar=usage), *own, *target_params()],
            help=inspect.cleandoc(body.__doc__ or ""),
            context_settings={"help_option_names": ["-h", "--help"], **(context_settings or {})},
        )
        if parent is not None:
            parent.add_command(command)
        if verb is not None:
            _as_verb(command, verb)
        elif parent is None and by_verb(name) is not None:
            _as_verb(command, name)
        return command

    return decorate


class DeviceGroup(click.Group):
    """A command group whose first argument may be the DEVICE: ``clipboard web-1 get``.

    On a server the DEVICE comes before the subcommand; ``default`` runs when no subcommand is
    named (``remotehands windows web-1`` lists the windows).
    """

    def __init__(self, *args: Any, default: str | None = None, **kwargs: Any) -> None:
        kwargs.setdefault("invoke_without_command", default is not None)
        kwargs.setdefault("context_settings", {"help_option_names": ["-h", "--help"]})
        kwargs.setdefault("subcommand_metavar", "[DEVICE] COMMAND [ARGS]...")
        super().__init__(*args, **kwargs)
        self.default = default

    def resolve_command(
        self, ctx: click.Context, args: list[str]
    ) -> tuple[str | None, click.Command | None, list[str]]:
        if (
            args
            and args[0] not in self.commands
            and not args[0].startswith("-")
            and target_kind() != "agent"
        ):
            ctx.meta[DEVICE_META] = args[0]
            args = args[1:]
        options_only = bool(args) and args[0].startswith("-") and args[0] not in ("-h", "--help")
        if not args or options_only:
            # ``windows web-1`` and ``windows web-1 --json`` run the default subcommand.
            if self.default is None:
                raise click.UsageError(f"name a command: {', '.join(self.commands)}", ctx)
            args = [self.default, *args]
        return super().resolve_command(ctx, args)


def device_group(
    name: str, default: str | None = None
) -> Callable[[Callable[[], None]], DeviceGroup]:
    """A :class:`DeviceGroup` with the target options (so they may come before the DEVICE);
    without a subcommand it runs ``default``."""

    def decorate(fn: Callable[[], None]) -> DeviceGroup:
        def callback() -> None:
            ctx = click.get_current_context()
            if ctx.invoked_subcommand is None and default is not None:
                ctx.invoke(group.commands[default])

        group = DeviceGroup(
            name,
            callback=callback,
            params=target_params(),
            help=inspect.cleandoc(fn.__doc__ or ""),
            default=default,
        )
        return group

    return decorate


# screen


_EXTENSIONS = {".jpg": "jpeg", ".jpeg": "jpeg", ".png": "png", ".webp": "webp"}


def _region(value: str) -> tuple[int, int, int, int]:
    parts = value.replace(" ", "").split(",")
    if len(parts) != 4:
        raise click.UsageError(
            f"--region takes X,Y,WIDTH,HEIGHT such as 0,0,800,600, not {value!r}"
        )
    x, y, width, height = _ints(parts, "X Y WIDTH HEIGHT")
    return x, y, width, height


def _shot_options(body: Body) -> Body:
    """The options of ``screenshot`` and ``screenshot-region``."""
    options = [
        click.option(
            "-o",
            "--output",
            metavar="PATH",
            help="Where to write the image; - writes it to stdout. "
            "Default: screenshot-<time>.<format>.",
        ),
        click.option(
            "--format",
            "image_format",
            type=click.Choice(["jpeg", "png", "webp"]),
            help="Image format (default: from -o's extension, else jpeg).",
        ),
        click.option("--quality", type=click.IntRange(1, 100), help="JPEG/WebP quality, 1-100."),
        click.option(
            "--scale", type=click.FloatRange(0, 4, min_open=True), help="Scale, e.g. 0.5."
        ),
        click.option(
            "--screen", "screen_id", type=click.IntRange(min=0), help="Screen id (default 0)."
        ),
        click.option("--wait-stable", is_flag=True, help="Wait for the screen to stop changing."),
        click.option(
            "--timeout-ms", type=click.IntRange(min=0), help="How long --wait-stable waits."
        ),
        click.option(
            "--cursor", "cursor_ring", is_flag=True, help="Ring the pointer in the image."
        ),
    ]
    for option in reversed(options):
        body = option(body)
    return body


def _save_shot(
    hands: ActionMethods[Any],
    region: tuple[int, int, int, int] | None,
    output: str | None,
    image_format: str | None,
    quality: int | None,
    scale: float | None,
    screen_id: int | None,
    wait_stable: bool,
    timeout_ms: int | None,
    cursor_ring: bool,
) -> None:
    if output == "-" and json_mode():
        raise click.UsageError("--json prints the metadata on stdout: give -o a file with it")
    if image_format is None and output not in (None, "-"):
        image_format = _EXTENSIONS.get(Path(output).suffix.lower())
    options: dict[str, Any] = {
        "format": image_format,
        "quality": quality,
        "scale": scale,
        "screen_id": screen_id,
        "wait_stable": wait_stable or None,
        "timeout_ms": timeout_ms,
        "cursor_ring": cursor_ring or None,
    }
    if region is not None:
        shot = hands.screenshot_region(*region, **options)
    else:
        shot = hands.screenshot(**options)
    image: bytes = shot.image
    extension = "jpg" if (image_format or "jpeg") == "jpeg" else image_format
    if output is None:
        output = f"screenshot-{datetime.now(UTC).strftime('%Y%m%d-%H%M%S')}.{extension}"
    size = f"{human_size(len(image))}, {shot.get('width')}x{shot.get('height')}"
    if shot.get("frame_id") is not None:  # what click/move/drag --frame refer to
        size += f", frame {shot['frame_id']}"
    if output == "-":
        sys.stdout.buffer.write(image)
        sys.stdout.buffer.flush()
        click.echo(f"wrote {len(image)} bytes to stdout ({size})", err=True)
        return
    try:
        Path(output).write_bytes(image)
    except OSError as err:
        raise ConfigError(f"cannot write {output}: {err.strerror or err}") from err
    data = {"path": output, "bytes": len(image), **{k: v for k, v in shot.items() if k != "image"}}
    emit(data, f"wrote {output} ({size})")


@device_command("screenshot", "[DEVICE]", counts=(0,))
@click.option("--region", metavar="X,Y,W,H", help="Capture only this rectangle.")
@_shot_options
def screenshot(
    hands: ActionMethods[Any], rest: list[str], region: str | None, **options: Any
) -> None:
    """Capture the screen (or a region) and write it to a file.

    \b
    Examples:
      remotehands screenshot --agent http://127.0.0.1:8082 -o screen.png
      remotehands screenshot web-1 --region 0,0,800,600 --scale 0.5 -o part.jpg
      remotehands screenshot web-1 --wait-stable -o - | display
    """
    _save_shot(hands, None if region is None else _region(region), **options)


@device_command("screenshot-region", "[DEVICE] X Y WIDTH HEIGHT", counts=(4,))
@_shot_options
def screenshot_region(hands: ActionMethods[Any], rest: list[str], **options: Any) -> None:
    """Capture the rectangle X Y WIDTH HEIGHT of the screen and write it to a file.

    \b
    Example:
      remotehands screenshot-region web-1 0 0 800 600 -o part.png
    """
    x, y, width, height = _ints(rest, "X Y WIDTH HEIGHT")
    _save_shot(hands, (x, y, width, height), **options)


_VARIANT_COLUMNS: list[Column] = [
    ("NAME", "name"),
    ("FORMAT", "format"),
    ("WIDTH", "width"),
    ("HEIGHT", "height"),
    ("OK", "ok"),
    ("DETAILS", lambda r: r.get("error") or r.get("path") or r.get("url") or ""),
]


@device_command("screenshots", "[DEVICE] FILE", counts=(1,))
@click.option("--dir", "folder", metavar="DIR", help="Write each image to DIR/<name>.<format>.")
@click.option("--screen", "screen_id", type=click.IntRange(min=0), help="Screen id (default 0).")
def screenshots(
    hands: ActionMethods[Any], rest: list[str], folder: str | None, screen_id: int | None
) -> None:
    """Make several variants of one frame (crop, scale, format, upload), as FILE (- reads
    stdin) lists them: {"variants": [...]} or just the list.

    \b
    Example FILE:
      [{"name": "overview", "scale_x": 0.5, "scale_y": 0.5, "format": "jpeg"},
       {"name": "panel", "crop": {"x": 0, "y": 0, "width": 400, "height": 300}}]
    """
    document = _read_json(rest[0], "screenshot variants")
    if isinstance(document, dict):
        document = document.get("variants")
    if not isinstance(document, list):
        raise ValidationError('variants are {"variants": [...]} or a list of variants')
    result = hands.screenshots(document, screen_id=screen_id)
    rows: list[dict[str, Any]] = []
    for entry in result.get("images", []) if isinstance(result, Mapping) else []:
        row = {k: v for k, v in entry.items() if k != "image"}
        image = entry.get("image")
        if isinstance(image, bytes):
            row["bytes"] = len(image)
            if folder is not None:
                extension = "jpg" if entry.get("format") == "jpeg" else entry.get("format")
                path = Path(folder) / f"{entry.get('name')}.{extension}"
                try:
                    path.write_bytes(image)
                except OSError as err:
                    raise ConfigError(f"cannot write {path}: {err.strerror or err}") from err
                row["path"] = str(path)
        rows.append(row)
    data = {k: v for k, v in result.items() if k != "images"} | {"images": rows}
    emit(data, lambda: table(rows, _VARIANT_COLUMNS, "no images"))


@device_command("cursor", "[DEVICE]", counts=(0,), verb="cursor_position")
def cursor(hands: ActionMethods[Any], rest: list[str]) -> None:
    """Print where the pointer is, as X,Y."""
    position = hands.cursor_position()
    emit(position, f"{position.get('x')},{position.get('y')}")


@device_command("screens", "[DEVICE]", counts=(0,))
def screens(hands: ActionMethods[Any], rest: list[str]) -> None:
    """List the device's screens (monitors)."""
    result = hands.screens()
    rows = result.get("screens", []) if isinstance(result, Mapping) else result
    columns: list[Column] = [("ID", "id"), ("WIDTH", "width"), ("HEIGHT", "height"),
                             ("X", "x"), ("Y", "y")]  # fmt: skip
    emit(result, lambda: table(rows, columns, "no screens"))


# pointer


def _at(x: int | None, y: int | None) -> str:
    return f" at {x},{y}" if x is not None else ""


def _point(rest: list[str]) -> tuple[int | None, int | None]:
    if not rest:
        return None, None
    x, y = _ints(rest, "X Y")
    return x, y


_FRAME = click.option(
    "--frame",
    "frame_id",
    type=click.IntRange(min=1),
    help="Coordinates are pixels of this screenshot (its frame_id), scaled or of a region.",
)


@device_command("click", "[DEVICE] [X Y]", counts=(0, 2))
@click.option("--button", type=click.Choice(BUTTONS), default="left", show_default=True)
@click.option("--double", is_flag=True, help="Double-click.")
@_FRAME
def click_(
    hands: ActionMethods[Any], rest: list[str], button: Button, double: bool, frame_id: int | None
) -> None:
    """Click at X Y, or where the pointer is.

    \b
    Examples:
      remotehands click --agent http://127.0.0.1:8082 100 200
      remotehands click web-1 100 200 --button right
      remotehands click web-1 --double
      remotehands click web-1 50 40 --frame 12   # pixels of screenshot 12
    """
    x, y = _point(rest)
    if double:
        result = hands.double_click(x, y, button=button, frame_id=frame_id)
        emit(result, f"double-clicked {button}{_at(x, y)}")
    else:
        emit(hands.click(x, y, button=button, frame_id=frame_id), f"clicked {button}{_at(x, y)}")


@device_command("double-click", "[DEVICE] [X Y]", counts=(0, 2))
@click.option("--button", type=click.Choice(BUTTONS), default="left", show_default=True)
@_FRAME
def double_click(
    hands: ActionMethods[Any], rest: list[str], button: Button, frame_id: int | None
) -> None:
    """Double-click at X Y, or where the pointer is (the same as click --double).

    \b
    Example:
      remotehands double-click web-1 100 200
    """
    x, y = _point(rest)
    result = hands.double_click(x, y, button=button, frame_id=frame_id)
    emit(result, f"double-clicked {button}{_at(x, y)}")


@device_command("move", "[DEVICE] X Y", counts=(2,))
@_FRAME
def move(hands: ActionMethods[Any], rest: list[str], frame_id: int | None) -> None:
    """Move the pointer to X Y.

    \b
    Example:
      remotehands move web-1 640 400
    """
    x, y = _ints(rest, "X Y")
    emit(hands.move(x, y, frame_id=frame_id), f"moved to {x},{y}")


@device_command("scroll", "[DEVICE]", counts=(0,))
@click.option("--x", "x", type=int, help="Where to scroll (default: where the pointer is).")
@click.option("--y", "y", type=int, help="Where to scroll.")
@click.option("--dy", type=click.IntRange(-1000, 1000), default=0, help="Notches down (<0: up).")
@click.option("--dx", type=click.IntRange(-1000, 1000), default=0, help="Notches right (<0: left).")
def scroll(
    hands: ActionMethods[Any], rest: list[str], x: int | None, y: int | None, dy: int, dx: int
) -> None:
    """Scroll the wheel by --dy (and --dx) notches.

    \b
    Examples:
      remotehands scroll web-1 --dy 5            # down 5 notches where the pointer is
      remotehands scroll web-1 --x 600 --y 400 --dy -3
    """
    if (x is None) != (y is None):
        raise click.UsageError("give both --x and --y, or neither")
    if not dx and not dy:
        raise click.UsageError("give --dy N (negative scrolls up) and/or --dx N")
    emit(hands.scroll(x, y, delta_x=dx, delta_y=dy), f"scrolled dx={dx} dy={dy}{_at(x, y)}")


@device_command("drag", "[DEVICE] FROM_X FROM_Y TO_X TO_Y", counts=(4,))
@click.option("--button", type=click.Choice(BUTTONS), default="left", show_default=True)
@click.option("--duration-ms", type=click.IntRange(0, 60_000), help="How long the move takes.")
@_FRAME
def drag(
    hands: ActionMethods[Any],
    rest: list[str],
    button: Button,
    duration_ms: int | None,
    frame_id: int | None,
) -> None:
    """Press at FROM_X FROM_Y, move to TO_X TO_Y, release.

    \b
    Example:
      remotehands drag web-1 100 200 400 200 --duration-ms 500
    """
    fx, fy, tx, ty = _ints(rest, "FROM_X FROM_Y TO_X TO_Y")
    result = hands.drag(fx, fy, tx, ty, button=button, duration_ms=duration_ms, frame_id=frame_id)
    emit(result, f"dragged {button} from {fx},{fy} to {tx},{ty}")


@device_command("mouse-down", "[DEVICE] [X Y]", counts=(0, 2))
@click.option("--button", type=click.Choice(BUTTONS), default="left", show_default=True)
def mouse_down(hands: ActionMethods[Any], rest: list[str], button: Button) -> None:
    """Press a mouse button (at X Y) and keep it down until mouse-up."""
    x, y = _point(rest)
    emit(hands.mouse_down(button, x=x, y=y), f"pressed {button}{_at(x, y)}")


@device_command("mouse-up", "[DEVICE] [X Y]", counts=(0, 2))
@click.option("--button", type=click.Choice(BUTTONS), default="left", show_default=True)
def mouse_up(hands: ActionMethods[Any], rest: list[str], button: Button) -> None:
    """Release a mouse button (at X Y)."""
    x, y = _point(rest)
    emit(hands.mouse_up(button, x=x, y=y), f"released {button}{_at(x, y)}")


# keyboard


@device_command("type", "[DEVICE] TEXT", counts=(1,))
@click.option("--duration-ms", type=click.IntRange(0, 600_000), help="Spread the typing over this.")
def type_(hands: ActionMethods[Any], rest: list[str], duration_ms: int | None) -> None:
    """Type TEXT verbatim; TEXT - types what stdin holds (a final newline too).

    \b
    Examples:
      remotehands type web-1 'Hello, wörld!'
      printf 'line one\\nline two' | remotehands type web-1 -
    """
    text = _text_arg(rest[0])
    emit(hands.type(text, duration_ms=duration_ms), f"typed {len(text)} characters")


@device_command("key", "[DEVICE] COMBO", counts=(1,))
@click.option("--duration-ms", type=click.IntRange(0, 60_000), help="Hold the keys this long.")
def key(hands: ActionMethods[Any], rest: list[str], duration_ms: int | None) -> None:
    """Press a key or a combination: Enter, ctrl+c, ctrl+shift+t, alt+F4.

    Keys are W3C codes (KeyA, Enter, F5, ArrowUp) or aliases (ctrl, shift, alt, meta, esc,
    tab, pgdn, ...); single characters name their key.

    \b
    Examples:
      remotehands key web-1 ctrl+shift+t
      remotehands key --agent http://127.0.0.1:8082 Enter
    """
    emit(hands.key(rest[0], duration_ms=duration_ms), f"pressed {rest[0]}")


@device_command("hotkey", "[DEVICE] KEY...", counts=range(1, 64))
@click.option("--duration-ms", type=click.IntRange(0, 60_000), help="Hold the keys this long.")
def hotkey(hands: ActionMethods[Any], rest: list[str], duration_ms: int | None) -> None:
    """Press KEYs together and release them in reverse order.

    \b
    Example:
      remotehands hotkey web-1 ctrl alt Delete
    """
    emit(hands.hotkey(*rest, duration_ms=duration_ms), f"pressed {'+'.join(rest)}")


@device_command("key-down", "[DEVICE] KEY", counts=(1,))
def key_down(hands: ActionMethods[Any], rest: list[str]) -> None:
    """Hold KEY down until key-up."""
    emit(hands.key_down(rest[0]), f"holding {rest[0]}")


@device_command("key-up", "[DEVICE] KEY", counts=(1,))
def key_up(hands: ActionMethods[Any], rest: list[str]) -> None:
    """Release a held KEY."""
    emit(hands.key_up(rest[0]), f"released {rest[0]}")


# clipboard


def _print_text(text: str, raw: bool = False) -> None:
    # A final newline like every line tool, so the prompt or the next output starts on its own
    # line; --raw gives exactly the text (to pipe it somewhere byte for byte).
    click.echo(text, nl=not raw and not text.endswith("\n"))


@device_group("clipboard", default="get")
def clipboard() -> None:
    """Read and write the clipboard and its named slots (default: get).

    \b
    Examples:
      remotehands clipboard web-1                  # print the clipboard
      echo hello | remotehands clipboard web-1 set -
      remotehands clipboard web-1 slot-store order_id 4711
      remotehands clipboard web-1 slots
    """


@device_command("get", "[DEVICE]", counts=(0,), parent=clipboard, verb="clipboard_get")
@click.option("--max-bytes", type=click.IntRange(min=1), help="Read at most this much UTF-8.")
@click.option("--raw", is_flag=True, help="Exactly the text, without a final newline added.")
def clipboard_get(
    hands: ActionMethods[Any], rest: list[str], max_bytes: int | None, raw: bool
) -> None:
    """Print the clipboard's text (with a final newline unless --raw)."""
    result = hands.clipboard_get(max_bytes=max_bytes)
    text = str(result.get("text") or "")

    def show() -> None:
        _print_text(text, raw)
        if result.get("truncated"):
            click.echo(f"(truncated: {result.get('length')} characters shown)", err=True)

    emit(result, show)


@device_command("set", "[DEVICE] TEXT", counts=(1,), parent=clipboard, verb="clipboard_set")
def clipboard_set(hands: ActionMethods[Any], rest: list[str]) -> None:
    """Put TEXT on the clipboard (- reads stdin)."""
    text = _text_arg(rest[0])
    emit(hands.clipboard_set(text), f"clipboard set ({len(text)} characters)")


_SLOT_COLUMNS: list[Column] = [("NAME", "name"), ("LENGTH", "length"), ("STORED", "stored_at")]


@device_command("slots", "[DEVICE]", counts=(0,), parent=clipboard, verb="clipboard_slots")
def clipboard_slots(hands: ActionMethods[Any], rest: list[str]) -> None:
    """List the named slots."""
    slots = hands.clipboard_slots()
    emit(slots, lambda: table(slots, _SLOT_COLUMNS, "no slots"))


@device_command("slot-get", "[DEVICE] NAME", counts=(1,), parent=clipboard, verb="slot_get")
def slot_get(hands: ActionMethods[Any], rest: list[str]) -> None:
    """Print the text of slot NAME."""
    slot = hands.slot_get(rest[0])
    emit(slot, lambda: _print_text(str(slot.get("text") or "")))


@device_command(
    "slot-store", "[DEVICE] NAME TEXT", counts=(2,), parent=clipboard, verb="slot_store"
)
def slot_store(hands: ActionMethods[Any], rest: list[str]) -> None:
    """Store TEXT (- reads stdin) in slot NAME."""
    text = _text_arg(rest[1])
    emit(hands.slot_store(rest[0], text), f"stored {len(text)} characters in {rest[0]}")


@device_command("slot-delete", "[DEVICE] NAME", counts=(1,), parent=clipboard, verb="slot_delete")
def slot_delete(hands: ActionMethods[Any], rest: list[str]) -> None:
    """Delete slot NAME."""
    emit(hands.slot_delete(rest[0]), f"deleted slot {rest[0]}")


@device_command("slots-clear", "[DEVICE]", counts=(0,), parent=clipboard, verb="slots_clear")
def slots_clear(hands: ActionMethods[Any], rest: list[str]) -> None:
    """Delete every slot."""
    emit(hands.slots_clear(), "deleted every slot")


@device_command("slot-restore", "[DEVICE] NAME", counts=(1,), parent=clipboard, verb="slot_restore")
def slot_restore(hands: ActionMethods[Any], rest: list[str]) -> None:
    """Put slot NAME back on the clipboard."""
    emit(hands.slot_restore(rest[0]), f"restored {rest[0]} to the clipboard")


@device_command("capture", "[DEVICE] SLOT", counts=(1,), parent=clipboard, verb="clipboard_capture")
@click.option("--window", "window_id", metavar="ID", help="Focus this window first.")
@click.option("--select-all/--no-select-all", default=True, show_default=True)
@click.option("--copy/--no-copy", default=True, show_default=True)
@click.option("--settle-ms", type=click.IntRange(0, 10_000), help="Wait after copying.")
def clipboard_capture(
    hands: ActionMethods[Any],
    rest: list[str],
    window_id: str | None,
    select_all: bool,
    copy: bool,
    settle_ms: int | None,
) -> None:
    """Focus a window, select all, copy, and store the clipboard in SLOT.

    \b
    Example:
      remotehands clipboard web-1 capture panel_1 --window 0x4400003
    """
    capture: dict[str, Any] = {"slot": rest[0], "select_all": select_all, "copy": copy}
    if window_id is not None:
        capture["focus_window_id"] = _window(window_id)
    if settle_ms is not None:
        capture["settle_ms"] = settle_ms
    result = hands.clipboard_capture([capture])
    rows = result.get("results", []) if isinstance(result, Mapping) else []
    columns: list[Column] = [("SLOT", "slot"), ("OK", "ok"), ("LENGTH", "length"),
                             ("TRUNCATED", "truncated")]  # fmt: skip
    emit(result, lambda: table(rows, columns, "nothing captured"))


# windows


def _geometry(row: Mapping[str, Any]) -> str:
    b = row.get("bounds") or {}
    return f"{b.get('width')}x{b.get('height')}+{b.get('x')}+{b.get('y')}"


def _flags(row: Mapping[str, Any]) -> str:
    flags = [f for f in ("focused", "dialog") if row.get(f"is_{f}")]
    return ",".join(flags) or "-"


_WINDOW_COLUMNS: list[Column] = [
    ("ID", "id"),
    ("PID", "pid"),
    ("PROCESS", "process_name"),
    ("GEOMETRY", _geometry),
    ("FLAGS", _flags),
    ("TITLE", "title"),
]


@device_group("windows", default="list")
def windows() -> None:
    """List, focus, move and close windows; find and close dialogs (default: list).

    \b
    Examples:
      remotehands windows web-1
      remotehands windows web-1 focus 0x4400003
      remotehands windows web-1 move 0x4400003 0 0 1280 720
      remotehands windows web-1 dialog
    """


@device_command("list", "[DEVICE]", counts=(0,), parent=windows)
def windows_list(hands: ActionMethods[Any], rest: list[str]) -> None:
    """List the top-level windows."""
    rows = hands.windows()
    emit(rows, lambda: table(rows, _WINDOW_COLUMNS, "no windows"))


@device_command("focused", "[DEVICE]", counts=(0,), parent=windows, verb="focused_window")
def windows_focused(hands: ActionMethods[Any], rest: list[str]) -> None:
    """Show the focused window."""
    window = hands.focused_window()
    emit(window, lambda: table([window] if window else [], _WINDOW_COLUMNS, "no focused window"))


@device_command("focus", "[DEVICE] ID", counts=(1,), parent=windows, verb="focus_window")
def windows_focus(hands: ActionMethods[Any], rest: list[str]) -> None:
    """Focus window ID (12345 or 0x4400003)."""
    emit(hands.focus_window(_window(rest[0])), f"focused {rest[0]}")


@device_command(
    "move", "[DEVICE] ID X Y WIDTH HEIGHT", counts=(5,), parent=windows, verb="move_window"
)
def windows_move(hands: ActionMethods[Any], rest: list[str]) -> None:
    """Move and resize window ID."""
    x, y, width, height = _ints(rest[1:], "X Y WIDTH HEIGHT")
    result = hands.move_window(_window(rest[0]), x, y, width, height)
    emit(result, f"moved {rest[0]} to {width}x{height}+{x}+{y}")


@device_command("close", "[DEVICE] ID", counts=(1,), parent=windows, verb="close_window")
def windows_close(hands: ActionMethods[Any], rest: list[str]) -> None:
    """Ask window ID to close."""
    emit(hands.close_window(_window(rest[0])), f"asked {rest[0]} to close")


@device_command("dialog", "[DEVICE]", counts=(0,), parent=windows, verb="dialog")
def windows_dialog(hands: ActionMethods[Any], rest: list[str]) -> None:
    """Show the active dialog, if there is one."""
    result = hands.dialog()
    found = result.get("dialog") if isinstance(result, Mapping) else None
    emit(result, lambda: table([found] if found else [], _WINDOW_COLUMNS, "no dialog"))


@device_command("dialog-close", "[DEVICE] [ID]", counts=(0, 1), parent=windows, verb="dialog_close")
@click.option("--wait-ms", type=click.IntRange(0, 60_000), help="How long to wait for it to go.")
def windows_dialog_close(hands: ActionMethods[Any], rest: list[str], wait_ms: int | None) -> None:
    """Close the active dialog (or window ID): Escape first, then a close request."""
    window_id = _window(rest[0]) if rest else None
    emit(hands.dialog_close(window_id, wait_dialog_gone_ms=wait_ms), "closed the dialog")


# applications


@device_group("apps")
def apps() -> None:
    """Open applications, see whether they run, close their windows.

    \b
    Examples:
      remotehands apps web-1 open /usr/bin/gedit notes.txt
      remotehands apps web-1 open -- /usr/bin/xterm -e top
      remotehands apps web-1 running firefox
      remotehands apps web-1 close 0x4400003
    """


@device_command(
    "open",
    "[DEVICE] PATH [ARGS]...",
    counts=range(1, 257),
    parent=apps,
    context_settings={"ignore_unknown_options": True},
    verb="open_app",
)
def apps_open(hands: ActionMethods[Any], rest: list[str]) -> None:
    """Start the program PATH with ARGS (put -- before ARGS that start with -)."""
    result = hands.open_app(rest[0], rest[1:])
    emit(result, f"started {rest[0]} (pid {result.get('pid')})")


@device_command("running", "[DEVICE] NAME", counts=(1,), parent=apps, verb="app_running")
def apps_running(hands: ActionMethods[Any], rest: list[str]) -> None:
    """Say whether a program named NAME runs (and its pids)."""
    result = hands.app_running(rest[0])
    pids = ", ".join(str(p) for p in result.get("pids") or [])
    text = (
        f"{rest[0]} is running (pid {pids})"
        if result.get("running")
        else f"{rest[0]} is not running"
    )
    emit(result, text)


@device_command("close", "[DEVICE] WINDOW_ID", counts=(1,), parent=apps, verb="close_app")
def apps_close(hands: ActionMethods[Any], rest: list[str]) -> None:
    """Close the application window WINDOW_ID."""
    emit(hands.close_app(_window(rest[0])), f"closed {rest[0]}")


# sequence, log, anything


def _read_json(source: str, what: str) -> Any:
    try:
        raw = sys.stdin.buffer.read() if source == "-" else Path(source).read_bytes()
    except OSError as err:
        raise ConfigError(f"cannot read {source}: {err.strerror or err}") from err
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError as err:
        where = "stdin" if source == "-" else source
        raise ValidationError(f"{where} is not valid JSON ({what}): {err}") from err


_STEP_COLUMNS: list[Column] = [
    ("NAME", "name"),
    ("TYPE", "type"),
    ("OK", "ok"),
    ("MS", "duration_ms"),
    ("DETAILS", lambda r: r.get("details") or r.get("error") or ""),
]


@device_command("sequence", "[DEVICE] FILE", counts=(1,))
@click.option("--on-error", type=click.Choice(["abort", "continue"]), help="Default: abort.")
@click.option("--lock-timeout-ms", type=click.IntRange(0, 600_000), help="Wait for the lock.")
def sequence(
    hands: ActionMethods[Any], rest: list[str], on_error: str | None, lock_timeout_ms: int | None
) -> None:
    """Run the steps in FILE (- reads stdin) in order under the device lock.

    FILE holds {"steps": [...], "on_error": "abort"} or just the list of steps; a step is
    {"type": ACTION, ...its parameters}. The exit status is that of the first failed step.

    \b
    Example FILE:
      [{"type": "window.focus", "window_id": "0x4400003"},
       {"type": "keyboard.key", "keys": "ctrl+v"},
       {"type": "mouse.click", "x": 500, "y": 400},
       {"type": "sleep", "ms": 150},
       {"type": "screenshot", "format": "jpeg"}]
    """
    document = _read_json(rest[0], "a sequence")
    if isinstance(document, list):
        document = {"steps": document}
    if not isinstance(document, dict) or not isinstance(document.get("steps"), list):
        raise ValidationError('a sequence is {"steps": [...]} or a list of steps')
    result = hands.sequence(
        document["steps"],
        on_error=on_error if on_error is not None else document.get("on_error"),
        lock_timeout_ms=(
            lock_timeout_ms if lock_timeout_ms is not None else document.get("lock_timeout_ms")
        ),
    )
    steps = result.get("results", []) if isinstance(result, Mapping) else []

    def show() -> None:
        table(steps, _STEP_COLUMNS, "no steps ran")
        if result.get("aborted_at") is not None:
            click.echo(f"aborted at {result['aborted_at']}")
        click.echo(f"total {result.get('total_duration_ms')} ms")

    emit(result, show)
    failed = [s for s in steps if isinstance(s, Mapping) and not s.get("ok", True)]
    if failed:
        step = failed[0]
        code = str(step.get("error") or "device_error")
        details = str(step.get("details") or f"step {step.get('name') or step.get('type')} failed")
        fail(error_from_wire(code, details), echo_json=False)


_LOG_COLUMNS: list[Column] = [
    ("TIME", "timestamp"),
    ("ACTION", "action"),
    ("RESULT", "result"),
    ("MS", "duration_ms"),
    ("PARAMS", "params"),
]


@device_command("actions", "[DEVICE]", counts=(0,))
@click.option("--limit", type=click.IntRange(1, 10_000), help="How many entries (default 100).")
def actions(hands: ActionMethods[Any], rest: list[str], limit: int | None) -> None:
    """Show the device's recent action log, newest first (like audit)."""
    entries = hands.actions(limit=limit)
    emit(entries, lambda: table(entries, _LOG_COLUMNS, "no actions yet"))


@device_command("call", "[DEVICE] ACTION", counts=(1,))
@click.option("--params", "params", default="{}", metavar="JSON", help="The parameters.")
def call(hands: ActionMethods[Any], rest: list[str], params: str) -> None:
    """Run any action by its name (mouse.click, screenshots, clipboard.capture...) with JSON
    parameters, and print the JSON answer (images as base64).

    \b
    Example:
      remotehands call web-1 screenshots --params '{"variants": [{"name": "a"}]}'
    """
    try:
        values = orjson.loads(params)
    except orjson.JSONDecodeError as err:
        raise ValidationError(f"--params is not valid JSON: {err}") from err
    if not isinstance(values, dict):
        raise ValidationError('--params must be a JSON object such as {"x": 10, "y": 20}')
    emit(hands.call(rest[0], **values))


_as_verb(windows, "windows")  # ``remotehands windows`` lists them: the verb's own command

# The command table ``remotehands.cli.main`` loads lazily: the older spellings that group the
# verbs (``clipboard get``, ``windows focus``, ``apps open``) or shorten them. The verb commands
# themselves (every CLI name of the vocabulary's rule) are gathered by remotehands.cli.verbs.
COMMANDS: dict[str, tuple[str, str]] = {
    name: (f"remotehands.cli.actions_cmd:{attr}", help_text)
    for name, attr, help_text in (
        ("cursor", "cursor", "Print where the pointer is (the same as cursor-position)."),
        ("clipboard", "clipboard", "Read and write the clipboard and its named slots."),
        ("apps", "apps", "Open applications, see whether they run, close them."),
        ("call", "call", "Run any action by name with JSON parameters."),
    )
}
"""Command name -> ("module:attribute", one-line help), for ``remotehands.cli.main``."""
