// The web console's one way to the server's API, shared by every page (keep these exports
// stable: the console page imports them too).
//
//   api(method, path, body?)  -> the parsed JSON answer (null for 204). Adds X-CSRF-Token (from
//                                the rh_csrf cookie) to state-changing requests; on 401 sends the
//                                browser to /signin?next=<this page>; otherwise throws an ApiError
//                                carrying the server's error code and message.
//   wsUrl(path)               -> ws:// or wss:// URL of `path` on this host.
//   me()                      -> GET /v1/auth/me, asked once per page.
//   signInUrl()               -> /signin?next=<this page>.
//   csrfToken()               -> the rh_csrf cookie's value ("" when signed out).

const SAFE = new Set(["GET", "HEAD", "OPTIONS"]);

/** An error answered by the server: `code` is its stable error code (e.g. "not_found"),
 * `status` the HTTP status, `message` what went wrong and what to do. */
export class ApiError extends Error {
  constructor(status, code, message, retryAfter) {
    super(message);
    this.name = "ApiError";
    this.status = status;
    this.code = code;
    this.retryAfter = retryAfter;
  }
}

/** The value of cookie `name`, or "". */
export function cookie(name) {
  for (const part of document.cookie.split(";")) {
    const [key, ...rest] = part.trim().split("=");
    if (key === name) return decodeURIComponent(rest.join("="));
  }
  return "";
}

/** The CSRF value of this browser's session. */
export function csrfToken() {
  return cookie("rh_csrf");
}

/** The sign-in page, returning to the current page afterwards. */
export function signInUrl() {
  const here = location.pathname + location.search + location.hash;
  return "/signin?next=" + encodeURIComponent(here);
}

let leaving = false;

/** Send the browser to the sign-in page (once), keeping the current page as next=. */
export function toSignIn() {
  if (!leaving) {
    leaving = true;
    location.assign(signInUrl());
  }
}

/** Call the API; see the module's comment. `body` is sent as JSON unless it is a Blob,
 * ArrayBuffer or FormData, sent as is. `options.signal` aborts; `options.noRedirect` keeps a
 * 401 from leaving the page (it throws instead). */
export async function api(method, path, body, options = {}) {
  method = method.toUpperCase();
  const headers = { Accept: "application/json" };
  if (!SAFE.has(method)) headers["X-CSRF-Token"] = csrfToken();
  let payload;
  if (body !== undefined && body !== null) {
    if (body instanceof Blob || body instanceof ArrayBuffer || body instanceof FormData) {
      payload = body;
    } else {
      headers["Content-Type"] = "application/json";
      payload = JSON.stringify(body);
    }
  }
  let response;
  try {
    response = await fetch(path, {
      method, headers, body: payload, credentials: "same-origin", signal: options.signal,
    });
  } catch (err) {
    if (err.name === "AbortError") throw err;
    throw new ApiError(0, "unreachable", "the server cannot be reached: " + err.message);
  }
  if (response.status === 401 && !options.noRedirect) {
    toSignIn();
  }
  if (response.status === 204) return null;
  const type = response.headers.get("content-type") || "";
  const data = type.includes("json") ? await response.json().catch(() => null) : null;
  if (!response.ok) {
    const code = (data && data.error) || "http_" + response.status;
    let message = (data && data.details) || response.statusText || "request failed";
    if (Array.isArray(message)) message = message.map((d) => d.msg || String(d)).join("; ");
    throw new ApiError(response.status, code, message, response.headers.get("retry-after"));
  }
  return data;
}

/** The ws:// or wss:// URL of `path` on this page's host. */
export function wsUrl(path) {
  const scheme = location.protocol === "https:" ? "wss:" : "ws:";
  return scheme + "//" + location.host + path;
}

let mePromise = null;

/** Who is signed in (GET /v1/auth/me), asked once per page. */
export function me() {
  if (mePromise === null) {
    mePromise = api("GET", "/v1/auth/me").catch((err) => {
      mePromise = null;
      throw err;
    });
  }
  return mePromise;
}

/** Sign out (ends the session, clears the cookies) and go to the sign-in page. */
export async function signOut() {
  leaving = true; // requests still under way get 401 now: they must not send us to next=
  try {
    await api("POST", "/v1/auth/logout", undefined, { noRedirect: true });
  } finally {
    location.assign("/signin");
  }
}

/** The roles, lowest first, and whether `role` is at least `needed`. */
export const ROLES = ["viewer", "operator", "admin", "owner"];
export function atLeast(role, needed) {
  return ROLES.indexOf(role) >= ROLES.indexOf(needed);
}
