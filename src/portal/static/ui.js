// @ts-check
/**
 * DOM helpers of the portal's page: element building (never innerHTML with data), dialogs,
 * toasts, copy-to-clipboard, formatting, and the API client with its CSRF token.
 */

/**
 * Creates an element. `attrs` keys starting with "on" add listeners; `class`, `for`, aria-*
 * and data-* are attributes; booleans add or omit the attribute. Children may be strings,
 * nodes, arrays, null or false.
 * @param {string} tag
 * @param {Record<string, any> | null} [attrs]
 * @param {...any} children
 * @returns {HTMLElement}
 */
export function h(tag, attrs, ...children) {
  const el = tag.startsWith("svg:") ? /** @type {HTMLElement} */ (/** @type {unknown} */ (document.createElementNS("http://www.w3.org/2000/svg", tag.slice(4)))) : document.createElement(tag);
  for (const [k, v] of Object.entries(attrs ?? {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k.startsWith("on") && typeof v === "function") el.addEventListener(k.slice(2).toLowerCase(), v);
    else if (k === "value" && "value" in el && !tag.startsWith("svg:")) /** @type {HTMLInputElement} */ (el).value = String(v);
    else el.setAttribute(k, v === true ? "" : String(v));
  }
  append(el, children);
  return el;
}

/** @param {Node} parent @param {any[]} children */
function append(parent, children) {
  for (const c of children.flat(Infinity)) {
    if (c === null || c === undefined || c === false) continue;
    parent.appendChild(typeof c === "string" || typeof c === "number" ? document.createTextNode(String(c)) : c);
  }
}

/** Replaces an element's children. @param {Element} el @param {...any} children */
export function replace(el, ...children) {
  el.replaceChildren();
  append(el, children);
  return el;
}

let idCounter = 0;
/** A unique id for label/aria wiring. @param {string} prefix */
export const uid = (prefix) => `${prefix}-${++idCounter}`;

// ---- The API client ----

export class ApiError extends Error {
  /** @param {string} message @param {number} status @param {string} code @param {any} body */
  constructor(message, status, code, body) {
    super(message);
    this.status = status;
    this.code = code;
    this.body = body;
    /** @type {string | undefined} */
    this.field = body?.details?.field ?? body?.errors?.[0]?.field;
  }
}

let csrfToken = "";
/** @type {(error: ApiError) => void} */
let onSignedOut = () => {};

/** @param {string} token */
export const setCsrfToken = (token) => { csrfToken = token; };
/** @param {(error: ApiError) => void} fn */
export const whenSignedOut = (fn) => { onSignedOut = fn; };

/**
 * Calls the portal API. State-changing calls carry the CSRF token; a 401 of an ended session
 * sends the page back to sign-in.
 * @param {"GET" | "POST" | "PUT" | "PATCH" | "DELETE"} method
 * @param {string} path below /portal/api
 * @param {unknown} [body]
 * @returns {Promise<any>}
 */
export async function api(method, path, body) {
  /** @type {Record<string, string>} */
  const headers = { accept: "application/json" };
  if (method !== "GET") {
    headers["x-csrf-token"] = csrfToken;
    headers["content-type"] = "application/json";
  }
  let res;
  try {
    res = await fetch(`/portal/api${path}`, { method, headers, credentials: "same-origin", body: method === "GET" ? undefined : JSON.stringify(body ?? {}) });
  } catch {
    throw new ApiError("The portal cannot be reached; check your connection and try again.", 0, "NETWORK_ERROR", null);
  }
  if (res.status === 204) return null;
  const data = await res.json().catch(() => null);
  if (!res.ok) {
    const error = new ApiError(data?.detail ?? `${res.status} ${res.statusText}`, res.status, data?.code ?? "ERROR", data);
    if (res.status === 401 && (error.code === "UNAUTHENTICATED" || error.code === "SESSION_EXPIRED")) onSignedOut(error);
    throw error;
  }
  return data;
}

/** @param {Record<string, string | number | undefined | null>} params */
export function query(params) {
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) if (v !== undefined && v !== null && v !== "") q.set(k, String(v));
  const s = q.toString();
  return s ? `?${s}` : "";
}

// ---- Formatting ----

const dateTime = new Intl.DateTimeFormat(undefined, { dateStyle: "medium", timeStyle: "short" });
const dateOnly = new Intl.DateTimeFormat(undefined, { dateStyle: "medium" });
const timeOnly = new Intl.DateTimeFormat(undefined, { hour: "2-digit", minute: "2-digit", second: "2-digit" });
const numbers = new Intl.NumberFormat();
const relative = new Intl.RelativeTimeFormat(undefined, { numeric: "auto" });

/** @param {string | number | null | undefined} v */
export const fmtDateTime = (v) => (v === null || v === undefined ? "—" : dateTime.format(new Date(v)));
/** @param {string | number | null | undefined} v */
export const fmtDate = (v) => (v === null || v === undefined ? "—" : dateOnly.format(new Date(v)));
/** @param {string | number} v */
export const fmtTime = (v) => timeOnly.format(new Date(v));
/** @param {number | null | undefined} v */
export const fmtNumber = (v) => (v === null || v === undefined ? "—" : numbers.format(v));
/** @param {number | null | undefined} v */
export const fmtPercent = (v) => (v === null || v === undefined ? "—" : `${(v * 100).toFixed(v === 1 || v === 0 ? 0 : 1)} %`);
/** @param {number | null | undefined} v */
export const fmtMs = (v) => (v === null || v === undefined ? "—" : v === 0 ? "0 ms" : v < 10 ? `${v.toFixed(2)} ms` : v < 1000 ? `${v.toFixed(0)} ms` : `${(v / 1000).toFixed(2)} s`);

/** "1,000 requests per hour". @param {{ limit: number, windowSeconds: number }} rl */
export function fmtRateLimit(rl) {
  /** @type {Record<number, string>} */
  const names = { 1: "second", 60: "minute", 3600: "hour", 86400: "day" };
  const per = names[rl.windowSeconds] ?? `${fmtNumber(rl.windowSeconds)} seconds`;
  return `${fmtNumber(rl.limit)} ${rl.limit === 1 ? "request" : "requests"} per ${per}`;
}

/** "3 minutes ago", "in 2 days". @param {string | number | null | undefined} v */
export function fmtRelative(v) {
  if (v === null || v === undefined) return "Never";
  const seconds = (new Date(v).getTime() - Date.now()) / 1000;
  const abs = Math.abs(seconds);
  if (abs < 45) return seconds < 0 ? "just now" : "in a few seconds";
  /** @type {Array<[Intl.RelativeTimeFormatUnit, number]>} */
  const units = [["minute", 60], ["hour", 3600], ["day", 86400], ["month", 2592000], ["year", 31536000]];
  let unit = units[0];
  for (const u of units) if (abs >= u[1]) unit = u;
  return relative.format(Math.round(seconds / unit[1]), unit[0]);
}

/** A date with its relative form, both readable: <time title="…">2 hours ago</time>. @param {string | null} v */
export const timeEl = (v, never = "Never") => (v === null ? h("span", { class: "muted" }, never) : h("time", { datetime: v, title: fmtDateTime(v) }, fmtRelative(v)));

/** @param {string} s */
export const capitalize = (s) => s.charAt(0).toUpperCase() + s.slice(1);

// ---- Feedback ----

/** A toast in the polite live region. @param {string} message @param {"ok" | "error"} [kind] */
export function toast(message, kind = "ok") {
  const region = document.getElementById("toasts");
  if (!region) return;
  const el = h("div", { class: `toast toast-${kind}`, role: kind === "error" ? "alert" : "status" }, message);
  region.appendChild(el);
  setTimeout(() => { el.classList.add("leaving"); setTimeout(() => el.remove(), 300); }, kind === "error" ? 7000 : 3500);
}

/** The visible states of a region that loads. */
export const loading = (what = "Loading") => h("div", { class: "state state-loading", role: "status" }, h("span", { class: "spinner", "aria-hidden": "true" }), ` ${what}…`);

/** @param {unknown} error @param {() => void} [retry] */
export function errorState(error, retry) {
  const message = error instanceof Error ? error.message : String(error);
  return h("div", { class: "state state-error", role: "alert" },
    h("strong", null, "Something went wrong. "), message,
    retry ? h("div", null, h("button", { class: "btn btn-secondary", type: "button", onclick: retry }, "Try again")) : null);
}

/** @param {string} title @param {string} text @param {Node | null} [action] */
export const emptyState = (title, text, action) =>
  h("div", { class: "state state-empty" }, h("div", { class: "empty-icon", "aria-hidden": "true" }, "◇"), h("h2", null, title), h("p", null, text), action ?? null);

/** An inline error above a form's buttons, announced when it appears. */
export function formError() {
  const el = h("div", { class: "form-error", role: "alert", hidden: true });
  return {
    el,
    /** @param {unknown} error */
    show(error) {
      el.hidden = false;
      replace(el, error instanceof Error ? error.message : String(error));
    },
    clear() { el.hidden = true; el.replaceChildren(); },
  };
}

/**
 * Marks the field an API error names (`field`) invalid and moves focus there.
 * @param {HTMLFormElement} form @param {unknown} error
 */
export function markField(form, error) {
  for (const el of form.querySelectorAll("[aria-invalid]")) el.removeAttribute("aria-invalid");
  if (!(error instanceof ApiError) || !error.field) return;
  // "body.ipAllowlists.test[0]" names the control "test"; "scopes[1]" the control "scopes".
  const names = error.field.replace(/^body\./, "").split(".").map((n) => n.replace(/\[.*$/, "")).reverse();
  /** @type {HTMLElement | null} */
  let input = null;
  for (const name of names) {
    input = form.querySelector(`[name="${CSS.escape(name)}"]`);
    if (input) break;
  }
  if (input) { input.setAttribute("aria-invalid", "true"); input.focus(); }
}

/** Sets a submit button busy while `work` runs. @template T @param {HTMLButtonElement} button @param {() => Promise<T>} work */
export async function busy(button, work) {
  const label = button.textContent;
  button.disabled = true;
  button.setAttribute("aria-busy", "true");
  button.textContent = "Working…";
  try {
    return await work();
  } finally {
    button.disabled = false;
    button.removeAttribute("aria-busy");
    button.textContent = label;
  }
}

// ---- Dialogs ----

/**
 * A modal <dialog> (focus trapped by the browser, Esc closes) that removes itself on close.
 * @param {{ title: string, body: any, wide?: boolean, onClose?: () => void }} options
 */
export function dialog(options) {
  const titleId = uid("dialog-title");
  const body = h("div", { class: "dialog-body" });
  const el = /** @type {HTMLDialogElement} */ (h("dialog", { class: `dialog${options.wide ? " dialog-wide" : ""}`, "aria-labelledby": titleId },
    h("div", { class: "dialog-head" },
      h("h2", { id: titleId }, options.title),
      h("button", { class: "icon-btn", type: "button", "aria-label": "Close", onclick: () => el.close() }, "✕")),
    body));
  replace(body, options.body);
  el.addEventListener("close", () => { options.onClose?.(); el.remove(); });
  document.body.appendChild(el);
  el.showModal();
  const first = /** @type {HTMLElement | null} */ (body.querySelector("input:not([type=hidden]):not([disabled]), select, textarea, button.btn-primary"));
  first?.focus();
  return {
    el, body,
    /** @param {string} title */
    setTitle(title) { const t = el.querySelector(`#${titleId}`); if (t) t.textContent = title; },
    /** @param {...any} children */
    show(...children) {
      replace(body, ...children);
      const f = /** @type {HTMLElement | null} */ (body.querySelector("input:not([type=hidden]):not([readonly]):not([disabled]), select, textarea, .btn-primary"));
      f?.focus();
    },
    close() { el.close(); },
  };
}

/**
 * Asks to confirm a destructive step; resolves true only when confirmed.
 * @param {{ title: string, text: any, confirm: string, danger?: boolean }} options
 * @returns {Promise<boolean>}
 */
export function confirmDialog(options) {
  return new Promise((resolve) => {
    let answered = false;
    const d = dialog({
      title: options.title,
      body: [
        h("div", { class: "confirm-text" }, options.text),
        h("div", { class: "actions" },
          h("button", { class: "btn btn-secondary", type: "button", onclick: () => d.close() }, "Cancel"),
          h("button", { class: `btn ${options.danger ? "btn-danger" : "btn-primary"}`, type: "button", onclick: () => { answered = true; d.close(); } }, options.confirm)),
      ],
      onClose: () => resolve(answered),
    });
  });
}

// ---- Copying ----

/**
 * A copy button for `value`; says "Copied" for a moment, and selects the text when the
 * clipboard is not available (plain http on another host).
 * @param {() => string} value @param {string} label @param {HTMLElement | null} [select]
 */
export function copyButton(value, label = "Copy", select = null) {
  const status = h("span", { class: "sr-only", role: "status" });
  const button = /** @type {HTMLButtonElement} */ (h("button", {
    class: "btn btn-secondary btn-copy", type: "button",
    async onclick() {
      try {
        await navigator.clipboard.writeText(value());
        button.textContent = "Copied ✓";
        replace(status, "Copied to the clipboard");
      } catch {
        if (select instanceof HTMLInputElement) { select.focus(); select.select(); }
        button.textContent = "Press Ctrl+C";
        replace(status, "Copying is not allowed here: the text is selected, press Ctrl+C");
      }
      setTimeout(() => { button.textContent = label; }, 2000);
    },
  }, label));
  return h("span", { class: "copy-wrap" }, button, status);
}

/** A read-only monospace field with a copy button. @param {string} value @param {string} label @param {string} [testId] */
export function secretField(value, label, testId) {
  const id = uid("secret");
  const input = /** @type {HTMLInputElement} */ (h("input", { id, class: "mono secret-input", readonly: true, value, spellcheck: "false", autocomplete: "off", "data-testid": testId, onfocus: () => input.select() }));
  return h("div", { class: "field" },
    h("label", { for: id }, label),
    h("div", { class: "input-row" }, input, copyButton(() => value, "Copy", input)));
}

// ---- Form fields ----

/**
 * A labelled form control with an optional hint; the hint is tied with aria-describedby.
 * @param {string} label @param {HTMLElement} control @param {string | null} [hint]
 */
export function field(label, control, hint) {
  const id = control.id || uid("f");
  control.id = id;
  const hintId = hint ? uid("hint") : null;
  if (hintId) control.setAttribute("aria-describedby", hintId);
  return h("div", { class: "field" }, h("label", { for: id }, label), control, hint ? h("p", { class: "hint", id: hintId }, hint) : null);
}

/** @param {Array<[string, string]>} options @param {Record<string, any>} [attrs] @param {string} [selected] */
export function select(options, attrs = {}, selected) {
  return /** @type {HTMLSelectElement} */ (h("select", attrs, options.map(([value, text]) => h("option", { value, selected: value === selected }, text))));
}

/** A status pill. @param {string} status */
export const statusBadge = (status) => h("span", { class: `badge badge-${status}` }, capitalize(status));

// ---- Page lifetime ----

/** @type {Array<() => void>} */
const leaving = [];
/** Runs `fn` when the page is left (timers, live streams). @param {() => void} fn */
export const onLeave = (fn) => { leaving.push(fn); };
/** Called by the router before it renders the next page. */
export function leavePage() {
  for (const fn of leaving.splice(0)) {
    try { fn(); } catch { /* the next page must render anyway */ }
  }
}
