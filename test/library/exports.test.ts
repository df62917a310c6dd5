/**
 * keygate as a library on the PostgreSQL and Redis a cluster of keygate services shares, used
 * the way an installed copy is: everything comes from the built entry points (`keygate`,
 * `keygate/express`, resolved through package.json to dist/), nothing from src/. Two in-process
 * "nodes" share one throwaway database, one Redis key prefix and the Redis invalidation bus;
 * keys are verified through the Express middleware over real HTTP.
 *
 * Run after `npm run build` (npm test does); the PostgreSQL + Redis suite needs
 * KEYGATE_TEST_PG_URL and KEYGATE_TEST_REDIS_URL and is skipped, saying so, without them.
 */
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { existsSync } from "node:fs";
import type { Server } from "node:http";
import type { AddressInfo } from "node:net";
import { fileURLToPath } from "node:url";
import express from "express";
import { Redis } from "ioredis";
import {
  createTestDatabase, deleteRedisKeys, PG_AND_REDIS_SKIP, REDIS_URL, uniqueRedisPrefix, waitFor,
} from "../support/scale-out.js";
import type { TestDatabase } from "../support/scale-out.js";

type KeygateModule = typeof import("../../src/index.js");
type ExpressModule = typeof import("../../src/middleware/express/index.js");
type Keygate = import("../../src/index.js").Keygate;
type KeygateMetrics = import("../../src/index.js").KeygateMetrics;

const ROOT = fileURLToPath(new URL("../../", import.meta.url));
const built = existsSync(`${ROOT}dist/index.js`) && existsSync(`${ROOT}dist/middleware/express/index.js`);
const NOT_BUILT = "dist/ is not built: run npm run build";
// Computed specifiers: resolved at run time by Node through package.json (to dist/), not by tsc.
const load = <T>(specifier: string): Promise<T> => import(specifier) as Promise<T>;

test("keygate exports the PostgreSQL, Redis, failure-mode and metrics factories, and importing it loads neither pg, ioredis nor prom-client", { skip: built ? false : NOT_BUILT }, async () => {
  assert.equal(fileURLToPath(import.meta.resolve("keygate")), `${ROOT}dist/index.js`);
  const kg = await load<KeygateModule>("keygate");
  for (const name of ["createPostgresStore", "createRedisRateLimiter", "createRedisLockout", "createRedisInvalidation", "createMemoryInvalidationHub", "withFailureMode", "createMetrics"] as const) {
    assert.equal(typeof kg[name], "function", name);
  }
  // A fresh process: which drivers does `import "keygate"` load by itself?
  const probe = `
    import { createRequire } from "node:module";
    await import("keygate");
    const cache = Object.keys(createRequire(import.meta.url).cache);
    console.log(JSON.stringify(["pg", "ioredis", "prom-client"].filter((m) => cache.some((f) => f.includes("/node_modules/" + m + "/")))));`;
  const run = spawnSync(process.execPath, ["--input-type=module", "-e", probe], { cwd: ROOT, encoding: "utf8" });
  assert.equal(run.status, 0, run.stderr);
  assert.deepEqual(JSON.parse(run.stdout), []);
});

describe("in-process keygate on shared PostgreSQL and Redis, through the Express middleware", { skip: built ? PG_AND_REDIS_SKIP : NOT_BUILT }, () => {
  let db: TestDatabase;
  let redis: Redis;
  const prefix = uniqueRedisPrefix("library");
  let a: Keygate;
  let b: Keygate;
  let metrics: KeygateMetrics;
  let server: Server;
  let url: string;
  let accountId: string;

  before(async () => {
    const { createKeygate, createPostgresStore, createRedisLockout, createRedisRateLimiter, createRedisInvalidation, withFailureMode, createMetrics } = await load<KeygateModule>("keygate");
    const { keygateAuth, requireScopes } = await load<ExpressModule>("keygate/express");
    db = await createTestDatabase();
    // As `keygate serve` connects: no offline queue and a command timeout, so that a Redis
    // outage is answered by the failure mode at once instead of holding verifications.
    redis = new Redis(REDIS_URL!, { enableAutoPipelining: true, enableOfflineQueue: false, maxRetriesPerRequest: 1, commandTimeout: 1000 });
    await new Promise<void>((resolve, reject) => redis.once("ready", resolve).once("error", reject));

    const config = {
      // The change feed polls once a minute: only the Redis bus can explain a revocation seen at once.
      cache: { changePollMs: 60_000 },
      usage: { flushIntervalMs: 600_000 },
      analytics: { flushIntervalMs: 600_000 },
      redis: { keyPrefix: prefix },
      apis: [{ id: "pay", keyFormat: { prefix: "pk", checksum: true }, scopes: ["wallets.read", "wallets.write"], lockout: { maxAttempts: 3, windowSeconds: 600, blockSeconds: 600 } }],
    };
    const node = async (withMetrics?: KeygateMetrics): Promise<Keygate> => {
      const { limiter, lockout } = withFailureMode(createRedisRateLimiter({ redis, keyPrefix: prefix }), createRedisLockout({ redis, keyPrefix: prefix }), "closed");
      return createKeygate({
        config, limiter, lockout,
        store: createPostgresStore({ connectionString: db.url, maxConnections: 4 }),
        invalidation: createRedisInvalidation({ redis, channel: `${prefix}invalidate` }),
        ...(withMetrics ? { metrics: withMetrics } : {}),
      });
    };
    metrics = createMetrics({ defaultMetrics: false });
    a = await node(metrics);
    b = await node();

    const app = express();
    app.use("/v1", keygateAuth({ keygate: a, api: "pay" }));
    app.get("/v1/wallets", requireScopes("wallets.read"), (req, res) => { res.json({ account: req.keygate!.accountId }); });
    server = await new Promise<Server>((resolve) => { const s = app.listen(0, "127.0.0.1", () => resolve(s)); });
    url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
    accountId = (await b.accounts.create({ name: "Acme", email: "dev@acme.test" })).id;
  });

  after(async () => {
    if (server) {
      server.closeAllConnections();
      await new Promise((resolve) => server.close(resolve));
    }
    await a?.close();
    await b?.close();
    if (redis) {
      await deleteRedisKeys(redis, prefix);
      redis.disconnect();
    }
    await db?.drop();
  });

  const get = (key: string): Promise<Response> => fetch(`${url}/v1/wallets`, { headers: { authorization: `Bearer ${key}` } });
  const redisKeys = async (pattern: string): Promise<string[]> => (await redis.scan("0", "MATCH", `${prefix}${pattern}`, "COUNT", 1000))[1];

  test("a key issued by one node is admitted by another's middleware; its rate limit is counted in Redis", async () => {
    const { id, key } = await b.keys.create({ api: "pay", accountId, scopes: ["wallets.read"], rateLimit: { limit: 2, windowSeconds: 3600 } });
    const first = await get(key);
    assert.equal(first.status, 200);
    assert.deepEqual(await first.json(), { account: accountId });
    assert.equal(first.headers.get("x-ratelimit-remaining"), "1");
    assert.equal((await get(key)).status, 200);
    const limited = await get(key);
    assert.equal(limited.status, 429);
    assert.equal(((await limited.json()) as { code: string }).code, "RATE_LIMITED");
    assert.ok((await redisKeys(`rl:*`)).length > 0, "the window lives in Redis under the prefix");
    // The other node reads the same window.
    assert.equal((await b.analytics.keyUsage(id)).rateLimit?.remaining, 0);
  });

  test("a wrong key is refused, and the failure counted by the Redis lockout", async () => {
    const res = await get("pk_live_notarealkey000000000000000000000");
    assert.equal(res.status, 401);
    assert.equal(res.headers.get("www-authenticate")?.startsWith("Bearer"), true);
    assert.ok((await redisKeys(`lo:*`)).length > 0, "the failure lives in Redis under the prefix");
  });

  test("a key revoked on the other node is refused at once, through the Redis invalidation bus", async () => {
    const { id, key } = await b.keys.create({ api: "pay", accountId, scopes: ["wallets.read"] });
    assert.equal((await get(key)).status, 200); // now in node a's cache
    await b.keys.revoke(id);
    await waitFor("node a to refuse the revoked key", async () => (await get(key)).status === 401, 3000, 25);
  });

  test("verifications and store calls are counted in the metrics registry", async () => {
    const text = await metrics.registry.metrics();
    assert.match(text, /keygate_verifications_total\{api="pay",code="VALID"\} [1-9]/);
    assert.match(text, /keygate_store_duration_seconds_count\{op="[a-zA-Z]+"\} [1-9]/);
  });
});
