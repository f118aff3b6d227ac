// The device's screen on a <canvas>, from /v1/devices/{id}/screen/ws?codec=...
//
// Each binary message is a 14-byte header (server/http/screen_stream.py documents it: kind,
// flags, x, y, screen width, screen height, seq) and the encoded bytes. H.264 goes through
// WebCodecs' VideoDecoder where VideoDecoder.isConfigSupported says it can; otherwise JPEG
// rectangles are drawn with createImageBitmap at their x, y. The canvas has the device's own
// size (so coordinates and screenshots are the device's); CSS scales it to the page. While the
// whole screen moves the agent sends H.264 pictures at half size (at full size again once the
// screen settles): the canvas then takes the picture's size, shown as big as the device's own
// (ScreenView.width/height keep the device's size, for input coordinates and screenshots).
//
// Frames come only while the page is visible (the socket is closed while it is hidden); a
// lost socket reconnects with capped exponential backoff and full jitter; a decoder error
// asks the server for a key frame, and repeated errors fall back to JPEG by themselves.

import { wsUrl } from "/static/js/api.js";

const KIND_JPEG = 0;
const KIND_RECT = 1;
const KIND_H264 = 2;
const HEADER = 14;
const PROBE = { codec: "avc1.42E028", optimizeForLatency: true };
const FIRST_FRAME_MS = 6000; // a watch's first frame comes at once; none by then: an older agent
const SIMPLER = { h264: "jpeg-rect", "jpeg-rect": "jpeg" };
const BACKLOG = 8; // frames waiting to be decoded past which the view skips to a key frame

/** Whether this browser decodes our H.264 (constrained baseline) through WebCodecs. */
export async function h264Supported() {
  if (typeof VideoDecoder === "undefined") return false;
  try {
    const answer = await VideoDecoder.isConfigSupported(PROBE);
    return Boolean(answer.supported);
  } catch {
    return false;
  }
}

/** The codec string of an Annex B access unit's SPS ("avc1.PPCCLL"), or null. */
function codecOfSps(data) {
  for (let i = 0; i + 7 < data.length; i++) {
    const three = data[i] === 0 && data[i + 1] === 0 && data[i + 2] === 1;
    if (three && (data[i + 3] & 0x1f) === 7) {
      const hex = (b) => b.toString(16).padStart(2, "0");
      return "avc1." + hex(data[i + 4]) + hex(data[i + 5]) + hex(data[i + 6]);
    }
  }
  return null;
}

/** Whether a decoder configured for `configured` decodes `codec` too: the same profile and
 * constraints, at a level no higher. The agent encodes at half size while the whole screen moves
 * (a lower level) and at full size again once it settles; a key frame of either size carries its
 * SPS, and the decoder takes the new size from it, so no new decoder (and no lost frame) is
 * needed for the switch. */
function covers(configured, codec) {
  if (configured === null) return false;
  if (configured === codec) return true;
  const level = (c) => parseInt(c.slice(9, 11), 16);
  return configured.slice(0, 9) === codec.slice(0, 9) && level(codec) <= level(configured);
}

export class ScreenView {
  /**
   * `onState(state, detail)`: "connecting", "live", "offline" (detail: the reason) or "ended".
   * `codec`: "h264", "jpeg-rect" or "jpeg"; null chooses (H.264 where it decodes).
   */
  constructor(canvas, deviceId, { codec = null, onState = () => {}, onClose = null } = {}) {
    this.canvas = canvas;
    this.context = canvas.getContext("2d", { alpha: false });
    this.deviceId = deviceId;
    this.forced = codec;
    this.codec = codec;
    this.onState = onState;
    this.onClose = onClose;
    this.ws = null;
    this.attempt = 0;
    this.timer = null;
    this.stopped = false;
    this.decoder = null;
    this.decoderCodec = null;
    this.decoderErrors = 0;
    this.waitingKey = true;
    this.drawing = Promise.resolve();
    this.pending = 0;
    this.width = 0;
    this.height = 0;
    // Figures for tests and the benchmark (window.__console.screen).
    this.stats = { frames: 0, painted: 0, bytes: 0, keyframes: 0, lastPaint: 0, codec: null,
                   errors: 0, pictureWidth: 0, pictureHeight: 0 };
    this.onVisibility = () => this.visibilityChanged();
    document.addEventListener("visibilitychange", this.onVisibility);
    this.onResize = () => this.pinDisplaySize();
    window.addEventListener("resize", this.onResize);
  }

  async start() {
    if (this.codec === null) this.codec = (await h264Supported()) ? "h264" : "jpeg-rect";
    this.stats.codec = this.codec;
    this.connect();
  }

  visibilityChanged() {
    if (document.hidden) {
      clearTimeout(this.timer);
      this.closeSocket();
    } else if (!this.stopped && this.ws === null) {
      this.attempt = 0;
      this.connect();
    }
  }

  connect() {
    if (this.stopped || this.ws || document.hidden) return;
    this.onState("connecting");
    const query = "?codec=" + encodeURIComponent(this.codec) + "&rate=30";
    const ws = new WebSocket(
      wsUrl("/v1/devices/" + encodeURIComponent(this.deviceId) + "/screen/ws" + query));
    ws.binaryType = "arraybuffer";
    this.ws = ws;
    this.waitingKey = true;
    let first = true;
    // An agent that does not know the codec sends nothing: step down to a simpler one.
    const silent = setTimeout(() => {
      if (first && this.ws === ws && ws.readyState === WebSocket.OPEN && this.forced === null &&
          SIMPLER[this.codec]) {
        console.warn(`no ${this.codec} frame from the device: trying ${SIMPLER[this.codec]}`);
        this.codec = this.stats.codec = SIMPLER[this.codec];
        this.closeSocket();
        this.connect();
      }
    }, FIRST_FRAME_MS);
    ws.onmessage = (event) => {
      if (typeof event.data === "string") return;
      if (first) {
        clearTimeout(silent);
        first = false;
        this.attempt = 0;
        this.onState("live");
      }
      this.frame(event.data);
    };
    ws.onclose = (event) => {
      clearTimeout(silent);
      if (this.ws === ws) this.ws = null;
      if (this.stopped || document.hidden) return;
      if (this.onClose) this.onClose(event);
      // Capped exponential backoff with full jitter (offline devices are tried less often).
      const cap = Math.min(8000, 300 * 2 ** this.attempt);
      this.attempt += 1;
      this.timer = setTimeout(() => this.connect(), 100 + Math.random() * cap);
    };
  }

  closeSocket() {
    if (this.ws) {
      const ws = this.ws;
      this.ws = null;
      ws.onclose = null;
      ws.close();
    }
  }

  stop() {
    this.stopped = true;
    clearTimeout(this.timer);
    document.removeEventListener("visibilitychange", this.onVisibility);
    window.removeEventListener("resize", this.onResize);
    this.closeSocket();
    if (this.decoder && this.decoder.state !== "closed") this.decoder.close();
  }

  requestKey() {
    this.waitingKey = true;
    if (this.ws && this.ws.readyState === WebSocket.OPEN) this.ws.send("keyframe");
  }

  /** The device's screen is `width` x `height` (every frame's header says so). */
  resize(width, height) {
    this.width = width;
    this.height = height;
  }

  /** The canvas's bitmap is `width` x `height`: the device's size for JPEG, the decoded
   * picture's for H.264 (half the device's while the whole screen moves: drawing it unscaled
   * costs a third of drawing it scaled up, and CSS scales it anyway). A smaller bitmap is shown
   * at the size the device's own would be, so the view does not jump. */
  fitCanvas(width, height) {
    const canvas = this.canvas;
    if (canvas.width !== width || canvas.height !== height) {
      canvas.width = width;
      canvas.height = height;
      this.pinDisplaySize();
    }
  }

  pinDisplaySize() {
    const canvas = this.canvas;
    const stage = canvas.parentElement;
    if (!stage || !this.width || (canvas.width === this.width && canvas.height === this.height)) {
      canvas.style.width = canvas.style.height = "";
      return;
    }
    // What max-width/max-height: 100% make of the device's size (no bigger than it).
    const scale = Math.min(1, stage.clientWidth / this.width, stage.clientHeight / this.height);
    canvas.style.width = Math.floor(this.width * scale) + "px";
    canvas.style.height = Math.floor(this.height * scale) + "px";
  }

  frame(buffer) {
    if (buffer.byteLength < HEADER) return;
    const view = new DataView(buffer);
    const kind = view.getUint8(0);
    const key = (view.getUint8(1) & 1) === 1;
    const x = view.getUint16(2);
    const y = view.getUint16(4);
    const width = view.getUint16(6);
    const height = view.getUint16(8);
    const seq = view.getUint32(10);
    const data = new Uint8Array(buffer, HEADER);
    this.stats.frames += 1;
    this.stats.bytes += buffer.byteLength;
    if (key) this.stats.keyframes += 1;
    if (this.waitingKey && !key) return;
    if (key) this.waitingKey = false;
    if (kind === KIND_H264) this.decodeH264(data, key, seq, width, height);
    else if (kind === KIND_JPEG || kind === KIND_RECT) this.drawJpeg(data, x, y, width, height, key);
  }

  drawJpeg(data, x, y, width, height, key) {
    if (this.pending >= BACKLOG && !key) {
      // This browser decodes slower than frames come: drop the backlog and start again from
      // a whole frame, rather than show the screen later and later.
      this.stats.skipped = (this.stats.skipped || 0) + 1;
      this.requestKey();
      return;
    }
    this.pending += 1;
    const blob = new Blob([data], { type: "image/jpeg" });
    const decoding = createImageBitmap(blob);
    // Rectangles are drawn in the order they came, whatever order they decode in.
    this.drawing = this.drawing.then(async () => {
      let bitmap;
      try {
        bitmap = await decoding;
      } catch {
        this.stats.errors += 1;
        this.requestKey();
        return;
      } finally {
        this.pending -= 1;
      }
      this.resize(width, height);
      this.fitCanvas(width, height);
      this.context.drawImage(bitmap, x, y);
      bitmap.close();
      this.painted();
    });
  }

  painted() {
    this.stats.painted += 1;
    this.stats.lastPaint = performance.now();
  }

  decodeH264(data, key, seq, width, height) {
    if (key) {
      const codec = codecOfSps(data) || PROBE.codec;
      if (!this.decoder || this.decoder.state === "closed" || !covers(this.decoderCodec, codec)) {
        this.newDecoder(codec);
      }
    }
    if (!this.decoder || this.decoder.state !== "configured") return;
    if (!key && this.decoder.decodeQueueSize >= BACKLOG) {
      this.stats.skipped = (this.stats.skipped || 0) + 1;
      this.decoder.reset(); // the frames queued are stale: start again from a key frame
      this.decoder.configure({ codec: this.decoderCodec, optimizeForLatency: true });
      this.requestKey();
      return;
    }
    this.resize(width, height);
    try {
      this.decoder.decode(new EncodedVideoChunk({
        type: key ? "key" : "delta", timestamp: seq * 1000, data,
      }));
    } catch (err) {
      this.decoderFailed(err);
    }
  }

  newDecoder(codec) {
    if (this.decoder && this.decoder.state !== "closed") this.decoder.close();
    const decoder = new VideoDecoder({
      output: (frame) => {
        // The picture's own size: half the screen's while the whole screen moves.
        this.stats.pictureWidth = frame.displayWidth;
        this.stats.pictureHeight = frame.displayHeight;
        this.fitCanvas(frame.displayWidth, frame.displayHeight);
        this.context.drawImage(frame, 0, 0);
        frame.close();
        this.painted();
      },
      error: (err) => {
        if (this.decoder === decoder) this.decoderFailed(err);
      },
    });
    decoder.configure({ codec, optimizeForLatency: true });
    this.decoder = decoder;
    this.decoderCodec = codec;
  }

  decoderFailed(err) {
    this.stats.errors += 1;
    this.decoderErrors += 1;
    console.warn("the video decoder failed: " + (err && err.message));
    if (this.decoder && this.decoder.state !== "closed") this.decoder.close();
    this.decoder = null;
    if (this.decoderErrors >= 3 && this.forced === null && this.codec === "h264") {
      // H.264 keeps failing here: JPEG rectangles work everywhere.
      this.codec = this.stats.codec = "jpeg-rect";
      this.closeSocket();
      this.connect();
      return;
    }
    this.requestKey();
  }
}
