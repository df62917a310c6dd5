// @ts-check
/**
 * Usage: requests, success rate and response times over time, for the whole account, one key
 * or one application; the same per key or per application in a table; live rate-limit state
 * and a live feed of requests (server-sent events).
 */
import { chart, meter } from "./charts.js";
import {
  api, errorState, fmtDateTime, fmtMs, fmtNumber, fmtPercent, fmtRelative, fmtTime, h, loading, onLeave, query, replace, select, timeEl,
} from "./ui.js";

const RANGES = /** @type {Record<string, { label: string, interval: "minute" | "hour" | "day", ms: number, stepMs: number }>} */ ({
  "1h": { label: "Last hour", interval: "minute", ms: 3_600_000, stepMs: 60_000 },
  "24h": { label: "Last 24 hours", interval: "hour", ms: 86_400_000, stepMs: 3_600_000 },
  "7d": { label: "Last 7 days", interval: "hour", ms: 7 * 86_400_000, stepMs: 3_600_000 },
  "30d": { label: "Last 30 days", interval: "day", ms: 30 * 86_400_000, stepMs: 86_400_000 },
});
const LIVE_EVENTS = 15;

/** @param {import("./app.js").PageContext} ctx */
export async function usagePage(ctx) {
  const { main } = ctx;
  const [{ data: keys }, { data: apps }] = await Promise.all([api("GET", ctx.accountPath("/keys")), api("GET", ctx.accountPath("/applications"))]);
  const range = RANGES[ctx.params.get("range") ?? ""] ? /** @type {string} */ (ctx.params.get("range")) : "24h";
  const view = ctx.params.get("view") === "application" || (ctx.params.get("application") && !ctx.params.get("key")) ? "application" : "key";
  const keyId = view === "key" ? ctx.params.get("key") ?? "" : "";
  const applicationId = view === "application" ? ctx.params.get("application") ?? "" : "";
  const keyName = (/** @type {string | null} */ id) => { const k = keys.find((/** @type {any} */ x) => x.id === id); return k ? `${k.name ?? "Unnamed"} (${k.start ?? k.id})` : id ?? "No key (unknown or missing)"; };
  const appName = (/** @type {string | null} */ id) => apps.find((/** @type {any} */ x) => x.id === id)?.name ?? (id ?? "No application");

  /** @param {Record<string, string | undefined>} change */
  const nav = (change) => ctx.go("usage", { range, view, key: keyId || undefined, application: applicationId || undefined, ...change });
  const rangeSelect = select(Object.entries(RANGES).map(([k, v]) => [k, v.label]), { "aria-label": "Period", onchange: (/** @type {Event} */ e) => nav({ range: /** @type {HTMLSelectElement} */ (e.target).value }) }, range);
  const viewSelect = select([["key", "Per key"], ["application", "Per application"]], {
    "aria-label": "Breakdown", onchange: (/** @type {Event} */ e) => nav({ view: /** @type {HTMLSelectElement} */ (e.target).value, key: undefined, application: undefined }),
  }, view);
  const target = view === "key"
    ? select([["", "All keys"], ...keys.map((/** @type {any} */ k) => /** @type {[string, string]} */ ([k.id, keyName(k.id)]))], { "aria-label": "Key", onchange: (/** @type {Event} */ e) => nav({ key: /** @type {HTMLSelectElement} */ (e.target).value || undefined }) }, keyId)
    : select([["", "All applications"], ...apps.map((/** @type {any} */ a) => /** @type {[string, string]} */ ([a.id, a.name]))], { "aria-label": "Application", onchange: (/** @type {Event} */ e) => nav({ application: /** @type {HTMLSelectElement} */ (e.target).value || undefined }) }, applicationId);

  const summary = h("div", { class: "tiles" });
  const charts = h("div", { class: "charts" });
  const breakdown = h("div", null);
  const rateLimits = h("div", { class: "card live-card" });
  const feed = h("ol", { class: "live-feed", "aria-live": "off" });
  const liveDot = h("span", { class: "live-dot", "aria-hidden": "true" });
  const liveStatus = h("span", { class: "muted small" }, "connecting…");
  const refreshButton = h("button", { class: "btn btn-secondary", type: "button", onclick: () => void loadCharts() }, "Refresh");

  replace(main,
    h("div", { class: "page-head" },
      h("div", null, h("h1", null, "Usage"), h("p", { class: "muted" }, "Requests, success rate and response times of your keys, from keygate's own records.")),
      refreshButton),
    h("div", { class: "toolbar" }, rangeSelect, viewSelect, target),
    summary, charts,
    h("h2", { class: "section-title" }, view === "key" ? "By key" : "By application"), breakdown,
    h("div", { class: "live-grid" },
      h("section", { "aria-labelledby": "rl-title" }, h("h2", { id: "rl-title", class: "section-title" }, "Live rate-limit usage"), rateLimits),
      h("section", { "aria-labelledby": "feed-title" },
        h("h2", { id: "feed-title", class: "section-title" }, "Live requests ", liveDot, " ", liveStatus),
        h("div", { class: "card live-card" }, feed))));

  const step = RANGES[range];
  const loadCharts = async () => {
    replace(charts, loading("Loading charts"));
    const to = Date.now();
    const base = { interval: step.interval, from: new Date(to - step.ms).toISOString(), keyId: keyId || undefined, applicationId: applicationId || undefined };
    try {
      const [overall, grouped] = await Promise.all([
        api("GET", ctx.accountPath(`/analytics${query(base)}`)),
        api("GET", ctx.accountPath(`/analytics${query({ ...base, groupBy: view })}`)),
      ]);
      renderOverall(overall);
      renderBreakdown(grouped);
    } catch (e) {
      replace(charts, errorState(e, () => void loadCharts()));
      replace(summary);
      replace(breakdown);
    }
  };

  /** @param {any} result */
  const renderOverall = (result) => {
    const from = Date.parse(result.from);
    const to = Date.parse(result.to);
    /** @type {number[]} */
    const times = [];
    for (let t = from; t < to; t += step.stepMs) times.push(t);
    const group = result.data[0];
    const byStart = new Map((group?.series ?? []).map((/** @type {any} */ p) => [Date.parse(p.start), p]));
    const at = (/** @type {number} */ t) => /** @type {any} */ (byStart.get(t));
    const total = group?.total;
    replace(summary,
      tile("Requests", fmtNumber(total?.count ?? 0)),
      tile("Success rate", fmtPercent(total?.successRate ?? null)),
      tile("Errors", fmtNumber(total?.errors ?? 0), total && total.errors ? Object.entries(total.errorsByCode).map(([c, n]) => `${c} ${n}`).join(", ") : null),
      tile("Median response", fmtMs(total?.latencyMs?.p50 ?? null)),
      tile("p95 response", fmtMs(total?.latencyMs?.p95 ?? null)));
    const subject = keyId ? `key ${keyName(keyId)}` : applicationId ? `application ${appName(applicationId)}` : "all your keys";
    const upstream = times.some((t) => at(t)?.upstreamMs);
    replace(charts,
      chart({
        title: "Requests", kind: "bars", times, stepMs: step.stepMs, format: (v) => fmtNumber(Math.round(v)),
        series: [
          { name: "Successful", values: times.map((t) => at(t)?.successes ?? 0) },
          { name: "Failed", values: times.map((t) => at(t)?.errors ?? 0) },
        ],
        summary: `${fmtNumber(total?.count ?? 0)} requests of ${subject} in the ${step.label.toLowerCase()}, ${fmtNumber(total?.errors ?? 0)} of them failed.`,
      }),
      chart({
        title: "Success rate", kind: "lines", times, stepMs: step.stepMs, yMax: 1, format: (v) => fmtPercent(v),
        series: [{ name: "Success rate", values: times.map((t) => at(t)?.successRate ?? null) }],
        summary: `Success rate of ${subject}: ${fmtPercent(total?.successRate ?? null)} over the period.`,
      }),
      chart({
        title: "Response time", kind: "lines", times, stepMs: step.stepMs, format: (v) => fmtMs(v),
        series: [
          { name: "p50", values: times.map((t) => at(t)?.latencyMs?.p50 ?? null) },
          { name: "p95", values: times.map((t) => at(t)?.latencyMs?.p95 ?? null) },
          { name: "p99", values: times.map((t) => at(t)?.latencyMs?.p99 ?? null) },
          ...(upstream ? [{ name: "Upstream p95", values: times.map((t) => at(t)?.upstreamMs?.p95 ?? null) }] : []),
        ],
        summary: `keygate's response time for ${subject}: median ${fmtMs(total?.latencyMs?.p50 ?? null)}, p95 ${fmtMs(total?.latencyMs?.p95 ?? null)}.`,
      }));
  };

  /** @param {any} result */
  const renderBreakdown = (result) => {
    if (result.data.length === 0) { replace(breakdown, h("div", { class: "state state-empty" }, h("p", null, "No requests in this period."))); return; }
    replace(breakdown, h("div", { class: "table-wrap" }, h("table", { class: "table table-cards", "aria-label": view === "key" ? "Usage by key" : "Usage by application" },
      h("thead", null, h("tr", null, [view === "key" ? "Key" : "Application", "Requests", "Success rate", "Errors", "p50", "p95", ""].map((c) => h("th", { scope: "col" }, c)))),
      h("tbody", null, result.data.map((/** @type {any} */ g) => h("tr", null,
        h("td", { "data-label": view === "key" ? "Key" : "Application" }, view === "key" ? keyName(g.group) : appName(g.group)),
        h("td", { "data-label": "Requests" }, fmtNumber(g.total.count)),
        h("td", { "data-label": "Success rate" }, fmtPercent(g.total.successRate)),
        h("td", { "data-label": "Errors" }, g.total.errors ? Object.entries(g.total.errorsByCode).map(([c, n]) => `${c} ${n}`).join(", ") : "0"),
        h("td", { "data-label": "p50" }, fmtMs(g.total.latencyMs?.p50 ?? null)),
        h("td", { "data-label": "p95" }, fmtMs(g.total.latencyMs?.p95 ?? null)),
        h("td", { class: "row-actions" }, g.group ? h("button", { class: "btn btn-ghost btn-sm", type: "button", onclick: () => nav(view === "key" ? { key: g.group } : { application: g.group }) }, "Show") : null)))))));
  };

  // ---- Live: rate-limit state per key, and the request feed ----

  const liveKeys = keys.filter((/** @type {any} */ k) => (keyId ? k.id === keyId : applicationId ? k.applicationId === applicationId : true) && (k.status === "active" || k.status === "rotating")).slice(-8);
  /** @type {Map<string, HTMLElement>} */
  const rows = new Map();
  const loadLimit = async (/** @type {any} */ k) => {
    const el = rows.get(k.id);
    if (!el) return;
    try {
      const u = await api("GET", ctx.accountPath(`/keys/${encodeURIComponent(k.id)}/usage`));
      const rl = u.rateLimit;
      replace(el,
        h("div", { class: "rl-head" }, h("strong", null, k.name ?? k.start), h("span", { class: "muted small" }, `${fmtNumber(u.usageCount)} verified requests in all · last `, timeEl(u.lastUsedAt))),
        rl
          ? [meter(rl.used, rl.limit, `${k.name ?? k.start}: ${rl.used} of ${rl.limit} requests used`),
            h("div", { class: "rl-numbers small" }, h("span", { "data-testid": "rl-used" }, `${fmtNumber(rl.used)} of ${fmtNumber(rl.limit)} used`), h("span", null, `${fmtNumber(rl.remaining)} left · resets `, h("time", { datetime: rl.resetAt, title: fmtDateTime(rl.resetAt) }, fmtRelative(rl.resetAt))))]
          : h("p", { class: "muted small" }, "No rate limit applies to this key."));
    } catch (e) {
      replace(el, h("strong", null, k.name ?? k.start), errorState(e));
    }
  };
  if (liveKeys.length === 0) replace(rateLimits, h("p", { class: "muted" }, "No active keys to watch."));
  else {
    replace(rateLimits, liveKeys.map((/** @type {any} */ k) => { const el = h("div", { class: "rl-row", "data-key-id": k.id }, loading()); rows.set(k.id, el); return el; }));
    for (const k of liveKeys) void loadLimit(k);
  }
  /** @type {Map<string, ReturnType<typeof setTimeout>>} */
  const pending = new Map();
  const poll = setInterval(() => { for (const k of liveKeys) void loadLimit(k); }, 10_000);

  replace(feed, h("li", { class: "muted live-empty" }, "Waiting for requests…"));
  const source = new EventSource(`/portal/api${ctx.accountPath(`/events${query({ keyId: keyId || undefined, applicationId: applicationId || undefined })}`)}`);
  source.addEventListener("open", () => { liveDot.classList.add("on"); replace(liveStatus, "live"); });
  source.addEventListener("error", () => { liveDot.classList.remove("on"); replace(liveStatus, "reconnecting…"); });
  source.addEventListener("signed-out", () => { source.close(); replace(liveStatus, "signed out"); });
  source.addEventListener("usage", (event) => {
    const e = JSON.parse(/** @type {MessageEvent} */ (event).data);
    feed.querySelector(".live-empty")?.remove();
    feed.prepend(h("li", { class: `live-item ${e.code === "VALID" ? "ok" : "bad"}` },
      h("time", { datetime: e.at }, fmtTime(e.at)),
      h("span", { class: "mono" }, `${e.method ?? ""} ${e.path ?? ""}`.trim() || e.source),
      h("span", { class: `badge ${e.code === "VALID" ? "badge-active" : "badge-revoked"}` }, `${e.status} ${e.code}`),
      h("span", { class: "muted small" }, e.keyId ? keyName(e.keyId) : "no key"),
      h("span", { class: "muted small" }, fmtMs(e.latencyMs))));
    while (feed.children.length > LIVE_EVENTS) feed.lastElementChild?.remove();
    const k = liveKeys.find((/** @type {any} */ x) => x.id === e.keyId);
    if (k && !pending.has(k.id)) pending.set(k.id, setTimeout(() => { pending.delete(k.id); void loadLimit(k); }, 400));
  });
  onLeave(() => { source.close(); clearInterval(poll); for (const t of pending.values()) clearTimeout(t); });

  await loadCharts();
}

/** @param {string} label @param {string} value @param {string | null} [note] */
const tile = (label, value, note) => h("div", { class: "card tile" }, h("div", { class: "tile-label" }, label), h("div", { class: "tile-value" }, value), note ? h("div", { class: "tile-note small muted" }, note) : null);
