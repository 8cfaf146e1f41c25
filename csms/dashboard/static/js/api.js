// The admin API, with the token from sessionStorage in the Authorization header (never in a
// URL, a cookie or localStorage), and the event stream read by a streaming fetch().

const TOKEN_KEY = "chargehook.adminToken";

export const session = {
  token: () => sessionStorage.getItem(TOKEN_KEY),
  login: (token) => sessionStorage.setItem(TOKEN_KEY, token),
  logout: () => sessionStorage.removeItem(TOKEN_KEY),
};

let unauthorizedHandler = () => {};
/** What to do when the server refuses the token (it was revoked): back to the login form. */
export function onUnauthorized(handler) {
  unauthorizedHandler = handler;
}

export class ApiError extends Error {
  constructor(status, code, message) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

export function withQuery(path, query) {
  if (!query) return path;
  const params = new URLSearchParams();
  for (const [key, value] of Object.entries(query)) {
    if (value !== undefined && value !== null && value !== "") params.append(key, String(value));
  }
  const text = params.toString();
  return text ? `${path}?${text}` : path;
}

export const enc = encodeURIComponent;

function authHeaders(token) {
  const found = token ?? session.token();
  if (!found) throw new ApiError(401, "unauthorized", "not logged in");
  return { Authorization: `Bearer ${found}` };
}

/** One API call; the answer's `data`, or an ApiError with the server's code and message. */
export async function api(method, path, { query, body, token, signal } = {}) {
  const headers = authHeaders(token);
  if (body !== undefined) headers["Content-Type"] = "application/json";
  const response = await fetch(withQuery(path, query), {
    method,
    headers,
    body: body === undefined ? undefined : JSON.stringify(body),
    cache: "no-store",
    signal,
  });
  const text = await response.text();
  let json = null;
  try {
    json = text ? JSON.parse(text) : null;
  } catch {
    json = null;
  }
  if (!response.ok) {
    const error = json && json.error ? json.error : { code: `http_${response.status}`, message: text.slice(0, 200) || response.statusText };
    if (response.status === 401 && token === undefined) unauthorizedHandler();
    throw new ApiError(response.status, error.code, error.message);
  }
  return json && typeof json === "object" && "data" in json ? json.data : json;
}

export const get = (path, query, options = {}) => api("GET", path, { ...options, query });
export const post = (path, body, query) => api("POST", path, { body, query });
export const patch = (path, body) => api("PATCH", path, { body });
export const del = (path) => api("DELETE", path);

/** Every item of a list, following startingAfter, at most `maxPages` pages (then `more`). */
export async function collect(path, query = {}, maxPages = 5, key = "id") {
  const items = [];
  let after;
  for (let i = 0; i < maxPages; i++) {
    const page = await get(path, { ...query, limit: 100, startingAfter: after });
    items.push(...page.items);
    if (!page.hasMore || !page.items.length) return { items, more: false };
    after = page.items[page.items.length - 1][key];
  }
  return { items, more: true };
}

/** The Prometheus text of GET /metrics as {name{labels}: value}; null when refused. */
export async function metrics() {
  const response = await fetch("/metrics", { headers: authHeaders(), cache: "no-store" });
  if (!response.ok) return null;
  const out = [];
  for (const line of (await response.text()).split("\n")) {
    if (!line || line.startsWith("#")) continue;
    const match = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})?\s+(\S+)/.exec(line);
    if (match) out.push({ name: match[1], labels: match[2] || "", value: Number(match[3]) });
  }
  return out;
}

export function metricSum(samples, name, labelPart = "") {
  if (!samples) return null;
  return samples.filter((m) => m.name === name && m.labels.includes(labelPart)).reduce((a, m) => a + m.value, 0);
}

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

/**
 * GET /api/v1/events/stream as a resumable stream of envelopes. The server sends Server-Sent
 * Events; EventSource cannot send an Authorization header, so this reads the body of a fetch()
 * and parses the frames itself. After a lost connection it reconnects with Last-Event-ID (the
 * last id the server sent, keep-alives included): no gap, no duplicate.
 */
export class EventStream {
  constructor({ type, chargerId, since } = {}, onEvent, onState = () => {}) {
    this.query = { type, chargerId, since };
    this.onEvent = onEvent;
    this.onState = onState;
    this.lastId = null;
    this.stopped = false;
    this.controller = null;
  }

  start() {
    this.controller = new AbortController();
    this.loop();
    return this;
  }

  stop() {
    this.stopped = true;
    if (this.controller) this.controller.abort();
  }

  async loop() {
    let delay = 500;
    while (!this.stopped) {
      try {
        const headers = { ...authHeaders(), Accept: "text/event-stream" };
        if (this.lastId) headers["Last-Event-ID"] = this.lastId;
        const response = await fetch(withQuery("/api/v1/events/stream", this.query), {
          headers,
          cache: "no-store",
          signal: this.controller.signal,
        });
        if (response.status === 401) {
          unauthorizedHandler();
          return;
        }
        if (!response.ok) {
          let message = response.statusText;
          try {
            message = (await response.json()).error.message;
          } catch {
            /* not the API's error shape */
          }
          this.onState("error", message);
          if (response.status === 400) return; // a filter the server refuses: no retry helps
        } else {
          this.onState("live");
          delay = 500;
          await this.read(response.body);
        }
      } catch (error) {
        if (this.stopped) return;
        if (error instanceof ApiError) return;
      }
      if (this.stopped) return;
      this.onState("reconnecting");
      await sleep(delay);
      delay = Math.min(delay * 2, 10000);
    }
  }

  async read(body) {
    const reader = body.pipeThrough(new TextDecoderStream()).getReader();
    let buffer = "";
    for (;;) {
      const { value, done } = await reader.read();
      if (done) return;
      buffer += value.replace(/\r\n?/g, "\n");
      let end;
      while ((end = buffer.indexOf("\n\n")) >= 0) {
        const block = buffer.slice(0, end);
        buffer = buffer.slice(end + 2);
        this.dispatch(block);
      }
    }
  }

  dispatch(block) {
    let id = null;
    let type = "message";
    const data = [];
    for (const line of block.split("\n")) {
      if (!line || line.startsWith(":")) continue;
      const colon = line.indexOf(":");
      const field = colon < 0 ? line : line.slice(0, colon);
      let value = colon < 0 ? "" : line.slice(colon + 1);
      if (value.startsWith(" ")) value = value.slice(1);
      if (field === "id") id = value;
      else if (field === "event") type = value;
      else if (field === "data") data.push(value);
    }
    if (id) this.lastId = id;
    if (!data.length || type === "stream.closed") return; // the body ends next: we reconnect
    let envelope;
    try {
      envelope = JSON.parse(data.join("\n"));
    } catch {
      return;
    }
    this.onEvent(envelope);
  }
}

/**
 * Live events for the view on screen: one stream with the view's own filters (the server
 * filters, so a page about one charger never receives the other 9,999's events). Its state
 * goes to the indicator in the top bar.
 */
export function liveEvents(onState) {
  let current = null;
  const open = (filters, onEvent) => {
    if (current) current.stop();
    const stream = new EventStream(filters, onEvent, (state, message) => {
      if (current === stream) onState(state, message);
    });
    current = stream;
    stream.start();
    return () => {
      stream.stop();
      if (current === stream) {
        current = null;
        onState("off");
      }
    };
  };
  open.stopAll = () => {
    if (current) current.stop();
    current = null;
    onState("off");
  };
  return open;
}
