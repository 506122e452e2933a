// The search box (docs/protocol.md §16): Ctrl+K or "/" focuses it; the results are
// grouped by room, newest first, with each match marked; a result opens its room at
// that message (`/r/<room>?at=<id>`, which app.js opens with `around`).
// Message text goes in as text nodes and <mark> elements filled with textContent only:
// a message can never become markup here.
import { timeElement } from "./dates.js";
import { hueOf } from "./message.js";

const PAGE = 50;
const SNIPPET_CHARS = 240; // of a long message, this much around its first match
const MAX_QUERY_CHARS = 200;

// The message id a search result asked this page to open, or null.
export function jumpTarget() {
  const at = new URLSearchParams(window.location.search).get("at");
  return at && /^\d{1,18}$/.test(at) ? Number(at) : null;
}

// The terms of a query as the server reads them: quoted phrases as written, other words.
export function queryTerms(q) {
  const terms = [];
  q.split('"').forEach((part, index) => {
    for (const term of index % 2 ? [part.trim()] : part.split(/\s+/)) {
      if (term && !terms.includes(term)) terms.push(term);
    }
  });
  return terms;
}

// `text` as a fragment: text nodes, and a <mark> (its textContent) for every match.
export function marked(text, terms) {
  const fragment = document.createDocumentFragment();
  if (!terms.length) {
    fragment.append(text);
    return fragment;
  }
  const longestFirst = [...terms].sort((a, b) => b.length - a.length);
  const pattern = new RegExp(longestFirst.map((t) => t.replace(/[.*+?^${}()|[\]\\]/g, "\\$&")).join("|"), "giu");
  let from = 0;
  for (const match of text.matchAll(pattern)) {
    if (match.index > from) fragment.append(text.slice(from, match.index));
    const mark = document.createElement("mark");
    mark.textContent = match[0];
    fragment.append(mark);
    from = match.index + match[0].length;
  }
  if (from < text.length) fragment.append(text.slice(from));
  return fragment;
}

// A long text cut to SNIPPET_CHARS around its first match, with "…" where it was cut.
function snippet(text, terms) {
  const chars = Array.from(text);
  if (chars.length <= SNIPPET_CHARS) return text;
  const lower = text.toLowerCase();
  const found = Math.min(...terms.map((t) => lower.indexOf(t.toLowerCase())).filter((i) => i >= 0), text.length);
  const at = Array.from(text.slice(0, found)).length; // in characters, not UTF-16 units
  const start = Math.max(0, Math.min(at - SNIPPET_CHARS / 3, chars.length - SNIPPET_CHARS));
  const cut = chars.slice(start, start + SNIPPET_CHARS).join("");
  return (start > 0 ? "…" : "") + cut + (start + SNIPPET_CHARS < chars.length ? "…" : "");
}

export class SearchBox {
  constructor(root) {
    this.form = root.querySelector("#search-form");
    this.input = this.form.querySelector("#search-input");
    this.panel = root.querySelector("#search-results");
    this.summary = this.panel.querySelector("#search-summary");
    this.list = this.panel.querySelector("#search-list");
    this.more = this.panel.querySelector("#search-more");
    this.terms = [];
    this.query = "";
    this.oldestId = null;
    this.groups = new Map(); // room -> its <ul> in the results
    this.form.addEventListener("submit", (event) => {
      event.preventDefault();
      this.run(this.input.value);
    });
    this.more.addEventListener("click", () => this.page());
    this.panel.querySelector("#search-close").addEventListener("click", () => this.close());
    document.addEventListener("keydown", (event) => this.key(event));
    document.addEventListener("click", (event) => {
      if (!this.panel.hidden && !this.panel.contains(event.target) && !this.form.contains(event.target)) this.close();
    });
  }

  key(event) {
    const typing = event.target.closest?.("input, textarea, [contenteditable]");
    if ((event.ctrlKey || event.metaKey) && event.key.toLowerCase() === "k") {
      event.preventDefault();
      this.focus();
    } else if (event.key === "/" && !typing && !event.ctrlKey && !event.metaKey && !event.altKey) {
      event.preventDefault();
      this.focus();
    } else if (event.key === "Escape" && !this.panel.hidden) {
      this.close();
    }
  }

  focus() {
    this.input.focus();
    this.input.select();
  }

  close() {
    this.panel.hidden = true;
    this.input.blur();
  }

  async run(value) {
    const q = value.trim();
    if (!q) return;
    this.query = q.slice(0, MAX_QUERY_CHARS);
    this.terms = queryTerms(this.query);
    this.oldestId = null;
    this.groups.clear();
    this.list.replaceChildren();
    this.panel.hidden = false;
    this.summary.textContent = "Searching…";
    await this.page();
  }

  async page() {
    const params = new URLSearchParams({ q: this.query, limit: String(PAGE) });
    if (this.oldestId !== null) params.set("before", String(this.oldestId));
    this.more.hidden = true;
    let response;
    try {
      response = await fetch(`/api/search?${params}`, { credentials: "same-origin" });
    } catch {
      this.summary.textContent = "The search did not reach the server: try again.";
      return;
    }
    const body = await response.json().catch(() => ({}));
    if (!response.ok) {
      this.summary.textContent = body.error ? `Cannot search: ${body.error}.` : `Cannot search (HTTP ${response.status}).`;
      return;
    }
    for (const message of body.messages) this.add(message);
    if (body.messages.length) this.oldestId = body.messages.at(-1).id;
    const shown = this.list.querySelectorAll("li.hit").length;
    this.summary.textContent = shown
      ? `${shown}${body.has_more ? "+" : ""} message${shown === 1 ? "" : "s"} found`
      : "Nothing found.";
    this.more.hidden = !body.has_more;
  }

  // One result under its room's heading (made when the room's first result comes).
  add(message) {
    let group = this.groups.get(message.room);
    if (!group) {
      const section = document.createElement("li");
      section.className = "room-group";
      const heading = document.createElement("h3");
      heading.textContent = `#${message.room}`;
      group = document.createElement("ul");
      section.append(heading, group);
      this.list.append(section);
      this.groups.set(message.room, group);
    }
    const item = document.createElement("li");
    item.className = "hit";
    const link = document.createElement("a");
    link.href = `/r/${encodeURIComponent(message.room)}?at=${message.id}`;
    link.dataset.id = String(message.id);
    const author = document.createElement("span");
    author.className = `author ${hueOf(message.user.name)}`;
    author.textContent = message.user.name;
    const text = document.createElement("span");
    text.className = "text";
    text.append(marked(snippet(message.data, this.terms), this.terms));
    link.append(timeElement(message.ts), author, text);
    item.append(link);
    group.append(item);
  }
}
