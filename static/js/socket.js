// The chat connection: connect, reconnect with back-off, resume with `after`,
// re-send unconfirmed messages with their client_id, and notice a connection that
// went silent (a frozen server or network sends no close: only a missing pong tells).
// No DOM here.

const BACKOFF_START_MS = 500;
const BACKOFF_MAX_MS = 15000;
const PING_EVERY_MS = 25000;
// A ping unanswered this long, or an opening that has not brought the history, means
// the connection is dead even though no close arrived.
const SILENCE_DEADLINE_MS = 10000;
// Closes that end this room for good: signed out (4001), removed or left (4003), no such
// room or not shared with you (4004). The page says why and does not reconnect.
const STOP_CODES = new Set([4001, 4003, 4004]);
const RETRY_UNAVAILABLE_MS = 3000;

export class ChatSocket {
  constructor(wsPath, handlers) {
    this.wsPath = wsPath;
    // {history, list, presence, message, event, error, status, stopped}, and optionally
    // {read, activity, notify} for what happens in the user's other rooms and tabs.
    this.handlers = handlers;
    this.lastId = null;
    this.pending = new Map(); // client_id -> text, in send order
    this.attempt = 0;
    this.ws = null;
    this.open = false; // the history of the current socket has arrived
    this.pingTimer = null;
    this.deadline = null;
    this.retryTimer = null;
    this.nextClientId = 1;
    this.clientPrefix = `c-${Math.random().toString(36).slice(2, 10)}-`;
  }

  url() {
    // The page's own host and scheme: wss:// under https://, never a hard-coded host.
    const url = new URL(this.wsPath, window.location.href);
    url.protocol = window.location.protocol === "https:" ? "wss:" : "ws:";
    url.host = window.location.host;
    url.searchParams.set("batch", "1");
    if (this.lastId !== null) url.searchParams.set("after", String(this.lastId));
    return url.toString();
  }

  connect() {
    clearTimeout(this.retryTimer);
    this.retryTimer = null;
    this.handlers.status(this.attempt === 0 ? "connecting" : "reconnecting");
    const ws = new WebSocket(this.url());
    this.ws = ws;
    this.open = false;
    ws.onmessage = (event) => this.receive(JSON.parse(event.data));
    ws.onclose = (event) => this.closed(ws, event.code);
    this.expectWithin(SILENCE_DEADLINE_MS); // a server that accepts TCP but never answers
  }

  // Reconnect at once instead of waiting out the back-off (the banner's "Retry now").
  retryNow() {
    if (this.open) {
      this.check();
      return;
    }
    if (this.ws) this.abandon(this.ws, false);
    this.connect();
  }

  // Ask the server for a sign of life unless one is already awaited.
  check() {
    if (!this.open || this.deadline !== null) return;
    this.sendFrame({ type: "ping" });
    this.expectWithin(SILENCE_DEADLINE_MS);
  }

  expectWithin(ms) {
    clearTimeout(this.deadline);
    const ws = this.ws;
    this.deadline = setTimeout(() => {
      this.deadline = null;
      if (ws === this.ws) this.abandon(ws, true);
    }, ms);
  }

  // Give up on a socket without waiting for its close handshake (it may never come).
  abandon(ws, reconnect) {
    ws.onmessage = null;
    ws.onclose = null;
    ws.close();
    if (reconnect) this.closed(ws, 1006);
    else this.stopTimers();
  }

  receive(frame) {
    clearTimeout(this.deadline); // any frame proves the connection is alive
    this.deadline = null;
    switch (frame.type) {
      case "history":
        this.open = true;
        this.handlers.history(frame);
        for (const message of frame.messages) this.seen(message);
        this.attempt = 0;
        this.handlers.status("connected");
        this.resend();
        this.pingTimer = setInterval(() => this.check(), PING_EVERY_MS);
        break;
      case "batch": // chat messages, and with them join/left coalesced (docs/protocol.md §7)
        for (const item of frame.messages) this.receive(item);
        break;
      case "chat":
        this.chat(frame);
        break;
      case "edit":
      case "delete": // events in the id sequence (docs/protocol.md §17): they move `after` too
        if (this.lastId !== null && frame.id <= this.lastId) break;
        this.seen(frame);
        this.handlers.event(frame);
        break;
      case "list":
        this.handlers.list(frame.data);
        break;
      case "join":
      case "left":
        this.handlers.presence(frame);
        break;
      case "error":
        if (frame.client_id && frame.code === "unavailable" && this.pending.has(frame.client_id)) {
          // Not stored: try again a little later with the same client_id (stored once).
          const clientId = frame.client_id;
          setTimeout(() => this.resendOne(clientId), RETRY_UNAVAILABLE_MS);
          this.handlers.error(frame, false);
        } else {
          // Refused for good: the page offers Retry / Delete; a reconnect must not re-send it.
          if (frame.client_id) this.pending.delete(frame.client_id);
          this.handlers.error(frame, true);
        }
        break;
      case "read": // read positions, other rooms' news, notifications (docs/protocol.md §18)
      case "activity":
      case "notify":
        this.handlers[frame.type]?.(frame);
        break;
      default:
        break; // pong, and types a newer server may add
    }
  }

  chat(message) {
    if (message.client_id && this.pending.has(message.client_id)) this.pending.delete(message.client_id);
    if (this.lastId !== null && message.id <= this.lastId && !message.client_id) return;
    this.seen(message);
    this.handlers.message(message);
  }

  seen(message) {
    if (this.lastId === null || message.id > this.lastId) this.lastId = message.id;
  }

  send(text) {
    const clientId = this.clientPrefix + this.nextClientId++;
    this.retry(clientId, text);
    return clientId;
  }

  // Send (again) under the same client_id: the server stores it at most once.
  retry(clientId, text) {
    this.pending.set(clientId, text);
    this.sendFrame({ type: "chat", data: text, client_id: clientId });
    this.check(); // a send into a dead connection must not wait for the next ping
  }

  resendOne(clientId) {
    const text = this.pending.get(clientId);
    if (text !== undefined) this.sendFrame({ type: "chat", data: text, client_id: clientId });
  }

  resend() {
    for (const [clientId, text] of this.pending) this.sendFrame({ type: "chat", data: text, client_id: clientId });
  }

  // An edit or a delete (docs/protocol.md §17); false when there is no connection to
  // send it on (the page says so: it is not queued like a new message).
  sendChange(frame) {
    if (!this.sendFrame(frame)) return false;
    this.check();
    return true;
  }

  sendFrame(frame) {
    if (!(this.ws && this.open && this.ws.readyState === WebSocket.OPEN)) return false;
    this.ws.send(JSON.stringify(frame));
    return true;
  }

  stopTimers() {
    clearInterval(this.pingTimer);
    clearTimeout(this.deadline);
    this.pingTimer = null;
    this.deadline = null;
    this.open = false;
  }

  closed(ws, code) {
    if (ws !== this.ws) return; // an abandoned socket's late close
    this.stopTimers();
    if (STOP_CODES.has(code)) {
      this.handlers.stopped(code);
      return;
    }
    this.attempt += 1;
    const ceiling = Math.min(BACKOFF_MAX_MS, BACKOFF_START_MS * 2 ** (this.attempt - 1));
    const delay = ceiling / 2 + Math.random() * (ceiling / 2); // jitter: a restart is not a stampede
    this.handlers.status(navigator.onLine === false ? "offline" : "reconnecting");
    this.retryTimer = setTimeout(() => this.connect(), delay);
  }
}
