// SPDX-License-Identifier: GPL-3.0-or-later
// /password/reset/{uid}/{token}: the new password for the pair of the emailed link.
import { $, api, linkParts, notify, onSubmit, LatchkeyError } from "./common.js";

const form = $("reset-form");

function expired() {
  form.hidden = true;
  notify("This reset link is invalid or has expired. Ask for a new one.", "error");
  $("next-link").textContent = "Ask for a new link";
  $("next-link").href = "/console#forgot";
  $("next").hidden = false;
}

const parts = linkParts("/password/reset/");
if (!parts) expired();

onSubmit(form, async (v) => {
  try {
    await api("POST", "/auth/password/reset/confirm", { ...parts, new_password: v.new_password, new_password_confirm: v.new_password_confirm });
  } catch (err) {
    // A bad token is not the user's typing: no field to put it on.
    const e = err instanceof LatchkeyError ? err.errors : {};
    if (e.token || e.uid) return expired();
    throw err;
  }
  form.hidden = true;
  notify("Your password has been changed, and every session signed out. Sign in with the new password.", "ok");
  $("next").hidden = false;
  $("next-link").focus();
});
