// The live console of one device (/console/{device_id}): the screen, input, and the controls
// of its capabilities. ?codec=h264|jpeg-rect|jpeg forces a codec (otherwise H.264 where the
// browser decodes it, JPEG rectangles elsewhere). window.__console exposes the live figures
// (frames painted, bytes, codec) to tests and the benchmark.

import { ApiError, api, atLeast } from "/static/js/api.js";
import { shell } from "/static/js/shell.js";
import { Actions } from "./actions.js";
import { Controls } from "./controls.js";
import { Input } from "./input.js";
import { ScreenView } from "./screen.js";

const id = decodeURIComponent(location.pathname.split("/")[2] || "");
const title = document.getElementById("title");
const state = document.getElementById("state");
const overlay = document.getElementById("overlay");
const canvas = document.getElementById("screen");

function setState(text, kind) {
  state.textContent = text;
  state.className = "status " + kind;
}

function setOverlay(text) {
  overlay.hidden = text === null;
  if (text !== null) overlay.textContent = text;
}

async function main() {
  const user = await shell("console");
  let device;
  try {
    device = await api("GET", "/v1/devices/" + encodeURIComponent(id));
  } catch (err) {
    if (!(err instanceof ApiError)) throw err;
    setOverlay(err.status === 404 ? "No such device: " + id : err.message);
    setState("unavailable", "offline");
    return;
  }
  title.textContent = device.name;
  document.title = device.name + " · remotehands";
  const operator = atLeast(user.role, "operator");
  document.getElementById("readonly").hidden = operator;
  if (!operator) {
    canvas.classList.add("readonly");
    canvas.setAttribute("aria-label", "The device's screen (read-only: your role is viewer)");
    document.getElementById("hint").textContent = "Read-only: your role may watch, not act.";
  }

  const wanted = new URLSearchParams(location.search).get("codec");
  const codec = ["h264", "jpeg-rect", "jpeg"].includes(wanted) ? wanted : null;
  let online = device.status !== "offline";

  // Whether the device is there, asked when the screen's socket drops (a refused handshake
  // says nothing to a browser): the overlay says offline until frames flow again.
  async function checkDevice() {
    try {
      const now = await api("GET", "/v1/devices/" + encodeURIComponent(id));
      online = now.status !== "offline";
    } catch {
      online = false;
    }
    if (!online) {
      setState("offline", "offline");
      setOverlay("The device is offline. The console resumes when it comes back.");
    }
  }

  const screen = new ScreenView(canvas, id, {
    codec,
    onState: (what) => {
      if (what === "live") {
        online = true;
        setState("online", "online");
        setOverlay(null);
      } else if (what === "connecting" && online) {
        setState("connecting", "degraded");
      }
    },
    onClose: () => {
      if (!document.hidden) {
        setState("reconnecting", "degraded");
        checkDevice();
      }
    },
  });
  if (!online) {
    setState("offline", "offline");
    setOverlay("The device is offline. The console resumes when it comes back.");
  }
  const actions = new Actions(id);
  const hub = { device, screen, actions, input: null, user };
  window.__console = hub;
  if (operator) {
    actions.connect();
    hub.input = new Input(canvas, actions, screen);
  }
  hub.controls = new Controls({ device, actions, screen, canReact: operator });
  await screen.start();
  hub.ready = true;
}

main().catch((err) => {
  setOverlay("The console failed to start: " + err.message);
  throw err;
});
