// The "go to room" box: says the naming rule where the user types, refuses an invalid
// name with that rule (and a suggestion) instead of doing nothing.

const ROOM = /^[a-z0-9-]{1,64}$/;

// What an invalid name probably meant: "Bad_Room" -> "bad-room".
export function suggestRoom(name) {
  return name
    .toLowerCase()
    .replace(/[^a-z0-9-]+/g, "-")
    .replace(/^-+|-+$/g, "")
    .slice(0, 64);
}

export function wireRoomForm(form) {
  const input = form.querySelector("#room-input");
  const problem = form.querySelector("#room-problem");
  const say = (text) => {
    problem.textContent = text;
    problem.hidden = !text;
    input.setCustomValidity(text);
    input.setAttribute("aria-invalid", String(Boolean(text)));
  };
  input.addEventListener("input", () => say(""));
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    const name = input.value.trim().toLowerCase();
    if (ROOM.test(name)) {
      window.location.assign(`/r/${name}`);
      return;
    }
    const suggestion = suggestRoom(name);
    say(
      name === ""
        ? "Type a room name: 1–64 lowercase letters, digits or “-”."
        : `“${input.value.trim()}” is not a room name: use 1–64 lowercase letters, digits or “-”` +
            (suggestion ? `, e.g. “${suggestion}”.` : "."),
    );
    input.focus();
  });
}
