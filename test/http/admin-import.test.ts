/**
 * POST /v1/keys/import over HTTP on a real SQLite file (with a hashSecret, so imported SHA-256
 * hashes take the legacy path): existing secrets in the API's format or its importPattern, or
 * their SHA-256 hashes, come in unchanged and verify; the response never holds a secret; and a
 * batch with one bad row is refused whole ("All or nothing", as the route documents).
 */
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { createHash, randomBytes } from "node:crypto";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { FastifyInstance } from "fastify";
import { buildServer } from "../../src/http/server.js";
import { createKeygate } from "../../src/keygate.js";
import type { Keygate } from "../../src/keygate.js";
import { sha256Hex } from "../../src/keys/hash.js";
import { createManualClock } from "../../src/lib/clock.js";
import { createSqliteStore } from "../../src/store/sqlite/index.js";

const ROOT = "admin-import-test-root-key-0123456789abcd";
const T0 = Date.parse("2026-01-01T00:00:00Z");
const clock = createManualClock(T0);
const LEGACY = "^[A-Z0-9]{8}-[A-Z0-9]{4}-[A-Z0-9]{4}-[A-Z0-9]{4}-[A-Z0-9]{5}$";

let dir: string;
let keygate: Keygate;
let app: FastifyInstance;
let accountId: string;

const call = async (method: "GET" | "POST", url: string, payload?: unknown) => {
  const res = await app.inject({ method, url, headers: { authorization: `Bearer ${ROOT}` }, ...(payload === undefined ? {} : { payload: payload as object }) });
  return { status: res.statusCode, body: res.json() as any, raw: res.body };
};
const codeOf = async (key: string) => (await call("POST", "/v1/keys/verify", { api: "air", key })).body.code as string;
const nativeKey = (env = "live") => keygate.apis.get("air")!.codec.generate(env);
const legacyKey = () => {
  const chunk = (n: number) => Array.from(randomBytes(n), (b) => "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"[b % 36]).join("");
  return `${chunk(8)}-${chunk(4)}-${chunk(4)}-${chunk(4)}-${chunk(5)}`;
};
const sha256 = (s: string) => createHash("sha256").update(s).digest("hex");
const count = async () => {
  let n = 0;
  for (let cursor: string | null = null; ;) {
    const res: { body: { data: unknown[]; nextCursor: string | null } } = await call("GET", `/v1/keys?api=air&limit=100${cursor ? `&cursor=${cursor}` : ""}`);
    n += res.body.data.length;
    cursor = res.body.nextCursor;
    if (!cursor) return n;
  }
};

before(async () => {
  dir = mkdtempSync(join(tmpdir(), "keygate-admin-import-"));
  keygate = await createKeygate({
    config: {
      security: { hashSecret: "admin-import-pepper" },
      apis: [{
        id: "air",
        keyFormat: { prefix: "ce", environments: ["live", "test"], length: 32, importPattern: LEGACY },
        scopes: ["airtime.read", "airtime.write"],
      }],
      cache: { changePollMs: 0 },
      usage: { flushIntervalMs: 600_000 },
      analytics: { flushIntervalMs: 600_000 },
    },
    store: createSqliteStore({ filename: join(dir, "keygate.db") }),
    clock,
  });
  app = await buildServer({ keygate, rootKeyHash: sha256Hex(ROOT) });
  accountId = (await call("POST", "/v1/accounts", { name: "Acme", email: "dev@acme.test" })).body.id;
});
after(async () => {
  await app?.close();
  await keygate?.close();
  rmSync(dir, { recursive: true, force: true });
});

describe("POST /v1/keys/import", () => {
  test("plaintext keys (native and importPattern) and SHA-256 hashes come in unchanged and verify", async () => {
    const live = nativeKey("live");
    const testKey = nativeKey("test");
    const legacy = legacyKey();
    const hashed = legacyKey();
    const expiresAt = new Date(T0 + 86_400_000).toISOString();
    const res = await call("POST", "/v1/keys/import", {
      api: "air",
      keys: [
        { accountId, key: live, name: "live one", scopes: ["airtime.read"], metadata: { from: "v2" } },
        { accountId, key: testKey },
        { accountId, key: legacy, ipAllowlist: ["192.0.2.0/24"], rateLimit: { limit: 10, windowSeconds: 60 }, expiresAt },
        { accountId, hash: sha256(hashed).toUpperCase(), environment: "test" },
      ],
    });
    assert.equal(res.status, 201, res.raw);
    assert.deepEqual(Object.keys(res.body).sort(), ["imported", "keys"]);
    assert.equal(res.body.imported, 4);
    for (const s of [live, testKey, legacy, hashed, sha256(hashed)]) assert.ok(!res.raw.toLowerCase().includes(s.toLowerCase()), "no secret or hash in the response");
    const [a, b, c, d] = res.body.keys;
    for (const k of res.body.keys) {
      assert.ok(!("key" in k) && !("hash" in k));
      assert.equal(k.source, "imported");
      assert.equal(k.status, "active");
      assert.match(k.id, /^key_/);
    }
    assert.deepEqual([a.start, a.environment, a.name, a.scopes, a.metadata], [live.slice(0, 12), "live", "live one", ["airtime.read"], { from: "v2" }]);
    assert.deepEqual([b.start, b.environment], [testKey.slice(0, 12), "test"], "the environment comes from the key itself");
    assert.deepEqual([c.start, c.environment, c.ipAllowlist, c.rateLimit, c.expiresAt], [legacy.slice(0, 4), "live", ["192.0.2.0/24"], { limit: 10, windowSeconds: 60 }, expiresAt]);
    assert.deepEqual([d.start, d.environment], [null, "test"], "a hash has no visible head");

    assert.equal(await codeOf(live), "VALID");
    assert.equal(await codeOf(testKey), "VALID");
    assert.equal((await call("POST", "/v1/keys/verify", { api: "air", key: legacy, ip: "192.0.2.1" })).body.code, "VALID");
    assert.equal(await codeOf(hashed), "VALID", "an imported SHA-256 hash verifies under a hashSecret too");
    assert.deepEqual((await call("GET", `/v1/keys/${d.id}`)).body, { ...d, lastUsedAt: new Date(T0).toISOString(), usageCount: 1 });
  });

  const bad: Array<[string, (good: () => Record<string, unknown>) => unknown, number, string, RegExp]> = [
    ["a key in neither format", (g) => [g(), { accountId, key: "ce_live_tooShort" }], 400, "MALFORMED_KEY", /^keys\[1\]\.key: does not match API air's key format nor its importPattern\.$/],
    ["both key and hash", (g) => [g(), { accountId, key: nativeKey(), hash: sha256("x") }], 400, "INVALID_IMPORT", /^keys\[1\]: give exactly one of "key" \(the secret\) or "hash" \(its SHA-256 in hex\)\.$/],
    ["neither key nor hash", (g) => [g(), g(), { accountId, name: "empty" }], 400, "INVALID_IMPORT", /^keys\[2\]: give exactly one of/],
    ["a hash that is not 64 hex characters", (g) => [g(), { accountId, hash: "abc123" }], 400, "INVALID_REQUEST", /^body\.keys\[1\]\.hash: must match pattern/],
    ["an unknown account", (g) => [g(), { accountId: "acc_0000000000000000000000", key: nativeKey() }], 400, "UNKNOWN_ACCOUNT", /^keys\[1\]\.accountId: no account with id "acc_0000000000000000000000"\.$/],
    ["a scope the API does not declare", (g) => [g(), { accountId, key: nativeKey(), scopes: ["wallets.drain"] }], 400, "UNKNOWN_SCOPE", /^keys\[1\]\.scopes: "wallets\.drain" is not a scope of API air; known: airtime\.read, airtime\.write\.$/],
    ["a bad CIDR", (g) => [g(), { accountId, key: nativeKey(), ipAllowlist: ["10.0.0.0/40"] }], 400, "INVALID_IP_ALLOWLIST", /^keys\[1\]\.ipAllowlist\[0\]: "10\.0\.0\.0\/40" is not an IP address or CIDR range/],
    ["expiresAt in the past", (g) => [g(), { accountId, key: nativeKey(), expiresAt: "2025-06-01T00:00:00Z" }], 400, "EXPIRES_AT_IN_PAST", /^keys\[1\]\.expiresAt: 2025-06-01T00:00:00\.000Z is not in the future\.$/],
    ["an environment the key contradicts", (g) => [g(), { accountId, key: nativeKey("live"), environment: "test" }], 400, "ENVIRONMENT_MISMATCH", /^keys\[1\]\.environment: the key is a live key, not test\.$/],
    ["an unknown environment", (g) => [g(), { accountId, hash: sha256(legacyKey()), environment: "staging" }], 400, "UNKNOWN_ENVIRONMENT", /^keys\[1\]\.environment: "staging" is not an environment of API air; known: live, test\.$/],
    ["an unknown field in a row", (g) => [g(), { accountId, key: nativeKey(), enabled: false }], 400, "INVALID_REQUEST", /^body\.keys\[1\]\.enabled: unknown field$/],
    ["a rate limit out of range", (g) => [g(), { accountId, key: nativeKey(), rateLimit: { limit: 0, windowSeconds: 60 } }], 400, "INVALID_REQUEST", /^body\.keys\[1\]\.rateLimit\.limit: must be >= 1/],
    ["the same key twice", (g) => { const k = nativeKey(); return [g(), { accountId, key: k }, { accountId, key: k }]; }, 409, "DUPLICATE_KEY", /same secret/],
    ["the same hash twice", (g) => { const h = sha256(legacyKey()); return [g(), { accountId, hash: h }, { accountId, hash: h.toUpperCase() }]; }, 409, "DUPLICATE_KEY", /same secret/],
    ["an empty list", () => [], 400, "INVALID_REQUEST", /^body\.keys: must NOT have fewer than 1 items/],
    ["keys that is not a list", () => ({ accountId }), 400, "INVALID_REQUEST", /^body\.keys: must be array/],
  ];
  for (const [what, rows, status, code, detail] of bad) {
    test(`${what}: ${status} ${code}, and none of the batch is written`, async () => {
      const goodSecrets: string[] = [];
      const good = () => { const key = nativeKey(); goodSecrets.push(key); return { accountId, key }; };
      const keys = rows(good);
      const before = await count();
      const res = await call("POST", "/v1/keys/import", { api: "air", keys });
      assert.equal(res.status, status, res.raw);
      assert.equal(res.body.code, code);
      assert.match(res.body.detail, detail);
      for (const row of Array.isArray(keys) ? keys : []) {
        if (typeof row.key === "string") assert.ok(!res.raw.includes(row.key), "an error never echoes a secret");
      }
      assert.equal(await count(), before, "no row of the batch was stored");
      for (const s of goodSecrets) assert.equal(await codeOf(s), "NOT_FOUND", "the good rows before the bad one were not stored");
    });
  }

  test("a key that exists already: 409 DUPLICATE_KEY, the new rows of the batch are not stored", async () => {
    const existing = (await call("POST", "/v1/keys", { api: "air", accountId })).body.key as string;
    const fresh = nativeKey();
    const before = await count();
    const res = await call("POST", "/v1/keys/import", { api: "air", keys: [{ accountId, key: fresh }, { accountId, key: existing }] });
    assert.equal(res.status, 409, res.raw);
    assert.equal(res.body.code, "DUPLICATE_KEY");
    assert.ok(!res.raw.includes(existing));
    assert.equal(await count(), before);
    assert.equal(await codeOf(fresh), "NOT_FOUND");
    assert.equal(await codeOf(existing), "VALID", "the existing key is untouched");
  });

  test("an unknown api: 400 UNKNOWN_API", async () => {
    const res = await call("POST", "/v1/keys/import", { api: "airtime", keys: [{ accountId, key: nativeKey() }] });
    assert.equal(res.status, 400);
    assert.equal(res.body.code, "UNKNOWN_API");
    assert.match(res.body.detail, /^No API with id "airtime" is configured; known: air\.$/);
  });

  test("more than 10,000 rows: 400 before anything is looked at", async () => {
    const row = { accountId, hash: "a".repeat(64) };
    const res = await call("POST", "/v1/keys/import", { api: "air", keys: Array.from({ length: 10_001 }, () => row) });
    assert.equal(res.status, 400);
    assert.equal(res.body.code, "INVALID_REQUEST");
    assert.match(res.body.detail, /^body\.keys: must NOT have more than 10000 items/);
  });
});
