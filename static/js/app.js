// Wires the page: socket events to the view, the compose box, scrollback, rooms.
import { ChatSocket } from "./socket.js";
import { ChatView } from "./view.js";

const root = document.querySelector("#app");
const view = new ChatView(root);
const { room, userName, wsPath, apiPath } = root.dataset;
let online = [];
let loaded = false; // the first history has been shown
let oldestId = null;
let hasOlder = false;
let loadingOlder = false;

function byName(a, b) {
  return a.name.localeCompare(b.name);
}

const socket = new ChatSocket(wsPath, {
  history(frame) {
    if (frame.reset || !loaded) {
      // First load, or more was missed than a resume returns: start from these.
      loaded = true;
      view.reset(frame.messages);
      oldestId = frame.messages.length ? frame.messages[0].id : null;
      hasOlder = frame.has_more;
      if (hasOlder && list.scrollHeight <= list.clientHeight) loadOlder();
    } else {
      view.addMessages(frame.messages); // a resume: exactly what was missed
    }
  },
  list(users) {
    online = users;
    view.setUsers(online);
  },
  presence(frame) {
    if (frame.type === "join" && !online.some((u) => u.id === frame.user.id)) online = [...online, frame.user].sort(byName);
    if (frame.type === "left") online = online.filter((u) => u.id !== frame.user.id);
    view.setUsers(online);
    view.notice(`${frame.user.name} ${frame.type === "join" ? "joined" : "left"}`);
  },
  message(message) {
    if (oldestId === null) oldestId = message.id;
    view.addMessage(message);
  },
  error(frame) {
    view.showError(frame);
  },
  status(state) {
    view.setStatus(state);
  },
  stopped(code) {
    if (code === 4001) window.location.assign(`/signin?next=${encodeURIComponent(window.location.pathname)}`);
    else view.setStatus("offline");
  },
});

const text = root.querySelector("#text");
root.querySelector("#compose").addEventListener("submit", (event) => {
  event.preventDefault();
  const value = text.value;
  if (!value.trim()) return;
  const clientId = socket.send(value);
  view.addPending(clientId, value, userName);
  text.value = "";
});
text.addEventListener("keydown", (event) => {
  if (event.key === "Enter" && !event.shiftKey && !event.isComposing) {
    event.preventDefault();
    root.querySelector("#compose").requestSubmit();
  }
});

root.querySelector("#room-form").addEventListener("submit", (event) => {
  event.preventDefault();
  const target = root.querySelector("#room-input").value.trim().toLowerCase();
  if (/^[a-z0-9-]{1,64}$/.test(target)) window.location.assign(`/r/${target}`);
});

const list = root.querySelector("#messages");

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
    }
  } finally {
    loadingOlder = false;
  }
  if (hasOlder && list.scrollHeight <= list.clientHeight) loadOlder();
}

list.addEventListener("scroll", () => {
  if (list.scrollTop <= 50) loadOlder();
});

window.addEventListener("online", () => view.setStatus("reconnecting"));
window.addEventListener("offline", () => view.setStatus("offline"));
socket.connect();
