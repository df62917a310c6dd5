// @ts-check
/**
 * The portal page: loads the session, then routes /portal/<page> to a page module. Signed out,
 * only sign-in and sign-up render. Operators pick the account they act on (?account=acc_…).
 */
import { api, ApiError, h, leavePage, query, replace, setCsrfToken, toast, whenSignedOut, errorState, loading } from "./ui.js";
import { signInPage, signUpPage } from "./auth.js";
import { applicationsPage } from "./applications.js";
import { keysPage } from "./keys.js";
import { usagePage } from "./usage.js";
import { logsPage } from "./logs.js";
import { accountsPage, ipAllowlistPage, settingsPage } from "./settings.js";

/**
 * @typedef {{
 *   session: any,
 *   apis: any[],
 *   codes: Array<{ code: string, status: number, message: string }>,
 *   account: any | null,
 *   operator: boolean,
 *   title: string,
 * }} PortalState
 * @typedef {{ state: PortalState, main: HTMLElement, params: URLSearchParams, go: (path: string, params?: Record<string, string | undefined>) => void, accountPath: (path: string) => string, refreshSession: () => Promise<void> }} PageContext
 */

const root = /** @type {HTMLElement} */ (document.getElementById("app"));
/** @type {PortalState} */
const state = { session: null, apis: [], codes: [], account: null, operator: false, title: root.dataset.title || "Developer portal" };

/** @type {Record<string, { title: string, render: (ctx: PageContext) => Promise<void> | void, operator?: boolean, account?: boolean }>} */
const PAGES = {
  applications: { title: "Applications", render: applicationsPage, account: true },
  keys: { title: "API keys", render: keysPage, account: true },
  "ip-allowlist": { title: "IP whitelist", render: ipAllowlistPage, account: true },
  usage: { title: "Usage", render: usagePage, account: true },
  logs: { title: "Request logs", render: logsPage, account: true },
  settings: { title: "Settings", render: settingsPage },
  accounts: { title: "Accounts", render: accountsPage, operator: true },
};
const NAV = ["applications", "keys", "ip-allowlist", "usage", "logs"];

const pageName = () => location.pathname.replace(/^\/portal\/?/, "").split("/")[0] || "";
const params = () => new URLSearchParams(location.search);

/** @param {string} path e.g. "keys" @param {Record<string, string | undefined>} [extra] */
function href(path, extra = {}) {
  const p = new URLSearchParams();
  const account = params().get("account");
  if (state.operator && account) p.set("account", account);
  for (const [k, v] of Object.entries(extra)) if (v !== undefined && v !== "") p.set(k, v);
  const qs = p.toString();
  return `/portal/${path}${qs ? `?${qs}` : ""}`;
}

/** @param {string} path @param {Record<string, string | undefined>} [extra] */
function go(path, extra) {
  history.pushState(null, "", path.startsWith("/") ? path : href(path, extra));
  void render();
}

async function loadSession() {
  state.session = await api("GET", "/session");
  setCsrfToken(state.session.csrfToken);
  state.title = state.session.title;
  state.operator = Boolean(state.session.user?.operator);
  if (state.session.signedIn && state.apis.length === 0) {
    const apis = await api("GET", "/apis");
    state.apis = apis.data;
    state.codes = apis.codes;
  }
}

whenSignedOut((error) => {
  state.session = { ...state.session, signedIn: false };
  const next = location.pathname + location.search;
  history.replaceState(null, "", `/portal/sign-in${query({ next, reason: error.code === "SESSION_EXPIRED" ? "expired" : undefined })}`);
  void boot();
});

/** The account the page acts on: the customer's own, or the operator's pick. */
async function resolveAccount() {
  const wanted = state.operator ? params().get("account") : state.session.user?.accountId;
  if (!wanted) { state.account = null; return; }
  if (state.account?.id === wanted) return;
  state.account = await api("GET", `/accounts/${encodeURIComponent(wanted)}`);
}

function layout() {
  const page = pageName();
  const user = state.session.user;
  const nav = h("nav", { class: "sidebar", id: "sidebar", "aria-label": "Main" },
    h("ul", null,
      state.operator ? h("li", null, link("accounts", "Accounts", page)) : null,
      state.account || !state.operator ? NAV.map((p) => h("li", null, link(p, PAGES[p].title, page))) : null,
      h("li", { class: "nav-sep" }, link("settings", "Settings", page))));
  const menuButton = h("button", {
    class: "icon-btn menu-btn", type: "button", "aria-controls": "sidebar", "aria-expanded": "false", "aria-label": "Menu",
    onclick() {
      const open = document.body.classList.toggle("nav-open");
      menuButton.setAttribute("aria-expanded", String(open));
    },
  }, "☰");
  const signOut = h("button", {
    class: "btn btn-ghost", type: "button",
    async onclick() {
      try { await api("POST", "/sign-out"); } catch { /* signed out either way */ }
      state.account = null;
      history.pushState(null, "", "/portal/sign-in");
      await boot();
      toast("You are signed out.");
    },
  }, "Sign out");
  const header = h("header", { class: "topbar" },
    menuButton,
    h("a", { class: "brand", href: href(state.operator && !state.account ? "accounts" : "keys"), "data-link": "" },
      h("img", { src: "/portal/assets/favicon.svg", alt: "", width: 26, height: 26 }), h("span", null, state.title)),
    h("div", { class: "topbar-right" },
      state.account ? h("span", { class: "account-chip", title: state.account.id }, state.account.name) : null,
      h("span", { class: "user-chip" }, user.name, state.operator ? h("span", { class: "badge badge-operator" }, "Operator") : null),
      signOut));
  const main = h("main", { id: "main", class: "main", tabindex: "-1" });
  const banner = state.operator && state.account
    ? h("div", { class: "operator-banner", role: "note" }, "You are acting on account ", h("strong", null, state.account.name), ` (${state.account.id}) as an operator. `, h("a", { href: "/portal/accounts", "data-link": "" }, "Switch account"))
    : null;
  replace(root, header, h("div", { class: "shell" }, nav, h("div", { class: "content" }, banner, main)), h("div", { id: "toasts", class: "toasts", "aria-live": "polite" }));
  return main;
}

/** @param {string} p @param {string} text @param {string} current */
const link = (p, text, current) => h("a", { href: href(p), "data-link": "", "aria-current": p === current ? "page" : undefined }, text);

async function render() {
  leavePage();
  document.body.classList.remove("nav-open");
  const page = pageName();
  if (!state.session?.signedIn) {
    const authPage = page === "sign-up" && state.session?.signUp ? "sign-up" : "sign-in";
    if (page !== authPage) history.replaceState(null, "", `/portal/${authPage}${location.search}`);
    document.title = `${authPage === "sign-up" ? "Create your account" : "Sign in"} · ${state.title}`;
    const ctx = { state, onSignedIn };
    replace(root, h("div", { id: "toasts", class: "toasts", "aria-live": "polite" }));
    root.prepend(authPage === "sign-up" ? signUpPage(ctx) : signInPage(ctx));
    return;
  }
  let name = page;
  if (!PAGES[name] || (PAGES[name].operator && !state.operator)) name = state.operator && !params().get("account") ? "accounts" : "keys";
  if (PAGES[name].account && state.operator && !params().get("account")) name = "accounts";
  if (name !== page) history.replaceState(null, "", href(name));
  try {
    await resolveAccount();
  } catch (e) {
    if (e instanceof ApiError && e.status === 404 && state.operator) { history.replaceState(null, "", "/portal/accounts"); name = "accounts"; state.account = null; }
    else { replace(root, errorState(e, () => void render())); return; }
  }
  const def = PAGES[name];
  document.title = `${def.title} · ${state.title}`;
  const main = layout();
  main.appendChild(loading());
  /** @type {PageContext} */
  const ctx = {
    state, main, params: params(), go,
    accountPath: (path) => `/accounts/${encodeURIComponent(state.account?.id ?? "")}${path}`,
    refreshSession: loadSession,
  };
  try {
    await def.render(ctx);
  } catch (e) {
    replace(main, errorState(e, () => void render()));
  }
  // Keyboard and screen-reader users land on the new page's heading.
  const heading = /** @type {HTMLElement | null} */ (main.querySelector("h1"));
  if (heading && document.activeElement === document.body) { heading.tabIndex = -1; heading.focus({ preventScroll: true }); }
}

async function onSignedIn() {
  state.apis = [];
  state.account = null;
  await loadSession();
  const next = params().get("next");
  history.replaceState(null, "", next && next.startsWith("/portal/") && !next.startsWith("/portal/sign") ? next : "/portal/keys");
  await render();
}

async function boot() {
  try {
    await loadSession();
  } catch (e) {
    replace(root, errorState(e, () => void boot()));
    return;
  }
  await render();
}

document.addEventListener("click", (event) => {
  const target = /** @type {Element | null} */ (event.target instanceof Element ? event.target.closest("a[data-link]") : null);
  if (!target || !(target instanceof HTMLAnchorElement)) return;
  if (event.defaultPrevented || event.button !== 0 || event.metaKey || event.ctrlKey || event.shiftKey || event.altKey) return;
  event.preventDefault();
  go(target.pathname + target.search);
});
window.addEventListener("popstate", () => void render());

void boot();
