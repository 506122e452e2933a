// Editing and deleting messages (docs/protocol.md §17): the menu on a message (Edit on
// your own, Delete on your own or, for the room's owner or an admin, on any), ↑ in the
// empty message box to edit your last one, a confirmation before a delete, and a short
// line when the server refuses. The server decides; the menu only offers what it allows.
// What is shown changes when the events come back (view.js applyEvent).
import { callApi } from "./api.js";
import { showEdited } from "./message.js";

const PROBLEM_SHOWN_MS = 8000;
const REFUSED = new Map([
  ["not_found", "That message is no longer there."],
  ["forbidden", "You may not change that message."],
]);

export class MessageEdits {
  // send(frame) → false when there is no connection to send it on.
  constructor(root, room, me, view, compose, send) {
    this.root = root;
    this.me = me;
    this.view = view;
    this.compose = compose;
    this.send = send;
    this.panel = root.querySelector(".messages-panel");
    this.menu = root.querySelector("#message-menu");
    this.actions = root.querySelector("#message-actions");
    this.editButton = root.querySelector("#menu-edit");
    this.deleteButton = root.querySelector("#menu-delete");
    this.confirm = root.querySelector("#delete-confirm");
    this.bar = root.querySelector("#edit-bar");
    this.problem = root.querySelector("#edit-problem");
    this.openFor = null; // {item, toggle} while the menu is open
    this.editing = null; // the id of the message in the box
    this.saving = new Map(); // client_id -> {id, text, body, classes}: an edit not yet confirmed
    this.deleting = new Map(); // client_id -> id: a delete not yet confirmed, in send order
    this.nextClientId = 1;
    this.clientPrefix = `e-${Math.random().toString(36).slice(2, 10)}-`;
    this.wire(root);
    this.findRole(room);
  }

  // Delete on others' messages is for the room's owner and admins: the page knows an
  // admin from the page itself, an owner from the room's member list.
  async findRole(room) {
    if (this.me.role === "admin") {
      this.root.classList.add("moderator");
      return;
    }
    const answer = await callApi("GET", `/api/rooms/${encodeURIComponent(room)}/members`);
    const mine = answer.ok && Array.isArray(answer.body.members) && answer.body.members.find((m) => m.id === this.me.id);
    this.root.classList.toggle("moderator", Boolean(mine && mine.role === "owner"));
  }

  wire(root) {
    root.querySelector("#messages").addEventListener("click", (event) => {
      const toggle = event.target.closest(".more");
      if (toggle) this.toggleMenu(toggle.closest(".message"), toggle);
    });
    this.editButton.addEventListener("click", () => {
      const { item } = this.openFor;
      this.closeMenu(false);
      this.start(item);
    });
    this.deleteButton.addEventListener("click", () => {
      this.actions.hidden = true;
      this.confirm.hidden = false;
      this.confirm.querySelector("#delete-no").focus();
    });
    root.querySelector("#delete-yes").addEventListener("click", () => {
      const { item } = this.openFor;
      this.closeMenu(false);
      this.remove(item);
    });
    root.querySelector("#delete-no").addEventListener("click", () => this.closeMenu(true));
    root.querySelector("#edit-cancel").addEventListener("click", () => this.cancel(this.editing));
    this.menu.addEventListener("keydown", (event) => this.menuKey(event));
    document.addEventListener("click", (event) => {
      if (this.openFor && !this.menu.contains(event.target) && !this.openFor.toggle.contains(event.target)) {
        this.closeMenu(false);
      }
    });
    root.querySelector("#messages").addEventListener("scroll", () => this.placeMenu());
  }

  toggleMenu(item, toggle) {
    const same = this.openFor && this.openFor.toggle === toggle;
    this.closeMenu(false);
    if (same) return;
    const mine = item.classList.contains("mine");
    this.editButton.hidden = !mine;
    this.deleteButton.hidden = !(mine || this.root.classList.contains("moderator"));
    this.actions.hidden = false;
    this.confirm.hidden = true;
    this.openFor = { item, toggle };
    toggle.setAttribute("aria-expanded", "true");
    this.menu.hidden = false;
    this.placeMenu();
    this.menuItems()[0]?.focus();
  }

  // Below the message's button, right-aligned with it (above it when the list has no
  // room below, so the menu never covers the message box); closed once its message is gone.
  placeMenu() {
    if (!this.openFor) return;
    if (!this.openFor.toggle.isConnected) {
      this.closeMenu(false);
      return;
    }
    const panel = this.panel.getBoundingClientRect();
    const list = this.view.list.getBoundingClientRect();
    const at = this.openFor.toggle.getBoundingClientRect();
    const fits = at.bottom + this.menu.offsetHeight <= list.bottom;
    const top = fits ? at.bottom : Math.max(list.top, at.top - this.menu.offsetHeight);
    this.menu.style.top = `${top - panel.top}px`;
    this.menu.style.right = `${Math.max(0, panel.right - at.right)}px`;
  }

  closeMenu(refocus) {
    if (!this.openFor) return;
    const { toggle } = this.openFor;
    this.openFor = null;
    this.menu.hidden = true;
    toggle.setAttribute("aria-expanded", "false");
    if (refocus && toggle.isConnected) toggle.focus();
  }

  menuItems() {
    const shown = this.confirm.hidden ? this.actions : this.confirm;
    return [...shown.querySelectorAll("button")].filter((button) => !button.hidden);
  }

  menuKey(event) {
    if (event.key === "Escape") {
      event.preventDefault();
      event.stopPropagation();
      this.closeMenu(true);
      return;
    }
    if (event.key === "Tab") {
      this.closeMenu(false);
      return;
    }
    const step = { ArrowDown: 1, ArrowUp: -1 }[event.key];
    if (!step) return;
    event.preventDefault();
    const items = this.menuItems();
    const at = items.indexOf(document.activeElement);
    items[(at + step + items.length) % items.length]?.focus();
  }

  // ↑ in the empty box: your newest message that is still there; false if there is none.
  last() {
    const mine = this.view.list.querySelectorAll(".message.mine[data-id]:not(.deleted)");
    const item = mine[mine.length - 1];
    if (!item) return false;
    this.start(item);
    return true;
  }

  start(item) {
    if (this.editing !== null) this.view.byId.get(this.editing)?.classList.remove("editing");
    this.editing = Number(item.dataset.id);
    item.classList.add("editing");
    this.bar.hidden = false;
    this.say("");
    this.compose.startEdit(this.editing, item.querySelector(".text").textContent);
    item.scrollIntoView({ block: "nearest" });
  }

  cancel(id) {
    if (this.editing === null || id !== this.editing) return;
    this.view.byId.get(id)?.classList.remove("editing");
    this.editing = null;
    this.bar.hidden = true;
    this.compose.endEdit();
  }

  save(id, text) {
    if (!text.trim()) {
      this.say("An edit needs some text: to remove the message, choose Delete in its menu.");
      return;
    }
    const item = this.view.byId.get(id);
    if (!item || item.classList.contains("deleted")) {
      this.say(REFUSED.get("not_found"));
      this.cancel(id);
      return;
    }
    if (text === item.querySelector(".text").textContent) {
      this.cancel(id); // nothing changed: nothing to send
      return;
    }
    const clientId = this.clientPrefix + this.nextClientId++;
    if (!this.send({ type: "edit", id, data: text, client_id: clientId })) {
      this.say("Not connected: the edit is not saved yet. Try again once connected.");
      return; // the text stays in the box
    }
    this.saving.set(clientId, { id, text, body: item.querySelector(".body").cloneNode(true), classes: item.className });
    this.cancel(id);
    // Shown at once, muted, until the server's edit event confirms it.
    showEdited(item, text, new Date().toISOString(), this.view.mention);
    item.classList.add("saving");
  }

  remove(item) {
    const id = Number(item.dataset.id);
    const clientId = this.clientPrefix + this.nextClientId++;
    if (!this.send({ type: "delete", id, client_id: clientId })) {
      this.say("Not connected: nothing was deleted. Try again once connected.");
      return;
    }
    this.deleting.set(clientId, id);
    item.classList.add("saving");
    this.compose.focus();
  }

  // A new connection's history has been applied (a resume brings the events made
  // meanwhile): what is still unconfirmed never reached the server; send it again.
  resend() {
    for (const [clientId, { id, text }] of this.saving) this.send({ type: "edit", id, data: text, client_id: clientId });
    for (const [clientId, id] of this.deleting) this.send({ type: "delete", id, client_id: clientId });
  }

  // view.js changed a message shown: an edit or delete event arrived (from anyone).
  applied(item, event) {
    const id = event.target;
    for (const [clientId, pending] of this.saving) if (pending.id === id) this.saving.delete(clientId);
    if (event.type === "delete") {
      for (const [clientId, deleting] of this.deleting) if (deleting === id) this.deleting.delete(clientId);
      if (this.openFor && this.openFor.item === item) this.closeMenu(false);
      if (this.editing === id) {
        this.cancel(id);
        this.say("The message you were editing was deleted.");
      }
    }
    item.classList.remove("saving");
  }

  // A refusal of ours: true if it was about an edit or a delete (it is then shown here).
  refused(frame) {
    const pending = frame.client_id && this.saving.get(frame.client_id);
    if (pending) {
      this.saving.delete(frame.client_id);
      const item = this.view.byId.get(pending.id);
      if (item && !item.classList.contains("deleted")) {
        item.querySelector(".body").replaceWith(pending.body);
        item.className = pending.classes;
      }
      this.say(REFUSED.get(frame.code) || `Not saved: ${frame.message}.`);
      return true;
    }
    // A delete's refusal: by its client_id, or (a server that echoes none) the oldest one
    // waiting, as the server answers one connection's frames in order.
    let clientId = frame.client_id;
    if (!this.deleting.has(clientId)) {
      if (clientId || !REFUSED.has(frame.code)) return false;
      clientId = this.deleting.keys().next().value;
    }
    const id = this.deleting.get(clientId);
    this.deleting.delete(clientId);
    if (id !== undefined) this.view.byId.get(id)?.classList.remove("saving");
    this.say(REFUSED.get(frame.code) || `Not deleted: ${frame.message}.`);
    return true;
  }

  say(text) {
    clearTimeout(this.problemTimer);
    this.problem.textContent = text;
    this.problem.hidden = !text;
    if (text) this.problemTimer = setTimeout(() => this.say(""), PROBLEM_SHOWN_MS);
  }
}
