// SPDX-License-Identifier: GPL-3.0-or-later
// Browser test: examples/spa and latchkey's /sdk/latchkey.js in Debian's Chromium, against
// a live latchkey that this script starts (fresh SQLite database in a temp dir) and stops.
//
//   cd tests/browser && npm ci && LATCHKEY_BIN=../../target/release/latchkey node spa.test.mjs
//
// (.ci/browser does that.) Screenshots go to target/browser/ at the repository root.
// Checks, through the page: register and sign-in, a protected call, a reload that stays
// signed in, the refresh token out of reach of scripts and storage, two tabs refreshing at
// the same moment, sign-out reaching the other tab, sign-out everywhere, and a disallowed
// origin refused. Each step is a node:test test; after a failure the rest are skipped.

import { after } from "node:test";
import assert from "node:assert/strict";
import { mkdtempSync, mkdirSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { serve } from "../../examples/spa/serve.mjs";
import { LATCHKEY_BIN, ROOT, SHOTS, STEP_TIMEOUT_MS, Server, freePort, latchkeyEnv, launchChromium, walk } from "./harness.mjs";

const started = performance.now();
const SDK_SOURCE = join(ROOT, "src", "console", "assets", "latchkey.js");
const COOKIE = "latchkey_refresh";

const user = { username: `ada_${Date.now().toString(36)}`, email: "", password: "Lighthouse-keeper-1843" };
user.email = `${user.username}@example.com`;

/** Everything the steps share, set up in before(). */
const s = {
  work: "",
  latchkey: /** @type {Server | null} */ (null),
  api: "",
  spaOrigin: "",
  spaUrl: "",
  thirdOrigin: "",
  servers: /** @type {import("node:http").Server[]} */ ([]),
  browser: /** @type {import("playwright-core").Browser | null} */ (null),
  context: /** @type {import("playwright-core").BrowserContext | null} */ (null),
  tab1: /** @type {import("playwright-core").Page} */ (/** @type {any} */ (null)),
  tab2: /** @type {import("playwright-core").Page} */ (/** @type {any} */ (null)),
  /** Answers of latchkey's /auth/* endpoints as the pages saw them. */
  answers: /** @type {Promise<{tab: string, url: string, sent: string | null, status: number, setCookie: string | null, cacheControl: string | null, body: any}>[]} */ ([]),
  pageErrors: /** @type {string[]} */ ([]),
};

const { step, state } = walk(60_000, (name) => screenshot(`failed-${name}`));

// ---------------------------------------------------------------- set-up and tear-down

/** Records latchkey's /auth/* answers a page receives, for the checks on bodies and cookies. */
function watch(page, tab) {
  page.on("pageerror", (err) => s.pageErrors.push(`${tab}: ${err.message}`));
  page.on("console", (msg) => {
    if (msg.type() === "error" && /Content Security Policy/i.test(msg.text())) s.pageErrors.push(`${tab}: ${msg.text()}`);
  });
  page.on("response", (response) => {
    const url = response.url();
    if (!url.startsWith(`${s.api}/auth/`) || response.request().method() !== "POST") return;
    s.answers.push(
      (async () => ({
        tab,
        url: url.slice(s.api.length),
        sent: cookieIn(await response.request().headerValue("cookie")),
        status: response.status(),
        setCookie: await response.headerValue("set-cookie"),
        cacheControl: await response.headerValue("cache-control"),
        body: await response.json().catch(() => null),
      }))(),
    );
  });
}

/** The refresh token in a Cookie or Set-Cookie header, or null. */
function cookieIn(header) {
  return header?.match(new RegExp(`(?:^|[;\\s])${COOKIE}=([^;\\s]+)`))?.[1] ?? null;
}

async function newTab(tab) {
  const page = await s.context.newPage();
  page.setDefaultTimeout(STEP_TIMEOUT_MS);
  watch(page, tab);
  return page;
}

async function screenshot(name) {
  if (!s.tab1) return;
  mkdirSync(SHOTS, { recursive: true });
  await s.tab1.screenshot({ path: join(SHOTS, `${name}.png`), fullPage: true });
}

after(async () => {
  await s.browser?.close().catch(() => {});
  await s.latchkey?.stopped();
  for (const server of s.servers) {
    server.close();
    server.closeAllConnections(); // keep-alive sockets would hold the process for 5 s
  }
  if (state.broken && s.latchkey) console.error(`--- latchkey log (last 40 lines)\n${s.latchkey.logTail()}`);
  if (s.work) rmSync(s.work, { recursive: true, force: true });
  console.log(`browser test: total run time ${((performance.now() - started) / 1000).toFixed(1)} s`);
});

// ---------------------------------------------------------------- helpers for the steps

const statusOf = (page) => page.locator("#status");

async function expectStatus(page, pattern) {
  await page.waitForFunction((source) => new RegExp(source).test(document.getElementById("status").textContent), pattern.source, { timeout: STEP_TIMEOUT_MS }).catch(async () => {
    assert.fail(`status is "${await statusOf(page).textContent()}", expected ${pattern}; notice: "${await page.locator("#notice").textContent()}"`);
  });
}

async function refreshCookie() {
  const cookies = await s.context.cookies(s.api + "/auth/");
  return cookies.find((c) => c.name === COOKIE) || null;
}

async function signIn(page) {
  await page.bringToFront();
  const form = page.locator("#login-form");
  await form.getByLabel("Username").fill(user.username);
  await form.getByLabel("Password").fill(user.password);
  await form.getByRole("button", { name: "Sign in" }).click();
  await expectStatus(page, new RegExp(`^Signed in as ${user.username}$`));
}

/** GET /users/me through the page's client: status and username. */
const callMe = (page) =>
  page.evaluate(async () => {
    const res = await window.latchkeyDemo.auth.fetch("/users/me");
    return { status: res.status, username: (await res.json()).username };
  });

/** A refresh by hand from the page, bypassing the client (and its lock); optionally at a given moment. */
const rawRefresh = (page, at = 0) =>
  page.evaluate(
    async ({ api, at }) => {
      if (at) await new Promise((r) => setTimeout(r, Math.max(0, at - Date.now())));
      try {
        const res = await fetch(`${api}/auth/token/refresh`, { method: "POST", credentials: "include", headers: { "X-Token-Transport": "cookie" } });
        return { status: res.status, body: await res.json() };
      } catch (err) {
        return { status: 0, error: String(err) };
      }
    },
    { api: s.api, at },
  );

/** A request from node (no browser): to check what latchkey itself refuses. */
async function post(path, { origin, transport = true, cookie, body } = {}) {
  const headers = {};
  if (origin) headers.Origin = origin;
  if (transport) headers["X-Token-Transport"] = "cookie";
  if (cookie) headers.Cookie = `${COOKIE}=${cookie}`;
  if (body) headers["Content-Type"] = "application/json";
  const res = await fetch(`${s.api}${path}`, { method: "POST", headers, body: body && JSON.stringify(body) });
  const text = await res.text();
  let json = null;
  try {
    json = JSON.parse(text);
  } catch {
    // not JSON
  }
  return { status: res.status, body: json, text, setCookie: res.headers.getSetCookie() };
}

// ---------------------------------------------------------------- the steps

// Set-up is the first step, so that a failure is reported once, and the rest skipped.
step("set-up: latchkey on a free port, the example on two origins, Chromium", async () => {
  s.work = mkdtempSync(join(tmpdir(), "latchkey-browser-"));
  const apiPort = await freePort();
  s.api = `http://127.0.0.1:${apiPort}`;
  const spa = await serve({ host: "127.0.0.1", port: 0, api: s.api });
  // The same example on another site (localhost is not 127.0.0.1): not an allowed origin.
  const third = await serve({ host: "127.0.0.1", port: 0, api: s.api });
  s.servers.push(spa, third);
  s.spaOrigin = `http://127.0.0.1:${spa.address().port}`;
  s.spaUrl = `${s.spaOrigin}/?api=${s.api}`;
  s.thirdOrigin = `http://localhost:${third.address().port}`;
  const env = latchkeyEnv({
    LATCHKEY_SERVER__BIND: `127.0.0.1:${apiPort}`,
    LATCHKEY_SERVER__PUBLIC_URL: s.api,
    LATCHKEY_DATABASE__URL: `sqlite://${join(s.work, "latchkey.db")}`,
    LATCHKEY_ACCOUNTS__REQUIRE_EMAIL_VERIFICATION: "false",
    LATCHKEY_CORS__ALLOWED_ORIGINS: s.spaOrigin,
    LATCHKEY_PASSWORD__BCRYPT_COST: "4",
    LATCHKEY_THROTTLE__LOGIN: "1000/minute",
    LATCHKEY_THROTTLE__ANON: "10000/minute",
    LATCHKEY_EMAIL__BACKEND: "console",
    RUST_LOG: "warn",
  });
  s.latchkey = new Server(s.work, s.api, env);
  await s.latchkey.start();
  s.browser = await launchChromium();
  s.context = await s.browser.newContext({ viewport: { width: 1100, height: 900 } });

  // The client under test is the one latchkey serves; it must be this tree's file (a stale
  // binary would test an older client). LATCHKEY_SDK_FROM_TREE=1 serves the tree's copy
  // in its place, to work on the client without rebuilding the server.
  const sdk = await fetch(`${s.api}/sdk/latchkey.js`);
  assert.equal(sdk.status, 200, "GET /sdk/latchkey.js");
  assert.match(sdk.headers.get("content-type") ?? "", /^text\/javascript/, "a JavaScript MIME type (module scripts need one)");
  const tree = readFileSync(SDK_SOURCE, "utf8");
  if (process.env.LATCHKEY_SDK_FROM_TREE) {
    await s.context.route(`${s.api}/sdk/latchkey.js`, async (route) => route.fulfill({ response: await route.fetch(), body: tree }));
  } else {
    assert.ok((await sdk.text()) === tree, `${LATCHKEY_BIN} serves another /sdk/latchkey.js than src/console/assets/latchkey.js: rebuild it, or set LATCHKEY_SDK_FROM_TREE=1`);
  }
  s.tab1 = await newTab("tab1");
});

step("the page loads signed out, under a strict CSP", async () => {
  const response = await s.tab1.goto(s.spaUrl);
  assert.match(response.headers()["content-security-policy"], /script-src 'self' http:\/\/127\.0\.0\.1:\d+; connect-src/);
  await expectStatus(s.tab1, /^Signed out$/);
  assert.ok(await s.tab1.locator("#login-form").isVisible(), "the sign-in form is shown");
  assert.ok(await s.tab1.locator("#register-form").isVisible(), "the sign-up form is shown");
  assert.equal(await refreshCookie(), null, "no refresh cookie yet");
  await screenshot("signed-out");
});

step("registering signs in (verification off), and the pair comes without refresh_token", async () => {
  const form = s.tab1.locator("#register-form");
  await form.getByLabel("Username").fill(user.username);
  await form.getByLabel("Email").fill(user.email);
  await form.getByLabel("Password", { exact: true }).fill(user.password);
  await form.getByLabel("Password again").fill(user.password);
  await form.getByRole("button", { name: "Create account" }).click();
  await expectStatus(s.tab1, new RegExp(`^Signed in as ${user.username}$`));
  const answers = await Promise.all(s.answers);
  const register = answers.find((a) => a.url === "/auth/register");
  assert.equal(register?.status, 201, "POST /auth/register answered 201");
  assert.ok(register.body.access_token, "the body has the access token");
  assert.equal(register.body.refresh_token, undefined, "the body has no refresh_token");
  assert.ok(await refreshCookie(), "the refresh cookie is set");
});

step("signing out, then in again with the form", async () => {
  await s.tab1.getByRole("button", { name: "Sign out", exact: true }).click();
  await expectStatus(s.tab1, /^Signed out$/);
  assert.equal(await refreshCookie(), null, "logout cleared the refresh cookie");
  await signIn(s.tab1);
});

step("a protected call (GET /users/me with Bearer) shows the user", async () => {
  await s.tab1.getByRole("button", { name: "Call GET /users/me" }).click();
  const output = s.tab1.locator("#me-output");
  await output.filter({ hasText: "GET /users/me → 200" }).waitFor();
  assert.match(await output.textContent(), new RegExp(`"username": "${user.username}"`));
  assert.match(await output.textContent(), new RegExp(`"email": "${user.email}"`));
  await screenshot("signed-in");
});

step("the refresh token is out of reach of scripts and storage", async () => {
  const cookie = await refreshCookie();
  assert.ok(cookie, "the refresh cookie exists");
  assert.deepEqual(
    { httpOnly: cookie.httpOnly, secure: cookie.secure, sameSite: cookie.sameSite, path: cookie.path, domain: cookie.domain },
    { httpOnly: true, secure: true, sameSite: "Strict", path: "/auth", domain: "127.0.0.1" },
  );
  const accessToken = await s.tab1.evaluate(() => window.latchkeyDemo.auth.getAccessToken());
  assert.ok(accessToken, "the client holds an access token");
  const seen = await s.tab1.evaluate(() => ({
    cookie: document.cookie,
    local: JSON.stringify({ ...localStorage }),
    session: JSON.stringify({ ...sessionStorage }),
  }));
  for (const [where, text] of Object.entries(seen)) {
    assert.ok(!text.includes(COOKIE) && !text.includes(cookie.value), `${where} does not hold the refresh token`);
    assert.ok(!text.includes(accessToken) && !text.includes("eyJ"), `${where} holds no token`);
  }
  // Even a page of latchkey's own origin under /auth cannot read it (HttpOnly, not just Path).
  const own = await newTab("own");
  await own.goto(`${s.api}/auth/nowhere`);
  const ownCookie = await own.evaluate(() => document.cookie);
  assert.ok(!ownCookie.includes(COOKIE), `document.cookie at ${s.api}/auth/ does not show ${COOKIE}`);
  await own.close();
  // Every token pair so far came without refresh_token, and not to be cached.
  for (const a of await Promise.all(s.answers)) {
    if (a.body?.access_token) {
      assert.equal(a.body.refresh_token, undefined, `${a.url}: no refresh_token in the body`);
      assert.match(a.cacheControl || "", /no-store/, `${a.url}: Cache-Control no-store`);
      assert.match(a.setCookie || "", new RegExp(`${COOKIE}=[^;]+;`), `${a.url}: sets the refresh cookie`);
    }
  }
});

step("a reload stays signed in (refresh from the cookie)", async () => {
  await s.tab1.reload();
  await expectStatus(s.tab1, new RegExp(`^Signed in as ${user.username}$`));
  assert.match(await s.tab1.locator("#events").textContent(), /restore: signed in/);
  assert.deepEqual(await callMe(s.tab1), { status: 200, username: user.username });
});

step("the client refreshes by itself before expiry, and once on a 401", async () => {
  const tab = s.tab1;
  // latchkey's real answers, told to expire in 2 s: the client must renew on its own.
  const shortLived = async (route) => {
    const response = await route.fetch();
    const body = await response.json();
    await route.fulfill({ response, json: response.ok() ? { ...body, expires_in: 2 } : body });
  };
  await tab.route(`${s.api}/auth/token/refresh`, shortLived);
  const automatic = await tab.evaluate(
    () =>
      new Promise((resolve) => {
        const auth = window.latchkeyDemo.auth;
        let seen = 0; // the first is the refresh asked for below, the second the automatic one
        const off = auth.onChange(({ reason }) => {
          if (reason !== "refresh") return;
          if (seen++ === 1) {
            off();
            resolve(Date.now() - started);
          }
        });
        const started = Date.now();
        auth.refresh();
      }),
  );
  await tab.unroute(`${s.api}/auth/token/refresh`, shortLived);
  assert.ok(automatic >= 900 && automatic < 5000, `the renewal came ${automatic} ms after a 2 s token was issued`);
  assert.equal(await tab.evaluate(() => window.latchkeyDemo.auth.refresh()), true, "back to a normal lifetime");

  // A 401 from the API (a token revoked or expired in flight): one refresh, one retry.
  await tab.route(
    `${s.api}/users/me`,
    (route) =>
      route.fulfill({
        status: 401,
        headers: { "Access-Control-Allow-Origin": s.spaOrigin, "Content-Type": "application/problem+json" },
        body: JSON.stringify({ status: 401, code: "token_invalid", detail: "expired (simulated by the test)" }),
      }),
    { times: 1 },
  );
  // Counted in a route handler, which runs before the request may leave the page: unlike
  // the "response" events, it cannot lag behind the page.evaluate that made the request.
  const statuses = [];
  const counted = async (route) => {
    const response = await route.fetch();
    statuses.push(response.status());
    await route.fulfill({ response });
  };
  await tab.route(`${s.api}/auth/token/refresh`, counted);
  assert.deepEqual(await callMe(tab), { status: 200, username: user.username });
  await tab.unroute(`${s.api}/auth/token/refresh`, counted);
  assert.deepEqual(statuses, [200], "exactly one refresh before the retry");
});

step("two tabs refreshing at the same moment both stay signed in", async () => {
  s.tab2 = await newTab("tab2");
  await s.tab2.goto(s.spaUrl);
  await expectStatus(s.tab2, new RegExp(`^Signed in as ${user.username}$`));
  const tabs = [s.tab1, s.tab2];

  // Through the client: Web Locks let one tab refresh at a time.
  const viaClient = await Promise.all(tabs.map((tab) => tab.evaluate(() => window.latchkeyDemo.auth.refresh())));
  assert.deepEqual(viaClient, [true, true], "both clients refreshed");

  // By hand, no lock, both at one instant: latchkey's grace window must converge.
  const before = s.answers.length;
  // "response" events may reach the test after page.evaluate's result; waiting for them
  // means watch() has recorded both answers before they are read below.
  const recorded = tabs.map((tab) => tab.waitForResponse(`${s.api}/auth/token/refresh`));
  const at = Date.now() + 300;
  const raw = await Promise.all(tabs.map((tab) => rawRefresh(tab, at)));
  await Promise.all(recorded);
  for (const [i, r] of raw.entries()) {
    assert.equal(r.status, 200, `tab ${i + 1}: concurrent refresh answered ${r.status} ${JSON.stringify(r.body ?? r.error)}`);
    assert.ok(r.body.access_token && r.body.refresh_token === undefined, `tab ${i + 1}: a pair without refresh_token`);
  }
  const seen = (await Promise.all(s.answers.slice(before))).filter((a) => a.url === "/auth/token/refresh");
  assert.equal(seen.length, 2, "two refresh answers seen");
  const [one, two] = seen.map((a) => ({ sent: a.sent, got: cookieIn(a.setCookie) }));
  assert.ok(one.sent && two.sent && one.got && two.got, `cookies sent and set: ${JSON.stringify([one, two])}`);
  if (one.sent === two.sent) {
    // Both presented the same token: the grace window hands both the one new token.
    assert.equal(one.got, two.got, "both tabs were handed the same new refresh cookie");
    console.log("# concurrent refresh: both tabs presented the same cookie and got the same new one");
  } else {
    // The second request left after the first answer: a plain rotation of the new cookie.
    console.log("# concurrent refresh: the requests did not overlap (the second presented the first's new cookie)");
  }

  // Each tab goes on: a protected call, and another refresh.
  for (const tab of tabs) {
    assert.deepEqual(await callMe(tab), { status: 200, username: user.username });
    assert.equal(await tab.evaluate(() => window.latchkeyDemo.auth.refresh()), true);
    await expectStatus(tab, new RegExp(`^Signed in as ${user.username}$`));
  }
  assert.deepEqual(await callMe(s.tab2), { status: 200, username: user.username });
});

step("signing out in one tab signs out the other", async () => {
  // A tab in the background gets no animation frames, which Playwright's clicks wait for.
  await s.tab1.bringToFront();
  await s.tab1.getByRole("button", { name: "Sign out", exact: true }).click();
  await expectStatus(s.tab1, /^Signed out$/);
  await expectStatus(s.tab2, /^Signed out$/);
  assert.match(await s.tab2.locator("#events").textContent(), /other-tab: signed-out/);
  assert.equal(await refreshCookie(), null, "the refresh cookie is gone");
  assert.equal(await s.tab2.evaluate(() => window.latchkeyDemo.auth.getAccessToken()), null, "tab 2 dropped its access token");
  assert.equal(await s.tab2.evaluate(() => window.latchkeyDemo.auth.refresh()), false, "tab 2's next refresh fails");
  const raw = await rawRefresh(s.tab2);
  assert.equal(raw.status, 401);
  assert.equal(raw.body.code, "token_invalid");
});

step("signing in reaches the other tab; sign out everywhere ends the session", async () => {
  await signIn(s.tab1);
  await expectStatus(s.tab2, new RegExp(`^Signed in as ${user.username}$`));
  const cookie = await refreshCookie();
  await s.tab1.getByRole("button", { name: "Sign out everywhere" }).click();
  await expectStatus(s.tab1, /^Signed out$/);
  await expectStatus(s.tab2, /^Signed out$/);
  assert.equal(await refreshCookie(), null, "the refresh cookie is gone");
  // The refresh token that the cookie held is revoked, not just forgotten.
  const replay = await post("/auth/token/refresh", { transport: false, body: { refresh_token: cookie.value } });
  assert.equal(replay.status, 401, `replaying the old refresh token: ${replay.text}`);
  assert.match(replay.body?.code ?? "", /^token_(revoked|reused)$/);
});

step("a disallowed origin cannot use the session", async () => {
  await signIn(s.tab1);
  const cookie = await refreshCookie();

  // The same example served from another site: latchkey does not let it in.
  const third = await newTab("third");
  await third.goto(`${s.thirdOrigin}/?api=${s.api}`);
  await third.waitForFunction(() => ["error", "signed-out"].includes(document.getElementById("status").dataset.status));
  assert.doesNotMatch(await statusOf(third).textContent(), /Signed in/);
  const fromThird = await rawRefresh(third);
  assert.equal(fromThird.status, 0, `a refresh from ${s.thirdOrigin} must be refused by the browser, got ${JSON.stringify(fromThird)}`);
  await third.close();

  // latchkey itself refuses the cookie from a foreign Origin, and without the header.
  const foreign = await post("/auth/token/refresh", { origin: s.thirdOrigin, cookie: cookie.value });
  assert.equal(foreign.status, 403, `foreign Origin: ${foreign.status} ${foreign.text}`);
  assert.equal(foreign.body?.code, "csrf_failed");
  const headerless = await post("/auth/token/refresh", { origin: s.spaOrigin, transport: false, cookie: cookie.value });
  assert.equal(headerless.status, 403, `no X-Token-Transport: ${headerless.status} ${headerless.text}`);
  assert.equal(headerless.body?.code, "csrf_failed");
  const logoutForeign = await post("/auth/logout", { origin: s.thirdOrigin, cookie: cookie.value });
  assert.equal(logoutForeign.status, 403, `logout from a foreign Origin: ${logoutForeign.status} ${logoutForeign.text}`);
  // ...and a login from a foreign page may not plant a session cookie either.
  const login = await post("/auth/login", { origin: s.thirdOrigin, body: { username: user.username, password: user.password } });
  assert.equal(login.status, 403, `login from a foreign Origin: ${login.status} ${login.text}`);
  assert.equal(login.body?.code, "csrf_failed");

  // Nothing was rotated or revoked by those: the browser's session goes on.
  assert.equal(await s.tab1.evaluate(() => window.latchkeyDemo.auth.refresh()), true);
  assert.deepEqual(await callMe(s.tab1), { status: 200, username: user.username });
});

step("latchkey's own origin may use the cookie; concurrent refreshes of one cookie converge", async () => {
  const own = new URL(s.api).origin;
  const setCookie = (answer) => answer.setCookie.map(cookieIn).find(Boolean) ?? null;
  const login = await post("/auth/login", { origin: own, body: { username: user.username, password: user.password } });
  assert.equal(login.status, 200, `login from ${own}: ${login.text}`);
  const first = setCookie(login);
  assert.ok(first, "the login set the refresh cookie");
  // Three refreshes of the same cookie at once (what tabs without Web Locks do): all
  // succeed and all are handed the same new cookie (API.md: the grace window converges).
  const racing = await Promise.all([1, 2, 3].map(() => post("/auth/token/refresh", { origin: own, cookie: first })));
  assert.deepEqual(racing.map((r) => r.status), [200, 200, 200], racing.map((r) => r.text).join("\n"));
  const handed = racing.map(setCookie);
  assert.ok(handed[0] && handed[0] !== first, "a new refresh cookie");
  assert.deepEqual(handed, [handed[0], handed[0], handed[0]], "every racer got the same new cookie");
  const next = await post("/auth/token/refresh", { origin: own, cookie: handed[0] });
  assert.equal(next.status, 200, `the converged cookie refreshes again: ${next.text}`);
  const logout = await post("/auth/logout", { origin: own, cookie: setCookie(next) });
  assert.equal(logout.status, 204, `logout from ${own}: ${logout.text}`);
  assert.match(logout.setCookie.join("\n"), new RegExp(`${COOKIE}=;.*Max-Age=0`, "i"), "logout clears the cookie");
});

step("the page fits a 360 px screen, and no script error or CSP violation happened", async () => {
  await s.tab1.bringToFront();
  await s.tab1.setViewportSize({ width: 360, height: 800 });
  const width = await s.tab1.evaluate(() => document.documentElement.scrollWidth);
  assert.ok(width <= 360, `the page is ${width} px wide at 360 px`);
  await screenshot("signed-in-360px");
  assert.deepEqual(s.pageErrors, []);
});
