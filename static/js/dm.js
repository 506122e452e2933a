// Direct messages: POST /api/dm {"name"} answers with the one DM room of the two of
// you (the same however often asked), and the page goes there. Started from the
// "Message someone" box or from a name in the online list.
import { callApi, problemLine, reason, typedName, whileBusy } from "./api.js";

// Go to the DM with `name` (true); on failure, `say` gets the reason in words.
export async function startDm(name, say) {
  if (!name) {
    say("Type the name of the person to message.");
    return false;
  }
  const answer = await callApi("POST", "/api/dm", { name });
  if (answer.ok && answer.body.room) {
    window.location.assign(`/r/${encodeURIComponent(answer.body.room.name)}`);
    return true;
  }
  if (answer.status === 404) say(`No one is called “${name}”.`);
  else say(reason(answer, `The conversation could not be started (HTTP ${answer.status}).`));
  return false;
}

export function wireDmForm(form) {
  const input = form.querySelector("#dm-name");
  const say = problemLine(input, form.querySelector("#dm-problem"));
  input.addEventListener("input", () => say(""));
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    whileBusy(form, () => startDm(typedName(input), say));
  });
}

// The online list's names are buttons: choosing one offers "Message <name>" below the
// list (one menu for the list, so a name's own text stays just the name).
export function wireUserMenu(root, me) {
  const list = root.querySelector("#users");
  const menu = root.querySelector("#user-menu");
  const action = root.querySelector("#user-message");
  let chosen = null;
  const close = () => {
    menu.hidden = true;
    chosen = null;
    for (const pressed of list.querySelectorAll('[aria-expanded="true"]')) pressed.setAttribute("aria-expanded", "false");
  };
  list.addEventListener("click", (event) => {
    const button = event.target.closest("button[data-user-name]");
    if (!button || button.dataset.userId === me.id) return;
    const again = chosen === button.dataset.userName;
    close();
    if (again) return;
    chosen = button.dataset.userName;
    button.setAttribute("aria-expanded", "true");
    action.textContent = `Message ${chosen}`;
    menu.hidden = false;
    if (event.detail === 0) action.focus(); // chosen with the keyboard: the action is next
  });
  action.addEventListener("click", () => {
    if (chosen) whileBusy(menu, () => startDm(chosen, (text) => (action.textContent = text)));
  });
  document.addEventListener("keydown", (event) => {
    if (event.key === "Escape" && !menu.hidden) close();
  });
}
