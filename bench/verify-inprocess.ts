/**
 * In-process verification of a cached key, the hot path of every deployment, against the
 * least any verification must do: one SHA-256 of the presented key and one Map lookup.
 *
 * Setup: memory store, memory rate limiter (limit far above what a run reaches), lockout
 * enabled, the client IP in the key's allowlist, one required scope. Two ways of calling:
 * one verification awaited after another, and batches of 64 in flight at once (what a busy
 * server sees). Targets: ratio ≥ 0.3 to the baseline; ≥ 1,000,000 verifies/s absolute.
 *
 *   node --import tsx bench/verify-inprocess.ts        (BENCH_ROUNDS, BENCH_ROUND_MS to change the timing)
 */
import * as crypto from "node:crypto";
import { createHash } from "node:crypto";
import type { Verdict, VerifyRequest } from "../src/index.js";
import { compare, fmt, load, ratioRow, report, valueRow } from "./lib.js";
import type { Row } from "./lib.js";

const BENCH = "verify-inprocess";
const BATCH = 64;
const IP = "203.0.113.7";
const timing = {
  rounds: Number(process.env.BENCH_ROUNDS ?? 7),
  roundMs: Number(process.env.BENCH_ROUND_MS ?? 500),
  warmupMs: Number(process.env.BENCH_WARMUP_MS ?? 1500),
};

const { createKeygate, createMemoryLockout, createMemoryRateLimiter, createMemoryStore } = await load<typeof import("../src/index.js")>("index.js");
const keygate = await createKeygate({
  store: createMemoryStore(),
  limiter: createMemoryRateLimiter(),
  lockout: createMemoryLockout(),
  config: {
    apis: [{
      id: "bench",
      keyFormat: { prefix: "bk" },
      scopes: ["read", "write"],
      // The largest limit the config allows: a run of a few seconds cannot exhaust it.
      rateLimit: { limit: 1_000_000_000, windowSeconds: 3600 },
      lockout: { enabled: true, maxAttempts: 5, windowSeconds: 900, blockSeconds: 900 },
    }],
  },
});

try {
  const account = await keygate.accounts.create({ name: "bench", email: "bench@example.test" });
  const { key } = await keygate.keys.create({ api: "bench", accountId: account.id, scopes: ["read"], ipAllowlist: ["203.0.113.0/24"] });
  const request: VerifyRequest = { api: "bench", key, ip: IP, scopes: ["read"] };

  const check = (v: Verdict): void => { if (!v.valid) throw new Error(`expected a valid verdict, got ${v.code}`); };
  check(await keygate.verifyKey(request)); // loads the key into the cache

  // The baseline: what no verification can do without, with the fastest SHA-256 Node offers
  // (one-shot crypto.hash where it exists, as keygate itself uses).
  const oneShot = (crypto as { hash?: (a: string, d: string, e: "hex") => string }).hash;
  const sha256 = oneShot ? (s: string): string => oneShot("sha256", s, "hex") : (s: string): string => createHash("sha256").update(s).digest("hex");
  const table = new Map<string, { id: string }>([[sha256(key), { id: "key" }]]);
  const baseline = (): unknown => table.get(sha256(key));
  if (baseline() === undefined) throw new Error("baseline lookup missed");

  const inFlight: Promise<Verdict>[] = new Array(BATCH);
  const batch = async (): Promise<Verdict> => {
    for (let i = 0; i < BATCH; i++) inFlight[i] = keygate.verifyKey(request);
    const all = await Promise.all(inFlight);
    return all[BATCH - 1]!;
  };

  const m = await compare({
    baseline: { fn: baseline },
    sequential: { fn: () => keygate.verifyKey(request), async: true },
    batch: { fn: batch, async: true, opsPerCall: BATCH, callsPerCheck: 4 },
  }, timing);

  // Every verification in the run must have been a valid one (no limiter trip, no lockout).
  check(await keygate.verifyKey(request));
  check(await batch());

  for (const [name, x] of Object.entries(m)) {
    console.log(`${name.padEnd(10)} ${fmt.ops(x.opsPerSec).padStart(14)}  ${fmt.ns(x.nsPerOp).padStart(8)}/op  spread ${(x.spread * 100).toFixed(1)}%  rounds ${x.rounds.map((r) => Math.round(r)).join(" ")}`);
  }
  const base = { name: "sha256+Map", value: m.baseline.opsPerSec };
  const details = (x: typeof m.baseline): Record<string, unknown> => ({ nsPerOp: x.nsPerOp, spread: x.spread, rounds: x.rounds, baselineNsPerOp: m.baseline.nsPerOp });
  const rows: Row[] = [
    ratioRow(BENCH, "verifyKey, sequential awaits", m.sequential.opsPerSec, "ops/s", base, { atLeast: 0.3 }, details(m.sequential)),
    ratioRow(BENCH, `verifyKey, batches of ${BATCH} in flight`, m.batch.opsPerSec, "ops/s", base, { atLeast: 0.3 }, details(m.batch)),
    valueRow(BENCH, "verifyKey, sequential awaits (absolute)", m.sequential.opsPerSec, "ops/s", { atLeast: 1_000_000 }),
    valueRow(BENCH, `verifyKey, batches of ${BATCH} (absolute)`, m.batch.opsPerSec, "ops/s", { atLeast: 1_000_000 }),
  ];
  await report(BENCH, rows);
} finally {
  await keygate.close();
}
