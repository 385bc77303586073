// SPDX-License-Identifier: GPL-3.0-or-later
// Browser test of latchkey's web console (/console, /console/admin, /activate/…,
// /password/reset/…) in Debian's Chromium, against a live latchkey that this script starts
// (fresh SQLite database and mail directory in a temp dir) and always stops.
//
//   cd tests/browser && npm ci && LATCHKEY_BIN=../../target/release/latchkey node console.test.mjs
//
// Screenshots go to target/browser/console-*.png at the repository root. The walk: sign up,
// the emailed activation link, sign in, profile, password change, sign out; the emailed
// reset link; the session list (signing out one device, then the others); "staff only" for a
// non-staff user; a staff member searching 1,000 seeded users, a user's sessions, deactivating
// the user (whose session then dies), groups and claims (with their field errors), creating
// and deleting a group, deleting a user; email change through the emailed link, username
// change; two-factor login (set-up with a TOTP code computed here from the key on the page,
// the recovery codes and their download, sign-in with a code and with a recovery code, a
// staff reset); then deleting one's own account. Any
// script error, CSP violation or request to another origin fails the run. Each step is a
// node:test test; after a failure the rest are skipped.

import { after } from "node:test";
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { createHmac } from "node:crypto";
import { mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { LATCHKEY_BIN, SHOTS, STEP_TIMEOUT_MS, Server, freePort, latchkeyEnv, launchChromium, walk } from "./harness.mjs";

const started = performance.now();
const SEED = 1000;
const PARALLEL = 20;
const CSP = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'; object-src 'none'";

const stamp = Date.now().toString(36);
const ada = { username: `ada_${stamp}`, email: `ada_${stamp}@example.com`, password: "Lighthouse-keeper-1843", changed: "Difference-engine-1822", reset: "Analytical-engine-1837" };
const admin = { username: "admin", email: "admin@example.com", password: "Staff-only-door-2026" };
const victim = { username: `victim_${stamp}`, email: `victim_${stamp}@example.com`, password: "Jacquard-loom-1804", id: "", refresh: "" };
// Other devices of Ada's, signed in from node with these user agents: name -> refresh token.
const DEVICES = {
  "Safari on iOS": "Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.5 Mobile/15E148 Safari/604.1",
  "Firefox on Windows": "Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:128.0) Gecko/20100101 Firefox/128.0",
};
const devices = new Map();

const s = {
  work: "",
  origin: "",
  env: /** @type {Record<string, string>} */ ({}),
  latchkey: /** @type {Server | null} */ (null),
  browser: /** @type {import("playwright-core").Browser | null} */ (null),
  page: /** @type {import("playwright-core").Page} */ (/** @type {any} */ (null)),
  /** Script errors, CSP violations, foreign requests, server errors: each fails the run. */
  problems: /** @type {string[]} */ ([]),
  /** Mail files read so far: name -> {to, text}; and those whose link was used. */
  mail: new Map(),
  usedMail: new Set(),
};

const { step, state } = walk(120_000, (name) => shot(`console-failed-${name}`));

// ---------------------------------------------------------------- set-up and tear-down

async function shot(name) {
  if (!s.page) return;
  mkdirSync(SHOTS, { recursive: true });
  await s.page.screenshot({ path: join(SHOTS, `${name}.png`), fullPage: true });
}

/** Screenshots at 1280 and 360 px wide; at 360 px nothing may stick out sideways. */
async function shots(name) {
  const page = s.page;
  await shot(`${name}-1280`);
  await page.setViewportSize({ width: 360, height: 740 });
  try {
    const width = await page.evaluate(() => document.documentElement.scrollWidth);
    assert.ok(width <= 360, `${name}: the page is ${width} px wide at 360 px`);
    await shot(`${name}-360`);
  } finally {
    await page.setViewportSize({ width: 1280, height: 900 });
  }
}

after(async () => {
  await s.browser?.close().catch(() => {});
  await s.latchkey?.stopped();
  if (state.broken && s.latchkey) console.error(`--- latchkey log (last 40 lines)\n${s.latchkey.logTail()}`);
  if (s.work) rmSync(s.work, { recursive: true, force: true });
  console.log(`console browser test: total run time ${((performance.now() - started) / 1000).toFixed(1)} s`);
});

// ---------------------------------------------------------------- helpers

/** A JSON call from node (no browser, no cookie): the refresh token travels in the body. */
async function call(method, path, body, token, headers = {}) {
  if (body !== undefined) headers["Content-Type"] = "application/json";
  if (token) headers.Authorization = `Bearer ${token}`;
  const res = await fetch(`${s.origin}${path}`, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
  const text = await res.text();
  let json = null;
  try {
    json = JSON.parse(text);
  } catch {
    // 204, or not JSON
  }
  return { status: res.status, body: json, text };
}

/** Quoted-printable to text: soft line breaks out, =XX escapes decoded. */
const unQuote = (raw) => Buffer.from(raw.replace(/=\r?\n/g, "").replace(/=([0-9A-F]{2})/gi, (_, hex) => String.fromCharCode(parseInt(hex, 16))), "latin1").toString("utf8");

/** The newest unused link `${origin}/${kind}/{uid}/{token}` emailed to `to` (waits for the mail worker). */
async function mailLink(to, kind) {
  const dir = join(s.work, "mail");
  const pattern = new RegExp(`${s.origin.replace(/[.]/g, "\\.")}/${kind}/[A-Za-z0-9_=-]+/[A-Za-z0-9_.:=-]+`);
  const deadline = Date.now() + 20_000;
  while (Date.now() < deadline) {
    let names = [];
    try {
      names = readdirSync(dir).filter((n) => n.endsWith(".eml"));
    } catch {
      // no mail yet
    }
    for (const name of names) {
      if (s.mail.has(name)) continue;
      const raw = readFileSync(join(dir, name), "latin1");
      s.mail.set(name, { to: raw.match(/^To:\s*(.*)$/im)?.[1] ?? "", text: unQuote(raw) });
    }
    // File names start with a UTC timestamp: the newest last.
    const mine = [...s.mail.entries()].filter(([name, m]) => !s.usedMail.has(name) && m.to.includes(to) && pattern.test(m.text)).sort(([a], [b]) => a.localeCompare(b));
    if (mine.length) {
      const [name, m] = mine.at(-1);
      s.usedMail.add(name);
      return m.text.match(pattern)[0];
    }
    await new Promise((r) => setTimeout(r, 200));
  }
  assert.fail(`no email to ${to} with a /${kind}/ link within 20 s`);
}

const visible = (locator) => locator.waitFor({ state: "visible", timeout: STEP_TIMEOUT_MS });
const byText = (selector, text) => s.page.locator(selector).filter({ hasText: text });

/** Waits until the page-level message says `text`. */
async function message(text) {
  await visible(byText("#message", text)).catch(async () => {
    assert.fail(`the page message is "${await s.page.locator("#message").textContent().catch(() => "?")}", expected ${text}`);
  });
}

/** Waits for the error under field `id` (and its aria-invalid), returns its text. */
async function fieldError(id, text) {
  const error = s.page.locator(`#${id}-error`);
  await visible(error);
  if (text) assert.match(await error.textContent(), text);
  assert.equal(await s.page.locator(`#${id}`).getAttribute("aria-invalid"), "true", `#${id} is marked invalid`);
  const describedBy = (await s.page.locator(`#${id}`).getAttribute("aria-describedby")) || "";
  assert.ok(describedBy.split(" ").includes(`${id}-error`), `#${id} is described by its error`);
  return error.textContent();
}

/** Signs in at /console (by username, or `login`) with the keyboard only: type, Tab, type, Enter. */
async function signIn(user, password = user.password, login = user.username) {
  const page = s.page;
  if (!page.url().endsWith("/console")) await page.goto(`${s.origin}/console`);
  await visible(page.locator("#signin-form"));
  await page.getByLabel("Username or email").focus();
  await page.keyboard.type(login);
  await page.keyboard.press("Tab");
  await page.keyboard.type(password);
  await page.keyboard.press("Enter");
  await visible(page.locator("#signed-in"));
  assert.equal(await page.locator("#who").textContent(), `Signed in as ${user.username}`);
}

async function signOut() {
  if (!s.page.url().endsWith("/console")) await s.page.goto(`${s.origin}/console`);
  await s.page.getByRole("button", { name: "Sign out", exact: true }).click();
  await visible(s.page.locator("#signin-form"));
  await message("You are signed out.");
}

/** The users list's status line, once it says `pattern`. */
async function listStatus(pattern) {
  const count = s.page.locator("#count");
  await s.page.waitForFunction(
    ([source]) => !document.getElementById("users-table").hasAttribute("aria-busy") && new RegExp(source).test(document.getElementById("count").textContent),
    [pattern.source],
    { timeout: STEP_TIMEOUT_MS },
  ).catch(async () => assert.fail(`the list says "${await count.textContent()}", expected ${pattern}`));
  return count.textContent();
}
/** The session list's items once there are `n`. */
async function sessionRows(list, n) {
  const rows = s.page.locator(`${list} li`);
  await s.page
    .waitForFunction(([sel, count]) => document.querySelectorAll(sel).length === count && !/Loading/.test(document.querySelector(sel).textContent), [`${list} li`, n], { timeout: STEP_TIMEOUT_MS })
    .catch(async () => assert.fail(`${list} has ${await rows.count()} items, expected ${n}: ${await s.page.locator(list).textContent()}`));
  return rows;
}

/** RFC 4648 base32 (the TOTP key as the page shows it, spaces allowed) to bytes. */
function base32(text) {
  const ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
  const out = [];
  let bits = 0;
  let value = 0;
  for (const c of text.replace(/[\s=]/g, "").toUpperCase()) {
    assert.ok(ALPHABET.includes(c), `base32 letter ${c}`);
    value = ((value << 5) | ALPHABET.indexOf(c)) & 0xfff;
    bits += 5;
    if (bits >= 8) {
      bits -= 8;
      out.push((value >>> bits) & 0xff);
    }
  }
  return Buffer.from(out);
}

/** RFC 6238 (SHA-1, 6 digits, 30 s) code of time step `step`. */
function totp(key, step) {
  const counter = Buffer.alloc(8);
  counter.writeBigUInt64BE(BigInt(step));
  const mac = createHmac("sha1", key).update(counter).digest();
  const at = mac[19] & 0x0f;
  return String((mac.readUInt32BE(at) & 0x7fffffff) % 1_000_000).padStart(6, "0");
}

/**
 * A code latchkey takes now: it refuses a step already used, so each call takes a later step
 * than the one before (the next step is accepted for clock skew; one further waits for it),
 * and never a step about to end (under 3 s left: the next one instead).
 */
async function freshCode(mfa) {
  for (;;) {
    const now = Date.now() / 1000;
    const current = Math.floor(now / 30);
    let target = Math.max(current, mfa.lastStep + 1);
    if (target === current && (current + 1) * 30 - now < 3) target = current + 1;
    if (target <= current + 1) {
      mfa.lastStep = target;
      return totp(mfa.key, target);
    }
    await new Promise((r) => setTimeout(r, ((current + 1) * 30 - now) * 1000 + 200));
  }
}
const mfa = { key: Buffer.alloc(0), lastStep: 0, codes: /** @type {string[]} */ ([]) };

/** Password first, then the code step; `code` is typed there once it shows. */
async function signInWithCode(user, password, code) {
  const page = s.page;
  await visible(page.locator("#signin-form"));
  await page.locator("#signin-form").getByLabel("Username or email").fill(user.username);
  await page.locator("#signin-form").getByLabel("Password", { exact: true }).fill(password);
  await page.getByRole("button", { name: "Sign in" }).click();
  await visible(page.locator("#mfa-form"));
  assert.equal(await page.locator("#mfa-code").getAttribute("autocomplete"), "one-time-code");
  assert.equal(await page.locator("#mfa-code").evaluate((e) => e === document.activeElement), true, "the code field has the focus");
  if (code === undefined) return;
  await page.keyboard.type(await code());
  await page.keyboard.press("Enter");
  await visible(page.locator("#signed-in"));
  assert.equal(await page.locator("#who").textContent(), `Signed in as ${user.username}`);
}

const firstUser = () => s.page.locator("#users-body tr").first().locator("td").first().textContent();

// ---------------------------------------------------------------- the steps

step("set-up: latchkey with a superuser, Chromium watching for errors", async () => {
  s.work = mkdtempSync(join(tmpdir(), "latchkey-console-"));
  const port = await freePort();
  s.origin = `http://127.0.0.1:${port}`;
  s.env = latchkeyEnv({
    LATCHKEY_SERVER__BIND: `127.0.0.1:${port}`,
    LATCHKEY_SERVER__PUBLIC_URL: s.origin,
    LATCHKEY_DATABASE__URL: `sqlite://${join(s.work, "latchkey.db")}`,
    LATCHKEY_EMAIL__BACKEND: "file",
    LATCHKEY_EMAIL__FILE_DIR: join(s.work, "mail"),
    LATCHKEY_PASSWORD__BCRYPT_COST: "4",
    LATCHKEY_THROTTLE__ENABLED: "false",
    RUST_LOG: "warn",
  });
  s.latchkey = new Server(s.work, s.origin, s.env);
  await s.latchkey.start();
  const su = spawnSync(LATCHKEY_BIN, ["createsuperuser", "--username", admin.username, "--email", admin.email, "--password-stdin"], {
    cwd: s.work,
    env: s.env,
    input: `${admin.password}\n`,
    encoding: "utf8",
    timeout: 30_000,
  });
  assert.equal(su.status, 0, `createsuperuser failed: ${su.stderr || su.stdout || su.error}`);

  s.browser = await launchChromium();
  const context = await s.browser.newContext({ viewport: { width: 1280, height: 900 }, locale: "en-US" });
  // Injected by the driver, not inline in the page: the CSP does not apply to it.
  await context.addInitScript(() => {
    document.addEventListener("securitypolicyviolation", (e) => {
      console.error(`CSP violation: ${e.violatedDirective} blocked ${e.blockedURI || "inline"} at ${e.sourceFile}:${e.lineNumber}`);
    });
  });
  const page = await context.newPage();
  page.setDefaultTimeout(STEP_TIMEOUT_MS);
  page.on("pageerror", (err) => s.problems.push(`pageerror at ${page.url()}: ${err.message}`));
  page.on("console", (msg) => {
    // Chromium logs every 4xx answer of fetch(); the API answers 400/401/403/404/409 by design.
    if (msg.type() !== "error" || /^Failed to load resource: the server responded with a status of 4\d\d/.test(msg.text())) return;
    s.problems.push(`console error at ${page.url()}: ${msg.text()}`);
  });
  page.on("request", (request) => {
    const url = request.url();
    if (!/^(data|blob|about):/.test(url) && new URL(url).origin !== s.origin) s.problems.push(`request to another origin: ${url}`);
  });
  page.on("response", (response) => {
    if (response.status() >= 500) s.problems.push(`${response.status()} from ${response.request().method()} ${response.url()}`);
  });
  page.on("dialog", (dialog) => dialog.accept()); // the confirm() before deleting
  s.page = page;
});

step("the pages come with the CSP, their assets from {{static}}, nothing inline", async () => {
  for (const path of ["/console", "/console/admin", "/activate/x/y", "/password/reset/x/y", "/email/confirm/x/y"]) {
    const res = await fetch(`${s.origin}${path}`);
    assert.equal(res.status, 200, `GET ${path}`);
    assert.equal(res.headers.get("content-security-policy"), CSP, `GET ${path}: the CSP`);
    const html = await res.text();
    assert.doesNotMatch(html, /\{\{/, `${path}: every placeholder replaced`);
    assert.doesNotMatch(html, /<script(?![^>]*\bsrc=)[^>]*>/i, `${path}: no inline script`);
    assert.doesNotMatch(html, /\sstyle=|<style/i, `${path}: no inline style`);
    assert.doesNotMatch(html, /\son[a-z]+=/i, `${path}: no inline event handler`);
    const assets = [...html.matchAll(/(?:src|href)="(\/console\/static\/[^"]+)"/g)].map((m) => m[1]);
    assert.ok(assets.length >= 2, `${path}: a stylesheet and a script from /console/static/…`);
    for (const asset of assets) assert.equal((await fetch(`${s.origin}${asset}`)).status, 200, `GET ${asset}`);
  }
});

step("signed out: the sign-in page", async () => {
  await s.page.goto(`${s.origin}/console`);
  await visible(s.page.locator("#signin-form"));
  assert.ok(await s.page.locator("#signed-in").isHidden());
  await shots("console-signin");
});

step("sign up: a field error, then 'check your email'", async () => {
  const page = s.page;
  await page.getByText("Create an account").click();
  const form = page.locator("#signup-form");
  await form.getByLabel("Username", { exact: true }).fill(ada.username);
  await form.getByLabel("Email").fill(ada.email);
  await form.getByLabel("Password", { exact: true }).fill("12345678");
  await form.getByLabel("Password again").fill("12345678");
  await form.getByLabel("First name").fill("Ada");
  await form.getByRole("button", { name: "Create account" }).click();
  await fieldError("signup-password", /./); // entirely numeric: the policy says so under the field
  await form.getByLabel("Password", { exact: true }).fill(ada.password);
  await form.getByLabel("Password again").fill(ada.password);
  await form.getByRole("button", { name: "Create account" }).click();
  await visible(byText("#signup-form .message", "Check your email"));
  assert.equal(await page.locator("#signup-password-error").count(), 0, "the old field error is gone");
});

step("the emailed activation link activates the account and signs in", async () => {
  const link = await mailLink(ada.email, "activate");
  await s.page.goto(link);
  await message("is activated");
  await s.page.getByRole("link", { name: "Continue to your account" }).click();
  await visible(s.page.locator("#signed-in"));
  assert.equal(await s.page.locator("#me-username").textContent(), ada.username);
  // The link works once.
  await s.page.goto(link);
  await message("invalid or has expired");
  await s.page.goto(`${s.origin}/console`);
  await visible(s.page.locator("#signed-in"));
});

step("sign out, then sign in with the keyboard (a wrong password first)", async () => {
  await signOut();
  const page = s.page;
  const form = page.locator("#signin-form");
  await form.getByLabel("Username or email").fill(ada.username);
  await form.getByLabel("Password", { exact: true }).fill("not-the-password");
  await form.getByRole("button", { name: "Sign in" }).click();
  await visible(byText("#signin-form .message.error", /./));
  await page.locator("#signin-form").evaluate((form) => form.reset());
  await signIn(ada);
  await shots("console-account");
});

step("profile edit, kept across a reload (restore from the cookie)", async () => {
  const page = s.page;
  const form = page.locator("#profile-form");
  await form.getByLabel("First name").fill("Augusta Ada");
  await form.getByLabel("Last name").fill("King");
  await form.getByLabel("Bio").fill("Wrote the first program.");
  await form.getByRole("button", { name: "Save profile" }).click();
  await visible(byText("#profile-form .message", "Profile saved."));
  await page.reload();
  await visible(page.locator("#signed-in"));
  assert.equal(await form.getByLabel("First name").inputValue(), "Augusta Ada");
  assert.equal(await form.getByLabel("Last name").inputValue(), "King");
  assert.equal(await form.getByLabel("Bio").inputValue(), "Wrote the first program.");
});

step("password change: a wrong current password under its field, then success", async () => {
  const page = s.page;
  const form = page.locator("#password-form");
  await form.getByLabel("Current password").fill("wrong-password-here");
  await form.getByLabel("New password", { exact: true }).fill(ada.changed);
  await form.getByLabel("New password again").fill(ada.changed);
  await form.getByRole("button", { name: "Change password" }).click();
  await fieldError("password-current");
  await form.getByLabel("Current password").fill(ada.password);
  await form.getByLabel("New password", { exact: true }).fill(ada.changed);
  await form.getByLabel("New password again").fill(ada.changed);
  await form.getByRole("button", { name: "Change password" }).click();
  await visible(byText("#password-form .message", "Password changed"));
  // Still signed in here (the SDK took the fresh pair), and the new password works.
  await page.reload();
  await visible(page.locator("#signed-in"));
  assert.equal((await call("POST", "/auth/login", { username: ada.username, password: ada.changed })).status, 200);
  await signOut();
});

step("password reset: the emailed link, a weak password refused under the field, then sign-in", async () => {
  const page = s.page;
  await page.getByText("Forgotten your password?").click();
  await page.locator("#forgot-form").getByLabel("Email").fill(ada.email);
  await page.getByRole("button", { name: "Email me a reset link" }).click();
  await visible(byText("#forgot-form .message", "If the address is known"));
  const link = await mailLink(ada.email, "password/reset");
  await page.goto(link);
  await page.getByLabel("New password", { exact: true }).fill("12345678");
  await page.getByLabel("New password again").fill("12345678");
  await page.getByRole("button", { name: "Set new password" }).click();
  await fieldError("reset-password", /./);
  await page.getByLabel("New password", { exact: true }).fill(ada.reset);
  await page.getByLabel("New password again").fill(ada.reset);
  await page.getByRole("button", { name: "Set new password" }).click();
  await message("Your password has been changed");
  await page.getByRole("link", { name: "Sign in" }).click();
  await page.waitForURL(`${s.origin}/console`);
  await signIn(ada, ada.reset, ada.email); // by email this time
});

step("sessions: this browser and two other devices, each described", async () => {
  for (const [name, ua] of Object.entries(DEVICES)) {
    const login = await call("POST", "/auth/login", { email: ada.email, password: ada.reset }, undefined, { "User-Agent": ua });
    assert.equal(login.status, 200, login.text);
    devices.set(name, login.body.refresh_token);
  }
  const page = s.page;
  await page.reload();
  const rows = await sessionRows("#sessions", 3);
  const texts = await rows.allTextContents();
  for (const name of Object.keys(DEVICES)) assert.ok(texts.some((t) => t.startsWith(name) && /Last used .* from 127\.0\.0\.1/.test(t)), `a row for ${name}: ${texts}`);
  const here = rows.filter({ hasText: "this device" });
  assert.equal(await here.count(), 1, "one row is this device");
  assert.match(await here.textContent(), /^Chrome on Linux/);
  assert.equal(await here.getByRole("button").count(), 0, "this device's row has no button of its own");
  await shots("console-sessions");
});

step("sessions: 'Sign out' on one row ends that session only", async () => {
  const page = s.page;
  await page.getByRole("button", { name: /^Sign out Safari on iOS, last used / }).click();
  await visible(byText("#sessions-message", "Safari on iOS is signed out."));
  const texts = await (await sessionRows("#sessions", 2)).allTextContents();
  assert.ok(!texts.some((t) => t.startsWith("Safari on iOS")), `the phone is gone: ${texts}`);
  const phone = await call("POST", "/auth/token/refresh", { refresh_token: devices.get("Safari on iOS") });
  assert.equal(phone.status, 401, `the signed-out phone's refresh: ${phone.text}`);
  assert.equal(phone.body.code, "token_revoked");
  const pc = await call("POST", "/auth/token/refresh", { refresh_token: devices.get("Firefox on Windows") });
  assert.equal(pc.status, 200, `the other device goes on: ${pc.text}`);
  devices.set("Firefox on Windows", pc.body.refresh_token);
});

step("sessions: 'Sign out other devices' leaves only this one", async () => {
  const page = s.page;
  await page.getByRole("button", { name: "Sign out other devices" }).click();
  await visible(byText("#sessions-message", "Your other devices are signed out."));
  assert.match(await (await sessionRows("#sessions", 1)).textContent(), /this device/);
  const pc = await call("POST", "/auth/token/refresh", { refresh_token: devices.get("Firefox on Windows") });
  assert.equal(pc.status, 401, `the signed-out computer's refresh: ${pc.text}`);
  await page.reload(); // this browser's session lives on
  await visible(page.locator("#signed-in"));
});

step("a non-staff user at /console/admin sees 'staff only'", async () => {
  await s.page.goto(`${s.origin}/console/admin`);
  await visible(s.page.getByRole("heading", { name: "Staff only" }));
  assert.equal(await s.page.locator("#forbidden-who").textContent(), ada.username);
  assert.ok(await s.page.locator("#users-view").isHidden(), "no user list");
  await signOut();
});

step(`seed: a user with a live session, and ${SEED} more users`, async () => {
  const registered = await call("POST", "/auth/register", { username: victim.username, email: victim.email, password: victim.password, password_confirm: victim.password });
  assert.equal(registered.status, 201, registered.text);
  victim.id = registered.body.user.id;
  const [, uid, token] = (await mailLink(victim.email, "activate")).match(/\/activate\/([^/]+)\/([^/]+)$/);
  assert.equal((await call("POST", "/auth/activate", { uid, token })).status, 200);
  const login = await call("POST", "/auth/login", { username: victim.username, password: victim.password }, undefined, { "User-Agent": "curl/8.5.0" });
  assert.equal(login.status, 200, login.text);
  victim.refresh = login.body.refresh_token;
  const verify = await call("POST", "/auth/token/verify", { token: victim.refresh });
  assert.equal(verify.status, 200, `the session is live: ${verify.text}`);

  const t0 = performance.now();
  let next = 0;
  const worker = async () => {
    while (next < SEED) {
      const name = `seed${String(next++).padStart(4, "0")}`;
      const res = await call("POST", "/auth/register", { username: name, email: `${name}@example.org`, password: "Seeded-user-pass-77", password_confirm: "Seeded-user-pass-77" });
      assert.equal(res.status, 201, `register ${name}: ${res.text}`);
    }
  };
  await Promise.all(Array.from({ length: PARALLEL }, worker));
  console.log(`# seeded ${SEED} users in ${((performance.now() - t0) / 1000).toFixed(1)} s (${PARALLEL} at a time)`);
});

step("staff: sign in, the admin link, the user list", async () => {
  await signIn(admin);
  await s.page.getByRole("link", { name: "Administration" }).click();
  await s.page.waitForURL(/\/console\/admin/);
  const status = await listStatus(/users · page 1 of/);
  const count = Number(status.match(/^([\d,.\s]+) users/)[1].replace(/\D/g, ""));
  assert.ok(count >= SEED + 3, `the list counts ${count} users`);
  assert.equal(await s.page.locator("#users-body tr").count(), 20);
  await shots("console-admin-users");
});

step("search (debounced, server-side), filters, ordering and pages", async () => {
  const page = s.page;
  const t0 = performance.now();
  await page.getByLabel("Search").fill("seed0042");
  await listStatus(/^1 user · page 1 of 1$/);
  console.log(`# search answered in ${Math.round(performance.now() - t0)} ms (300 ms of it debounce)`);
  assert.equal(await firstUser(), "seed0042");
  await page.getByLabel("Search").fill("");
  await page.getByLabel("Active").selectOption("false");
  await page.getByLabel("Order by").selectOption("username");
  await listStatus(/^1,000 users · page 1 of 50$/);
  assert.equal(await firstUser(), "seed0000");
  await page.getByRole("button", { name: "Next" }).click();
  await listStatus(/page 2 of 50$/);
  assert.equal(await firstUser(), "seed0020");
  // The state is in the hash: a reload keeps it.
  assert.match(page.url(), /#users\?.*page=2/);
  await page.reload();
  await listStatus(/^1,000 users · page 2 of 50$/);
  assert.equal(await page.getByLabel("Order by").inputValue(), "username");
  await page.getByRole("button", { name: "Previous" }).click();
  await listStatus(/page 1 of 50$/);
  await page.getByLabel("Active").selectOption("");
  await page.getByLabel("Staff").selectOption("true");
  await listStatus(/^1 user · page 1 of 1$/);
  assert.equal(await firstUser(), admin.username);
  await page.getByLabel("Staff").selectOption("");
});

step("a user's page lists their sessions; deactivating ends them", async () => {
  const page = s.page;
  await page.getByLabel("Search").fill(victim.username);
  await listStatus(/^1 user/);
  await page.getByRole("link", { name: victim.username }).click();
  await visible(page.getByRole("heading", { name: victim.username }));
  assert.match(page.url(), new RegExp(`#user/${victim.id}$`));
  // The activation signed in too (user agent "node"), then the login from "curl".
  const texts = await (await sessionRows("#u-sessions", 2)).allTextContents();
  assert.ok(texts.some((t) => t.startsWith("curl/8.5.0")) && texts.some((t) => t.startsWith("node")), `both sessions: ${texts}`);
  await shots("console-admin-user");
  await page.getByRole("button", { name: "Deactivate" }).click();
  await message("deactivated");
  await visible(page.getByRole("button", { name: "Activate / approve" }));
  assert.equal(await (await sessionRows("#u-sessions", 1)).textContent(), "No live sessions.");
  const refresh = await call("POST", "/auth/token/refresh", { refresh_token: victim.refresh });
  assert.equal(refresh.status, 401, `the deactivated user's refresh: ${refresh.text}`);
  assert.equal(refresh.body.code, "token_revoked");
});

step("groups: create, a duplicate refused next to the name, delete", async () => {
  const page = s.page;
  await page.getByRole("link", { name: "Groups", exact: true }).click();
  await visible(page.getByRole("heading", { name: "Groups", exact: true }));
  const form = page.locator("#group-form");
  for (const name of ["editors", "doomed"]) {
    await form.getByLabel("Name").fill(name);
    await form.getByRole("button", { name: "Create group" }).click();
    await visible(page.locator("#groups-body td", { hasText: new RegExp(`^${name}$`) }));
  }
  await form.getByLabel("Name").fill("editors");
  await form.getByRole("button", { name: "Create group" }).click();
  await fieldError("g-name", /already exists/);
  await page.getByRole("button", { name: "Delete group doomed" }).click();
  await message("has been deleted");
  await page.locator("#groups-body td", { hasText: /^doomed$/ }).waitFor({ state: "detached" });
  assert.equal(await page.locator("#groups-body td", { hasText: /^editors$/ }).count(), 1);
});

step("a user's groups and claims: field errors, then saved", async () => {
  const page = s.page;
  await page.goto(`${s.origin}/console/admin#user/${victim.id}`);
  await visible(page.getByRole("heading", { name: victim.username }));
  const groups = page.locator("#groups-form");
  await groups.getByLabel("Groups").fill("editors, nosuchgroup");
  await groups.getByRole("button", { name: "Save groups" }).click();
  await fieldError("u-groups", /./);
  await groups.getByLabel("Groups").fill("editors");
  await groups.getByRole("button", { name: "Save groups" }).click();
  await visible(byText("#groups-form .message", "Groups saved."));

  const claims = page.locator("#claims-form");
  await claims.getByLabel("Custom claims").fill('{"tenant": ');
  await claims.getByRole("button", { name: "Save claims" }).click();
  assert.match(await fieldError("u-claims"), /not valid JSON/);
  await claims.getByLabel("Custom claims").fill('{"sub": "x"}');
  const answer = page.waitForResponse((r) => r.request().method() === "PATCH" && r.url().endsWith(`/users/${victim.id}`));
  await claims.getByRole("button", { name: "Save claims" }).click();
  assert.equal((await answer).status(), 400, "latchkey refuses a reserved claim");
  assert.doesNotMatch(await fieldError("u-claims"), /not valid JSON/);
  await claims.getByLabel("Custom claims").fill('{"tenant": "acme"}');
  await claims.getByRole("button", { name: "Save claims" }).click();
  await visible(byText("#claims-form .message", "Claims saved."));

  const staff = await call("POST", "/auth/login", { username: admin.username, password: admin.password });
  const user = await call("GET", `/users/${victim.id}`, undefined, staff.body.access_token);
  assert.deepEqual({ groups: user.body.groups, claims: user.body.claims, is_active: user.body.is_active }, { groups: ["editors"], claims: { tenant: "acme" }, is_active: false });
  // The members link of the group filters the list.
  await page.getByRole("link", { name: "Groups", exact: true }).click();
  await page.getByRole("link", { name: "1 member of editors" }).click();
  await listStatus(/^1 user · page 1 of 1$/);
  assert.equal(await firstUser(), victim.username);
});

step("deleting a user (after a confirm)", async () => {
  const page = s.page;
  await page.getByLabel("Group", { exact: true }).selectOption("");
  await page.getByLabel("Search").fill("seed0999");
  await listStatus(/^1 user/);
  await page.getByRole("link", { name: "seed0999" }).click();
  await page.getByRole("button", { name: "Delete this user" }).click();
  await message("has been deleted");
  await listStatus(/^0 users/);
  await page.getByRole("button", { name: "Sign out" }).click();
  await visible(page.getByText("Please sign in with a staff account first."));
});

step("email change: field errors, the link sent to the new address, then sign-in with it", async () => {
  const page = s.page;
  await page.goto(`${s.origin}/console`);
  await signIn(ada, ada.reset);
  const form = page.locator("#email-form");
  const fresh = `countess_${stamp}@example.net`;
  const submit = async (email, password) => {
    await form.getByLabel("New email").fill(email);
    await form.getByLabel("Current password").fill(password);
    await form.getByRole("button", { name: "Change email" }).click();
  };
  await submit(fresh, "wrong-password-here");
  await fieldError("email-password");
  await submit(admin.email.toUpperCase(), ada.reset); // taken, in another letter case: 409
  await fieldError("email-new");
  await submit(fresh, ada.reset);
  await visible(byText("#email-form .message", `A confirmation link was sent to ${fresh}. Nothing changes until you open it.`));
  assert.equal(await page.locator("#email-new-error").count(), 0, "the old field error is gone");
  const link = await mailLink(fresh, "email/confirm");
  assert.equal((await call("POST", "/auth/login", { email: fresh, password: ada.reset })).status, 401, "nothing changed before the link");
  await page.goto(link);
  await message(`Your email address is now ${fresh}.`);
  await shots("console-email-confirm");
  await page.goto(link); // works once
  await message("invalid, has expired, or was superseded");
  await page.getByRole("link", { name: "Go to your account" }).click();
  await visible(page.locator("#signed-in"));
  assert.equal(await page.locator("#me-email").textContent(), fresh);
  await signOut();
  ada.email = fresh;
  await signIn(ada, ada.reset, ada.email);
});

step("username change: a taken name under its field, then the new name shown", async () => {
  const page = s.page;
  const form = page.locator("#username-form");
  const name = `countess_${stamp}`;
  await form.getByLabel("New username").fill(admin.username);
  await form.getByLabel("Current password").fill(ada.reset);
  await form.getByRole("button", { name: "Change username" }).click();
  await fieldError("username-new");
  await form.getByLabel("New username").fill(name);
  await form.getByLabel("Current password").fill(ada.reset);
  await form.getByRole("button", { name: "Change username" }).click();
  await visible(byText("#username-form .message", `Your username is now ${name}.`));
  assert.equal(await page.locator("#who").textContent(), `Signed in as ${name}`);
  assert.equal(await page.locator("#me-username").textContent(), name);
  ada.username = name;
  await page.reload();
  await visible(page.locator("#signed-in"));
  assert.equal(await page.locator("#me-username").textContent(), name);
  await signOut();
});

step("two-factor set-up: the QR code and key, a wrong code refused, then ten recovery codes", async () => {
  const page = s.page;
  await signIn(ada, ada.reset);
  await visible(byText("#mfa-status", /^Off:/));
  const start = page.locator("#totp-start-form");
  await start.getByLabel("Current password").fill("wrong-password-here");
  await start.getByRole("button", { name: "Set up" }).click();
  await fieldError("totp-start-password");
  await start.getByLabel("Current password").fill(ada.reset);
  await start.getByRole("button", { name: "Set up" }).click();
  const confirmForm = page.locator("#totp-confirm-form");
  await visible(confirmForm);
  const qr = page.locator("#totp-qr");
  assert.match(await qr.getAttribute("src"), /^data:image\/svg\+xml;base64,/);
  await page.waitForFunction(() => document.getElementById("totp-qr").complete && document.getElementById("totp-qr").naturalWidth > 0);
  assert.equal(await page.locator("#totp-confirm-form svg").count(), 0, "the SVG is an image, not markup in the page");
  const code = page.locator("#totp-code");
  assert.deepEqual([await code.getAttribute("autocomplete"), await code.getAttribute("inputmode")], ["one-time-code", "numeric"]);
  mfa.key = base32(await page.locator("#totp-secret").textContent());
  assert.ok(mfa.key.length >= 10, "a key of 80 bits or more");
  await shots("console-mfa-setup");
  const wrong = String((Number(totp(mfa.key, Math.floor(Date.now() / 30000))) + 500_000) % 1_000_000).padStart(6, "0");
  await code.fill(wrong);
  await confirmForm.getByRole("button", { name: "Turn on" }).click();
  await fieldError("totp-code");
  await code.fill(await freshCode(mfa));
  await confirmForm.getByRole("button", { name: "Turn on" }).click();
  await visible(page.locator("#mfa-codes"));
  mfa.codes = (await page.locator("#mfa-code-list li").allTextContents()).map((c) => c.trim());
  assert.equal(mfa.codes.length, 10, `ten recovery codes: ${mfa.codes}`);
  await visible(byText("#mfa-codes", "shown only this once"));
  await visible(byText("#mfa-status", /^On:/));
  assert.match(await page.locator("#mfa-status").textContent(), /10 recovery codes left/);
  // The download is a blob: URL the CSP lets through (a violation would fail the last step).
  const [download] = await Promise.all([page.waitForEvent("download"), page.getByRole("link", { name: "Download as text" }).click()]);
  assert.equal(download.suggestedFilename(), "latchkey-recovery-codes.txt");
  const text = readFileSync(await download.path(), "utf8");
  for (const c of mfa.codes) assert.ok(text.includes(c), `${c} in the downloaded file`);
  await shots("console-mfa-codes");
  await page.getByRole("button", { name: "I have saved them" }).click();
  assert.ok(await page.locator("#mfa-codes").isHidden(), "the codes are gone");
  await page.reload();
  await visible(byText("#mfa-status", /^On:/));
  assert.equal(await page.locator("#mfa-code-list li").count(), 0, "and not shown again");
  await signOut();
});

step("two-factor sign-in: password, then a wrong code under the field, then a fresh TOTP code", async () => {
  const page = s.page;
  await signInWithCode(ada, ada.reset);
  await shots("console-mfa-signin");
  await page.keyboard.type("000000");
  await page.keyboard.press("Enter");
  await fieldError("mfa-code");
  await page.locator("#mfa-code").fill(await freshCode(mfa));
  await page.keyboard.press("Enter");
  await visible(page.locator("#signed-in"));
  const here = byText("#sessions li", "this device");
  await visible(here);
  assert.match(await here.textContent(), /with password and authenticator code/);
  await signOut();
});

step("two-factor sign-in: too many wrong codes mean starting again; then a recovery code", async () => {
  const page = s.page;
  await signInWithCode(ada, ada.reset);
  for (let i = 0; i < 7 && (await page.locator("#mfa-form").isVisible()); i++) {
    await page.locator("#mfa-code").fill("abcd-efgh");
    const answer = page.waitForResponse((r) => r.url().endsWith("/auth/login/mfa"));
    await page.keyboard.press("Enter");
    await answer;
  }
  await visible(byText("#signin-form .message.error", "sign in again"));
  await signInWithCode(ada, ada.reset, async () => mfa.codes[0]);
  await visible(byText("#mfa-status", "9 recovery codes left"));
  await signOut();
});

step("staff: a user's two-factor shown, and reset (after a confirm)", async () => {
  const page = s.page;
  await signIn(admin);
  await page.goto(`${s.origin}/console/admin#users?search=${encodeURIComponent(ada.username)}`);
  await listStatus(/^1 user/);
  await page.getByRole("link", { name: ada.username }).click();
  await visible(page.getByText("Two-factor: on"));
  await page.getByRole("button", { name: "Reset two-factor" }).click();
  await message("has been reset");
  await visible(page.getByText("Two-factor: off"));
  assert.ok(await page.getByRole("button", { name: "Reset two-factor" }).isHidden());
  const login = await call("POST", "/auth/login", { username: ada.username, password: ada.reset });
  assert.equal(login.status, 200, login.text);
  assert.ok(login.body.access_token && !login.body.mfa_required, "the password alone signs in again");
  await page.getByRole("button", { name: "Sign out" }).click();
  await visible(page.getByText("Please sign in with a staff account first."));
});

step("deleting one's own account", async () => {
  const page = s.page;
  await page.goto(`${s.origin}/console`);
  await signIn(ada, ada.reset);
  await page.locator("#delete-form").getByLabel("Current password").fill(ada.reset);
  await page.getByRole("button", { name: "Delete my account" }).click();
  await message("Your account has been deleted.");
  await visible(page.locator("#signin-form"));
  assert.equal((await call("POST", "/auth/login", { username: ada.username, password: ada.reset })).status, 401);
});

step("no script error, CSP violation, server error or request to another origin", async () => {
  assert.deepEqual(s.problems, []);
});
