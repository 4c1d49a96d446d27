// live.js — one live-room WebSocket that reconnects and resumes by itself.
//
// The protocol in five lines (docs/PROTOCOL.md has the rest):
//   1. Connect with the subprotocol "gifting.v1.json"; every frame is a JSON object.
//   2. The first frame is `welcome`: keep its `epoch` and `offset` (on a resume, the offset
//      you resumed from).
//   3. Each `batch` brings new events and a new `offset`: keep it.
//   4. When the connection drops, reconnect with ?since=<offset>&epoch=<epoch>: the server
//      replays exactly the events you missed, in as many batches as it takes, or sends
//      `resync` and a fresh `welcome`.
//   5. Some close codes mean "don't come back" (the live ended, a bad token, no such room).

export const SUBPROTOCOL = "gifting.v1.json";

/** Close codes after which a viewer stops reconnecting (PROTOCOL.md, "Close codes"). */
export const VIEWER_FINAL_CODES = new Set([1000, 4401, 4403, 4404, 4410]);

/**
 * Connection states reported to `onState`:
 *   "connecting"   — opening a socket, waiting for `welcome`
 *   "open"         — welcomed; frames flow
 *   "reconnecting" — dropped; the next attempt is scheduled (`detail.inMs`)
 *   "closed"       — stopped for good (`detail.code`: the close code, if any)
 */
/** The window in a 1012 close's reason ("…; reconnect within <ms> ms"), else 0. */
export function restartWindowMs(reason) {
  const match = /reconnect within (\d+) ms/.exec(reason ?? "");
  return match ? Number(match[1]) : 0;
}

export class RoomConnection {
  /**
   * @param {object} options
   * @param {string} options.url        ws(s):// URL of the socket, without since/epoch
   * @param {string[]} [options.protocols]  extra subprotocol entries (e.g. "bearer.<jwt>")
   * @param {(frame: object) => void} options.onFrame  every frame from the server
   * @param {(state: string, detail: object) => void} [options.onState]
   * @param {(code: number) => boolean} [options.isFinal]  stop reconnecting after this close?
   * @param {number} [options.minDelayMs]  first reconnect delay (doubles each failure)
   * @param {number} [options.maxDelayMs]  cap of the reconnect delay
   */
  constructor({ url, protocols = [], onFrame, onState = () => {}, isFinal = (code) => VIEWER_FINAL_CODES.has(code), minDelayMs = 500, maxDelayMs = 10_000 }) {
    Object.assign(this, { url, protocols, onFrame, onState, isFinal, minDelayMs, maxDelayMs });
    this.epoch = null; // identity of the room's event log, from `welcome`
    this.offset = null; // position of the last frame we processed
    this.socket = null;
    this.welcomed = false; // true once this socket's `welcome` arrived
    this.attempt = 0;
    this.timer = null;
    this.stopped = false;
  }

  start() {
    this.stopped = false;
    this.#connect();
    return this;
  }

  /** Close for good (leaving the room). */
  stop() {
    this.stopped = true;
    clearTimeout(this.timer);
    this.socket?.close(1000);
    this.socket = null;
    this.onState("closed", { code: 1000 });
  }

  /** Forget the resume position: the next connection starts from a fresh snapshot. */
  forgetPosition() {
    this.epoch = this.offset = null;
  }

  get isOpen() {
    return this.socket?.readyState === WebSocket.OPEN && this.welcomed;
  }

  /** Send a client frame; false when not connected (the caller keeps it to resend). */
  send(frame) {
    if (!this.isOpen) return false;
    this.socket.send(JSON.stringify(frame));
    return true;
  }

  #connect() {
    let url = this.url;
    if (this.offset && this.epoch) {
      const sep = url.includes("?") ? "&" : "?";
      url += `${sep}since=${encodeURIComponent(this.offset)}&epoch=${encodeURIComponent(this.epoch)}`;
    }
    this.welcomed = false;
    this.onState("connecting", { attempt: this.attempt });
    // The JSON subprotocol comes first: the server picks the first gifting.v1.* entry.
    const socket = new WebSocket(url, [SUBPROTOCOL, ...this.protocols]);
    this.socket = socket;
    socket.onmessage = (message) => {
      if (socket !== this.socket) return;
      const frame = JSON.parse(message.data);
      if (frame.type === "welcome") {
        this.epoch = frame.epoch;
        this.offset = frame.offset;
        this.welcomed = true;
        this.attempt = 0; // a good connection resets the backoff
        this.onState("open", { resumed: frame.resumed });
      } else if (frame.type === "batch") {
        this.offset = frame.offset;
      }
      this.onFrame(frame);
    };
    // A failed handshake fires `error` then `close` (code 1006); `close` handles both.
    socket.onclose = (event) => {
      if (socket !== this.socket || this.stopped) return;
      this.socket = null;
      if (this.isFinal(event.code)) {
        this.stopped = true;
        this.onState("closed", { code: event.code, reason: event.reason });
        return;
      }
      this.#scheduleReconnect(event.code, event.reason);
    };
  }

  #scheduleReconnect(code, reason = "") {
    // Exponential backoff with jitter between half and all of the delay, so that a thousand
    // clients dropped by one server restart don't all come back in the same tick. There is
    // no handshake timeout on top: under a restart's storm a socket waits in the server's
    // queue, and one given up after 10 s left the queue full of abandoned connections (in a
    // benchmark, 2,301 of 10,000 viewers back after 4 minutes, against all within 2).
    const ceiling = Math.min(this.maxDelayMs, this.minDelayMs * 2 ** this.attempt);
    // A restarting server (1012) says over how long its clients should spread their return:
    // its connections at the rate it serves them. Coming back all at once overflows its
    // listen queue, and a dropped connection waits out TCP's retransmission timers.
    const withinMs = code === 1012 ? restartWindowMs(reason) : 0;
    const inMs = Math.round(ceiling / 2 + Math.random() * (ceiling / 2) + Math.random() * withinMs);
    this.attempt += 1;
    this.onState("reconnecting", { code, inMs, withinMs, attempt: this.attempt });
    this.timer = setTimeout(() => this.#connect(), inMs);
  }
}
