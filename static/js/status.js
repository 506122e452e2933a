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
    root.querySelector("#retry-now").addEventListener("click", retryNow);
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
