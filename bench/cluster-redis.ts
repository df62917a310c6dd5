/**
 * Verify with Redis-backed limits and lockout against memory-backed ones, in one run.
 * Targets (issue 6): Redis throughput ≥ 60% of memory; Redis adds ≤ 0.3 ms at p50.
 *
 * Throughput: batches of 64 verifications in flight, the two setups' rounds interleaved (see
 * `compare` in ./lib.ts) so that other work on the machine falls on both alike. Latency: one
 * verification at a time.
 *
 *   KEYGATE_TEST_REDIS_URL=redis://127.0.0.1:6379 node --import tsx bench/cluster-redis.ts
 *   (BENCH_ROUNDS, BENCH_ROUND_MS, BENCH_WARMUP_MS to change the timing; BENCH_CONCURRENCY, 64 by
 *   default, for the verifications in flight — throughput grows with it, up to the CPU)
 */
import { performance } from "node:perf_hooks";
import { Redis } from "ioredis";
import type { Keygate, Lockout, RateLimiter, Verdict, VerifyRequest } from "../src/index.js";
import { compare, load, ratioRow, report, valueRow } from "./lib.js";

const BENCH = "cluster-redis";
const REDIS_URL = process.env.KEYGATE_TEST_REDIS_URL ?? process.env.KEYGATE_REDIS_URL;
const CONCURRENCY = Number(process.env.BENCH_CONCURRENCY ?? 64);
const LATENCY_SAMPLES = 5000;
const timing = {
  rounds: Number(process.env.BENCH_ROUNDS ?? 7),
  roundMs: Number(process.env.BENCH_ROUND_MS ?? 500),
  warmupMs: Number(process.env.BENCH_WARMUP_MS ?? 1500),
};

const { createKeygate, createMemoryStore } = await load<typeof import("../src/index.js")>("index.js");
const { createRedisLockout, createRedisRateLimiter } = await load<typeof import("../src/limits/redis/index.js")>("limits/redis/index.js");

async function setup(limiter?: RateLimiter, lockout?: Lockout): Promise<{ keygate: Keygate; request: VerifyRequest }> {
  const keygate = await createKeygate({
    store: createMemoryStore(),
    ...(limiter ? { limiter } : {}), ...(lockout ? { lockout } : {}),
    config: { apis: [{ id: "bench", keyFormat: { prefix: "bk" }, scopes: ["read"], rateLimit: { limit: 1_000_000_000, windowSeconds: 3600 } }] },
  });
  const account = await keygate.accounts.create({ name: "bench", email: "bench@example.test" });
  const { key } = await keygate.keys.create({ api: "bench", accountId: account.id, scopes: ["read"] });
  return { keygate, request: { api: "bench", key, ip: "203.0.113.7", scopes: ["read"] } };
}

const check = (v: Verdict): Verdict => {
  if (!v.valid) throw new Error(`unexpected ${v.code}`);
  return v;
};

/** `CONCURRENCY` verifications in flight at once; resolves when all are done. */
function batchOf(keygate: Keygate, request: VerifyRequest): () => Promise<Verdict> {
  const inFlight: Promise<Verdict>[] = new Array(CONCURRENCY);
  return async () => {
    for (let i = 0; i < CONCURRENCY; i++) inFlight[i] = keygate.verifyKey(request);
    const all = await Promise.all(inFlight);
    return check(all[CONCURRENCY - 1]!);
  };
}

async function latency(keygate: Keygate, request: VerifyRequest): Promise<{ p50: number; p99: number }> {
  const samples: number[] = [];
  for (let i = 0; i < LATENCY_SAMPLES; i++) {
    const t = performance.now();
    check(await keygate.verifyKey(request));
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
    const m = await compare({
      memory: { fn: batchOf(memory.keygate, memory.request), async: true, opsPerCall: CONCURRENCY, callsPerCheck: 4 },
      redis: { fn: batchOf(shared.keygate, shared.request), async: true, opsPerCall: CONCURRENCY, callsPerCheck: 4 },
    }, timing);
    const memOps = m.memory.opsPerSec;
    const redisOps = m.redis.opsPerSec;
    const memLat = await latency(memory.keygate, memory.request);
    const redisLat = await latency(shared.keygate, shared.request);
    const added = redisLat.p50 - memLat.p50;
    const ratio = redisOps / memOps;
    console.log(`verify, ${CONCURRENCY} in flight, ${timing.rounds} rounds of ${timing.roundMs} ms each, interleaved:`);
    console.log(`  memory limits  ${Math.round(memOps).toLocaleString("en")} verifies/s   p50 ${memLat.p50.toFixed(3)} ms  p99 ${memLat.p99.toFixed(3)} ms`);
    console.log(`  Redis limits   ${Math.round(redisOps).toLocaleString("en")} verifies/s   p50 ${redisLat.p50.toFixed(3)} ms  p99 ${redisLat.p99.toFixed(3)} ms`);
    console.log(`  throughput ratio ${ratio.toFixed(2)} (target ≥ 0.60) ${ratio >= 0.6 ? "PASS" : "MISS"}`);
    console.log(`  added p50 ${added.toFixed(3)} ms (target ≤ 0.300) ${added <= 0.3 ? "PASS" : "MISS"}`);
    const details = (x: typeof m.memory): Record<string, unknown> => ({ nsPerOp: x.nsPerOp, spread: x.spread, rounds: x.rounds });
    await report(BENCH, [
      ratioRow(BENCH, `verifyKey, Redis limits, ${CONCURRENCY} in flight`, redisOps, "ops/s", { name: "memory limits", value: memOps }, { atLeast: 0.6 },
        { ...details(m.redis), baseline: details(m.memory) }),
      valueRow(BENCH, "verifyKey, p50 added by Redis limits", added, "ms", { atMost: 0.3 },
        { memory: memLat, redis: redisLat, samples: LATENCY_SAMPLES }),
    ]);
  } finally {
    await memory.keygate.close();
    await shared.keygate.close();
    const keys = await redis.keys(`${keyPrefix}*`);
    if (keys.length) await redis.del(...keys);
    redis.disconnect();
  }
}

await main();
