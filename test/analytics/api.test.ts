/**
 * The query API over HTTP (in-process inject): /v1/analytics, /v1/logs, /v1/logs/:id and
 * /v1/keys/:id/usage — results, bad input with stable codes, the root key — and the account
 * scope the portal will use, through keygate.analytics directly.
 */
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import type { FastifyInstance } from "fastify";
import { createKeygate } from "../../src/keygate.js";
import type { CreatedKey, Keygate } from "../../src/keygate.js";
import { buildServer } from "../../src/http/server.js";
import { sha256Hex } from "../../src/keys/hash.js";
import { createManualClock } from "../../src/lib/clock.js";
import { createMemoryStore } from "../../src/store/memory/index.js";
import { KeygateError } from "../../src/lib/errors.js";

const ROOT = "kg_root_" + "r".repeat(40);
const T0 = Date.parse("2026-03-01T10:00:00Z");
const clock = createManualClock(T0);

let keygate: Keygate;
let app: FastifyInstance;
let acme: string;
let globex: string;
let limited: CreatedKey; // acme's, 3 per minute
let open: CreatedKey; // globex's, no limit
let appId: string;

const get = async (url: string, auth = true) => {
  const res = await app.inject({ method: "GET", url, headers: auth ? { authorization: `Bearer ${ROOT}` } : {} });
  return { status: res.statusCode, body: res.json() as Record<string, any>, raw: res.body };
};

before(async () => {
  keygate = await createKeygate({
    config: {
      apis: [
        { id: "pay", keyFormat: { prefix: "pk" }, features: { payments: [] } },
        { id: "mail", keyFormat: { prefix: "mk" } },
      ],
      cache: { changePollMs: 0 },
      usage: { flushIntervalMs: 600_000 },
      analytics: { flushIntervalMs: 600_000 },
    },
    store: createMemoryStore(),
    clock,
  });
  app = await buildServer({ keygate, rootKeyHash: sha256Hex(ROOT) });
  acme = (await keygate.accounts.create({ name: "Acme", email: "dev@acme.test" })).id;
  globex = (await keygate.accounts.create({ name: "Globex", email: "dev@globex.test" })).id;
  appId = (await keygate.applications.create({ accountId: acme, api: "pay", name: "Checkout" })).id;
  limited = await keygate.keys.create({ api: "pay", accountId: acme, applicationId: appId, rateLimit: { limit: 3, windowSeconds: 60 } });
  open = await keygate.keys.create({ api: "mail", accountId: globex, environment: "test" });

  // Minute 0: 5 calls of the limited key over HTTP (3 VALID, 2 RATE_LIMITED), 2 in-process of the open one.
  for (let i = 0; i < 5; i++) {
    const res = await app.inject({ method: "POST", url: "/v1/keys/verify", headers: { authorization: `Bearer ${ROOT}` }, payload: { api: "pay", key: limited.key, ip: "203.0.113.7" } });
    assert.equal(res.statusCode, 200);
  }
  await keygate.verifyKey({ api: "mail", key: open.key });
  await keygate.verifyKey({ api: "mail", key: open.key }, { method: "POST", path: "/send?token=secret", requestId: "req_lib" });
  // Minute 1: one unknown key, one malformed.
  clock.advance(60_000);
  await keygate.verifyKey({ api: "pay", key: `pk_live_${"x".repeat(32)}` });
  await keygate.verifyKey({ api: "pay", key: "nope" });
  await keygate.flush();
});

after(async () => {
  await app?.close();
  await keygate?.close();
});

describe("GET /v1/analytics", () => {
  test("per key and minute: counts, successes, errors by code and latency percentiles", async () => {
    const { status, body } = await get(`/v1/analytics?interval=minute&groupBy=key&from=${new Date(T0).toISOString()}&to=${new Date(T0 + 120_000).toISOString()}`);
    assert.equal(status, 200);
    assert.equal(body.interval, "minute");
    assert.equal(body.from, "2026-03-01T10:00:00.000Z");
    assert.equal(body.to, "2026-03-01T10:02:00.000Z");
    const byGroup = Object.fromEntries(body.data.map((g: any) => [g.group, g]));
    const l = byGroup[limited.id];
    assert.deepEqual({ ...l.total, latencyMs: undefined }, { count: 5, successes: 3, errors: 2, successRate: 0.6, errorsByCode: { RATE_LIMITED: 2 }, upstreamMs: null, latencyMs: undefined });
    assert.ok(l.total.latencyMs.p50 >= 0 && l.total.latencyMs.p50 <= l.total.latencyMs.p95 && l.total.latencyMs.p95 <= l.total.latencyMs.p99);
    assert.deepEqual(l.series.map((p: any) => [p.start, p.count]), [["2026-03-01T10:00:00.000Z", 5]]);
    assert.equal(byGroup[open.id].total.count, 2);
    // Requests without a key are one group, "none".
    assert.deepEqual(body.data.find((g: any) => g.group === null).total.errorsByCode, { MALFORMED_KEY: 1, NOT_FOUND: 1 });
    assert.equal(body.data[0].group, limited.id, "busiest group first");
  });

  test("per account, application and api; filters narrow; day totals match minute totals", async () => {
    const range = `from=${new Date(T0 - 3_600_000).toISOString()}&to=${new Date(T0 + 3_600_000).toISOString()}`;
    const accounts = (await get(`/v1/analytics?interval=hour&groupBy=account&${range}`)).body;
    assert.deepEqual(Object.fromEntries(accounts.data.map((g: any) => [g.group ?? "none", g.total.count])), { [acme]: 5, [globex]: 2, none: 2 });
    assert.equal(accounts.data[0].group, acme, "busiest first");
    const apps = (await get(`/v1/analytics?interval=hour&groupBy=application&${range}`)).body;
    assert.equal(apps.data.find((g: any) => g.group === appId).total.count, 5);
    const apis = (await get(`/v1/analytics?interval=day&groupBy=api`)).body;
    assert.deepEqual(Object.fromEntries(apis.data.map((g: any) => [g.group, g.total.count])), { pay: 7, mail: 2 });
    const rateLimited = (await get(`/v1/analytics?interval=minute&code=RATE_LIMITED&${"from=" + new Date(T0).toISOString()}`)).body;
    assert.deepEqual(rateLimited.data.map((g: any) => [g.group, g.total.count, g.total.successes]), [[null, 2, 0]]);
    const filtered = (await get(`/v1/analytics?interval=minute&accountId=${globex}&environment=test&api=mail&from=${new Date(T0).toISOString()}`)).body;
    assert.equal(filtered.data[0].total.count, 2);
    const none = (await get(`/v1/analytics?interval=minute&accountId=${globex}&keyId=${limited.id}&from=${new Date(T0).toISOString()}`)).body;
    assert.deepEqual(none.data, []);
  });

  test("bad input is a 400 with a stable code, never a 500", async () => {
    const cases: Array<[string, string, string?]> = [
      ["/v1/analytics?interval=week", "INVALID_REQUEST", "querystring.interval"],
      ["/v1/analytics?groupBy=colour", "INVALID_REQUEST", "querystring.groupBy"],
      ["/v1/analytics?from=yesterday", "INVALID_REQUEST", "querystring.from"],
      ["/v1/analytics?to=2026-13-01T00:00:00Z", "INVALID_REQUEST", "querystring.to"],
      ["/v1/analytics?limit=0", "INVALID_REQUEST", "querystring.limit"],
      ["/v1/analytics?limit=1001", "INVALID_REQUEST", "querystring.limit"],
      ["/v1/analytics?code=valid", "INVALID_REQUEST", "querystring.code"],
      ["/v1/analytics?colour=red", "INVALID_REQUEST", "querystring.colour"],
      ["/v1/analytics?from=2026-03-02T00:00:00Z&to=2026-03-01T00:00:00Z", "INVALID_TIME_RANGE"],
      ["/v1/analytics?interval=minute&from=2026-01-01T00:00:00Z&to=2026-03-01T00:00:00Z", "RANGE_TOO_LARGE"],
      ["/v1/logs?cursor=not-a-cursor", "INVALID_REQUEST", "querystring.cursor"],
      ["/v1/logs?status=99", "INVALID_REQUEST", "querystring.status"],
      ["/v1/logs?limit=abc", "INVALID_REQUEST", "querystring.limit"],
      ["/v1/logs?from=2026-03-02T00:00:00Z&to=2026-03-01T00:00:00Z", "INVALID_TIME_RANGE"],
    ];
    for (const [url, code, field] of cases) {
      const { status, body } = await get(url);
      assert.equal(status, 400, `${url}: ${JSON.stringify(body)}`);
      assert.equal(body.code, code, url);
      if (field) assert.equal(body.errors[0].field, field, url);
    }
    for (const url of ["/v1/logs/log_0000000000000000", `/v1/logs/${"x".repeat(65)}`, "/v1/keys/key_nope/usage"]) {
      const { status, body } = await get(url);
      assert.ok(status === 404 || status === 400, url);
      assert.ok(["LOG_NOT_FOUND", "KEY_NOT_FOUND", "INVALID_REQUEST"].includes(body.code), url);
    }
    assert.equal((await get("/v1/logs/log_0000000000000000")).body.code, "LOG_NOT_FOUND");
    assert.equal((await get("/v1/keys/key_nope/usage")).body.code, "KEY_NOT_FOUND");
  });

  test("every route needs the root key", async () => {
    for (const url of ["/v1/analytics", "/v1/logs", `/v1/logs/log_0000000000000000`, `/v1/keys/${limited.id}/usage`, "/v1/events"]) {
      const { status, body } = await get(url, false);
      assert.equal(status, 401, url);
      assert.equal(body.code, "UNAUTHORIZED");
    }
  });
});

describe("GET /v1/logs", () => {
  test("newest first, cursor-paginated, each request once; filters; one by id", async () => {
    const seen: any[] = [];
    let cursor: string | null = null;
    do {
      const { status, body } = await get(`/v1/logs?limit=2${cursor ? `&cursor=${cursor}` : ""}`);
      assert.equal(status, 200);
      assert.ok(body.data.length <= 2);
      seen.push(...body.data);
      cursor = body.nextCursor;
    } while (cursor);
    assert.equal(seen.length, 9);
    assert.deepEqual(seen.map((l) => l.id), [...seen.map((l) => l.id)].sort().reverse());
    assert.deepEqual(seen.slice(0, 2).map((l) => l.code).sort(), ["MALFORMED_KEY", "NOT_FOUND"]);

    const verified = (await get(`/v1/logs?keyId=${limited.id}&status=429`)).body.data;
    assert.equal(verified.length, 2);
    for (const l of verified) {
      assert.deepEqual({ ...l, id: undefined, latencyMs: undefined, requestId: undefined }, {
        id: undefined, at: new Date(T0).toISOString(), api: "pay", keyId: limited.id, accountId: acme, applicationId: appId, environment: "live",
        code: "RATE_LIMITED", status: 429, method: null, path: null, latencyMs: undefined, upstreamMs: null, ip: "203.0.113.7", requestId: undefined, source: "verify",
      });
      assert.match(l.requestId, /^req_/);
    }
    const lib = (await get(`/v1/logs?keyId=${open.id}`)).body.data;
    assert.deepEqual(lib.map((l: any) => JSON.stringify([l.source, l.method, l.path, l.requestId, l.status])).sort(), [
      '["library","POST","/send","req_lib",200]', '["library",null,null,null,200]',
    ], "the query string never reaches the log");

    const one = await get(`/v1/logs/${verified[0].id}`);
    assert.equal(one.status, 200);
    assert.deepEqual(one.body, verified[0]);
    const window = (await get(`/v1/logs?from=${new Date(T0 + 60_000).toISOString()}&to=${new Date(T0 + 120_000).toISOString()}`)).body.data;
    assert.equal(window.length, 2);
  });

  test("no secret is in any log or aggregate", async () => {
    const all = (await get("/v1/logs?limit=1000")).raw + (await get("/v1/analytics?interval=day&groupBy=key")).raw;
    for (const secret of [limited.key, open.key, "secret"]) assert.ok(!all.includes(secret), `found ${secret}`);
  });
});

describe("GET /v1/keys/:id/usage", () => {
  test("live rate-limit state read without consuming, and lifetime usage", async () => {
    clock.set(T0 + 10_000); // back in the first minute's window
    const first = await get(`/v1/keys/${limited.id}/usage`);
    assert.equal(first.status, 200);
    assert.deepEqual(first.body, {
      keyId: limited.id, api: "pay", accountId: acme,
      rateLimit: { limit: 3, windowSeconds: 60, used: 3, remaining: 0, resetAt: new Date(T0 + 60_000).toISOString() },
      usageCount: 3, lastUsedAt: new Date(T0).toISOString(),
    });
    assert.deepEqual((await get(`/v1/keys/${limited.id}/usage`)).body, first.body, "reading does not consume");
    clock.set(T0 + 120_000);
    assert.deepEqual((await get(`/v1/keys/${limited.id}/usage`)).body.rateLimit, { limit: 3, windowSeconds: 60, used: 0, remaining: 3, resetAt: new Date(T0 + 180_000).toISOString() });
    const unlimited = await get(`/v1/keys/${open.id}/usage`);
    assert.equal(unlimited.body.rateLimit, null);
    assert.equal(unlimited.body.usageCount, 2);
  });
});

describe("account scope (the portal's view)", () => {
  const notFound = (code: string) => (e: unknown) => e instanceof KeygateError && e.code === code && e.status === 404;

  test("a scope is ANDed into every filter", async () => {
    const mine = await keygate.analytics.query({ interval: "day", groupBy: "key" }, { accountId: globex });
    assert.deepEqual(mine.data.map((g) => g.group), [open.id]);
    const theirs = await keygate.analytics.query({ interval: "day", accountId: acme }, { accountId: globex });
    assert.deepEqual(theirs.data, []);
    const logs = await keygate.analytics.logs({ limit: 100 }, { accountId: globex });
    assert.deepEqual([...new Set(logs.data.map((l) => l.accountId))], [globex]);
    assert.deepEqual((await keygate.analytics.logs({ keyId: limited.id }, { accountId: globex })).data, []);
  });

  test("another account's log or key by id is not found, as if it did not exist", async () => {
    const acmeLog = (await keygate.analytics.logs({ accountId: acme, limit: 1 })).data[0]!;
    assert.equal((await keygate.analytics.log(acmeLog.id, { accountId: acme })).id, acmeLog.id);
    await assert.rejects(keygate.analytics.log(acmeLog.id, { accountId: globex }), notFound("LOG_NOT_FOUND"));
    await assert.rejects(keygate.analytics.keyUsage(limited.id, { accountId: globex }), notFound("KEY_NOT_FOUND"));
    assert.equal((await keygate.analytics.keyUsage(open.id, { accountId: globex })).keyId, open.id);
  });
});
