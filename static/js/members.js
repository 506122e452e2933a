// The members of a private room (GET /api/rooms/<room>/members): the list, "Invite by
// name", "Leave room" (after a confirmation: coming back needs an invitation) and, for
// the owner or an admin, a Remove button per member. The server decides; the buttons
// only show what it would allow, and its refusals are shown in words.
import { callApi, problemLine, reason, typedName } from "./api.js";

export class MembersPanel {
  // hooks: {leaving(yes)} around our own DELETE (the 4003 that follows is expected),
  // changed() after any change (the room list refreshes).
  constructor(root, room, me, hooks) {
    this.room = room;
    this.me = me;
    this.hooks = hooks;
    this.section = root.querySelector("#members-section");
    this.list = root.querySelector("#members");
    this.base = `/api/rooms/${encodeURIComponent(room)}/members`;
    this.inviting = new Set(); // names whose invitation is on its way (a double Enter sends one)
    this.wireInvite(root.querySelector("#invite"));
    this.wireLeave(root);
  }

  // Shown for a private room only (a DM has its two members and no invitations).
  async show(yes) {
    this.section.hidden = !yes;
    if (yes) await this.refresh();
  }

  async refresh() {
    const asked = (this.asked = (this.asked || 0) + 1);
    const answer = await callApi("GET", this.base);
    if (asked !== this.asked) return; // a later request is on its way: its answer is newer
    if (!answer.ok || !Array.isArray(answer.body.members)) return;
    const members = answer.body.members;
    const mine = members.find((member) => member.id === this.me.id);
    const mayRemove = this.me.role === "admin" || (mine && mine.role === "owner");
    this.list.replaceChildren(...members.map((member) => this.item(member, mayRemove)));
  }

  item(member, mayRemove) {
    const item = document.createElement("li");
    item.dataset.userId = member.id;
    const name = document.createElement("span");
    name.className = "name";
    name.textContent = member.name;
    item.append(name);
    if (member.role === "owner") {
      const role = document.createElement("span");
      role.className = "role";
      role.textContent = "owner";
      item.append(role);
    }
    if (mayRemove && member.id !== this.me.id) {
      const remove = document.createElement("button");
      remove.type = "button";
      remove.className = "small remove";
      remove.textContent = "Remove";
      remove.setAttribute("aria-label", `Remove ${member.name} from #${this.room}`);
      remove.addEventListener("click", () => this.remove(member, remove));
      item.append(remove);
    }
    return item;
  }

  async remove(member, button) {
    button.disabled = true;
    const answer = await callApi("DELETE", `${this.base}/${encodeURIComponent(member.id)}`);
    if (!answer.ok) {
      button.disabled = false;
      button.textContent = reason(answer, `Could not remove (HTTP ${answer.status})`);
    }
    await this.refresh();
    this.hooks.changed();
  }

  wireInvite(form) {
    const input = form.querySelector("#invite-name");
    const say = problemLine(input, form.querySelector("#invite-problem"));
    input.addEventListener("input", () => say(""));
    form.addEventListener("submit", (event) => {
      event.preventDefault();
      this.invite(input, say);
    });
  }

  // Invite one name; the answer says it in words (201 added, 200 already a member).
  // Several may be on their way at once: typing the next name does not wait.
  async invite(input, say) {
    const name = typedName(input);
    if (!name) {
      say("Type the name of the person to invite.");
      return;
    }
    if (this.inviting.has(name)) return;
    this.inviting.add(name);
    const answer = await callApi("POST", this.base, { name }); // never throws
    this.inviting.delete(name);
    if (answer.ok) {
      if (typedName(input) === name) input.value = ""; // not the next name typed meanwhile
      say(answer.status === 200 ? `${name} is already a member.` : "");
      await this.refresh();
      this.hooks.changed();
    } else if (answer.status === 404) {
      say(`No one is called “${name}”.`);
    } else {
      say(reason(answer, `The invitation failed (HTTP ${answer.status}).`));
    }
    input.focus();
  }

  wireLeave(root) {
    const leave = root.querySelector("#leave");
    const confirm = root.querySelector("#leave-confirm");
    const ask = (yes) => {
      confirm.hidden = !yes;
      leave.hidden = yes;
      if (yes) root.querySelector("#leave-no").focus();
      else leave.focus();
    };
    leave.addEventListener("click", () => ask(true));
    root.querySelector("#leave-no").addEventListener("click", () => ask(false));
    root.querySelector("#leave-yes").addEventListener("click", async () => {
      this.hooks.leaving(true);
      const answer = await callApi("DELETE", `${this.base}/${encodeURIComponent(this.me.id)}`);
      confirm.hidden = true;
      if (!answer.ok) {
        this.hooks.leaving(false);
        leave.hidden = false;
        leave.textContent = reason(answer, `Could not leave (HTTP ${answer.status}); try again`);
      }
      this.hooks.changed();
    });
  }
}
