// Messages from others that arrived while the tab was hidden, counted in its title:
// "(3) #lobby · quartchat". Cleared when the tab is seen again.

export class UnreadTitle {
  constructor() {
    this.base = document.title;
    this.count = 0;
    document.addEventListener("visibilitychange", () => {
      if (document.visibilityState === "visible") this.set(0);
    });
  }

  // The room's own title changed (a DM is named by the other person).
  rename(base) {
    this.base = base;
    this.set(this.count);
  }

  arrived(count) {
    if (count > 0 && document.visibilityState === "hidden") this.set(this.count + count);
  }

  set(count) {
    this.count = count;
    document.title = count ? `(${count}) ${this.base}` : this.base;
  }
}
