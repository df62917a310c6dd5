/**
 * The key routes of the admin API over HTTP (fastify inject), on a real SQLite file: create,
 * get, list (cursor pagination), update, revoke and rotate — the full response shapes, the
 * secret appearing only in the 201 of create and rotate, and every kind of bad input getting
 * a 4xx problem document with a stable code and a detail that says what to fix.
 */
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { FastifyInstance, LightMyRequestResponse } from "fastify";
import { buildServer } from "../../src/http/server.js";
import { createKeygate } from "../../src/keygate.js";
import type { Keygate } from "../../src/keygate.js";
import { sha256Hex } from "../../src/keys/hash.js";
import { createManualClock } from "../../src/lib/clock.js";
import { createSqliteStore } from "../../src/store/sqlite/index.js";

const ROOT = "admin-keys-test-root-key-0123456789abcdef";
const T0 = Date.parse("2026-01-01T00:00:00Z");
const clock = createManualClock(T0);

/** Every field a key has in the admin API, and nothing else. */
const KEY_FIELDS = [
  "id", "api", "accountId", "applicationId", "name", "environment", "start", "status", "scopes", "ipAllowlist", "expiresAt",
  "rateLimit", "enabled", "revokedAt", "rotatedAt", "graceEndsAt", "replacedBy", "metadata", "source", "createdAt", "updatedAt",
  "lastUsedAt", "usageCount",
].sort();

interface Res { status: number; body: any; headers: LightMyRequestResponse["headers"]; raw: string }

let dir: string;
let keygate: Keygate;
let app: FastifyInstance;
let accountId: string;
let otherAccountId: string;

const call = async (method: "GET" | "POST" | "PATCH", url: string, payload?: unknown): Promise<Res> => {
  const res = await app.inject({ method, url, headers: { authorization: `Bearer ${ROOT}` }, ...(payload === undefined ? {} : { payload: payload as object }) });
  return { status: res.statusCode, body: res.json(), headers: res.headers, raw: res.body };
};

/** A 4xx RFC 9457 document with `code`, a detail matching `detail`, and the request id of the response. */
function assertProblem(res: Res, status: number, code: string, detail: RegExp): void {
  assert.equal(res.status, status, `expected ${status} ${code}, got ${res.status}: ${res.raw}`);
  assert.equal(res.body.code, code, res.raw);
  assert.equal(res.body.status, status);
  assert.match(String(res.headers["content-type"]), /^application\/problem\+json/);
  assert.match(res.body.detail, detail);
  assert.equal(res.body.requestId, res.headers["x-request-id"]);
}

/** The secret must appear nowhere in a response other than the create/rotate 201. */
function assertNoSecret(res: Res, ...secrets: string[]): void {
  for (const s of secrets) assert.ok(!res.raw.includes(s), "the secret must not appear in this response");
  const walk = (v: unknown): void => {
    if (Array.isArray(v)) v.forEach(walk);
    else if (v && typeof v === "object") {
      assert.ok(!("key" in v), "no `key` field outside the create/rotate responses");
      Object.values(v).forEach(walk);
    }
  };
  walk(res.body);
}

const withoutSecret = (k: Record<string, unknown>) => Object.fromEntries(Object.entries(k).filter(([f]) => f !== "key"));

const newKey = async (body: Record<string, unknown> = {}) => {
  const res = await call("POST", "/v1/keys", { api: "pay", accountId, ...body });
  assert.equal(res.status, 201, res.raw);
  return res.body as { id: string; key: string } & Record<string, any>;
};

before(async () => {
  dir = mkdtempSync(join(tmpdir(), "keygate-admin-keys-"));
  keygate = await createKeygate({
    config: {
      apis: [
        {
          id: "pay", name: "Payments",
          keyFormat: { prefix: "pk", environments: ["live", "test"], length: 32, checksum: true },
          scopes: [{ name: "charges.read", description: "Read charges" }, "charges.write", "refunds.write"],
          defaultScopes: ["charges.read"],
          rateLimit: { limit: 100, windowSeconds: 60 },
        },
        { id: "mail", keyFormat: { prefix: "mk" } },
      ],
      cache: { changePollMs: 0 },
      usage: { flushIntervalMs: 600_000 },
      analytics: { flushIntervalMs: 600_000 },
    },
    store: createSqliteStore({ filename: join(dir, "keygate.db") }),
    clock,
  });
  app = await buildServer({ keygate, rootKeyHash: sha256Hex(ROOT) });
  accountId = (await call("POST", "/v1/accounts", { name: "Acme", email: "dev@acme.test" })).body.id;
  otherAccountId = (await call("POST", "/v1/accounts", { name: "Globex", email: "dev@globex.test" })).body.id;
});

after(async () => {
  await app?.close();
  await keygate?.close();
  rmSync(dir, { recursive: true, force: true });
});

describe("POST /v1/keys", () => {
  test("201 with every field of the key, the secret once, and Cache-Control: no-store", async () => {
    const res = await call("POST", "/v1/keys", { api: "pay", accountId });
    assert.equal(res.status, 201);
    assert.equal(res.headers["cache-control"], "no-store");
    assert.deepEqual(Object.keys(res.body).sort(), [...KEY_FIELDS, "key"].sort());
    const k = res.body;
    assert.match(k.id, /^key_[0-9A-Za-z]{22}$/);
    assert.match(k.key, /^pk_live_[0-9A-Za-z]{32}$/);
    assert.equal(k.start, k.key.slice(0, "pk_live_".length + 4), "start is the head plus 4 characters");
    assert.deepEqual({ ...k, id: undefined, key: undefined, start: undefined }, {
      id: undefined, key: undefined, start: undefined,
      api: "pay", accountId, applicationId: null, name: null, environment: "live", status: "active",
      scopes: ["charges.read"], ipAllowlist: [], expiresAt: null, rateLimit: null, enabled: true,
      revokedAt: null, rotatedAt: null, graceEndsAt: null, replacedBy: null, metadata: {}, source: "generated",
      createdAt: new Date(clock.now()).toISOString(), updatedAt: new Date(clock.now()).toISOString(), lastUsedAt: null, usageCount: 0,
    });
    const verdict = await call("POST", "/v1/keys/verify", { api: "pay", key: k.key });
    assert.equal(verdict.body.code, "VALID", "the secret returned is the key that verifies");
  });

  test("every option is stored and shown as given (allowlist entries normalised to CIDR)", async () => {
    const expiresAt = new Date(T0 + 30 * 86_400_000).toISOString();
    const k = await newKey({
      name: "checkout server", environment: "test", scopes: ["charges.write", "refunds.write", "charges.write"],
      ipAllowlist: ["203.0.113.7", "198.51.100.0/24", "2001:db8::/32"], expiresAt, rateLimit: { limit: 5, windowSeconds: 10 },
      metadata: { plan: "pro", seats: 3, tags: ["a"] },
    });
    assert.match(k.key, /^pk_test_/);
    assert.equal(k.name, "checkout server");
    assert.equal(k.environment, "test");
    assert.deepEqual(k.scopes, ["charges.write", "refunds.write"], "duplicates dropped, order kept");
    assert.deepEqual(k.ipAllowlist, ["203.0.113.7/32", "198.51.100.0/24", "2001:db8::/32"]);
    assert.equal(k.expiresAt, expiresAt);
    assert.deepEqual(k.rateLimit, { limit: 5, windowSeconds: 10 });
    assert.deepEqual(k.metadata, { plan: "pro", seats: 3, tags: ["a"] });
    const got = await call("GET", `/v1/keys/${k.id}`);
    assert.deepEqual(got.body, withoutSecret(k), "GET shows what create returned, minus the secret");
  });

  test("an API without declared scopes takes any scope", async () => {
    const res = await call("POST", "/v1/keys", { api: "mail", accountId, scopes: ["anything:at-all"] });
    assert.equal(res.status, 201, res.raw);
    assert.deepEqual(res.body.scopes, ["anything:at-all"]);
  });

  const bad: Array<[string, Record<string, unknown>, number, string, RegExp]> = [
    ["an unknown field", { nmae: "typo" }, 400, "INVALID_REQUEST", /^body\.nmae: unknown field$/],
    ["a missing accountId", { accountId: undefined }, 400, "INVALID_REQUEST", /^body\.accountId: must have required property 'accountId'/],
    ["scopes as a string", { scopes: "charges.read" }, 400, "INVALID_REQUEST", /^body\.scopes: must be array/],
    ["an empty scope", { scopes: [""] }, 400, "INVALID_REQUEST", /^body\.scopes\[0\]: must NOT have fewer than 1 characters/],
    ["a numeric name", { name: 42 }, 400, "INVALID_REQUEST", /^body\.name: must be string/],
    ["metadata as an array", { metadata: [1] }, 400, "INVALID_REQUEST", /^body\.metadata: must be object/],
    ["enabled (not a create option)", { enabled: false }, 400, "INVALID_REQUEST", /^body\.enabled: unknown field/],
    ["a bad CIDR", { ipAllowlist: ["10.0.0.0/33"] }, 400, "INVALID_IP_ALLOWLIST", /^ipAllowlist\[0\]: "10\.0\.0\.0\/33" is not an IP address or CIDR range \(e\.g\. /],
    ["a host name in the allowlist", { ipAllowlist: ["203.0.113.1", "example.com"] }, 400, "INVALID_IP_ALLOWLIST", /^ipAllowlist\[1\]: "example\.com" is not an IP address/],
    ["expiresAt in the past", { expiresAt: "2025-12-31T23:59:59Z" }, 400, "EXPIRES_AT_IN_PAST", /^expiresAt: 2025-12-31T23:59:59\.000Z is not in the future\.$/],
    ["expiresAt now", { expiresAt: new Date(T0).toISOString() }, 400, "EXPIRES_AT_IN_PAST", /is not in the future/],
    ["expiresAt not a date-time", { expiresAt: "next week" }, 400, "INVALID_REQUEST", /^body\.expiresAt: must match format "date-time"/],
    ["an unknown api", { api: "payments" }, 400, "UNKNOWN_API", /^No API with id "payments" is configured; known: pay, mail\.$/],
    ["an unknown account", { accountId: "acc_0000000000000000000000" }, 400, "UNKNOWN_ACCOUNT", /^No account with id "acc_0000000000000000000000"; create it with POST \/v1\/accounts first\.$/],
    ["an unknown environment", { environment: "staging" }, 400, "UNKNOWN_ENVIRONMENT", /^environment: "staging" is not an environment of API pay; known: live, test\.$/],
    ["a scope the API does not declare", { scopes: ["charges.read", "admin"] }, 400, "UNKNOWN_SCOPE", /^scopes: "admin" is not a scope of API pay; known: charges\.read, charges\.write, refunds\.write\.$/],
    ["a rate limit of 0", { rateLimit: { limit: 0, windowSeconds: 60 } }, 400, "INVALID_REQUEST", /^body\.rateLimit\.limit: must be >= 1/],
    ["a rate limit above the maximum", { rateLimit: { limit: 1_000_000_001, windowSeconds: 60 } }, 400, "INVALID_REQUEST", /^body\.rateLimit\.limit: must be <= 1000000000/],
    ["a window of more than a year", { rateLimit: { limit: 10, windowSeconds: 31_536_001 } }, 400, "INVALID_REQUEST", /^body\.rateLimit\.windowSeconds: must be <= 31536000/],
    ["a fractional limit", { rateLimit: { limit: 1.5, windowSeconds: 60 } }, 400, "INVALID_REQUEST", /^body\.rateLimit\.limit: must be integer/],
    ["a rate limit without its window", { rateLimit: { limit: 10 } }, 400, "INVALID_REQUEST", /^body\.rateLimit\.windowSeconds: must have required property 'windowSeconds'/],
    ["an unknown rate-limit field", { rateLimit: { limit: 10, windowSeconds: 60, burst: 5 } }, 400, "INVALID_REQUEST", /^body\.rateLimit\.burst: unknown field/],
  ];
  for (const [what, extra, status, code, detail] of bad) {
    test(`${what}: ${status} ${code}, and no key is written`, async () => {
      const before = (await call("GET", `/v1/keys?accountId=${accountId}&limit=100`)).body.data.length;
      const body = { api: "pay", accountId, ...extra };
      for (const [k, v] of Object.entries(body)) if (v === undefined) delete (body as Record<string, unknown>)[k];
      const res = await call("POST", "/v1/keys", body);
      assertProblem(res, status, code, detail);
      if (code === "INVALID_REQUEST") assert.ok(Array.isArray(res.body.errors) && res.body.errors.length > 0, "errors[] lists the fields");
      assert.equal((await call("GET", `/v1/keys?accountId=${accountId}&limit=100`)).body.data.length, before);
    });
  }
});

describe("GET /v1/keys/:id", () => {
  test("the key without its secret: start, status and lastUsedAt/usageCount once it is used", async () => {
    const k = await newKey({ name: "reader" });
    clock.advance(5_000);
    assert.equal((await call("POST", "/v1/keys/verify", { api: "pay", key: k.key })).body.code, "VALID");
    const res = await call("GET", `/v1/keys/${k.id}`);
    assert.equal(res.status, 200);
    assert.deepEqual(Object.keys(res.body).sort(), KEY_FIELDS);
    assertNoSecret(res, k.key);
    assert.equal(res.body.start, k.start);
    assert.equal(res.body.status, "active");
    assert.equal(res.body.lastUsedAt, new Date(clock.now()).toISOString());
    assert.equal(res.body.usageCount, 1);
  });

  test("an unknown id is 404 KEY_NOT_FOUND on every key route", async () => {
    const id = "key_0000000000000000000000";
    assertProblem(await call("GET", `/v1/keys/${id}`), 404, "KEY_NOT_FOUND", /^No key with id "key_0000000000000000000000"\.$/);
    assertProblem(await call("PATCH", `/v1/keys/${id}`, { name: "x" }), 404, "KEY_NOT_FOUND", /No key with id/);
    assertProblem(await call("POST", `/v1/keys/${id}/revoke`), 404, "KEY_NOT_FOUND", /No key with id/);
    assertProblem(await call("POST", `/v1/keys/${id}/rotate`, { gracePeriodSeconds: 60 }), 404, "KEY_NOT_FOUND", /No key with id/);
    assertProblem(await call("GET", `/v1/keys/${"k".repeat(65)}`), 400, "INVALID_REQUEST", /^params\.id: must NOT have more than 64 characters/);
  });
});

describe("PATCH /v1/keys/:id", () => {
  test("each field changes, the response is the whole key without its secret", async () => {
    const k = await newKey();
    clock.advance(1_000);
    const expiresAt = new Date(T0 + 86_400_000 * 365).toISOString();
    const res = await call("PATCH", `/v1/keys/${k.id}`, {
      name: "renamed", scopes: ["charges.write"], ipAllowlist: ["192.0.2.0/24"], expiresAt, rateLimit: { limit: 7, windowSeconds: 70 }, metadata: { v: 2 },
    });
    assert.equal(res.status, 200, res.raw);
    assert.deepEqual(Object.keys(res.body).sort(), KEY_FIELDS);
    assertNoSecret(res, k.key);
    assert.equal(res.body.name, "renamed");
    assert.deepEqual(res.body.scopes, ["charges.write"]);
    assert.deepEqual(res.body.ipAllowlist, ["192.0.2.0/24"]);
    assert.equal(res.body.expiresAt, expiresAt);
    assert.deepEqual(res.body.rateLimit, { limit: 7, windowSeconds: 70 });
    assert.deepEqual(res.body.metadata, { v: 2 });
    assert.equal(res.body.createdAt, k.createdAt);
    assert.equal(res.body.updatedAt, new Date(clock.now()).toISOString());
    assert.deepEqual((await call("GET", `/v1/keys/${k.id}`)).body, res.body, "the change is stored");

    const cleared = await call("PATCH", `/v1/keys/${k.id}`, { name: null, expiresAt: null, rateLimit: null, ipAllowlist: [] });
    assert.equal(cleared.status, 200);
    assert.deepEqual([cleared.body.name, cleared.body.expiresAt, cleared.body.rateLimit, cleared.body.ipAllowlist], [null, null, null, []]);
  });

  test("enabled: false disables (status and verdict), true restores", async () => {
    const k = await newKey();
    const off = await call("PATCH", `/v1/keys/${k.id}`, { enabled: false });
    assert.equal(off.body.enabled, false);
    assert.equal(off.body.status, "disabled");
    assert.equal((await call("POST", "/v1/keys/verify", { api: "pay", key: k.key })).body.code, "DISABLED");
    const on = await call("PATCH", `/v1/keys/${k.id}`, { enabled: true });
    assert.equal(on.body.status, "active");
    assert.equal((await call("POST", "/v1/keys/verify", { api: "pay", key: k.key })).body.code, "VALID");
  });

  test("bad input: 400 with a code and the field, and the key is unchanged", async () => {
    const k = await newKey({ name: "keep" });
    const cases: Array<[unknown, string, RegExp]> = [
      [{}, "INVALID_REQUEST", /^body: must NOT have fewer than 1 properties/],
      [{ api: "mail" }, "INVALID_REQUEST", /^body\.api: unknown field/],
      [{ environment: "test" }, "INVALID_REQUEST", /^body\.environment: unknown field/],
      [{ enabled: "no" }, "INVALID_REQUEST", /^body\.enabled: must be boolean/],
      [{ scopes: ["nope"] }, "UNKNOWN_SCOPE", /^scopes: "nope" is not a scope of API pay/],
      [{ ipAllowlist: ["300.1.1.1"] }, "INVALID_IP_ALLOWLIST", /^ipAllowlist\[0\]: "300\.1\.1\.1" is not an IP address/],
      [{ expiresAt: "2020-01-01T00:00:00Z" }, "EXPIRES_AT_IN_PAST", /^expiresAt: .* is not in the future/],
      [{ rateLimit: { limit: -1, windowSeconds: 1 } }, "INVALID_REQUEST", /^body\.rateLimit\.limit: must be >= 1/],
      [{ name: "" }, "INVALID_REQUEST", /^body\.name: must NOT have fewer than 1 characters/],
    ];
    for (const [body, code, detail] of cases) assertProblem(await call("PATCH", `/v1/keys/${k.id}`, body), 400, code, detail);
    const now = await call("GET", `/v1/keys/${k.id}`);
    assert.equal(now.body.name, "keep");
    assert.equal(now.body.updatedAt, k.updatedAt);
  });
});

describe("POST /v1/keys/:id/revoke", () => {
  test("200 with status revoked; the key is REVOKED at once; revoking again changes nothing", async () => {
    const k = await newKey();
    const res = await call("POST", `/v1/keys/${k.id}/revoke`);
    assert.equal(res.status, 200);
    assert.deepEqual(Object.keys(res.body).sort(), KEY_FIELDS);
    assertNoSecret(res, k.key);
    assert.equal(res.body.status, "revoked");
    assert.equal(res.body.revokedAt, new Date(clock.now()).toISOString());
    assert.equal((await call("POST", "/v1/keys/verify", { api: "pay", key: k.key })).body.code, "REVOKED");

    clock.advance(60_000);
    const again = await call("POST", `/v1/keys/${k.id}/revoke`);
    assert.equal(again.status, 200, "revoke is idempotent");
    assert.deepEqual(again.body, res.body, "the first revocation time stands");
  });

  test("a body with an option is refused (revoke takes none); an empty JSON object is fine", async () => {
    const k = await newKey();
    assertProblem(await call("POST", `/v1/keys/${k.id}/revoke`, { reason: "leaked" }), 400, "INVALID_REQUEST", /^body\.reason: unknown field/);
    assert.equal((await call("GET", `/v1/keys/${k.id}`)).body.status, "active", "nothing was revoked");
    assert.equal((await call("POST", `/v1/keys/${k.id}/revoke`, {})).status, 200);
  });
});

describe("POST /v1/keys/:id/rotate", () => {
  test("201 with the successor's secret and the previous key; the old key works for the grace period, then ROTATED", async () => {
    const k = await newKey({ name: "rotating", scopes: ["charges.write"], ipAllowlist: ["203.0.113.0/24"], rateLimit: { limit: 9, windowSeconds: 9 }, metadata: { a: 1 } });
    clock.advance(1_000);
    const res = await call("POST", `/v1/keys/${k.id}/rotate`, { gracePeriodSeconds: 3600 });
    assert.equal(res.status, 201, res.raw);
    assert.equal(res.headers["cache-control"], "no-store");
    assert.deepEqual(Object.keys(res.body).sort(), ["key", "previous"]);
    const { key: next, previous } = res.body;
    assert.deepEqual(Object.keys(next).sort(), [...KEY_FIELDS, "key"].sort());
    assert.deepEqual(Object.keys(previous).sort(), KEY_FIELDS);
    assert.ok(!("key" in previous));
    assert.match(next.key, /^pk_live_/);
    assert.notEqual(next.key, k.key);
    assert.notEqual(next.id, k.id);
    for (const f of ["name", "scopes", "ipAllowlist", "rateLimit", "metadata", "environment", "accountId", "api"]) assert.deepEqual(next[f], k[f], `the successor keeps ${f}`);
    assert.equal(next.status, "active");
    assert.equal(previous.status, "rotating");
    assert.equal(previous.replacedBy, next.id);
    assert.equal(previous.rotatedAt, new Date(clock.now()).toISOString());
    assert.equal(previous.graceEndsAt, new Date(clock.now() + 3_600_000).toISOString());

    const ip = "203.0.113.9";
    assert.equal((await call("POST", "/v1/keys/verify", { api: "pay", key: k.key, ip })).body.code, "VALID", "old key within the grace period");
    assert.equal((await call("POST", "/v1/keys/verify", { api: "pay", key: next.key, ip })).body.code, "VALID");
    clock.advance(3_600_000);
    assert.equal((await call("POST", "/v1/keys/verify", { api: "pay", key: k.key, ip })).body.code, "ROTATED");
    assert.equal((await call("GET", `/v1/keys/${k.id}`)).body.status, "rotated");
  });

  test("without a body the grace period is 0: the old key is ROTATED at once", async () => {
    const k = await newKey();
    const res = await call("POST", `/v1/keys/${k.id}/rotate`);
    assert.equal(res.status, 201, res.raw);
    assert.equal(res.body.previous.graceEndsAt, new Date(clock.now()).toISOString());
    assert.equal((await call("POST", "/v1/keys/verify", { api: "pay", key: k.key })).body.code, "ROTATED");
  });

  test("a revoked, rotating or expired key cannot be rotated: 409 KEY_NOT_ROTATABLE, no successor written", async () => {
    const revoked = await newKey();
    await call("POST", `/v1/keys/${revoked.id}/revoke`);
    const count = async () => (await call("GET", `/v1/keys?accountId=${accountId}&limit=100`)).body.data.length as number;
    const before = await count();
    assertProblem(await call("POST", `/v1/keys/${revoked.id}/rotate`, { gracePeriodSeconds: 10 }), 409, "KEY_NOT_ROTATABLE", /is revoked; only a key that is not revoked, expired or already rotated can be rotated/);

    const rotating = await newKey();
    assert.equal((await call("POST", `/v1/keys/${rotating.id}/rotate`, { gracePeriodSeconds: 600 })).status, 201);
    const afterFirst = await count();
    assertProblem(await call("POST", `/v1/keys/${rotating.id}/rotate`, { gracePeriodSeconds: 600 }), 409, "KEY_NOT_ROTATABLE", /is rotating/);

    const expiring = await newKey({ expiresAt: new Date(clock.now() + 1000).toISOString() });
    clock.advance(1000);
    assertProblem(await call("POST", `/v1/keys/${expiring.id}/rotate`), 409, "KEY_NOT_ROTATABLE", /is expired/);
    assert.equal(await count(), afterFirst + 1, "only the one successful rotation and the expiring key were written");
    assert.equal(afterFirst, before + 2);
  });

  test("gracePeriodSeconds out of range or of the wrong type: 400", async () => {
    const k = await newKey();
    assertProblem(await call("POST", `/v1/keys/${k.id}/rotate`, { gracePeriodSeconds: -1 }), 400, "INVALID_REQUEST", /^body\.gracePeriodSeconds: must be >= 0/);
    assertProblem(await call("POST", `/v1/keys/${k.id}/rotate`, { gracePeriodSeconds: 30 * 86_400 + 1 }), 400, "INVALID_REQUEST", /^body\.gracePeriodSeconds: must be <= 2592000/);
    assertProblem(await call("POST", `/v1/keys/${k.id}/rotate`, { gracePeriodSeconds: "60" }), 400, "INVALID_REQUEST", /^body\.gracePeriodSeconds: must be integer/);
    assertProblem(await call("POST", `/v1/keys/${k.id}/rotate`, { grace: 60 }), 400, "INVALID_REQUEST", /^body\.grace: unknown field/);
    assert.equal((await call("GET", `/v1/keys/${k.id}`)).body.status, "active", "nothing was rotated");
  });
});

describe("GET /v1/keys (cursor pagination)", () => {
  let walker: string;
  const ids: string[] = [];

  before(async () => {
    walker = (await call("POST", "/v1/accounts", { name: "Walker", email: "walker@pages.test" })).body.id;
    for (let i = 0; i < 23; i++) {
      clock.advance(1); // ids are time-ordered: newest last
      const res = await call("POST", "/v1/keys", { api: i % 5 === 4 ? "mail" : "pay", accountId: walker, name: `k${i}` });
      ids.push(res.body.id);
    }
    await call("POST", "/v1/keys", { api: "pay", accountId: otherAccountId }); // noise of another account
  });

  const walk = async (query: string, limit: number) => {
    const seen: string[] = [];
    let pages = 0;
    for (let cursor: string | null = null; ;) {
      const res = await call("GET", `/v1/keys?${query}&limit=${limit}${cursor ? `&cursor=${cursor}` : ""}`);
      assert.equal(res.status, 200, res.raw);
      assert.deepEqual(Object.keys(res.body).sort(), ["data", "nextCursor"]);
      assert.ok(res.body.data.length <= limit);
      for (const k of res.body.data) {
        assert.deepEqual(Object.keys(k).sort(), KEY_FIELDS);
        assert.ok(!("key" in k));
      }
      seen.push(...res.body.data.map((k: { id: string }) => k.id));
      pages++;
      cursor = res.body.nextCursor;
      if (cursor === null) break;
      assert.equal(cursor, res.body.data.at(-1).id, "the cursor is the last id of the page");
      assert.ok(pages < 50, "the walk ends");
    }
    return { seen, pages };
  };

  test("walking pages of 5 returns every key of the account once, oldest first, then nextCursor null", async () => {
    const { seen, pages } = await walk(`accountId=${walker}`, 5);
    assert.equal(new Set(seen).size, seen.length, "no key twice");
    assert.deepEqual(seen, ids, "every key once, in creation order");
    assert.equal(pages, 5);
  });

  test("filters combine; a page size equal to the count ends with nextCursor null", async () => {
    const { seen } = await walk(`accountId=${walker}&api=pay`, 3);
    assert.deepEqual(seen, ids.filter((_, i) => i % 5 !== 4));
    const all = await call("GET", `/v1/keys?accountId=${walker}&limit=23`);
    assert.equal(all.body.data.length, 23);
    assert.equal(all.body.nextCursor, null);
    const mail = await call("GET", `/v1/keys?accountId=${walker}&api=mail`);
    assert.deepEqual(mail.body.data.map((k: { id: string }) => k.id), ids.filter((_, i) => i % 5 === 4));
  });

  test("the default page size is 50 and the largest 100", async () => {
    const res = await call("GET", "/v1/keys");
    assert.equal(res.status, 200);
    assert.ok(res.body.data.length <= 50);
    assert.equal((await call("GET", "/v1/keys?limit=100")).status, 200);
  });

  const bad: Array<[string, string, RegExp]> = [
    ["limit=0", "INVALID_REQUEST", /^querystring\.limit: must match pattern/],
    ["limit=101", "INVALID_REQUEST", /^querystring\.limit: must match pattern/],
    ["limit=500", "INVALID_REQUEST", /^querystring\.limit: must match pattern/],
    ["limit=-1", "INVALID_REQUEST", /^querystring\.limit: must match pattern/],
    ["limit=ten", "INVALID_REQUEST", /^querystring\.limit: must match pattern/],
    ["limit=5&limit=6", "INVALID_REQUEST", /^querystring\.limit: must be string/],
    ["cursor=garbage", "INVALID_REQUEST", /^querystring\.cursor: must match pattern "\^key_/],
    ["cursor=acc_0VbsvBC9Xav9yA0crtGsOv", "INVALID_REQUEST", /^querystring\.cursor: must match pattern "\^key_/],
    ["api=nope", "UNKNOWN_API", /^No API with id "nope" is configured; known: pay, mail\.$/],
    ["account=acc_x", "INVALID_REQUEST", /^querystring\.account: unknown field$/],
  ];
  for (const [query, code, detail] of bad) {
    test(`GET /v1/keys?${query}: 400 ${code}`, async () => {
      assertProblem(await call("GET", `/v1/keys?${query}`), 400, code, detail);
    });
  }
});
