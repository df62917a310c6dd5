/**
 * keygate's HTTP verify endpoint under load, against a bare Fastify route of the same Fastify
 * version: the cost of keygate's server (root-key check, body schema, the verification itself,
 * usage and analytics recording, response schema) over what any Fastify JSON endpoint costs.
 *
 * - keygate: `buildServer` (the server of `keygate serve`, logger off) over a memory store
 *   (BENCH_STORE=sqlite: SQLite in a temporary folder) and memory limits, default config
 *   otherwise (analytics on, the change poll on). `POST /v1/keys/verify` with the root key
 *   as bearer and `{api, key, ip, scopes}`: a cached key, the IP in its allowlist, the scope
 *   held, a rate limit no run can reach.
 * - baseline: `Fastify()` with one `POST /v1/keys/verify` route that parses the same JSON body
 *   and answers an object of the verdict's shape and size, serialised by JSON.stringify.
 *
 * Processes: each server runs in a child process of its own, as it would in production, so
 * neither pays for the other's heap (keygate's grows with the analytics it keeps); the load
 * generator, autocannon, runs in another child (on a 2-core machine, one core for it and one
 * for the server under load; in-process it would share the server's event loop, and a worker
 * thread would still share its process's heap and GC). This process only directs. Both
 * servers get the same connections and pipelining, in rounds that alternate and flip order
 * each round (B K K B B K …) so that a drift over the run favours neither; medians are
 * compared. Latency percentiles come from autocannon's per-response timings (hrtime, not its
 * 1 ms histogram). The server's CPU time per request is printed too: other load on the
 * machine moves it less than requests per second.
 *
 * Both server processes run with the V8 setting `keygate serve` gives its own process (no
 * allocation-site pretenuring, src/lib/serving-flags.ts), so each is measured as it is served.
 *
 * Target: keygate ≥ 0.85 × the bare route's requests per second.
 *
 * With KEYGATE_TEST_REDIS_URL set, a third server runs too: keygate with Redis rate limits and
 * lockout (the cluster setup of issue 6) in place of memory ones, in the same rounds, for
 * information: what shared, exact limits cost a node that answers verifications over HTTP.
 *
 *   node --import tsx bench/verify-http.ts
 *   BENCH_SECONDS (3 per run), BENCH_ROUNDS (5), BENCH_CONNECTIONS (32), BENCH_PIPELINING (1),
 *   BENCH_STORE (memory | sqlite), KEYGATE_TEST_REDIS_URL (adds the Redis-limits server)
 */
import { fork } from "node:child_process";
import { createHash, randomBytes } from "node:crypto";
import { mkdtempSync, rmSync } from "node:fs";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import Fastify from "fastify";
import type { FastifyInstance } from "fastify";
import type { CreateKeygateOptions, Store } from "../src/index.js";
import { checkAllLimited, children, dropRedisPrefix, fmt, infoRow, load, median, ratioRow, report, runLoad, stopChild, valueRow } from "./lib.js";
import type { Row } from "./lib.js";

const BENCH = "verify-http";
const SECONDS = Number(process.env.BENCH_SECONDS ?? 3);
const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 5);
const CONNECTIONS = Number(process.env.BENCH_CONNECTIONS ?? 32);
const PIPELINING = Number(process.env.BENCH_PIPELINING ?? 1);
const WARMUP_SECONDS = 2;
const STORE = process.env.BENCH_STORE === "sqlite" ? "sqlite" : "memory";
const ROLE = process.env.BENCH_VERIFY_HTTP_ROLE;
const REDIS_URL = process.env.KEYGATE_TEST_REDIS_URL;
/** In a keygate server process: "redis" for Redis rate limits and lockout, else memory ones. */
const LIMITS = process.env.BENCH_LIMITS === "redis" ? "redis" : "memory";

/** What a server process tells this one. */
type FromServer =
  | { type: "listening"; url: string; fastify: string; request?: LoadRequest; store?: string; limits?: string }
  | { type: "cpu"; micros: number };

interface LoadRequest { method: string; headers: Record<string, string>; body: string }

for (const signal of ["SIGINT", "SIGTERM"] as const) process.once(signal, () => process.exit(130));

// ── the servers, each in a child process ───────────────────────────────────────────────────

/** Serves `app` until told to stop; answers CPU-time questions meanwhile. */
async function serve(app: FastifyInstance, extra: Omit<Extract<FromServer, { type: "listening" }>, "type" | "url" | "fastify">, close: () => Promise<void>): Promise<void> {
  await app.listen({ port: 0, host: "127.0.0.1" });
  const url = `http://127.0.0.1:${(app.server.address() as AddressInfo).port}/v1/keys/verify`;
  process.on("message", (m: "cpu" | "stop") => {
    if (m === "cpu") {
      const u = process.cpuUsage();
      process.send!({ type: "cpu", micros: u.user + u.system } satisfies FromServer);
    } else {
      void app.close().then(close).finally(() => process.exit(0));
    }
  });
  process.once("disconnect", () => process.exit(0)); // the director is gone
  process.send!({ type: "listening", url, fastify: app.version, ...extra } satisfies FromServer);
}

/** Both servers run with the V8 setting `keygate serve` gives its process (src/lib/serving-flags.ts). */
async function asKeygateServeRuns(): Promise<void> {
  (await load<typeof import("../src/lib/serving-flags.js")>("lib/serving-flags.js")).tuneV8ForServing();
}

async function keygateProcess(): Promise<void> {
  await asKeygateServeRuns();
  const { createKeygate, createMemoryLockout, createMemoryRateLimiter, createMemoryStore, createSqliteStore } = await load<typeof import("../src/index.js")>("index.js");
  const { buildServer } = await load<typeof import("../src/http/server.js")>("http/server.js");
  const dataDir = STORE === "sqlite" ? mkdtempSync(join(tmpdir(), "keygate-bench-")) : null;
  if (dataDir) process.once("exit", () => rmSync(dataDir, { recursive: true, force: true }));
  const store: Store = dataDir ? createSqliteStore({ filename: join(dataDir, "keygate.db") }) : createMemoryStore();
  let limits: Pick<CreateKeygateOptions, "limiter" | "lockout"> = { limiter: createMemoryRateLimiter(), lockout: createMemoryLockout() };
  let closeLimits = async (): Promise<void> => {};
  if (LIMITS === "redis") {
    const { Redis } = await import("ioredis");
    const { createRedisLockout, createRedisRateLimiter } = await load<typeof import("../src/limits/redis/index.js")>("limits/redis/index.js");
    const redis = new Redis(REDIS_URL!);
    const keyPrefix = `keygate-bench-http:${process.pid}:`;
    limits = { limiter: createRedisRateLimiter({ redis, keyPrefix }), lockout: createRedisLockout({ redis, keyPrefix }) };
    closeLimits = () => dropRedisPrefix(redis, keyPrefix);
  }
  const keygate = await createKeygate({
    store,
    ...limits,
    config: {
      apis: [{ id: "bench", keyFormat: { prefix: "bk" }, scopes: ["read", "write"], rateLimit: { limit: 1_000_000_000, windowSeconds: 3600 } }],
    },
  });
  const rootKey = `kg_root_${randomBytes(30).toString("base64url")}`;
  const app = await buildServer({ keygate, rootKeyHash: createHash("sha256").update(rootKey).digest("hex") });
  const account = await keygate.accounts.create({ name: "bench", email: "bench@example.test" });
  const { key } = await keygate.keys.create({ api: "bench", accountId: account.id, scopes: ["read"], ipAllowlist: ["203.0.113.0/24"] });
  const request: LoadRequest = {
    method: "POST",
    headers: { "content-type": "application/json", authorization: `Bearer ${rootKey}` },
    body: JSON.stringify({ api: "bench", key, ip: "203.0.113.7", scopes: ["read"] }),
  };
  await serve(app, { request, store: store.kind, limits: LIMITS }, async () => { await keygate.close(); await closeLimits(); });
}

async function baselineProcess(): Promise<void> {
  await asKeygateServeRuns();
  // The same shape and size as keygate's verdict, built per request from the parsed body.
  const template = JSON.parse(process.env.BENCH_VERDICT ?? "{}") as Record<string, unknown>;
  const app = Fastify();
  app.post("/v1/keys/verify", async (request) => {
    const b = request.body as { api: string; key: string; ip?: string; scopes?: string[] };
    return { ...template, api: b.api, scopes: b.scopes ?? [] };
  });
  await serve(app, {}, async () => {});
}

interface ServerProcess {
  url: string;
  info: Extract<FromServer, { type: "listening" }>;
  /** The process's CPU time so far, microseconds. */
  cpu(): Promise<number>;
  stop(): Promise<void>;
}

async function startServer(role: "keygate" | "baseline", env: Record<string, string> = {}): Promise<ServerProcess> {
  const proc = fork(fileURLToPath(import.meta.url), [], { env: { ...process.env, ...env, BENCH_VERIFY_HTTP_ROLE: role }, stdio: ["ignore", "inherit", "inherit", "ipc"] });
  children.add(proc);
  const next = <T extends FromServer["type"]>(type: T, ms: number): Promise<Extract<FromServer, { type: T }>> => new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`the ${role} server did not answer within ${ms / 1000} s`)), ms);
    const onExit = (code: number | null): void => { clearTimeout(timer); reject(new Error(`the ${role} server exited with ${code}`)); };
    proc.once("exit", onExit);
    const onMessage = (m: FromServer): void => {
      if (m.type !== type) return;
      clearTimeout(timer);
      proc.off("exit", onExit).off("message", onMessage);
      resolve(m as Extract<FromServer, { type: T }>);
    };
    proc.on("message", onMessage);
  });
  const info = await next("listening", 60_000);
  return {
    url: info.url,
    info,
    cpu: async () => { const reply = next("cpu", 10_000); proc.send("cpu"); return (await reply).micros; },
    stop: () => stopChild(proc),
  };
}

// ── load generator ─────────────────────────────────────────────────────────────────────────

/** What one load run measured. Latencies in milliseconds. */
interface LoadResult {
  reqPerSec: number;
  ok: number;
  non2xx: number;
  errors: number;
  p50: number;
  p99: number;
  /** The load generator's CPU time over the run's wall time: near 1, it was the bottleneck. */
  loadCpu: number;
  /** The server process's CPU time per answered request, microseconds. */
  serverCpuUs: number;
}

/** One autocannon run of `seconds` against `server`, with the server's CPU time around it. */
async function loadRun(server: ServerProcess, request: LoadRequest, seconds: number): Promise<LoadResult> {
  const cpuBefore = await server.cpu();
  const r = await runLoad({ url: server.url, ...request, connections: CONNECTIONS, pipelining: PIPELINING, duration: seconds });
  const cpu = (await server.cpu()) - cpuBefore;
  return {
    reqPerSec: r.ok / r.duration, ok: r.ok, non2xx: r.non2xx, errors: r.errors, p50: r.p50, p99: r.p99, loadCpu: r.loadCpu,
    serverCpuUs: cpu / Math.max(1, r.ok),
  };
}

// ── the run ────────────────────────────────────────────────────────────────────────────────

async function main(): Promise<void> {
  const servers: ServerProcess[] = [];
  try {
    const keygate = await startServer("keygate");
    servers.push(keygate);
    const request = keygate.info.request!;
    const verify = async (server: ServerProcess): Promise<Record<string, unknown>> => {
      const r = server.info.request!;
      const res = await fetch(server.url, { method: "POST", headers: r.headers, body: r.body });
      const verdict = (await res.json()) as Record<string, unknown>;
      if (res.status !== 200 || verdict.valid !== true) throw new Error(`keygate (${server.info.limits} limits) answered ${res.status} ${JSON.stringify(verdict)}`);
      return verdict;
    };
    const first = await verify(keygate); // also loads the key into the cache
    const redis = REDIS_URL ? await startServer("keygate", { BENCH_LIMITS: "redis" }) : null;
    if (redis) {
      servers.push(redis);
      await verify(redis);
    }

    const baseline = await startServer("baseline", { BENCH_VERDICT: JSON.stringify(first) });
    servers.push(baseline);
    const answer = await (await fetch(baseline.url, { method: "POST", headers: request.headers, body: request.body })).text();
    if (keygate.info.fastify !== baseline.info.fastify) throw new Error(`Fastify ${keygate.info.fastify} in keygate, ${baseline.info.fastify} in the baseline`);
    console.log(`fastify ${baseline.info.fastify} on both; ${keygate.info.store} store; ${CONNECTIONS} connections × pipelining ${PIPELINING}, ` +
      `${ROUNDS} rounds of ${SECONDS} s each; response ${JSON.stringify(first).length} B (keygate) / ${answer.length} B (baseline)`);

    type Side = "baseline" | "keygate" | "redis";
    const targets: Partial<Record<Side, ServerProcess>> = { baseline, keygate, ...(redis ? { redis } : {}) };
    const sides = Object.keys(targets) as Side[];
    // The request each server answers: its own key (the baseline takes keygate's).
    const requestOf = (side: Side): LoadRequest => targets[side]!.info.request ?? request;
    for (const side of sides) await loadRun(targets[side]!, requestOf(side), WARMUP_SECONDS);
    // The limit's fixed window, so that a run crossing its end (the counts start again) is told apart.
    const resetBefore: Partial<Record<Side, number>> = {};
    for (const side of ["keygate", "redis"] as const) if (targets[side]) resetBefore[side] = ((await verify(targets[side]!)).ratelimit as { reset: number }).reset;
    const rounds: Record<Side, LoadResult[]> = { baseline: [], keygate: [], redis: [] };
    const answered: Record<Side, number> = { baseline: 0, keygate: 0, redis: 0 };
    for (let r = 0; r < ROUNDS; r++) {
      // Every other round in reverse order, so that a drift over the run favours no side.
      const order = r % 2 === 0 ? sides : [...sides].reverse();
      for (const side of order) {
        const x = await loadRun(targets[side]!, requestOf(side), SECONDS);
        if (x.non2xx || x.errors) throw new Error(`${side}: ${x.non2xx} non-2xx responses, ${x.errors} errors`);
        answered[side] += x.ok;
        rounds[side].push(x);
        console.log(`${side.padEnd(8)} ${fmt.ops(x.reqPerSec).padStart(10)}  p50 ${x.p50.toFixed(2)} ms  p99 ${x.p99.toFixed(2)} ms  ` +
          `server ${x.serverCpuUs.toFixed(1)} µs CPU/req  load generator ${(x.loadCpu * 100).toFixed(0)}% CPU`);
      }
    }

    // Every request counted as answered went through the limiter, which only a valid verdict
    // reaches; and the limit was never hit.
    for (const side of ["keygate", "redis"] as const) {
      const server = targets[side];
      if (!server) continue;
      const ratelimit = (await verify(server)).ratelimit as { limit: number; remaining: number; reset: number };
      const consumed = ratelimit.limit - ratelimit.remaining;
      checkAllLimited(side, { resetBefore: resetBefore[side], resetAfter: ratelimit.reset }, consumed, answered[side]);
    }

    const m = (side: Side, f: (x: LoadResult) => number): number => median(rounds[side].map(f));
    const loadCpu = Math.max(...rounds.baseline.map((x) => x.loadCpu));
    if (loadCpu > 0.9) console.warn(`bench: the load generator used ${(loadCpu * 100).toFixed(0)}% of a core against the baseline: the baseline figure may be its limit, not the server's`);

    const info = (name: string, value: number, unit: string, base: number): Row => infoRow(BENCH, name, value, unit, { name: "bare route", value: base });
    const rows: Row[] = [
      ratioRow(BENCH, `POST /v1/keys/verify, c=${CONNECTIONS} p=${PIPELINING}, ${keygate.info.store} store`, m("keygate", (x) => x.reqPerSec), "req/s",
        { name: "bare Fastify route", value: m("baseline", (x) => x.reqPerSec) }, { atLeast: 0.85 },
        { rounds: rounds.keygate.map((x) => x.reqPerSec), baselineRounds: rounds.baseline.map((x) => x.reqPerSec), fastify: baseline.info.fastify }),
      info("latency p50", m("keygate", (x) => x.p50), "ms", m("baseline", (x) => x.p50)),
      info("latency p99", m("keygate", (x) => x.p99), "ms", m("baseline", (x) => x.p99)),
      // Inverted, so that the ratio reads as the throughput ratio does (higher is better).
      info("server capacity (1 / CPU per request)", 1e6 / m("keygate", (x) => x.serverCpuUs), "req/CPU-s", 1e6 / m("baseline", (x) => x.serverCpuUs)),
      valueRow(BENCH, "load generator CPU (max, baseline runs)", loadCpu * 100, "%"),
    ];
    if (redis) {
      rows.push(infoRow(BENCH, "POST /v1/keys/verify with Redis limits and lockout", m("redis", (x) => x.reqPerSec), "req/s",
        { name: "keygate, memory limits", value: m("keygate", (x) => x.reqPerSec) }, { rounds: rounds.redis.map((x) => x.reqPerSec) }));
      rows.push(infoRow(BENCH, "  the same, latency p50", m("redis", (x) => x.p50), "ms", { name: "keygate, memory limits", value: m("keygate", (x) => x.p50) }));
    }
    await report(BENCH, rows);
  } finally {
    await Promise.all(servers.map((s) => s.stop()));
  }
}

if (ROLE === "keygate") await keygateProcess();
else if (ROLE === "baseline") await baselineProcess();
else await main();
