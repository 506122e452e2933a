// Desktop notifications for mentions and direct messages ({"type": "notify", "room",
// "message"}), shown only while the tab is hidden. The browser is asked for permission
// only when you click "Enable notifications", never on its own.

const BODY_CHARS = 200;
const DM = /^dm-[0-9a-f]{16}$/;

export class Notifier {
  // labelOf(room) → how the page names a room ("#lobby", or a DM's other person), or null.
  constructor(root, labelOf) {
    this.button = root.querySelector("#notify-enable");
    this.state = root.querySelector("#notify-state");
    this.labelOf = labelOf;
    this.button.addEventListener("click", () => this.ask());
    this.showState();
  }

  supported() {
    return "Notification" in window;
  }

  showState() {
    const permission = this.supported() ? Notification.permission : "unsupported";
    this.button.hidden = permission !== "default";
    this.state.hidden = permission === "default";
    this.state.textContent = {
      granted: "Notifications are on for mentions and direct messages.",
      denied: "Notifications are blocked in this browser's site settings.",
      unsupported: "This browser cannot show notifications.",
    }[permission];
  }

  async ask() {
    if (!this.supported()) return;
    try {
      await Notification.requestPermission();
    } catch (error) {
      console.warn("notifications: the permission request failed", error);
    }
    this.showState();
  }

  // A mention or a DM message; the page's own tab shows it only while hidden.
  show(frame) {
    const message = frame.message;
    if (!message || !this.supported() || Notification.permission !== "granted") return;
    if (document.visibilityState !== "hidden") return;
    const author = message.user?.name ?? "someone";
    const label = this.labelOf(frame.room);
    const title = DM.test(frame.room) ? author : `${author} in ${label || `#${frame.room}`}`;
    const chars = [...String(message.data ?? "")]; // code points: a pair is never split
    const body = chars.length > BODY_CHARS ? `${chars.slice(0, BODY_CHARS - 1).join("")}…` : chars.join("");
    // One notification per message however many tabs are hidden (the same tag).
    const shown = new Notification(title, { body, tag: `quartchat-${message.id}` });
    shown.addEventListener("click", () => {
      window.focus();
      const path = `/r/${encodeURIComponent(frame.room)}`;
      if (window.location.pathname !== path) window.location.assign(path);
      shown.close();
    });
  }
}
