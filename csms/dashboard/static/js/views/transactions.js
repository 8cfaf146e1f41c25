// Transactions: a page of sessions (filter by charger, active or finished) and one session
// with its plot of power and energy over time and its meter values.

import { enc, get } from "../api.js";
import { badge, emptyRow, fmtDuration, fmtEnergy, fmtPower, fmtTime, h, link, notice, prettyJson, replace, section, table, throttle } from "../dom.js";
import { plot, readings } from "../plot.js";
import { transactionRow, TRANSACTION_COLUMNS } from "./charger.js";
import { Pager, chargerLink, errorText } from "./common.js";

function renderList(root, live) {
  const charger = h("input", { id: "tx-charger", placeholder: "charger id", autocomplete: "off" });
  const state = h("select", { id: "tx-state" }, h("option", { value: "" }, "all"), h("option", { value: "true" }, "active"), h("option", { value: "false" }, "finished"));
  const form = h("form", { class: "toolbar" }, h("label", { for: "tx-charger" }, "Charger"), charger, h("label", { for: "tx-state" }, "State"), state, h("button", { type: "submit", class: "btn btn-primary" }, "Apply"));
  const status = h("div");
  const body = h("tbody");
  const columns = [TRANSACTION_COLUMNS[0], "Charger", ...TRANSACTION_COLUMNS.slice(1)];
  const pager = new Pager(
    (query) => get("/api/v1/transactions", { ...query, chargerId: charger.value.trim() || undefined, active: state.value || undefined }),
    (items) => replace(body, items.length ? items.map((t) => transactionRow(t, { charger: true })) : emptyRow(columns.length, "No transactions match.")),
  );
  const refresh = () => pager.refresh().then(() => replace(status)).catch((e) => replace(status, notice("error", errorText(e))));
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    pager.reset().then(() => replace(status)).catch((e) => replace(status, notice("error", errorText(e))));
  });
  root.append(h("div", { class: "page-head" }, h("h1", {}, "Transactions")), form, status, table(columns, [], "transactions"), pager.element);
  root.querySelector("table.transactions tbody").replaceWith(body);
  refresh();
  const later = throttle(() => {
    if (pager.cursors.length === 1) refresh();
  }, 2000);
  // Starts and stops change the list; the meter values of a running one (updated) do not
  // need a new page each time: its row is read again with the next start or stop.
  const unsubscribe = live({ type: "transaction.started,transaction.stopped" }, () => later());
  return () => {
    unsubscribe();
    later.cancel();
  };
}

function renderOne(root, id, live) {
  const head = h("div", { class: "page-head" }, h("h1", {}, `Transaction #${id}`));
  const status = h("div");
  const facts = h("div");
  const chart = h("div", { id: "tx-plot" });
  const samples = h("div");
  root.append(head, status, h("div", { class: "columns columns-wide" }, section("Session", facts), section("Power and energy", chart)), section("Meter values", samples));
  const load = async () => {
    let tx;
    try {
      tx = await get(`/api/v1/transactions/${enc(id)}`);
    } catch (failure) {
      replace(status, notice("error", failure.status === 404 ? `No transaction ${id}.` : errorText(failure)));
      return;
    }
    const points = readings(tx.meterValues, tx.meterStart);
    const start = new Date(tx.startedAt).getTime();
    const end = tx.stoppedAt ? new Date(tx.stoppedAt).getTime() : Date.now();
    replace(head, h("h1", {}, `Transaction #${tx.id}`), tx.active ? badge("active", "good") : badge(tx.stopReason || "stopped", "neutral"));
    replace(
      facts,
      h(
        "dl",
        { class: "facts" },
        [
          ["Charger", chargerLink(tx.chargerId)],
          ["Connector", String(tx.connectorId)],
          ["Id tag", h("span", { class: "mono" }, tx.idTag ?? "–")],
          ["Authorization", tx.idTagStatus ?? "–"],
          ["Started", fmtTime(tx.startedAt)],
          ["Stopped", tx.active ? "–" : fmtTime(tx.stoppedAt)],
          ["Duration", fmtDuration((end - start) / 1000)],
          ["Energy", fmtEnergy(tx.energyWh)],
          ["Power now", tx.active ? fmtPower(tx.lastMeter?.powerW) : "–"],
          ["Meter start / stop", `${tx.meterStart ?? "–"} / ${tx.meterStop ?? "–"} Wh`],
          ["Started by", tx.commandId ? link(`#/chargers/${enc(tx.chargerId)}`, tx.commandId, { class: "mono" }) : "the charger"],
        ].map(([k, v]) => [h("dt", {}, k), h("dd", {}, v)]),
      ),
    );
    replace(chart, plot(points));
    const rows = (tx.meterValues || []).slice(-100).reverse().map((m, i) => {
      const p = points.find((x) => x.t === new Date(m.timestamp).getTime()) || {};
      return h("tr", { "data-sample": i }, h("td", {}, fmtTime(m.timestamp)), h("td", { class: "num" }, fmtEnergy(p.energyWh)), h("td", { class: "num" }, fmtPower(p.powerW)), h("td", {}, h("details", {}, h("summary", {}, `${m.sampledValue.length} sampled values`), prettyJson(m.sampledValue))));
    });
    replace(samples, table(["Time", "Energy", "Power", "Raw"], rows.length ? rows : emptyRow(4, "No meter values.")), (tx.meterValues || []).length > 100 ? h("p", { class: "muted" }, "The newest 100 shown; the plot has them all.") : null);
    return tx;
  };
  const later = throttle(load, 2000);
  let unsubscribe = () => {};
  let stopped = false;
  // Live while it runs: the events of its charger (the stream filters by charger, not by
  // transaction), each of this transaction reading it again at most every 2 s.
  load().then((tx) => {
    if (stopped || !tx || !tx.active) return;
    unsubscribe = live({ chargerId: tx.chargerId, type: "transaction.*" }, (event) => {
      if (String(event.data?.transactionId) === String(id)) later();
    });
  });
  return () => {
    stopped = true;
    unsubscribe();
    later.cancel();
  };
}

export function render(root, { id }, { live }) {
  return id ? renderOne(root, id, live) : renderList(root, live);
}
