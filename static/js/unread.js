// The tab's title counts what is unread in all your rooms: "(3) #lobby · quartchat"
// (the room list sums its badges; this room's messages count until they are seen).

export class UnreadTitle {
  constructor() {
    this.base = document.title;
    this.count = 0;
  }

  // The room's own title changed (a DM is named by the other person).
  rename(base) {
    this.base = base;
    this.set(this.count);
  }

  set(count) {
    this.count = count;
    const shown = count >= 1000 ? "1000+" : String(count);
    document.title = count ? `(${shown}) ${this.base}` : this.base;
  }
}
