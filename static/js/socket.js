// The chat connection: connect, reconnect with back-off, resume with `after`,
// re-send unconfirmed messages with their client_id. No DOM here.

const BACKOFF_START_MS = 500;
const BACKOFF_MAX_MS = 15000;
const PING_EVERY_MS = 25000;
const STOP_CODES = new Set([4001, 4004]);
const RETRY_UNAVAILABLE_MS = 3000;

export class ChatSocket {
  constructor(wsPath, handlers) {
    this.wsPath = wsPath;
    this.handlers = handlers; // {history, list, presence, message, error, status, stopped}
    this.lastId = null;
    this.pending = new Map(); // client_id -> text, in send order
    this.attempt = 0;
    this.ws = null;
    this.pingTimer = null;
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
    this.handlers.status(this.attempt === 0 ? "connecting" : "reconnecting");
    const ws = new WebSocket(this.url());
    this.ws = ws;
    ws.onmessage = (event) => this.receive(JSON.parse(event.data));
    ws.onclose = (event) => this.closed(event);
  }

  receive(frame) {
    switch (frame.type) {
      case "history":
        this.handlers.history(frame);
        for (const message of frame.messages) this.seen(message);
        this.attempt = 0;
        this.handlers.status("connected");
        this.resend();
        this.pingTimer = setInterval(() => this.sendFrame({ type: "ping" }), PING_EVERY_MS);
        break;
      case "batch":
        for (const message of frame.messages) this.chat(message);
        break;
      case "chat":
        this.chat(frame);
        break;
      case "list":
        this.handlers.list(frame.data);
        break;
      case "join":
      case "left":
        this.handlers.presence(frame);
        break;
      case "error":
        this.handlers.error(frame);
        if (frame.client_id && frame.code === "unavailable" && this.pending.has(frame.client_id)) {
          // Not stored: try again a little later with the same client_id (stored once).
          const clientId = frame.client_id;
          setTimeout(() => this.resendOne(clientId), RETRY_UNAVAILABLE_MS);
        } else if (frame.client_id) {
          this.pending.delete(frame.client_id);
        }
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
    this.pending.set(clientId, text);
    this.sendFrame({ type: "chat", data: text, client_id: clientId });
    return clientId;
  }

  resendOne(clientId) {
    const text = this.pending.get(clientId);
    if (text !== undefined) this.sendFrame({ type: "chat", data: text, client_id: clientId });
  }

  resend() {
    for (const [clientId, text] of this.pending) this.sendFrame({ type: "chat", data: text, client_id: clientId });
  }

  sendFrame(frame) {
    if (this.ws && this.ws.readyState === WebSocket.OPEN) this.ws.send(JSON.stringify(frame));
  }

  closed(event) {
    clearInterval(this.pingTimer);
    if (STOP_CODES.has(event.code)) {
      this.handlers.stopped(event.code);
      return;
    }
    this.attempt += 1;
    const ceiling = Math.min(BACKOFF_MAX_MS, BACKOFF_START_MS * 2 ** (this.attempt - 1));
    const delay = ceiling / 2 + Math.random() * (ceiling / 2); // jitter: a restart is not a stampede
    this.handlers.status(navigator.onLine === false ? "offline" : "reconnecting");
    setTimeout(() => this.connect(), delay);
  }
}
