/**
 * End to end over real HTTP: a gateway call (to a real upstream), a forward-auth call and a
 * verify-API call each produce one usage event with what that path knows, and it reaches the
 * request log and the aggregates.
 */
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import type { AddressInfo } from "node:net";
import type { FastifyInstance } from "fastify";
import { createKeygate } from "../../src/keygate.js";
import type { CreatedKey, Keygate } from "../../src/keygate.js";
import { buildServer } from "../../src/http/server.js";
import { sha256Hex } from "../../src/keys/hash.js";
import { createMemoryStore } from "../../src/store/memory/index.js";
import type { RequestLogView } from "../../src/analytics/index.js";
import { startUpstream } from "../http/gateway-support.js";
import type { Upstream } from "../http/gateway-support.js";

const ROOT = "kg_root_" + "e".repeat(40);

let keygate: Keygate;
let app: FastifyInstance;
let upstream: Upstream;
let base: string;
let key: CreatedKey;
let once: CreatedKey; // 1 request per minute

before(async () => {
  upstream = await startUpstream();
  keygate = await createKeygate({
    config: {
      apis: [{
        // Served under /status: the test upstream answers /status/<n> with status n, anything else with 200.
        id: "shop", keyFormat: { prefix: "sk" }, upstream: upstream.url, pathPrefix: "/status",
        routes: [{ methods: ["GET"], path: "/status/public", public: true }, { methods: ["*"], path: "/status/*" }],
      }],
      cache: { changePollMs: 0 },
      usage: { flushIntervalMs: 600_000 },
      analytics: { flushIntervalMs: 600_000 },
    },
    store: createMemoryStore(),
  });
  app = await buildServer({ keygate, rootKeyHash: sha256Hex(ROOT) });
  await app.listen({ port: 0, host: "127.0.0.1" });
  base = `http://127.0.0.1:${(app.server.address() as AddressInfo).port}`;
  const accountId = (await keygate.accounts.create({ name: "Acme", email: "dev@acme.test" })).id;
  key = await keygate.keys.create({ api: "shop", accountId });
  once = await keygate.keys.create({ api: "shop", accountId, rateLimit: { limit: 1, windowSeconds: 60 } });
});

after(async () => {
  await app?.close();
  await keygate?.close();
  await upstream?.close();
});

/** Waits until `n` more events were recorded (HTTP paths record when the response has ended). */
async function recorded(since: number, n: number): Promise<void> {
  const until = Date.now() + 3000;
  while (keygate.analytics.stats().recorded < since + n) {
    if (Date.now() > until) throw new Error(`expected ${n} events, got ${keygate.analytics.stats().recorded - since}`);
    await new Promise((r) => setTimeout(r, 5));
  }
  await new Promise((r) => setTimeout(r, 20)); // and no more than that
  assert.equal(keygate.analytics.stats().recorded, since + n);
}

async function logByRequestId(requestId: string): Promise<RequestLogView> {
  await keygate.analytics.flush();
  const res = await fetch(`${base}/v1/logs?limit=1000`, { headers: { authorization: `Bearer ${ROOT}` } });
  const page = await res.json() as { data: RequestLogView[] };
  const found = page.data.filter((l) => l.requestId === requestId);
  assert.equal(found.length, 1, `one log for ${requestId}`);
  return found[0]!;
}

describe("every verification path records one usage event", () => {
  test("gateway: method, path without query, the upstream's status and its latency", async () => {
    const start = keygate.analytics.stats().recorded;
    const res = await fetch(`${base}/status/orders/42?token=not-logged`, { headers: { authorization: `Bearer ${key.key}`, "x-request-id": "req_gw_ok" } });
    assert.equal(res.status, 200);
    await res.text();
    const failing = await fetch(`${base}/status/503`, { method: "DELETE", headers: { authorization: `Bearer ${key.key}`, "x-request-id": "req_gw_503" } });
    assert.equal(failing.status, 503);
    await failing.text();
    await recorded(start, 2);

    const ok = await logByRequestId("req_gw_ok");
    assert.deepEqual({ ...ok, id: undefined, at: undefined, latencyMs: undefined, upstreamMs: undefined }, {
      id: undefined, at: undefined, api: "shop", keyId: key.id, accountId: key.accountId, applicationId: null, environment: "live",
      code: "VALID", status: 200, method: "GET", path: "/status/orders/42", latencyMs: undefined, upstreamMs: undefined,
      ip: "127.0.0.1", requestId: "req_gw_ok", source: "gateway",
    });
    assert.ok(ok.latencyMs >= 0 && ok.upstreamMs! > 0, `keygate ${ok.latencyMs} ms, upstream ${ok.upstreamMs} ms`);
    const bad = await logByRequestId("req_gw_503");
    assert.equal(bad.status, 503);
    assert.equal(bad.method, "DELETE");
    assert.equal(bad.code, "VALID", "the key was fine; the upstream failed");
  });

  test("gateway: a denied key is recorded with the status the client got and no upstream time", async () => {
    const start = keygate.analytics.stats().recorded;
    const res = await fetch(`${base}/status/orders`, { headers: { authorization: `Bearer ${key.key}x`, "x-request-id": "req_gw_denied" } });
    assert.equal(res.status, 401);
    await res.text();
    await recorded(start, 1);
    const log = await logByRequestId("req_gw_denied");
    assert.deepEqual([log.code, log.status, log.keyId, log.upstreamMs, log.source], ["MALFORMED_KEY", 401, null, null, "gateway"]);
  });

  test("gateway: a public route is no verification and records nothing", async () => {
    const start = keygate.analytics.stats().recorded;
    const res = await fetch(`${base}/status/public`);
    assert.equal(res.status, 200);
    await res.text();
    await new Promise((r) => setTimeout(r, 50));
    assert.equal(keygate.analytics.stats().recorded, start);
  });

  test("forward-auth: the original method and path; for nginx, the real status behind the 403", async () => {
    const start = keygate.analytics.stats().recorded;
    const allowed = await fetch(`${base}/_auth/shop`, {
      headers: { authorization: `Bearer ${once.key}`, "x-original-uri": "/status/orders?api_key=nope", "x-original-method": "POST", "x-request-id": "req_fa_ok" },
    });
    assert.equal(allowed.status, 200);
    const limited = await fetch(`${base}/_auth/shop`, {
      headers: { authorization: `Bearer ${once.key}`, "x-original-uri": "/status/orders", "x-original-method": "POST", "x-request-id": "req_fa_429" },
    });
    assert.equal(limited.status, 403, "nginx only passes 401 and 403 on");
    assert.equal(limited.headers.get("x-keygate-status"), "429");
    await recorded(start, 2);
    const ok = await logByRequestId("req_fa_ok");
    assert.deepEqual([ok.source, ok.method, ok.path, ok.status, ok.code, ok.keyId, ok.upstreamMs], ["forward-auth", "POST", "/status/orders", 200, "VALID", once.id, null]);
    const denied = await logByRequestId("req_fa_429");
    assert.deepEqual([denied.status, denied.code], [429, "RATE_LIMITED"]);
  });

  test("verify API: the verdict's status and the request id of the call", async () => {
    const start = keygate.analytics.stats().recorded;
    const res = await fetch(`${base}/v1/keys/verify`, {
      method: "POST", headers: { authorization: `Bearer ${ROOT}`, "content-type": "application/json", "x-request-id": "req_verify" },
      body: JSON.stringify({ api: "shop", key: key.key, ip: "203.0.113.9" }),
    });
    assert.equal(res.status, 200);
    assert.equal(((await res.json()) as { code: string }).code, "VALID");
    await recorded(start, 1);
    const log = await logByRequestId("req_verify");
    assert.deepEqual([log.source, log.status, log.ip, log.keyId, log.method, log.path], ["verify", 200, "203.0.113.9", key.id, null, null]);
  });

  test("the aggregates count all of them, by key", async () => {
    await keygate.analytics.flush();
    const res = await fetch(`${base}/v1/analytics?interval=minute&groupBy=key&from=${new Date(Date.now() - 3_600_000).toISOString()}`, { headers: { authorization: `Bearer ${ROOT}` } });
    const body = await res.json() as { data: Array<{ group: string | null; total: { count: number; successes: number; errorsByCode: Record<string, number>; upstreamMs: unknown } }> };
    const by = Object.fromEntries(body.data.map((g) => [g.group ?? "none", g.total]));
    assert.equal(by[key.id]!.count, 3);
    assert.equal(by[key.id]!.successes, 3);
    assert.ok(by[key.id]!.upstreamMs !== null, "gateway calls carry upstream latency");
    assert.deepEqual(by[once.id]!.errorsByCode, { RATE_LIMITED: 1 });
    assert.deepEqual(by.none!.errorsByCode, { MALFORMED_KEY: 1 });
  });
});
