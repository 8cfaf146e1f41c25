// Overview: chargers connected / registered, events per minute, deliveries failing, endpoints
// disabled, and the latest events as they come.

import { collect, get, metricSum, metrics } from "../api.js";
import { fmtNumber, h, notice, replace, section } from "../dom.js";
import { errorText, eventRow, perFrame } from "./common.js";

const REFRESH_MS = 5000;
// What an operator looks at first; meter values (transaction.updated, connector.meter_values)
// would bury the rest.
const NOTABLE = "charger.*,connector.status_changed,transaction.started,transaction.stopped,webhook.*,*.accepted,*.rejected,*.failed";
const WINDOW_MS = 60000;
const samples = []; // [time, events stored total], kept across visits for the rate
let registered = { count: null, more: false, at: 0 };

function card(id, label, link) {
  const value = h("div", { class: "stat-value", id: `stat-${id}` }, "…");
  const detail = h("div", { class: "stat-detail" }, "");
  const node = h("a", { class: "stat", href: link }, h("div", { class: "stat-label" }, label), value, detail);
  return { node, value, detail };
}

export function render(root, _params, { live }) {
  const chargers = card("chargers", "Chargers connected", "#/chargers");
  const rate = card("events", "Events per minute", "#/events");
  const failing = card("failing", "Deliveries failing", "#/webhooks");
  const disabled = card("disabled", "Endpoints disabled", "#/webhooks");
  const active = card("active", "Charging now", "#/transactions");
  const problem = h("div");
  const recent = h("div", { class: "event-list", id: "overview-events" }, h("p", { class: "muted" }, "Waiting for events…"));
  root.append(
    h("div", { class: "page-head" }, h("h1", {}, "Overview")),
    problem,
    h("div", { class: "stats" }, chargers.node, active.node, rate.node, failing.node, disabled.node),
    section("Latest events (meter values left out)", recent),
  );

  let stopped = false;
  const refresh = async () => {
    try {
      await update({ chargers, rate, failing, disabled, active });
      replace(problem);
    } catch (error) {
      if (!stopped) replace(problem, notice("error", `Could not refresh: ${errorText(error)}`));
    }
  };
  const loadRecent = async () => {
    const page = await get("/api/v1/events", { type: NOTABLE, limit: 12 });
    if (page.items.length) replace(recent, page.items.map((e) => eventRow(e)));
  };
  refresh();
  loadRecent().catch(() => {});
  const timer = setInterval(refresh, REFRESH_MS);
  const unsubscribe = live(
    { type: NOTABLE },
    perFrame((batch) => {
      if (!recent.querySelector("details")) replace(recent);
      for (const event of batch) {
        if (!recent.querySelector(`[data-event-id="${CSS.escape(event.id)}"]`)) recent.prepend(eventRow(event));
      }
      while (recent.children.length > 12) recent.lastChild.remove();
    }, 12),
  );
  return () => {
    stopped = true;
    clearInterval(timer);
    unsubscribe();
  };
}

async function update({ chargers, rate, failing, disabled, active }) {
  const now = Date.now();
  const [health, found, endpoints, charging] = await Promise.all([
    get("/api/v1/health"),
    metrics().catch(() => null),
    collect("/api/v1/webhooks", {}, 2),
    get("/api/v1/transactions", { active: true, limit: 100 }),
  ]);
  if (!registered.at || now - registered.at > 60000) {
    // No count in the API: pages of ids, at most 10 (a figure past 1,000 reads "1,000+").
    const all = await collect("/api/v1/chargers", {}, 10);
    registered = { count: all.items.length, more: all.more, at: now };
  }
  chargers.value.textContent = fmtNumber(health.connectedChargers);
  chargers.detail.textContent = `of ${fmtNumber(registered.count)}${registered.more ? "+" : ""} registered`;
  active.value.textContent = `${charging.items.length}${charging.hasMore ? "+" : ""}`;
  active.detail.textContent = "active transactions";

  const stored = metricSum(found, "chargehook_events_total");
  if (stored !== null) {
    samples.push([now, stored]);
    while (samples.length > 2 && now - samples[1][0] >= WINDOW_MS) samples.shift();
  }
  if (samples.length >= 2 && now - samples[0][0] >= 4000) {
    const [t0, v0] = samples[0];
    const perMinute = ((stored - v0) * 60000) / (now - t0);
    rate.value.textContent = fmtNumber(perMinute, perMinute < 10 ? 1 : 0);
    rate.detail.textContent = `over the last ${Math.round((now - t0) / 1000)} s`;
  } else {
    const since = new Date(now - WINDOW_MS).toISOString();
    const page = await get("/api/v1/events", { since, limit: 100 });
    rate.value.textContent = `${page.items.length}${page.hasMore ? "+" : ""}`;
    rate.detail.textContent = "stored in the last minute";
  }

  const latest = await Promise.all(
    endpoints.items.map((e) => get(`/api/v1/webhooks/${encodeURIComponent(e.id)}/deliveries`, { limit: 1 }).then((p) => p.items[0]).catch(() => null)),
  );
  const failingCount = latest.filter((a) => a && a.outcome === "failed").length;
  const pending = metricSum(found, "chargehook_webhook_pending");
  failing.value.textContent = fmtNumber(failingCount);
  failing.value.classList.toggle("stat-bad", failingCount > 0);
  failing.detail.textContent = `endpoints whose last attempt failed${pending !== null ? ` · ${fmtNumber(pending)} pending` : ""}`;
  const off = endpoints.items.filter((e) => e.status === "disabled").length;
  disabled.value.textContent = fmtNumber(off);
  disabled.value.classList.toggle("stat-bad", off > 0);
  disabled.detail.textContent = `of ${endpoints.items.length}${endpoints.more ? "+" : ""} endpoints`;
}
