// SPDX-License-Identifier: GPL-3.0-or-later
// /email/confirm/{uid}/{token}: POSTs the pair of the link sent to the new address (a GET
// must not confirm: mail scanners prefetch links), then says what happened.
import { $, api, errorText, linkParts, notify, LatchkeyError } from "./common.js";

const INVALID = "This link is invalid, has expired, or was superseded by a newer request. Ask for the change again in your account.";

const parts = linkParts("/email/confirm/");
if (!parts) {
  notify(INVALID, "error");
} else {
  try {
    const user = await api("POST", "/auth/email/confirm", parts);
    notify(`Your email address is now ${user.email}. Use it to sign in from now on.`, "ok");
  } catch (err) {
    const status = err instanceof LatchkeyError ? err.status : 0;
    if (status === 409) notify("That address was taken by another account meanwhile, so your email address has not changed.", "error");
    else notify(status === 400 ? INVALID : errorText(err), "error");
  }
}
$("next").hidden = false;
