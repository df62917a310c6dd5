// @ts-check
/** The IP whitelist per environment, the user's settings (password), and the operators' account list. */
import { api, busy, capitalize, dialog, emptyState, field, fmtDate, formError, h, markField, replace, toast } from "./ui.js";

/** @param {import("./app.js").PageContext} ctx */
export async function ipAllowlistPage(ctx) {
  const { main, state } = ctx;
  const account = await api("GET", ctx.accountPath(""));
  const environments = [...new Set([...state.apis.flatMap((a) => a.environments), ...Object.keys(account.ipAllowlists)])];
  const error = formError();
  /** @type {Map<string, HTMLTextAreaElement>} */
  const areas = new Map();
  const submit = /** @type {HTMLButtonElement} */ (h("button", { class: "btn btn-primary", type: "submit" }, "Update IP whitelist"));
  const form = /** @type {HTMLFormElement} */ (h("form", { class: "form" },
    h("div", { class: "env-grid" }, environments.map((env) => {
      const list = account.ipAllowlists[env] ?? [];
      const area = /** @type {HTMLTextAreaElement} */ (h("textarea", { name: env, rows: 6, spellcheck: "false", placeholder: "Empty: every IP address is allowed", "data-env": env }));
      area.value = list.join("\n");
      areas.set(env, area);
      return h("div", { class: "card env-card" },
        field(`${capitalize(env)} IP whitelist`, area, list.length ? `${list.length} ${list.length === 1 ? "entry" : "entries"}: only these addresses may use your ${env} keys.` : `Empty: your ${env} keys work from any IP address.`));
    })),
    error.el,
    h("div", { class: "actions actions-start" }, submit)));
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    error.clear();
    /** @type {Record<string, string[]>} */
    const ipAllowlists = {};
    for (const [env, area] of areas) ipAllowlists[env] = area.value.split(/[\s,]+/).map((s) => s.trim()).filter(Boolean);
    await busy(submit, async () => {
      try {
        await api("PUT", ctx.accountPath("/ip-allowlists"), { ipAllowlists });
        toast("IP whitelist updated. It applies to the next request.");
        await ipAllowlistPage(ctx);
      } catch (e) {
        error.show(e);
        markField(form, e);
      }
    });
  });
  replace(main,
    h("div", { class: "page-head" }, h("div", null,
      h("h1", null, "IP whitelist"),
      h("p", { class: "muted" }, "Each environment has its own, independent whitelist. When it lists addresses, only those may use the environment's keys; requests from anywhere else are refused with a 403. Leave it empty to allow every address."))),
    h("div", { class: "callout" }, "One IPv4 or IPv6 address or CIDR range per line, e.g. ", h("code", null, "203.0.113.45"), " or ", h("code", null, "198.51.100.0/24"), ". A key's own allowlist, set when it is created, applies as well."),
    form);
}

/** @param {import("./app.js").PageContext} ctx */
export async function settingsPage(ctx) {
  const { main, state } = ctx;
  const user = state.session.user;
  const error = formError();
  const current = /** @type {HTMLInputElement} */ (h("input", { name: "currentPassword", type: "password", autocomplete: "current-password", required: true }));
  const next = /** @type {HTMLInputElement} */ (h("input", { name: "newPassword", type: "password", autocomplete: "new-password", required: true, minlength: 10 }));
  const again = /** @type {HTMLInputElement} */ (h("input", { name: "again", type: "password", autocomplete: "new-password", required: true, minlength: 10 }));
  const submit = /** @type {HTMLButtonElement} */ (h("button", { class: "btn btn-primary", type: "submit" }, "Change password"));
  const form = /** @type {HTMLFormElement} */ (h("form", { class: "form form-narrow" },
    field("Current password", current), field("New password", next, "At least 10 characters."), field("New password, again", again),
    error.el, h("div", { class: "actions actions-start" }, submit)));
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    error.clear();
    if (next.value !== again.value) { error.show("The two new passwords differ."); again.focus(); return; }
    await busy(submit, async () => {
      try {
        const result = await api("POST", "/password", { currentPassword: current.value, newPassword: next.value });
        form.reset();
        toast(result.otherSessionsEnded ? `Password changed; ${result.otherSessionsEnded} other session(s) signed out.` : "Password changed.");
      } catch (e) {
        error.show(e);
        markField(form, e);
      }
    });
  });
  replace(main,
    h("div", { class: "page-head" }, h("div", null, h("h1", null, "Settings"))),
    h("section", { class: "card section", "aria-labelledby": "profile-title" },
      h("h2", { id: "profile-title" }, "Profile"),
      h("dl", { class: "facts" },
        h("div", null, h("dt", null, "Name"), h("dd", null, user.name)),
        h("div", null, h("dt", null, "Email"), h("dd", null, user.email)),
        state.session.account ? h("div", null, h("dt", null, "Account"), h("dd", null, `${state.session.account.name} (${state.session.account.id})`)) : null,
        h("div", null, h("dt", null, "Role"), h("dd", null, user.operator ? "Operator: sees every account" : "Customer")),
        h("div", null, h("dt", null, "Session ends"), h("dd", null, new Date(state.session.expiresAt).toLocaleString())))),
    h("section", { class: "card section", "aria-labelledby": "password-title" },
      h("h2", { id: "password-title" }, "Change password"),
      h("p", { class: "muted" }, "Changing your password signs out your other sessions."),
      form));
}

/** Operators: every account, to act on one or create one. @param {import("./app.js").PageContext} ctx */
export async function accountsPage(ctx) {
  const { main, state } = ctx;
  /** @type {any[]} */
  const accounts = [];
  for (let cursor = undefined, i = 0; i < 20; i++) {
    const page = await api("GET", `/accounts${cursor ? `?cursor=${encodeURIComponent(cursor)}` : ""}`);
    accounts.push(...page.data);
    if (!page.nextCursor) break;
    cursor = page.nextCursor;
  }
  const search = /** @type {HTMLInputElement} */ (h("input", { type: "search", placeholder: "Filter by name, email or id", "aria-label": "Filter accounts" }));
  const tbody = h("tbody");
  const draw = () => {
    const q = search.value.trim().toLowerCase();
    replace(tbody, accounts.filter((a) => !q || `${a.name} ${a.email} ${a.id}`.toLowerCase().includes(q)).reverse().map((a) => h("tr", null,
      h("td", { "data-label": "Name" }, h("strong", null, a.name)),
      h("td", { "data-label": "Email" }, a.email),
      h("td", { "data-label": "Id", class: "mono small" }, a.id),
      h("td", { "data-label": "Created" }, fmtDate(a.createdAt)),
      h("td", { class: "row-actions" }, h("a", { class: "btn btn-secondary btn-sm", href: `/portal/keys?account=${encodeURIComponent(a.id)}`, "data-link": "" }, "Open")))));
  };
  search.addEventListener("input", draw);
  draw();
  const operatorOnly = state.apis.filter((a) => !a.selfService);
  replace(main,
    h("div", { class: "page-head" },
      h("div", null, h("h1", null, "Accounts"), h("p", { class: "muted" }, "As an operator you see every customer account. Open one to manage its applications and keys, or to provision credentials.")),
      h("button", { class: "btn btn-primary", type: "button", onclick: () => createAccount(ctx) }, "Create account")),
    operatorOnly.length ? h("div", { class: "callout" }, "Only operators issue, rotate and revoke keys of ", operatorOnly.map((a, i) => [i ? ", " : "", h("strong", null, a.name)]), ". Open the customer's account, then create the key there; hand it over securely.") : null,
    accounts.length === 0
      ? emptyState("No accounts yet", "Accounts appear here when customers sign up or when you create one.", null)
      : [h("div", { class: "toolbar" }, search), h("div", { class: "table-wrap" }, h("table", { class: "table table-cards", "aria-label": "Accounts" },
        h("thead", null, h("tr", null, ["Name", "Email", "Id", "Created", h("span", { class: "sr-only" }, "Actions")].map((c) => h("th", { scope: "col" }, c)))), tbody))]);
}

/** @param {import("./app.js").PageContext} ctx */
function createAccount(ctx) {
  const error = formError();
  const name = /** @type {HTMLInputElement} */ (h("input", { name: "name", required: true, maxlength: 200 }));
  const email = /** @type {HTMLInputElement} */ (h("input", { name: "email", type: "email", required: true, maxlength: 320 }));
  const submit = /** @type {HTMLButtonElement} */ (h("button", { class: "btn btn-primary", type: "submit" }, "Create account"));
  const form = /** @type {HTMLFormElement} */ (h("form", { class: "form" },
    field("Name", name), field("Email", email, "For APIs that identify callers by email (such as email + token headers), this is the email they send."),
    error.el, h("div", { class: "actions" }, h("button", { class: "btn btn-secondary", type: "button", onclick: () => d.close() }, "Cancel"), submit)));
  const d = dialog({ title: "Create account", body: form });
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    error.clear();
    await busy(submit, async () => {
      try {
        const account = await api("POST", "/accounts", { name: name.value, email: email.value });
        d.close();
        toast(`Account ${account.name} created.`);
        ctx.go(`/portal/keys?account=${encodeURIComponent(account.id)}`);
      } catch (e) {
        error.show(e);
        markField(form, e);
      }
    });
  });
}
