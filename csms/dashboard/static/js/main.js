// The dashboard's shell: login, navigation, the live indicator, and the view router.
// Views are chosen by the URL fragment (#/chargers/CP-1), which never carries the token.

import { get, liveEvents, onUnauthorized, session } from "./api.js";
import { h, replace, tickTimes } from "./dom.js";
import * as charger from "./views/charger.js";
import * as chargers from "./views/chargers.js";
import * as events from "./views/events.js";
import * as overview from "./views/overview.js";
import * as transactions from "./views/transactions.js";
import * as webhooks from "./views/webhooks.js";

const root = document.getElementById("app");
let live = null; // opens the view's event stream (api.liveEvents)
let cleanup = null;
let clock = null;

const NAV = [
  ["overview", "Overview"],
  ["chargers", "Chargers"],
  ["events", "Events"],
  ["transactions", "Transactions"],
  ["webhooks", "Webhooks"],
];

function route() {
  const parts = (location.hash.replace(/^#\/?/, "") || "overview").split("/").map(decodeURIComponent);
  const [name, id] = parts;
  if (name === "chargers" && id) return { nav: "chargers", view: charger, params: { id } };
  if (name === "transactions" && id) return { nav: "transactions", view: transactions, params: { id } };
  if (name === "webhooks" && id) return { nav: "webhooks", view: webhooks, params: { id } };
  const views = { overview, chargers, events, transactions, webhooks };
  return views[name] ? { nav: name, view: views[name], params: {} } : { nav: "overview", view: overview, params: {} };
}

function showLogin(message) {
  stopApp();
  const input = h("input", {
    type: "password",
    id: "token",
    name: "token",
    autocomplete: "current-password",
    placeholder: "chk_…",
    required: true,
    autofocus: true,
  });
  const error = h("p", { class: "field-error", id: "login-error", role: "alert" }, message || "");
  const button = h("button", { type: "submit", class: "btn btn-primary" }, "Log in");
  const form = h(
    "form",
    { class: "login-card", id: "login-form" },
    h("div", { class: "brand brand-large" }, h("span", { class: "brand-mark" }), "chargehook"),
    h("p", { class: "muted" }, "OCPP 1.6J central system"),
    h("label", { for: "token" }, "Admin token"),
    input,
    error,
    button,
    h("p", { class: "hint" }, "Printed by the first start, or made with ", h("code", {}, "csms token create"), ". Kept in this tab only."),
  );
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const token = input.value.trim();
    if (!token) return;
    button.disabled = true;
    error.textContent = "";
    try {
      await get("/api/v1/chargers", { limit: 1 }, { token });
      session.login(token);
      startApp();
    } catch (failure) {
      error.textContent = failure.status === 401 ? "This token is not accepted." : `Cannot log in: ${failure.message}`;
      button.disabled = false;
      input.select();
    }
  });
  replace(root, h("main", { class: "login" }, form));
  input.focus();
}

function stopApp() {
  if (cleanup) cleanup();
  cleanup = null;
  if (live) live.stopAll();
  live = null;
  if (clock) clearInterval(clock);
  clock = null;
  window.removeEventListener("hashchange", render);
}

function startApp() {
  const liveDot = h("span", { class: "live-dot live-off", id: "live-state" });
  live = liveEvents((state, message) => {
    liveDot.className = `live-dot live-${state}`;
    liveDot.textContent = { live: "live", reconnecting: "reconnecting…", error: "stream error", off: "" }[state] ?? state;
    liveDot.title = message || "this view's event stream";
  });
  const nav = h(
    "nav",
    { class: "nav", "aria-label": "views" },
    NAV.map(([name, label]) => h("a", { href: `#/${name}`, "data-nav": name }, label)),
  );
  const logout = h("button", { type: "button", class: "btn btn-ghost", id: "logout" }, "Log out");
  logout.addEventListener("click", () => {
    session.logout();
    showLogin("Logged out.");
  });
  const main = h("main", { class: "content", id: "view" });
  replace(
    root,
    h(
      "header",
      { class: "topbar" },
      h("a", { class: "brand", href: "#/overview" }, h("span", { class: "brand-mark" }), "chargehook"),
      nav,
      h("div", { class: "topbar-right" }, liveDot, logout),
    ),
    main,
  );
  window.addEventListener("hashchange", render);
  clock = setInterval(() => tickTimes(root), 5000);
  render();
}

function render() {
  const main = document.getElementById("view");
  if (!main) return;
  if (cleanup) cleanup();
  cleanup = null;
  const { nav, view, params } = route();
  for (const a of document.querySelectorAll("[data-nav]")) a.classList.toggle("active", a.dataset.nav === nav);
  replace(main);
  const done = view.render(main, params, { live });
  cleanup = typeof done === "function" ? done : null;
  window.scrollTo(0, 0);
}

onUnauthorized(() => {
  session.logout();
  showLogin("The server no longer accepts this token; log in again.");
});

if (session.token()) startApp();
else showLogin();
