// The room list (public rooms, your private rooms and DMs) and the "New room" form.
// The list is fetched from GET /api/rooms: at once, after your own actions, when the
// tab regains focus and every 30 s, so an invitation shows up without a reload.
import { callApi, problemLine, reason, typedName, whileBusy } from "./api.js";
import { Drawer } from "./drawer.js";
import { lockIcon } from "./icons.js";

const REFRESH_MS = 30000;
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
  constructor(root, current, onCurrent) {
    this.list = root.querySelector("#rooms");
    this.current = current;
    this.onCurrent = onCurrent;
    this.rooms = [];
    this.drawer = new Drawer(root.querySelector("#rooms-panel"), root.querySelector("#rooms-toggle"), root.querySelector("#rooms-close"));
    this.timer = null;
    window.addEventListener("focus", () => this.refresh());
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
    this.render();
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
    if (room.kind === "dm") {
      link.title = `Direct message with ${roomLabel(room)}`;
      link.setAttribute("aria-label", link.title);
    }
    item.append(link);
    return item;
  }
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
