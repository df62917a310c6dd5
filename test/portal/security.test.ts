/**
 * The portal's defences: CSRF on every state-changing request (synchronizer token signed in,
 * double submit signed out, and the Origin), session expiry, Secure cookies over TLS, sign-up
 * turned off, operator emails that cannot be claimed, the sign-in lockout and the per-IP
 * attempt limit, and the portal turned off. Time is a frozen clock.
 */
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { buildServer } from "../../src/http/server.js";
import { createKeygate } from "../../src/keygate.js";
import { sha256Hex } from "../../src/keys/hash.js";
import { createManualClock } from "../../src/lib/clock.js";
import { ConfigError } from "../../src/lib/errors.js";
import { createMemoryStore } from "../../src/store/memory/index.js";
import { createUser, PASSWORD, PortalClient, ROOT_KEY, startPortal } from "./support.js";
import type { PortalServer, Res } from "./support.js";

const T0 = Date.parse("2026-07-01T08:00:00Z");
const API = { id: "pay", keyFormat: { prefix: "pk" }, scopes: ["read"], features: { basic: ["read"] }, rateLimit: { limit: 100, windowSeconds: 60 } };

function assertProblem(res: Res, status: number, code: string): void {
  assert.equal(res.status, status, `expected ${status} ${code}, got ${res.status}: ${res.raw}`);
  assert.equal(res.body.code, code, res.raw);
}

describe("CSRF", () => {
  const clock = createManualClock(T0);
  let server: PortalServer;
  let browser: PortalClient;
  let keyId: string;
  let appId: string;
  before(async () => {
    server = await startPortal({ config: { apis: [API] }, clock, portal: { ipRateLimit: { limit: 1000, windowSeconds: 60 } } });
    browser = new PortalClient(server.app);
    assert.equal((await browser.signUp("csrf@customer.test")).status, 201);
    appId = (await browser.post(browser.own("/applications"), { api: "pay", name: "App" })).body.id;
    keyId = (await browser.post(browser.own("/keys"), { api: "pay", name: "K", password: PASSWORD })).body.key.id;
  });
  after(() => server.close());

  /** Every state-changing route of the portal, with a body it would accept. */
  const routes = (): Array<[method: "POST" | "PUT" | "PATCH", url: string, body: unknown]> => [
    ["POST", "/portal/api/sign-out", {}],
    ["POST", "/portal/api/password", { currentPassword: PASSWORD, newPassword: "another passphrase" }],
    ["POST", "/portal/api/accounts", { name: "X", email: "x@csrf.test" }],
    ["PUT", browser.own("/ip-allowlists"), { ipAllowlists: { live: ["203.0.113.1"] } }],
    ["POST", browser.own("/applications"), { api: "pay", name: "Forged" }],
    ["PATCH", browser.own(`/applications/${appId}`), { name: "Forged" }],
    ["POST", browser.own("/keys"), { api: "pay", name: "Forged", password: PASSWORD }],
    ["POST", browser.own(`/keys/${keyId}/revoke`), {}],
    ["POST", browser.own(`/keys/${keyId}/rotate`), { gracePeriodSeconds: 0, password: PASSWORD }],
    ["POST", "/portal/api/sign-in", { email: "csrf@customer.test", password: PASSWORD }],
    ["POST", "/portal/api/sign-up", { name: "A", company: "B", email: "forged@csrf.test", password: PASSWORD }],
  ];

  test("every state-changing request without the token, or with a wrong one, is refused and changes nothing", async () => {
    const stranger = new PortalClient(server.app);
    await stranger.signUp("other@customer.test");
    for (const [method, url, body] of routes()) {
      for (const token of [undefined, "", "x".repeat(43), stranger.csrf]) {
        const res = await browser.request(method, url, body, token === undefined ? { "x-csrf-token": "" } : { "x-csrf-token": token });
        assertProblem(res, 403, "CSRF_TOKEN_INVALID");
      }
    }
    const key = await server.keygate.keys.get(keyId);
    assert.equal(key.status, "active");
    assert.equal((await server.keygate.applications.get(appId)).name, "App");
    assert.equal((await server.keygate.keys.list({ accountId: browser.accountId })).data.length, 1);
    assert.equal((await browser.get(browser.own("/keys"))).status, 200, "still signed in: sign-out was refused too");
  });

  test("a cross-site Origin or Sec-Fetch-Site is refused even with the right token", async () => {
    const forged: Array<Record<string, string>> = [
      { origin: "https://evil.example" }, { origin: "http://localhost:8080" }, { origin: "https://localhost:80" }, { origin: "null" },
      { "sec-fetch-site": "cross-site" }, { "sec-fetch-site": "same-site" },
    ];
    for (const headers of forged) {
      assertProblem(await browser.post(browser.own(`/keys/${keyId}/revoke`), {}, headers), 403, "CSRF_ORIGIN_REFUSED");
    }
    assert.equal((await server.keygate.keys.get(keyId)).status, "active");
    // The page's own origin passes (inject's Host is localhost:80).
    const ok = await browser.request("PATCH", browser.own(`/applications/${appId}`), { name: "Renamed" }, { origin: "http://localhost:80", "sec-fetch-site": "same-origin" });
    assert.equal(ok.status, 200, ok.raw);
  });

  test("signed out, sign-in and sign-up need the double-submit cookie and header to match", async () => {
    const visitor = new PortalClient(server.app);
    assertProblem(await visitor.post("/portal/api/sign-in", { email: "csrf@customer.test", password: PASSWORD }), 403, "CSRF_TOKEN_INVALID");
    await visitor.session();
    const token = visitor.csrf;
    visitor.csrf = "y".repeat(43);
    assertProblem(await visitor.post("/portal/api/sign-in", { email: "csrf@customer.test", password: PASSWORD }), 403, "CSRF_TOKEN_INVALID");
    visitor.csrf = token;
    visitor.cookies.delete("kg_portal_csrf");
    assertProblem(await visitor.post("/portal/api/sign-in", { email: "csrf@customer.test", password: PASSWORD }), 403, "CSRF_TOKEN_INVALID");
    assert.equal((await visitor.signIn("csrf@customer.test")).status, 200);
  });

  test("GET requests need no token and change nothing", async () => {
    const res = await browser.get(browser.own("/keys"), { "x-csrf-token": "" });
    assert.equal(res.status, 200);
  });
});

describe("sessions", () => {
  const clock = createManualClock(T0);
  let server: PortalServer;
  before(async () => { server = await startPortal({ config: { apis: [API] }, clock, portal: { sessionTtlHours: 2 } }); });
  after(() => server.close());

  test("a session ends sessionTtlHours after sign-in, however active, and is deleted", async () => {
    const browser = new PortalClient(server.app);
    assert.equal((await browser.signUp("expiry@customer.test")).status, 201);
    const id = browser.cookies.get("kg_portal")!;
    assert.match(String((await browser.session()).headers["cache-control"]), /no-store/);
    clock.advance(2 * 3_600_000 - 1);
    assert.equal((await browser.get(browser.own("/keys"))).status, 200);
    clock.advance(1);
    assertProblem(await browser.get(browser.own("/keys")), 401, "SESSION_EXPIRED");
    assert.equal(await server.keygate.store.getPortalSession(sha256Hex(id)), null);
    const after = await browser.session();
    assert.equal(after.body.signedIn, false);
    assertProblem(await browser.get(browser.own("/keys")), 401, "UNAUTHENTICATED");
    assert.equal((await browser.signIn("expiry@customer.test")).status, 200, "signing in again works");
  });

  test("a forged, malformed or unknown session cookie is no session", async () => {
    const browser = new PortalClient(server.app);
    for (const value of ["", "x", "a".repeat(43), "../../etc/passwd", "a".repeat(5000)]) {
      browser.cookies.set("kg_portal", value);
      assertProblem(await browser.get("/portal/api/accounts"), 401, "UNAUTHENTICATED");
    }
  });

  test("expired sessions are swept from the store", async () => {
    const browser = new PortalClient(server.app);
    await browser.signUp("sweep@customer.test");
    const id = browser.cookies.get("kg_portal")!;
    clock.advance(3 * 3_600_000);
    await server.keygate.store.prunePortalSessions(clock.now());
    assert.equal(await server.keygate.store.getPortalSession(sha256Hex(id)), null);
  });
});

describe("cookies over TLS behind a trusted proxy", () => {
  test("are Secure, with the __Secure- prefix, and a plain-http cookie is not read there", async () => {
    const server = await startPortal({ config: { apis: [API], server: { trustedProxies: ["127.0.0.1"] } } });
    try {
      const browser = new PortalClient(server.app, "127.0.0.1");
      const https = { "x-forwarded-proto": "https" };
      const session = await browser.get("/portal/api/session", https);
      browser.csrf = session.body.csrfToken;
      assert.match(String(session.headers["set-cookie"]), /^__Secure-kg_portal_csrf=[^;]+; Path=\/portal; Max-Age=86400; HttpOnly; SameSite=Strict; Secure$/);
      const res = await browser.post("/portal/api/sign-up", { name: "T", company: "TLS", email: "tls@customer.test", password: PASSWORD }, { ...https, origin: "https://localhost:80" });
      assert.equal(res.status, 201, res.raw);
      const line = [res.headers["set-cookie"]].flat().find((l) => String(l).startsWith("__Secure-kg_portal="));
      assert.match(String(line), /^__Secure-kg_portal=[A-Za-z0-9_-]{43}; Path=\/portal; Max-Age=43200; HttpOnly; SameSite=Lax; Secure$/);
      const accountId = res.body.account.id;
      assert.equal((await browser.get(`/portal/api/accounts/${accountId}/keys`, https)).status, 200);
      assertProblem(await browser.get(`/portal/api/accounts/${accountId}/keys`), 401, "UNAUTHENTICATED");
      // Over TLS, an http page's Origin is another origin.
      browser.csrf = res.body.csrfToken;
      assertProblem(await browser.post("/portal/api/sign-out", {}, { ...https, origin: "http://localhost:80" }), 403, "CSRF_ORIGIN_REFUSED");
    } finally {
      await server.close();
    }
  });
});

describe("sign-up turned off, and operator emails", () => {
  let server: PortalServer;
  before(async () => {
    server = await startPortal({ config: { apis: [API] }, portal: { signUp: false, operatorEmails: ["Ops@Provider.test"] } });
  });
  after(() => server.close());

  test("sign-up answers 403 SIGN_UP_DISABLED and the page is told so; no account is created", async () => {
    const browser = new PortalClient(server.app);
    const session = await browser.session();
    assert.equal(session.body.signUp, false);
    assertProblem(await browser.signUp("new@customer.test"), 403, "SIGN_UP_DISABLED");
    assert.equal((await server.keygate.accounts.list()).data.length, 0);
  });

  test("users created with the root key sign in; a configured operator email is an operator", async () => {
    const account = await server.keygate.accounts.create({ name: "Invited", email: "invited@customer.test" });
    assert.equal((await createUser(server.app, { email: "invited@customer.test", password: PASSWORD, accountId: account.id })).status, 201);
    const created = await createUser(server.app, { email: "ops@provider.test", password: PASSWORD, accountId: account.id });
    assert.equal(created.body.operator, true, "operatorEmails make an operator, whatever the stored flag");
    const customer = new PortalClient(server.app);
    assert.equal((await customer.signIn("invited@customer.test")).body.user.operator, false);
    const ops = new PortalClient(server.app);
    assert.equal((await ops.signIn("ops@provider.test")).body.user.operator, true);
    assert.equal((await ops.get("/portal/api/accounts")).body.data.length, 1);
  });

  test("an operator email cannot be claimed by signing up, even where sign-up is open", async () => {
    const open = await startPortal({ config: { apis: [API] }, portal: { operatorEmails: ["ops@provider.test"] } });
    try {
      const browser = new PortalClient(open.app);
      assertProblem(await browser.signUp("OPS@provider.test"), 403, "SIGN_UP_REFUSED");
      assert.equal((await open.keygate.accounts.list()).data.length, 0);
    } finally {
      await open.close();
    }
  });
});

describe("the sign-in lockout and the per-IP attempt limit", () => {
  const clock = createManualClock(T0);
  let server: PortalServer;
  before(async () => {
    server = await startPortal({ config: { apis: [API] }, clock, portal: { lockout: { maxFailures: 3, lockMinutes: 10 }, ipRateLimit: { limit: 6, windowSeconds: 60 } } });
  });
  after(() => server.close());

  test("wrong passwords in a row lock the user's sign-in for lockMinutes, even with the right password", async () => {
    const owner = new PortalClient(server.app, "198.51.100.1");
    await owner.signUp("locked@customer.test");
    const attacker = new PortalClient(server.app, "198.51.100.2");
    assertProblem(await attacker.signIn("locked@customer.test", "guess number one"), 401, "INVALID_CREDENTIALS");
    assertProblem(await attacker.signIn("locked@customer.test", "guess number two"), 401, "INVALID_CREDENTIALS");
    const third = await attacker.signIn("locked@customer.test", "guess number three");
    assertProblem(third, 429, "SIGN_IN_LOCKED");
    assert.equal(third.headers["retry-after"], "600");
    assert.match(third.body.detail, /10 more minute/);
    const right = await new PortalClient(server.app, "198.51.100.3").signIn("locked@customer.test");
    assertProblem(right, 429, "SIGN_IN_LOCKED");

    clock.advance(10 * 60_000);
    assert.equal((await new PortalClient(server.app, "198.51.100.4").signIn("locked@customer.test")).status, 200);
    const user = await server.keygate.store.getPortalUserByEmail("locked@customer.test");
    assert.deepEqual([user!.failedSignIns, user!.lockedUntil], [0, null]);
  });

  test("a right password resets the count of wrong ones", async () => {
    const browser = new PortalClient(server.app, "198.51.100.5");
    await browser.signUp("reset@customer.test");
    for (let round = 0; round < 2; round++) {
      await new PortalClient(server.app, "198.51.100.6").signIn("reset@customer.test", "wrong one");
      await new PortalClient(server.app, "198.51.100.6").signIn("reset@customer.test", "wrong two");
      assert.equal((await new PortalClient(server.app, "198.51.100.7").signIn("reset@customer.test")).status, 200);
    }
  });

  test("wrong passwords at a key's password confirmation count towards the same lockout", async () => {
    const browser = new PortalClient(server.app, "198.51.100.8");
    await browser.signUp("confirm@customer.test");
    assertProblem(await browser.post(browser.own("/keys"), { api: "pay", name: "K", password: "wrong one" }), 403, "PASSWORD_MISMATCH");
    assertProblem(await browser.post(browser.own("/keys"), { api: "pay", name: "K", password: "wrong two" }), 403, "PASSWORD_MISMATCH");
    assertProblem(await browser.post(browser.own("/keys"), { api: "pay", name: "K", password: "wrong three" }), 429, "SIGN_IN_LOCKED");
    assertProblem(await browser.post(browser.own("/keys"), { api: "pay", name: "K", password: PASSWORD }), 429, "SIGN_IN_LOCKED");
    assert.equal((await server.keygate.keys.list({ accountId: browser.accountId })).data.length, 0);
    clock.advance(10 * 60_000);
  });

  test("an address making more than ipRateLimit attempts per window is refused until the next window", async () => {
    clock.set(Math.ceil(clock.now() / 60_000) * 60_000);
    const flood = new PortalClient(server.app, "203.0.113.99");
    for (let i = 0; i < 6; i++) assertProblem(await flood.signIn(`nobody${i}@customer.test`, "whatever it is"), 401, "INVALID_CREDENTIALS");
    const seventh = await flood.signIn("nobody@customer.test", "whatever it is");
    assertProblem(seventh, 429, "TOO_MANY_ATTEMPTS");
    assert.equal(seventh.headers["retry-after"], "60");
    assertProblem(await new PortalClient(server.app, "203.0.113.100").signIn("nobody@customer.test", "whatever it is"), 401, "INVALID_CREDENTIALS");
    clock.advance(60_000);
    assertProblem(await flood.signIn("nobody@customer.test", "whatever it is"), 401, "INVALID_CREDENTIALS");
  });
});

describe("the portal turned off", () => {
  test("serves nothing under /portal or /v1/portal", async () => {
    const keygate = await createKeygate({ config: { apis: [API], portal: { enabled: false } }, store: createMemoryStore() });
    const app = await buildServer({ keygate, rootKeyHash: sha256Hex(ROOT_KEY) });
    try {
      for (const url of ["/portal", "/portal/keys", "/portal/api/session", "/portal/assets/app.js", "/v1/portal/users"]) {
        const res = await app.inject({ method: "GET", url, headers: { authorization: `Bearer ${ROOT_KEY}` } });
        assert.equal(res.statusCode, 404, url);
      }
    } finally {
      await app.close();
      await keygate.close();
    }
  });

  test("is on by default in buildServer, and refuses operatorOnlyApis naming an unknown API at start", async () => {
    const keygate = await createKeygate({ config: { apis: [API] }, store: createMemoryStore() });
    const app = await buildServer({ keygate, rootKeyHash: sha256Hex(ROOT_KEY) });
    assert.equal((await app.inject({ method: "GET", url: "/portal/api/session" })).statusCode, 200);
    await app.close();
    await keygate.close();

    const bad = await createKeygate({ config: { apis: [API], portal: { operatorOnlyApis: ["nope"] } }, store: createMemoryStore() });
    await assert.rejects(buildServer({ keygate: bad, rootKeyHash: sha256Hex(ROOT_KEY) }), (e: unknown) => e instanceof ConfigError && /portal\.operatorOnlyApis\[0\]: no API "nope"/.test(e.message));
    await bad.close();
  });
});
