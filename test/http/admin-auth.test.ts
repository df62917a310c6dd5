/**
 * The root key guards every /v1 admin route: without it, with a wrong one or another scheme,
 * each answers 401 UNAUTHORIZED with `WWW-Authenticate: Bearer` and does nothing. The
 * operational routes (/healthz, /readyz, /metrics, /openapi.json) need no key.
 */
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import type { FastifyInstance } from "fastify";
import { buildServer } from "../../src/http/server.js";
import { createKeygate } from "../../src/keygate.js";
import type { CreatedKey, Keygate } from "../../src/keygate.js";
import { sha256Hex } from "../../src/keys/hash.js";
import { createManualClock } from "../../src/lib/clock.js";
import { createMetrics } from "../../src/ops/metrics.js";
import { createMemoryStore } from "../../src/store/memory/index.js";
import type { Store } from "../../src/store/types.js";

const ROOT = "admin-auth-test-root-key-0123456789abcdef";
let keygate: Keygate;
let app: FastifyInstance;
let accountId: string;
let key: CreatedKey;
let redisUp = true;
let storeUp = true;

type Method = "GET" | "POST" | "PATCH";
/** Every admin route, with a body that would succeed given the root key. */
const routes = (): Array<[Method, string, unknown?]> => [
  ["GET", "/v1/apis"],
  ["POST", "/v1/accounts", { name: "Intruder", email: "intruder@evil.test" }],
  ["GET", "/v1/accounts"],
  ["GET", `/v1/accounts/${accountId}`],
  ["PATCH", `/v1/accounts/${accountId}`, { name: "pwned" }],
  ["POST", "/v1/keys", { api: "pay", accountId }],
  ["GET", "/v1/keys?api=pay"],
  ["GET", `/v1/keys/${key.id}`],
  ["PATCH", `/v1/keys/${key.id}`, { enabled: false }],
  ["POST", `/v1/keys/${key.id}/rotate`, { gracePeriodSeconds: 0 }],
  ["POST", `/v1/keys/${key.id}/revoke`],
  ["POST", "/v1/keys/import", { api: "pay", keys: [{ accountId, hash: "b".repeat(64) }] }],
  ["POST", "/v1/keys/verify", { api: "pay", key: "pk_live_x" }],
];

const BAD_AUTH: Array<[string, Record<string, string>, RegExp]> = [
  ["no Authorization header", {}, /^Send the root key as `Authorization: Bearer <root key>`\.$/],
  ["a wrong root key", { authorization: `Bearer ${ROOT.slice(0, -1)}X` }, /^The root key is not valid\.$/],
  ["the root key with a suffix", { authorization: `Bearer ${ROOT}x` }, /^The root key is not valid\.$/],
  ["another scheme", { authorization: `Basic ${Buffer.from(`admin:${ROOT}`).toString("base64")}` }, /^Send the root key as/],
  ["the bare root key", { authorization: ROOT }, /^Send the root key as/],
  ["an empty bearer", { authorization: "Bearer " }, /^Send the root key as/],
  ["a key of an API instead of the root key", { authorization: "Bearer KEY" }, /^The root key is not valid\.$/],
];

/** A memory store whose reads fail while `storeUp` is false, as a database that went away. */
function failingStore(): Store {
  const store = createMemoryStore();
  return { ...store, getSetting: async (name) => { if (!storeUp) throw new Error("connect ECONNREFUSED 127.0.0.1:5432"); return store.getSetting(name); } };
}

before(async () => {
  const metrics = createMetrics({ defaultMetrics: false });
  keygate = await createKeygate({
    config: { apis: [{ id: "pay", keyFormat: { prefix: "pk" } }], cache: { changePollMs: 0 }, usage: { flushIntervalMs: 600_000 }, analytics: { flushIntervalMs: 600_000 } },
    store: failingStore(),
    clock: createManualClock(Date.parse("2026-01-01T00:00:00Z")),
    metrics,
  });
  app = await buildServer({ keygate, rootKeyHash: sha256Hex(ROOT), metrics, readiness: { redis: async () => { if (!redisUp) throw new Error("connection refused"); } } });
  accountId = (await keygate.accounts.create({ name: "Acme", email: "dev@acme.test" })).id;
  key = await keygate.keys.create({ api: "pay", accountId });
});
after(async () => {
  await app?.close();
  await keygate?.close();
});

describe("every /v1 admin route needs the root key", () => {
  for (const [what, headers, detail] of BAD_AUTH) {
    test(`${what}: 401 UNAUTHORIZED with WWW-Authenticate on every route, and nothing changes`, async () => {
      const accountsBefore = (await keygate.accounts.list({ limit: 100 })).data;
      const keysBefore = (await keygate.keys.list({ limit: 100 })).data;
      for (const [method, url, payload] of routes()) {
        const h = { ...headers };
        if (h.authorization === "Bearer KEY") h.authorization = `Bearer ${key.key}`;
        const res = await app.inject({ method, url, headers: h, ...(payload === undefined ? {} : { payload: payload as object }) });
        const where = `${method} ${url}`;
        assert.equal(res.statusCode, 401, `${where}: ${res.body}`);
        assert.equal(res.headers["www-authenticate"], 'Bearer realm="keygate"', where);
        assert.match(String(res.headers["content-type"]), /^application\/problem\+json/, where);
        const body = res.json();
        assert.equal(body.code, "UNAUTHORIZED", where);
        assert.match(body.detail, detail, where);
        assert.equal(body.requestId, res.headers["x-request-id"]);
        assert.ok(!res.body.includes(key.key), "a 401 never echoes what was presented");
      }
      assert.deepEqual((await keygate.accounts.list({ limit: 100 })).data, accountsBefore, "no account created or changed");
      assert.deepEqual((await keygate.keys.list({ limit: 100 })).data, keysBefore, "no key created, changed, revoked or rotated");
    });
  }

  test("the root key is checked before the body: a bad body without the key is still 401", async () => {
    const res = await app.inject({ method: "POST", url: "/v1/keys", headers: { "content-type": "application/json" }, payload: "{not json" });
    assert.equal(res.statusCode, 401);
    assert.equal(res.json().code, "UNAUTHORIZED");
  });

  test("with the root key (any case of `Bearer`) every route answers 2xx", async () => {
    for (const auth of [`Bearer ${ROOT}`, `bearer ${ROOT}`, `BEARER  ${ROOT}`]) {
      const res = await app.inject({ method: "GET", url: "/v1/apis", headers: { authorization: auth } });
      assert.equal(res.statusCode, 200, auth);
      assert.equal(res.headers["www-authenticate"], undefined);
    }
    for (const [method, url, payload] of routes()) {
      const res = await app.inject({ method, url, headers: { authorization: `Bearer ${ROOT}` }, ...(payload === undefined ? {} : { payload: payload as object }) });
      assert.ok(res.statusCode >= 200 && res.statusCode < 300, `${method} ${url}: ${res.statusCode} ${res.body}`);
    }
  });

  test("an unknown route is 404 ROUTE_NOT_FOUND, naming the method and path", async () => {
    assert.equal((await app.inject({ method: "GET", url: "/v1/nope" })).json().code, "ROUTE_NOT_FOUND");
    const res = await app.inject({ method: "DELETE", url: `/v1/keys/${key.id}`, headers: { authorization: `Bearer ${ROOT}` } });
    assert.equal(res.statusCode, 404);
    assert.equal(res.json().code, "ROUTE_NOT_FOUND");
    assert.match(res.json().detail, /^No route DELETE \/v1\/keys\/key_\w+; see \/openapi\.json\.$/);
  });
});

describe("operational routes need no key", () => {
  test("GET /healthz: 200 with the store kind", async () => {
    const res = await app.inject({ method: "GET", url: "/healthz" });
    assert.equal(res.statusCode, 200);
    assert.deepEqual(res.json(), { status: "ok", store: "memory" });
  });

  test("GET /readyz: 200 with every check, 503 naming the one that fails", async () => {
    const ok = await app.inject({ method: "GET", url: "/readyz" });
    assert.equal(ok.statusCode, 200);
    assert.deepEqual(ok.json(), { status: "ready", checks: { store: "ok", redis: "ok" } });
    redisUp = false;
    try {
      const down = await app.inject({ method: "GET", url: "/readyz" });
      assert.equal(down.statusCode, 503);
      assert.deepEqual(down.json(), { status: "unavailable", checks: { store: "ok", redis: "connection refused" } });
    } finally {
      redisUp = true;
    }
  });

  test("GET /readyz: a check the node can serve without (Redis, failureMode local) makes it 200 degraded, not 503", async () => {
    let up = true;
    const local = await buildServer({ keygate, rootKeyHash: sha256Hex(ROOT), readiness: { redis: { check: async () => { if (!up) throw new Error("connection refused"); }, required: false } } });
    try {
      assert.deepEqual((await local.inject({ method: "GET", url: "/readyz" })).json(), { status: "ready", checks: { store: "ok", redis: "ok" } });
      up = false;
      const res = await local.inject({ method: "GET", url: "/readyz" });
      assert.equal(res.statusCode, 200);
      assert.deepEqual(res.json(), { status: "degraded", checks: { store: "ok", redis: "connection refused" } });
    } finally {
      await local.close();
    }
  });

  test("GET /readyz and /healthz with the store down: 503 with the store's error, Redis still ok", async () => {
    storeUp = false;
    try {
      const ready = await app.inject({ method: "GET", url: "/readyz" });
      assert.equal(ready.statusCode, 503);
      assert.deepEqual(ready.json(), { status: "unavailable", checks: { store: "connect ECONNREFUSED 127.0.0.1:5432", redis: "ok" } });
      const health = await app.inject({ method: "GET", url: "/healthz" });
      assert.equal(health.statusCode, 503);
      assert.deepEqual(health.json(), { status: "unavailable", store: "memory", error: "connect ECONNREFUSED 127.0.0.1:5432" });
    } finally {
      storeUp = true;
    }
    assert.equal((await app.inject({ method: "GET", url: "/readyz" })).statusCode, 200, "ready again once the store answers");
  });

  test("GET /metrics: Prometheus text with the verification counters", async () => {
    await keygate.verifyKey({ api: "pay", key: key.key });
    const res = await app.inject({ method: "GET", url: "/metrics" });
    assert.equal(res.statusCode, 200);
    assert.match(String(res.headers["content-type"]), /^text\/plain; version=0\.0\.4/);
    assert.match(res.body, /^# TYPE keygate_verifications_total counter$/m);
    assert.match(res.body, /^keygate_verifications_total\{api="pay",code="\w+"\} \d+$/m);
    assert.ok(!res.body.includes(key.key));
  });

  test("GET /openapi.json: the OpenAPI 3.1 document, without a key", async () => {
    const res = await app.inject({ method: "GET", url: "/openapi.json" });
    assert.equal(res.statusCode, 200);
    assert.equal(res.json().openapi, "3.1.0");
  });
});
