// The room list (public rooms, your private rooms and DMs) and the "New room" form.
// The list is fetched from GET /api/rooms: at once, after your own actions, when the
// tab regains focus and every 30 s, so an invitation shows up without a reload. Each
// room shows its unread and mention counts, kept live by `activity` and `read` frames;
// Alt+↑/↓ goes to the room above or below, Alt+Shift+↑/↓ to the next unread one.
import { callApi, problemLine, reason, typedName, whileBusy } from "./api.js";
import { Drawer } from "./drawer.js";
import { lockIcon } from "./icons.js";

const REFRESH_MS = 30000;
const SOON_MS = 1000; // a read elsewhere left some unread: ask the server how many
const CAP = 1000; // the server counts up to this many
const ROOM = /^[a-z0-9-]{1,64}$/;

// What a DM is called on the page: its other member's name, never dm-<hex>.
export function peerName(room) {
  const peer = room.peer;
  if (!peer) return null;
  return typeof peer === "string" ? peer : peer.name;
}

export function roomLabel(room) {
  if (room.kind === "dm") return peerName(room) || "direct message";
  return room.name;
}

export class RoomList {
  // onCurrent(room or null): the entry of the page's own room, after every refresh.
  // hooks: {local() → {unread, mentions} of the page's own room as the page counts
  // them (null until it knows), total(unread) whenever the sum over all rooms changes}.
  constructor(root, current, onCurrent, hooks = {}) {
    this.list = root.querySelector("#rooms");
    this.current = current;
    this.onCurrent = onCurrent;
    this.hooks = hooks;
    this.rooms = [];
    this.drawer = new Drawer(root.querySelector("#rooms-panel"), root.querySelector("#rooms-toggle"), root.querySelector("#rooms-close"));
    this.timer = null;
    this.soon = null;
    this.unlisted = new Map(); // room -> its latest activity, until the list has the room
    window.addEventListener("focus", () => this.refresh());
    document.addEventListener("keydown", (event) => this.key(event));
  }

  // The counts shown for `room`: the page's own room as the page counts it.
  counts(room) {
    const local = room.name === this.current && this.hooks.local ? this.hooks.local() : null;
    return local || { unread: Number(room.unread) || 0, mentions: Number(room.mentions) || 0 };
  }

  // {"type": "activity", "room", "last_id", "unread", "mentions"}: a room of ours got news.
  activity(frame) {
    const room = this.rooms.find((entry) => entry.name === frame.room);
    if (!room) {
      this.unlisted.set(frame.room, frame);
      this.refreshSoon(); // a room we do not list yet (a new DM, an invitation)
      return;
    }
    Object.assign(room, { last_id: frame.last_id, unread: frame.unread, mentions: frame.mentions });
    this.update(room);
  }

  // {"type": "read", "room", "id"}: read in another tab. Read to the end means none
  // unread; short of it, only the server knows how many are left.
  read(frame) {
    const room = this.rooms.find((entry) => entry.name === frame.room);
    if (!room) return;
    room.last_read_id = Math.max(Number(room.last_read_id) || 0, frame.id);
    if (room.last_id === undefined || frame.id >= room.last_id) {
      room.unread = 0;
      room.mentions = 0;
      this.update(room);
    } else {
      this.refreshSoon();
    }
  }

  // The page's own counts changed (it read, or messages arrived).
  localChanged() {
    const room = this.rooms.find((entry) => entry.name === this.current);
    if (room) this.update(room);
    else this.total();
  }

  refreshSoon() {
    if (this.soon) return;
    this.soon = setTimeout(() => {
      this.soon = null;
      this.refresh();
    }, SOON_MS);
  }

  update(room) {
    const item = [...this.list.children].find((node) => node.dataset.room === room.name);
    if (item) this.badges(item, room);
    this.total();
  }

  // The page's own room counts even before the list has it (a room made by opening it).
  total() {
    const others = this.rooms.filter((room) => room.name !== this.current);
    const here = this.counts(this.rooms.find((room) => room.name === this.current) || { name: this.current });
    const sum = others.reduce((total, room) => total + this.counts(room).unread, here.unread);
    if (this.hooks.total) this.hooks.total(sum);
  }

  // Alt+↑/↓: the room above or below this one; with Shift, the nearest with unread
  // messages in that direction (around the end of the list).
  key(event) {
    if (!event.altKey || event.ctrlKey || event.metaKey) return;
    if (event.key !== "ArrowUp" && event.key !== "ArrowDown") return;
    const links = [...this.list.querySelectorAll("li > a")];
    if (!links.length) return;
    event.preventDefault();
    const step = event.key === "ArrowUp" ? -1 : 1;
    const here = links.findIndex((link) => link.getAttribute("aria-current") === "page");
    let target = null;
    if (event.shiftKey) {
      for (let i = 1; i < links.length && !target; i += 1) {
        const link = links[(((here + step * i) % links.length) + links.length) % links.length];
        if (link.closest("li").dataset.unread !== "0") target = link;
      }
    } else {
      const index = here === -1 ? (step > 0 ? 0 : links.length - 1) : here + step;
      if (index >= 0 && index < links.length && index !== here) target = links[index];
    }
    if (target) window.location.assign(target.href);
  }

  start() {
    this.refresh();
    this.timer = setInterval(() => this.refresh(), REFRESH_MS);
  }

  async refresh() {
    const asked = (this.asked = (this.asked || 0) + 1);
    const answer = await callApi("GET", "/api/rooms");
    if (asked !== this.asked) return; // a later request is on its way: its answer is newer
    if (!answer.ok || !Array.isArray(answer.body.rooms)) return; // keep what is shown
    this.rooms = answer.body.rooms; // the server lists only what this user may see
    for (const [name, frame] of this.unlisted) {
      const room = this.rooms.find((entry) => entry.name === name);
      if (room && !((Number(room.last_id) || 0) > frame.last_id && room.unread !== undefined)) {
        Object.assign(room, { last_id: frame.last_id, unread: frame.unread, mentions: frame.mentions });
      }
    }
    this.unlisted.clear();
    this.render();
    this.total();
    // How many lists have arrived: a test (or a curious reader) can tell a fresh one.
    this.list.dataset.fetched = String(Number(this.list.dataset.fetched || 0) + 1);
    this.onCurrent(this.rooms.find((room) => room.name === this.current) || null);
  }

  render() {
    const sorted = [...this.rooms].sort(
      (a, b) => order(a) - order(b) || roomLabel(a).localeCompare(roomLabel(b)),
    );
    this.list.replaceChildren(...sorted.map((room) => this.item(room)));
  }

  item(room) {
    const item = document.createElement("li");
    item.dataset.room = room.name;
    item.dataset.kind = room.kind || "public";
    const link = document.createElement("a");
    link.href = `/r/${encodeURIComponent(room.name)}`;
    if (room.name === this.current) link.setAttribute("aria-current", "page");
    const mark = document.createElement("span");
    mark.className = "kind";
    if (room.kind === "private") {
      mark.append(lockIcon("private room"));
    } else {
      mark.setAttribute("aria-hidden", "true");
      mark.textContent = room.kind === "dm" ? "@" : "#";
    }
    const label = document.createElement("span");
    label.className = "label";
    label.textContent = roomLabel(room);
    link.append(mark, label);
    if (room.kind === "private") link.title = `#${room.name} (private)`;
    if (room.kind === "dm") link.title = `Direct message with ${roomLabel(room)}`;
    item.append(link);
    this.badges(item, room);
    return item;
  }

  // "3" unread and "@1" mentions after the name; the name bold while anything is unread.
  badges(item, room) {
    const { unread, mentions } = this.counts(room);
    item.dataset.unread = String(unread);
    item.dataset.mentions = String(mentions);
    item.classList.toggle("has-unread", unread > 0);
    const link = item.querySelector("a");
    link.querySelector(".badges")?.remove();
    const name =
      room.kind === "dm"
        ? `Direct message with ${roomLabel(room)}`
        : `#${room.name}${room.kind === "private" ? " (private)" : ""}`;
    link.setAttribute("aria-label", `${name}${spoken(unread, mentions)}`);
    if (!unread && !mentions) return;
    const badges = document.createElement("span");
    badges.className = "badges";
    badges.setAttribute("aria-hidden", "true"); // the link's label says it in words
    if (mentions) badges.append(badge("mentions", `@${capped(mentions)}`));
    if (unread) badges.append(badge("unread", capped(unread)));
    link.append(badges);
  }
}

function badge(kind, text) {
  const element = document.createElement("span");
  element.className = `badge ${kind}`;
  element.textContent = text;
  return element;
}

function capped(count) {
  return count >= CAP ? `${CAP}+` : String(count);
}

function spoken(unread, mentions) {
  const parts = [];
  if (unread) parts.push(`${capped(unread)} unread`);
  if (mentions) parts.push(`${capped(mentions)} mention${mentions === 1 ? "" : "s"}`);
  return parts.length ? `, ${parts.join(", ")}` : "";
}

// Public rooms first, then private ones, then DMs.
function order(room) {
  return room.kind === "dm" ? 2 : room.kind === "private" ? 1 : 0;
}

// "New room": POST /api/rooms {"name", "private"} and go there.
export function wireNewRoom(form, rooms) {
  const input = form.querySelector("#new-room-name");
  const privately = form.querySelector("#new-room-private");
  const say = problemLine(input, form.querySelector("#new-room-problem"));
  input.addEventListener("input", () => say(""));
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    whileBusy(form, () => create(input, privately, say, rooms));
  });
}

// Create the room and go there (true), or say why not.
async function create(input, privately, say, rooms) {
  const name = typedName(input).toLowerCase();
  if (!ROOM.test(name)) {
    say("Room names are 1–64 lowercase letters, digits or “-”.");
    input.focus();
    return false;
  }
  const answer = await callApi("POST", "/api/rooms", { name, private: privately.checked });
  if (answer.ok) {
    const room = answer.body.room || { name };
    window.location.assign(`/r/${encodeURIComponent(room.name)}`);
    return true;
  }
  say(
    answer.status === 409
      ? `The name “${name}” is taken: choose another.`
      : reason(answer, `The room could not be created (HTTP ${answer.status}).`),
  );
  rooms.refresh();
  input.focus();
  return false;
}
