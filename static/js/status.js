// The connection as the reader sees it: the status pill, and while it is down a banner
// that says so, with "Retry now".

const BANNER = {
  reconnecting: "Connection lost. Reconnecting…",
  offline: "You are offline. Messages you send wait here until the connection is back.",
};

export class ConnectionStatus {
  constructor(root, retryNow) {
    this.state = "connecting";
    this.pill = root.querySelector("#status");
    this.banner = root.querySelector("#banner");
    this.bannerText = root.querySelector("#banner-text");
    this.retry = root.querySelector("#retry-now");
    this.retry.addEventListener("click", retryNow);
  }

  // The server ended this room's connection for good (4003 removed, 4004 no such room):
  // say why, and offer no retry (the page does not reconnect).
  ended(label, text) {
    this.state = "ended";
    this.pill.className = "status ended";
    this.pill.textContent = label;
    this.bannerText.textContent = text;
    this.retry.hidden = true;
    this.banner.hidden = false;
  }

  set(state) {
    this.state = state;
    this.pill.className = `status ${state}`;
    this.pill.textContent = state;
    const message = BANNER[state];
    this.banner.hidden = message === undefined;
    if (message !== undefined) this.bannerText.textContent = message;
  }
}
