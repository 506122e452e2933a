// A <details> menu (the export menu) that closes like a menu: on Escape, on a click
// anywhere else, and once one of its links was chosen.

export function wireMenu(details) {
  const summary = details.querySelector("summary");
  document.addEventListener("keydown", (event) => {
    if (event.key === "Escape" && details.open) {
      details.open = false;
      summary.focus();
    }
  });
  document.addEventListener("click", (event) => {
    if (details.open && !details.contains(event.target)) details.open = false;
  });
  for (const link of details.querySelectorAll("a")) {
    // The download starts from the click; the menu has done its job.
    link.addEventListener("click", () => setTimeout(() => (details.open = false)));
  }
}
