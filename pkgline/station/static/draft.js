// Every page of a person logged in: what a form sends (its id, the page, the person, and its
// fields, never a password field, the form's token or the page's hidden fields) is kept in
// this tab's sessionStorage until the next page loads. When the session had ended before the
// form reached the server, the login comes back to the page with the note #expired, and the
// form is filled in again from it, for the same person, to be checked and sent again: nothing
// is sent by itself. Any other page drops it (the form was done, or refused and shown again).
const KEY = "pkgline-draft";
const MAX_AGE_MS = 24 * 3600 * 1000;
const user = document.body.dataset.user;

function kept(element) {
  return element.name && element.type !== "password" && element.type !== "hidden";
}

function restore(draft) {
  const form = document.getElementById(draft.form);
  const fresh = Date.now() - draft.at < MAX_AGE_MS;
  if (!form || draft.user !== user || draft.path !== location.pathname || !fresh) return;
  const given = new Map();
  for (const [name, value] of draft.fields) given.set(name, [...(given.get(name) || []), value]);
  for (const element of form.elements) {
    if (!kept(element) || !given.has(element.name)) continue;
    const values = given.get(element.name);
    if (element.type === "checkbox" || element.type === "radio") {
      element.checked = values.includes(element.value);
    } else {
      element.value = values[0];
    }
    element.dispatchEvent(new Event("input", { bubbles: true })); // the map marks its sites
  }
  form.dataset.restored = "1";
}

const saved = sessionStorage.getItem(KEY);
sessionStorage.removeItem(KEY);
if (saved && document.getElementById("expired")) {
  try {
    restore(JSON.parse(saved));
  } catch {
    // not a draft of this script's: nothing to fill in
  }
}

// A form is sent once: a second click (a double click, an impatient one) while its answer
// is on its way is not sent, whose answer would say the lot had changed meanwhile, as if the
// first had failed. After RESEND_AFTER_MS without an answer (a network that lost it) it may
// be sent again; the server refuses a repeat that would do the same thing twice.
const RESEND_AFTER_MS = 15 * 1000;

for (const form of document.querySelectorAll('form[method="post"][id]')) {
  form.addEventListener("submit", (event) => {
    const sent = Number(form.dataset.sentAt || 0);
    if (sent && Date.now() - sent < RESEND_AFTER_MS) {
      event.preventDefault();
      return;
    }
    form.dataset.sentAt = String(Date.now());
    form.setAttribute("aria-busy", "true");
    const fields = [];
    for (const element of form.elements) {
      if (!kept(element) || element.disabled) continue;
      if ((element.type === "checkbox" || element.type === "radio") && !element.checked) continue;
      fields.push([element.name, element.value]);
    }
    const draft = { form: form.id, path: location.pathname, user, at: Date.now(), fields };
    sessionStorage.setItem(KEY, JSON.stringify(draft));
  });
}

// The browser's back button, and its reload, never show a page as it was: a page kept in the
// back-forward cache (a lot WAITING with its track-in form, after it was held) is loaded
// again when it is shown; the answer to a form (a refusal, at the form's address) becomes a
// GET of that address in this tab's history, which the server sends on to the form's page as
// it is now (pages.py), so that neither back nor reload sends the form a second time.
if (document.body.dataset.posted) history.replaceState(history.state, "", location.href);
window.addEventListener("pageshow", (event) => {
  if (event.persisted) location.reload();
});
