// Webhooks: the endpoints; one endpoint's settings, test, secret rotation, deliveries (with
// redelivery) and replay of a time range. Secrets are shown once, with a copy button.

import { ApiError, enc, get, patch, post, del } from "../api.js";
import { badge, confirmButton, emptyRow, fmtTime, h, link, notice, replace, secretBox, section, table, timeAgo } from "../dom.js";
import { Pager, errorText } from "./common.js";

const webhookHref = (id) => `#/webhooks/${enc(id)}`;
const list = (text) => text.split(",").map((x) => x.trim()).filter(Boolean);

function endpointFields(values = {}) {
  const url = h("input", { id: "wh-url", name: "url", type: "url", required: true, placeholder: "https://example.com/hooks/chargehook", value: values.url || "" });
  const events = h("input", { id: "wh-events", name: "enabledEvents", placeholder: "* or transaction.*, charger.connected", value: (values.enabledEvents || ["*"]).join(", ") });
  const chargers = h("input", { id: "wh-chargers", name: "chargerIds", placeholder: "all chargers", value: (values.chargerIds || []).join(", ") });
  const description = h("input", { id: "wh-description", name: "description", placeholder: "optional", value: values.description || "" });
  const headers = h("textarea", { id: "wh-headers", name: "headers", rows: 2, placeholder: '{"X-Api-Key": "…"}' });
  headers.value = values.headers && Object.keys(values.headers).length ? JSON.stringify(values.headers) : "";
  const nodes = [
    h("label", { for: "wh-url" }, "URL"),
    url,
    h("label", { for: "wh-events" }, "Events"),
    events,
    h("label", { for: "wh-chargers" }, "Chargers"),
    chargers,
    h("label", { for: "wh-description" }, "Description"),
    description,
    h("label", { for: "wh-headers" }, "Extra headers (JSON)"),
    headers,
  ];
  const read = () => {
    const body = { url: url.value.trim(), enabledEvents: list(events.value), description: description.value.trim() };
    body.chargerIds = chargers.value.trim() ? list(chargers.value) : null;
    if (headers.value.trim()) {
      try {
        body.headers = JSON.parse(headers.value);
      } catch {
        throw new ApiError(400, "invalid_field", "headers: not valid JSON");
      }
    } else body.headers = {};
    return body;
  };
  return { nodes, read };
}

function createForm(onCreated) {
  const fields = endpointFields();
  const error = h("p", { class: "field-error", role: "alert" });
  const result = h("div", { id: "webhook-created" });
  const form = h("form", { class: "panel form-grid", id: "webhook-form" }, h("h3", {}, "New endpoint"), fields.nodes, error, h("div", { class: "actions" }, h("button", { type: "submit", class: "btn btn-primary" }, "Create")), result);
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    error.textContent = "";
    try {
      const body = fields.read();
      if (body.chargerIds === null) delete body.chargerIds;
      const created = await post("/api/v1/webhooks", body);
      replace(
        result,
        notice("success", "Endpoint created."),
        secretBox("Signing secret (verify the webhook-signature header with it)", created.secret),
        h("p", {}, link(webhookHref(created.id), `Open ${created.id} →`)),
      );
      for (const input of form.querySelectorAll("input, textarea")) input.disabled = true;
      form.querySelector("button[type=submit]").disabled = true;
      onCreated();
    } catch (failure) {
      error.textContent = errorText(failure);
    }
  });
  return form;
}

function statusBadge(e) {
  return badge(e.status);
}

function renderList(root) {
  const body = h("tbody");
  const status = h("div");
  const slot = h("div");
  const toggle = h("button", { type: "button", class: "btn btn-primary", id: "webhook-new" }, "New endpoint");
  const lastDelivery = (e) => {
    const cell = h("td", { class: "last-delivery" }, h("span", { class: "muted" }, "…"));
    get(`/api/v1/webhooks/${enc(e.id)}/deliveries`, { limit: 1 })
      .then(({ items: [a] }) =>
        replace(
          cell,
          a
            ? [badge(a.outcome ?? "pending"), " ", a.statusCode == null ? (a.error ?? "") : `HTTP ${a.statusCode}`, h("div", { class: "muted small" }, timeAgo(a.timestamp))]
            : h("span", { class: "muted" }, "none yet"),
        ),
      )
      .catch(() => replace(cell, "–"));
    return cell;
  };
  const pager = new Pager(
    (query) => get("/api/v1/webhooks", query),
    (items) =>
      replace(
        body,
        items.length
          ? items.map((e) =>
              h(
                "tr",
                { "data-webhook": e.id },
                h("td", {}, link(webhookHref(e.id), e.url, { class: "mono" }), e.description ? h("div", { class: "muted small" }, e.description) : null),
                h("td", {}, statusBadge(e), e.disabledReason ? h("div", { class: "muted small" }, e.disabledReason) : null),
                h("td", {}, e.enabledEvents.join(", ")),
                h("td", {}, e.chargerIds ? e.chargerIds.join(", ") : "all"),
                lastDelivery(e),
                h("td", {}, timeAgo(e.createdAt)),
              ),
            )
          : emptyRow(6, "No endpoints yet: create one to receive events."),
      ),
  );
  const refresh = () => pager.refresh().catch((e) => replace(status, notice("error", errorText(e))));
  toggle.addEventListener("click", () => (slot.firstChild ? replace(slot) : replace(slot, createForm(refresh))));
  root.append(h("div", { class: "page-head" }, h("h1", {}, "Webhooks"), toggle), slot, status, table(["Endpoint", "Status", "Events", "Chargers", "Last delivery", "Created"], []), pager.element);
  root.querySelector("tbody").replaceWith(body);
  refresh();
}

function deliveryRow(a, webhookId, say) {
  const redeliver = h("button", { type: "button", class: "btn btn-small" }, "Redeliver");
  redeliver.addEventListener("click", async () => {
    redeliver.disabled = true;
    try {
      await post(`/api/v1/events/${enc(a.eventId)}/redeliver`, { webhookId });
      say("success", `Event ${a.eventId} queued again for this endpoint.`);
    } catch (failure) {
      say("error", errorText(failure));
    } finally {
      redeliver.disabled = false;
    }
  });
  return h(
    "tr",
    { "data-attempt": a.id },
    h("td", {}, fmtTime(a.timestamp)),
    h("td", {}, a.eventType ?? "–"),
    h("td", { class: "mono small" }, a.eventId),
    h("td", { class: "num" }, String(a.attempt)),
    h("td", { class: "num" }, a.statusCode == null ? "–" : String(a.statusCode)),
    h("td", { class: "num" }, a.latencyMs == null ? "–" : `${a.latencyMs} ms`),
    h("td", {}, badge(a.outcome ?? "pending"), a.error ? h("div", { class: "muted small" }, a.error) : null),
    h("td", {}, redeliver),
  );
}

function renderOne(root, id) {
  const head = h("div", { class: "page-head" }, h("h1", { class: "mono" }, id));
  const messages = h("div", { id: "webhook-messages" });
  const say = (kind, text, extra) => replace(messages, notice(kind, text), extra || null);
  const settings = h("div");
  const actions = h("div", { class: "actions" });
  const deliveries = h("tbody");
  let endpoint = null;

  const load = async () => {
    try {
      endpoint = await get(`/api/v1/webhooks/${enc(id)}`);
    } catch (failure) {
      say("error", failure.status === 404 ? `No endpoint ${id}.` : errorText(failure));
      return;
    }
    replace(head, h("h1", { class: "mono" }, endpoint.url), statusBadge(endpoint));
    replace(
      settings,
      h(
        "dl",
        { class: "facts" },
        [
          ["Id", endpoint.id],
          ["Events", endpoint.enabledEvents.join(", ")],
          ["Chargers", endpoint.chargerIds ? endpoint.chargerIds.join(", ") : "all"],
          ["Description", endpoint.description || "–"],
          ["Extra headers", Object.keys(endpoint.headers || {}).join(", ") || "none"],
          ["Disabled because", endpoint.disabledReason || "–"],
          ["Previous secret valid until", endpoint.previousSecretExpiresAt ? fmtTime(endpoint.previousSecretExpiresAt) : "–"],
          ["Created", fmtTime(endpoint.createdAt)],
        ].map(([k, v]) => [h("dt", {}, k), h("dd", {}, v)]),
      ),
    );
    const enabled = endpoint.status === "active";
    const toggle = h("button", { type: "button", class: "btn", id: "webhook-toggle" }, enabled ? "Disable" : "Enable");
    toggle.addEventListener("click", async () => {
      try {
        await patch(`/api/v1/webhooks/${enc(id)}`, { status: enabled ? "inactive" : "active" });
        say("success", enabled ? "Paused: deliveries wait until it is enabled again." : "Enabled.");
        load();
      } catch (failure) {
        say("error", errorText(failure));
      }
    });
    const test = h("button", { type: "button", class: "btn btn-primary", id: "webhook-test" }, "Send test event");
    test.addEventListener("click", async () => {
      test.disabled = true;
      try {
        const r = await post(`/api/v1/webhooks/${enc(id)}/test`);
        say(r.success ? "success" : "error", r.success ? `Test delivered: HTTP ${r.statusCode} in ${r.latencyMs} ms.` : `Test failed: ${r.statusCode ?? ""} ${r.error ?? ""}`.trim());
        pager.reset();
      } catch (failure) {
        say("error", errorText(failure));
      } finally {
        test.disabled = false;
      }
    });
    const edit = h("button", { type: "button", class: "btn", id: "webhook-edit" }, "Edit");
    edit.addEventListener("click", () => replace(messages, editForm()));
    const rotate = confirmButton("Rotate secret", "Click again to rotate", async () => {
      try {
        const r = await post(`/api/v1/webhooks/${enc(id)}/rotate-secret`, {});
        say("success", "New secret made; the previous one still signs for 24 h.", secretBox("New signing secret", r.secret));
        load();
      } catch (failure) {
        say("error", errorText(failure));
      }
    });
    const remove = confirmButton("Delete", "Click again to delete", async () => {
      try {
        await del(`/api/v1/webhooks/${enc(id)}`);
        location.hash = "#/webhooks";
      } catch (failure) {
        say("error", errorText(failure));
      }
    }, "btn btn-danger");
    replace(actions, test, edit, toggle, rotate, remove);
  };

  const editForm = () => {
    const fields = endpointFields(endpoint);
    const error = h("p", { class: "field-error", role: "alert" });
    const form = h("form", { class: "panel form-grid" }, h("h3", {}, "Edit endpoint"), fields.nodes, error, h("div", { class: "actions" }, h("button", { type: "submit", class: "btn btn-primary" }, "Save")));
    form.addEventListener("submit", async (event) => {
      event.preventDefault();
      try {
        await patch(`/api/v1/webhooks/${enc(id)}`, fields.read());
        say("success", "Saved.");
        load();
      } catch (failure) {
        error.textContent = errorText(failure);
      }
    });
    return form;
  };

  const since = h("input", { id: "replay-since", type: "datetime-local", step: 1, required: true });
  const until = h("input", { id: "replay-until", type: "datetime-local", step: 1 }); // empty: until now
  const onlyFailed = h("input", { type: "checkbox", id: "replay-failed" });
  const replayError = h("p", { class: "field-error", role: "alert" });
  const replay = h(
    "form",
    { class: "form-grid form-narrow", id: "replay-form" },
    h("label", { for: "replay-since" }, "From"),
    since,
    h("label", { for: "replay-until" }, "Until"),
    until,
    h("span"),
    h("label", { class: "check" }, onlyFailed, " only the events whose delivery failed"),
    replayError,
    h("div", { class: "actions" }, h("button", { type: "submit", class: "btn" }, "Replay")),
  );
  const hourAgo = new Date(Date.now() - 3600000);
  since.value = new Date(hourAgo.getTime() - hourAgo.getTimezoneOffset() * 60000).toISOString().slice(0, 19);
  replay.addEventListener("submit", async (event) => {
    event.preventDefault();
    replayError.textContent = "";
    try {
      const body = { since: new Date(since.value).toISOString(), onlyFailed: onlyFailed.checked };
      if (until.value) body.until = new Date(until.value).toISOString();
      const r = await post(`/api/v1/webhooks/${enc(id)}/replay`, body);
      say("success", `${r.queued} event${r.queued === 1 ? "" : "s"} queued again for this endpoint.`);
    } catch (failure) {
      replayError.textContent = errorText(failure);
    }
  });

  const pager = new Pager(
    (query) => get(`/api/v1/webhooks/${enc(id)}/deliveries`, query),
    (items) => replace(deliveries, items.length ? items.map((a) => deliveryRow(a, id, say)) : emptyRow(8, "No delivery attempts yet.")),
    { limit: 25 },
  );
  root.append(
    head,
    messages,
    h("div", { class: "columns" }, section("Endpoint", settings, actions), section("Replay a time range", h("p", { class: "muted" }, "Queue the events of a time range again for this endpoint (in your browser's time zone)."), replay)),
    section("Deliveries", table(["Time", "Event", "Event id", "Attempt", "Status", "Latency", "Outcome", ""], [], "deliveries"), pager.element),
  );
  root.querySelector("table.deliveries tbody").replaceWith(deliveries);
  load();
  pager.refresh().catch((e) => say("error", errorText(e)));
  // Deliveries are no events: the first page is read again every 3 s while it is shown.
  const timer = setInterval(() => {
    if (pager.cursors.length === 1) pager.refresh().catch(() => {});
  }, 3000);
  return () => clearInterval(timer);
}

export function render(root, { id }) {
  if (id) return renderOne(root, id);
  renderList(root);
  return undefined;
}

