// SPDX-License-Identifier: GPL-3.0-or-later
/**
 * @file latchkey's browser client, served by latchkey at `/sdk/latchkey.js`.
 *
 * An ES module with no dependencies and no build step. It keeps a browser session the way
 * API.md "Browser sessions" describes:
 * - the refresh token lives in an `HttpOnly` cookie that no script (this one included) can
 *   read; every request that sets or uses it carries `X-Token-Transport: cookie`;
 * - the access token lives in this object's memory only: never in `localStorage`,
 *   `sessionStorage` or `document.cookie`, so a reload starts without one and `restore()`
 *   gets a fresh one from the cookie;
 * - it is refreshed shortly before it expires and once on a 401; one tab refreshes at a
 *   time (Web Locks), and signing out in one tab signs out the others (BroadcastChannel).
 *
 * @example
 * import { Latchkey } from "https://auth.example.com/sdk/latchkey.js";
 * const auth = new Latchkey(); // latchkey's URL: where this file was loaded from
 * auth.onChange(({ status, user }) => render(status, user));
 * await auth.restore(); // still signed in after a reload?
 * const res = await auth.fetch("/users/me"); // Bearer added; one refresh and retry on a 401
 */

const TRANSPORT = { "X-Token-Transport": "cookie" };
/** Refresh this long before expiry at the latest (or halfway through a shorter life). */
const DEFAULT_MARGIN_SECONDS = 60;
/** A token this close to expiry is refreshed before it is sent. */
const STALE_MS = 5_000;
/** A background refresh that failed for another reason than a 401 is tried again after this. */
const RETRY_MS = 15_000;
/** latchkey's answer is awaited this long: a hung refresh must not hold every tab's lock. */
const REQUEST_TIMEOUT_MS = 30_000;

/** An error answer of latchkey (RFC 9457 problem details), or no answer at all (`status` 0). */
export class LatchkeyError extends Error {
  /**
   * @param {number} status HTTP status, 0 when latchkey could not be reached
   * @param {{code?: string, title?: string, detail?: string, errors?: Record<string, string[]>}} [problem]
   */
  constructor(status, problem = {}) {
    super(problem.detail || problem.title || `HTTP ${status}`);
    this.name = "LatchkeyError";
    /** @type {number} */
    this.status = status;
    /** @type {string} the problem's `code`, e.g. `invalid_credentials`, `network_error` */
    this.code = problem.code || (status ? "http_error" : "network_error");
    /** @type {Record<string, string[]>} field -> messages, on `validation_failed` */
    this.errors = problem.errors || {};
    /** The whole problem document. */
    this.problem = problem;
  }
}

/**
 * @typedef {object} User latchkey's user object (API.md "User object")
 * @property {string} id
 * @property {string} username
 * @property {string} email
 *
 * @typedef {"unknown" | "signed-in" | "signed-out"} Status `unknown` until `restore()` has answered
 *
 * @typedef {object} AuthState what `onChange` listeners receive
 * @property {Status} status
 * @property {User | null} user
 * @property {string} reason what happened: `login`, `register`, `activate`, `restore`,
 *   `refresh`, `password-change`, `logout`, `session-ended` (the refresh cookie was refused),
 *   or `other-tab` (another tab signed out)
 *
 * @typedef {object} LoginResult
 * @property {boolean} mfaRequired true: call `completeMfa(code)` next
 * @property {string[]} [methods] with `mfaRequired`: `totp`, `recovery_code`
 * @property {User} [user] without `mfaRequired`: the signed-in user
 */

/** A browser session with one latchkey. */
export class Latchkey {
  #base;
  #marginMs;
  #useLocks;
  #lockName;
  #status = /** @type {Status} */ ("unknown");
  #user = /** @type {User | null} */ (null);
  #accessToken = /** @type {string | null} */ (null);
  #expiresAt = 0;
  #mfaToken = /** @type {string | null} */ (null);
  #refreshing = /** @type {Promise<boolean> | null} */ (null);
  #timer = /** @type {ReturnType<typeof setTimeout> | undefined} */ (undefined);
  // Bumped by every sign-out: a refresh that was in flight then must not sign back in.
  #generation = 0;
  #listeners = new Set();
  #channel = /** @type {BroadcastChannel | null} */ (null);
  #onVisible = () => {
    if (document.visibilityState === "visible") this.#refreshIfDue();
  };

  /**
   * @param {object} [options]
   * @param {string} [options.baseUrl] latchkey's URL; default: where this file was loaded
   *   from (pass it when you copy the file into your own bundle)
   * @param {number} [options.refreshMargin] seconds before expiry to refresh the access token
   * @param {boolean} [options.locks] use the Web Locks API so one tab refreshes at a time
   */
  constructor({ baseUrl = new URL("..", import.meta.url).href, refreshMargin = DEFAULT_MARGIN_SECONDS, locks = true } = {}) {
    this.#base = String(baseUrl).replace(/\/+$/, "");
    this.#marginMs = refreshMargin * 1000;
    this.#useLocks = locks;
    this.#lockName = `latchkey-refresh ${this.#base}`;
    if (typeof BroadcastChannel === "function") {
      this.#channel = new BroadcastChannel(`latchkey ${this.#base}`);
      this.#channel.onmessage = (event) => this.#onMessage(event.data);
    }
    if (typeof document !== "undefined") document.addEventListener("visibilitychange", this.#onVisible);
  }

  /** @returns {Status} */
  get status() {
    return this.#status;
  }

  /** @returns {User | null} the signed-in user, as latchkey last described it */
  get user() {
    return this.#user;
  }

  /** @returns {boolean} */
  get signedIn() {
    return this.#status === "signed-in";
  }

  /** @returns {number} when the access token expires (ms since the epoch, local clock), 0 when there is none */
  get expiresAt() {
    return this.#expiresAt;
  }

  /** @returns {boolean} `login()` asked for a second factor and `completeMfa()` is awaited */
  get mfaPending() {
    return this.#mfaToken !== null;
  }

  /** @returns {string} latchkey's URL, without a trailing slash */
  get baseUrl() {
    return this.#base;
  }

  /**
   * Calls `listener` after every change of the session: sign-in, refresh, sign-out.
   * @param {(state: AuthState) => void} listener
   * @returns {() => void} unsubscribes
   */
  onChange(listener) {
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  }

  /**
   * On page load: a fresh access token from the refresh cookie, if the browser has a live one.
   * @returns {Promise<User | null>} the user, or null when signed out
   * @throws {LatchkeyError} latchkey unreachable or failing (the status stays as it was)
   */
  async restore() {
    if (this.signedIn) return this.#user;
    return (await this.refresh()) ? this.#user : null;
  }

  /**
   * Signs in with a password. With two-factor login on, resolves to `{mfaRequired: true}`
   * and `completeMfa(code)` finishes it.
   * @param {{username?: string, email?: string, password: string}} credentials
   * @returns {Promise<LoginResult>}
   * @throws {LatchkeyError} e.g. `invalid_credentials`, `account_inactive`, `throttled`
   */
  async login(credentials) {
    const answer = await this.#post("/auth/login", credentials);
    if (answer.mfa_required) {
      this.#mfaToken = answer.mfa_token;
      return { mfaRequired: true, methods: answer.methods || [] };
    }
    this.#mfaToken = null;
    this.#signIn(answer, "login", true);
    return { mfaRequired: false, user: answer.user };
  }

  /**
   * The second step of a two-factor login.
   * @param {string} code a TOTP code or an unused recovery code
   * @returns {Promise<LoginResult>}
   * @throws {LatchkeyError} a wrong code: `validation_failed` with `errors.code` (try again);
   *   `token_invalid`: the step expired or failed too often, start again with `login()`
   */
  async completeMfa(code) {
    if (this.#mfaToken === null) throw new LatchkeyError(0, { code: "mfa_not_started", detail: "call login() first" });
    let pair;
    try {
      pair = await this.#post("/auth/login/mfa", { mfa_token: this.#mfaToken, code: String(code) });
    } catch (err) {
      if (err instanceof LatchkeyError && err.status === 401) this.#mfaToken = null;
      throw err;
    }
    this.#mfaToken = null;
    this.#signIn(pair, "login", true);
    return { mfaRequired: false, user: pair.user };
  }

  /**
   * Creates an account. With email verification off latchkey signs the user in at once.
   * @param {{username: string, email: string, password: string, password_confirm: string,
   *   first_name?: string, last_name?: string, bio?: string}} fields
   * @returns {Promise<{signedIn: boolean, activationRequired: boolean, user: User}>}
   * @throws {LatchkeyError} `validation_failed` (see `errors`), `conflict`
   */
  async register(fields) {
    const answer = await this.#post("/auth/register", fields);
    if (!answer.access_token) return { signedIn: false, activationRequired: Boolean(answer.activation_required), user: answer.user };
    this.#signIn(answer, "register", true);
    return { signedIn: true, activationRequired: false, user: answer.user };
  }

  /**
   * Activates an account from the `uid` and `token` of its activation link.
   * @param {string} uid
   * @param {string} token
   * @returns {Promise<{signedIn: boolean, approvalRequired: boolean, user: User}>}
   */
  async activate(uid, token) {
    const answer = await this.#post("/auth/activate", { uid, token });
    if (!answer.access_token) return { signedIn: false, approvalRequired: Boolean(answer.approval_required), user: answer.user };
    this.#signIn(answer, "activate", true);
    return { signedIn: true, approvalRequired: false, user: answer.user };
  }

  /**
   * Changes the password; latchkey ends every other session and this one goes on.
   * @param {{current_password: string, new_password: string, new_password_confirm: string}} fields
   * @returns {Promise<User>}
   */
  async changePassword(fields) {
    const response = await this.fetch("/users/me/password", {
      method: "POST",
      credentials: "include",
      headers: { ...TRANSPORT, "Content-Type": "application/json" },
      body: JSON.stringify(fields),
    });
    const pair = await answerOf(response);
    this.#signIn(pair, "password-change", false);
    return pair.user;
  }

  /**
   * The access token, refreshed first when it is about to expire; for the rare request
   * that `fetch()` cannot make (a WebSocket's first message, say). Do not store it.
   * @returns {Promise<string | null>} null when signed out
   */
  async getAccessToken() {
    if (this.signedIn && Date.now() >= this.#expiresAt - STALE_MS) await this.refresh();
    return this.#accessToken;
  }

  /**
   * `fetch()` with `Authorization: Bearer <access token>` (when signed in). On a 401 the
   * token is refreshed once and the request sent again. A relative URL is resolved against
   * latchkey's URL (`auth.fetch("/users/me")`); give an absolute one for your own API.
   * @param {RequestInfo | URL} input
   * @param {RequestInit} [init]
   * @returns {Promise<Response>}
   */
  async fetch(input, init) {
    // A template, so the body can be sent a second time.
    const template = new Request(this.#resolve(input), init);
    const send = async () => {
      const token = await this.getAccessToken();
      const request = template.clone();
      if (token) request.headers.set("Authorization", `Bearer ${token}`);
      return { token, response: await fetch(request) };
    };
    const first = await send();
    if (first.response.status !== 401 || !first.token) return first.response;
    // Expired in flight, or revoked. Another call may have refreshed meanwhile.
    if (first.token === this.#accessToken && !(await this.refresh().catch(() => false))) return first.response;
    if (!this.#accessToken) return first.response;
    return (await send()).response;
  }

  /**
   * A new access token from the refresh cookie. One call at a time per tab, and with Web
   * Locks one tab at a time; without them concurrent refreshes are still safe, since
   * latchkey's grace window hands every tab the same new cookie.
   * @returns {Promise<boolean>} true: signed in; false: no live session (now signed out)
   * @throws {LatchkeyError} latchkey unreachable or failing; the session is kept
   */
  refresh() {
    this.#refreshing ??= this.#exclusive(() => this.#refreshNow()).finally(() => {
      this.#refreshing = null;
    });
    return this.#refreshing;
  }

  /**
   * Signs out this browser: latchkey revokes the session and clears the cookie, and every
   * tab drops its access token. The local session is dropped even if latchkey cannot be
   * reached (the error is rethrown, so the app can say so).
   * @returns {Promise<void>}
   */
  async logout() {
    let failure = null;
    try {
      await this.#exclusive(() => this.#post("/auth/logout"));
    } catch (err) {
      failure = err;
    }
    this.#signOut("logout", true);
    if (failure) throw failure;
  }

  /**
   * Ends every session of the user, on every device, then signs out this browser.
   * @returns {Promise<void>}
   */
  async logoutEverywhere() {
    await answerOf(await this.fetch("/auth/logout/all", { method: "POST" }));
    // The cookie's session is revoked already; this clears the cookie and tells the tabs.
    await this.logout().catch((err) => {
      if (!(err instanceof LatchkeyError && err.status === 401)) throw err;
    });
  }

  /** Stops timers and listeners: for an app that is torn down without a page unload. */
  close() {
    clearTimeout(this.#timer);
    this.#channel?.close();
    this.#channel = null;
    if (typeof document !== "undefined") document.removeEventListener("visibilitychange", this.#onVisible);
  }

  async #refreshNow() {
    const generation = this.#generation;
    const wasSignedIn = this.signedIn;
    let pair;
    try {
      pair = await this.#post("/auth/token/refresh");
    } catch (err) {
      // 401 (token_invalid, token_revoked, token_reused): the cookie is dead, and cleared.
      if (!(err instanceof LatchkeyError && err.status === 401)) throw err;
      if (generation === this.#generation) this.#signOut(wasSignedIn ? "session-ended" : "restore", wasSignedIn);
      return false;
    }
    if (generation !== this.#generation) return false; // signed out while this was in flight
    this.#signIn(pair, wasSignedIn ? "refresh" : "restore", false);
    return true;
  }

  #signIn(pair, reason, announce) {
    this.#accessToken = pair.access_token;
    // Relative to the local clock: the client's and the server's clocks need not agree.
    this.#expiresAt = Date.now() + pair.expires_in * 1000;
    this.#user = pair.user;
    this.#status = "signed-in";
    this.#schedule();
    this.#emit(reason);
    if (announce) this.#channel?.postMessage({ type: "signed-in" });
  }

  #signOut(reason, announce) {
    this.#generation += 1;
    clearTimeout(this.#timer);
    const changed = this.#status !== "signed-out";
    this.#accessToken = null;
    this.#expiresAt = 0;
    this.#user = null;
    this.#mfaToken = null;
    this.#status = "signed-out";
    if (changed) this.#emit(reason);
    if (announce) this.#channel?.postMessage({ type: "signed-out" });
  }

  #onMessage(message) {
    if (message?.type === "signed-out") this.#signOut("other-tab", false);
    // Another tab signed in: the cookie is shared, so this tab can have the session too.
    else if (message?.type === "signed-in" && !this.signedIn) this.restore().catch(() => {});
  }

  #emit(reason) {
    const state = { status: this.#status, user: this.#user, reason };
    for (const listener of this.#listeners) {
      try {
        listener(state);
      } catch (err) {
        // One broken listener must not keep the others (or the session) from updating.
        queueMicrotask(() => {
          throw err;
        });
      }
    }
  }

  #schedule() {
    clearTimeout(this.#timer);
    const life = this.#expiresAt - Date.now();
    const delay = Math.max(life - Math.min(this.#marginMs, life / 2), 1000);
    this.#timer = setTimeout(() => this.#background(), Math.min(delay, 2 ** 31 - 1));
  }

  // Timers are slowed down in background tabs: catch up when the tab is shown again.
  #refreshIfDue() {
    if (this.signedIn && Date.now() >= this.#expiresAt - this.#marginMs) this.#background();
  }

  #background() {
    this.refresh().catch(() => {
      if (!this.signedIn) return;
      clearTimeout(this.#timer);
      this.#timer = setTimeout(() => this.#background(), RETRY_MS);
    });
  }

  #exclusive(task) {
    const locks = this.#useLocks ? globalThis.navigator?.locks : undefined;
    return locks ? locks.request(this.#lockName, task) : task();
  }

  #resolve(input) {
    if (input instanceof Request || input instanceof URL) return input;
    const text = String(input);
    return /^[a-z][a-z\d+.-]*:/i.test(text) ? text : `${this.#base}/${text.replace(/^\/+/, "")}`;
  }

  /** A POST to latchkey with the cookie transport; `body` undefined sends no body. */
  async #post(path, body) {
    const init = { method: "POST", credentials: "include", cache: "no-store", headers: { ...TRANSPORT } };
    if (typeof AbortSignal.timeout === "function") init.signal = AbortSignal.timeout(REQUEST_TIMEOUT_MS);
    if (body !== undefined) {
      init.headers["Content-Type"] = "application/json";
      init.body = JSON.stringify(body);
    }
    let response;
    try {
      response = await fetch(this.#resolve(path), init);
    } catch (err) {
      throw new LatchkeyError(0, { code: "network_error", detail: `latchkey could not be reached (${err.message})` });
    }
    return answerOf(response);
  }
}

/**
 * The JSON of a successful answer (null for 204), or a LatchkeyError from a problem document.
 * @param {Response} response
 */
async function answerOf(response) {
  if (response.ok) return response.status === 204 ? null : response.json();
  let problem = {};
  try {
    problem = await response.json();
  } catch {
    problem = { detail: `${response.status} ${response.statusText}`.trim() };
  }
  throw new LatchkeyError(response.status, problem);
}

export default Latchkey;
