// The DOM: messages, the user list, the status. Text goes in with textContent only.

const timeFormat = new Intl.DateTimeFormat(undefined, { hour: "2-digit", minute: "2-digit", second: "2-digit" });

export class ChatView {
  constructor(root) {
    this.list = root.querySelector("#messages");
    this.users = root.querySelector("#users");
    this.status = root.querySelector("#status");
    this.byId = new Map();
    this.byClientId = new Map();
  }

  atBottom() {
    return this.list.scrollHeight - this.list.scrollTop - this.list.clientHeight < 40;
  }

  keepBottom(update) {
    const stick = this.atBottom();
    update();
    if (stick) this.list.scrollTop = this.list.scrollHeight;
  }

  reset(messages) {
    this.list.replaceChildren();
    this.byId.clear();
    this.addMessages(messages);
    this.list.append(...this.byClientId.values()); // unconfirmed sends stay shown
    this.list.scrollTop = this.list.scrollHeight;
  }

  addMessages(messages) {
    this.keepBottom(() => {
      for (const message of messages) this.addMessage(message);
    });
  }

  addMessage(message) {
    const pending = message.client_id && this.byClientId.get(message.client_id);
    if (pending) {
      pending.remove();
      this.byClientId.delete(message.client_id);
    }
    if (this.byId.has(message.id)) return;
    const item = this.render(message);
    this.keepBottom(() => this.place(item, message.id));
    this.byId.set(message.id, item);
  }

  // In id order, above unconfirmed sends (they wait at the bottom). Usually an append.
  place(item, id) {
    let before = null;
    for (let node = this.list.lastElementChild; node; node = node.previousElementSibling) {
      const later = node.classList.contains("pending") || (node.dataset.id && Number(node.dataset.id) > id);
      if (!later) break;
      before = node;
    }
    this.list.insertBefore(item, before);
  }

  prepend(messages) {
    const before = this.list.scrollHeight - this.list.scrollTop;
    const fragment = document.createDocumentFragment();
    for (const message of messages) {
      if (this.byId.has(message.id)) continue;
      const item = this.render(message);
      this.byId.set(message.id, item);
      fragment.append(item);
    }
    this.list.prepend(fragment);
    this.list.scrollTop = this.list.scrollHeight - before;
  }

  render(message) {
    const item = document.createElement("li");
    item.dataset.id = String(message.id);
    const time = document.createElement("time");
    time.className = "meta";
    time.dateTime = message.ts;
    time.textContent = timeFormat.format(new Date(message.ts));
    const author = document.createElement("span");
    author.className = "author";
    author.textContent = message.user.name;
    const text = document.createElement("span");
    text.className = "text";
    text.textContent = message.data;
    item.append(time, author, text);
    return item;
  }

  addPending(clientId, text, userName) {
    const item = document.createElement("li");
    item.className = "pending";
    item.dataset.clientId = clientId;
    const author = document.createElement("span");
    author.className = "author";
    author.textContent = userName;
    const body = document.createElement("span");
    body.className = "text";
    body.textContent = text;
    item.append(author, body);
    this.byClientId.set(clientId, item);
    this.keepBottom(() => this.list.append(item));
  }

  showError(frame) {
    const item = frame.client_id && this.byClientId.get(frame.client_id);
    if (item) {
      item.classList.add("failed");
      const problem = document.createElement("span");
      problem.className = "problem";
      problem.textContent = `(${frame.message})`;
      item.append(problem);
      return;
    }
    this.notice(`⚠ ${frame.message}`);
  }

  notice(text) {
    const item = document.createElement("li");
    item.className = "notice";
    item.textContent = text;
    this.keepBottom(() => this.list.append(item));
  }

  setUsers(users) {
    this.users.replaceChildren(
      ...users.map((user) => {
        const item = document.createElement("li");
        item.textContent = user.name;
        item.dataset.userId = user.id;
        return item;
      }),
    );
  }

  setStatus(state) {
    this.status.className = `status ${state}`;
    this.status.textContent = state;
  }
}
