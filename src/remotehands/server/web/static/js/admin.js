// Administration, by role: every user manages their own API tokens; admins and the owner also
// enroll devices (the install command, with a copy button), manage users and read the audit
// log. Sections a role cannot use are not shown (and the server refuses them anyway).

import { ApiError, ROLES, api, atLeast } from "./api.js";
import { when } from "./format.js";
import { el, shell } from "./shell.js";

const AUDIT_PAGE = 25;

function show(id, text) {
  const box = document.getElementById(id);
  box.textContent = text || "";
  box.hidden = !text;
}

function failure(id) {
  return (err) => show(id, err instanceof ApiError ? `${err.message} (${err.code})` : err.message);
}

function tagList(text) {
  return text.split(",").map((t) => t.trim()).filter(Boolean);
}

/** A button that acts on a second click (within 5 s), so nothing is deleted by a slip. */
function confirmingButton(label, confirmLabel, action) {
  const button = el("button", { type: "button", class: "danger", text: label });
  let armed = null;
  button.addEventListener("click", async () => {
    if (armed === null) {
      button.textContent = confirmLabel;
      armed = setTimeout(() => { armed = null; button.textContent = label; }, 5000);
      return;
    }
    clearTimeout(armed);
    armed = null;
    button.disabled = true;
    try {
      await action();
    } finally {
      button.disabled = false;
      button.textContent = label;
    }
  });
  return button;
}

/** Copy `text` to the clipboard; falls back to selecting `node` where the Clipboard API is
 * unavailable (plain HTTP to another host is not a secure context). */
async function copy(text, node, status) {
  try {
    await navigator.clipboard.writeText(text);
    status.textContent = "Copied.";
  } catch {
    const range = document.createRange();
    range.selectNodeContents(node);
    const selection = getSelection();
    selection.removeAllRanges();
    selection.addRange(range);
    status.textContent = "Selected: press Ctrl+C to copy.";
  }
}

function roleOptions(select, roles, chosen) {
  select.replaceChildren(...roles.map((r) => el("option", { value: r, text: r })));
  if (chosen) select.value = chosen;
}

// -- enrollment ----------------------------------------------------------------------------

function enrollment() {
  document.getElementById("enroll-section").hidden = false;
  const dialog = document.getElementById("enroll-dialog");
  const result = document.getElementById("enroll-result");
  document.getElementById("enroll-open").addEventListener("click", () => {
    result.hidden = true;
    show("enroll-error", "");
    dialog.showModal();
    document.getElementById("enroll-name").focus();
  });
  document.getElementById("enroll-close").addEventListener("click", () => dialog.close());
  document.getElementById("enroll-form").addEventListener("submit", async (event) => {
    event.preventDefault();
    show("enroll-error", "");
    const body = { suggested_tags: tagList(document.getElementById("enroll-tags").value) };
    const name = document.getElementById("enroll-name").value.trim();
    if (name) body.suggested_name = name;
    try {
      const created = await api("POST", "/v1/devices/enrollment", body);
      document.getElementById("enroll-command").textContent = created.install_cmd;
      document.getElementById("enroll-token").textContent = created.token;
      document.getElementById("enroll-expires").textContent = when(created.expires_at);
      document.getElementById("enroll-copied").textContent = "";
      result.hidden = false;
      document.getElementById("enroll-copy").focus();
    } catch (err) {
      failure("enroll-error")(err);
    }
  });
  document.getElementById("enroll-copy").addEventListener("click", () => {
    const command = document.getElementById("enroll-command");
    copy(command.textContent, command, document.getElementById("enroll-copied"));
  });
}

// -- users ---------------------------------------------------------------------------------

async function users(me) {
  document.getElementById("users-section").hidden = false;
  const grantable = ROLES.filter((r) => r !== "owner" && ROLES.indexOf(r) < ROLES.indexOf(me.role));
  roleOptions(document.getElementById("user-role"), grantable, "viewer");
  const body = document.querySelector("#users tbody");

  async function load() {
    try {
      const { users: listed } = await api("GET", "/v1/users");
      body.replaceChildren(...listed.map(row));
      show("users-error", "");
    } catch (err) {
      failure("users-error")(err);
    }
  }

  function row(user) {
    const manageable = user.id !== me.user_id && ROLES.indexOf(user.role) < ROLES.indexOf(me.role);
    const roleCell = el("td", { class: "role" });
    const actions = el("td", { class: "actions" });
    if (manageable) {
      const select = el("select", { "aria-label": `role of ${user.username}` });
      roleOptions(select, grantable, user.role);
      select.addEventListener("change", async () => {
        try {
          await api("PATCH", `/v1/users/${encodeURIComponent(user.id)}`, { role: select.value });
          await load();
        } catch (err) {
          failure("users-error")(err);
          select.value = user.role;
        }
      });
      roleCell.append(select);
      const toggle = el("button", { type: "button", text: user.disabled ? "Enable" : "Disable" });
      toggle.addEventListener("click", async () => {
        try {
          await api("PATCH", `/v1/users/${encodeURIComponent(user.id)}`, { disabled: !user.disabled });
          await load();
        } catch (err) {
          failure("users-error")(err);
        }
      });
      actions.append(toggle, " ", confirmingButton("Delete", `Delete ${user.username}?`, async () => {
        try {
          await api("DELETE", `/v1/users/${encodeURIComponent(user.id)}`);
          await load();
        } catch (err) {
          failure("users-error")(err);
        }
      }));
    } else {
      roleCell.textContent = user.role;
    }
    return el("tr", { "data-username": user.username },
      el("td", { text: user.username }), roleCell,
      el("td", { text: user.disabled ? "disabled" : "active" }),
      el("td", { text: when(user.created_at) }), actions);
  }

  document.getElementById("user-form").addEventListener("submit", async (event) => {
    event.preventDefault();
    const name = document.getElementById("user-name");
    const password = document.getElementById("user-password");
    try {
      await api("POST", "/v1/users", {
        username: name.value.trim(), password: password.value,
        role: document.getElementById("user-role").value,
      });
      name.value = "";
      password.value = "";
      show("users-error", "");
      await load();
    } catch (err) {
      failure("users-error")(err);
    }
  });
  await load();
}

// -- API tokens ----------------------------------------------------------------------------

async function tokens(me) {
  const allowed = ROLES.filter((r) => ROLES.indexOf(r) <= ROLES.indexOf(me.role));
  roleOptions(document.getElementById("token-role"), allowed, me.role);
  const body = document.querySelector("#tokens tbody");

  async function load() {
    try {
      const { tokens: listed } = await api("GET", "/v1/tokens");
      body.replaceChildren(...listed.map(row));
      if (!listed.length) {
        body.append(el("tr", {}, el("td", { colspan: "8", class: "muted", text: "No API tokens." })));
      }
      show("tokens-error", "");
    } catch (err) {
      failure("tokens-error")(err);
    }
  }

  function row(token) {
    const limits = [];
    if (token.read_only) limits.push("read-only");
    if (token.tags) limits.push("tags: " + token.tags.join(", "));
    const mine = token.user_id === me.user_id;
    const actions = el("td", { class: "actions" });
    if (mine || atLeast(me.role, "admin")) {
      actions.append(confirmingButton("Revoke", `Revoke ${token.name}?`, async () => {
        try {
          await api("DELETE", `/v1/tokens/${encodeURIComponent(token.id)}`);
          await load();
        } catch (err) {
          failure("tokens-error")(err);
        }
      }));
    }
    return el("tr", { "data-token": token.id },
      el("td", {}, el("span", { text: token.name }), " ", el("code", { class: "muted", text: token.prefix + "…" })),
      el("td", { text: token.username }), el("td", { text: token.role }),
      el("td", { text: limits.join("; ") || "none" }),
      el("td", { text: when(token.created_at) }), el("td", { text: when(token.last_used_at) || "never" }),
      el("td", { text: when(token.expires_at) || "never" }), actions);
  }

  document.getElementById("token-form").addEventListener("submit", async (event) => {
    event.preventDefault();
    const name = document.getElementById("token-name");
    const tags = tagList(document.getElementById("token-tags").value);
    const request = {
      name: name.value.trim(),
      role: document.getElementById("token-role").value,
      read_only: document.getElementById("token-readonly").checked,
    };
    if (tags.length) request.tags = tags;
    try {
      const created = await api("POST", "/v1/tokens", request);
      document.getElementById("token-secret-value").textContent = created.token;
      document.getElementById("token-secret").hidden = false;
      document.getElementById("token-secret-copy").focus();
      name.value = "";
      show("tokens-error", "");
      await load();
    } catch (err) {
      failure("tokens-error")(err);
    }
  });
  document.getElementById("token-secret-copy").addEventListener("click", (event) => {
    const value = document.getElementById("token-secret-value");
    copy(value.textContent, value, event.target);
  });
  document.getElementById("token-secret-done").addEventListener("click", () => {
    document.getElementById("token-secret-value").textContent = "";
    document.getElementById("token-secret").hidden = true;
  });
  await load();
}

// -- audit log -----------------------------------------------------------------------------

/** Microseconds since the epoch of an ISO 8601 time (the server's have microseconds). */
function micros(iso) {
  const match = /^(.*T\d\d:\d\d:\d\d)(?:\.(\d+))?(.*)$/.exec(iso);
  if (!match) return Date.parse(iso) * 1000;
  const zone = match[3] || "Z";
  const fraction = (match[2] || "").padEnd(6, "0").slice(0, 6);
  return Date.parse(match[1] + zone) * 1000 + Number(fraction);
}

/** Whether audit entry `entry` sorts after `cursor` (newest first: older time, or same time
 * and smaller id). */
function older(entry, cursor) {
  const a = micros(entry.at), b = micros(cursor.at);
  return a < b || (a === b && entry.id < cursor.id);
}

async function audit() {
  document.getElementById("audit-section").hidden = false;
  const body = document.querySelector("#audit tbody");
  const newerButton = document.getElementById("audit-newer");
  const olderButton = document.getElementById("audit-older");
  const names = new Map();
  // Pages are cut after the oldest entry shown (its time and id), not at a time alone, so
  // that entries sharing a timestamp are neither lost nor shown twice.
  const pages = []; // the cursor of each page shown before this one
  let cursor = null;
  let last = null;

  let asked = 0; // the latest load: an older answer arriving after it is dropped

  function filters() {
    const query = new URLSearchParams();
    const value = (id) => document.getElementById(id).value.trim();
    if (value("audit-actor")) query.set("actor", value("audit-actor"));
    if (value("audit-device")) query.set("device_id", value("audit-device"));
    if (value("audit-action")) query.set("action", value("audit-action"));
    const since = value("audit-since");
    if (since) query.set("since", new Date(since).toISOString());
    const to = value("audit-until");
    if (to) query.set("until", new Date(to).toISOString());
    return query;
  }

  async function load() {
    const query = filters();
    let extra = 0;
    if (cursor) {
      // Up to the cursor's millisecond (inclusive); what sorts before the cursor is dropped.
      const to = new Date(Math.floor(micros(cursor.at) / 1000) + 1).toISOString();
      const asked = query.get("until");
      if (!asked || Date.parse(asked) > Date.parse(to)) query.set("until", to);
      extra = AUDIT_PAGE;
    }
    query.set("limit", String(AUDIT_PAGE + 1 + extra));
    const mine = ++asked;
    try {
      let { entries } = await api("GET", "/v1/audit?" + query);
      if (mine !== asked) return; // a newer load (a filter, a page) was asked meanwhile
      if (cursor) entries = entries.filter((e) => older(e, cursor));
      const shown = entries.slice(0, AUDIT_PAGE);
      body.replaceChildren(...shown.map((entry) => el("tr", {},
        el("td", { class: "when", text: when(entry.at) }),
        el("td", { text: entry.actor }),
        el("td", { text: entry.action }),
        el("td", { text: entry.device_id ? names.get(entry.device_id) || entry.device_id : "" }),
        el("td", { class: entry.result === "ok" ? "result-ok" : "result-bad", text: entry.result }),
        el("td", { class: "details", text: entry.details || "" }))));
      if (!shown.length) {
        body.append(el("tr", {}, el("td", { colspan: "6", class: "muted", text: "No entries." })));
      }
      last = shown.length ? shown[shown.length - 1] : null;
      olderButton.disabled = entries.length <= AUDIT_PAGE;
      newerButton.disabled = pages.length === 0;
      document.getElementById("audit-page").textContent = `page ${pages.length + 1}`;
      show("audit-error", "");
    } catch (err) {
      if (mine === asked) failure("audit-error")(err);
    }
  }

  // The controls work from the first moment the section shows, before the device names come.
  document.getElementById("audit-form").addEventListener("submit", (event) => {
    event.preventDefault();
    pages.length = 0;
    cursor = null;
    load();
  });
  olderButton.addEventListener("click", () => {
    if (!last) return;
    pages.push(cursor);
    cursor = { at: last.at, id: last.id };
    load();
  });
  newerButton.addEventListener("click", () => {
    cursor = pages.pop() ?? null;
    load();
  });
  try {
    const { devices } = await api("GET", "/v1/devices");
    const select = document.getElementById("audit-device");
    for (const device of devices) {
      names.set(device.id, device.name);
      select.append(el("option", { value: device.id, text: device.name }));
    }
  } catch (err) {
    failure("audit-error")(err);
  }
  if (asked === 0) await load(); // unless the user filtered already
}

async function main() {
  const me = await shell("admin");
  const admin = atLeast(me.role, "admin");
  if (admin) enrollment();
  await Promise.all([tokens(me), admin ? users(me) : null, admin ? audit() : null]);
}

main().catch((err) => show("message", err.message));
