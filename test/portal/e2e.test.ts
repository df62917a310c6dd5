/**
 * The portal end to end in real headless Chromium (Debian's /usr/bin/chromium driven by
 * playwright-core; no browser download): a customer signs up, creates an application and a
 * key, copies the key from the page, calls the gateway with it, sees the calls in the request
 * logs, the charts and the live feed, rotates and revokes it, edits the IP whitelist and
 * changes the password; an operator opens the account. Every page is saved to .screenshots/
 * (git-ignored) for a reviewer to look at.
 *
 * keygate runs in-process on a real port (buildServer, the portal registered as `keygate
 * serve` does), on SQLite, in front of a real upstream.
 */
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { existsSync, mkdirSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { FastifyInstance } from "fastify";
import type { Browser, BrowserContext, Page } from "playwright-core";
import { buildServer } from "../../src/http/server.js";
import { createKeygate } from "../../src/keygate.js";
import type { Keygate } from "../../src/keygate.js";
import { sha256Hex } from "../../src/keys/hash.js";
import { createSqliteStore } from "../../src/store/sqlite/index.js";
import { startUpstream, urlOf } from "../http/gateway-support.js";
import type { Upstream } from "../http/gateway-support.js";
import { PASSWORD, ROOT_KEY } from "./support.js";

/** Debian's Chromium; KEYGATE_TEST_CHROMIUM names another build (e.g. /usr/bin/chromium-browser). */
const CHROMIUM = process.env.KEYGATE_TEST_CHROMIUM || "/usr/bin/chromium";
const SKIP = existsSync(CHROMIUM) ? false : `no Chromium at ${CHROMIUM}: install Debian's chromium package (apt-get install chromium) or set KEYGATE_TEST_CHROMIUM to run the portal's browser tests`;
if (SKIP) process.stderr.write(`portal e2e: SKIPPED — ${SKIP}\n`);

const SHOTS = new URL("../../.screenshots/", import.meta.url).pathname;
const EMAIL = "ada@lovelace.test";
const NEW_PASSWORD = "analytical engine 1843";

describe("the portal in headless Chromium", { skip: SKIP, timeout: 240_000 }, () => {
  let dir: string;
  let upstream: Upstream;
  let keygate: Keygate;
  let app: FastifyInstance;
  let url: string;
  let browser: Browser;
  let context: BrowserContext;
  let page: Page;
  let shot = 0;
  let firstKey = "";
  let rotatedKey = "";

  /** Saves the page as .screenshots/portal-NN-<name>.png. */
  const screenshot = async (name: string, target: Page = page): Promise<void> => {
    shot++;
    await target.screenshot({ path: join(SHOTS, `portal-${String(shot).padStart(2, "0")}-${name}.png`), fullPage: true });
  };
  const gateway = (path: string, key: string) => fetch(`${url}${path}`, { headers: { authorization: `Bearer ${key}` }, signal: AbortSignal.timeout(10_000) });
  const nav = (name: string) => page.getByRole("navigation", { name: "Main" }).getByRole("link", { name, exact: true }).click();

  before(async () => {
    mkdirSync(SHOTS, { recursive: true });
    dir = mkdtempSync(join(tmpdir(), "keygate-portal-e2e-"));
    upstream = await startUpstream("mail-upstream");
    keygate = await createKeygate({
      store: createSqliteStore({ filename: join(dir, "keygate.db") }),
      config: {
        cache: { changePollMs: 0 },
        usage: { flushIntervalMs: 100 },
        analytics: { flushIntervalMs: 100 },
        portal: { title: "MailCheck developers", operatorOnlyApis: ["legacy"] },
        apis: [{
          id: "mail", name: "Email Validation API",
          keyFormat: { prefix: "ck", environments: ["live", "test"], length: 40, alphabet: "hex" },
          scopes: [
            { name: "email.validate", description: "Validate one address" },
            { name: "email.bulk", description: "Validate lists" },
            { name: "account.read", description: "Read credits" },
          ],
          defaultScopes: ["email.validate"],
          features: { "Single validation": ["email.validate", "account.read"], "Bulk validation": ["email.bulk"] },
          rateLimit: { limit: 1000, windowSeconds: 3600 },
          upstream: upstream.url,
          routes: [
            { methods: ["GET"], path: "/validate", scopes: ["email.validate"] },
            { methods: ["POST"], path: "/bulk", scopes: ["email.bulk"] },
          ],
        }, {
          // Like the v1 airtime seed: no self-service; the provider's operators issue its tokens.
          id: "legacy", name: "Legacy v1",
          keyFormat: { prefix: "lg", environments: ["live"] },
          credentials: [{ type: "identity", identityHeader: "X-Legacy-Email", secretHeader: "X-Legacy-Token" }],
        }],
      },
    });
    app = await buildServer({ keygate, rootKeyHash: sha256Hex(ROOT_KEY) });
    await app.listen({ port: 0, host: "127.0.0.1" });
    url = urlOf(app.server.address());
    const { chromium } = await import("playwright-core");
    browser = await chromium.launch({ executablePath: CHROMIUM, headless: true, args: ["--no-sandbox", "--disable-dev-shm-usage"] });
    context = await browser.newContext({ viewport: { width: 1280, height: 860 }, locale: "en-GB", timezoneId: "UTC" });
    await context.grantPermissions(["clipboard-read", "clipboard-write"], { origin: url });
    page = await context.newPage();
    page.setDefaultTimeout(15_000);
    const problems: string[] = [];
    page.on("pageerror", (e) => problems.push(String(e)));
    page.on("console", (m) => { if (m.type() === "error" && !/Failed to load resource/.test(m.text())) problems.push(m.text()); });
    (page as unknown as { problems: string[] }).problems = problems;
  });

  after(async () => {
    await browser?.close();
    await app?.close();
    await keygate?.close();
    await upstream?.close();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  test("a visitor signs up and lands on an empty key list", async () => {
    await page.goto(`${url}/portal`);
    await page.getByRole("heading", { name: "Sign in to MailCheck developers" }).waitFor();
    await screenshot("sign-in");
    await page.getByRole("link", { name: "Create an account" }).click();
    await page.getByRole("heading", { name: "Create your account" }).waitFor();
    await page.getByLabel("Your name").fill("Ada Lovelace");
    await page.getByLabel("Company or project").fill("Analytical Engines Ltd");
    await page.getByLabel("Email").fill(EMAIL);
    await page.getByLabel("Password").fill(PASSWORD);
    await screenshot("sign-up");
    await page.getByRole("button", { name: "Create account" }).click();
    await page.getByRole("heading", { name: "API keys", level: 1 }).waitFor();
    await page.getByText("No API keys yet").waitFor();
    assert.equal(new URL(page.url()).pathname, "/portal/keys");
    await screenshot("keys-empty");
  });

  test("creates an application whose Client ID is shown", async () => {
    await nav("Applications");
    await page.getByText("No applications yet").waitFor();
    await page.getByRole("button", { name: "Create your first application" }).click();
    const dialog = page.getByRole("dialog", { name: "Create application" });
    await dialog.getByLabel("Application name").fill("Checkout");
    await dialog.getByLabel("Single validation").check();
    await screenshot("application-create");
    await dialog.getByRole("button", { name: "Create application" }).click();
    const card = page.getByTestId("application");
    await card.waitFor();
    assert.match(await card.getByTestId("client-id").textContent() ?? "", /^ID[0-9A-Za-z]{30}$/);
    assert.match(await card.textContent() ?? "", /email\.validate/);
    await screenshot("applications");
  });

  test("creates a key behind the password, shown once and copied from the page", async () => {
    await nav("API keys");
    await page.getByRole("button", { name: "Create your first API key" }).click();
    const dialog = page.getByRole("dialog");
    await dialog.getByLabel("Name", { exact: true }).fill("Production server");
    await dialog.getByLabel("Application").selectOption({ label: "Checkout" });
    await dialog.getByText("Set a rate limit for this key").click();
    await dialog.getByLabel("Requests").fill("5");
    await dialog.getByLabel("Per").selectOption("86400");
    await screenshot("key-create-details");
    await dialog.getByRole("button", { name: "Continue" }).click();

    // A wrong password is refused, and nothing is created.
    await dialog.getByLabel("Password").fill("not my password at all");
    await dialog.getByRole("button", { name: "Create key" }).click();
    await dialog.getByText("That is not your password.").waitFor();
    assert.equal((await keygate.keys.list({})).data.length, 0);
    await screenshot("key-create-password");
    await dialog.getByLabel("Password").fill(PASSWORD);
    await dialog.getByRole("button", { name: "Create key" }).click();

    await dialog.getByText("It won't be shown again").waitFor();
    const shown = await dialog.getByTestId("new-key").inputValue();
    assert.match(shown, /^ck_live_[0-9a-f]{40}$/);
    await dialog.getByRole("button", { name: "Copy" }).first().click();
    await dialog.getByRole("button", { name: "Copied ✓" }).waitFor();
    // The page's own clipboard, read in the page as a user's paste would.
    const copied = await page.evaluate(() => (globalThis as unknown as { navigator: { clipboard: { readText(): Promise<string> } } }).navigator.clipboard.readText());
    assert.equal(copied, shown, "the clipboard holds the key shown");
    firstKey = copied;
    await screenshot("key-shown-once");
    await dialog.getByRole("button", { name: "I have stored it safely" }).click();

    const row = page.getByTestId("key-row");
    await row.waitFor();
    const text = await row.textContent() ?? "";
    assert.match(text, /Production server/);
    assert.match(text, new RegExp(`${firstKey.slice(0, 12)}…`));
    assert.match(text, /Live/);
    assert.match(text, /email\.validate/);
    assert.match(text, /Never/); // last activity
    assert.ok(!(await page.content()).includes(firstKey), "the secret is gone from the page once the dialog closes");
    await screenshot("keys");
  });

  test("gateway calls with the copied key show in the logs, the charts and the live feed", async () => {
    assert.equal((await gateway("/bulk", firstKey).then((r) => r.status)), 404); // GET /bulk: no route
    const bulk = await fetch(`${url}/bulk`, { method: "POST", headers: { authorization: `Bearer ${firstKey}`, "content-type": "application/json" }, body: "[]" });
    assert.equal(bulk.status, 403, "the application's features do not grant email.bulk");
    for (let i = 0; i < 5; i++) assert.equal((await gateway(`/validate?email=user${i}@example.com`, firstKey)).status, 200);
    assert.equal((await gateway("/validate?email=sixth@example.com", firstKey)).status, 429, "the key's own limit: 5 per day");
    await keygate.flush();

    await nav("Request logs");
    await page.getByTestId("log-row").first().waitFor();
    assert.equal(await page.getByTestId("log-row").count(), 7);
    const logs = await page.locator("table").textContent() ?? "";
    assert.match(logs, /GET \/validate/);
    assert.match(logs, /RATE_LIMITED/);
    assert.match(logs, /INSUFFICIENT_SCOPE/);
    assert.ok(!logs.includes("email=user0"), "query strings are not logged");
    await screenshot("logs");
    await page.getByLabel("Outcome").selectOption("RATE_LIMITED");
    await page.getByRole("button", { name: "Apply filters" }).click();
    await page.waitForURL(/code=RATE_LIMITED/);
    await page.getByTestId("log-row").first().waitFor();
    assert.equal(await page.getByTestId("log-row").count(), 1);
    await screenshot("logs-filtered");

    await nav("Usage");
    await page.locator("[data-chart='Requests'] svg rect").first().waitFor();
    const tiles = await page.locator(".tiles").textContent() ?? "";
    assert.match(tiles, /Requests\s*7/);
    assert.match(tiles, /71\.4 %/); // 5 of 7
    assert.ok(await page.locator("[data-chart='Response time'] svg path").count() >= 1);
    await page.getByTestId("rl-used").waitFor();
    assert.match(await page.getByTestId("rl-used").textContent() ?? "", /5 of 5 used/);
    await page.locator(".live-dot.on").waitFor();
    await gateway("/validate?email=live@example.com", firstKey);
    await page.locator(".live-item").first().waitFor();
    assert.match(await page.locator(".live-item").first().textContent() ?? "", /429 RATE_LIMITED/);
    await screenshot("usage");
    await page.getByLabel("Breakdown").selectOption("application");
    await page.locator("[data-chart='Success rate']").waitFor();
    assert.match(await page.locator("table[aria-label='Usage by application']").textContent() ?? "", /Checkout/);
    await screenshot("usage-by-application");
  });

  test("rotates the key with a grace period and revokes both", async () => {
    await nav("API keys");
    await page.getByRole("button", { name: "Rotate Production server" }).click();
    const dialog = page.getByRole("dialog", { name: "Rotate API key" });
    await dialog.getByLabel("Old key keeps working for").selectOption("3600");
    await dialog.getByLabel("Your password").fill(PASSWORD);
    await dialog.getByRole("button", { name: "Rotate key" }).click();
    await page.getByText("It won't be shown again").waitFor();
    rotatedKey = await page.getByTestId("new-key").inputValue();
    assert.match(rotatedKey, /^ck_live_[0-9a-f]{40}$/);
    assert.notEqual(rotatedKey, firstKey);
    await page.getByText(/keeps working until/).waitFor();
    await screenshot("key-rotated");
    await page.getByRole("button", { name: "I have stored it safely" }).click();

    assert.equal((await gateway("/validate", rotatedKey)).status, 200, "the new key works");
    assert.equal((await gateway("/validate", firstKey)).status, 429, "the old one is still accepted in its grace period (and still at its limit)");
    await page.getByText("Rotating").first().waitFor();
    await screenshot("keys-after-rotation");

    await page.getByRole("button", { name: "Revoke Production server" }).last().click();
    const confirm = page.getByRole("dialog", { name: "Revoke this API key?" });
    await confirm.getByText("This cannot be undone.").waitFor();
    await screenshot("key-revoke-confirm");
    await confirm.getByRole("button", { name: "Cancel" }).click();
    assert.equal((await gateway("/validate", rotatedKey)).status, 200, "cancelling revokes nothing");
    for (const key of [rotatedKey, firstKey]) {
      const id = (await keygate.keys.list({})).data.find((k) => k.start !== null && key.startsWith(k.start) && k.status !== "revoked")!.id;
      await page.locator(`tr[data-key-id='${id}']`).getByRole("button", { name: /^Revoke/ }).click();
      await page.getByRole("dialog", { name: "Revoke this API key?" }).getByRole("button", { name: "Revoke key" }).click();
      await page.getByText(/revoked\.$/).first().waitFor();
      await page.locator(`tr[data-key-id='${id}']`).waitFor({ state: "detached" });
    }
    assert.equal((await gateway("/validate", rotatedKey)).status, 401);
    assert.equal((await gateway("/validate", firstKey)).status, 401);
    await page.getByText("No keys match these filters.").waitFor();
    await page.getByLabel(/Show revoked, rotated and expired/).check();
    await page.getByText("Revoked").first().waitFor();
    assert.equal(await page.getByTestId("key-row").count(), 2);
    await screenshot("keys-revoked");
  });

  test("edits the IP whitelist per environment and changes the password", async () => {
    await nav("IP whitelist");
    await page.getByLabel("Live IP whitelist").fill("203.0.113.7\n198.51.100.0/24");
    await page.getByRole("button", { name: "Update IP whitelist" }).click();
    await page.getByText("IP whitelist updated").waitFor();
    const account = (await keygate.accounts.list()).data.find((a) => a.email === EMAIL)!;
    assert.deepEqual(account.ipAllowlists, { live: ["203.0.113.7/32", "198.51.100.0/24"] });
    await page.getByLabel("Test IP whitelist").fill("not-an-ip");
    await page.getByRole("button", { name: "Update IP whitelist" }).click();
    await page.locator(".form-error").waitFor();
    await screenshot("ip-whitelist");

    await nav("Settings");
    await page.getByLabel("Current password").fill(PASSWORD);
    await page.getByLabel("New password", { exact: true }).fill(NEW_PASSWORD);
    await page.getByLabel("New password, again").fill(NEW_PASSWORD);
    await page.getByRole("button", { name: "Change password" }).click();
    await page.getByText("Password changed").waitFor();
    await screenshot("settings");
    await page.getByRole("button", { name: "Sign out" }).click();
    await page.getByRole("heading", { name: /Sign in to/ }).waitFor();
    await page.getByLabel("Email").fill(EMAIL);
    await page.getByLabel("Password").fill(PASSWORD);
    await page.getByRole("button", { name: "Sign in" }).click();
    await page.getByText("The email or the password is not right.").waitFor();
    await page.getByLabel("Password").fill(NEW_PASSWORD);
    await page.getByRole("button", { name: "Sign in" }).click();
    await page.getByRole("heading", { name: "API keys", level: 1 }).waitFor();
  });

  test("the pages fit a phone's screen", async () => {
    const phone = await context.newPage();
    await phone.setViewportSize({ width: 390, height: 844 });
    await phone.goto(`${url}/portal/keys?all=1`);
    await phone.getByTestId("key-row").first().waitFor();
    const overflow = await phone.evaluate(() => {
      const root = (globalThis as unknown as { document: { documentElement: { scrollWidth: number; clientWidth: number } } }).document.documentElement;
      return root.scrollWidth - root.clientWidth;
    });
    assert.ok(overflow <= 1, `no sideways scrolling (overflow ${overflow}px)`);
    await screenshot("phone-keys", phone);
    await phone.getByRole("button", { name: "Menu" }).click();
    await phone.getByRole("navigation", { name: "Main" }).getByRole("link", { name: "Usage" }).click();
    await phone.locator("[data-chart='Requests']").waitFor();
    await screenshot("phone-usage", phone);
    await phone.close();
  });

  test("an operator sees every account and provisions a key for one", async () => {
    const created = await app.inject({ method: "POST", url: "/v1/portal/users", headers: { authorization: `Bearer ${ROOT_KEY}` }, payload: { email: "ops@mailcheck.test", password: PASSWORD, name: "Grace Ops", operator: true } });
    assert.equal(created.statusCode, 201, created.body);
    const ops = await browser.newContext({ viewport: { width: 1280, height: 860 }, locale: "en-GB", timezoneId: "UTC" });
    const opsPage = await ops.newPage();
    await opsPage.goto(`${url}/portal/sign-in`);
    await opsPage.getByLabel("Email").fill("ops@mailcheck.test");
    await opsPage.getByLabel("Password").fill(PASSWORD);
    await opsPage.getByRole("button", { name: "Sign in" }).click();
    await opsPage.getByRole("heading", { name: "Accounts", level: 1 }).waitFor();
    assert.match(await opsPage.locator("table").textContent() ?? "", /Analytical Engines Ltd/);
    await screenshot("operator-accounts", opsPage);
    await opsPage.getByRole("link", { name: "Open" }).first().click();
    await opsPage.getByText("as an operator").waitFor();
    await opsPage.getByRole("button", { name: "Create API key" }).click();
    const dialog = opsPage.getByRole("dialog");
    await dialog.getByLabel("API", { exact: true }).selectOption("legacy");
    await dialog.getByLabel("Name", { exact: true }).fill("V1 integration");
    await dialog.getByRole("button", { name: "Continue" }).click();
    await dialog.getByLabel("Password").fill(PASSWORD);
    await dialog.getByRole("button", { name: "Create key" }).click();
    const token = await dialog.getByTestId("new-key").inputValue();
    assert.match(token, /^lg_live_/);
    assert.match(await dialog.textContent() ?? "", /X-Legacy-Email: <your account email>/);
    await screenshot("operator-provisioned-key", opsPage);
    await dialog.getByRole("button", { name: "I have stored it safely" }).click();
    const verdict = await keygate.verifyKey({ api: "legacy", key: token, identity: EMAIL, ip: "203.0.113.7" }); // the live whitelist set above
    assert.equal(verdict.code, "VALID", "the token works with the account's email");
    await opsPage.getByLabel(/Show revoked, rotated and expired/).check();
    await opsPage.getByTestId("key-row").nth(2).waitFor();
    await screenshot("operator-account-keys", opsPage);
    await ops.close();

    // The customer sees the provisioned token, but cannot rotate or revoke it.
    await page.reload();
    const row = page.getByTestId("key-row").filter({ hasText: "V1 integration" });
    await row.getByText("Managed by the provider").waitFor();
    assert.equal(await row.getByRole("button").count(), 0);
    await screenshot("keys-with-provisioned-token");
  });

  test("the page logged no script errors", () => {
    assert.deepEqual((page as unknown as { problems: string[] }).problems, []);
  });
});
