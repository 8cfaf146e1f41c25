// One charger: identity, connectors, transactions, commands with their outcome, recent events
// (live), and a form to send any of the 26 commands (OCPP 1.6 and its security extension).

import { ApiError, enc, get, post } from "../api.js";
import { buildFields, commandSchemas, showFieldError } from "../cmdform.js";
import { badge, emptyRow, fmtEnergy, fmtPower, fmtTime, h, link, notice, prettyJson, replace, section, table, throttle, timeAgo } from "../dom.js";
import { connectionBadge, errorText, eventRow, perFrame, transactionHref } from "./common.js";

function dl(pairs) {
  return h("dl", { class: "facts" }, pairs.map(([k, v]) => [h("dt", {}, k), h("dd", {}, v ?? "–")]));
}

function identity(c) {
  const boot = c.boot || {};
  return dl([
    ["Vendor", h("span", { id: "boot-vendor" }, boot.chargePointVendor ?? "–")],
    ["Model", h("span", { id: "boot-model" }, boot.chargePointModel ?? "–")],
    ["Serial", boot.chargePointSerialNumber ?? boot.chargeBoxSerialNumber ?? "–"],
    ["Firmware", boot.firmwareVersion ?? "–"],
    ["Registration", c.registrationStatus ? badge(c.registrationStatus) : "never booted"],
    ["Policy", c.registrationPolicy],
    ["Node", h("span", { class: "mono" }, c.node ?? "–")],
    ["Address", h("span", { class: "mono" }, c.remoteAddress ?? "–")],
    ["Last seen", timeAgo(c.lastSeenAt || c.disconnectedAt)],
    ["Booted", fmtTime(c.bootedAt)],
    ["Key", c.hasPassword ? "set (Basic auth)" : "none"],
  ]);
}

function connectorsTable(c) {
  const rows = (c.connectors || []).map((k) =>
    h(
      "tr",
      { "data-connector": k.connectorId },
      h("td", {}, k.connectorId === 0 ? "0 (charger)" : String(k.connectorId)),
      h("td", {}, badge(k.status ?? "–")),
      h("td", {}, k.errorCode ?? "–"),
      h("td", {}, [k.info, k.vendorErrorCode].filter(Boolean).join(" · ") || "–"),
      h("td", {}, timeAgo(k.updatedAt || k.timestamp)),
    ),
  );
  return table(["Connector", "Status", "Error", "Info", "Updated"], rows.length ? rows : emptyRow(5, "No status reported yet."));
}

export function transactionRow(t, { charger = false } = {}) {
  const last = t.lastMeter || {};
  return h(
    "tr",
    { "data-transaction": t.id },
    h("td", {}, link(transactionHref(t.id), `#${t.id}`)),
    charger ? h("td", {}, link(`#/chargers/${enc(t.chargerId)}`, t.chargerId, { class: "mono" })) : null,
    h("td", {}, String(t.connectorId)),
    h("td", { class: "mono" }, t.idTag ?? "–"),
    h("td", {}, t.active ? badge("active", "good") : badge(t.stopReason || "stopped", "neutral")),
    h("td", {}, fmtTime(t.startedAt)),
    h("td", {}, t.active ? "–" : fmtTime(t.stoppedAt)),
    h("td", { class: "num" }, fmtEnergy(t.energyWh)),
    h("td", { class: "num" }, t.active ? fmtPower(last.powerW) : "–"),
  );
}

export const TRANSACTION_COLUMNS = ["Id", "Connector", "Id tag", "State", "Started", "Stopped", "Energy", "Power"];

function commandRow(cmd) {
  const outcome = cmd.response ?? cmd.error;
  return h(
    "tr",
    { "data-command": cmd.id },
    h("td", { class: "mono" }, cmd.id),
    h("td", {}, cmd.action),
    h("td", {}, badge(cmd.status), cmd.queued ? h("span", { class: "muted small" }, " queued") : null),
    h("td", {}, fmtTime(cmd.createdAt)),
    h("td", {}, outcome == null ? "–" : h("details", {}, h("summary", {}, summarize(outcome)), prettyJson({ request: cmd.request, response: cmd.response, error: cmd.error }))),
  );
}

function summarize(value) {
  if (value && typeof value === "object" && "status" in value) return String(value.status);
  const text = typeof value === "string" ? value : JSON.stringify(value);
  return text.length > 60 ? `${text.slice(0, 60)}…` : text;
}

function commandForm(chargerId, onSent) {
  const select = h("select", { id: "command-action", name: "action" }, h("option", { value: "" }, "loading…"));
  const fieldsSlot = h("div", { class: "command-fields" });
  const queue = h("input", { type: "checkbox", id: "command-queue" });
  const formError = h("p", { class: "field-error form-error", role: "alert" });
  const result = h("div", { class: "command-result", id: "command-result" });
  const send = h("button", { type: "submit", class: "btn btn-primary", id: "command-send" }, "Send");
  let current = null;
  const form = h(
    "form",
    { class: "command-form", id: "command-form" },
    h("div", { class: "field" }, h("label", { for: "command-action" }, "Command"), select),
    fieldsSlot,
    h("label", { class: "check" }, queue, " queue it if the charger is offline (sent when it reconnects)"),
    formError,
    h("div", { class: "actions" }, send),
    result,
  );
  let schemas = {};
  commandSchemas()
    .then((found) => {
      schemas = found;
      replace(select, Object.keys(found).sort().map((a) => h("option", { value: a }, a)));
      select.value = found.RemoteStartTransaction ? "RemoteStartTransaction" : select.value;
      choose();
    })
    .catch((error) => replace(fieldsSlot, notice("error", `Cannot read the command schemas: ${errorText(error)}`)));
  const choose = () => {
    current = buildFields(schemas[select.value] || { type: "object", properties: {} });
    replace(fieldsSlot, current.node);
    formError.textContent = "";
    replace(result);
  };
  select.addEventListener("change", choose);
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    if (!current) return;
    showFieldError(form, "");
    formError.textContent = "";
    send.disabled = true;
    replace(result, h("p", { class: "muted" }, `Sending ${select.value}, waiting for the charger…`));
    try {
      const command = await post(`/api/v1/chargers/${enc(chargerId)}/commands/${enc(select.value)}`, current.read(), { wait: 10, queue: queue.checked || undefined });
      replace(
        result,
        h("div", { class: "command-outcome" }, h("span", {}, `${command.action ?? select.value} `), badge(command.status), h("span", { class: "mono muted" }, ` ${command.id}`)),
        command.response || command.error ? prettyJson(command.response ?? command.error) : null,
      );
      onSent();
    } catch (failure) {
      replace(result);
      const message = errorText(failure);
      if (!(failure instanceof ApiError && failure.status === 400 && showFieldError(form, message))) formError.textContent = message;
    } finally {
      send.disabled = false;
    }
  });
  return form;
}

export function render(root, { id }, { live }) {
  const head = h("div", { class: "page-head" }, h("h1", { class: "mono" }, id));
  const status = h("div");
  const ident = h("div", {}, h("p", { class: "muted" }, "Loading…"));
  const connectors = h("div");
  const txBody = h("tbody");
  const cmdBody = h("tbody");
  const events = h("div", { class: "event-list", id: "charger-events" });
  root.append(
    head,
    status,
    h("div", { class: "columns" }, section("Charger", ident), section("Connectors", connectors)),
    section("Transactions", table(TRANSACTION_COLUMNS, [])),
    section("Send a command", commandForm(id, () => loadCommands())),
    section("Commands sent", table(["Command", "Action", "Outcome", "Created", "Answer"], [])),
    section("Recent events", events),
  );
  root.querySelectorAll("tbody")[0].replaceWith(txBody);
  root.querySelectorAll("tbody")[1].replaceWith(cmdBody);

  const loadCharger = async () => {
    try {
      const c = await get(`/api/v1/chargers/${enc(id)}`);
      replace(head, h("h1", { class: "mono", id: "charger-title" }, c.id), connectionBadge(c), c.description ? h("span", { class: "muted" }, c.description) : null);
      replace(ident, identity(c));
      replace(connectors, connectorsTable(c));
      replace(status);
    } catch (failure) {
      replace(status, notice("error", failure.status === 404 ? `No charger has the id ${id}.` : errorText(failure)));
    }
  };
  const loadTransactions = async () => {
    const page = await get("/api/v1/transactions", { chargerId: id, limit: 10 });
    replace(txBody, page.items.length ? page.items.map((t) => transactionRow(t)) : emptyRow(TRANSACTION_COLUMNS.length, "No transactions yet."));
  };
  const loadCommands = async () => {
    const page = await get("/api/v1/commands", { chargerId: id, limit: 10 });
    replace(cmdBody, page.items.length ? page.items.map(commandRow) : emptyRow(5, "No commands sent yet."));
  };
  const loadEvents = async () => {
    const page = await get("/api/v1/events", { chargerId: id, limit: 20 });
    const fresh = page.items.filter((e) => !events.querySelector(`[data-event-id="${CSS.escape(e.id)}"]`));
    if (!events.children.length) replace(events, page.items.length ? page.items.map((e) => eventRow(e, { showCharger: false })) : h("p", { class: "muted empty-note" }, "No events yet."));
    else fresh.reverse().forEach((e) => events.prepend(eventRow(e, { showCharger: false })));
  };
  loadCharger();
  loadTransactions().catch(() => {});
  loadCommands().catch(() => {});
  loadEvents().catch(() => {});

  const charger = throttle(loadCharger, 1000);
  const txs = throttle(() => loadTransactions().catch(() => {}), 1000);
  const cmds = throttle(() => loadCommands().catch(() => {}), 1000);
  const show = perFrame((batch) => {
    const note = events.querySelector(".empty-note");
    if (note) note.remove();
    for (const event of batch) {
      if (!events.querySelector(`[data-event-id="${CSS.escape(event.id)}"]`)) events.prepend(eventRow(event, { showCharger: false }));
    }
    while (events.children.length > 50) events.lastChild.remove();
  }, 50);
  const unsubscribe = live({ chargerId: id }, (event) => {
    show(event);
    if (event.type.startsWith("charger.") || event.type.startsWith("connector.")) charger();
    if (event.type.startsWith("transaction.")) txs();
    if (event.data && event.data.commandId) cmds();
  });
  return () => {
    unsubscribe();
    charger.cancel();
    txs.cancel();
    cmds.cancel();
  };
}
