// The console's controls beside the screen, each shown only when the device declares its
// capability: the key combinations the browser keeps for itself, paste as keystrokes, the
// device's clipboard, its windows, power (with a confirmation), virtual media (upload with a
// progress bar, then mount) and audio volume. Read-only viewers get none of those that act.

import { csrfToken } from "/static/js/api.js";
import { el } from "/static/js/shell.js";

function show(id, on = true) {
  document.getElementById(id).hidden = !on;
}

/** A message line in the panel: kind "info" or "error". */
function message(text, kind = "info") {
  return el("p", { class: "message " + kind, role: kind === "error" ? "alert" : "status", text });
}

export class Controls {
  constructor({ device, actions, screen, canReact }) {
    this.device = device;
    this.actions = actions;
    this.screen = screen;
    this.panel = document.getElementById("panel");
    this.open = null;
    const caps = new Set(device.capabilities || []);
    this.caps = caps;
    if (canReact) {
      if (caps.has("keyboard")) {
        show("keys-menu");
        show("paste-button");
        this.keysMenu();
      }
      if (caps.has("clipboard")) show("clipboard-button");
      if (caps.has("windows")) show("windows-button");
      if (caps.has("power")) show("power-button");
      if (caps.has("media")) show("media-button");
      if (caps.has("audio")) show("audio-button");
    }
    this.bind("paste-button", () => this.pastePanel());
    this.bind("clipboard-button", () => this.clipboardPanel());
    this.bind("windows-button", () => this.windowsPanel());
    this.bind("power-button", () => this.powerPanel());
    this.bind("media-button", () => this.mediaPanel());
    this.bind("audio-button", () => this.audioPanel());
    document.getElementById("screenshot-button").addEventListener("click", () => this.screenshot());
  }

  bind(id, build) {
    document.getElementById(id).addEventListener("click", () => this.toggle(id, build));
  }

  /** Open the panel of button `id` (built by `build`), or close it if it is open. */
  toggle(id, build) {
    const button = document.getElementById(id);
    if (this.open === id) {
      this.close();
      return;
    }
    this.close();
    this.open = id;
    button.setAttribute("aria-expanded", "true");
    this.panel.replaceChildren();
    this.panel.hidden = false;
    this.panel.setAttribute("aria-label", button.textContent);
    Promise.resolve(build()).catch((err) => this.panel.append(message(err.message, "error")));
  }

  close() {
    if (this.open) document.getElementById(this.open).setAttribute("aria-expanded", "false");
    this.open = null;
    this.panel.hidden = true;
    this.panel.replaceChildren();
  }

  keysMenu() {
    const button = document.getElementById("keys-button");
    const items = document.querySelector("#keys-menu .menu-items");
    const setOpen = (open) => {
      items.hidden = !open;
      button.setAttribute("aria-expanded", String(open));
      if (open) items.querySelector("button").focus();
    };
    button.addEventListener("click", () => setOpen(items.hidden));
    items.addEventListener("keydown", (event) => {
      const all = [...items.querySelectorAll("button")];
      const at = all.indexOf(document.activeElement);
      if (event.key === "Escape") {
        setOpen(false);
        button.focus();
      } else if (event.key === "ArrowDown" || event.key === "ArrowUp") {
        event.preventDefault();
        const step = event.key === "ArrowDown" ? 1 : all.length - 1;
        all[(at + step) % all.length].focus();
      }
    });
    for (const item of items.querySelectorAll("button")) {
      item.addEventListener("click", async () => {
        setOpen(false);
        const keys = item.dataset.keys.split(" ");
        await this.actions.fire("keyboard.key", { keys });
        this.screen.canvas.focus();
      });
    }
  }

  pastePanel() {
    const text = el("textarea", { id: "paste-text", "aria-label": "Text to type on the device" });
    const send = el("button", { type: "button", id: "paste-send", class: "primary",
                                text: "Type it" });
    const status = el("span", { class: "muted", role: "status" });
    send.addEventListener("click", async () => {
      if (!text.value) return;
      status.textContent = "typing…";
      try {
        await this.actions.call("keyboard.type", { text: text.value });
        status.textContent = "typed " + text.value.length + " characters";
      } catch (err) {
        status.textContent = "";
        this.panel.append(message(err.message, "error"));
      }
    });
    this.panel.append(el("label", { for: "paste-text", text: "Paste as keystrokes" }), text,
                      el("div", { class: "row" }, send, status));
    text.focus();
  }

  async clipboardPanel() {
    const text = el("textarea", { id: "clipboard-text", "aria-label": "The device's clipboard" });
    const read = el("button", { type: "button", id: "clipboard-read", text: "Read" });
    const write = el("button", { type: "button", id: "clipboard-write", class: "primary",
                                 text: "Write to the device" });
    const status = el("span", { class: "muted", role: "status" });
    read.addEventListener("click", async () => {
      try {
        const got = await this.actions.call("clipboard.get", {});
        text.value = got.text;
        status.textContent = got.truncated ? "cut short" : "read " + got.length + " characters";
      } catch (err) {
        this.panel.append(message(err.message, "error"));
      }
    });
    write.addEventListener("click", async () => {
      try {
        await this.actions.call("clipboard.set", { text: text.value });
        status.textContent = "written";
      } catch (err) {
        this.panel.append(message(err.message, "error"));
      }
    });
    this.panel.append(el("label", { for: "clipboard-text", text: "Clipboard of the device" }),
                      text, el("div", { class: "row" }, read, write, status));
    read.click();
  }

  async windowsPanel() {
    const windows = await this.actions.call("windows.list", {});
    const list = el("ul", { id: "windows-list" });
    for (const win of windows) {
      const focus = el("button", { type: "button", text: win.title || "(untitled)" });
      if (win.is_focused) focus.setAttribute("aria-current", "true");
      focus.addEventListener("click", async () => {
        try {
          await this.actions.call("window.focus", { id: win.id });
          this.close();
          this.screen.canvas.focus();
        } catch (err) {
          this.panel.append(message(err.message, "error"));
        }
      });
      list.append(el("li", {}, focus));
    }
    this.panel.append(el("p", { text: "Focus a window:" }), list);
  }

  async powerPanel() {
    const state = await this.actions.call("power.state", {});
    const status = el("p", { id: "power-state",
                             text: "Power: " + (state.on ? "on" : "off") });
    const row = el("div", { class: "row" });
    const labels = { on: "Power on", off: "Shut down", off_hard: "Power off (hard)",
                     reset_hard: "Reset (hard)", restart: "Restart", shutdown: "OS shutdown" };
    for (const action of state.actions || []) {
      const button = el("button", { type: "button", class: "danger", "data-power": action,
                                    text: labels[action] || action });
      button.addEventListener("click", async () => {
        if (!(await confirmAction(`${labels[action] || action}: ${this.device.name}?`))) return;
        try {
          await this.actions.call("power." + action, {});
          const now = await this.actions.call("power.state", {});
          status.textContent = "Power: " + (now.on ? "on" : "off") + " (" + action + " done)";
        } catch (err) {
          this.panel.append(message(err.message, "error"));
        }
      });
      row.append(button);
    }
    this.panel.append(status, row);
  }

  async mediaPanel() {
    const state = await this.actions.call("media.state", {});
    const drive = el("p", { id: "media-drive", text: driveText(state) });
    const file = el("input", { type: "file", id: "media-file", "aria-label": "Image to upload" });
    const upload = el("button", { type: "button", id: "media-upload", class: "primary",
                                  text: "Upload and mount" });
    const progress = el("progress", { id: "media-progress", max: "100", value: "0",
                                      "aria-label": "Upload progress" });
    progress.hidden = true;
    const status = el("span", { id: "media-status", role: "status", class: "muted" });
    upload.addEventListener("click", async () => {
      const chosen = file.files && file.files[0];
      if (!chosen) {
        status.textContent = "choose an image first";
        return;
      }
      upload.disabled = true;
      progress.hidden = false;
      progress.value = 0;
      status.textContent = "uploading…";
      try {
        await uploadImage(this.device.id, chosen, (done, total) => {
          progress.value = total ? Math.round((done / total) * 100) : 0;
        });
        progress.value = 100;
        status.textContent = "mounting…";
        await this.actions.call("media.mount", { name: chosen.name, cdrom: true });
        const now = await this.actions.call("media.state", {});
        drive.textContent = driveText(now);
        status.textContent = "mounted " + chosen.name;
      } catch (err) {
        status.textContent = "";
        this.panel.append(message("upload failed: " + err.message, "error"));
      } finally {
        upload.disabled = false;
      }
    });
    const eject = el("button", { type: "button", id: "media-eject", text: "Eject" });
    eject.addEventListener("click", async () => {
      try {
        await this.actions.call("media.eject", {});
        drive.textContent = driveText(await this.actions.call("media.state", {}));
      } catch (err) {
        this.panel.append(message(err.message, "error"));
      }
    });
    this.panel.append(drive, el("div", { class: "row" }, file, upload, eject),
                      el("div", { class: "row" }, progress, status));
  }

  async audioPanel() {
    const state = await this.actions.call("audio.status", {});
    const device = (state.devices || []).find((d) => d.default) || (state.devices || [])[0];
    if (!device) {
      this.panel.append(message("this device has no audio output", "info"));
      return;
    }
    const slider = el("input", { type: "range", id: "audio-volume", min: "0", max: "100",
                                 value: String(Math.round(device.volume)),
                                 "aria-label": "Volume of " + device.name });
    const value = el("output", { id: "audio-value", for: "audio-volume",
                                 text: Math.round(device.volume) + " %" });
    slider.addEventListener("change", async () => {
      try {
        await this.actions.call("audio.volume", { device_id: device.id,
                                                  volume: Number(slider.value) });
        value.textContent = slider.value + " %";
      } catch (err) {
        this.panel.append(message(err.message, "error"));
      }
    });
    this.panel.append(el("div", { class: "row" },
                         el("label", { for: "audio-volume", text: device.name }), slider, value));
  }

  screenshot() {
    let canvas = this.screen.canvas;
    if (!canvas.width) return;
    const { width, height } = this.screen;
    if (width && (canvas.width !== width || canvas.height !== height)) {
      // A half-size H.264 picture (the screen is moving): saved at the device's own size.
      const whole = document.createElement("canvas");
      whole.width = width;
      whole.height = height;
      whole.getContext("2d").drawImage(canvas, 0, 0, width, height);
      canvas = whole;
    }
    canvas.toBlob((blob) => {
      const link = el("a", { href: URL.createObjectURL(blob),
                             download: `${this.device.name}-${stamp()}.png` });
      document.body.append(link);
      link.click();
      link.remove();
      setTimeout(() => URL.revokeObjectURL(link.href), 10000);
    }, "image/png");
  }
}

function stamp() {
  return new Date().toISOString().replace(/[:.]/g, "-");
}

function driveText(state) {
  const drive = state.drive || {};
  if (drive.image && drive.connected) return "Mounted: " + drive.image;
  return "No image mounted";
}

/** Ask with the page's confirmation dialog; answers whether the user confirmed. */
export function confirmAction(text) {
  const dialog = document.getElementById("confirm");
  document.getElementById("confirm-text").textContent = text;
  return new Promise((resolve) => {
    dialog.addEventListener("close", () => resolve(dialog.returnValue === "ok"), { once: true });
    dialog.returnValue = "cancel";
    dialog.showModal();
    document.getElementById("confirm-cancel").focus();
  });
}

/** PUT the file to the streaming media route with upload progress (fetch has none). */
function uploadImage(deviceId, file, onProgress) {
  return new Promise((resolve, reject) => {
    const request = new XMLHttpRequest();
    const path = "/v1/devices/" + encodeURIComponent(deviceId) + "/media/images/" +
      encodeURIComponent(file.name);
    request.open("PUT", path);
    request.setRequestHeader("X-CSRF-Token", csrfToken());
    request.setRequestHeader("Content-Type", "application/octet-stream");
    request.upload.onprogress = (event) => onProgress(event.loaded, event.total);
    request.onload = () => {
      if (request.status >= 200 && request.status < 300) {
        resolve(request.response);
        return;
      }
      let details = request.statusText || "HTTP " + request.status;
      try {
        details = JSON.parse(request.responseText).details || details;
      } catch {
        // not JSON: the status says it
      }
      reject(new Error(details));
    };
    request.onerror = () => reject(new Error("the server cannot be reached"));
    request.send(file);
  });
}
