// The message box: Enter sends, it grows with its text up to a limit, a counter
// appears near the length limit (the server refuses longer texts: nothing is cut),
// and what is typed is kept per room across reloads until it is sent. While a message
// is being edited the box holds its text: Enter saves, Escape cancels, and the draft
// that was there comes back afterwards.

const COUNTER_FROM = 0.9; // of the limit: the counter shows from here on
const MAX_ROWS_PX = 200; // the box grows up to this height, then scrolls

export class Compose {
  // submit(text) sends; it is called only with text that is not blank or too long.
  // edits: {last() (↑ in an empty box), save(id, text), cancel(id)}.
  constructor(form, room, submit, edits) {
    this.form = form;
    this.box = form.querySelector("#text");
    this.counter = form.querySelector("#text-counter");
    this.limit = Number(this.box.dataset.maxChars);
    this.draftKey = `quartchat:draft:${room}`;
    this.submit = submit;
    this.edits = edits;
    this.editing = null; // {id, draft} while a message is being edited
    this.box.value = this.loadDraft();
    form.addEventListener("submit", (event) => {
      event.preventDefault();
      this.send();
    });
    this.box.addEventListener("keydown", (event) => {
      if (event.key === "Enter" && !event.shiftKey && !event.isComposing) {
        event.preventDefault();
        this.send();
      } else if (event.key === "ArrowUp" && !this.box.value && !this.editing && !event.isComposing) {
        if (this.edits.last()) event.preventDefault();
      } else if (event.key === "Escape" && this.editing) {
        event.preventDefault();
        this.edits.cancel(this.editing.id);
      }
    });
    this.box.addEventListener("input", () => this.changed());
    this.changed();
  }

  // This room can no longer be written to from here (removed, left, not found).
  disable(placeholder) {
    this.box.disabled = true;
    this.box.placeholder = placeholder;
    for (const element of this.form.elements) element.disabled = true;
  }

  // The placeholder names the room as the page shows it (a DM: the other person).
  name(label) {
    if (!this.box.disabled) this.box.placeholder = `Message ${label} (Enter sends, Shift+Enter for a new line)`;
  }

  // The box edits message `id`: it holds `text`; what was typed waits until endEdit().
  startEdit(id, text) {
    const draft = this.editing ? this.editing.draft : this.box.value;
    this.editing = { id, draft };
    this.box.value = text;
    this.changed();
    this.box.focus();
    this.box.setSelectionRange(text.length, text.length);
  }

  endEdit() {
    if (!this.editing) return;
    this.box.value = this.editing.draft;
    this.editing = null;
    this.changed();
    this.box.focus();
  }

  send() {
    const value = this.box.value;
    if (this.length() > this.limit) return;
    if (this.editing) {
      this.edits.save(this.editing.id, value);
      return;
    }
    if (!value.trim()) return;
    this.submit(value);
    this.box.value = "";
    this.changed();
    this.box.focus();
  }

  // Characters as the server counts them (code points, not UTF-16 units).
  length() {
    let count = 0;
    for (const _ of this.box.value) count += 1;
    return count;
  }

  changed() {
    this.box.style.height = "auto";
    this.box.style.height = `${Math.min(this.box.scrollHeight + 2, MAX_ROWS_PX)}px`;
    const length = this.length();
    const over = length > this.limit;
    this.counter.hidden = length < this.limit * COUNTER_FROM;
    this.counter.textContent = over
      ? `${length - this.limit} characters too long`
      : `${this.limit - length} characters left`;
    this.counter.classList.toggle("over", over);
    this.box.setAttribute("aria-invalid", String(over));
    if (!this.editing) this.saveDraft(this.box.value);
  }

  loadDraft() {
    try {
      return window.localStorage.getItem(this.draftKey) ?? "";
    } catch (error) {
      console.warn("drafts are not kept: localStorage is unavailable", error);
      return "";
    }
  }

  saveDraft(value) {
    try {
      if (value) window.localStorage.setItem(this.draftKey, value);
      else window.localStorage.removeItem(this.draftKey);
    } catch (error) {
      console.warn("drafts are not kept: localStorage is unavailable", error);
    }
  }

  focus() {
    this.box.focus();
  }
}
