/**
 * How long a revocation made on node 1 takes to be enforced by node 2, over PostgreSQL and the
 * Redis invalidation bus; node 2's change-feed poll is slowed to 60 s so only the bus counts.
 * Target (issue 6): p99 ≤ 50 ms.
 *
 *   KEYGATE_TEST_PG_URL=postgres://postgres@127.0.0.1:5432/test KEYGATE_TEST_REDIS_URL=redis://127.0.0.1:6379 \
 *     node --import tsx bench/cluster-propagation.ts
 */
import { performance } from "node:perf_hooks";
import { Redis } from "ioredis";
import pg from "pg";
import type { Keygate } from "../src/index.js";
import { load, report, valueRow } from "./lib.js";

const BENCH = "cluster-propagation";
const { createKeygate } = await load<typeof import("../src/index.js")>("index.js");
const { createPostgresStore } = await load<typeof import("../src/store/postgres/index.js")>("store/postgres/index.js");
const { createRedisInvalidation } = await load<typeof import("../src/cluster/invalidation.js")>("cluster/invalidation.js");

const PG_URL = process.env.KEYGATE_TEST_PG_URL;
const REDIS_URL = process.env.KEYGATE_TEST_REDIS_URL;
const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 200);

async function node(url: string, channel: string): Promise<{ keygate: Keygate; redis: Redis }> {
  const redis = new Redis(REDIS_URL!, { enableAutoPipelining: true });
  const keygate = await createKeygate({
    store: createPostgresStore({ connectionString: url }),
    invalidation: createRedisInvalidation({ redis, channel }),
    config: { cache: { changePollMs: 60_000 }, apis: [{ id: "bench", keyFormat: { prefix: "bk" } }] },
  });
  return { keygate, redis };
}

const pct = (sorted: number[], p: number): number => sorted[Math.min(sorted.length - 1, Math.floor(sorted.length * p))]!;

async function main(): Promise<void> {
  if (!PG_URL || !REDIS_URL) {
    console.log("cluster-propagation: skipped, KEYGATE_TEST_PG_URL and KEYGATE_TEST_REDIS_URL are needed");
    return;
  }
  const admin = new pg.Client({ connectionString: PG_URL });
  await admin.connect();
  const db = `keygate_bench_${process.pid}`;
  await admin.query(`CREATE DATABASE ${db}`);
  const url = new URL(PG_URL);
  url.pathname = `/${db}`;
  const channel = `keygate-bench:${process.pid}:invalidate`;
  const one = await node(url.toString(), channel);
  const two = await node(url.toString(), channel);
  try {
    await new Promise((r) => setTimeout(r, 200)); // subscriptions up
    const account = await one.keygate.accounts.create({ name: "bench", email: "bench@example.test" });
    const samples: number[] = [];
    for (let i = 0; i < ROUNDS; i++) {
      const { key, id } = await one.keygate.keys.create({ api: "bench", accountId: account.id });
      const first = await two.keygate.verifyKey({ api: "bench", key });
      if (!first.valid) throw new Error(`node 2 did not accept a new key: ${first.code}`);
      const start = performance.now();
      await one.keygate.keys.revoke(id);
      for (;;) {
        if ((await two.keygate.verifyKey({ api: "bench", key })).code === "REVOKED") break;
        if (performance.now() - start > 5000) throw new Error("revocation not seen within 5 s");
        await new Promise((r) => setImmediate(r));
      }
      samples.push(performance.now() - start);
    }
    samples.sort((a, b) => a - b);
    const p50 = pct(samples, 0.5);
    const p99 = pct(samples, 0.99);
    const max = samples[samples.length - 1]!;
    console.log(`revocation propagation node 1 → node 2 over ${ROUNDS} keys (revoke call included):`);
    console.log(`  p50 ${p50.toFixed(2)} ms  p99 ${p99.toFixed(2)} ms  max ${max.toFixed(2)} ms`);
    console.log(`  target p99 ≤ 50 ms: ${p99 <= 50 ? "PASS" : "MISS"}`);
    const name = "revocation on node 1 enforced by node 2";
    await report(BENCH, [
      valueRow(BENCH, `${name}, p50`, p50, "ms"),
      valueRow(BENCH, `${name}, p99`, p99, "ms", { atMost: 50 }, { rounds: ROUNDS, max }),
    ]);
  } finally {
    await one.keygate.close();
    await two.keygate.close();
    one.redis.disconnect();
    two.redis.disconnect();
    await admin.query(`DROP DATABASE IF EXISTS ${db} WITH (FORCE)`);
    await admin.end();
  }
}

await main();
