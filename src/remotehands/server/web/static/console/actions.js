// The device's persistent actions socket, /v1/devices/{id}/ws: {"id", "action", "params"} out,
// {"id", "result"} or {"id", "error", "details"} back, in order. Reconnects with capped
// exponential backoff and full jitter; a call made while it is down fails at once (input typed
// into a dead link must not be replayed later).

import { wsUrl } from "/static/js/api.js";

/** A failed action: `code` is the server's error code (forbidden, device_offline, ...). */
export class ActionError extends Error {
  constructor(code, message) {
    super(message);
    this.name = "ActionError";
    this.code = code;
  }
}

export class Actions {
  /** `onState(open: boolean)` is told when the socket opens or drops. */
  constructor(deviceId, onState = () => {}) {
    this.path = "/v1/devices/" + encodeURIComponent(deviceId) + "/ws";
    this.onState = onState;
    this.ws = null;
    this.pending = new Map();
    this.nextId = 1;
    this.attempt = 0;
    this.closed = false;
    this.timer = null;
  }

  get open() {
    return this.ws !== null && this.ws.readyState === WebSocket.OPEN;
  }

  connect() {
    if (this.closed || this.ws) return;
    const ws = new WebSocket(wsUrl(this.path));
    this.ws = ws;
    ws.onopen = () => {
      this.attempt = 0;
      this.onState(true);
    };
    ws.onmessage = (event) => {
      let reply;
      try {
        reply = JSON.parse(event.data);
      } catch {
        return;
      }
      const waiter = this.pending.get(reply.id);
      if (!waiter) return;
      this.pending.delete(reply.id);
      if (reply.error) waiter.reject(new ActionError(reply.error, reply.details || reply.error));
      else waiter.resolve(reply.result);
    };
    ws.onclose = () => {
      this.ws = null;
      for (const waiter of this.pending.values()) {
        waiter.reject(new ActionError("unreachable", "the connection to the server dropped"));
      }
      this.pending.clear();
      this.onState(false);
      if (this.closed) return;
      // Capped exponential backoff with full jitter: many consoles do not come back at once.
      const cap = Math.min(10000, 250 * 2 ** this.attempt);
      this.attempt += 1;
      this.timer = setTimeout(() => this.connect(), Math.random() * cap);
    };
  }

  /** Run `action` with `params` on the device; answers its result or throws ActionError. */
  call(action, params = {}) {
    if (!this.open) {
      return Promise.reject(new ActionError("unreachable", "not connected to the server"));
    }
    const id = this.nextId++;
    return new Promise((resolve, reject) => {
      this.pending.set(id, { resolve, reject });
      this.ws.send(JSON.stringify({ id, action, params }));
    });
  }

  /** Send `action` without waiting for it (input): a failure is logged, not thrown. */
  fire(action, params = {}) {
    return this.call(action, params).catch((err) => {
      console.warn(action + ": " + err.message);
      return null;
    });
  }

  close() {
    this.closed = true;
    clearTimeout(this.timer);
    if (this.ws) this.ws.close();
  }
}
