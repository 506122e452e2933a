// Wires the page: socket events to the view, the compose box, scrollback, rooms.
import { ChatSocket } from "./socket.js";
import { ChatView } from "./view.js";
import { UserList } from "./users.js";
import { ConnectionStatus } from "./status.js";
import { wireRoomForm } from "./roomform.js";
import { Compose } from "./compose.js";
import { wireMenu } from "./menu.js";
import { UnreadTitle } from "./unread.js";
import { RoomList, roomLabel, wireNewRoom } from "./rooms.js";
import { MembersPanel } from "./members.js";
import { wireDmForm, wireUserMenu } from "./dm.js";
import { lockIcon } from "./icons.js";
import { SearchBox, jumpTarget } from "./search.js";
import { MessageEdits } from "./edit.js";
import { ReadTracker, scrollToTop } from "./reads.js";
import { Notifier } from "./notify.js";
import { MentionCompleter } from "./mentions.js";

// After our own reconnect (a server restart), the others reconnect too: their joins
// within this long are not news if they were online before we lost the connection.
const REJOIN_QUIET_MS = 30000;

const root = document.querySelector("#app");
const { room, userId, userName, userRole, wsPath, apiPath } = root.dataset;
const me = { id: userId, name: userName, role: userRole };
// A DM's name is no name for people: until the room list names the other person, the
// header says what it is.
const isDm = /^dm-[0-9a-f]{16}$/.test(room);
if (isDm) root.querySelector("#room-name").textContent = "Direct message";
const list = root.querySelector("#messages");
let online = [];
let loaded = false; // the first history has been shown
let oldestId = null;
let hasOlder = false;
let loadingOlder = false;
// Opened at a search's hit (?at=ID): the list shows that message's context, paging
// forwards (after=) until it meets the present; meanwhile what the socket brings waits.
let jumpedTo = jumpTarget();
let newestId = null;
let hasNewer = false;
let loadingNewer = false;
let held = [];
let onlineBeforeDrop = new Set();
let connectedAt = 0;
// Signing out ends the session and the server then closes this socket with 4001; the
// form's own answer takes the page to sign-in, so that close must not race it.
let signingOut = false;
// Leaving a room ends its socket with 4003 too: then the notice says you left.
let leaving = false;
for (const form of document.querySelectorAll('form[action$="/signout"]')) {
  form.addEventListener("submit", () => {
    signingOut = true;
  });
}

function byName(a, b) {
  return a.name.localeCompare(b.name);
}

const view = new ChatView(root, me, {
  retry: (clientId, value) => socket.retry(clientId, value),
  discard: () => compose.focus(),
  applied: (item, event) => edits.applied(item, event),
});
const users = new UserList(root, me);
const unread = new UnreadTitle();
const status = new ConnectionStatus(root, () => socket.retryNow());

function showStatus(state) {
  if (state === "connected") {
    connectedAt = Date.now();
  } else if (status.state === "connected") {
    onlineBeforeDrop = new Set(online.map((u) => u.id)); // who may come back with us
  }
  status.set(state);
  users.stale(state !== "connected");
}

function newsworthy(frame) {
  if (frame.user.id === me.id) return false; // you know you came and went
  if (frame.type === "join" && onlineBeforeDrop.has(frame.user.id) && Date.now() - connectedAt < REJOIN_QUIET_MS) {
    return false;
  }
  return true;
}

// A `batch` frame may carry hundreds of joins (a storm, docs/protocol.md §4): the list
// is drawn once per animation frame, not once per join.
let drawQueued = false;
function showOnline() {
  if (drawQueued) return;
  drawQueued = true;
  requestAnimationFrame(() => {
    drawQueued = false;
    users.set(online);
  });
}

// The first history page, or a fresh start after a resume that missed too much: the
// room opens at "New messages" when that is in the page, else at the newest.
function showPage(frame, first) {
  view.reset(frame.messages);
  // A room never read opens at its newest, without a divider above all of its history.
  const lastRead = Number(frame.last_read_id) || 0;
  const divider = lastRead ? reads.divide(lastRead) : null;
  if (divider && first) scrollToTop(list, divider);
  oldestId = frame.messages.length ? frame.messages[0].id : null;
  hasOlder = frame.has_more;
  if (first && !frame.messages.length && !hasOlder) {
    view.notice(isDm ? "Nothing has been said here yet." : `#${room} is a new room: nothing has been said here yet.`);
  }
  if (hasOlder && list.scrollHeight <= list.clientHeight) loadOlder();
}

// Read before, and the first unread message is older than the first page.
function unreadBeforePage(frame) {
  const lastRead = Number(frame.last_read_id) || 0;
  return lastRead > 0 && frame.has_more && frame.messages.length > 0 && frame.messages[0].id > lastRead;
}

const socket = new ChatSocket(wsPath, {
  history(frame) {
    reads.resync(frame.last_read_id);
    if (jumpedTo !== null) {
      loaded = true;
      held.push(...frame.messages);
      return;
    }
    if (frame.reset || !loaded) {
      // First load, or more was missed than a resume returns: start from these.
      const first = !loaded;
      loaded = true;
      if (first && unreadBeforePage(frame)) openAtUnread(frame);
      else showPage(frame, first);
    } else {
      view.addMessages(frame.messages); // a resume: exactly what was missed
      reads.divideIfAway();
    }
    edits.resend();
  },
  list(frame) {
    online = frame;
    users.set(online);
  },
  presence(frame) {
    if (frame.type === "join" && !online.some((u) => u.id === frame.user.id)) online = [...online, frame.user].sort(byName);
    if (frame.type === "left") online = online.filter((u) => u.id !== frame.user.id);
    showOnline();
    if (newsworthy(frame)) view.presence(frame.type, frame.user, frame.ts);
    else if (frame.type === "join") onlineBeforeDrop.delete(frame.user.id);
  },
  message(message) {
    if (jumpedTo !== null) {
      held.push(message);
      return;
    }
    if (oldestId === null) oldestId = message.id;
    view.addMessages([message]);
    reads.divideIfAway();
  },
  read(frame) {
    if (frame.room === room) reads.known(frame.id);
    rooms.read(frame);
  },
  activity(frame) {
    rooms.activity(frame);
  },
  notify(frame) {
    notifier.show(frame);
  },
  event(frame) {
    if (jumpedTo !== null) held.push(frame); // applied with what is held, in id order
    else view.applyEvent(frame);
  },
  error(frame, final) {
    if (!edits.refused(frame)) view.showError(frame, final);
  },
  status(state) {
    showStatus(state);
  },
  stopped(code) {
    if (code === 4001 && signingOut) return;
    if (code === 4001) window.location.assign(`/signin?next=${encodeURIComponent(window.location.pathname)}`);
    else if (code === 4003) ended("not a member", leaving ? `You left #${room}.` : "You are no longer a member of this room.");
    else if (code === 4004) ended("not found", `Room not found: #${room} does not exist or is not shared with you.`);
    else showStatus("offline");
  },
});

// The server closed this room to us for good: say why, stop writing, refresh the list.
function ended(label, text) {
  status.ended(label, text);
  users.stale(true);
  edits.cancel(edits.editing);
  compose.disable(text);
  members.show(false);
  rooms.refresh();
}

// The header names a DM by the other person and marks a private room.
function showRoom(entry) {
  if (!entry) return;
  const title = root.querySelector("#room-name");
  const label = entry.kind === "dm" ? roomLabel(entry) : `#${entry.name}`;
  title.replaceChildren(label);
  if (entry.kind === "private") title.prepend(lockIcon("private room"));
  title.dataset.kind = entry.kind || "public";
  unread.rename(`${entry.kind === "dm" ? "@" : ""}${label} · quartchat`);
  compose.name(label);
  members.show(entry.kind === "private" && !leaving && status.state !== "ended");
}

const compose = new Compose(
  root.querySelector("#compose"),
  room,
  (value) => {
    const clientId = socket.send(value);
    view.addPending(clientId, value);
  },
  {
    last: () => edits.last(),
    save: (id, text) => edits.save(id, text),
    cancel: (id) => edits.cancel(id),
  },
);
const edits = new MessageEdits(root, room, me, view, compose, (frame) => socket.sendChange(frame));

const members = new MembersPanel(root, room, me, {
  leaving: (yes) => {
    leaving = yes;
  },
  changed: () => rooms.refresh(),
});
const reads = new ReadTracker(
  list,
  me,
  (id) => {
    socket.sendFrame({ type: "read", id });
    if (jumpedTo !== null) rooms.refreshSoon(); // what is left unread is not all shown here
  },
  () => rooms.localChanged(),
);
// Shown from the first page on, while it is the present (not a search's or an unread
// context being paged forward): until then the server's counts stand.
const rooms = new RoomList(root, room, showRoom, {
  local: () => (loaded && jumpedTo === null ? reads.counts() : null),
  total: (count) => unread.set(count),
});
const notifier = new Notifier(root, (name) => {
  const entry = rooms.rooms.find((candidate) => candidate.name === name);
  return entry ? (entry.kind === "dm" ? roomLabel(entry) : `#${entry.name}`) : null;
});
// `@` offers who is online, the members of a private room, and who wrote what is shown.
new MentionCompleter(root.querySelector("#compose"), () =>
  [
    ...online.map((user) => user.name),
    ...[...root.querySelectorAll("#members .name, #messages .author")].map((node) => node.textContent),
  ].filter((name) => name && name !== me.name),
);
wireRoomForm(root.querySelector("#room-form"));
wireNewRoom(root.querySelector("#new-room"), rooms);
wireDmForm(root.querySelector("#dm-form"));
wireUserMenu(root, me);
wireMenu(root.querySelector("details.export"));
for (const button of root.querySelectorAll("[data-dismiss]")) {
  button.addEventListener("click", () => button.closest(".banner").remove());
}

// Scrollback: older pages load when the reader reaches the top, or at once while the
// list is too short to scroll at all.
async function loadOlder() {
  if (!hasOlder || loadingOlder || oldestId === null) return;
  loadingOlder = true;
  try {
    const response = await fetch(`${apiPath}?before=${oldestId}&limit=50`, { credentials: "same-origin" });
    if (response.ok) {
      const page = await response.json();
      view.prepend(page.messages);
      if (page.messages.length) oldestId = page.messages[0].id;
      hasOlder = page.has_more;
    } else {
      console.warn(`older messages: HTTP ${response.status}`);
    }
  } finally {
    loadingOlder = false;
  }
  if (hasOlder && list.scrollHeight <= list.clientHeight) loadOlder();
}

list.addEventListener("scroll", () => {
  if (list.scrollTop <= 50) loadOlder();
  if (list.scrollHeight - list.scrollTop - list.clientHeight <= 50) loadNewer();
});

// A search's hit: the message with up to 25 either side, marked and centred.
async function openAt(id) {
  const response = await fetch(`${apiPath}?around=${id}&limit=50`, { credentials: "same-origin" }).catch(() => null);
  if (!response?.ok) {
    const why = response ? `HTTP ${response.status}` : "the server did not answer";
    view.notice(response?.status === 404 ? "That message is no longer here." : `Cannot open it (${why}).`);
    hasOlder = held.length > 0; // older than the newest page the socket brought: loadOlder asks
    backToThePresent();
    return;
  }
  const page = await response.json();
  view.reset(page.messages);
  view.highlight(id);
  oldestId = page.messages[0].id;
  hasOlder = page.has_more_before;
  newestId = page.messages.at(-1).id;
  hasNewer = page.has_more_after;
  if (!hasNewer) backToThePresent();
  else if (list.scrollHeight <= list.clientHeight) loadNewer();
}

async function loadNewer() {
  if (jumpedTo === null || !hasNewer || loadingNewer) return;
  loadingNewer = true;
  try {
    const response = await fetch(`${apiPath}?after=${newestId}&limit=50`, { credentials: "same-origin" });
    if (response.ok) {
      const page = await response.json();
      view.appendPage(page.messages);
      if (page.messages.length) newestId = page.messages.at(-1).id;
      hasNewer = page.has_more;
      if (!hasNewer) backToThePresent();
    } else {
      console.warn(`newer messages: HTTP ${response.status}`);
    }
  } finally {
    loadingNewer = false;
  }
}

// The room was read before and its first unread message is older than the first page:
// open at the last message read with its context (the socket's pages wait meanwhile),
// then page forwards as in openAt. If that message is gone, open at the newest.
async function openAtUnread(frame) {
  const lastRead = Number(frame.last_read_id);
  jumpedTo = lastRead;
  held = [...frame.messages];
  const response = await fetch(`${apiPath}?around=${lastRead}&limit=50`, { credentials: "same-origin" }).catch(() => null);
  if (!response?.ok) {
    jumpedTo = null;
    showPage({ ...frame, messages: held }, true);
    held = [];
    return;
  }
  const page = await response.json();
  view.reset(page.messages);
  const divider = reads.divide(lastRead);
  if (divider) scrollToTop(list, divider);
  oldestId = page.messages[0].id;
  hasOlder = page.has_more_before;
  newestId = page.messages.at(-1).id;
  hasNewer = page.has_more_after;
  if (!hasNewer) backToThePresent();
  else if (list.scrollHeight <= list.clientHeight) loadNewer();
}

// The context has met the newest messages: what the socket brought meanwhile joins it
// (ids already shown are skipped), and the list is live again.
function backToThePresent() {
  jumpedTo = null;
  loaded = true; // a history frame still to come adds to this list, it does not replace it
  if (held.length) view.appendPage(held);
  if (oldestId === null && held.length) oldestId = held[0].id;
  held = [];
  window.history.replaceState(null, "", window.location.pathname);
}

window.addEventListener("online", () => socket.retryNow());
window.addEventListener("offline", () => showStatus("offline"));
document.addEventListener("visibilitychange", () => {
  if (document.visibilityState === "visible") socket.check(); // a laptop that slept
});
new SearchBox(root);
if (jumpedTo !== null) openAt(jumpedTo);
socket.connect();
rooms.start();
if (jumpedTo === null) compose.focus();
