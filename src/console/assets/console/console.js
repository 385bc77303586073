// SPDX-License-Identifier: GPL-3.0-or-later
// /console: sign in (with the two-factor step), sign up, forgotten password; once signed
// in, the profile, password change, sign-out and account deletion.
import { $, api, auth, errorText, formSay, notify, onSubmit, showErrors, when, LatchkeyError } from "./common.js";

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
  // Later issues: fill the session list, the email/username change and two-factor status here.
}

const SIGNED_OUT = {
  logout: "You are signed out.",
  "session-ended": "Your session has ended. Please sign in again.",
  "other-tab": "You signed out in another tab.",
};

auth.onChange(({ status, user, reason }) => {
  if (status === "signed-in") {
    // A refresh brings the user of the token pair; keep the fresher profile edits.
    if (reason !== "refresh" || !me) render(user);
    show(true);
    if (reason === "login" || reason === "restore") notify("");
    if (reason === "login") $("account-title").focus();
  } else if (status === "signed-out") {
    me = null;
    for (const form of document.querySelectorAll("#signed-in form")) form.reset();
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
    await auth.completeMfa(code.trim());
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
$("signout-all").addEventListener("click", () => signOut(true));

// ---- start: still signed in from an earlier visit?

try {
  const user = await auth.restore();
  if (!user) show(false);
} catch (err) {
  show(false);
  notify(`${errorText(err)} Reload the page to try again.`, "error");
}
