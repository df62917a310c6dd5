/**
 * Every series docs/operations.md lists is at /metrics and moves with the work it measures:
 * verdicts and their latency histogram, key-cache lookups, the limiter round trip, store
 * latency and errors, and the usage queue's depth until the flush empties it.
 */
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import type { FastifyInstance } from "fastify";
import { buildServer } from "../../src/http/server.js";
import { createKeygate } from "../../src/keygate.js";
import type { CreatedKey, Keygate } from "../../src/keygate.js";
import { sha256Hex } from "../../src/keys/hash.js";
import { createMetrics } from "../../src/ops/metrics.js";
import { createMemoryStore } from "../../src/store/memory/index.js";
import type { Store } from "../../src/store/types.js";

const ROOT = "metrics-test-root-key-0123456789abcdef";
let keygate: Keygate;
let app: FastifyInstance;
let limited: CreatedKey;
let plain: CreatedKey;
let failListKeys = false;

/** `name{labels}` → value, for every sample of the exposition (labels as printed, sorted by prom-client). */
async function scrape(): Promise<Map<string, number>> {
  const res = await app.inject({ method: "GET", url: "/metrics" });
  assert.equal(res.statusCode, 200);
  const samples = new Map<string, number>();
  for (const line of res.body.split("\n")) {
    const m = /^([a-z_]+(?:\{[^}]*\})?) (\S+)$/.exec(line);
    if (m) samples.set(m[1]!, Number(m[2]));
  }
  return samples;
}
const value = (s: Map<string, number>, series: string): number => s.get(series) ?? 0;

const verify = async (key: string): Promise<string> => {
  const res = await app.inject({ method: "POST", url: "/v1/keys/verify", headers: { authorization: `Bearer ${ROOT}` }, payload: { api: "pay", key } });
  assert.equal(res.statusCode, 200, res.body);
  return res.json().code as string;
};

before(async () => {
  const metrics = createMetrics({ defaultMetrics: false });
  const memory = createMemoryStore();
  const store: Store = { ...memory, listKeys: async (...args) => { if (failListKeys) throw new Error("store down"); return memory.listKeys(...args); } };
  keygate = await createKeygate({
    config: { apis: [{ id: "pay", keyFormat: { prefix: "pk" } }], cache: { changePollMs: 0 }, usage: { flushIntervalMs: 600_000 }, analytics: { flushIntervalMs: 600_000 } },
    store,
    metrics,
  });
  app = await buildServer({ keygate, rootKeyHash: sha256Hex(ROOT), metrics });
  const accountId = (await keygate.accounts.create({ name: "Acme", email: "dev@acme.test" })).id;
  limited = await keygate.keys.create({ api: "pay", accountId, rateLimit: { limit: 1000, windowSeconds: 60 } });
  plain = await keygate.keys.create({ api: "pay", accountId });
});
after(async () => {
  await app?.close();
  await keygate?.close();
});

describe("/metrics moves with verifications", () => {
  test("each series is declared with its type", async () => {
    const res = await app.inject({ method: "GET", url: "/metrics" });
    for (const [name, type] of [
      ["keygate_verifications_total", "counter"],
      ["keygate_verification_duration_seconds", "histogram"],
      ["keygate_cache_lookups_total", "counter"],
      ["keygate_limiter_duration_seconds", "histogram"],
      ["keygate_store_duration_seconds", "histogram"],
      ["keygate_store_errors_total", "counter"],
      ["keygate_usage_queue_depth", "gauge"],
    ]) assert.match(res.body, new RegExp(`^# TYPE ${name} ${type}$`, "m"), name);
  });

  test("verdicts, latency, cache, limiter, store and usage queue all count the verifications", async () => {
    const before = await scrape();
    const unknown = `pk_live_${"x".repeat(32)}`;
    // First sight of each key is a cache miss that reads the store; later ones are hits.
    assert.equal(await verify(limited.key), "VALID");
    assert.equal(await verify(limited.key), "VALID");
    assert.equal(await verify(limited.key), "VALID");
    assert.equal(await verify(plain.key), "VALID");
    assert.equal(await verify(unknown), "NOT_FOUND");
    assert.equal(await verify(unknown), "NOT_FOUND");
    const s = await scrape();
    const moved = (series: string): number => value(s, series) - value(before, series);

    assert.equal(moved('keygate_verifications_total{api="pay",code="VALID"}'), 4);
    assert.equal(moved('keygate_verifications_total{api="pay",code="NOT_FOUND"}'), 2);
    assert.equal(moved('keygate_verification_duration_seconds_count{api="pay"}'), 6);
    assert.ok(moved('keygate_verification_duration_seconds_sum{api="pay"}') > 0);
    assert.equal(moved('keygate_verification_duration_seconds_bucket{le="+Inf",api="pay"}'), 6);

    assert.equal(moved('keygate_cache_lookups_total{result="miss"}'), 3, "limited, plain and unknown, once each");
    assert.equal(moved('keygate_cache_lookups_total{result="hit"}'), 2);
    assert.equal(moved('keygate_cache_lookups_total{result="negative"}'), 1, "the unknown key, remembered as unknown");

    // Only a key with a rate limit goes to the limiter.
    assert.equal(moved("keygate_limiter_duration_seconds_count"), 3);
    assert.equal(moved('keygate_limiter_duration_seconds_bucket{le="+Inf"}'), 3);

    const storeReads = [...s.keys()].filter((k) => k.startsWith("keygate_store_duration_seconds_count{")).reduce((n, k) => n + moved(k), 0);
    assert.ok(storeReads >= 3, `the three cache misses read the store (${storeReads} store calls)`);

    assert.equal(value(s, "keygate_usage_queue_depth"), 2, "two keys with counts not yet written");
    await keygate.flush();
    const flushed = await scrape();
    assert.equal(value(flushed, "keygate_usage_queue_depth"), 0);
    assert.equal(value(flushed, 'keygate_store_duration_seconds_count{op="recordUsage"}') - value(s, 'keygate_store_duration_seconds_count{op="recordUsage"}'), 1, "one batched write");
  });

  test("a store call that throws is counted by operation", async () => {
    const before = await scrape();
    failListKeys = true;
    try {
      const res = await app.inject({ method: "GET", url: "/v1/keys?api=pay", headers: { authorization: `Bearer ${ROOT}` } });
      assert.equal(res.statusCode, 500);
    } finally {
      failListKeys = false;
    }
    const s = await scrape();
    assert.equal(value(s, 'keygate_store_errors_total{op="listKeys"}') - value(before, 'keygate_store_errors_total{op="listKeys"}'), 1);
    assert.equal(value(s, 'keygate_store_duration_seconds_count{op="listKeys"}') - value(before, 'keygate_store_duration_seconds_count{op="listKeys"}'), 1, "a failed call's latency is observed too");
  });

  test("no secret ever appears in the exposition", async () => {
    const res = await app.inject({ method: "GET", url: "/metrics" });
    for (const secret of [limited.key, plain.key, ROOT]) assert.ok(!res.body.includes(secret));
  });
});
