// SPDX-License-Identifier: GPL-3.0-or-later
// /console: sign in (with the two-factor step), sign up, forgotten password; once signed
// in, the profile, email and username change, password change, two-factor login, the
// sessions, sign-out and account deletion.
import { $, api, auth, clearErrors, errorText, formSay, h, notify, onSubmit, say, sessionItems, showErrors, when, LatchkeyError } from "./common.js";

let me = null; // the user as latchkey last described it

function show(signedIn) {
  $("loading").hidden = true;
  $("signed-out").hidden = signedIn;
  $("signed-in").hidden = !signedIn;
  $("nav").hidden = !signedIn;
}

function render(user) {
  me = user;
  $("who").textContent = `Signed in as ${user.username}`;
  $("admin-link").hidden = !user.is_staff;
  $("me-username").textContent = user.username;
  $("me-email").textContent = user.email + (user.email_verified ? "" : " (not verified)");
  $("me-joined").textContent = when(user.date_joined);
  const profile = $("profile-form");
  for (const name of ["first_name", "last_name", "bio"]) profile.elements[name].value = user[name] ?? "";
  $("password-form").elements.username.value = user.username;
}

const SIGNED_OUT = {
  logout: "You are signed out.",
  "session-ended": "Your session has ended. Please sign in again.",
  "other-tab": "You signed out in another tab.",
};

auth.onChange(({ status, user, reason }) => {
  if (status === "signed-in") {
    // A refresh brings the user of the token pair; keep the fresher profile edits.
    if (reason !== "refresh" || !me) {
      render(user);
      loadSessions(); // a login, a reload, a password change (which ends the others)
      loadMfa();
    }
    show(true);
    if (reason === "login" || reason === "restore") notify("");
    if (reason === "login") $("account-title").focus();
  } else if (status === "signed-out") {
    me = null;
    for (const form of document.querySelectorAll("#signed-in form")) {
      form.reset();
      clearErrors(form); // and its message: the next user must not read this one's
    }
    $("sessions").replaceChildren();
    showCodes(null);
    mfaShow(null);
    $("mfa-status").textContent = "Loading…";
    sessionsSay("");
    show(false);
    if (SIGNED_OUT[reason]) notify(SIGNED_OUT[reason]);
  }
});

// ---- signed out

const signin = $("signin-form");
const mfa = $("mfa-form");
const EMAIL = /^[^@\s]+@[^@\s]+\.[^@\s]+$/;

function showMfa(on) {
  signin.hidden = on;
  mfa.hidden = !on;
  if (on) mfa.elements.code.focus();
  else mfa.reset();
}

onSubmit(
  signin,
  async ({ login, password }) => {
    notify("");
    const name = login.trim();
    // Usernames may contain "@" too, but every account has an email to sign in with, and a
    // second try as a username would spend a second unit of the login throttle.
    const result = await auth.login(EMAIL.test(name) ? { email: name, password } : { username: name, password });
    signin.reset();
    if (result.mfaRequired) showMfa(true);
  },
  { alias: { username: "login", email: "login" } },
);

onSubmit(mfa, async ({ code }) => {
  try {
    await auth.completeMfa(code.replace(/\s+/g, "")); // "123 456" as some apps show it
  } catch (err) {
    if (err instanceof LatchkeyError && err.status === 401) {
      showMfa(false);
      showErrors(signin, new LatchkeyError(401, { detail: "The sign-in step expired or failed too often. Please sign in again." }));
      return;
    }
    throw err;
  }
  showMfa(false);
});
$("mfa-cancel").addEventListener("click", () => {
  showMfa(false);
  signin.elements.login.focus();
});

onSubmit(
  $("signup-form"),
  async (v, form) => {
    const fields = { username: v.username.trim(), email: v.email.trim(), password: v.password, password_confirm: v.password_confirm };
    for (const name of ["first_name", "last_name"]) if (v[name].trim()) fields[name] = v[name].trim();
    const result = await auth.register(fields);
    if (result.signedIn) return; // email verification is off: onChange shows the account
    form.reset();
    formSay(
      form,
      result.activationRequired
        ? `Account created. Check your email (${fields.email}) for the activation link.`
        : "Account created. A staff member must approve it before you can sign in.",
    );
  },
  { conflictField: (err) => (/email/i.test(err.problem.detail || "") ? "email" : "username") },
);

onSubmit($("forgot-form"), async ({ email }, form) => {
  await api("POST", "/auth/password/reset", { email: email.trim() });
  formSay(form, "If the address is known, an email is on its way with a link to choose a new password.");
});

// /console#forgot (from an expired reset link) and #signup open their section.
for (const id of ["forgot", "signup"]) {
  if (location.hash === `#${id}`) {
    $(id).open = true;
    $(id).querySelector("input").focus();
  }
}

// ---- signed in

onSubmit($("profile-form"), async (v, form) => {
  const user = await api("PATCH", "/users/me", { first_name: v.first_name.trim(), last_name: v.last_name.trim(), bio: v.bio });
  render(user);
  formSay(form, "Profile saved.");
});

onSubmit(
  $("email-form"),
  async (v, form) => {
    const email = v.new_email.trim();
    await api("POST", "/users/me/email", { new_email: email, current_password: v.current_password });
    form.reset();
    formSay(form, `A confirmation link was sent to ${email}. Nothing changes until you open it.`);
  },
  { conflictField: "new_email" },
);

onSubmit(
  $("username-form"),
  async (v, form) => {
    const user = await api("POST", "/users/me/username", { new_username: v.new_username.trim(), current_password: v.current_password });
    form.reset();
    render(user);
    // Tokens carry the name they were issued with: take a fresh one now.
    await auth.refresh().catch(() => {});
    formSay(form, `Your username is now ${user.username}. Your other devices show it after their next token refresh.`);
  },
  { conflictField: "new_username" },
);

onSubmit($("password-form"), async (v, form) => {
  await auth.changePassword({ current_password: v.current_password, new_password: v.new_password, new_password_confirm: v.new_password_confirm });
  form.reset();
  form.elements.username.value = me.username;
  formSay(form, "Password changed. Your other sessions have been signed out.");
});

onSubmit($("delete-form"), async ({ current_password }) => {
  if (!confirm(`Delete the account ${me.username} permanently? This cannot be undone.`)) return;
  await api("DELETE", "/users/me", { current_password });
  await auth.logout().catch(() => {}); // the session is gone already; this clears the cookie and the other tabs
  notify("Your account has been deleted.", "ok");
});

async function signOut(everywhere) {
  try {
    if (everywhere) await auth.logoutEverywhere();
    else await auth.logout();
    notify(everywhere ? "You are signed out on every device." : "You are signed out.");
  } catch (err) {
    notify(errorText(err), "error");
  }
}
$("signout").addEventListener("click", () => signOut(false));

const sessionsSay = (text, kind) => say($("sessions-message"), text, kind);
let sessionsSeq = 0;

async function loadSessions() {
  const mine = ++sessionsSeq;
  try {
    const sessions = await api("GET", "/users/me/sessions");
    if (mine !== sessionsSeq || !auth.signedIn) return; // a newer load, or signed out meanwhile
    const signOutButton = (s, name) =>
      !s.current && h("button", { type: "button", class: "secondary", "data-session": s.id, "data-name": name, "aria-label": `Sign out ${name}, last used ${when(s.last_used_at)}` }, "Sign out");
    $("sessions").replaceChildren(...sessionItems(sessions, signOutButton));
  } catch (err) {
    if (mine === sessionsSeq && auth.signedIn) sessionsSay(errorText(err), "error");
  }
}

/** Ends other sessions, then says so where the removed button was and shows the new list. */
async function endSessions(path, done) {
  try {
    await api("DELETE", path);
    sessionsSay(done, "ok");
  } catch (err) {
    if (!(err instanceof LatchkeyError && err.status === 404)) return sessionsSay(errorText(err), "error");
    sessionsSay("That session had ended already.");
  }
  $("sessions-message").focus();
  await loadSessions();
}

$("sessions").addEventListener("click", (event) => {
  const button = event.target.closest("button[data-session]");
  if (button) endSessions(`/users/me/sessions/${encodeURIComponent(button.dataset.session)}`, `${button.dataset.name} is signed out.`);
});
$("signout-others").addEventListener("click", () => endSessions("/users/me/sessions", "Your other devices are signed out."));
$("signout-all").addEventListener("click", () => signOut(true));

// ---- two-factor login (API.md "Two-factor login")

const mfaForms = ["totp-start-form", "totp-confirm-form", "mfa-manage-form"].map($);
let codesUrl = null;

/** Shows one of the forms (or none), reset, with no errors left. */
function mfaShow(id) {
  for (const form of mfaForms) {
    form.reset();
    clearErrors(form);
    form.hidden = form.id !== id;
  }
  if (id !== "totp-confirm-form") {
    $("totp-qr").removeAttribute("src");
    $("totp-secret").textContent = "";
  }
}

async function loadMfa() {
  try {
    const { totp, recovery_codes_left: left } = await api("GET", "/users/me/mfa");
    if (!auth.signedIn) return;
    $("mfa-status").textContent = totp
      ? `On: sign-in asks for a code from your authenticator app. ${left} recovery code${left === 1 ? "" : "s"} left.`
      : "Off: your password alone signs you in.";
    if ($("totp-confirm-form").hidden) mfaShow(totp ? "mfa-manage-form" : "totp-start-form");
  } catch (err) {
    $("mfa-status").textContent = errorText(err);
  }
}

/** The recovery codes, once, with a text file of them to download; null hides them. */
function showCodes(codes) {
  if (codesUrl) URL.revokeObjectURL(codesUrl);
  codesUrl = codes && URL.createObjectURL(new Blob([`latchkey recovery codes for ${me.username}\n\n${codes.join("\n")}\n`], { type: "text/plain" }));
  $("mfa-download").href = codesUrl || "#";
  $("mfa-code-list").replaceChildren(...(codes || []).map((c) => h("li", {}, h("code", {}, c))));
  $("mfa-codes").hidden = !codes;
  if (codes) $("mfa-codes-note").focus();
}

onSubmit($("totp-start-form"), async ({ current_password }) => {
  const { secret, qr_svg: svg } = await api("POST", "/users/me/mfa/totp", { current_password });
  // As an image, never as markup in the page: the SVG cannot run or style anything here.
  const binary = Array.from(new TextEncoder().encode(svg), (b) => String.fromCharCode(b)).join("");
  $("totp-qr").src = `data:image/svg+xml;base64,${btoa(binary)}`;
  $("totp-secret").textContent = secret.replace(/(.{4})(?=.)/g, "$1 ");
  mfaShow("totp-confirm-form");
  $("totp-code").focus();
});

onSubmit($("totp-confirm-form"), async ({ code }) => {
  const { recovery_codes: codes } = await api("POST", "/users/me/mfa/totp/confirm", { code: code.replace(/\s+/g, "") });
  mfaShow(null);
  showCodes(codes);
  await loadMfa();
});
$("totp-cancel").addEventListener("click", () => {
  mfaShow("totp-start-form");
  loadMfa();
});
$("mfa-done").addEventListener("click", () => {
  showCodes(null);
  $("mfa-title").scrollIntoView({ block: "nearest" });
});

// The form's two buttons: the one clicked (or Enter's, the first) says what to do.
let mfaAction = "regen";
$("mfa-manage-form").addEventListener("click", (event) => {
  mfaAction = event.target.closest("button[data-action]")?.dataset.action ?? mfaAction;
});
onSubmit($("mfa-manage-form"), async ({ current_password, code }, form) => {
  const body = { current_password, code: code.trim() };
  const action = mfaAction;
  mfaAction = "regen";
  if (action === "off") {
    if (!confirm("Turn two-factor login off? Your other sessions are signed out.")) return;
    await api("DELETE", "/users/me/mfa/totp", body);
    showCodes(null);
    await loadMfa();
    formSay($("totp-start-form"), "Two-factor login is off. Your other sessions have been signed out.");
  } else {
    const { recovery_codes: codes } = await api("POST", "/users/me/mfa/recovery-codes", body);
    form.reset();
    showCodes(codes);
    await loadMfa();
  }
});

// ---- start: still signed in from an earlier visit?

try {
  const user = await auth.restore();
  if (!user) show(false);
} catch (err) {
  show(false);
  notify(`${errorText(err)} Reload the page to try again.`, "error");
}
