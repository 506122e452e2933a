// The conversation as DOM: messages in id order, our unconfirmed ones below them, day
// dividers, runs of one author under one header, notices, edits and deletes, and the
// scroll position.
// Text goes in with DOM methods only (see message.js).
import { dayKey, dayLabel } from "./dates.js";
import { messageItem, noticeItem, pendingItem, showDeleted, showEdited } from "./message.js";

const GROUP_MS = 5 * 60 * 1000; // one author's messages this close share a header
const CONDENSE_MS = 2 * 60 * 1000; // presence notices this close share one line
const BOTTOM_SLACK_PX = 40;
const RETRYABLE = new Set(["rate_limited", "unavailable"]);
const EVENTS = new Set(["edit", "delete"]); // in the id sequence, but no line of their own

export function isEvent(frame) {
  return EVENTS.has(frame.type);
}

export class ChatView {
  // actions: {retry(clientId, text), discard(clientId)} for failed messages,
  // applied(item, event) after an edit or delete changed a message shown.
  constructor(root, me, actions) {
    this.list = root.querySelector("#messages");
    this.below = root.querySelector("#new-below");
    this.announcer = root.querySelector("#announcer");
    this.me = me;
    this.mention = new RegExp(`(^|[^\\w@])@${me.name.replace(/[.*+?^${}()|[\]\\]/g, "\\$&")}(?![\\w-])`, "i");
    this.actions = actions;
    this.byId = new Map();
    this.byClientId = new Map();
    this.unseenBelow = 0;
    this.below.addEventListener("click", () => this.toBottom());
    this.list.addEventListener("scroll", () => {
      if (this.atBottom()) this.clearBelow();
    });
  }

  atBottom() {
    return this.list.scrollHeight - this.list.scrollTop - this.list.clientHeight < BOTTOM_SLACK_PX;
  }

  toBottom() {
    this.list.scrollTop = this.list.scrollHeight;
    this.clearBelow();
  }

  keepBottom(update) {
    const stick = this.atBottom();
    update();
    this.decorate();
    if (stick) this.list.scrollTop = this.list.scrollHeight;
    return stick;
  }

  // A fresh start (first load, or a resume that missed too much): only these messages,
  // and our own still unconfirmed ones below them.
  reset(messages) {
    this.list.replaceChildren();
    this.byId.clear();
    for (const message of messages) this.place(message);
    this.list.append(...this.byClientId.values());
    for (const event of messages.filter(isEvent)) this.applyEvent(event);
    this.decorate();
    this.toBottom();
  }

  // Messages that arrived over the socket (live, or what a resume missed).
  addMessages(messages) {
    let news = 0;
    const stick = this.keepBottom(() => {
      for (const message of messages) {
        if (isEvent(message)) this.applyEvent(message);
        else if (this.place(message) && message.user.id !== this.me.id) news += 1;
      }
    });
    if (news && !stick) this.showBelow(news);
    const last = messages.findLast((message) => !isEvent(message));
    if (news && last) this.announcer.textContent = `${last.user.name}: ${last.data}`;
    return news;
  }

  // One message in id order, above our unconfirmed ones; false if it was shown already.
  place(message) {
    const pending = message.client_id && this.byClientId.get(message.client_id);
    if (pending) {
      pending.remove();
      this.byClientId.delete(message.client_id);
    }
    if (this.byId.has(message.id) || isEvent(message)) return false;
    const item = this.item(message);
    let before = null;
    for (let node = this.list.lastElementChild; node; node = node.previousElementSibling) {
      if (node.classList.contains("day") || node.classList.contains("unread-divider")) continue; // dividers stay put
      const later = node.classList.contains("pending") || (node.dataset.id && Number(node.dataset.id) > message.id);
      if (!later) break;
      before = node;
    }
    this.list.insertBefore(item, before);
    this.byId.set(message.id, item);
    return true;
  }

  // An older page at the top, keeping what the reader looks at in place.
  prepend(messages) {
    const fromBottom = this.list.scrollHeight - this.list.scrollTop;
    const fragment = document.createDocumentFragment();
    for (const message of messages) {
      if (this.byId.has(message.id) || isEvent(message)) continue;
      const item = this.item(message);
      this.byId.set(message.id, item);
      fragment.append(item);
    }
    this.list.prepend(fragment);
    this.decorate();
    this.list.scrollTop = this.list.scrollHeight - fromBottom;
  }

  // A newer page below (paging forward from a search's hit): the reader stays put.
  appendPage(messages) {
    for (const message of messages) {
      if (isEvent(message)) this.applyEvent(message);
      else this.place(message);
    }
    this.decorate();
  }

  item(message) {
    return messageItem(message, this.mention, message.user.id === this.me.id);
  }

  // An edit or a delete of a message on screen; one of a message not shown (older than
  // what is loaded) changes nothing: that message comes in its current state when it is.
  applyEvent(event) {
    const item = this.byId.get(event.target);
    if (!item || item.classList.contains("deleted")) return;
    this.keepBottom(() => {
      if (event.type === "delete") showDeleted(item);
      else showEdited(item, event.data, event.ts, this.mention);
    });
    this.actions.applied?.(item, event);
  }

  // The message a search result opened: marked, and in the middle of the list.
  highlight(id) {
    const item = this.byId.get(id);
    if (!item) return;
    item.classList.add("hit");
    item.scrollIntoView({ block: "center" });
  }

  addPending(clientId, text) {
    const item = pendingItem(clientId, text, this.me);
    this.byClientId.set(clientId, item);
    this.keepBottom(() => this.list.append(item));
    this.toBottom(); // what I just sent is what I want to see
  }

  // A refused message: it stays where it was, with Retry (when trying again can help)
  // and Delete.
  showError(frame, final) {
    const item = frame.client_id && this.byClientId.get(frame.client_id);
    if (!item) {
      this.notice(`⚠ ${frame.message}`);
      return;
    }
    item.querySelector(".problem")?.remove();
    const problem = document.createElement("div");
    problem.className = "problem";
    problem.setAttribute("role", "alert");
    const reason = document.createElement("span");
    reason.textContent = final ? `Not sent: ${frame.message}.` : `Not stored yet: ${frame.message}; trying again…`;
    problem.append(reason);
    if (final) {
      item.classList.add("failed");
      const text = item.querySelector(".text").textContent;
      if (RETRYABLE.has(frame.code)) problem.append(this.button("Retry", () => this.retry(item, text)));
      problem.append(this.button("Delete", () => this.discard(item)));
    }
    this.keepBottom(() => item.querySelector(".body").append(problem));
  }

  button(label, action) {
    const button = document.createElement("button");
    button.type = "button";
    button.className = "small";
    button.textContent = label;
    button.addEventListener("click", action);
    return button;
  }

  retry(item, text) {
    item.classList.remove("failed");
    item.querySelector(".problem")?.remove();
    this.actions.retry(item.dataset.clientId, text);
  }

  discard(item) {
    this.byClientId.delete(item.dataset.clientId);
    item.remove();
    this.decorate();
    this.actions.discard(item.dataset.clientId);
  }

  notice(text, ts) {
    this.keepBottom(() => this.list.append(noticeItem(text, ts)));
  }

  // join/left as one line per run: "alice joined", "alice and bob left",
  // "3 people joined: alice, bob, carol".
  presence(kind, user, ts) {
    const last = this.list.lastElementChild;
    const run =
      last && last.dataset.presence === kind && Date.parse(ts) - Date.parse(last.dataset.ts) < CONDENSE_MS
        ? last
        : null;
    if (run) {
      if (!run.names.includes(user.name)) run.names.push(user.name);
      run.querySelector(".body").textContent = presenceText(kind, run.names);
      return;
    }
    const item = noticeItem(presenceText(kind, [user.name]), ts);
    item.dataset.presence = kind;
    item.names = [user.name];
    this.keepBottom(() => this.list.append(item));
  }

  showBelow(count) {
    this.unseenBelow += count;
    this.below.textContent = `${this.unseenBelow} new message${this.unseenBelow === 1 ? "" : "s"} below`;
    this.below.hidden = false;
  }

  clearBelow() {
    this.unseenBelow = 0;
    this.below.hidden = true;
  }

  // Day dividers where the local date changes; `continued` on a message that follows
  // one of the same author within GROUP_MS (its header is hidden). Dividers that are
  // already right stay, so assistive technology does not hear them again.
  decorate() {
    const now = new Date();
    let day = null;
    let previous = null;
    let spare = null; // a divider met in the walk, not yet known to be needed
    for (let node = this.list.firstElementChild; node; ) {
      const next = node.nextElementSibling;
      if (node.classList.contains("unread-divider")) {
        previous = null; // the first message below "New messages" shows its author
        node = next;
        continue;
      }
      if (node.classList.contains("day")) {
        if (spare) spare.remove();
        spare = node;
        node = next;
        continue;
      }
      const date = new Date(node.dataset.ts);
      const key = dayKey(date);
      if (key !== day) {
        const label = dayLabel(date, now);
        if (spare && spare.dataset.day === key && spare.textContent === label) spare = null;
        else this.list.insertBefore(divider(key, label), node);
        day = key;
        previous = null;
      }
      if (spare) spare.remove();
      spare = null;
      const message = node.classList.contains("message");
      const continued =
        message &&
        previous !== null &&
        previous.dataset.userId === node.dataset.userId &&
        date - new Date(previous.dataset.ts) < GROUP_MS;
      node.classList.toggle("continued", continued);
      previous = message ? node : null;
      node = next;
    }
    if (spare) spare.remove();
  }
}

function presenceText(kind, names) {
  const verb = kind === "join" ? "joined" : "left";
  if (names.length === 1) return `${names[0]} ${verb}`;
  if (names.length === 2) return `${names[0]} and ${names[1]} ${verb}`;
  return `${names.length} people ${verb}: ${names.join(", ")}`;
}

function divider(key, label) {
  const item = document.createElement("li");
  item.className = "day";
  item.dataset.day = key;
  item.setAttribute("role", "separator");
  item.textContent = label;
  return item;
}
