// Chargers: a live page of the registered chargers (50 at a time), a filter by id, and the
// form that registers one (its key shown once).

import { ApiError, enc, get, post } from "../api.js";
import { badge, h, notice, replace, secretBox, table, throttle, emptyRow } from "../dom.js";
import { Pager, chargerLink, connectionBadge, connectorChips, errorText, lastSeen } from "./common.js";

const COLUMNS = ["Charger", "Connection", "Node", "Connectors", "Last seen", "Registration", "Vendor / model"];

export function row(c) {
  const boot = c.boot || {};
  return h(
    "tr",
    { "data-charger": c.id },
    h("td", {}, chargerLink(c.id), c.description ? h("div", { class: "muted small" }, c.description) : null),
    h("td", {}, connectionBadge(c)),
    h("td", { class: "mono" }, c.node ?? "–"),
    h("td", {}, connectorChips(c.connectors)),
    h("td", {}, lastSeen(c)),
    h("td", {}, c.registrationStatus ? badge(c.registrationStatus) : h("span", { class: "muted" }, "never booted")),
    h("td", { class: "vendor" }, [boot.chargePointVendor, boot.chargePointModel].filter(Boolean).join(" · ") || "–"),
  );
}

function randomKey() {
  const bytes = new Uint8Array(18);
  crypto.getRandomValues(bytes);
  return btoa(String.fromCharCode(...bytes)).replace(/\+/g, "-").replace(/\//g, "_");
}

function registerForm(onDone) {
  const id = h("input", { name: "id", id: "reg-id", required: true, placeholder: "CP-0001", autocomplete: "off" });
  const description = h("input", { name: "description", id: "reg-description", placeholder: "optional" });
  const policy = h("select", { name: "registrationPolicy", id: "reg-policy" }, ["Accepted", "Pending", "Rejected"].map((p) => h("option", { value: p }, p)));
  const password = h("input", { name: "password", id: "reg-password", autocomplete: "off", placeholder: "16-40 bytes; empty: none, or the server's" });
  const generate = h("button", { type: "button", class: "btn btn-small" }, "Generate");
  generate.addEventListener("click", () => (password.value = randomKey()));
  const error = h("p", { class: "field-error", role: "alert" });
  const result = h("div");
  const form = h(
    "form",
    { class: "panel form-grid", id: "register-form" },
    h("h3", {}, "Register a charger"),
    h("label", { for: "reg-id" }, "Charger id"),
    id,
    h("label", { for: "reg-description" }, "Description"),
    description,
    h("label", { for: "reg-policy" }, "Registration policy"),
    policy,
    h("label", { for: "reg-password" }, "Authorization key"),
    h("div", { class: "input-row" }, password, generate),
    error,
    h("div", { class: "actions" }, h("button", { type: "submit", class: "btn btn-primary" }, "Register")),
    result,
  );
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    error.textContent = "";
    const body = { id: id.value.trim(), registrationPolicy: policy.value };
    if (description.value.trim()) body.description = description.value.trim();
    if (password.value) body.password = password.value;
    try {
      const created = await post("/api/v1/chargers", body);
      const key = created.password || body.password;
      replace(
        result,
        notice("success", `Registered ${created.id}.`),
        key ? secretBox(`Authorization key of ${created.id} (Basic auth password)`, key) : null,
      );
      id.value = "";
      password.value = "";
      description.value = "";
      onDone();
    } catch (failure) {
      error.textContent = errorText(failure);
    }
  });
  return form;
}

export function render(root, _params, { live }) {
  const body = h("tbody");
  const filter = h("input", { type: "search", id: "charger-filter", placeholder: "Filter by id (Enter: look up an exact id)", autocomplete: "off" });
  const status = h("div");
  const formSlot = h("div");
  const toggle = h("button", { type: "button", class: "btn btn-primary", id: "register-toggle" }, "Register charger");
  let rows = [];
  let exact = null; // a charger found by exact id, shown alone

  const draw = () => {
    const text = filter.value.trim().toLowerCase();
    const shown = exact ? [exact] : rows.filter((c) => !text || c.id.toLowerCase().includes(text));
    replace(body, shown.length ? shown.map(row) : emptyRow(COLUMNS.length, text ? "No charger on this page matches; press Enter to look the id up." : "No chargers registered yet."));
  };
  const pager = new Pager(
    (query) => get("/api/v1/chargers", query),
    (items) => {
      rows = items;
      draw();
    },
  );
  const refresh = () => pager.refresh().then(() => replace(status)).catch((e) => replace(status, notice("error", errorText(e))));
  const later = throttle(refresh, 1500);

  filter.addEventListener("input", () => {
    exact = null;
    draw();
  });
  filter.addEventListener("keydown", async (event) => {
    if (event.key !== "Enter") return;
    const id = filter.value.trim();
    if (!id) return;
    try {
      exact = await get(`/api/v1/chargers/${enc(id)}`);
      draw();
    } catch (failure) {
      if (failure instanceof ApiError && failure.status === 404) replace(status, notice("info", `No charger has the id ${id}.`));
      else replace(status, notice("error", errorText(failure)));
    }
  });
  toggle.addEventListener("click", () => {
    if (formSlot.firstChild) replace(formSlot);
    else replace(formSlot, registerForm(later));
  });

  root.append(
    h("div", { class: "page-head" }, h("h1", {}, "Chargers"), toggle),
    formSlot,
    h("div", { class: "toolbar" }, filter),
    status,
    table(COLUMNS, [], "chargers"),
    pager.element,
  );
  root.querySelector("table.chargers tbody").replaceWith(body);
  refresh();

  // Rows shown are refreshed from the API at most once a second, whatever the event rate.
  const dirty = new Set();
  const flush = throttle(async () => {
    const ids = [...dirty];
    dirty.clear();
    for (const id of ids) {
      try {
        const fresh = await get(`/api/v1/chargers/${enc(id)}`);
        if (exact && exact.id === fresh.id) exact = fresh;
        const at = rows.findIndex((c) => c.id === fresh.id);
        if (at >= 0) rows[at] = fresh;
      } catch {
        later();
      }
    }
    draw();
  }, 1000);
  const unsubscribe = live({ type: "charger.*,connector.*" }, (event) => {
    if (!event.chargerId) return;
    if (rows.some((c) => c.id === event.chargerId) || (exact && exact.id === event.chargerId)) {
      dirty.add(event.chargerId);
      flush();
    } else if (event.type.startsWith("charger.")) {
      later(); // a charger this page should maybe show now
    }
  });
  return () => {
    unsubscribe();
    later.cancel();
    flush.cancel();
  };
}
