/**
 * Verify with Redis-backed limits and lockout against memory-backed ones, in one run.
 * Targets (issue 6): Redis throughput ≥ 60% of memory; Redis adds ≤ 0.3 ms at p50.
 *
 *   KEYGATE_TEST_REDIS_URL=redis://127.0.0.1:6379 node --import tsx bench/cluster-redis.ts
 */
import { performance } from "node:perf_hooks";
import { Redis } from "ioredis";
import { createKeygate, createMemoryStore } from "../src/index.js";
import type { Keygate, Lockout, RateLimiter } from "../src/index.js";
import { createRedisLockout, createRedisRateLimiter } from "../src/limits/redis/index.js";

const REDIS_URL = process.env.KEYGATE_TEST_REDIS_URL ?? process.env.KEYGATE_REDIS_URL;
const SECONDS = Number(process.env.BENCH_SECONDS ?? 4);
const CONCURRENCY = 64;

async function setup(limiter?: RateLimiter, lockout?: Lockout): Promise<{ keygate: Keygate; key: string }> {
  const keygate = await createKeygate({
    store: createMemoryStore(),
    ...(limiter ? { limiter } : {}), ...(lockout ? { lockout } : {}),
    config: { apis: [{ id: "bench", keyFormat: { prefix: "bk" }, scopes: ["read"], rateLimit: { limit: 1_000_000_000, windowSeconds: 3600 } }] },
  });
  const account = await keygate.accounts.create({ name: "bench", email: "bench@example.test" });
  const { key } = await keygate.keys.create({ api: "bench", accountId: account.id, scopes: ["read"] });
  return { keygate, key };
}

async function throughput(keygate: Keygate, key: string): Promise<number> {
  const req = { api: "bench", key, ip: "203.0.113.7", scopes: ["read"] };
  let done = 0;
  const end = performance.now() + SECONDS * 1000;
  const worker = async () => {
    while (performance.now() < end) {
      const v = await keygate.verifyKey(req);
      if (!v.valid) throw new Error(`unexpected ${v.code}`);
      done++;
    }
  };
  const start = performance.now();
  await Promise.all(Array.from({ length: CONCURRENCY }, worker));
  return done / ((performance.now() - start) / 1000);
}

async function latency(keygate: Keygate, key: string): Promise<{ p50: number; p99: number }> {
  const req = { api: "bench", key, ip: "203.0.113.7", scopes: ["read"] };
  const samples: number[] = [];
  for (let i = 0; i < 5000; i++) {
    const t = performance.now();
    await keygate.verifyKey(req);
    samples.push(performance.now() - t);
  }
  samples.sort((a, b) => a - b);
  return { p50: samples[Math.floor(samples.length * 0.5)]!, p99: samples[Math.floor(samples.length * 0.99)]! };
}

async function main(): Promise<void> {
  if (!REDIS_URL) {
    console.log("cluster-redis: skipped, KEYGATE_TEST_REDIS_URL is not set");
    return;
  }
  const redis = new Redis(REDIS_URL, { enableAutoPipelining: true });
  const keyPrefix = `keygate-bench:${process.pid}:`;
  const memory = await setup();
  const shared = await setup(createRedisRateLimiter({ redis, keyPrefix }), createRedisLockout({ redis, keyPrefix }));
  try {
    await throughput(memory.keygate, memory.key); // warm-up
    await throughput(shared.keygate, shared.key);
    const memOps = await throughput(memory.keygate, memory.key);
    const redisOps = await throughput(shared.keygate, shared.key);
    const memLat = await latency(memory.keygate, memory.key);
    const redisLat = await latency(shared.keygate, shared.key);
    const added = redisLat.p50 - memLat.p50;
    console.log(`verify, ${CONCURRENCY} in flight, ${SECONDS}s each:`);
    console.log(`  memory limits  ${Math.round(memOps).toLocaleString("en")} verifies/s   p50 ${memLat.p50.toFixed(3)} ms  p99 ${memLat.p99.toFixed(3)} ms`);
    console.log(`  Redis limits   ${Math.round(redisOps).toLocaleString("en")} verifies/s   p50 ${redisLat.p50.toFixed(3)} ms  p99 ${redisLat.p99.toFixed(3)} ms`);
    console.log(`  throughput ratio ${(redisOps / memOps).toFixed(2)} (target ≥ 0.60) ${redisOps / memOps >= 0.6 ? "PASS" : "MISS"}`);
    console.log(`  added p50 ${added.toFixed(3)} ms (target ≤ 0.300) ${added <= 0.3 ? "PASS" : "MISS"}`);
  } finally {
    await memory.keygate.close();
    await shared.keygate.close();
    const keys = await redis.keys(`${keyPrefix}*`);
    if (keys.length) await redis.del(...keys);
    redis.disconnect();
  }
}

await main();
