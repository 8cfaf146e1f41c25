// Building the page with DOM APIs only: every string becomes a text node, never markup.
// (The server's Content-Security-Policy requires Trusted Types, so innerHTML would throw.)

const SVG_NS = "http://www.w3.org/2000/svg";

function append(node, child) {
  if (child === null || child === undefined || child === false) return;
  if (Array.isArray(child)) {
    for (const c of child) append(node, c);
  } else if (child instanceof Node) {
    node.appendChild(child);
  } else {
    node.appendChild(document.createTextNode(String(child)));
  }
}

function setAttributes(node, attrs) {
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === null || value === undefined || value === false) continue;
    if (key === "class") node.setAttribute("class", Array.isArray(value) ? value.filter(Boolean).join(" ") : value);
    else if (key === "dataset") Object.assign(node.dataset, value);
    else if (key.startsWith("on") && typeof value === "function") node.addEventListener(key.slice(2), value);
    else if (key === "value" || key === "checked" || key === "selected" || key === "disabled") node[key] = value;
    else node.setAttribute(key, value === true ? "" : String(value));
  }
}

/** An element: h("a", {href: "#/x", class: "link"}, "text", child, [more]). */
export function h(tag, attrs, ...children) {
  const node = document.createElement(tag);
  setAttributes(node, attrs);
  append(node, children);
  return node;
}

/** An SVG element (the plots). */
export function s(tag, attrs, ...children) {
  const node = document.createElementNS(SVG_NS, tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value !== null && value !== undefined) node.setAttribute(key, String(value));
  }
  append(node, children);
  return node;
}

export function clear(node) {
  while (node.firstChild) node.removeChild(node.firstChild);
  return node;
}

export function replace(node, ...children) {
  clear(node);
  append(node, children);
  return node;
}

// -- formatting -----------------------------------------------------------------------------

export function fmtTime(iso) {
  if (!iso) return "–";
  const d = new Date(iso);
  if (Number.isNaN(d.getTime())) return String(iso);
  const pad = (n, w = 2) => String(n).padStart(w, "0");
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())} ${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}`;
}

export function ago(iso) {
  if (!iso) return "never";
  const t = new Date(iso).getTime();
  if (Number.isNaN(t)) return String(iso);
  const s = Math.round((Date.now() - t) / 1000);
  if (s < 5) return "just now";
  if (s < 60) return `${s} s ago`;
  if (s < 3600) return `${Math.floor(s / 60)} min ago`;
  if (s < 86400) return `${Math.floor(s / 3600)} h ago`;
  return `${Math.floor(s / 86400)} d ago`;
}

/** A relative time that keeps itself current (see tickTimes). */
export function timeAgo(iso) {
  return h("time", { datetime: iso || "", title: fmtTime(iso), class: "ago" }, ago(iso));
}

export function tickTimes(root) {
  for (const node of root.querySelectorAll("time.ago")) node.textContent = ago(node.getAttribute("datetime"));
}

export function fmtNumber(value, digits = 0) {
  if (value === null || value === undefined || value === "") return "–";
  const n = Number(value);
  if (!Number.isFinite(n)) return String(value);
  return n.toLocaleString("en-US", { maximumFractionDigits: digits, minimumFractionDigits: 0 });
}

export function fmtEnergy(wh) {
  if (wh === null || wh === undefined) return "–";
  return Math.abs(wh) >= 1000 ? `${fmtNumber(wh / 1000, 2)} kWh` : `${fmtNumber(wh, 0)} Wh`;
}

export function fmtPower(w) {
  if (w === null || w === undefined) return "–";
  return Math.abs(w) >= 1000 ? `${fmtNumber(w / 1000, 2)} kW` : `${fmtNumber(w, 0)} W`;
}

export function fmtDuration(seconds) {
  if (seconds === null || seconds === undefined || !Number.isFinite(seconds)) return "–";
  const s = Math.max(0, Math.round(seconds));
  const hh = Math.floor(s / 3600), mm = Math.floor((s % 3600) / 60), ss = s % 60;
  return hh ? `${hh} h ${mm} min` : mm ? `${mm} min ${ss} s` : `${ss} s`;
}

export function prettyJson(value) {
  return h("pre", { class: "json" }, JSON.stringify(value, null, 2));
}

// -- small widgets ----------------------------------------------------------------------------

const TONES = {
  good: ["Available", "Accepted", "accepted", "success", "succeeded", "enabled", "connected", "active", "Charging"],
  warn: ["Preparing", "SuspendedEV", "SuspendedEVSE", "Finishing", "Reserved", "Pending", "requested", "queued", "pending", "inactive"],
  bad: ["Faulted", "Unavailable", "Rejected", "rejected", "failed", "failure", "disabled", "error"],
};

export function tone(text) {
  for (const [name, words] of Object.entries(TONES)) if (words.includes(text)) return name;
  return "neutral";
}

export function badge(text, toneName) {
  return h("span", { class: ["badge", `badge-${toneName || tone(text)}`] }, text ?? "–");
}

export function link(href, text, attrs = {}) {
  return h("a", { href, ...attrs }, text);
}

export function copyButton(getText) {
  const button = h("button", { type: "button", class: "btn btn-small" }, "Copy");
  button.addEventListener("click", async () => {
    try {
      await navigator.clipboard.writeText(getText());
      button.textContent = "Copied";
    } catch {
      button.textContent = "Select and copy";
    }
    setTimeout(() => (button.textContent = "Copy"), 2000);
  });
  return button;
}

/** A secret shown once: the value, a copy button and a warning that it will not be shown again. */
export function secretBox(label, secret) {
  const value = h("code", { class: "secret-value", "data-secret": "" }, secret);
  return h(
    "div",
    { class: "secret-box", role: "status" },
    h("div", { class: "secret-label" }, label),
    h("div", { class: "secret-row" }, value, copyButton(() => secret)),
    h("p", { class: "hint" }, "Shown once: copy it now. Only a hash or an encrypted copy is kept."),
  );
}

/** A button that asks for a second click before acting (no native dialog). */
export function confirmButton(text, confirmText, action, cls = "btn") {
  const button = h("button", { type: "button", class: cls }, text);
  let armed = null;
  button.addEventListener("click", async () => {
    if (!armed) {
      button.textContent = confirmText;
      button.classList.add("btn-armed");
      armed = setTimeout(() => {
        armed = null;
        button.textContent = text;
        button.classList.remove("btn-armed");
      }, 4000);
      return;
    }
    clearTimeout(armed);
    armed = null;
    button.textContent = text;
    button.classList.remove("btn-armed");
    button.disabled = true;
    try {
      await action();
    } finally {
      button.disabled = false;
    }
  });
  return button;
}

export function notice(kind, text) {
  return h("div", { class: ["notice", `notice-${kind}`], role: kind === "error" ? "alert" : "status" }, text);
}

export function emptyRow(columns, text) {
  return h("tr", { class: "empty" }, h("td", { colspan: columns }, text));
}

export function table(headers, rows, cls = "") {
  return h(
    "div",
    { class: "table-wrap" },
    h("table", { class: ["grid", cls] }, h("thead", {}, h("tr", {}, headers.map((x) => h("th", {}, x)))), h("tbody", {}, rows)),
  );
}

export function section(title, ...children) {
  return h("section", { class: "card" }, h("h2", {}, title), children);
}

/** Calls fn at most once per `ms`, the last call winning. */
export function throttle(fn, ms) {
  let timer = null;
  let pending = false;
  const run = () => {
    timer = null;
    if (pending) {
      pending = false;
      fn();
      timer = setTimeout(run, ms);
    }
  };
  const wrapped = () => {
    pending = true;
    if (!timer) run();
  };
  wrapped.cancel = () => {
    pending = false;
    if (timer) clearTimeout(timer);
    timer = null;
  };
  return wrapped;
}
