// The JSON API as the page uses it: the session cookie goes along, posts are JSON (the
// server refuses a cross-site form), and every answer comes back as {ok, status, body}
// so that callers can say what went wrong in words instead of throwing.

export async function callApi(method, path, body) {
  const options = { method, credentials: "same-origin", headers: { Accept: "application/json" } };
  if (body !== undefined) {
    options.headers["Content-Type"] = "application/json";
    options.body = JSON.stringify(body);
  }
  let response;
  try {
    response = await fetch(path, options);
  } catch {
    return { ok: false, status: 0, body: { error: "the server cannot be reached; try again" } };
  }
  let parsed = {};
  if (response.status !== 204) {
    try {
      parsed = await response.json();
    } catch {
      parsed = {};
    }
  }
  return { ok: response.ok, status: response.status, body: parsed };
}

// The server's own words when it gave some, else `fallback`.
export function reason(answer, fallback) {
  const text = answer.body && typeof answer.body.error === "string" ? answer.body.error : "";
  return text || fallback;
}

// A name typed into a box, as it is sent: trimmed, and never more than a name can be.
export function typedName(input) {
  return input.value.trim().slice(0, 64);
}

// A form's problem line: shown with `text`, hidden when empty; the input says so too.
export function problemLine(input, line) {
  return (text) => {
    line.textContent = text;
    line.hidden = !text;
    input.setAttribute("aria-invalid", String(Boolean(text)));
  };
}

// Run `work` with the form's buttons disabled: a double click sends one request, not
// two. They stay disabled when `work` answers true (the page is going elsewhere).
export async function whileBusy(form, work) {
  const buttons = [...form.querySelectorAll("button")];
  if (buttons.some((button) => button.disabled)) return;
  for (const button of buttons) button.disabled = true;
  let leaving = false;
  try {
    leaving = await work();
  } finally {
    if (!leaving) for (const button of buttons) button.disabled = false;
  }
}
