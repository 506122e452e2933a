// Who is online: the list, its count on the drawer button, and the drawer itself
// (on a phone the list slides over the conversation instead of taking a column).

export class UserList {
  constructor(root) {
    this.list = root.querySelector("#users");
    this.panel = root.querySelector("#users-panel");
    this.toggle = root.querySelector("#users-toggle");
    this.count = root.querySelector("#users-count");
    this.toggle.addEventListener("click", () => this.open(this.toggle.getAttribute("aria-expanded") !== "true"));
    root.querySelector("#users-close").addEventListener("click", () => this.open(false));
    document.addEventListener("keydown", (event) => {
      if (event.key === "Escape" && this.toggle.getAttribute("aria-expanded") === "true") this.open(false);
    });
  }

  open(yes) {
    this.toggle.setAttribute("aria-expanded", String(yes));
    this.panel.classList.toggle("open", yes);
    if (yes) this.panel.querySelector("#users-close").focus();
    else if (document.activeElement && this.panel.contains(document.activeElement)) this.toggle.focus();
  }

  set(users) {
    this.list.replaceChildren(
      ...users.map((user) => {
        const item = document.createElement("li");
        item.textContent = user.name;
        item.dataset.userId = user.id;
        return item;
      }),
    );
    this.count.textContent = String(users.length);
  }

  // While the connection is down the list is what it was, not what it is.
  stale(yes) {
    this.panel.classList.toggle("stale", yes);
  }
}
