/**
 * The portal's JSON API (/portal/api) and the root key's /v1/portal/users over HTTP (fastify
 * inject; the live stream over a real port): sign-up, sign-in, sign-out, password change,
 * applications, keys (shown once, behind the password), rotation, revocation, IP allowlists,
 * usage, request logs and the live feed — full responses and the errors a user can meet.
 */
import { request as httpRequest } from "node:http";
import type { AddressInfo } from "node:net";
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { createManualClock } from "../../src/lib/clock.js";
import { createMemoryStore } from "../../src/store/memory/index.js";
import { sha256 } from "../../src/portal/sessions.js";
import { createUser, PASSWORD, PortalClient, ROOT_KEY, startPortal } from "./support.js";
import type { PortalServer, Res } from "./support.js";

const T0 = Date.parse("2026-06-01T09:00:00Z");
const clock = createManualClock(T0);

const CONFIG = {
  apis: [
    {
      id: "pay", name: "Payments API", keyFormat: { prefix: "pk" },
      scopes: [{ name: "payments.read", description: "Read payments" }, "payments.write", "payouts.write"],
      defaultScopes: ["payments.read"],
      features: { "Payment API": ["payments.read", "payments.write"], "Payout API": ["payouts.write"] },
      rateLimit: { limit: 100, windowSeconds: 60 },
      tokens: { endpoints: [{ style: "oauth2", path: "/oauth/token" }] },
    },
    {
      id: "v1", name: "Airtime V1", keyFormat: { prefix: "at", environments: ["live"] },
      credentials: [{ type: "identity", identityHeader: "X-Email", secretHeader: "X-Token" }],
    },
  ],
};

/** A 4xx/5xx problem document with this code. */
function assertProblem(res: Res, status: number, code: string, detail?: RegExp): void {
  assert.equal(res.status, status, `expected ${status} ${code}, got ${res.status}: ${res.raw}`);
  assert.equal(res.body.code, code, res.raw);
  if (detail) assert.match(res.body.detail, detail);
}

const cookieLine = (res: Res, name: string): string => {
  const all = res.headers["set-cookie"];
  const line = (Array.isArray(all) ? all : [all ?? ""]).find((l) => l.startsWith(`${name}=`));
  assert.ok(line, `a Set-Cookie for ${name}: ${JSON.stringify(all)}`);
  return line;
};

let server: PortalServer;
before(async () => {
  // Many sign-ins from one address here; the per-IP limit has tests of its own (security.test.ts).
  server = await startPortal({ config: CONFIG, store: createMemoryStore(), clock, portal: { operatorOnlyApis: ["v1"], ipRateLimit: { limit: 10_000, windowSeconds: 60 } } });
});
after(async () => { await server.close(); });

describe("signing up, in and out", () => {
  test("a signed-out browser gets a CSRF token, in the JSON and in a strict HttpOnly cookie", async () => {
    const browser = new PortalClient(server.app);
    const res = await browser.session();
    assert.equal(res.status, 200);
    assert.deepEqual(Object.keys(res.body).sort(), ["csrfToken", "signUp", "signedIn", "title"]);
    assert.equal(res.body.signedIn, false);
    assert.equal(res.body.signUp, true);
    assert.match(res.body.csrfToken, /^[A-Za-z0-9_-]{43}$/);
    const line = cookieLine(res, "kg_portal_csrf");
    assert.equal(line, `kg_portal_csrf=${res.body.csrfToken}; Path=/portal; Max-Age=86400; HttpOnly; SameSite=Strict`);
    assert.equal(res.headers["cache-control"], "no-store");
    const again = await browser.session();
    assert.equal(again.body.csrfToken, res.body.csrfToken, "the same token while the cookie lives");
  });

  test("sign-up creates an account and its first user, and signs in with an HttpOnly SameSite cookie", async () => {
    const browser = new PortalClient(server.app);
    const before = (await server.keygate.accounts.list()).data.length;
    const res = await browser.signUp("founder@signup.test", "Signup Co");
    assert.equal(res.status, 201, res.raw);
    assert.equal(res.body.signedIn, true);
    assert.deepEqual(Object.keys(res.body.user).sort(), ["accountId", "createdAt", "email", "id", "lastSignInAt", "name", "operator"]);
    assert.match(res.body.user.id, /^usr_[0-9A-Za-z]{22}$/);
    assert.equal(res.body.user.operator, false);
    assert.equal(res.body.account.name, "Signup Co");
    assert.equal(res.body.account.email, "founder@signup.test");
    assert.equal(res.body.user.accountId, res.body.account.id);
    assert.equal((await server.keygate.accounts.list()).data.length, before + 1);
    assert.ok(!res.raw.includes(PASSWORD), "the password never comes back");

    const line = cookieLine(res, "kg_portal");
    const id = /^kg_portal=([A-Za-z0-9_-]{43});/.exec(line)![1]!;
    assert.equal(line, `kg_portal=${id}; Path=/portal; Max-Age=43200; HttpOnly; SameSite=Lax`, "no Secure over plain http");
    // The store holds the SHA-256 of the session id, never the id itself.
    assert.equal(await server.keygate.store.getPortalSession(id), null);
    const stored = await server.keygate.store.getPortalSession(sha256(id));
    assert.equal(stored?.userId, res.body.user.id);
    assert.equal(stored?.expiresAt, T0 + 12 * 3_600_000);
    assert.equal(res.body.csrfToken, stored?.csrfToken);
    const user = await server.keygate.store.getPortalUserByEmail("founder@signup.test");
    assert.match(user!.passwordHash, /^scrypt\$32768\$8\$3\$/);

    const me = await browser.session();
    assert.equal(me.body.signedIn, true);
    assert.equal(me.body.user.email, "founder@signup.test");
    assert.equal(me.body.expiresAt, new Date(T0 + 12 * 3_600_000).toISOString());
  });

  test("sign-up refuses a taken email, a weak password and a non-email, creating nothing", async () => {
    const first = new PortalClient(server.app);
    assert.equal((await first.signUp("taken@signup.test")).status, 201);
    const accounts = (await server.keygate.accounts.list()).data.length;
    const browser = new PortalClient(server.app);
    assertProblem(await browser.signUp("TAKEN@signup.test"), 409, "EMAIL_TAKEN", /sign in instead/);
    assertProblem(await browser.signUp("weak@signup.test", "Weak", "short"), 400, "WEAK_PASSWORD", /at least 10/);
    assertProblem(await browser.signUp("not-an-email", "Bad"), 400, "INVALID_EMAIL");
    assertProblem(await browser.post("/portal/api/sign-up", { name: "x", company: "y", email: "a@b.test" }), 400, "INVALID_REQUEST", /password/);
    assert.equal((await server.keygate.accounts.list()).data.length, accounts);
    // An account the provider created with this email (no portal user yet) cannot be claimed by signing up.
    await server.keygate.accounts.create({ name: "Made by ops", email: "ops-made@signup.test" });
    assertProblem(await browser.signUp("ops-made@signup.test"), 409, "EMAIL_TAKEN");
  });

  test("sign-in: a wrong password and an unknown email get the same answer; the right one a fresh session", async () => {
    const owner = new PortalClient(server.app);
    await owner.signUp("signin@signup.test");
    const firstCookie = owner.cookies.get("kg_portal");

    const stranger = new PortalClient(server.app);
    const wrong = await stranger.signIn("signin@signup.test", "not the password");
    const unknown = await stranger.signIn("nobody@signup.test", "not the password");
    assertProblem(wrong, 401, "INVALID_CREDENTIALS");
    assertProblem(unknown, 401, "INVALID_CREDENTIALS");
    assert.equal(wrong.body.detail, unknown.body.detail);

    const again = await owner.signIn("SIGNIN@signup.test");
    assert.equal(again.status, 200, again.raw);
    assert.notEqual(owner.cookies.get("kg_portal"), firstCookie, "a new session id at every sign-in");
    assert.equal(await server.keygate.store.getPortalSession(sha256(firstCookie!)), null, "the session it replaced is gone");
    assert.equal(again.body.user.lastSignInAt, new Date(T0).toISOString());
  });

  test("sign-out ends the session and clears the cookie", async () => {
    const browser = new PortalClient(server.app);
    await browser.signUp("signout@signup.test");
    const id = browser.cookies.get("kg_portal")!;
    const res = await browser.post("/portal/api/sign-out");
    assert.equal(res.status, 204);
    assert.match(cookieLine(res, "kg_portal"), /^kg_portal=; Path=\/portal; Max-Age=0;/);
    assert.equal(await server.keygate.store.getPortalSession(sha256(id)), null);
    browser.cookies.set("kg_portal", id); // a copy of the cookie is worthless now
    assertProblem(await browser.get(browser.own("/keys")), 401, "UNAUTHENTICATED");
  });

  test("a password change needs the current password and signs out the user's other sessions", async () => {
    const laptop = new PortalClient(server.app);
    await laptop.signUp("change@signup.test");
    const phone = new PortalClient(server.app, "198.51.100.20");
    assert.equal((await phone.signIn("change@signup.test")).status, 200);

    assertProblem(await laptop.post("/portal/api/password", { currentPassword: "wrong password!", newPassword: "a new passphrase 2026" }), 403, "PASSWORD_MISMATCH");
    assertProblem(await laptop.post("/portal/api/password", { currentPassword: PASSWORD, newPassword: "short" }), 400, "WEAK_PASSWORD");
    assertProblem(await laptop.post("/portal/api/password", { currentPassword: PASSWORD, newPassword: PASSWORD }), 400, "WEAK_PASSWORD");
    const res = await laptop.post("/portal/api/password", { currentPassword: PASSWORD, newPassword: "a new passphrase 2026" });
    assert.equal(res.status, 200, res.raw);
    assert.deepEqual(res.body, { changed: true, otherSessionsEnded: 1 });
    assertProblem(await phone.get(phone.own("/keys")), 401, "UNAUTHENTICATED");
    assert.equal((await laptop.get(laptop.own("/keys"))).status, 200, "this session continues");
    assertProblem(await new PortalClient(server.app).signIn("change@signup.test"), 401, "INVALID_CREDENTIALS");
    assert.equal((await new PortalClient(server.app).signIn("change@signup.test", "a new passphrase 2026")).status, 200);
  });
});

describe("applications", () => {
  let browser: PortalClient;
  before(async () => {
    browser = new PortalClient(server.app);
    await browser.signUp("apps@customer.test", "Apps Co");
  });

  test("an application's features grant scopes; its Client ID is shown", async () => {
    assert.deepEqual((await browser.get(browser.own("/applications"))).body, { data: [] });
    const res = await browser.post(browser.own("/applications"), { api: "pay", name: "Checkout", features: ["Payment API"] });
    assert.equal(res.status, 201, res.raw);
    assert.equal(res.body.name, "Checkout");
    assert.equal(res.body.integrationType, "api");
    assert.deepEqual(res.body.features, ["Payment API"]);
    assert.deepEqual(res.body.scopes, ["payments.read", "payments.write"]);
    assert.match(res.body.clientId, /^ID[0-9A-Za-z]{30}$/);
    assert.equal(res.body.accountId, browser.accountId);
    assert.deepEqual((await browser.get(browser.own(`/applications/${res.body.id}`))).body, res.body);
    assert.deepEqual((await browser.get(browser.own("/applications"))).body.data, [res.body]);

    const renamed = await browser.request("PATCH", browser.own(`/applications/${res.body.id}`), { name: "Checkout v2", features: ["Payment API", "Payout API"] });
    assert.equal(renamed.status, 200, renamed.raw);
    assert.deepEqual(renamed.body.scopes, ["payments.read", "payments.write", "payouts.write"]);
  });

  test("an unknown API or feature is refused with what to fix", async () => {
    assertProblem(await browser.post(browser.own("/applications"), { api: "nope", name: "X" }), 400, "UNKNOWN_API");
    const res = await browser.post(browser.own("/applications"), { api: "pay", name: "X", features: ["Teleport API"] });
    assert.equal(res.status, 400, res.raw);
    assert.match(res.body.detail, /Teleport API/);
    assertProblem(await browser.post(browser.own("/applications"), { api: "pay" }), 400, "INVALID_REQUEST", /name/);
  });
});

describe("keys", () => {
  let browser: PortalClient;
  let appId: string;
  before(async () => {
    browser = new PortalClient(server.app, "198.51.100.30");
    await browser.signUp("keys@customer.test", "Keys Co");
    appId = (await browser.post(browser.own("/applications"), { api: "pay", name: "Shop", features: ["Payment API"] })).body.id;
  });

  test("creating a key needs the password; a wrong one creates nothing", async () => {
    assertProblem(await browser.post(browser.own("/keys"), { api: "pay", name: "No password" }), 400, "INVALID_REQUEST", /password/);
    assertProblem(await browser.post(browser.own("/keys"), { api: "pay", name: "Wrong", password: "not it at all" }), 403, "PASSWORD_MISMATCH");
    assert.deepEqual((await browser.get(browser.own("/keys"))).body, { data: [] });
  });

  test("the secret is in the create response only; the list shows name, start, environment, scopes, activity, expiry and status", async () => {
    const res = await browser.post(browser.own("/keys"), {
      api: "pay", applicationId: appId, name: "Production", environment: "test", scopes: ["payments.read"],
      ipAllowlist: ["203.0.113.0/24"], expiresAt: "2027-01-01T00:00:00Z", rateLimit: { limit: 10, windowSeconds: 60 }, password: PASSWORD,
    });
    assert.equal(res.status, 201, res.raw);
    assert.equal(res.headers["cache-control"], "no-store");
    const { key, clientId } = res.body;
    assert.match(key.key, /^pk_test_[0-9A-Za-z]{32}$/);
    assert.equal(clientId, (await browser.get(browser.own(`/applications/${appId}`))).body.clientId);
    assert.equal(key.start, key.key.slice(0, key.start.length));
    assert.deepEqual(
      { name: key.name, environment: key.environment, scopes: key.scopes, ipAllowlist: key.ipAllowlist, expiresAt: key.expiresAt, rateLimit: key.rateLimit, status: key.status, applicationId: key.applicationId },
      { name: "Production", environment: "test", scopes: ["payments.read"], ipAllowlist: ["203.0.113.0/24"], expiresAt: "2027-01-01T00:00:00.000Z", rateLimit: { limit: 10, windowSeconds: 60 }, status: "active", applicationId: appId },
    );
    assert.equal(key.metadata.createdVia, "portal");

    const list = await browser.get(browser.own("/keys"));
    assert.equal(list.body.data.length, 1);
    assert.ok(!list.raw.includes(key.key), "never the secret again");
    assert.ok(!("key" in list.body.data[0]));
    assert.equal(list.body.data[0].lastUsedAt, null);
    const one = await browser.get(browser.own(`/keys/${key.id}`));
    assert.ok(!one.raw.includes(key.key));
    assert.equal(one.body.id, key.id);
    assert.equal((await browser.get(browser.own(`/keys?applicationId=${appId}`))).body.data.length, 1);
  });

  test("a customer may lower the rate limit but not raise it above the API's", async () => {
    const base = { api: "pay", name: "Limits", password: PASSWORD };
    assertProblem(await browser.post(browser.own("/keys"), { ...base, rateLimit: { limit: 101, windowSeconds: 60 } }), 400, "RATE_LIMIT_TOO_HIGH", /at most 100 requests per 60 seconds/);
    assertProblem(await browser.post(browser.own("/keys"), { ...base, rateLimit: { limit: 100, windowSeconds: 30 } }), 400, "RATE_LIMIT_TOO_HIGH", /higher rate|at most/);
    assertProblem(await browser.post(browser.own("/keys"), { ...base, rateLimit: { limit: 6000, windowSeconds: 3600 } }), 400, "RATE_LIMIT_TOO_HIGH");
    assert.equal((await browser.post(browser.own("/keys"), { ...base, rateLimit: { limit: 50, windowSeconds: 60 } })).status, 201);
  });

  test("keys of an operator-only API cannot be created by a customer", async () => {
    assertProblem(await browser.post(browser.own("/keys"), { api: "v1", name: "Legacy", password: PASSWORD }), 403, "OPERATOR_ONLY_API", /contact them/);
  });

  test("rotate needs the password, shows the successor's secret once, and keeps the old key for the grace period", async () => {
    const { key } = (await browser.post(browser.own("/keys"), { api: "pay", applicationId: appId, name: "Rotating", password: PASSWORD })).body;
    assertProblem(await browser.post(browser.own(`/keys/${key.id}/rotate`), { gracePeriodSeconds: 3600, password: "wrong one here" }), 403, "PASSWORD_MISMATCH");
    assertProblem(await browser.post(browser.own(`/keys/${key.id}/rotate`), { gracePeriodSeconds: 31 * 86_400, password: PASSWORD }), 400, "INVALID_REQUEST");
    const res = await browser.post(browser.own(`/keys/${key.id}/rotate`), { gracePeriodSeconds: 3600, password: PASSWORD });
    assert.equal(res.status, 201, res.raw);
    assert.equal(res.headers["cache-control"], "no-store");
    assert.match(res.body.key.key, /^pk_live_/);
    assert.equal(res.body.previous.id, key.id);
    assert.equal(res.body.previous.status, "rotating");
    assert.equal(res.body.previous.graceEndsAt, new Date(clock.now() + 3_600_000).toISOString());
    assert.ok(res.body.clientId);
    assert.equal((await server.keygate.verifyKey({ api: "pay", key: key.key })).code, "VALID", "in its grace period");
    assert.equal((await server.keygate.verifyKey({ api: "pay", key: res.body.key.key })).code, "VALID");
    assertProblem(await browser.post(browser.own(`/keys/${key.id}/rotate`), { gracePeriodSeconds: 0, password: PASSWORD }), 409, "KEY_NOT_ROTATABLE");
  });

  test("revoke takes effect at once and is idempotent", async () => {
    const { key } = (await browser.post(browser.own("/keys"), { api: "pay", name: "Revoked", password: PASSWORD })).body;
    assert.equal((await server.keygate.verifyKey({ api: "pay", key: key.key })).code, "VALID");
    const res = await browser.post(browser.own(`/keys/${key.id}/revoke`));
    assert.equal(res.status, 200, res.raw);
    assert.equal(res.body.status, "revoked");
    assert.equal((await server.keygate.verifyKey({ api: "pay", key: key.key })).code, "REVOKED");
    assert.equal((await browser.post(browser.own(`/keys/${key.id}/revoke`))).body.status, "revoked");
    assertProblem(await browser.post(browser.own(`/keys/${key.id}/revoke`), { now: true }), 400, "INVALID_REQUEST");
  });

  test("a key's live rate-limit state counts its requests in the current window", async () => {
    const { key } = (await browser.post(browser.own("/keys"), { api: "pay", name: "Counted", rateLimit: { limit: 3, windowSeconds: 60 }, password: PASSWORD })).body;
    for (let i = 0; i < 4; i++) await server.keygate.verifyKey({ api: "pay", key: key.key });
    const res = await browser.get(browser.own(`/keys/${key.id}/usage`));
    assert.equal(res.status, 200, res.raw);
    assert.equal(res.body.keyId, key.id);
    assert.deepEqual({ limit: res.body.rateLimit.limit, used: res.body.rateLimit.used, remaining: res.body.rateLimit.remaining }, { limit: 3, used: 3, remaining: 0 });
    assert.equal(res.body.usageCount, 3);
  });

  test("unknown keys answer 404", async () => {
    assertProblem(await browser.get(browser.own("/keys/key_doesnotexist")), 404, "KEY_NOT_FOUND");
    assertProblem(await browser.post(browser.own("/keys/key_doesnotexist/revoke")), 404, "KEY_NOT_FOUND");
  });
});

describe("IP allowlists per environment", () => {
  test("are replaced per environment, enforced at once, and refuse what is not an address", async () => {
    const browser = new PortalClient(server.app);
    await browser.signUp("ips@customer.test", "IP Co");
    const { key } = (await browser.post(browser.own("/keys"), { api: "pay", name: "Live", password: PASSWORD })).body;
    const res = await browser.request("PUT", browser.own("/ip-allowlists"), { ipAllowlists: { live: ["203.0.113.7", "2001:db8::/32"], test: [] } });
    assert.equal(res.status, 200, res.raw);
    assert.deepEqual(res.body.ipAllowlists, { live: ["203.0.113.7/32", "2001:db8::/32"] });
    assert.equal((await server.keygate.verifyKey({ api: "pay", key: key.key, ip: "198.51.100.1" })).code, "IP_NOT_ALLOWED");
    assert.equal((await server.keygate.verifyKey({ api: "pay", key: key.key, ip: "203.0.113.7" })).code, "VALID");
    const bad = await browser.request("PUT", browser.own("/ip-allowlists"), { ipAllowlists: { test: ["not-an-ip"] } });
    assert.equal(bad.status, 400, bad.raw);
    assert.match(bad.body.detail, /not-an-ip/);
    assert.deepEqual((await browser.get(browser.own(""))).body.ipAllowlists, { live: ["203.0.113.7/32", "2001:db8::/32"] }, "unchanged");
    await browser.request("PUT", browser.own("/ip-allowlists"), { ipAllowlists: { live: [] } });
    assert.deepEqual((await browser.get(browser.own(""))).body.ipAllowlists, {});
  });
});

describe("usage, logs and the live feed", () => {
  let browser: PortalClient;
  let keyA: { id: string; key: string };
  let keyB: { id: string; key: string };
  let appId: string;
  before(async () => {
    browser = new PortalClient(server.app);
    await browser.signUp("usage@customer.test", "Usage Co");
    appId = (await browser.post(browser.own("/applications"), { api: "pay", name: "Reports", features: ["Payment API"] })).body.id;
    keyA = (await browser.post(browser.own("/keys"), { api: "pay", applicationId: appId, name: "A", password: PASSWORD })).body.key;
    keyB = (await browser.post(browser.own("/keys"), { api: "pay", name: "B", rateLimit: { limit: 2, windowSeconds: 60 }, password: PASSWORD })).body.key;
    clock.set(Date.parse("2026-06-01T10:00:10Z"));
    for (let i = 0; i < 3; i++) await server.keygate.verifyKey({ api: "pay", key: keyA.key, ip: "203.0.113.9" }, { method: "GET", path: "/payments", requestId: `req-a-${i}` });
    for (let i = 0; i < 3; i++) await server.keygate.verifyKey({ api: "pay", key: keyB.key, ip: "203.0.113.9" }, { method: "POST", path: "/payouts" });
    await server.keygate.flush();
  });

  test("analytics: requests, success rate and latency over time, per key and per application", async () => {
    const all = await browser.get(browser.own("/analytics?interval=minute"));
    assert.equal(all.status, 200, all.raw);
    assert.equal(all.body.data.length, 1);
    assert.deepEqual({ count: all.body.data[0].total.count, successes: all.body.data[0].total.successes, errorsByCode: all.body.data[0].total.errorsByCode },
      { count: 6, successes: 5, errorsByCode: { RATE_LIMITED: 1 } });
    assert.equal(all.body.data[0].series[0].start, "2026-06-01T10:00:00.000Z");
    assert.ok(all.body.data[0].total.latencyMs.p50 >= 0);

    const byKey = await browser.get(browser.own("/analytics?interval=hour&groupBy=key"));
    const counts = Object.fromEntries(byKey.body.data.map((g: any) => [g.group, [g.total.count, g.total.successRate]]));
    assert.deepEqual(counts, { [keyA.id]: [3, 1], [keyB.id]: [3, 2 / 3] });
    const byApp = await browser.get(browser.own(`/analytics?interval=day&groupBy=application&applicationId=${appId}`));
    assert.deepEqual(byApp.body.data.map((g: any) => [g.group, g.total.count]), [[appId, 3]]);
    const oneKey = await browser.get(browser.own(`/analytics?interval=minute&keyId=${keyB.id}`));
    assert.equal(oneKey.body.data[0].total.count, 3);
    assertProblem(await browser.get(browser.own("/analytics?interval=week")), 400, "INVALID_REQUEST");
    assertProblem(await browser.get(browser.own("/analytics?groupBy=account")), 400, "INVALID_REQUEST", /groupBy/);
  });

  test("request logs: newest first, filtered, paginated, one by id; never the secret", async () => {
    const page1 = await browser.get(browser.own("/logs?limit=4"));
    assert.equal(page1.status, 200, page1.raw);
    assert.equal(page1.body.data.length, 4);
    assert.ok(page1.body.nextCursor);
    const page2 = await browser.get(browser.own(`/logs?limit=4&cursor=${page1.body.nextCursor}`));
    assert.equal(page2.body.data.length, 2);
    assert.equal(page2.body.nextCursor, null);
    const ids = [...page1.body.data, ...page2.body.data].map((l: any) => l.id);
    assert.equal(new Set(ids).size, 6);
    assert.ok(!JSON.stringify([page1.body, page2.body]).includes(keyA.key) && !JSON.stringify([page1.body, page2.body]).includes(keyB.key));

    const limited = await browser.get(browser.own("/logs?code=RATE_LIMITED"));
    assert.equal(limited.body.data.length, 1);
    assert.deepEqual({ keyId: limited.body.data[0].keyId, status: limited.body.data[0].status, method: limited.body.data[0].method, path: limited.body.data[0].path },
      { keyId: keyB.id, status: 429, method: "POST", path: "/payouts" });
    assert.equal((await browser.get(browser.own(`/logs?keyId=${keyA.id}`))).body.data.length, 3);
    assert.equal((await browser.get(browser.own(`/logs?applicationId=${appId}`))).body.data.length, 3);
    assert.equal((await browser.get(browser.own("/logs?status=429"))).body.data.length, 1);
    const one = await browser.get(browser.own(`/logs/${ids[0]}`));
    assert.equal(one.status, 200);
    assert.equal(one.body.id, ids[0]);
    assertProblem(await browser.get(browser.own("/logs/log_0000000000000000")), 404, "LOG_NOT_FOUND");
    assertProblem(await browser.get(browser.own("/logs?cursor=nope")), 400, "INVALID_REQUEST");
  });

  test("the live feed streams this account's verifications as they happen, and no one else's", async () => {
    await server.app.listen({ port: 0, host: "127.0.0.1" });
    const port = (server.app.server.address() as AddressInfo).port;
    const other = await server.keygate.accounts.create({ name: "Other", email: "other@live.test" });
    const otherKey = await server.keygate.keys.create({ api: "pay", accountId: other.id });
    const cookie = [...browser.cookies].map(([k, v]) => `${k}=${v}`).join("; ");
    const received: string[] = [];
    const req = httpRequest({ host: "127.0.0.1", port, path: `/portal/api/accounts/${browser.accountId}/events`, headers: { cookie }, agent: false });
    const done = new Promise<void>((resolve, reject) => {
      req.on("response", (res) => {
        assert.equal(res.statusCode, 200);
        assert.match(String(res.headers["content-type"]), /^text\/event-stream/);
        res.setEncoding("utf8");
        res.on("data", (chunk: string) => {
          received.push(chunk);
          if (chunk.includes(": connected")) {
            void (async () => {
              await server.keygate.verifyKey({ api: "pay", key: otherKey.key });
              await server.keygate.verifyKey({ api: "pay", key: keyA.key });
            })();
          }
          if (received.join("").includes("event: usage")) { req.destroy(); resolve(); }
        });
      });
      req.on("error", (e) => ((e as NodeJS.ErrnoException).code === "ECONNRESET" ? resolve() : reject(e)));
      req.end();
    });
    await done;
    const usage = received.join("").split("\n\n").filter((m) => m.startsWith("event: usage"));
    assert.equal(usage.length, 1, received.join(""));
    const event = JSON.parse(usage[0]!.split("\ndata: ")[1]!);
    assert.equal(event.keyId, keyA.id, "the account's own key, not the other account's, which verified first");
    assert.equal(event.accountId, browser.accountId);
  });
});

describe("the page", () => {
  test("every page path answers the document, with the title escaped and a strict CSP", async () => {
    const browser = new PortalClient(server.app);
    for (const path of ["/portal", "/portal/", "/portal/keys", "/portal/usage?range=1h"]) {
      const res = await browser.get(path);
      assert.equal(res.status, 200, path);
      assert.match(String(res.headers["content-type"]), /^text\/html/);
      assert.match(res.raw, /<title>Developer portal<\/title>/);
      assert.match(String(res.headers["content-security-policy"]), /default-src 'none'; script-src 'self'; style-src 'self'/);
      assert.match(String(res.headers["content-security-policy"]), /frame-ancestors 'none'/);
      assert.equal(res.headers["x-frame-options"], "DENY");
      assert.equal(res.headers["x-content-type-options"], "nosniff");
    }
  });

  test("assets are served with an ETag; unknown ones and unknown API paths answer 404", async () => {
    const browser = new PortalClient(server.app);
    for (const [file, type] of [["app.js", /^text\/javascript/], ["app.css", /^text\/css/], ["charts.js", /^text\/javascript/], ["favicon.svg", /^image\/svg\+xml/]] as const) {
      const res = await browser.get(`/portal/assets/${file}`);
      assert.equal(res.status, 200, file);
      assert.match(String(res.headers["content-type"]), type);
      const etag = String(res.headers.etag);
      assert.equal((await browser.get(`/portal/assets/${file}`, { "if-none-match": etag })).status, 304);
    }
    assert.equal((await browser.get("/portal/assets/nope.js")).status, 404);
    assert.equal((await browser.get("/portal/assets/..%2Fapi.ts")).status, 404);
    const api = await browser.get("/portal/api/nothing-here");
    assertProblem(api, 404, "ROUTE_NOT_FOUND");
  });
});

describe("/v1/portal/users (root key)", () => {
  const admin = (method: "GET" | "POST" | "PATCH", url: string, payload?: object, key = ROOT_KEY) =>
    server.app.inject({ method, url, headers: { authorization: `Bearer ${key}` }, ...(payload ? { payload } : {}) }).then((r) => ({ status: r.statusCode, body: r.json(), raw: r.body, headers: r.headers }) as Res);

  test("needs the root key", async () => {
    assertProblem(await admin("GET", "/v1/portal/users", undefined, "not-the-root-key-0123456789abcdefghij"), 401, "UNAUTHORIZED");
    const none = await server.app.inject({ method: "GET", url: "/v1/portal/users" });
    assert.equal(none.statusCode, 401);
    assert.equal(none.headers["www-authenticate"], 'Bearer realm="keygate"');
  });

  test("creates operators and users of existing accounts, who can then sign in", async () => {
    const account = await server.keygate.accounts.create({ name: "Airtime shop", email: "shop@airtime.test" });
    const customer = await createUser(server.app, { email: "shop@airtime.test", password: PASSWORD, name: "Shop owner", accountId: account.id });
    assert.equal(customer.status, 201, customer.raw);
    assert.deepEqual(Object.keys(customer.body).sort(), ["accountId", "createdAt", "email", "id", "lastSignInAt", "name", "operator"]);
    assert.equal(customer.body.accountId, account.id);
    const operator = await createUser(server.app, { email: "ops@provider.test", password: PASSWORD, operator: true });
    assert.equal(operator.status, 201, operator.raw);
    assert.equal(operator.body.operator, true);
    assert.equal(operator.body.accountId, null);

    assertProblem(await createUser(server.app, { email: "lost@provider.test", password: PASSWORD }), 400, "ACCOUNT_REQUIRED");
    assertProblem(await createUser(server.app, { email: "ghost@provider.test", password: PASSWORD, accountId: "acc_nope" }), 400, "UNKNOWN_ACCOUNT");
    assertProblem(await createUser(server.app, { email: "OPS@provider.test", password: PASSWORD, operator: true }), 409, "EMAIL_TAKEN");
    assertProblem(await createUser(server.app, { email: "short@provider.test", password: "short", operator: true }), 400, "INVALID_REQUEST");

    const listed = await admin("GET", `/v1/portal/users?accountId=${account.id}`);
    assert.deepEqual(listed.body.data.map((u: any) => u.email), ["shop@airtime.test"]);
    assert.ok(!listed.raw.includes("scrypt"), "never the hash");
    assert.deepEqual((await admin("GET", `/v1/portal/users/${operator.body.id}`)).body, operator.body);

    const browser = new PortalClient(server.app);
    assert.equal((await browser.signIn("shop@airtime.test")).status, 200);
    const reset = await admin("PATCH", `/v1/portal/users/${customer.body.id}`, { password: "a brand new password", name: "Owner" });
    assert.equal(reset.status, 200, reset.raw);
    assert.equal(reset.body.name, "Owner");
    assertProblem(await browser.get(browser.own("/keys")), 401, "UNAUTHENTICATED");
    assert.equal((await new PortalClient(server.app).signIn("shop@airtime.test", "a brand new password")).status, 200);
    assertProblem(await admin("PATCH", `/v1/portal/users/${operator.body.id}`, { operator: false }), 400, "ACCOUNT_REQUIRED");
    assertProblem(await admin("GET", "/v1/portal/users/usr_nope"), 404, "USER_NOT_FOUND");
  });

  test("appear in /openapi.json under the portal tag", async () => {
    const spec = (await server.app.inject({ method: "GET", url: "/openapi.json" })).json();
    assert.ok(spec.paths["/v1/portal/users"].post);
    assert.ok(!Object.keys(spec.paths).some((p) => p.startsWith("/portal")), "the page's own API is not part of the admin API");
  });
});
