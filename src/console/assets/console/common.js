// SPDX-License-Identifier: GPL-3.0-or-later
// What every console page shares: the session, JSON calls, forms and how problems show.
import { Latchkey, LatchkeyError } from "./latchkey.js";

export { LatchkeyError };

// The SDK's default base URL comes from import.meta.url, which is /console/static/<v>/ here.
export const auth = new Latchkey({ baseUrl: location.origin });

// LatchkeyError carries the problem document but not the headers, and the SDK reads the
// answers of login, register, activate and password change itself. To say *when* to retry
// after a 429 or 503, remember the last Retry-After seen; nothing else about fetch changes.
let lastRetry = { seconds: 0, at: 0 };
const nativeFetch = globalThis.fetch.bind(globalThis);
globalThis.fetch = async (...args) => {
  const response = await nativeFetch(...args);
  if (response.status === 429 || response.status === 503) {
    lastRetry = { seconds: Number(response.headers.get("Retry-After")) || 0, at: Date.now() };
  }
  return response;
};

/** "Try again in 42 seconds (at 14:03:12)." for a 429 or 503, else "". */
function retryText(err) {
  if (err.status !== 429 && err.status !== 503) return "";
  const what = err.status === 429 ? "Too many requests." : "latchkey is busy or unavailable.";
  const seconds = err.retryAfter ?? (Date.now() - lastRetry.at < 5000 ? lastRetry.seconds : 0);
  if (!seconds) return `${what} Try again shortly.`;
  const wait = seconds < 120 ? `${seconds} second${seconds === 1 ? "" : "s"}` : `${Math.ceil(seconds / 60)} minutes`;
  return `${what} Try again in ${wait} (at ${new Date(Date.now() + seconds * 1000).toLocaleTimeString()}).`;
}

/** A JSON call, with the Bearer header when signed in; throws a LatchkeyError. */
export async function api(method, path, body) {
  const init = { method, headers: {} };
  if (body !== undefined) {
    init.headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  let response;
  try {
    response = await auth.fetch(path, init);
  } catch (err) {
    if (err instanceof LatchkeyError) throw err;
    throw new LatchkeyError(0, { code: "network_error", detail: "latchkey could not be reached. Check your connection and try again." });
  }
  if (response.ok) return response.status === 204 ? null : response.json();
  const problem = await response.json().catch(() => ({ detail: `${response.status} ${response.statusText}` }));
  const err = new LatchkeyError(response.status, problem);
  err.retryAfter = Number(response.headers.get("Retry-After")) || undefined;
  throw err;
}

export const $ = (id) => document.getElementById(id);

/** h("a", {href: "#x"}, "text", child…): text is never parsed as HTML. */
export function h(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (value === false || value == null) continue;
    if (key === "class") node.className = value;
    else node.setAttribute(key, value === true ? "" : value);
  }
  node.append(...children.flat().filter((c) => c != null && c !== false));
  return node;
}

/** Shows `text` in a message box (empty: hides it); kind "", "ok" or "error". */
export function say(node, text, kind = "") {
  node.textContent = text;
  node.className = `message ${kind}`.trim();
  node.hidden = !text;
}

export const notify = (text, kind = "") => say($("message"), text, kind);

/** Retry advice, the problem's detail, or the exception's message. */
export function errorText(err) {
  if (!(err instanceof LatchkeyError)) return `Something went wrong: ${err?.message || err}`;
  return retryText(err) || err.problem.detail || err.message;
}

/** The form's own message box, at its top. */
function formMessage(form) {
  let box = form.querySelector(":scope > .message");
  if (!box) {
    box = h("p", { class: "message", role: "alert", tabindex: "-1", hidden: true });
    form.prepend(box);
  }
  return box;
}

export const formSay = (form, text, kind = "ok") => say(formMessage(form), text, kind);

export function clearErrors(form) {
  for (const p of form.querySelectorAll(".field-error")) p.remove();
  for (const field of form.querySelectorAll("[aria-invalid]")) {
    field.removeAttribute("aria-invalid");
    const ids = (field.getAttribute("aria-describedby") || "").split(" ").filter((id) => id && !id.endsWith("-error"));
    if (ids.length) field.setAttribute("aria-describedby", ids.join(" "));
    else field.removeAttribute("aria-describedby");
  }
  say(formMessage(form), "");
}

/** Messages under a field, tied to it for screen readers. */
export function fieldError(form, name, messages) {
  const field = form.elements.namedItem(name);
  const id = `${field.id || `${form.id}-${name}`}-error`;
  let p = document.getElementById(id);
  if (!p) {
    p = h("p", { class: "field-error", id });
    field.after(p);
  }
  p.textContent = [].concat(messages).join(" ");
  field.setAttribute("aria-invalid", "true");
  const described = (field.getAttribute("aria-describedby") || "").split(" ").filter(Boolean);
  if (!described.includes(id)) field.setAttribute("aria-describedby", [...described, id].join(" "));
}

/**
 * Shows an error where it belongs: each `errors` entry under its field (`alias` maps an API
 * field to a form field), anything else (non_field_errors, detail, retry advice) at the top
 * of the form. `conflictField`: the field a 409 is about (the problem has no `errors`).
 */
export function showErrors(form, err, { alias = {}, conflictField } = {}) {
  const general = [];
  let first = null;
  const errors = err instanceof LatchkeyError ? err.errors : {};
  for (const [key, messages] of Object.entries(errors)) {
    const name = alias[key] || key;
    const field = form.elements.namedItem(name);
    if (key !== "non_field_errors" && field && field.type !== "hidden" && field.type !== "submit") {
      fieldError(form, name, messages);
      first ??= field;
    } else {
      general.push(key === "non_field_errors" ? [].concat(messages).join(" ") : `${key}: ${[].concat(messages).join(" ")}`);
    }
  }
  const field = typeof conflictField === "function" ? conflictField(err) : conflictField;
  if (err instanceof LatchkeyError && err.status === 409 && field && form.elements.namedItem(field)) {
    fieldError(form, field, err.problem.detail || "Already taken.");
    first ??= form.elements.namedItem(field);
  } else if (!Object.keys(errors).length) {
    general.push(errorText(err));
  }
  if (general.length) {
    const box = formMessage(form);
    say(box, general.join(" "), "error");
    if (!first) box.focus();
  }
  first?.focus();
}

/** Handles a form's submit: no page load, one at a time; what `handler(values, form)` throws is shown on the form. */
export function onSubmit(form, handler, options) {
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    // Buttons stay enabled (disabling one drops the keyboard focus); a second submit is ignored.
    if (form.getAttribute("aria-busy") === "true") return;
    clearErrors(form);
    form.setAttribute("aria-busy", "true");
    try {
      await handler(Object.fromEntries(new FormData(form)), form);
    } catch (err) {
      showErrors(form, err, options);
    } finally {
      form.removeAttribute("aria-busy");
    }
  });
}

export const when = (text) => (text ? new Date(text).toLocaleString() : "never");
const brief = (text) => new Date(text).toLocaleString(undefined, { dateStyle: "medium", timeStyle: "short" });

// The first match names the browser and the system: Edge's user agent says Chrome and
// Safari too, Chrome's says Safari, Android's says Linux and the iPhone's "like Mac OS X".
const BROWSERS = [[/Edg(e|A|iOS)?\//, "Edge"], [/OPR\//, "Opera"], [/Firefox\/|FxiOS/, "Firefox"], [/Chrome\/|CriOS/, "Chrome"], [/Safari\//, "Safari"]];
const SYSTEMS = [[/Android/, "Android"], [/iPhone|iPad|iPod/, "iOS"], [/Windows/, "Windows"], [/Macintosh|Mac OS X/, "macOS"], [/CrOS/, "ChromeOS"], [/Linux/, "Linux"]];
const pick = (list, ua) => list.find(([re]) => re.test(ua))?.[1];

/** "Firefox on Windows"; another client (curl, an app) by its first word. */
export function device(ua) {
  const browser = pick(BROWSERS, ua);
  const system = pick(SYSTEMS, ua);
  if (browser) return system ? `${browser} on ${system}` : browser;
  return ua.split(" ")[0].slice(0, 40) || "Unknown client";
}

const AMR = { pwd: "password", otp: "authenticator code", mfa: null };

/** The items of a session list (API.md "Sessions"); `action(session, name)` may add a button to one. */
export function sessionItems(sessions, action = () => null) {
  if (!sessions.length) return [h("li", {}, "No live sessions.")];
  return sessions.map((s) => {
    const name = device(s.user_agent);
    const how = s.amr.map((m) => (m in AMR ? AMR[m] : m)).filter(Boolean).join(" and ");
    return h(
      "li",
      {},
      h(
        "div",
        {},
        h("strong", { title: s.user_agent || null }, name),
        s.current && h("span", { class: "badge" }, "this device"),
        h("span", { class: "meta" }, `Last used ${brief(s.last_used_at)}${s.ip ? ` from ${s.ip}` : ""}`),
        h("span", { class: "meta" }, `Signed in ${brief(s.created_at)}${how ? ` with ${how}` : ""}`),
      ),
      action(s, name),
    );
  });
}

/** The uid and token of a link such as /activate/{uid}/{token}, or null. */
export function linkParts(prefix) {
  const rest = location.pathname.slice(prefix.length).split("/").filter(Boolean);
  if (!location.pathname.startsWith(prefix) || rest.length !== 2) return null;
  try {
    return { uid: decodeURIComponent(rest[0]), token: decodeURIComponent(rest[1]) };
  } catch {
    return null;
  }
}
