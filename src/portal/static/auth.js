// @ts-check
/** Sign-in and sign-up: the only pages a signed-out browser sees. */
import { api, busy, field, formError, h, markField } from "./ui.js";

/** @typedef {{ state: { title: string, session: any }, onSignedIn: () => Promise<void> }} AuthContext */

/** @param {string} title @param {string} subtitle @param {HTMLElement} form @param {HTMLElement | null} footer */
const card = (title, subtitle, form, footer) =>
  h("main", { id: "main", class: "auth" },
    h("div", { class: "auth-card card" },
      h("div", { class: "auth-brand" }, h("img", { src: "/portal/assets/favicon.svg", alt: "", width: 36, height: 36 })),
      h("h1", null, title),
      h("p", { class: "muted" }, subtitle),
      form,
      footer));

/** @param {AuthContext} ctx */
export function signInPage(ctx) {
  const params = new URLSearchParams(location.search);
  const error = formError();
  const email = h("input", { name: "email", type: "email", autocomplete: "username", required: true, maxlength: 320 });
  const password = h("input", { name: "password", type: "password", autocomplete: "current-password", required: true, maxlength: 1024 });
  const submit = /** @type {HTMLButtonElement} */ (h("button", { class: "btn btn-primary btn-block", type: "submit" }, "Sign in"));
  const form = /** @type {HTMLFormElement} */ (h("form", { class: "form", novalidate: false },
    params.get("reason") === "expired" || ctx.state.session?.expired ? h("div", { class: "notice", role: "status" }, "Your session has ended. Sign in again to continue.") : null,
    field("Email", email),
    field("Password", password),
    error.el,
    submit));
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    error.clear();
    await busy(submit, async () => {
      try {
        await api("POST", "/sign-in", { email: /** @type {HTMLInputElement} */ (email).value, password: /** @type {HTMLInputElement} */ (password).value });
        await ctx.onSignedIn();
      } catch (e) {
        error.show(e);
        /** @type {HTMLInputElement} */ (password).value = "";
        markField(form, e);
        /** @type {HTMLInputElement} */ (password).focus();
      }
    });
  });
  setTimeout(() => /** @type {HTMLInputElement} */ (email).focus(), 0);
  return card(`Sign in to ${ctx.state.title}`, "Manage your applications, API keys and usage.", form,
    ctx.state.session?.signUp ? h("p", { class: "auth-alt" }, "New here? ", h("a", { href: "/portal/sign-up", "data-link": "" }, "Create an account")) : null);
}

/** @param {AuthContext} ctx */
export function signUpPage(ctx) {
  const error = formError();
  const name = h("input", { name: "name", autocomplete: "name", required: true, maxlength: 200 });
  const company = h("input", { name: "company", autocomplete: "organization", required: true, maxlength: 200 });
  const email = h("input", { name: "email", type: "email", autocomplete: "email", required: true, maxlength: 320 });
  const password = h("input", { name: "password", type: "password", autocomplete: "new-password", required: true, minlength: 10, maxlength: 200 });
  const submit = /** @type {HTMLButtonElement} */ (h("button", { class: "btn btn-primary btn-block", type: "submit" }, "Create account"));
  const form = /** @type {HTMLFormElement} */ (h("form", { class: "form" },
    field("Your name", name),
    field("Company or project", company, "The name of your account; your API keys belong to it."),
    field("Email", email),
    field("Password", password, "At least 10 characters."),
    error.el,
    submit));
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    error.clear();
    const value = (/** @type {HTMLElement} */ el) => /** @type {HTMLInputElement} */ (el).value;
    await busy(submit, async () => {
      try {
        await api("POST", "/sign-up", { name: value(name), company: value(company), email: value(email), password: value(password) });
        await ctx.onSignedIn();
      } catch (e) {
        error.show(e);
        markField(form, e);
      }
    });
  });
  setTimeout(() => /** @type {HTMLInputElement} */ (name).focus(), 0);
  return card("Create your account", "Get API keys in a minute.", form,
    h("p", { class: "auth-alt" }, "Have an account? ", h("a", { href: "/portal/sign-in", "data-link": "" }, "Sign in")));
}
