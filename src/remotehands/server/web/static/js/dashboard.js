// The fleet dashboard: every device the user may see, filtered, sorted, updated live from the
// event stream (no polling of the device list), with a small live thumbnail of each visible
// online device refreshed every few seconds while the row is on screen and the tab is shown.

import { ApiError, api } from "./api.js";
import { eventStream } from "./events.js";
import { ago } from "./format.js";
import { el, shell } from "./shell.js";

const THUMB_EVERY_MS = 5000;
const THUMB_WIDTH = 256; // pixels asked of the device: twice the shown width, for sharpness
const THUMB_PARALLEL = 2;

const devices = new Map(); // id -> device (as GET /v1/devices answers it)
const rows = new Map(); // id -> <tr>
const thumbs = new Map(); // id -> { at: ms of the last refresh, busy: bool }
const visible = new Set(); // ids whose row is on screen
const params = new URLSearchParams(location.search);
const view = {
  status: params.get("status") || "",
  tag: params.get("tag") || "",
  search: params.get("q") || "",
  sort: params.get("sort") || "name",
  descending: params.get("order") === "desc",
};

const body = document.querySelector("#devices tbody");
const message = document.getElementById("message");
const live = document.getElementById("live");

function showError(text) {
  message.textContent = text;
  message.hidden = !text;
}

// -- the table -----------------------------------------------------------------------------

function healthText(device) {
  const health = device.health;
  if (!health) return "";
  const parts = [];
  if (health.device && health.device.state !== "ok") {
    parts.push(`device ${health.device.state}` + (health.device.reason ? `: ${health.device.reason}` : ""));
  }
  parts.push(`CPU ${Math.round(health.cpu_percent)}%`, `mem ${Math.round(health.memory_percent)}%`);
  return parts.join(" · ");
}

function sortValue(device, key) {
  switch (key) {
    case "tags": return device.tags.join(",");
    case "health": return device.health ? device.health.cpu_percent : -1;
    case "last_seen": return device.last_seen ? Date.parse(device.last_seen) : 0;
    case "status": return device.status === "online" ? 0 : 1;
    default: return (device[key] || "").toString().toLowerCase();
  }
}

function matches(device) {
  if (view.status && device.status !== view.status) return false;
  if (view.tag && !device.tags.includes(view.tag)) return false;
  const q = view.search.trim().toLowerCase();
  if (q && !device.name.toLowerCase().includes(q) &&
      !device.tags.some((t) => t.toLowerCase().includes(q))) return false;
  return true;
}

function makeRow(device) {
  const img = el("img", { alt: "", width: "128", height: "72", hidden: "" });
  const none = el("div", { class: "nothumb", "aria-hidden": "true" });
  const row = el("tr", { "data-id": device.id },
    el("td", { class: "thumb" }, img, none),
    el("td", { class: "status-cell" }, el("span", { class: "status" })),
    el("td", { class: "name" }, el("a", {})),
    el("td", { class: "tags" }),
    el("td", { class: "type" }),
    el("td", { class: "health" }),
    el("td", { class: "agent" }),
    el("td", { class: "when" }));
  observer.observe(row);
  return row;
}

function fillRow(row, device) {
  const status = row.querySelector(".status");
  status.className = "status " + device.status;
  status.textContent = device.status;
  const link = row.querySelector(".name a");
  link.textContent = device.name;
  link.href = "/console/" + encodeURIComponent(device.id);
  row.querySelector(".tags").replaceChildren(...device.tags.map((t) => el("span", { class: "tag", text: t })));
  row.querySelector(".type").textContent = device.device_type || "";
  row.querySelector(".health").textContent = healthText(device);
  row.querySelector(".agent").textContent = device.agent_version || "";
  const when = row.querySelector(".when");
  when.textContent = device.status === "online" ? "now" : ago(device.last_seen);
  when.title = device.last_seen || "";
  if (device.status !== "online") {
    row.querySelector(".thumb img").hidden = true;
    row.querySelector(".thumb .nothumb").hidden = false;
  }
}

function render() {
  const shown = [...devices.values()].filter(matches);
  const sign = view.descending ? -1 : 1;
  shown.sort((a, b) => {
    const x = sortValue(a, view.sort), y = sortValue(b, view.sort);
    if (x < y) return -sign;
    if (x > y) return sign;
    return a.name.localeCompare(b.name);
  });
  const keep = new Set(shown.map((d) => d.id));
  for (const [id, row] of rows) {
    if (!keep.has(id)) {
      observer.unobserve(row);
      row.remove();
      rows.delete(id);
      visible.delete(id);
    }
  }
  shown.forEach((device, index) => {
    let row = rows.get(device.id);
    if (!row) {
      row = makeRow(device);
      rows.set(device.id, row);
    }
    fillRow(row, device);
    if (body.children[index] !== row) body.insertBefore(row, body.children[index] || null);
  });
  document.getElementById("empty").hidden = shown.length > 0;
  for (const th of document.querySelectorAll("#devices th[data-sort]")) {
    if (th.dataset.sort === view.sort) {
      th.setAttribute("aria-sort", view.descending ? "descending" : "ascending");
    } else {
      th.removeAttribute("aria-sort");
    }
  }
  fillTags();
}

function fillTags() {
  const select = document.getElementById("filter-tag");
  const tags = [...new Set([...devices.values()].flatMap((d) => d.tags))].sort();
  if (view.tag && !tags.includes(view.tag)) tags.push(view.tag);
  const have = [...select.options].slice(1).map((o) => o.value);
  if (have.join("\n") === tags.join("\n")) return;
  select.replaceChildren(el("option", { value: "", text: "any" }),
    ...tags.map((t) => el("option", { value: t, text: t })));
  select.value = view.tag;
}

function remember() {
  const query = new URLSearchParams();
  if (view.status) query.set("status", view.status);
  if (view.tag) query.set("tag", view.tag);
  if (view.search) query.set("q", view.search);
  if (view.sort !== "name") query.set("sort", view.sort);
  if (view.descending) query.set("order", "desc");
  const text = query.toString();
  history.replaceState(null, "", location.pathname + (text ? "?" + text : ""));
}

// -- data ----------------------------------------------------------------------------------

async function loadAll() {
  try {
    const { devices: listed } = await api("GET", "/v1/devices");
    devices.clear();
    for (const device of listed) devices.set(device.id, device);
    showError("");
    render();
    refreshThumbs();
  } catch (err) {
    showError("Could not load the devices: " + err.message);
  }
}

async function loadOne(id) {
  try {
    devices.set(id, await api("GET", "/v1/devices/" + encodeURIComponent(id)));
  } catch (err) {
    if (err instanceof ApiError && err.status === 404) devices.delete(id);
    else return;
  }
  render();
  refreshThumbs();
}

function onEvent(event) {
  const id = event.device_id;
  if (!id) return;
  const known = devices.get(id);
  switch (event.type) {
    case "device.deleted":
      devices.delete(id);
      render();
      return;
    case "device.health":
      if (known) {
        known.health = event.health || known.health;
        known.last_seen = event.at || known.last_seen;
        render();
      }
      return;
    case "device.online":
    case "device.offline":
      if (known) { // shown at once; the rest of the row follows
        known.status = event.type === "device.online" ? "online" : "offline";
        if (event.at) known.last_seen = event.at;
        render();
      }
      loadOne(id);
      return;
    default:
      loadOne(id);
  }
}

// -- thumbnails ----------------------------------------------------------------------------

const observer = new IntersectionObserver((entries) => {
  for (const entry of entries) {
    const id = entry.target.dataset.id;
    if (entry.isIntersecting) visible.add(id);
    else visible.delete(id);
  }
  refreshThumbs();
});

async function refreshThumb(id) {
  const device = devices.get(id);
  const row = rows.get(id);
  if (!device || !row) return;
  const state = thumbs.get(id) || { at: 0, busy: false };
  thumbs.set(id, state);
  state.busy = true;
  try {
    const screen = (device.screens && device.screens[0]) || {};
    const scale = Math.min(1, Math.max(0.05, THUMB_WIDTH / (screen.width || 1920)));
    const shot = await api("GET", `/v1/devices/${encodeURIComponent(id)}/screenshot?` +
      `scale=${scale.toFixed(3)}&quality=60`);
    const img = row.querySelector(".thumb img");
    if (shot && shot.image && devices.get(id)?.status === "online") {
      img.src = `data:image/${shot.format || "jpeg"};base64,${shot.image}`;
      img.alt = `screen of ${device.name}`;
      img.hidden = false;
      row.querySelector(".thumb .nothumb").hidden = true;
    }
  } catch {
    // A device busy or gone for a moment: the next round tries again.
  } finally {
    state.busy = false;
    state.at = Date.now();
  }
}

function refreshThumbs() {
  if (document.visibilityState !== "visible") return;
  const now = Date.now();
  let busy = [...thumbs.values()].filter((s) => s.busy).length;
  for (const id of visible) {
    if (busy >= THUMB_PARALLEL) break;
    const device = devices.get(id);
    if (!device || device.status !== "online" || !device.capabilities.includes("screen")) continue;
    const state = thumbs.get(id);
    if (state && (state.busy || now - state.at < THUMB_EVERY_MS)) continue;
    busy += 1;
    refreshThumb(id);
  }
}

// -- controls ------------------------------------------------------------------------------

function bindControls() {
  const search = document.getElementById("filter-search");
  const status = document.getElementById("filter-status");
  const tag = document.getElementById("filter-tag");
  search.value = view.search;
  status.value = view.status;
  search.addEventListener("input", () => { view.search = search.value; remember(); render(); });
  status.addEventListener("change", () => { view.status = status.value; remember(); render(); });
  tag.addEventListener("change", () => { view.tag = tag.value; remember(); render(); });
  for (const th of document.querySelectorAll("#devices th[data-sort]")) {
    th.querySelector("button").addEventListener("click", () => {
      if (view.sort === th.dataset.sort) view.descending = !view.descending;
      else { view.sort = th.dataset.sort; view.descending = false; }
      remember();
      render();
    });
  }
}

const STATES = { connecting: "connecting…", live: "live", reconnecting: "reconnecting…" };

async function main() {
  await shell("dashboard");
  bindControls();
  await loadAll();
  eventStream({
    onEvent,
    onState: (state) => {
      live.textContent = STATES[state] || state;
      live.dataset.state = state;
    },
    onResync: loadAll, // after a (re)connection, events may have been missed
  });
  setInterval(refreshThumbs, 1000); // local timer only: each device is asked every 5 s at most
  setInterval(() => { for (const [id, row] of rows) fillRow(row, devices.get(id)); }, 15000);
  document.addEventListener("visibilitychange", refreshThumbs);
}

main();
