// A time plot of power and energy drawn as SVG with DOM calls (no chart library, no CDN):
// power as a filled step area on the left axis, energy as a line on the right axis.

import { fmtNumber, h, s } from "./dom.js";

const W = 760;
const H = 260;
const PAD = { left: 56, right: 64, top: 30, bottom: 32 };

function ticks(max, count = 4) {
  if (!(max > 0)) return [0];
  const raw = max / count;
  const mag = 10 ** Math.floor(Math.log10(raw));
  const step = [1, 2, 2.5, 5, 10].map((m) => m * mag).find((m) => m >= raw);
  const out = [];
  for (let v = 0; ; v += step) {
    out.push(v);
    if (v >= max - step * 1e-9 || out.length > 20) return out;
  }
}

function unitScale(max, base, big) {
  return max >= 10000 ? { div: 1000, unit: big } : { div: 1, unit: base };
}

/** points: [{t: ms, powerW?, energyWh?}] sorted by t. */
export function plot(points) {
  if (points.length < 1) return h("p", { class: "muted" }, "No meter values yet.");
  const t0 = points[0].t;
  const t1 = Math.max(points[points.length - 1].t, t0 + 1000);
  const power = points.filter((p) => p.powerW != null);
  const energy = points.filter((p) => p.energyWh != null);
  const pu = unitScale(Math.max(0, ...power.map((p) => p.powerW)), "W", "kW");
  const eu = unitScale(Math.max(0, ...energy.map((p) => p.energyWh)), "Wh", "kWh");
  const pTicks = ticks(Math.max(1, ...power.map((p) => p.powerW / pu.div)));
  const eTicks = ticks(Math.max(1, ...energy.map((p) => p.energyWh / eu.div)));
  const pMax = pTicks[pTicks.length - 1] || 1;
  const eMax = eTicks[eTicks.length - 1] || 1;
  const iw = W - PAD.left - PAD.right;
  const ih = H - PAD.top - PAD.bottom;
  const x = (t) => PAD.left + ((t - t0) / (t1 - t0)) * iw;
  const yP = (v) => PAD.top + ih - (v / pu.div / pMax) * ih;
  const yE = (v) => PAD.top + ih - (v / eu.div / eMax) * ih;
  const svg = s("svg", { viewBox: `0 0 ${W} ${H}`, class: "plot", role: "img", "aria-label": "power and energy over time" });
  svg.append(s("title", {}, "Power and energy over time"));
  for (const v of pTicks) {
    const y = PAD.top + ih - (v / pMax) * ih;
    svg.append(s("line", { x1: PAD.left, x2: W - PAD.right, y1: y, y2: y, class: "grid-line" }));
    svg.append(s("text", { x: PAD.left - 8, y: y + 4, class: "axis axis-power", "text-anchor": "end" }, fmtNumber(v, 1)));
  }
  for (const v of eTicks) {
    const y = PAD.top + ih - (v / eMax) * ih;
    svg.append(s("text", { x: W - PAD.right + 8, y: y + 4, class: "axis axis-energy" }, fmtNumber(v, 2)));
  }
  svg.append(s("text", { x: PAD.left - 8, y: PAD.top - 14, class: "axis axis-power", "text-anchor": "end" }, pu.unit));
  svg.append(s("text", { x: W - PAD.right + 8, y: PAD.top - 14, class: "axis axis-energy" }, eu.unit));
  const span = t1 - t0;
  for (let i = 0; i <= 4; i++) {
    const t = t0 + (span * i) / 4;
    const d = new Date(t);
    const label = span > 2 * 86400000 ? d.toLocaleDateString() : d.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit", second: span < 600000 ? "2-digit" : undefined });
    svg.append(s("text", { x: x(t), y: H - 10, class: "axis", "text-anchor": i === 0 ? "start" : i === 4 ? "end" : "middle" }, label));
  }
  if (power.length) {
    let d = `M ${x(power[0].t)} ${yP(0)} L ${x(power[0].t)} ${yP(power[0].powerW)}`;
    for (let i = 1; i < power.length; i++) d += ` L ${x(power[i].t)} ${yP(power[i - 1].powerW)} L ${x(power[i].t)} ${yP(power[i].powerW)}`;
    const last = power[power.length - 1];
    svg.append(s("path", { d: `${d} L ${x(last.t)} ${yP(0)} Z`, class: "area-power" }));
    svg.append(s("path", { d: d.replace(/^M [^L]+L/, "M"), class: "line-power" }));
  }
  if (energy.length) {
    const d = energy.map((p, i) => `${i ? "L" : "M"} ${x(p.t)} ${yE(p.energyWh)}`).join(" ");
    svg.append(s("path", { d, class: "line-energy" }));
    for (const p of energy.length <= 60 ? energy : []) svg.append(s("circle", { cx: x(p.t), cy: yE(p.energyWh), r: 2.5, class: "dot-energy" }));
  }
  svg.append(s("line", { x1: PAD.left, x2: W - PAD.right, y1: PAD.top + ih, y2: PAD.top + ih, class: "axis-line" }));
  const legend = h(
    "div",
    { class: "legend" },
    h("span", { class: "key key-power" }, `Power (${pu.unit})`),
    h("span", { class: "key key-energy" }, `Energy (${eu.unit})`),
  );
  return h("figure", { class: "plot-box" }, svg, legend);
}

const FACTORS = { Wh: 1, kWh: 1000, W: 1, kW: 1000 };

/** Power (W) and energy (Wh) of each stored meterValue element (OCPP 1.6 section 7.33). */
export function readings(meterValues, meterStart) {
  const out = [];
  for (const element of meterValues || []) {
    const t = new Date(element.timestamp).getTime();
    if (Number.isNaN(t)) continue;
    let energy = null;
    let overall = null; // power without a phase wins over the sum of the phases
    let phases = null;
    for (const sv of element.sampledValue || []) {
      if (sv.format === "SignedData") continue;
      const measurand = sv.measurand || "Energy.Active.Import.Register";
      const value = Number(sv.value) * (FACTORS[sv.unit] ?? 1);
      if (!Number.isFinite(value)) continue;
      if (measurand === "Energy.Active.Import.Register" && sv.location !== "EV" && !sv.phase) energy = value;
      if (measurand === "Power.Active.Import") {
        if (!sv.phase) overall = value;
        else if (!String(sv.phase).includes("-")) phases = (phases ?? 0) + value;
      }
    }
    const power = overall ?? phases;
    out.push({ t, energyWh: energy == null ? null : energy - (meterStart || 0), powerW: power });
  }
  return out.sort((a, b) => a.t - b.t);
}
