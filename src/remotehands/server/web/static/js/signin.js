// The sign-in page: POST /v1/auth/web/signin (the session goes into cookies), then back to the
// page the user came from (?next=, same-origin paths only).

import { ApiError, api } from "./api.js";

/** Where to go after signing in: `next` when it is a path on this server, else "/". */
export function safeNext(value) {
  if (!value || !value.startsWith("/") || value.startsWith("//") || value.startsWith("/\\")) {
    return "/";
  }
  try {
    const url = new URL(value, location.origin);
    if (url.origin !== location.origin) return "/";
    if (url.pathname === "/signin") return "/";
    return url.pathname + url.search + url.hash;
  } catch {
    return "/";
  }
}

function show(text) {
  const box = document.getElementById("message");
  box.textContent = text;
  box.hidden = !text;
}

function explain(err) {
  if (!(err instanceof ApiError)) return "Sign-in failed: " + err.message;
  if (err.status === 429) {
    const wait = err.retryAfter ? ` Try again in ${err.retryAfter} s.` : " Try again later.";
    return "Too many failed sign-ins." + wait;
  }
  if (err.status === 401 && /second factor|totp/i.test(err.message)) {
    document.getElementById("totp-row").hidden = false;
    document.getElementById("totp").focus();
    return "Enter the code of your authenticator app (or a recovery code).";
  }
  if (err.status === 401) return "Wrong username or password.";
  if (err.status === 422) return "Enter a username and a password.";
  return err.message;
}

async function submit(event) {
  event.preventDefault();
  const form = event.target;
  const button = document.getElementById("submit");
  const body = {
    username: form.username.value.trim(),
    password: form.password.value,
  };
  const code = form.totp.value.trim();
  if (code) body.totp = code;
  if (!body.username || !body.password) {
    show("Enter a username and a password.");
    return;
  }
  button.disabled = true;
  show("");
  try {
    await api("POST", "/v1/auth/web/signin", body, { noRedirect: true });
    location.assign(safeNext(new URLSearchParams(location.search).get("next")));
  } catch (err) {
    show(explain(err));
    form.password.select();
    button.disabled = false;
  }
}

document.getElementById("signin").addEventListener("submit", submit);
document.getElementById("submit").disabled = false;
