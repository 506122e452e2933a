// `@` completes names in the message box: typing "@al" offers the room's people whose
// names start with "al" (who is online, the members of a private room, who wrote in
// what is shown). ↑/↓ choose, Enter or Tab completes, Escape closes.

const SHOWN = 8;
// "@" at the start or after a space, then what is typed of the name up to the caret.
const TYPED = /(^|\s)@([^\s@]{0,64})$/u;

export class MentionCompleter {
  // names() → the names to offer (the page's own user left out by the caller).
  constructor(form, names) {
    this.box = form.querySelector("#text");
    this.names = names;
    this.list = document.createElement("ul");
    this.list.id = "mention-list";
    this.list.className = "mention-list";
    this.list.setAttribute("role", "listbox");
    this.list.setAttribute("aria-label", "People to mention");
    this.list.hidden = true;
    form.append(this.list);
    this.box.setAttribute("aria-autocomplete", "list");
    this.box.setAttribute("aria-controls", this.list.id);
    this.choices = [];
    this.chosen = 0;
    this.start = 0; // where the "@" is
    this.box.addEventListener("input", () => this.typed());
    this.box.addEventListener("blur", () => this.close());
    this.box.addEventListener("click", () => this.typed());
    // Capture on the form: these keys are ours before the box sends on Enter.
    form.addEventListener("keydown", (event) => this.key(event), true);
    this.list.addEventListener("mousedown", (event) => {
      const option = event.target.closest("[role=option]");
      if (!option) return;
      event.preventDefault(); // the box keeps the focus
      this.complete(Number(option.dataset.index));
    });
  }

  typed() {
    const before = this.box.value.slice(0, this.box.selectionStart);
    const match = this.box.selectionStart === this.box.selectionEnd && TYPED.exec(before);
    if (!match) {
      this.close();
      return;
    }
    const typed = match[2].toLowerCase();
    this.start = before.length - match[2].length - 1;
    this.choices = [...new Set(this.names())]
      .filter((name) => name.toLowerCase().startsWith(typed))
      .sort((a, b) => a.localeCompare(b))
      .slice(0, SHOWN);
    this.chosen = 0;
    if (!this.choices.length) {
      this.close();
      return;
    }
    this.render();
  }

  render() {
    this.list.replaceChildren(
      ...this.choices.map((name, index) => {
        const option = document.createElement("li");
        option.id = `mention-option-${index}`;
        option.setAttribute("role", "option");
        option.dataset.index = String(index);
        option.setAttribute("aria-selected", String(index === this.chosen));
        option.textContent = `@${name}`;
        return option;
      }),
    );
    this.list.hidden = false;
    this.box.setAttribute("aria-expanded", "true");
    this.box.setAttribute("aria-activedescendant", `mention-option-${this.chosen}`);
  }

  close() {
    this.list.hidden = true;
    this.choices = [];
    this.box.setAttribute("aria-expanded", "false");
    this.box.removeAttribute("aria-activedescendant");
  }

  key(event) {
    if (this.list.hidden || event.isComposing) return;
    if (event.key === "ArrowDown" || event.key === "ArrowUp") {
      const step = event.key === "ArrowDown" ? 1 : -1;
      this.chosen = (this.chosen + step + this.choices.length) % this.choices.length;
      this.render();
    } else if ((event.key === "Enter" && !event.shiftKey) || event.key === "Tab") {
      this.complete(this.chosen);
    } else if (event.key === "Escape") {
      this.close();
    } else {
      return;
    }
    event.preventDefault();
    event.stopPropagation();
  }

  // "@al" becomes "@alice " and the caret goes after it.
  complete(index) {
    const name = this.choices[index];
    if (name === undefined) return;
    const value = this.box.value;
    const end = this.box.selectionStart;
    const inserted = `@${name} `;
    this.box.value = value.slice(0, this.start) + inserted + value.slice(end);
    const caret = this.start + inserted.length;
    this.box.setSelectionRange(caret, caret);
    this.close();
    this.box.dispatchEvent(new Event("input", { bubbles: true })); // the draft and counter follow
  }
}
