// The fleet event stream (/v1/events, a WebSocket signed in by the session cookie), kept open:
// a lost connection is retried with exponential backoff (0.5 s doubling up to 15 s, jittered),
// and each retry first checks the session, so an expired one goes to the sign-in page
// (keeping this page as next=). `onEvent(event)` gets each event; `onState(state)` gets
// "connecting", "live" or "reconnecting"; `onResync()` runs after every (re)connection, when
// events may have been missed.

import { api, wsUrl } from "./api.js";

export const BACKOFF_START_MS = 500;
export const BACKOFF_CAP_MS = 15000;

export function eventStream({ onEvent, onState = () => {}, onResync = () => {}, types = null }) {
  let socket = null;
  let delay = BACKOFF_START_MS;
  let timer = null;
  let stopped = false;

  async function connect() {
    timer = null;
    if (stopped) return;
    onState(delay === BACKOFF_START_MS ? "connecting" : "reconnecting");
    try {
      // Refused WebSocket handshakes say nothing to the page: ask the API whether the
      // session still stands (a 401 sends the browser to the sign-in page).
      await api("GET", "/v1/auth/me");
    } catch (err) {
      if (err.status === 401) return;
      retry();
      return;
    }
    const path = "/v1/events" + (types ? "?types=" + encodeURIComponent(types.join(",")) : "");
    socket = new WebSocket(wsUrl(path));
    socket.addEventListener("open", () => {
      delay = BACKOFF_START_MS;
      onState("live");
      onResync();
    });
    socket.addEventListener("message", (message) => {
      let event;
      try {
        event = JSON.parse(message.data);
      } catch {
        return;
      }
      onEvent(event);
    });
    socket.addEventListener("close", () => {
      socket = null;
      if (!stopped) retry();
    });
  }

  function retry() {
    onState("reconnecting");
    const wait = delay * (0.75 + Math.random() * 0.5);
    delay = Math.min(delay * 2, BACKOFF_CAP_MS);
    timer = setTimeout(connect, wait);
  }

  connect();
  return {
    close() {
      stopped = true;
      if (timer !== null) clearTimeout(timer);
      if (socket !== null) socket.close();
    },
  };
}
