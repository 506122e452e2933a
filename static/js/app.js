// Wires the page: socket events to the view, the compose box, scrollback, rooms.
import { ChatSocket } from "./socket.js";
import { ChatView } from "./view.js";
import { UserList } from "./users.js";
import { ConnectionStatus } from "./status.js";
import { wireRoomForm } from "./roomform.js";
import { Compose } from "./compose.js";
import { wireMenu } from "./menu.js";
import { UnreadTitle } from "./unread.js";

// After our own reconnect (a server restart), the others reconnect too: their joins
// within this long are not news if they were online before we lost the connection.
const REJOIN_QUIET_MS = 30000;

const root = document.querySelector("#app");
const { room, userId, userName, wsPath, apiPath } = root.dataset;
const me = { id: userId, name: userName };
const list = root.querySelector("#messages");
let online = [];
let loaded = false; // the first history has been shown
let oldestId = null;
let hasOlder = false;
let loadingOlder = false;
let onlineBeforeDrop = new Set();
let connectedAt = 0;
// Signing out ends the session and the server then closes this socket with 4001; the
// form's own answer takes the page to sign-in, so that close must not race it.
let signingOut = false;
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
});
const users = new UserList(root);
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

const socket = new ChatSocket(wsPath, {
  history(frame) {
    if (frame.reset || !loaded) {
      // First load, or more was missed than a resume returns: start from these.
      const first = !loaded;
      loaded = true;
      view.reset(frame.messages);
      oldestId = frame.messages.length ? frame.messages[0].id : null;
      hasOlder = frame.has_more;
      if (first && !frame.messages.length && !hasOlder) {
        view.notice(`#${room} is a new room: nothing has been said here yet.`);
      }
      if (hasOlder && list.scrollHeight <= list.clientHeight) loadOlder();
    } else {
      unread.arrived(view.addMessages(frame.messages)); // a resume: exactly what was missed
    }
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
    if (oldestId === null) oldestId = message.id;
    unread.arrived(view.addMessages([message]));
  },
  error(frame, final) {
    view.showError(frame, final);
  },
  status(state) {
    showStatus(state);
  },
  stopped(code) {
    if (code === 4001 && signingOut) return;
    if (code === 4001) window.location.assign(`/signin?next=${encodeURIComponent(window.location.pathname)}`);
    else showStatus("offline");
  },
});

const compose = new Compose(root.querySelector("#compose"), room, (value) => {
  const clientId = socket.send(value);
  view.addPending(clientId, value);
});

wireRoomForm(root.querySelector("#room-form"));
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
});

window.addEventListener("online", () => socket.retryNow());
window.addEventListener("offline", () => showStatus("offline"));
document.addEventListener("visibilitychange", () => {
  if (document.visibilityState === "visible") socket.check(); // a laptop that slept
});
socket.connect();
compose.focus();
