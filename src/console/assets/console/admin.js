// SPDX-License-Identifier: GPL-3.0-or-later
// /console/admin, for staff: the user list (server-side paging, so 100k users cost one page),
// a user's page (#user/<id>) and the groups (#groups). The list's state lives in the hash
// (#users?search=…&page=…), so reload and back keep it.
import { $, api, auth, clearErrors, errorText, formSay, h, notify, onSubmit, sessionItems, when, LatchkeyError } from "./common.js";

let groupNames = [];
let listHash = "#users";
let current = null; // the user on show in #user/<id>
let flash = null; // a message for the page the next hash change shows

function showOnly(id) {
  $("loading").hidden = true;
  for (const view of document.querySelectorAll(".view")) view.hidden = view.id !== id;
}

const failed = (err) => notify(errorText(err), "error");
const yesNo = (flag) => h("span", { class: flag ? "yes" : "no" }, flag ? "yes" : "no");
const day = (text) => (text ? new Date(text).toLocaleDateString() : "never");

function route() {
  const hash = location.hash || "#users";
  if (hash.startsWith("#user/")) return showUser(decodeURIComponent(hash.slice(6)));
  if (hash === "#groups") return showGroups();
  return showUsers(new URLSearchParams(hash.split("?")[1] || ""));
}

addEventListener("hashchange", () => {
  notify(flash?.[0] || "", flash?.[1]);
  flash = null;
  if (auth.user?.is_staff) route();
});

// ---- the user list

const filters = $("filters");
let listParams = new URLSearchParams();
let seq = 0;
let debounce;

/** The filters as query parameters, without the defaults (the first option of a select). */
function formParams() {
  const params = new URLSearchParams();
  for (const field of filters.elements) {
    const value = field.value.trim();
    const fallback = field.tagName === "SELECT" ? field.options[0].value : "";
    if (field.name && value && value !== fallback) params.set(field.name, value);
  }
  return params;
}

function showUsers(params) {
  showOnly("users-view");
  for (const field of filters.elements) {
    if (field.name) field.value = params.get(field.name) ?? (field.tagName === "SELECT" ? field.options[0].value : "");
  }
  loadUsers(params);
}

async function loadUsers(params) {
  const mine = ++seq;
  listParams = params;
  listHash = `#users${[...params].length ? `?${params}` : ""}`;
  $("nav-users").href = listHash;
  if (location.hash !== listHash) history.replaceState(null, "", listHash);
  const query = new URLSearchParams(params);
  for (const field of filters.elements) {
    if (field.tagName === "SELECT" && field.options[0].value && !query.has(field.name)) query.set(field.name, field.options[0].value);
  }
  $("users-table").setAttribute("aria-busy", "true");
  try {
    const page = await api("GET", `/users?${query}`);
    if (mine !== seq) return; // a newer search went out meanwhile
    renderUsers(page);
  } catch (err) {
    if (mine !== seq) return;
    if (err instanceof LatchkeyError && err.status === 404 && params.has("page")) {
      params.delete("page"); // past the last page (users were deleted meanwhile)
      return loadUsers(params);
    }
    failed(err);
  } finally {
    if (mine === seq) $("users-table").removeAttribute("aria-busy");
  }
}

function renderUsers({ count, count_exact, next, previous, results }) {
  const rows = results.map((u) =>
    h(
      "tr",
      {},
      h("td", {}, h("a", { href: `#user/${encodeURIComponent(u.id)}` }, u.username)),
      h("td", {}, u.email),
      h("td", { class: "wide" }, [u.first_name, u.last_name].filter(Boolean).join(" ")),
      h("td", {}, yesNo(u.is_active)),
      h("td", { class: "wide" }, yesNo(u.is_staff)),
      h("td", { class: "wide" }, day(u.date_joined)),
      h("td", { class: "wide" }, day(u.last_login)),
    ),
  );
  if (!rows.length) rows.push(h("tr", {}, h("td", { colspan: "7" }, "No user matches.")));
  $("users-body").replaceChildren(...rows);
  const page = Number(listParams.get("page")) || 1;
  // Past 10,000 matches the server stops counting (count_exact false): "10,000+ users",
  // and the number of pages is unknown.
  if (count_exact) {
    const pages = Math.max(1, Math.ceil(count / (Number($("f-size").value) || 20)));
    $("count").textContent = `${count.toLocaleString()} user${count === 1 ? "" : "s"} · page ${page} of ${pages.toLocaleString()}`;
  } else {
    $("count").textContent = `${count.toLocaleString()}+ users · page ${page}`;
  }
  // aria-disabled, not disabled: a disabled button would drop the keyboard focus.
  $("prev").setAttribute("aria-disabled", String(!previous));
  $("next").setAttribute("aria-disabled", String(!next));
}

function turn(by) {
  if ($(by < 0 ? "prev" : "next").getAttribute("aria-disabled") === "true") return;
  const params = new URLSearchParams(listParams);
  const page = (Number(params.get("page")) || 1) + by;
  if (page > 1) params.set("page", page);
  else params.delete("page");
  loadUsers(params);
}
$("prev").addEventListener("click", () => turn(-1));
$("next").addEventListener("click", () => turn(1));

filters.addEventListener("input", (event) => {
  if (event.target.name !== "search") return;
  clearTimeout(debounce);
  debounce = setTimeout(() => loadUsers(formParams()), 300);
});
filters.addEventListener("change", (event) => {
  if (event.target.name === "search") return;
  clearTimeout(debounce); // formParams() has the search text already
  loadUsers(formParams());
});
filters.addEventListener("submit", (event) => {
  event.preventDefault();
  clearTimeout(debounce);
  loadUsers(formParams());
});

// ---- one user

async function showUser(id) {
  showOnly("user-view");
  $("back").href = listHash;
  $("u-content").hidden = true;
  $("u-title").textContent = "Loading…";
  try {
    renderUser(await api("GET", `/users/${encodeURIComponent(id)}`));
    loadSessions(id);
  } catch (err) {
    $("u-title").textContent = "User";
    if (err instanceof LatchkeyError && err.status === 404) notify("There is no such user (deleted?).", "error");
    else failed(err);
  }
}

/** The user's sessions; staff can end them only all at once, by deactivating. */
async function loadSessions(id) {
  const list = $("u-sessions");
  list.replaceChildren(h("li", {}, "Loading…"));
  let items;
  try {
    items = sessionItems(await api("GET", `/users/${encodeURIComponent(id)}/sessions`));
  } catch (err) {
    items = [h("li", {}, errorText(err))];
  }
  if (current?.id === id) list.replaceChildren(...items); // still this user's page
}

function renderUser(u) {
  current = u;
  $("u-title").textContent = u.username;
  const facts = [
    ["Id", u.id],
    ["Email", `${u.email} (${u.email_verified ? "verified" : "not verified"})`],
    ["Name", [u.first_name, u.last_name].filter(Boolean).join(" ") || "—"],
    ["Bio", u.bio || "—"],
    ["Active", u.is_active ? "yes" : u.email_verified ? "no (pending approval, or deactivated)" : "no (email not verified)"],
    ["Staff", u.is_staff ? "yes" : "no"],
    ["Groups", u.groups.join(", ") || "none"],
    ["Joined", when(u.date_joined)],
    ["Last login", when(u.last_login)],
  ];
  $("u-facts").replaceChildren(...facts.flatMap(([k, v]) => [h("dt", {}, k), h("dd", {}, v)]));
  $("u-active").textContent = u.is_active ? "Deactivate" : "Activate / approve";
  $("u-active").className = u.is_active ? "danger" : "";
  $("u-staff").textContent = u.is_staff ? "Remove staff status" : "Make staff";
  $("u-mfa").textContent = `Two-factor: ${u.mfa_enabled ? "on" : "off"}`;
  $("u-mfa-reset").hidden = !u.mfa_enabled;
  for (const form of [$("groups-form"), $("claims-form")]) clearErrors(form);
  $("u-groups").value = u.groups.join(", ");
  $("u-claims").value = JSON.stringify(u.claims ?? {}, null, 2);
  $("u-content").hidden = false;
}

const patchUser = (body) => api("PATCH", `/users/${encodeURIComponent(current.id)}`, body);
const self = () => current.id === auth.user?.id;

/** The activate/deactivate and staff buttons: flip one flag (asking first before locking oneself out). */
function toggle(button, flag, risk, on, off) {
  $(button).addEventListener("click", async () => {
    const value = !current[flag];
    if (!value && self() && !confirm(risk)) return;
    try {
      renderUser(await patchUser({ [flag]: value }));
      if (flag === "is_active") loadSessions(current.id); // deactivating ended them
      notify(`${current.username} ${value ? on : off}.`, "ok");
    } catch (err) {
      failed(err);
    }
  });
}
toggle("u-active", "is_active", "Deactivate your own account? You will be signed out.", "is active", "is deactivated and signed out everywhere");
toggle("u-staff", "is_staff", "Remove your own staff status? You will lose access to this page.", "is now staff", "is no longer staff");

onSubmit($("groups-form"), async ({ groups }, form) => {
  const names = groups.split(",").map((name) => name.trim()).filter(Boolean);
  renderUser(await patchUser({ groups: names }));
  formSay(form, "Groups saved.");
});

onSubmit($("claims-form"), async ({ claims: text }, form) => {
  let claims;
  try {
    claims = JSON.parse(text.trim() || "{}");
  } catch (err) {
    throw new LatchkeyError(400, { errors: { claims: [`This is not valid JSON: ${err.message}`] } });
  }
  if (!claims || typeof claims !== "object" || Array.isArray(claims)) {
    throw new LatchkeyError(400, { errors: { claims: ['Claims must be a JSON object, such as {"tenant": "acme"}.'] } });
  }
  renderUser(await patchUser({ claims }));
  formSay(form, "Claims saved.");
});

$("u-mfa-reset").addEventListener("click", async () => {
  if (!confirm(`Reset two-factor login of ${current.username}? They sign in with the password alone until they set it up again, and are signed out everywhere.`)) return;
  try {
    await api("DELETE", `/users/${encodeURIComponent(current.id)}/mfa`);
    renderUser(await api("GET", `/users/${encodeURIComponent(current.id)}`));
    loadSessions(current.id);
    notify(`Two-factor login of ${current.username} has been reset.`, "ok");
  } catch (err) {
    failed(err);
  }
});

$("u-delete").addEventListener("click", async () => {
  if (!confirm(`Delete the user ${current.username}? This cannot be undone.`)) return;
  try {
    await api("DELETE", `/users/${encodeURIComponent(current.id)}`);
    flash = [`The user ${current.username} has been deleted.`, "ok"];
    location.hash = listHash;
  } catch (err) {
    failed(err);
  }
});

// ---- groups

async function loadGroups() {
  const groups = await api("GET", "/groups");
  groupNames = groups.map((g) => g.name);
  const select = $("f-group");
  const chosen = select.value || listParams.get("group") || "";
  select.replaceChildren(h("option", { value: "" }, "Any"), ...groupNames.map((name) => h("option", {}, name)));
  select.value = chosen;
  const some = groupNames.slice(0, 12).join(", ") + (groupNames.length > 12 ? ", …" : "");
  $("u-groups-hint").textContent = `Names separated by commas. ${groupNames.length ? `Existing groups: ${some}.` : "There are no groups yet."}`;
  return groups;
}

async function showGroups() {
  showOnly("groups-view");
  try {
    const groups = await loadGroups();
    const rows = groups.map((g) =>
      h(
        "tr",
        {},
        h("td", {}, g.name),
        h("td", {}, h("a", { href: `#users?${new URLSearchParams({ group: g.name })}`, "aria-label": `${g.member_count} member${g.member_count === 1 ? "" : "s"} of ${g.name}` }, String(g.member_count))),
        h("td", {}, h("button", { type: "button", class: "secondary", "data-group": g.name, "aria-label": `Delete group ${g.name}` }, "Delete")),
      ),
    );
    if (!rows.length) rows.push(h("tr", {}, h("td", { colspan: "3" }, "No groups yet.")));
    $("groups-body").replaceChildren(...rows);
  } catch (err) {
    failed(err);
  }
}

$("groups-body").addEventListener("click", async (event) => {
  const name = event.target.closest("button")?.dataset.group;
  if (!name || !confirm(`Delete the group ${name}? Its members lose it.`)) return;
  try {
    await api("DELETE", `/groups/${encodeURIComponent(name)}`);
    await showGroups();
    notify(`The group ${name} has been deleted.`, "ok");
  } catch (err) {
    failed(err);
  }
});

onSubmit(
  $("group-form"),
  async ({ name }, form) => {
    await api("POST", "/groups", { name: name.trim() });
    form.reset();
    await showGroups();
    formSay(form, `The group ${name.trim()} has been created.`);
  },
  { conflictField: "name" },
);

// ---- the session

async function start(user) {
  $("who").textContent = user.username;
  if (!user.is_staff) {
    $("forbidden-who").textContent = user.username;
    return showOnly("forbidden");
  }
  $("nav").hidden = false;
  try {
    await loadGroups(); // the group filter's options
  } catch (err) {
    failed(err); // e.g. 403 mfa_required: the same answer would come for every page
  }
  route();
}

auth.onChange(({ status, user, reason }) => {
  if (status === "signed-in" && reason !== "refresh") start(user);
  if (status === "signed-out") {
    $("nav").hidden = true;
    showOnly("signed-out");
    if (reason === "session-ended") notify("Your session has ended. Please sign in again.");
  }
});

$("signout").addEventListener("click", () => auth.logout().catch(failed));

// restore() announces a session through onChange, which starts the page.
try {
  if (!(await auth.restore())) showOnly("signed-out");
} catch (err) {
  showOnly("signed-out");
  notify(`${errorText(err)} Reload the page to try again.`, "error");
}
