// Keyboard and mouse on the screen's canvas, sent over the actions socket.
//
// Keys go by KeyboardEvent.code (the physical key, whatever the browser's layout: the device's
// own layout makes the character, as PiKVM does) as keyboard.down / keyboard.up; the names are
// the W3C codes remotehands uses (protocol/keys.py). Every key held is released when the canvas
// loses focus or the page is hidden. Alt+Shift+F12 gives the keyboard back to the page.
// Mouse moves are coalesced (one in flight, the newest position next) and scaled to device
// pixels; buttons, wheel and drags (down, moves, up) follow.

const CODES = new Set([
  ..."ABCDEFGHIJKLMNOPQRSTUVWXYZ".split("").map((c) => "Key" + c),
  ..."0123456789".split("").map((d) => "Digit" + d),
  ...Array.from({ length: 24 }, (_, n) => "F" + (n + 1)),
  ..."0123456789".split("").map((d) => "Numpad" + d),
  "Enter", "Escape", "Backspace", "Tab", "Space", "Minus", "Equal", "BracketLeft",
  "BracketRight", "Backslash", "Semicolon", "Quote", "Backquote", "Comma", "Period", "Slash",
  "CapsLock", "PrintScreen", "ScrollLock", "Pause", "Insert", "Home", "PageUp", "Delete", "End",
  "PageDown", "ArrowRight", "ArrowLeft", "ArrowDown", "ArrowUp", "NumLock", "NumpadDivide",
  "NumpadMultiply", "NumpadSubtract", "NumpadAdd", "NumpadEnter", "NumpadDecimal",
  "IntlBackslash", "ContextMenu", "ControlLeft", "ShiftLeft", "AltLeft", "MetaLeft",
  "ControlRight", "ShiftRight", "AltRight", "MetaRight", "AudioVolumeMute", "AudioVolumeUp",
  "AudioVolumeDown", "MediaPlayPause", "MediaStop", "MediaTrackNext", "MediaTrackPrevious",
  "IntlYen", "IntlRo", "KanaMode", "Convert", "NonConvert",
]);
const BUTTONS = ["left", "middle", "right"];
const WHEEL_STEP = 100; // pixels of a wheel event per notch (Chromium's line scroll is 100)

/** Whether `event` is the key that gives the keyboard back to the page. */
function isEscape(event) {
  return event.code === "F12" && event.altKey && event.shiftKey && !event.ctrlKey;
}

export class Input {
  constructor(canvas, actions, screen) {
    this.canvas = canvas;
    this.actions = actions;
    this.screen = screen;
    this.keys = new Set();
    this.buttons = new Set();
    this.moveInFlight = false;
    this.nextMove = null;
    this.lastPoint = null;
    this.wheel = { x: 0, y: 0 };
    this.stats = { keys: 0, moves: 0 };
    this.attach();
  }

  attach() {
    const c = this.canvas;
    c.addEventListener("keydown", (e) => this.keydown(e));
    c.addEventListener("keyup", (e) => this.keyup(e));
    c.addEventListener("blur", () => this.releaseAll());
    document.addEventListener("visibilitychange", () => {
      if (document.hidden) this.releaseAll();
    });
    c.addEventListener("mousemove", (e) => this.move(e));
    c.addEventListener("mousedown", (e) => this.button(e, true));
    c.addEventListener("mouseup", (e) => this.button(e, false));
    c.addEventListener("contextmenu", (e) => e.preventDefault());
    c.addEventListener("wheel", (e) => this.scroll(e), { passive: false });
    window.addEventListener("mouseup", (e) => {
      if (e.target !== c) this.releaseButtons();
    });
  }

  keydown(event) {
    if (isEscape(event)) {
      event.preventDefault();
      this.releaseAll();
      this.canvas.blur();
      return;
    }
    if (!CODES.has(event.code)) return;
    event.preventDefault();
    event.stopPropagation();
    if (event.repeat && this.keys.has(event.code)) return; // the device repeats on its own
    this.keys.add(event.code);
    this.stats.keys += 1;
    this.actions.fire("keyboard.down", { key: event.code });
  }

  keyup(event) {
    if (!CODES.has(event.code)) return;
    event.preventDefault();
    event.stopPropagation();
    if (!this.keys.delete(event.code)) return;
    this.actions.fire("keyboard.up", { key: event.code });
  }

  releaseAll() {
    for (const key of this.keys) this.actions.fire("keyboard.up", { key });
    this.keys.clear();
    this.releaseButtons();
  }

  releaseButtons() {
    for (const button of this.buttons) this.actions.fire("mouse.up", { button });
    this.buttons.clear();
  }

  /** The device pixel under a mouse event (the canvas is scaled by CSS; while the screen
   * moves its bitmap may be the half-size H.264 picture: the device's own size counts). */
  point(event) {
    const rect = this.canvas.getBoundingClientRect();
    const width = this.screen.width || this.canvas.width || 1;
    const height = this.screen.height || this.canvas.height || 1;
    const x = Math.round(((event.clientX - rect.left) / rect.width) * width);
    const y = Math.round(((event.clientY - rect.top) / rect.height) * height);
    return { x: Math.min(width - 1, Math.max(0, x)), y: Math.min(height - 1, Math.max(0, y)) };
  }

  move(event) {
    if (!this.canvas.width) return;
    this.nextMove = this.point(event);
    this.flushMove();
  }

  flushMove() {
    if (this.moveInFlight || this.nextMove === null) return;
    const target = this.nextMove;
    this.nextMove = null;
    if (this.lastPoint && target.x === this.lastPoint.x && target.y === this.lastPoint.y) return;
    this.lastPoint = target;
    this.moveInFlight = true;
    this.stats.moves += 1;
    this.actions.fire("mouse.move", target).finally(() => {
      this.moveInFlight = false;
      this.flushMove();
    });
  }

  button(event, down) {
    const button = BUTTONS[event.button];
    if (!button || !this.canvas.width) return;
    event.preventDefault();
    this.canvas.focus();
    const at = this.point(event);
    this.nextMove = null; // the press carries its own position
    this.lastPoint = at;
    if (down) {
      this.buttons.add(button);
      this.actions.fire("mouse.down", { button, ...at });
    } else if (this.buttons.delete(button)) {
      this.actions.fire("mouse.up", { button, ...at });
    }
  }

  scroll(event) {
    event.preventDefault();
    if (!this.canvas.width) return;
    const scale = event.deltaMode === 1 ? WHEEL_STEP / 3 : event.deltaMode === 2 ? 800 : 1;
    this.wheel.x += event.deltaX * scale;
    this.wheel.y += event.deltaY * scale;
    const dx = Math.trunc(this.wheel.x / WHEEL_STEP);
    const dy = Math.trunc(this.wheel.y / WHEEL_STEP);
    if (dx === 0 && dy === 0) return;
    this.wheel.x -= dx * WHEEL_STEP;
    this.wheel.y -= dy * WHEEL_STEP;
    this.actions.fire("mouse.scroll", { ...this.point(event), delta_x: dx, delta_y: dy });
  }
}
