// SPDX-License-Identifier: GPL-3.0-or-later
// /activate/{uid}/{token}: POSTs the pair of the emailed link (a GET must not activate: mail
// scanners prefetch links), then says what happened and leads to the console.
import { $, api, auth, errorText, formSay, linkParts, notify, onSubmit, LatchkeyError } from "./common.js";

function done(text, kind, linkText) {
  notify(text, kind);
  $("next-link").textContent = linkText;
  $("next").hidden = false;
}

function invalid() {
  done("This activation link is invalid or has expired.", "error", "Go to sign-in");
  $("resend-form").hidden = false;
}

const parts = linkParts("/activate/");
if (!parts) {
  invalid();
} else {
  try {
    const result = await auth.activate(parts.uid, parts.token);
    if (result.signedIn) done(`Your account ${result.user.username} is activated, and you are signed in.`, "ok", "Continue to your account");
    else if (result.approvalRequired) done("Your email address is confirmed. A staff member must now approve your account; you will get an email when you can sign in.", "ok", "Go to sign-in");
    else done("Your account is activated. You can sign in now.", "ok", "Sign in");
  } catch (err) {
    if (err instanceof LatchkeyError && err.status === 400) invalid();
    else done(errorText(err), "error", "Go to sign-in");
  }
}

onSubmit($("resend-form"), async ({ email }, form) => {
  await api("POST", "/auth/activate/resend", { email: email.trim() });
  formSay(form, "If that address belongs to an account waiting for activation, a new link is on its way.");
});
