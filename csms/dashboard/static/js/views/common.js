// Pieces several views share: a cursor pager, an event row, charger identity helpers.

import { badge, fmtTime, h, link, prettyJson, timeAgo } from "../dom.js";

/** Pages of a list through `limit`/`startingAfter`: never more than one page in the DOM. */
export class Pager {
  constructor(load, onPage, { limit = 50, key = "id" } = {}) {
    this.load = load; // (query) => Promise<{items, hasMore}>
    this.onPage = onPage;
    this.limit = limit;
    this.key = key;
    this.cursors = [undefined];
    this.hasMore = false;
    this.prev = h("button", { type: "button", class: "btn btn-small", "data-page": "prev" }, "← Previous");
    this.next = h("button", { type: "button", class: "btn btn-small", "data-page": "next" }, "Next →");
    this.label = h("span", { class: "muted" });
    this.prev.addEventListener("click", () => this.go(-1));
    this.next.addEventListener("click", () => this.go(1));
    this.element = h("div", { class: "pager" }, this.prev, this.label, this.next);
  }

  reset() {
    this.cursors = [undefined];
    return this.refresh();
  }

  async go(step) {
    if (step > 0 && (!this.hasMore || !this.lastKey)) return;
    if (step > 0) this.cursors.push(this.lastKey);
    else if (this.cursors.length > 1) this.cursors.pop();
    await this.refresh();
  }

  async refresh() {
    const page = await this.load({ limit: this.limit, startingAfter: this.cursors[this.cursors.length - 1] });
    this.hasMore = page.hasMore;
    this.lastKey = page.items.length ? page.items[page.items.length - 1][this.key] : null;
    this.prev.disabled = this.cursors.length <= 1;
    this.next.disabled = !page.hasMore;
    this.label.textContent = `page ${this.cursors.length}`;
    this.element.hidden = this.cursors.length === 1 && !page.hasMore; // one page: no pager
    this.onPage(page.items, this.cursors.length === 1);
    return page;
  }
}

export const chargerHref = (id) => `#/chargers/${encodeURIComponent(id)}`;
export const transactionHref = (id) => `#/transactions/${encodeURIComponent(id)}`;

export function chargerLink(id) {
  return id ? link(chargerHref(id), id, { class: "mono" }) : h("span", { class: "muted" }, "–");
}

const FAMILY_TONE = { charger: "info", connector: "neutral", transaction: "good", webhook: "violet", ocpp: "neutral" };

export function typeBadge(type) {
  const status = type.split(".").pop();
  const toneName = ["rejected", "failed", "disabled"].includes(status) ? "bad" : status === "accepted" ? "good" : FAMILY_TONE[type.split(".")[0]] || "neutral";
  return h("span", { class: ["badge", "badge-type", `badge-${toneName}`] }, type);
}

/** A short human summary of an event's data (text only). */
export function summary(event) {
  const d = event.data || {};
  switch (event.type) {
    case "connector.status_changed":
      return `connector ${d.connectorId}: ${d.previousStatus ? `${d.previousStatus} → ` : ""}${d.status}${d.errorCode && d.errorCode !== "NoError" ? ` (${d.errorCode})` : ""}`;
    case "transaction.started":
      return `tx ${d.transactionId} on connector ${d.connectorId}, idTag ${d.idTag}`;
    case "transaction.updated":
      return `tx ${d.transactionId}${d.energyWh != null ? `, ${d.energyWh} Wh` : ""}${d.powerW != null ? `, ${d.powerW} W` : ""}`;
    case "transaction.stopped":
      return `tx ${d.transactionId}${d.energyWh != null ? `, ${d.energyWh} Wh` : ""}${d.reason ? `, ${d.reason}` : ""}`;
    case "charger.boot":
      return [d.chargePointVendor, d.chargePointModel, d.registrationStatus].filter(Boolean).join(" · ");
    case "charger.disconnected":
      return d.reason ? `reason: ${d.reason}` : "";
    case "charger.authorization":
      return `${d.idTag}: ${d.status}`;
    default:
      if (d.commandId) return `${d.commandId}${d.error ? `: ${typeof d.error === "string" ? d.error : JSON.stringify(d.error)}` : ""}`;
      return "";
  }
}

/** One event: time, type, charger, summary, and the envelope as JSON on demand. */
export function eventRow(event, { showCharger = true } = {}) {
  const details = h(
    "details",
    { class: "event", "data-event-id": event.id, "data-type": event.type },
    h(
      "summary",
      {},
      h("span", { class: "event-time mono", title: event.timestamp }, fmtTime(event.timestamp)),
      typeBadge(event.type),
      showCharger ? h("span", { class: "event-charger mono" }, event.chargerId ?? "–") : null,
      h("span", { class: "event-seq muted" }, event.sequence != null ? `#${event.sequence}` : ""),
      h("span", { class: "event-summary" }, summary(event)),
    ),
    prettyJson(event),
  );
  return details;
}

export function connectorChips(connectors) {
  const list = (connectors || []).filter((c) => c.connectorId !== 0);
  if (!list.length) return h("span", { class: "muted" }, "–");
  return h(
    "span",
    { class: "chips" },
    list.map((c) => h("span", { class: ["chip", `badge-${toneFor(c.status)}`], title: c.errorCode && c.errorCode !== "NoError" ? c.errorCode : c.status || "" }, `${c.connectorId} ${c.status ?? "?"}`)),
  );
}

function toneFor(status) {
  return { Available: "good", Charging: "info", Preparing: "warn", SuspendedEV: "warn", SuspendedEVSE: "warn", Finishing: "warn", Reserved: "warn", Faulted: "bad", Unavailable: "bad" }[status] || "neutral";
}

export function connectionBadge(c) {
  return c.connected ? badge("connected", "good") : badge("offline", "neutral");
}

export function lastSeen(c) {
  return timeAgo(c.lastSeenAt || c.disconnectedAt || c.connectedAt);
}

export function errorText(error) {
  return error && error.message ? error.message : String(error);
}

/**
 * Events handed to `render` once per animation frame, at most the newest `keep`: a burst of
 * thousands a second costs one DOM update a frame, not one per event.
 */
export function perFrame(render, keep) {
  let queue = [];
  let scheduled = false;
  return (event) => {
    queue.push(event);
    if (queue.length > keep) queue = queue.slice(-keep);
    if (scheduled) return;
    scheduled = true;
    requestAnimationFrame(() => {
      scheduled = false;
      const batch = queue;
      queue = [];
      render(batch);
    });
  };
}
