// SPDX-License-Identifier: GPL-3.0-or-later
// The example's only script. It loads latchkey's browser client from latchkey itself
// (/sdk/latchkey.js) and wires the page's forms and buttons to it.
//
// latchkey's URL comes from the query string (?api=http://127.0.0.1:8000): handy for a
// demo and for the browser test. A real app hard-codes it, since a page that takes it from
// its own URL could be pointed at someone else's server by a crafted link (the example's
// serve.mjs sends a Content-Security-Policy that only lets the page talk to one latchkey).

const DEFAULT_API = "http://127.0.0.1:8000";
const MAX_EVENTS = 12;

const $ = (id) => document.getElementById(id);

/** latchkey's URL from `?api=`, without a trailing slash; only http(s). */
function apiUrl() {
  const url = new URL(new URLSearchParams(location.search).get("api") || DEFAULT_API);
  if (url.protocol !== "http:" && url.protocol !== "https:") throw new Error(`?api= must be an http(s) URL, not ${url.protocol}`);
  return (url.origin + url.pathname).replace(/\/+$/, "");
}

function notify(message, kind = "error") {
  const box = $("notice");
  box.textContent = message;
  box.dataset.kind = kind;
  box.hidden = !message;
}

/** A message for a failed call: latchkey's `detail`, and each field's messages. */
function describe(err) {
  const fields = Object.entries(err.errors || {}).map(([field, messages]) => `${field}: ${messages.join(" ")}`);
  const detail = err.detail || err.message || String(err);
  return fields.length && !fields.some((line) => detail.includes(line)) ? `${detail} (${fields.join("; ")})` : detail;
}

function logEvent(text) {
  const item = document.createElement("li");
  const time = document.createElement("time");
  time.textContent = new Date().toLocaleTimeString();
  item.append(time, ` ${text}`);
  const list = $("events");
  list.prepend(item);
  while (list.children.length > MAX_EVENTS) list.lastElementChild.remove();
}

/** Runs a form's or button's action with its control disabled, and reports a failure. */
async function busy(control, action) {
  control.disabled = true;
  notify("");
  try {
    await action();
  } catch (err) {
    notify(describe(err));
  } finally {
    control.disabled = false;
  }
}

function render(auth) {
  const status = $("status");
  status.dataset.status = auth.status;
  const user = auth.user;
  status.textContent = auth.status === "signed-in" ? `Signed in as ${user.username}` : auth.status === "signed-out" ? "Signed out" : "Checking your session…";
  $("signed-in").hidden = auth.status !== "signed-in";
  $("signed-out").hidden = auth.status !== "signed-out";
  if (user) {
    $("who").textContent = user.first_name || user.username;
    $("fact-username").textContent = user.username;
    $("fact-email").textContent = user.email;
    $("fact-joined").textContent = new Date(user.date_joined).toLocaleString();
    $("fact-expires").textContent = `${new Date(auth.expiresAt).toLocaleTimeString()} (renewed before then)`;
  } else {
    $("me-output").textContent = "Press “Call GET /users/me”.";
  }
  const mfa = auth.mfaPending;
  $("login-form").hidden = mfa;
  $("mfa-form").hidden = !mfa;
}

function formFields(form) {
  return Object.fromEntries(new FormData(form));
}

async function main() {
  const api = apiUrl();
  $("api-url").textContent = api;
  let Latchkey;
  try {
    ({ Latchkey } = await import(`${api}/sdk/latchkey.js`));
  } catch (err) {
    $("status").textContent = "Client not loaded";
    $("status").dataset.status = "error";
    notify(`Could not load ${api}/sdk/latchkey.js (${err.message}). Is latchkey running there, and is this page's origin (${location.origin}) in its cors.allowed_origins?`);
    return;
  }
  const auth = new Latchkey({ baseUrl: api });
  // For the browser test and for trying the client from the devtools console; a real app
  // need not expose it.
  window.latchkeyDemo = { auth };

  auth.onChange(({ status, user, reason }) => {
    render(auth);
    logEvent(status === "signed-in" ? `${reason}: signed in as ${user.username}` : `${reason}: ${status}`);
  });

  $("login-form").addEventListener("submit", (event) => {
    event.preventDefault();
    const form = event.currentTarget;
    busy(form.querySelector("button"), async () => {
      const result = await auth.login(formFields(form));
      form.reset();
      if (result.mfaRequired) {
        render(auth);
        $("mfa-code").focus();
      }
    });
  });

  $("mfa-form").addEventListener("submit", (event) => {
    event.preventDefault();
    const form = event.currentTarget;
    busy(form.querySelector("button"), async () => {
      try {
        await auth.completeMfa(formFields(form).code);
      } finally {
        form.reset();
        render(auth); // back to the password step if the MFA step expired
      }
    });
  });

  $("register-form").addEventListener("submit", (event) => {
    event.preventDefault();
    const form = event.currentTarget;
    busy(form.querySelector("button"), async () => {
      const result = await auth.register(formFields(form));
      form.reset();
      if (result.activationRequired) notify(`Account created: open the link in the email sent to ${result.user.email}, then sign in.`, "info");
    });
  });

  $("call-me").addEventListener("click", (event) =>
    busy(event.currentTarget, async () => {
      const response = await auth.fetch("/users/me");
      const body = await response.json();
      $("me-output").textContent = `GET /users/me → ${response.status}\n${JSON.stringify(body, null, 2)}`;
    }),
  );
  $("refresh").addEventListener("click", (event) => busy(event.currentTarget, () => auth.refresh()));
  $("logout").addEventListener("click", (event) => busy(event.currentTarget, () => auth.logout()));
  $("logout-all").addEventListener("click", (event) => busy(event.currentTarget, () => auth.logoutEverywhere()));

  try {
    await auth.restore(); // renders through onChange
  } catch (err) {
    $("status").textContent = "latchkey unreachable";
    $("status").dataset.status = "error";
    notify(describe(err));
  }
}

main().catch((err) => notify(describe(err)));
