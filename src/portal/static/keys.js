// @ts-check
/**
 * API keys: the list (name, start, environment, scopes, last activity, expiry, status), create
 * behind a password re-confirmation with the secret shown exactly once, rotate with a grace
 * period, revoke after a confirmation.
 */
import { keepAccount } from "./applications.js";
import {
  api, busy, capitalize, confirmDialog, dialog, emptyState, field, fmtDate, fmtDateTime, fmtRateLimit, formError, h, markField, replace,
  secretField, select, statusBadge, timeEl, toast,
} from "./ui.js";

const GRACE = /** @type {Array<[string, string]>} */ ([
  ["0", "None: the old key stops working now"], ["3600", "1 hour"], ["86400", "24 hours"], ["604800", "7 days"], ["2592000", "30 days"],
]);
const WINDOWS = /** @type {Array<[string, string]>} */ ([["1", "second"], ["60", "minute"], ["3600", "hour"], ["86400", "day"]]);
const INACTIVE = new Set(["revoked", "rotated", "expired"]);

/** @param {import("./app.js").PageContext} ctx */
export async function keysPage(ctx) {
  const { main, state } = ctx;
  const [{ data: keys }, { data: apps }] = await Promise.all([api("GET", ctx.accountPath("/keys")), api("GET", ctx.accountPath("/applications"))]);
  const appFilter = ctx.params.get("application") ?? "";
  const showAll = ctx.params.get("all") === "1";
  const appById = new Map(apps.map((/** @type {any} */ a) => [a.id, a]));
  const apiById = new Map(state.apis.map((a) => [a.id, a]));
  const visible = keys
    .filter((/** @type {any} */ k) => !appFilter || (appFilter === "none" ? k.applicationId === null : k.applicationId === appFilter))
    .filter((/** @type {any} */ k) => showAll || !INACTIVE.has(k.status))
    .reverse();
  const hidden = keys.filter((/** @type {any} */ k) => INACTIVE.has(k.status)).length;
  const canCreate = state.apis.some((a) => a.selfService || state.operator);
  const reload = () => void keysPage(ctx);
  const create = () => openCreate(ctx, apps, appFilter && appFilter !== "none" ? appFilter : "", reload);

  const filterApp = select([["", "All applications"], ["none", "Keys without an application"], ...apps.map((/** @type {any} */ a) => /** @type {[string, string]} */ ([a.id, a.name]))], {
    "aria-label": "Application",
    onchange: (/** @type {Event} */ e) => ctx.go("keys", { application: /** @type {HTMLSelectElement} */ (e.target).value, all: showAll ? "1" : undefined }),
  }, appFilter);
  const allToggle = h("label", { class: "check check-inline" },
    h("input", { type: "checkbox", checked: showAll, onchange: (/** @type {Event} */ e) => ctx.go("keys", { application: appFilter || undefined, all: /** @type {HTMLInputElement} */ (e.target).checked ? "1" : undefined }) }),
    ` Show revoked, rotated and expired (${hidden})`);

  const row = (/** @type {any} */ k) => {
    const a = apiById.get(k.api);
    const managed = a && !a.selfService && !state.operator;
    const active = !INACTIVE.has(k.status);
    return h("tr", { "data-key-id": k.id, "data-testid": "key-row" },
      h("td", { "data-label": "Name" }, h("strong", null, k.name ?? "Unnamed key"), k.applicationId ? h("div", { class: "muted small" }, appById.get(k.applicationId)?.name ?? "Application") : h("div", { class: "muted small" }, a?.name ?? k.api)),
      h("td", { "data-label": "Key" }, k.start ? h("code", { class: "mono" }, `${k.start}…`) : h("span", { class: "muted" }, "imported")),
      h("td", { "data-label": "Environment" }, h("span", { class: `badge badge-env badge-env-${k.environment}` }, capitalize(k.environment))),
      h("td", { "data-label": "Scopes" }, k.scopes.length ? h("ul", { class: "chips" }, k.scopes.map((/** @type {string} */ s) => h("li", { class: "chip chip-scope" }, s))) : h("span", { class: "muted" }, "None")),
      h("td", { "data-label": "Last activity" }, timeEl(k.lastUsedAt)),
      h("td", { "data-label": "Expires" }, k.expiresAt ? h("time", { datetime: k.expiresAt, title: fmtDateTime(k.expiresAt) }, fmtDate(k.expiresAt)) : h("span", { class: "muted" }, "Never")),
      h("td", { "data-label": "Status" }, statusBadge(k.status), k.status === "rotating" ? h("div", { class: "muted small" }, "until ", fmtDateTime(k.graceEndsAt)) : null),
      h("td", { "data-label": "Actions", class: "row-actions" }, h("div", { class: "row-actions-stack" },
        h("a", { class: "btn btn-ghost btn-sm", href: `/portal/usage${keepAccount(ctx, { key: k.id })}`, "data-link": "", "aria-label": `Usage of ${k.name ?? k.start}` }, "Usage"),
        managed
          ? h("span", { class: "muted small", title: "Issued, rotated and revoked by the provider" }, "Managed by the provider")
          : [
            active && k.status !== "rotating" ? h("button", { class: "btn btn-secondary btn-sm", type: "button", onclick: () => openRotate(ctx, k, apps, reload), "aria-label": `Rotate ${k.name ?? k.start}` }, "Rotate") : null,
            k.status !== "revoked" ? h("button", {
              class: "btn btn-danger-ghost btn-sm", type: "button", "aria-label": `Revoke ${k.name ?? k.start}`,
              onclick: () => revoke(ctx, k, reload),
            }, "Revoke") : null,
          ])));
  };

  replace(main,
    h("div", { class: "page-head" },
      h("div", null, h("h1", null, "API keys"), h("p", { class: "muted" }, "Keys authenticate your requests. A key's secret is shown once, when it is created; keep it on your servers, never in browsers or public code.")),
      canCreate && keys.length ? h("button", { class: "btn btn-primary", type: "button", onclick: create }, "Create API key") : null),
    keys.length === 0
      ? emptyState("No API keys yet", "Create a key to start calling the API. You can restrict it to scopes, IP addresses and an expiry date.",
        canCreate ? h("button", { class: "btn btn-primary", type: "button", onclick: create }, "Create your first API key") : h("p", { class: "muted" }, "Your provider issues your credentials."))
      : [
        h("div", { class: "toolbar" }, filterApp, allToggle),
        visible.length === 0
          ? h("div", { class: "state state-empty" }, h("p", null, "No keys match these filters."))
          : h("div", { class: "table-wrap" }, h("table", { class: "table table-cards", "aria-label": "API keys" },
            h("thead", null, h("tr", null, ["Name", "Key", "Environment", "Scopes", "Last activity", "Expires", "Status", h("span", { class: "sr-only" }, "Actions")].map((c) => h("th", { scope: "col" }, c)))),
            h("tbody", null, visible.map(row)))),
      ]);
}

/** @param {import("./app.js").PageContext} ctx @param {any} key @param {() => void} done */
async function revoke(ctx, key, done) {
  const ok = await confirmDialog({
    title: "Revoke this API key?",
    text: [h("p", null, "Revoking ", h("strong", null, key.name ?? key.start), ` (${key.start}…) takes effect on its next request: every call made with it will be refused.`), h("p", null, "This cannot be undone.")],
    confirm: "Revoke key",
    danger: true,
  });
  if (!ok) return;
  try {
    await api("POST", ctx.accountPath(`/keys/${encodeURIComponent(key.id)}/revoke`));
    toast(`Key ${key.name ?? key.start} revoked.`);
    done();
  } catch (e) {
    toast(e instanceof Error ? e.message : String(e), "error");
  }
}

/** How a client sends a key of this API. @param {any} apiView */
function usageHint(apiView) {
  const c = apiView?.credentials?.[0];
  if (!c) return null;
  const line = c.type === "bearer" ? "Authorization: Bearer <your API key>"
    : c.type === "header" ? `${c.name}: <your API key>`
    : c.type === "identity" ? `${c.identityHeader}: <your account email>\n${c.secretHeader}: <your API key>`
    : `Exchange the Client ID and the key at ${apiView.tokenEndpoints[0] ?? "the token endpoint"}, then send Authorization: Bearer <token>`;
  return h("div", { class: "field" }, h("span", { class: "label" }, "How to use it"), h("pre", { class: "code" }, line));
}

/**
 * The secret, shown once: a warning, the key with a copy button, the Client ID and expiry.
 * @param {any} created @param {string | null} clientId @param {any} apiView @param {() => void} close
 */
function shownOnce(created, clientId, apiView, close, note = "") {
  return h("div", { class: "stack" },
    h("div", { class: "callout callout-warning", role: "alert" },
      h("strong", null, "Copy your API key now. It won't be shown again."),
      " keygate keeps only a hash of it; if you lose it, rotate the key or create a new one."),
    secretField(created.key, "API key", "new-key"),
    clientId ? secretField(clientId, "Client ID") : null,
    h("dl", { class: "facts facts-inline" },
      h("div", null, h("dt", null, "Name"), h("dd", null, created.name ?? "—")),
      h("div", null, h("dt", null, "Environment"), h("dd", null, capitalize(created.environment))),
      h("div", null, h("dt", null, "Expiry date"), h("dd", null, created.expiresAt ? fmtDateTime(created.expiresAt) : "Never"))),
    note ? h("p", { class: "notice" }, note) : null,
    usageHint(apiView),
    h("div", { class: "actions" }, h("button", { class: "btn btn-primary", type: "button", onclick: close }, "I have stored it safely")));
}

/** @param {import("./app.js").PageContext} ctx @param {any[]} apps @param {string} presetApp @param {() => void} done */
function openCreate(ctx, apps, presetApp, done) {
  const { state } = ctx;
  const apis = state.apis.filter((a) => a.selfService || state.operator);
  const error = formError();
  let created = false;
  const d = dialog({ title: "Create API key", wide: true, body: [], onClose: () => { if (created) done(); } });

  const preset = apps.find((a) => a.id === presetApp);
  const apiSelect = select(apis.map((a) => [a.id, `${a.name}${a.selfService ? "" : " (operator-provisioned)"}`]), { name: "api" }, preset?.api ?? apis[0]?.id);
  const appSelect = select([], { name: "applicationId" });
  const envSelect = select([], { name: "environment" });
  const name = h("input", { name: "name", required: true, maxlength: 200, autocomplete: "off", placeholder: "e.g. Production server" });
  const scopes = h("fieldset", { class: "fieldset" });
  const tomorrow = new Date(Date.now() + 86_400_000).toISOString().slice(0, 10);
  const expires = h("input", { name: "expiresAt", type: "date", min: tomorrow });
  const allowlist = h("textarea", { name: "ipAllowlist", rows: 3, placeholder: "203.0.113.7\n198.51.100.0/24", spellcheck: "false" });
  const limitOn = /** @type {HTMLInputElement} */ (h("input", { type: "checkbox", name: "limitOn" }));
  const limit = /** @type {HTMLInputElement} */ (h("input", { name: "rateLimit", type: "number", min: 1, step: 1, value: 100, disabled: true, "aria-label": "Requests" }));
  const windowSelect = select(WINDOWS, { name: "window", disabled: true, "aria-label": "Per" }, "60");
  limitOn.addEventListener("change", () => { limit.disabled = !limitOn.checked; windowSelect.disabled = !limitOn.checked; });
  const planHint = h("p", { class: "hint" });

  const currentApi = () => apis.find((a) => a.id === apiSelect.value);
  const refresh = () => {
    const a = currentApi();
    const appsOfApi = apps.filter((x) => x.api === a?.id);
    replace(appSelect, h("option", { value: "" }, "No application"), appsOfApi.map((x) => h("option", { value: x.id, selected: x.id === presetApp }, x.name)));
    replace(envSelect, (a?.environments ?? []).map((/** @type {string} */ e) => h("option", { value: e }, `${capitalize(e)} (${a.keyPrefixes[e]}…)`)));
    refreshScopes();
  };
  const refreshScopes = () => {
    const a = currentApi();
    const app = apps.find((x) => x.id === appSelect.value);
    const granted = app?.scopes ?? null;
    const names = granted ?? (a?.scopes ?? []).map((/** @type {any} */ s) => s.name);
    replace(scopes, h("legend", null, "Scopes"),
      granted ? h("p", { class: "hint" }, `Granted by the features of ${app.name}; untick any this key does not need.`) : null,
      names.length === 0 ? h("p", { class: "hint" }, "This API has no scopes.") : names.map((/** @type {string} */ s) => {
        const described = (a?.scopes ?? []).find((/** @type {any} */ x) => x.name === s)?.description;
        return h("label", { class: "check" }, h("input", { type: "checkbox", name: "scopes", value: s, checked: granted ? true : (a?.defaultScopes ?? []).includes(s) }),
          h("span", null, h("code", null, s), described ? h("span", { class: "hint" }, ` ${described}`) : null));
      }));
    const plan = a?.rateLimits?.[envSelect.value];
    replace(planHint, plan ? `Your plan allows ${fmtRateLimit(plan)}; you may set a lower limit for this key.` : "Optional: cap this key's requests.");
  };
  apiSelect.addEventListener("change", refresh);
  appSelect.addEventListener("change", refreshScopes);
  envSelect.addEventListener("change", refreshScopes);
  refresh();

  const next = /** @type {HTMLButtonElement} */ (h("button", { class: "btn btn-primary", type: "submit" }, "Continue"));
  const details = /** @type {HTMLFormElement} */ (h("form", { class: "form form-grid" },
    h("p", { class: "step muted" }, "Step 1 of 2 · Details"),
    field("Name", name, "A label for the key, shown in the list."),
    field("API", apiSelect),
    field("Application", appSelect, "Optional. Its features decide the key's scopes, and its Client ID goes with the key."),
    field("Environment", envSelect),
    scopes,
    field("Expiry date", expires, "Optional. The key stops working at the start of this day (UTC)."),
    field("IP allowlist", allowlist, "Optional. One address or CIDR range per line; empty allows every address."),
    h("fieldset", { class: "fieldset" }, h("legend", null, "Rate limit"),
      h("label", { class: "check" }, limitOn, " Set a rate limit for this key"),
      h("div", { class: "input-row" }, limit, h("span", { class: "muted" }, "requests per"), windowSelect),
      planHint),
    error.el,
    h("div", { class: "actions" }, h("button", { class: "btn btn-secondary", type: "button", onclick: () => d.close() }, "Cancel"), next)));

  /** @type {Record<string, unknown>} */
  let body = {};
  details.addEventListener("submit", (event) => {
    event.preventDefault();
    error.clear();
    const ips = /** @type {HTMLTextAreaElement} */ (allowlist).value.split(/[\s,]+/).map((s) => s.trim()).filter(Boolean);
    const expiry = /** @type {HTMLInputElement} */ (expires).value;
    body = {
      api: apiSelect.value, applicationId: appSelect.value || null, name: /** @type {HTMLInputElement} */ (name).value.trim(), environment: envSelect.value,
      scopes: [...details.querySelectorAll("input[name=scopes]:checked")].map((el) => /** @type {HTMLInputElement} */ (el).value),
      ipAllowlist: ips, expiresAt: expiry ? new Date(`${expiry}T00:00:00Z`).toISOString() : null,
      rateLimit: limitOn.checked ? { limit: Number(limit.value), windowSeconds: Number(windowSelect.value) } : null,
    };
    if (!body.name) { error.show("Give the key a name."); /** @type {HTMLInputElement} */ (name).focus(); return; }
    confirmStep();
  });

  const confirmStep = () => {
    const pwError = formError();
    const password = /** @type {HTMLInputElement} */ (h("input", { name: "password", type: "password", autocomplete: "current-password", required: true }));
    const createButton = /** @type {HTMLButtonElement} */ (h("button", { class: "btn btn-primary", type: "submit" }, "Create key"));
    const form = /** @type {HTMLFormElement} */ (h("form", { class: "form" },
      h("p", { class: "step muted" }, "Step 2 of 2 · Confirm it is you"),
      h("p", null, "Enter your password to create ", h("strong", null, String(body.name)), "."),
      field("Password", password),
      pwError.el,
      h("div", { class: "actions" },
        h("button", { class: "btn btn-secondary", type: "button", onclick: () => { d.setTitle("Create API key"); d.show(details); } }, "Back"),
        createButton)));
    form.addEventListener("submit", async (event) => {
      event.preventDefault();
      pwError.clear();
      await busy(createButton, async () => {
        try {
          const result = await api("POST", ctx.accountPath("/keys"), { ...body, password: password.value });
          created = true;
          password.value = "";
          d.setTitle("Your new API key");
          d.show(shownOnce(result.key, result.clientId, currentApi(), () => d.close()));
        } catch (e) {
          password.value = "";
          const field = e instanceof Error && "field" in e ? /** @type {any} */ (e).field : undefined;
          if (field && field !== "password") {
            // A detail of step 1 was refused: back there, with the error on the field.
            d.setTitle("Create API key");
            d.show(details);
            error.show(e);
            markField(details, e);
          } else {
            pwError.show(e);
            password.focus();
          }
        }
      });
    });
    d.setTitle("Confirm your password");
    d.show(form);
  };

  d.show(details);
}

/** @param {import("./app.js").PageContext} ctx @param {any} key @param {any[]} apps @param {() => void} done */
function openRotate(ctx, key, apps, done) {
  const error = formError();
  let rotated = false;
  const grace = select(GRACE, { name: "gracePeriodSeconds" }, "86400");
  const password = /** @type {HTMLInputElement} */ (h("input", { name: "password", type: "password", autocomplete: "current-password", required: true }));
  const submit = /** @type {HTMLButtonElement} */ (h("button", { class: "btn btn-primary", type: "submit" }, "Rotate key"));
  const form = /** @type {HTMLFormElement} */ (h("form", { class: "form" },
    h("p", null, "Rotating ", h("strong", null, key.name ?? key.start), " issues a new key with the same settings. Deploy the new key, then let the old one lapse."),
    field("Old key keeps working for", grace, "The grace period lets you switch your servers over without downtime."),
    field("Your password", password),
    error.el,
    h("div", { class: "actions" }, h("button", { class: "btn btn-secondary", type: "button", onclick: () => d.close() }, "Cancel"), submit)));
  const d = dialog({ title: "Rotate API key", body: form, wide: true, onClose: () => { if (rotated) done(); } });
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    error.clear();
    await busy(submit, async () => {
      try {
        const result = await api("POST", ctx.accountPath(`/keys/${encodeURIComponent(key.id)}/rotate`), { gracePeriodSeconds: Number(grace.value), password: password.value });
        rotated = true;
        password.value = "";
        const until = result.previous.graceEndsAt;
        const note = Number(grace.value) > 0 ? `The old key (${key.start}…) keeps working until ${fmtDateTime(until)}.` : `The old key (${key.start}…) no longer works.`;
        d.setTitle("Your rotated API key");
        d.show(shownOnce(result.key, result.clientId ?? apps.find((a) => a.id === key.applicationId)?.clientId ?? null, ctx.state.apis.find((a) => a.id === key.api), () => d.close(), note));
      } catch (e) {
        password.value = "";
        error.show(e);
        password.focus();
      }
    });
  });
}
