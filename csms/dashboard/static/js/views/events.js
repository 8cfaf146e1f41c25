// Events: the newest stored events, then the live tail from the event stream (resumed from
// the newest one listed, so nothing falls between the two), filtered by type and charger.

import { get } from "../api.js";
import { h, notice, replace } from "../dom.js";
import { errorText, eventRow, perFrame } from "./common.js";

const KEEP = 200; // rows kept in the page; older ones drop off the bottom
let types = null;

export function render(root, _params, { live }) {
  const type = h("input", { id: "filter-type", list: "event-types", placeholder: "type or glob: transaction.*", autocomplete: "off" });
  const charger = h("input", { id: "filter-charger", placeholder: "charger id", autocomplete: "off" });
  const apply = h("button", { type: "submit", class: "btn btn-primary" }, "Apply");
  const pause = h("button", { type: "button", class: "btn", id: "pause" }, "Pause");
  const status = h("div");
  const list = h("div", { class: "event-list", id: "event-tail" });
  const options = h("datalist", { id: "event-types" });
  const form = h("form", { class: "toolbar" }, h("label", { for: "filter-type" }, "Type"), type, h("label", { for: "filter-charger" }, "Charger"), charger, apply, pause, options);
  root.append(h("div", { class: "page-head" }, h("h1", {}, "Events"), h("p", { class: "muted" }, "Live tail; click an event for its envelope.")), form, status, list);

  (types ??= get("/api/v1/event-types").then((found) => found.map((t) => t.name)).catch(() => []))
    .then((names) => replace(options, names.map((n) => h("option", { value: n }))));

  let stop = () => {};
  let paused = false;
  let held = [];
  const show = perFrame((batch) => {
    const note = list.querySelector(".empty-note");
    if (note) note.remove();
    for (const event of batch) {
      if (!list.querySelector(`[data-event-id="${CSS.escape(event.id)}"]`)) list.prepend(eventRow(event));
    }
    while (list.children.length > KEEP) list.lastChild.remove();
  }, KEEP);
  const start = async () => {
    stop();
    stop = () => {};
    replace(status);
    held.length = 0;
    const filters = { type: type.value.trim() || undefined, chargerId: charger.value.trim() || undefined };
    try {
      const page = await get("/api/v1/events", { ...filters, limit: 50 });
      replace(list, page.items.length ? page.items.map((e) => eventRow(e)) : h("p", { class: "muted empty-note" }, "No events match yet; new ones appear here."));
      stop = live({ ...filters, since: page.items[0]?.id }, (event) => {
        if (!paused) show(event);
        else if (held.push(event) > KEEP) held = held.slice(-KEEP);
      });
    } catch (failure) {
      replace(status, notice("error", errorText(failure)));
    }
  };
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    start();
  });
  pause.addEventListener("click", () => {
    paused = !paused;
    pause.textContent = paused ? `Resume (${held.length})` : "Pause";
    if (!paused) held.splice(0).forEach(show);
  });
  const counter = setInterval(() => {
    if (paused) pause.textContent = `Resume (${held.length})`;
  }, 1000);
  start();
  return () => {
    clearInterval(counter);
    stop();
  };
}
