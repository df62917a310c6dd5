// @ts-check
/** Request logs: every request keygate verified for this account, newest first, with filters. */
import { api, busy, capitalize, errorState, field, fmtDateTime, fmtMs, h, loading, query, replace, select } from "./ui.js";

const PAGE = 50;

/** @param {import("./app.js").PageContext} ctx */
export async function logsPage(ctx) {
  const { main, state } = ctx;
  const [{ data: keys }, { data: apps }] = await Promise.all([api("GET", ctx.accountPath("/keys")), api("GET", ctx.accountPath("/applications"))]);
  const p = ctx.params;
  const environments = [...new Set(state.apis.flatMap((a) => a.environments))];
  const keyLabel = (/** @type {string | null} */ id) => { const k = keys.find((/** @type {any} */ x) => x.id === id); return k ? `${k.name ?? "Unnamed"} · ${k.start ?? ""}` : id ? id : "—"; };

  const keySelect = select([["", "All keys"], ...keys.map((/** @type {any} */ k) => /** @type {[string, string]} */ ([k.id, keyLabel(k.id)]))], { name: "keyId" }, p.get("keyId") ?? "");
  const appSelect = select([["", "All applications"], ...apps.map((/** @type {any} */ a) => /** @type {[string, string]} */ ([a.id, a.name]))], { name: "applicationId" }, p.get("applicationId") ?? "");
  const codeSelect = select([["", "All outcomes"], ...state.codes.map((c) => /** @type {[string, string]} */ ([c.code, `${c.code} (${c.status})`]))], { name: "code" }, p.get("code") ?? "");
  const envSelect = select([["", "All environments"], ...environments.map((e) => /** @type {[string, string]} */ ([e, capitalize(e)]))], { name: "environment" }, p.get("environment") ?? "");
  const status = h("input", { name: "status", inputmode: "numeric", pattern: "[1-5][0-9]{2}", maxlength: 3, placeholder: "e.g. 401", value: p.get("status") ?? "" });
  const localValue = (/** @type {string | null} */ iso) => { if (!iso) return ""; const d = new Date(iso); return new Date(d.getTime() - d.getTimezoneOffset() * 60_000).toISOString().slice(0, 16); };
  const from = h("input", { name: "from", type: "datetime-local", value: localValue(p.get("from")) });
  const to = h("input", { name: "to", type: "datetime-local", value: localValue(p.get("to")) });
  const apply = h("button", { class: "btn btn-primary", type: "submit" }, "Apply filters");
  const form = /** @type {HTMLFormElement} */ (h("form", { class: "filters card", "aria-label": "Filter the request logs" },
    field("Key", keySelect), field("Application", appSelect), field("Outcome", codeSelect), field("Environment", envSelect),
    field("HTTP status", status), field("From", from), field("To", to),
    h("div", { class: "filter-actions" }, apply, h("a", { class: "btn btn-ghost", href: `/portal/logs${ctx.state.operator && p.get("account") ? `?account=${encodeURIComponent(p.get("account") ?? "")}` : ""}`, "data-link": "" }, "Reset"))));
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    const value = (/** @type {HTMLElement} */ el) => /** @type {HTMLInputElement} */ (el).value || undefined;
    const iso = (/** @type {HTMLElement} */ el) => { const v = value(el); return v ? new Date(v).toISOString() : undefined; };
    ctx.go("logs", { keyId: keySelect.value || undefined, applicationId: appSelect.value || undefined, code: codeSelect.value || undefined, environment: envSelect.value || undefined, status: value(status), from: iso(from), to: iso(to) });
  });

  const tbody = h("tbody");
  const results = h("div", { class: "table-area" });
  const more = /** @type {HTMLButtonElement} */ (h("button", { class: "btn btn-secondary", type: "button", hidden: true }, "Load older requests"));
  const filters = {
    keyId: p.get("keyId") ?? undefined, applicationId: p.get("applicationId") ?? undefined, code: p.get("code") ?? undefined,
    environment: p.get("environment") ?? undefined, status: p.get("status") ?? undefined, from: p.get("from") ?? undefined, to: p.get("to") ?? undefined,
  };
  /** @type {string | null} */
  let cursor = null;
  let count = 0;

  const row = (/** @type {any} */ l) => h("tr", { "data-testid": "log-row" },
    h("td", { "data-label": "Time" }, h("time", { datetime: l.at }, fmtDateTime(l.at))),
    h("td", { "data-label": "Key" }, l.keyId ? keyLabel(l.keyId) : h("span", { class: "muted" }, "none")),
    h("td", { "data-label": "Request", class: "mono" }, l.method ? `${l.method} ${l.path ?? ""}` : h("span", { class: "muted" }, l.source)),
    h("td", { "data-label": "Status" }, h("span", { class: `badge ${l.status < 400 ? "badge-active" : l.status === 429 ? "badge-rotating" : "badge-revoked"}` }, String(l.status))),
    h("td", { "data-label": "Outcome" }, h("code", { title: state.codes.find((c) => c.code === l.code)?.message ?? "" }, l.code)),
    h("td", { "data-label": "Latency" }, fmtMs(l.latencyMs), l.upstreamMs !== null ? h("div", { class: "muted small" }, `upstream ${fmtMs(l.upstreamMs)}`) : null),
    h("td", { "data-label": "IP", class: "mono small" }, l.ip ?? "—"),
    h("td", { "data-label": "Request ID", class: "mono small" }, l.requestId ?? "—"));

  const load = async () => {
    const page = await api("GET", ctx.accountPath(`/logs${query({ ...filters, cursor: cursor ?? undefined, limit: PAGE })}`));
    count += page.data.length;
    for (const l of page.data) tbody.appendChild(row(l));
    cursor = page.nextCursor;
    more.hidden = cursor === null;
    if (count === 0) {
      replace(results, h("div", { class: "state state-empty" }, h("h2", null, "No requests found"),
        h("p", null, Object.values(filters).some(Boolean) ? "No request matches these filters." : "Requests made with your keys appear here within a few seconds.")));
    }
  };
  more.addEventListener("click", () => void busy(more, async () => { try { await load(); } catch (e) { results.appendChild(errorState(e)); } }));

  replace(main,
    h("div", { class: "page-head" }, h("div", null, h("h1", null, "Request logs"), h("p", { class: "muted" }, "Every request made with your keys, newest first. Secrets are never logged."))),
    form, results);
  replace(results, loading("Loading requests"));
  try {
    const table = h("div", { class: "table-wrap" }, h("table", { class: "table table-cards", "aria-label": "Request logs" },
      h("thead", null, h("tr", null, ["Time", "Key", "Request", "Status", "Outcome", "Latency", "IP", "Request ID"].map((c) => h("th", { scope: "col" }, c)))),
      tbody));
    await load();
    if (count > 0) replace(results, table, h("div", { class: "load-more" }, more));
  } catch (e) {
    replace(results, errorState(e, () => void logsPage(ctx)));
  }
}
