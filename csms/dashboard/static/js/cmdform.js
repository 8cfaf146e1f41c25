// The command form: fields made from the OCPP 1.6 request schema of each of the 26
// CSMS-initiated actions, as GET /api/v1/openapi.json documents them (the server validates
// with the same schemas; its 400 names the field, shown next to it).

import { h } from "./dom.js";

const COMMAND_PATH = /^\/api\/v1\/chargers\/\{[^}]+\}\/commands\/([A-Za-z]+)$/;
let cached = null;

/** {Action: request schema} from the API's own OpenAPI document (public, no token). */
export function commandSchemas() {
  if (!cached) {
    cached = fetch("/api/v1/openapi.json", { cache: "no-store" })
      .then((r) => {
        if (!r.ok) throw new Error(`openapi.json: HTTP ${r.status}`);
        return r.json();
      })
      .then((doc) => {
        const out = {};
        for (const [path, item] of Object.entries(doc.paths)) {
          const match = COMMAND_PATH.exec(path);
          const schema = item.post?.requestBody?.content?.["application/json"]?.schema;
          if (match && schema) out[match[1]] = resolve(doc, schema);
        }
        return out;
      })
      .catch((error) => {
        cached = null;
        throw error;
      });
  }
  return cached;
}

function resolve(doc, schema, depth = 0) {
  if (depth > 20 || !schema || typeof schema !== "object") return schema;
  if (schema.$ref) {
    const name = schema.$ref.replace("#/components/schemas/", "");
    return resolve(doc, doc.components.schemas[name], depth + 1);
  }
  const out = Array.isArray(schema) ? [] : {};
  for (const [key, value] of Object.entries(schema)) out[key] = typeof value === "object" ? resolve(doc, value, depth + 1) : value;
  return out;
}

function fieldWrap(path, label, required, control, hint) {
  return h(
    "div",
    { class: "field", "data-path": path },
    h("label", { for: `f-${path}` }, label, required ? h("span", { class: "required", title: "required" }, " *") : null),
    control,
    hint ? h("p", { class: "hint" }, hint) : null,
    h("p", { class: "field-error", role: "alert" }),
  );
}

/** A control for `schema` at `path`: {node, read} where read() gives the value or undefined. */
function build(schema, path, name, required) {
  const type = schema.type;
  if (type === "object") {
    const props = Object.entries(schema.properties || {});
    const need = new Set(schema.required || []);
    const parts = props.map(([key, sub]) => build(sub, path ? `${path}.${key}` : key, key, need.has(key)));
    let node;
    if (!path) node = h("div", { class: "fields" }, parts.length ? parts.map((p) => p.node) : h("p", { class: "muted" }, "This command takes no fields."));
    else if (required) node = h("fieldset", { class: "fieldset", "data-path": path }, h("legend", {}, name, " *"), parts.map((p) => p.node), h("p", { class: "field-error", role: "alert" }));
    else {
      // An optional object starts folded: most commands are sent without it.
      node = h(
        "details",
        { class: "fieldset optional", "data-path": path },
        h("summary", {}, name, h("span", { class: "muted" }, " (optional)")),
        h("div", { class: "fieldset-body" }, parts.map((p) => p.node)),
        h("p", { class: "field-error", role: "alert" }),
      );
    }
    const read = () => {
      const out = {};
      props.forEach(([key], i) => {
        const value = parts[i].read();
        if (value !== undefined) out[key] = value;
      });
      // Nothing typed inside: left out, required or not (the server says when it is needed).
      return Object.keys(out).length || !path ? out : undefined;
    };
    return { node, read };
  }
  if (type === "array") {
    const items = schema.items || {};
    if (items.type === "object") return arrayOfObjects(items, path, name, required);
    const input = h("input", { id: `f-${path}`, name: path, autocomplete: "off", placeholder: "comma-separated" });
    const read = () => {
      const text = input.value.trim();
      if (!text) return undefined;
      return text.split(",").map((x) => x.trim()).filter(Boolean).map((x) => (items.type === "integer" || items.type === "number" ? Number(x) : x));
    };
    return { node: fieldWrap(path, name, required, input, "a list: values separated by commas"), read };
  }
  if (schema.enum) {
    const select = h("select", { id: `f-${path}`, name: path }, h("option", { value: "" }, required ? "choose…" : "(not set)"), schema.enum.map((v) => h("option", { value: v }, v)));
    return { node: fieldWrap(path, name, required, select), read: () => (select.value === "" ? undefined : select.value) };
  }
  if (type === "boolean") {
    const select = h("select", { id: `f-${path}`, name: path }, h("option", { value: "" }, "(not set)"), h("option", { value: "true" }, "true"), h("option", { value: "false" }, "false"));
    return { node: fieldWrap(path, name, required, select), read: () => (select.value === "" ? undefined : select.value === "true") };
  }
  if (type === "integer" || type === "number") {
    const input = h("input", { id: `f-${path}`, name: path, type: "text", inputmode: "decimal", autocomplete: "off", placeholder: type });
    // Sent as typed when it is no number: the server's answer says what is wrong with it.
    const read = () => {
      const text = input.value.trim();
      if (!text) return undefined;
      const n = Number(text);
      return Number.isFinite(n) ? n : text;
    };
    return { node: fieldWrap(path, name, required, input), read };
  }
  const isTime = schema.format === "date-time";
  const isJson = !type; // DataTransfer-like "any" values
  const input = h("input", { id: `f-${path}`, name: path, autocomplete: "off", placeholder: isTime ? "2026-01-31T12:00:00Z" : schema.format === "uri" ? "https://…" : "" });
  let control = input;
  if (isTime) {
    const now = h("button", { type: "button", class: "btn btn-small" }, "now");
    now.addEventListener("click", () => (input.value = new Date().toISOString().replace(/\.\d{3}Z$/, "Z")));
    control = h("div", { class: "input-row" }, input, now);
  }
  const read = () => {
    const text = input.value;
    if (text === "") return undefined;
    if (isJson) {
      try {
        return JSON.parse(text);
      } catch {
        return text;
      }
    }
    return text;
  };
  return { node: fieldWrap(path, name, required, control, schema.maxLength ? `at most ${schema.maxLength} characters` : null), read };
}

function arrayOfObjects(items, path, name, required) {
  const list = h("div", { class: "array-items" });
  const entries = [];
  const add = h("button", { type: "button", class: "btn btn-small" }, `Add ${name} item`);
  const renumber = () => {
    // Rebuild each item at its index so the server's field paths (a[1].b) find their input.
    const values = entries.map((e) => e.snapshot());
    entries.length = 0;
    list.replaceChildren();
    values.forEach((v) => addItem(v));
  };
  const addItem = (values) => {
    const index = entries.length;
    const built = build(items, `${path}[${index}]`, `${name} #${index + 1}`, true);
    const remove = h("button", { type: "button", class: "btn btn-small btn-ghost" }, "Remove");
    const box = h("div", { class: "array-item" }, built.node, remove);
    const entry = {
      read: built.read,
      snapshot: () => [...box.querySelectorAll("input, select")].map((c) => c.value),
    };
    if (values) [...box.querySelectorAll("input, select")].forEach((c, i) => (c.value = values[i] ?? ""));
    remove.addEventListener("click", () => {
      entries.splice(entries.indexOf(entry), 1);
      renumber();
    });
    entries.push(entry);
    list.append(box);
  };
  add.addEventListener("click", () => addItem());
  const node = h(
    "fieldset",
    { class: "fieldset", "data-path": path },
    h("legend", {}, name, required ? " *" : " (optional)"),
    list,
    add,
    h("p", { class: "field-error", role: "alert" }),
  );
  const read = () => (entries.length ? entries.map((e) => e.read() ?? {}) : undefined);
  return { node, read };
}

/** The form's fields for one action's schema. */
export function buildFields(schema) {
  return build(schema, "", "", true);
}

/** Show the server's 400 next to the field it names ("a.b[0].c: ... "); false if none matches. */
export function showFieldError(form, message) {
  for (const node of form.querySelectorAll(".field-error")) node.textContent = "";
  for (const node of form.querySelectorAll(".has-error")) node.classList.remove("has-error");
  const match = /^([A-Za-z0-9_.[\]]+):\s/.exec(message || "");
  if (!match) return false;
  let path = match[1];
  while (path) {
    const field = form.querySelector(`[data-path="${CSS.escape(path)}"]`);
    if (field) {
      field.classList.add("has-error");
      for (let up = field; up; up = up.parentElement) if (up.tagName === "DETAILS") up.open = true;
      // "a.b: a.b must be ..." reads "must be ..." beside a.b.
      let text = message.slice(match[0].length);
      if (text.startsWith(`${path} `)) text = text.slice(path.length + 1);
      field.querySelector(":scope > .field-error").textContent = text || message;
      const control = field.querySelector("input, select");
      if (control) control.focus();
      return true;
    }
    path = path.replace(/(\.[^.[\]]+|\[\d+\])$/, "");
    if (path === match[1]) break;
  }
  return false;
}
