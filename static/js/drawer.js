// A side panel that is a column on a desktop and, on a phone, a drawer over the
// conversation with a button that opens it and one that closes it (Escape closes too).

export class Drawer {
  constructor(panel, toggle, close) {
    this.panel = panel;
    this.toggle = toggle;
    this.close = close;
    toggle.addEventListener("click", () => this.open(toggle.getAttribute("aria-expanded") !== "true"));
    close.addEventListener("click", () => this.open(false));
    document.addEventListener("keydown", (event) => {
      if (event.key === "Escape" && toggle.getAttribute("aria-expanded") === "true") this.open(false);
    });
  }

  open(yes) {
    this.toggle.setAttribute("aria-expanded", String(yes));
    this.panel.classList.toggle("open", yes);
    if (yes) this.close.focus();
    else if (document.activeElement && this.panel.contains(document.activeElement)) this.toggle.focus();
  }
}
