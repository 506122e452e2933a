// What this tab has read. A message counts as read once at least half of it (or half
// the list's height, for a long one) has been on screen while the tab was visible; the
// highest such id goes to the server as {"type": "read", "id"} at once, then at most
// every SETTLE_MS while the reader scrolls, and never backwards (docs/protocol.md §18).
// Also the "New messages" divider above the first unread message from someone else.

const SETTLE_MS = 300;
const THRESHOLDS = [0, 0.25, 0.5, 0.75, 1];

export class ReadTracker {
  // send(id) sends the read frame; changed() runs whenever what counts as unread may
  // have changed (the position moved, messages came or went, the tab was hidden or shown).
  constructor(list, me, send, changed) {
    this.list = list;
    this.me = me;
    this.send = send;
    this.changed = changed;
    this.readId = 0; // the highest id read: here, in another tab, or as the server says
    this.sentId = 0; // the highest id this tab has sent
    this.inView = new Set(); // ids on screen now (whether or not the tab is visible)
    this.timer = null;
    this.lastFlush = -Infinity;
    this.observer = new IntersectionObserver((entries) => this.saw(entries), { root: list, threshold: THRESHOLDS });
    // Every stored message the view adds is watched, whichever code path added it.
    new MutationObserver((records) => this.listChanged(records)).observe(list, { childList: true });
    document.addEventListener("visibilitychange", () => {
      if (this.visible()) this.settle();
      else this.flush(true);
      this.changed();
    });
    // Leaving the page (another room, a reload): what was on screen until now was seen.
    window.addEventListener("pagehide", () => this.flush(true));
  }

  listChanged(records) {
    for (const record of records) {
      for (const node of record.addedNodes) if (node.dataset?.id) this.observer.observe(node);
      for (const node of record.removedNodes) {
        if (!node.dataset?.id) continue;
        this.observer.unobserve(node);
        this.inView.delete(Number(node.dataset.id));
      }
    }
    this.changed();
  }

  saw(entries) {
    for (const entry of entries) {
      const id = Number(entry.target.dataset.id);
      const half = entry.rootBounds ? entry.rootBounds.height / 2 : Infinity;
      const seen = entry.isIntersecting && (entry.intersectionRatio >= 0.5 || entry.intersectionRect.height >= half);
      if (seen) this.inView.add(id);
      else this.inView.delete(id);
    }
    this.settle();
  }

  visible() {
    return document.visibilityState === "visible";
  }

  // The first read goes at once (a reader who opens a room and leaves it has read it);
  // while scrolling, at most one every SETTLE_MS, with the highest id seen by then.
  settle() {
    if (this.timer !== null) return;
    const wait = Math.max(0, this.lastFlush + SETTLE_MS - performance.now());
    this.timer = setTimeout(() => this.flush(), wait);
  }

  // `leaving`: the tab is being hidden or left, and what is on screen was seen.
  flush(leaving = false) {
    clearTimeout(this.timer);
    this.timer = null;
    if ((!leaving && !this.visible()) || !this.inView.size) return;
    this.lastFlush = performance.now();
    const highest = Math.max(...this.inView);
    if (highest <= this.readId) return;
    this.readId = highest;
    this.sentId = highest;
    this.send(highest);
    this.changed();
  }

  // Another tab's position (a read frame).
  known(id) {
    const position = Number(id) || 0;
    if (position <= this.readId) return;
    this.readId = position;
    this.changed();
  }

  // The server's position (a history frame): what this tab read while the socket was
  // down is sent again, and what is on screen now is looked at.
  resync(id) {
    this.known(id);
    if (this.sentId > (Number(id) || 0)) this.send(this.sentId);
    this.settle();
  }

  // Is a message shown here unread: from someone else, after the read position, and
  // not on screen in a visible tab (about to count as read)?
  isUnread(item) {
    const id = Number(item.dataset.id);
    if (id <= this.readId || item.dataset.userId === this.me.id) return false;
    return !(this.visible() && this.inView.has(id));
  }

  // Unread chat messages and mentions among those shown.
  counts() {
    let unread = 0;
    let mentions = 0;
    for (const item of this.list.querySelectorAll("li.message[data-id]")) {
      if (!this.isUnread(item)) continue;
      unread += 1;
      if (item.classList.contains("mention")) mentions += 1;
    }
    return { unread, mentions };
  }

  // "New messages" above the first message from someone else after `afterId`.
  divide(afterId) {
    this.list.querySelector("li.unread-divider")?.remove();
    const first = [...this.list.querySelectorAll("li.message[data-id]")].find(
      (item) => Number(item.dataset.id) > afterId && item.dataset.userId !== this.me.id,
    );
    if (!first) return null;
    const divider = document.createElement("li");
    divider.className = "unread-divider";
    divider.setAttribute("role", "separator");
    divider.textContent = "New messages";
    this.list.insertBefore(divider, first);
    return divider;
  }

  // Messages arrived while nobody looks (a hidden tab): the divider goes above the
  // first of them, unless it already marks messages still unread.
  divideIfAway() {
    if (this.visible()) return;
    let marked = this.list.querySelector("li.unread-divider")?.nextElementSibling;
    while (marked && !marked.dataset.id) marked = marked.nextElementSibling;
    if (marked && Number(marked.dataset.id) > this.readId) return;
    this.divide(this.readId);
  }
}

// Scroll the list so that `item` is at its top, with a little of what came before.
export function scrollToTop(list, item) {
  list.scrollTop += item.getBoundingClientRect().top - list.getBoundingClientRect().top - 8;
}
