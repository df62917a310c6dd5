/**
 * Verify with Redis-backed limits and lockout against memory-backed ones, in one run.
 * Targets (issue 6): Redis throughput ≥ 60% of memory; Redis adds ≤ 0.3 ms at p50.
 *
 * Throughput is what a process can sustain: each setup runs batches of N verifications in
 * flight, for N = 64 and 1024, the two setups' rounds interleaved (see `compare` in ./lib.ts)
 * so that other work on the machine falls on both alike, and the target compares the best
 * figure of each. Memory limits reach their best at any N (nothing waits); Redis limits need
 * enough verifications in flight to fill the round trip, since every verification of a batch
 * waits for the one script call that answers it: at 64 in flight the process is idle for
 * about half of each batch (the round trip), at 1024 it is busy. The figure at each N is
 * printed too. Latency: one verification at a time.
 *
 *   KEYGATE_TEST_REDIS_URL=redis://127.0.0.1:6379 node --import tsx bench/cluster-redis.ts
 *   (BENCH_ROUNDS, BENCH_ROUND_MS, BENCH_WARMUP_MS to change the timing; BENCH_CONCURRENCY,
 *   "64,1024" by default, for the numbers of verifications in flight to measure)
 */
import { performance } from "node:perf_hooks";
import { Redis } from "ioredis";
import type { Keygate, Lockout, RateLimiter, Verdict, VerifyRequest } from "../src/index.js";
import { compare, dropRedisPrefix, infoRow, load, ratioRow, report, valueRow } from "./lib.js";
import type { Measurement, Row } from "./lib.js";

const BENCH = "cluster-redis";
const REDIS_URL = process.env.KEYGATE_TEST_REDIS_URL ?? process.env.KEYGATE_REDIS_URL;
const LEVELS = (process.env.BENCH_CONCURRENCY ?? "64,1024").split(",").map(Number);
if (LEVELS.some((n) => !Number.isInteger(n) || n < 1)) throw new Error(`BENCH_CONCURRENCY: positive integers separated by commas, got ${process.env.BENCH_CONCURRENCY}`);
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

/** `n` verifications in flight at once; resolves when all are done. */
function batchOf(keygate: Keygate, request: VerifyRequest, n: number): () => Promise<Verdict> {
  const inFlight: Promise<Verdict>[] = new Array(n);
  return async () => {
    for (let i = 0; i < n; i++) inFlight[i] = keygate.verifyKey(request);
    const all = await Promise.all(inFlight);
    return check(all[n - 1]!);
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
    const levels: { n: number; memory: Measurement; redis: Measurement }[] = [];
    for (const n of LEVELS) {
      const m = await compare({
        memory: { fn: batchOf(memory.keygate, memory.request, n), async: true, opsPerCall: n, callsPerCheck: 4 },
        redis: { fn: batchOf(shared.keygate, shared.request, n), async: true, opsPerCall: n, callsPerCheck: 4 },
      }, timing);
      levels.push({ n, ...m });
    }
    const best = (side: "memory" | "redis"): { n: number; ops: number } =>
      levels.map((l) => ({ n: l.n, ops: l[side].opsPerSec })).reduce((a, b) => (b.ops > a.ops ? b : a));
    const memBest = best("memory");
    const redisBest = best("redis");
    const memLat = await latency(memory.keygate, memory.request);
    const redisLat = await latency(shared.keygate, shared.request);
    const added = redisLat.p50 - memLat.p50;
    const ratio = redisBest.ops / memBest.ops;
    const ops = (x: number): string => Math.round(x).toLocaleString("en");
    console.log(`verify, ${timing.rounds} rounds of ${timing.roundMs} ms each per setup and number in flight, interleaved:`);
    for (const l of levels) {
      console.log(`  ${String(l.n).padStart(5)} in flight: memory limits ${ops(l.memory.opsPerSec)}/s, Redis limits ${ops(l.redis.opsPerSec)}/s (${(l.redis.opsPerSec / l.memory.opsPerSec).toFixed(2)})`);
    }
    console.log(`  best: memory ${ops(memBest.ops)}/s (${memBest.n} in flight), Redis ${ops(redisBest.ops)}/s (${redisBest.n} in flight)`);
    console.log(`  throughput ratio ${ratio.toFixed(2)} (target ≥ 0.60) ${ratio >= 0.6 ? "PASS" : "MISS"}`);
    console.log(`  one at a time: memory p50 ${memLat.p50.toFixed(3)} ms p99 ${memLat.p99.toFixed(3)} ms; Redis p50 ${redisLat.p50.toFixed(3)} ms p99 ${redisLat.p99.toFixed(3)} ms`);
    console.log(`  added p50 ${added.toFixed(3)} ms (target ≤ 0.300) ${added <= 0.3 ? "PASS" : "MISS"}`);
    const details = (x: Measurement): Record<string, unknown> => ({ nsPerOp: x.nsPerOp, spread: x.spread, rounds: x.rounds });
    const rows: Row[] = [
      ratioRow(BENCH, `verifyKey throughput, Redis limits (best: ${redisBest.n} in flight)`, redisBest.ops, "ops/s",
        { name: `memory limits (best: ${memBest.n} in flight)`, value: memBest.ops }, { atLeast: 0.6 },
        { levels: levels.map((l) => ({ inFlight: l.n, redis: details(l.redis), memory: details(l.memory) })) }),
      ...levels.map((l) => infoRow(BENCH, `verifyKey, Redis limits, ${l.n} in flight`, l.redis.opsPerSec, "ops/s", { name: "memory limits", value: l.memory.opsPerSec })),
      valueRow(BENCH, "verifyKey, p50 added by Redis limits", added, "ms", { atMost: 0.3 },
        { memory: memLat, redis: redisLat, samples: LATENCY_SAMPLES }),
    ];
    await report(BENCH, rows);
  } finally {
    await memory.keygate.close();
    await shared.keygate.close();
    await dropRedisPrefix(redis, keyPrefix);
  }
}

await main();
