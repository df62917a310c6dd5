/**
 * POST /v1/keys/verify over HTTP with a frozen clock: every verdict code is reachable and
 * answered 200 with `valid` and a stable `code`, carrying what a caller needs (ratelimit,
 * retryAfter, attemptsLeft, missingScopes) and never the secret; malformed requests are 400s.
 */
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import type { FastifyInstance } from "fastify";
import { buildServer } from "../../src/http/server.js";
import { sha256Hex } from "../../src/keys/hash.js";
import { VERDICT_CODES } from "../../src/verify/codes.js";
import { createTestKeygate, T0 } from "../support/keygate.js";
import type { TestKeygate } from "../support/keygate.js";

const ROOT = "admin-verify-test-root-key-0123456789abcd";
const PAY = {
  id: "pay",
  keyFormat: { prefix: "pk", environments: ["live", "test"], length: 32, checksum: true },
  scopes: ["charges.read", "charges.write"],
  lockout: { maxAttempts: 3, windowSeconds: 60, blockSeconds: 120 },
};

let t: TestKeygate;
let app: FastifyInstance;
const reached = new Set<string>();
const secrets: string[] = [];

const verify = async (body: Record<string, unknown>) => {
  const res = await app.inject({ method: "POST", url: "/v1/keys/verify", headers: { authorization: `Bearer ${ROOT}` }, payload: body });
  const verdict = res.json() as Record<string, any>;
  if (res.statusCode === 200) {
    reached.add(verdict.code);
    for (const s of secrets) assert.ok(!res.body.includes(s), "a verdict never carries a secret");
  }
  return { status: res.statusCode, verdict, raw: res.body };
};
const newKey = async (input: Record<string, unknown> = {}) => {
  const k = await t.keygate.keys.create({ api: "pay", accountId: t.accountId, ...input });
  secrets.push(k.key);
  return k;
};
/** A fresh client address per test, so lockout counts never leak between tests. */
let ipCounter = 0;
const nextIp = () => `198.51.100.${++ipCounter}`;

before(async () => {
  t = await createTestKeygate({ apis: [PAY] });
  app = await buildServer({ keygate: t.keygate, rootKeyHash: sha256Hex(ROOT) });
});
after(async () => {
  await app?.close();
  await t?.keygate.close();
});

describe("POST /v1/keys/verify reaches every verdict code", () => {
  test("VALID: the whole verdict, ratelimit in epoch seconds", async () => {
    const k = await newKey({ name: "server", scopes: ["charges.read"], metadata: { plan: "pro" }, rateLimit: { limit: 10, windowSeconds: 60 }, expiresAt: new Date(T0 + 86_400_000).toISOString() });
    t.clock.set(T0 + 5_000);
    const { status, verdict } = await verify({ api: "pay", key: k.key, ip: nextIp(), scopes: ["charges.read"] });
    assert.equal(status, 200);
    assert.deepEqual(verdict, {
      valid: true, code: "VALID", api: "pay", keyId: k.id, accountId: t.accountId, applicationId: null, name: "server",
      environment: "live", scopes: ["charges.read"], expiresAt: new Date(T0 + 86_400_000).toISOString(), metadata: { plan: "pro" },
      ratelimit: { limit: 10, remaining: 9, reset: T0 / 1000 + 60, window: 60 },
    });
  });

  test("MISSING_CREDENTIALS for an empty key", async () => {
    assert.deepEqual((await verify({ api: "pay", key: "" })).verdict, { valid: false, code: "MISSING_CREDENTIALS", api: "pay" });
  });

  test("MALFORMED_KEY for a wrong prefix, length or checksum, with attemptsLeft", async () => {
    const k = await newKey();
    const ip = nextIp();
    const typo = k.key.slice(0, -1) + (k.key.endsWith("a") ? "b" : "a");
    assert.deepEqual((await verify({ api: "pay", key: typo, ip })).verdict, { valid: false, code: "MALFORMED_KEY", api: "pay", attemptsLeft: 2 });
    assert.equal((await verify({ api: "pay", key: "sk_live_abc" })).verdict.code, "MALFORMED_KEY");
  });

  test("NOT_FOUND for a well-formed key (valid checksum) that was never issued", async () => {
    const forged = t.keygate.apis.get("pay")!.codec.generate("live");
    const { verdict } = await verify({ api: "pay", key: forged, ip: nextIp() });
    assert.deepEqual(verdict, { valid: false, code: "NOT_FOUND", api: "pay", attemptsLeft: 2 });
  });

  test("EXPIRED once expiresAt has passed", async () => {
    const k = await newKey({ expiresAt: new Date(t.clock.now() + 60_000).toISOString() });
    assert.equal((await verify({ api: "pay", key: k.key })).verdict.code, "VALID");
    t.clock.advance(60_000);
    const { verdict } = await verify({ api: "pay", key: k.key, ip: nextIp() });
    assert.equal(verdict.code, "EXPIRED");
    assert.equal(verdict.valid, false);
    assert.equal(verdict.keyId, k.id);
  });

  test("REVOKED right after POST /v1/keys/:id/revoke", async () => {
    const k = await newKey();
    assert.equal((await verify({ api: "pay", key: k.key })).verdict.code, "VALID");
    assert.equal((await app.inject({ method: "POST", url: `/v1/keys/${k.id}/revoke`, headers: { authorization: `Bearer ${ROOT}` } })).statusCode, 200);
    assert.equal((await verify({ api: "pay", key: k.key, ip: nextIp() })).verdict.code, "REVOKED");
  });

  test("DISABLED after PATCH enabled: false", async () => {
    const k = await newKey();
    await app.inject({ method: "PATCH", url: `/v1/keys/${k.id}`, headers: { authorization: `Bearer ${ROOT}` }, payload: { enabled: false } });
    assert.equal((await verify({ api: "pay", key: k.key, ip: nextIp() })).verdict.code, "DISABLED");
  });

  test("ROTATED only after the grace period ends", async () => {
    const k = await newKey();
    const res = await app.inject({ method: "POST", url: `/v1/keys/${k.id}/rotate`, headers: { authorization: `Bearer ${ROOT}` }, payload: { gracePeriodSeconds: 30 } });
    assert.equal(res.statusCode, 201);
    secrets.push(res.json().key.key);
    t.clock.advance(29_999);
    assert.equal((await verify({ api: "pay", key: k.key })).verdict.code, "VALID");
    t.clock.advance(1);
    assert.equal((await verify({ api: "pay", key: k.key, ip: nextIp() })).verdict.code, "ROTATED");
    assert.equal((await verify({ api: "pay", key: res.json().key.key })).verdict.code, "VALID");
  });

  test("IP_NOT_ALLOWED outside the allowlist, and without an address for a key that has one", async () => {
    const k = await newKey({ ipAllowlist: ["203.0.113.0/24"] });
    assert.equal((await verify({ api: "pay", key: k.key, ip: "203.0.113.200" })).verdict.code, "VALID");
    assert.equal((await verify({ api: "pay", key: k.key, ip: "192.0.2.1" })).verdict.code, "IP_NOT_ALLOWED");
    assert.equal((await verify({ api: "pay", key: k.key })).verdict.code, "IP_NOT_ALLOWED");
  });

  test("INSUFFICIENT_SCOPE names the missing scopes", async () => {
    const k = await newKey({ scopes: ["charges.read"] });
    const { verdict } = await verify({ api: "pay", key: k.key, scopes: ["charges.read", "charges.write"] });
    assert.equal(verdict.code, "INSUFFICIENT_SCOPE");
    assert.deepEqual(verdict.missingScopes, ["charges.write"]);
  });

  test("RATE_LIMITED after the window's limit, with ratelimit {limit, remaining, reset} and retryAfter; the next window admits again", async () => {
    const k = await newKey({ rateLimit: { limit: 3, windowSeconds: 60 } });
    t.clock.set(T0 + 3_600_000 + 15_000); // 15 s into a minute window
    const reset = (T0 + 3_600_000) / 1000 + 60;
    for (let remaining = 2; remaining >= 0; remaining--) {
      const { verdict } = await verify({ api: "pay", key: k.key });
      assert.equal(verdict.code, "VALID");
      assert.deepEqual(verdict.ratelimit, { limit: 3, remaining, reset, window: 60 });
    }
    const { verdict } = await verify({ api: "pay", key: k.key });
    assert.equal(verdict.code, "RATE_LIMITED");
    assert.equal(verdict.valid, false);
    assert.deepEqual(verdict.ratelimit, { limit: 3, remaining: 0, reset, window: 60 });
    assert.equal(verdict.retryAfter, 45);
    t.clock.set(reset * 1000);
    assert.equal((await verify({ api: "pay", key: k.key })).verdict.code, "VALID");
  });

  test("IP_BLOCKED after maxAttempts failures, refused before the key is looked at, lifted after blockSeconds", async () => {
    const good = await newKey();
    const ip = nextIp();
    const codes = [];
    for (let i = 0; i < 3; i++) codes.push((await verify({ api: "pay", key: "pk_live_nope", ip })).verdict);
    assert.deepEqual(codes.map((v) => v.attemptsLeft), [2, 1, 0]);
    assert.equal(codes[2]!.retryAfter, 120, "the failure that reaches the limit says how long the block lasts");
    const blocked = await verify({ api: "pay", key: good.key, ip });
    const blockEnds = codes[2]!.reset as number;
    assert.equal(blockEnds, Math.ceil(t.clock.now() / 1000) + 120, "reset: when the block ends, epoch seconds");
    assert.deepEqual(blocked.verdict, { valid: false, code: "IP_BLOCKED", api: "pay", attemptsLeft: 0, retryAfter: 120, reset: blockEnds });
    assert.equal((await verify({ api: "pay", key: good.key, ip: nextIp() })).verdict.code, "VALID", "other addresses are not affected");
    t.clock.advance(119_000);
    assert.equal((await verify({ api: "pay", key: good.key, ip })).verdict.retryAfter, 1);
    t.clock.advance(1_000);
    assert.equal((await verify({ api: "pay", key: good.key, ip })).verdict.code, "VALID");
  });

  test("every key verdict code was reached over HTTP (the token codes are covered in test/tokens)", () => {
    const keyCodes = VERDICT_CODES.filter((c) => c !== "INVALID_TOKEN" && c !== "TOKEN_EXPIRED");
    assert.deepEqual(keyCodes.filter((c) => !reached.has(c)), []);
  });
});

describe("POST /v1/keys/verify with bad input", () => {
  const cases: Array<[string, unknown, string, RegExp]> = [
    ["an unknown api", { api: "payments", key: "pk_live_x" }, "UNKNOWN_API", /^No API with id "payments" is configured/],
    ["an ip that is no address", { api: "pay", key: "pk_live_x", ip: "not-an-ip" }, "INVALID_IP", /^"not-an-ip" is not an IPv4 or IPv6 address\.$/],
    ["a CIDR as ip", { api: "pay", key: "pk_live_x", ip: "10.0.0.0/8" }, "INVALID_IP", /is not an IPv4 or IPv6 address/],
    ["no key field", { api: "pay" }, "INVALID_REQUEST", /^body\.key: must have required property 'key'/],
    ["a key of the wrong type", { api: "pay", key: 12345 }, "INVALID_REQUEST", /^body\.key: must be string/],
    ["scopes as a string", { api: "pay", key: "pk_live_x", scopes: "charges.read" }, "INVALID_REQUEST", /^body\.scopes: must be array/],
    ["an unknown field", { api: "pay", key: "pk_live_x", environment: "live" }, "INVALID_REQUEST", /^body\.environment: unknown field/],
  ];
  for (const [what, body, code, detail] of cases) {
    test(`${what}: 400 ${code}`, async () => {
      const res = await verify(body as Record<string, unknown>);
      assert.equal(res.status, 400, res.raw);
      assert.equal(res.verdict.code, code);
      assert.match(res.verdict.detail, detail);
    });
  }

  test("a bad request does not count toward the lockout", async () => {
    const ip = nextIp();
    for (let i = 0; i < 5; i++) assert.equal((await verify({ api: "pay", key: 1, ip })).status, 400);
    const k = await newKey();
    assert.equal((await verify({ api: "pay", key: k.key, ip })).verdict.code, "VALID");
  });
});
