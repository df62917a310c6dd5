// @ts-check
/** Applications (the payments seed): name, integration type, features granting scopes, Client ID. */
import { api, busy, copyButton, dialog, emptyState, field, fmtDate, formError, h, markField, replace, select, toast } from "./ui.js";

const INTEGRATION_TYPES = /** @type {Array<[string, string]>} */ ([["api", "API"], ["web", "Website / checkout"], ["mobile", "Mobile app"], ["plugin", "Plugin"]]);

/** @param {import("./app.js").PageContext} ctx */
export async function applicationsPage(ctx) {
  const { main, state } = ctx;
  const { data: apps } = await api("GET", ctx.accountPath("/applications"));
  const apiName = (/** @type {string} */ id) => state.apis.find((a) => a.id === id)?.name ?? id;
  const createButton = h("button", { class: "btn btn-primary", type: "button", onclick: () => openCreate(ctx, () => void applicationsPage(ctx)) }, "Create application");

  const list = apps.length === 0
    ? emptyState("No applications yet", "An application groups the API keys of one integration. Its features decide which scopes its keys get, and its Client ID identifies it.", h("button", { class: "btn btn-primary", type: "button", onclick: () => openCreate(ctx, () => void applicationsPage(ctx)) }, "Create your first application"))
    : h("ul", { class: "app-grid", "aria-label": "Applications" }, apps.map((/** @type {any} */ app) => h("li", { class: "card app-card", "data-testid": "application" },
      h("div", { class: "app-card-head" },
        h("h2", null, app.name),
        h("span", { class: "badge badge-neutral" }, INTEGRATION_TYPES.find(([v]) => v === app.integrationType)?.[1] ?? app.integrationType)),
      h("dl", { class: "facts" },
        h("div", null, h("dt", null, "API"), h("dd", null, apiName(app.api))),
        h("div", null, h("dt", null, "Features"), h("dd", null, app.features.length ? h("ul", { class: "chips" }, app.features.map((/** @type {string} */ f) => h("li", { class: "chip" }, f))) : h("span", { class: "muted" }, "None"))),
        h("div", null, h("dt", null, "Scopes granted"), h("dd", null, app.scopes === null ? h("span", { class: "muted" }, "Chosen per key") : app.scopes.length ? h("ul", { class: "chips" }, app.scopes.map((/** @type {string} */ s) => h("li", { class: "chip chip-scope" }, s))) : h("span", { class: "muted" }, "None"))),
        h("div", null, h("dt", null, "Client ID"), h("dd", { class: "client-id" }, h("code", { class: "mono", "data-testid": "client-id" }, app.clientId), copyButton(() => app.clientId, "Copy"))),
        h("div", null, h("dt", null, "Created"), h("dd", null, fmtDate(app.createdAt)))),
      h("div", { class: "card-actions" },
        h("a", { class: "btn btn-secondary", href: `/portal/keys${keepAccount(ctx, { application: app.id })}`, "data-link": "" }, "Manage API keys"),
        h("a", { class: "btn btn-ghost", href: `/portal/usage${keepAccount(ctx, { view: "application", application: app.id })}`, "data-link": "" }, "Usage")))));

  replace(main,
    h("div", { class: "page-head" },
      h("div", null, h("h1", null, "Applications"), h("p", { class: "muted" }, "Your integrations and their Client IDs. The Client ID is not a secret; it is sent with an API key to get access tokens.")),
      apps.length ? createButton : null),
    list);
}

/** @param {import("./app.js").PageContext} ctx @param {Record<string, string>} extra */
export function keepAccount(ctx, extra) {
  const p = new URLSearchParams();
  const account = ctx.params.get("account");
  if (ctx.state.operator && account) p.set("account", account);
  for (const [k, v] of Object.entries(extra)) p.set(k, v);
  const s = p.toString();
  return s ? `?${s}` : "";
}

/** @param {import("./app.js").PageContext} ctx @param {() => void} done */
function openCreate(ctx, done) {
  const { state } = ctx;
  const apis = state.apis;
  const error = formError();
  const name = h("input", { name: "name", required: true, maxlength: 200, autocomplete: "off" });
  const apiSelect = select(apis.map((a) => [a.id, a.name]), { name: "api" }, (apis.find((a) => a.features) ?? apis[0])?.id);
  const type = select(INTEGRATION_TYPES, { name: "integrationType" }, "api");
  const features = h("fieldset", { class: "fieldset" });
  const renderFeatures = () => {
    const api = apis.find((a) => a.id === apiSelect.value);
    const entries = Object.entries(api?.features ?? {});
    replace(features, h("legend", null, "Features"),
      entries.length === 0
        ? h("p", { class: "hint" }, "This API has no features: its keys choose their scopes when you create them.")
        : entries.map(([feature, scopes]) => h("label", { class: "check" },
          h("input", { type: "checkbox", name: "features", value: feature }),
          h("span", null, h("strong", null, feature), h("span", { class: "hint" }, ` grants ${scopes.length ? scopes.join(", ") : "no scopes"}`)))));
  };
  apiSelect.addEventListener("change", renderFeatures);
  renderFeatures();
  const submit = /** @type {HTMLButtonElement} */ (h("button", { class: "btn btn-primary", type: "submit" }, "Create application"));
  const form = /** @type {HTMLFormElement} */ (h("form", { class: "form" },
    field("Application name", name, "A name to identify your app."),
    field("API", apiSelect),
    field("Integration type", type),
    features,
    error.el,
    h("div", { class: "actions" }, h("button", { class: "btn btn-secondary", type: "button", onclick: () => d.close() }, "Cancel"), submit)));
  const d = dialog({ title: "Create application", body: form });
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    error.clear();
    const chosen = [...form.querySelectorAll("input[name=features]:checked")].map((el) => /** @type {HTMLInputElement} */ (el).value);
    await busy(submit, async () => {
      try {
        const app = await api("POST", ctx.accountPath("/applications"), {
          name: /** @type {HTMLInputElement} */ (name).value, api: apiSelect.value, integrationType: type.value, features: chosen,
        });
        d.close();
        toast(`Application ${app.name} created.`);
        done();
      } catch (e) {
        error.show(e);
        markField(form, e);
      }
    });
  });
}
