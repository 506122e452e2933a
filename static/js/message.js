// One line of the conversation as DOM: a chat message (as it is now: edited, deleted),
// a message of ours not yet confirmed, or a notice. Names and texts go in as text nodes
// only.
import { fullDateTime, timeElement } from "./dates.js";
import { withLinks } from "./links.js";

const HUES = 10; // .hue-0 … .hue-9 in style.css, each readable on both themes

// The same name always gets the same colour, on every page and every reload.
export function hueOf(name) {
  let hash = 0;
  for (const char of name) hash = (hash * 31 + char.codePointAt(0)) >>> 0;
  return `hue-${hash % HUES}`;
}

// The author, then ": " (hidden to the eye, kept for copying and screen readers), then
// the text in a block of its own, so wrapped and later lines align with the first.
function body(name, text) {
  const body = document.createElement("div");
  body.className = "body";
  const author = document.createElement("span");
  author.className = `author ${hueOf(name)}`;
  author.textContent = name;
  const separator = document.createElement("span");
  separator.className = "separator";
  separator.textContent = ": ";
  const content = document.createElement("span");
  content.className = "text";
  content.append(withLinks(text));
  body.append(author, separator, content);
  return body;
}

// mine: the reader wrote it (its menu offers Edit); the menu button shows on others'
// messages only to a room's owner or an admin (style.css, `.moderator`).
export function messageItem(message, mention, mine = false) {
  const item = document.createElement("li");
  item.className = "message";
  item.dataset.id = String(message.id);
  item.dataset.ts = message.ts;
  item.dataset.userId = message.user.id;
  item.append(timeElement(message.ts), body(message.user.name, message.data));
  item.classList.toggle("mine", mine);
  if (message.deleted) {
    showDeleted(item);
    return item;
  }
  item.append(menuButton(message.user.name));
  if (message.edited) showEdited(item, message.data, message.edited, mention);
  else if (mention && mention.test(message.data)) item.classList.add("mention"); // @yourname
  return item;
}

function menuButton(author) {
  const button = document.createElement("button");
  button.type = "button";
  button.className = "more";
  button.setAttribute("aria-haspopup", "menu");
  button.setAttribute("aria-expanded", "false");
  button.setAttribute("aria-label", `Actions for ${author}'s message`);
  button.textContent = "⋯";
  return button;
}

// The text as edited at `ts`, then "(edited)" with the time of the edit on hover.
export function showEdited(item, text, ts, mention) {
  const content = item.querySelector(".text");
  content.replaceChildren(withLinks(text));
  const mark = document.createElement("span");
  mark.className = "edited";
  mark.title = `edited ${fullDateTime.format(new Date(ts))}`;
  mark.textContent = " (edited)";
  item.querySelector(".edited")?.remove();
  content.after(mark);
  item.classList.add("was-edited");
  item.classList.toggle("mention", Boolean(mention && mention.test(text)));
}

// Gone for everyone: no text, no menu, only a muted "message deleted".
export function showDeleted(item) {
  item.classList.add("deleted");
  item.classList.remove("mention", "saving", "editing", "was-edited");
  item.querySelector(".text").textContent = "message deleted";
  for (const stale of item.querySelectorAll(".edited, .more, .problem")) stale.remove();
}

export function pendingItem(clientId, text, user) {
  const item = document.createElement("li");
  item.className = "message pending";
  item.dataset.clientId = clientId;
  item.dataset.ts = new Date().toISOString();
  item.dataset.userId = user.id;
  item.append(timeElement(item.dataset.ts), body(user.name, text));
  return item;
}

export function noticeItem(text, ts = new Date().toISOString()) {
  const item = document.createElement("li");
  item.className = "notice";
  item.dataset.ts = ts;
  const content = document.createElement("span");
  content.className = "body";
  content.textContent = text;
  item.append(timeElement(ts), content);
  return item;
}
