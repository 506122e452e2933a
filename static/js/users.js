// Who is online: the list, its count on the drawer button, and the drawer itself
// (on a phone the list slides over the conversation instead of taking a column).
// Each other person's name is a button (dm.js offers "Message <name>" for it).
import { Drawer } from "./drawer.js";

export class UserList {
  constructor(root, me) {
    this.me = me;
    this.list = root.querySelector("#users");
    this.panel = root.querySelector("#users-panel");
    this.count = root.querySelector("#users-count");
    this.drawer = new Drawer(this.panel, root.querySelector("#users-toggle"), root.querySelector("#users-close"));
  }

  set(users) {
    this.list.replaceChildren(
      ...users.map((user) => {
        const item = document.createElement("li");
        item.dataset.userId = user.id;
        if (user.id === this.me.id) {
          item.textContent = user.name;
        } else {
          const button = document.createElement("button");
          button.type = "button";
          button.className = "person";
          button.textContent = user.name;
          button.dataset.userId = user.id;
          button.dataset.userName = user.name;
          button.setAttribute("aria-expanded", "false");
          button.setAttribute("aria-controls", "user-menu");
          item.append(button);
        }
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
