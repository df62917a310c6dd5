/**
 * Gateway mode under load: requests through keygate's gateway that must present a key,
 * against the same gateway forwarding a route marked `public: true`, in one run.
 *
 * Why the public route is the baseline: it is the same process, the same Fastify instance and
 * the same gateway handler — route matching, request id, header hygiene (credentials and
 * hop-by-hop fields stripped, X-Forwarded-*), @fastify/reply-from over an undici pool with the
 * same options, to the same upstream — minus exactly what turning authentication on adds:
 * reading the key, verifying it (cache, allowlist, scopes, rate limit, lockout), recording the
 * analytics event, and the identity and X-RateLimit-* headers. That is the question "what does
 * auth cost", as Kong's published figure (74% of its throughput kept with key-auth on) asks it.
 * A bare Fastify + reply-from proxy is measured too, for information: the gap between it and
 * the public route is the gateway's own proxying work, which is not authentication.
 *
 * - auth:   `GET /auth/orders/42`, `Authorization: Bearer <key>`; route scope `orders.read`,
 *           key allowlist 127.0.0.0/8, rate limit far above what a run reaches.
 * - public: `GET /open/orders/42`, the same headers (the bearer is stripped unread).
 * - bare:   `GET /bare/orders/42` through `Fastify()` + reply-from with the same pool options.
 *
 * Processes: this one runs the three servers (`buildGatewayServer`, logger off, memory store,
 * default config otherwise); the upstream (test/http/gateway-support.ts `startUpstream`, a
 * node:http echo) runs in a child process, so it does not share the gateway's event loop; the
 * load generator (autocannon) in another. On a 2-core machine the three share the cores, so
 * the upstream's and load generator's work, the same on every side, dilutes the throughput
 * ratio; the gateway process's CPU time per request is printed too, and its ratio is what
 * the throughput ratio would be were the gateway the only thing on its core.
 * Rounds alternate and flip order each round; medians are compared.
 * This process runs with the V8 setting `keygate serve` gives its own (no allocation-site
 * pretenuring, src/lib/serving-flags.ts): without it, a gateway process sometimes spent ~17 µs
 * per request in garbage collection instead of ~2 µs, at random from one start to the next.
 *
 * Target: auth ≥ 0.85 × public, requests per second.
 *
 *   node --import tsx bench/gateway.ts
 *   BENCH_SECONDS (3 per run), BENCH_ROUNDS (5), BENCH_CONNECTIONS (32), BENCH_PIPELINING (1)
 */
import { fork } from "node:child_process";
import { fileURLToPath } from "node:url";
import Fastify from "fastify";
import type { FastifyInstance } from "fastify";
import replyFrom from "@fastify/reply-from";
import type { AddressInfo } from "node:net";
import { checkAllLimited, children, fmt, infoRow, load, median, ratioRow, report, runLoad, stopChild } from "./lib.js";
import type { Row } from "./lib.js";

const BENCH = "gateway";
const SECONDS = Number(process.env.BENCH_SECONDS ?? 3);
const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 5);
const CONNECTIONS = Number(process.env.BENCH_CONNECTIONS ?? 32);
const PIPELINING = Number(process.env.BENCH_PIPELINING ?? 1);
const WARMUP_SECONDS = 2;

for (const signal of ["SIGINT", "SIGTERM"] as const) process.once(signal, () => process.exit(130));

// ── the upstream, in a child process ───────────────────────────────────────────────────────

/** The child's part: the echo upstream until the parent says stop, or goes away. */
async function upstreamProcess(): Promise<void> {
  const { startUpstream } = await import("../test/http/gateway-support.js");
  const upstream = await startUpstream("bench");
  process.send!({ url: upstream.url });
  process.once("message", () => void upstream.close().finally(() => process.exit(0)));
  process.once("disconnect", () => process.exit(0));
}

async function startUpstreamProcess(): Promise<{ url: string; stop(): Promise<void> }> {
  const proc = fork(fileURLToPath(import.meta.url), [], { env: { ...process.env, BENCH_GATEWAY_UPSTREAM: "1" }, stdio: ["ignore", "inherit", "inherit", "ipc"] });
  children.add(proc);
  const url = await new Promise<string>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error("the upstream did not start within 30 s")), 30_000);
    proc.once("exit", (code) => { clearTimeout(timer); reject(new Error(`the upstream exited with ${code}`)); });
    proc.once("message", (m: { url: string }) => { clearTimeout(timer); resolve(m.url); });
  });
  return {
    url,
    stop: () => stopChild(proc),
  };
}

// ── load ───────────────────────────────────────────────────────────────────────────────────

interface LoadResult {
  reqPerSec: number;
  ok: number;
  non2xx: number;
  errors: number;
  p50: number;
  p99: number;
  loadCpu: number;
  /** This process's CPU time per answered request, microseconds. */
  serverCpuUs: number;
}

async function loadRun(url: string, headers: Record<string, string>, seconds: number): Promise<LoadResult> {
  const cpuBefore = process.cpuUsage();
  const r = await runLoad({ url, method: "GET", headers, connections: CONNECTIONS, pipelining: PIPELINING, duration: seconds });
  const cpu = process.cpuUsage(cpuBefore);
  return {
    reqPerSec: r.ok / r.duration, ok: r.ok, non2xx: r.non2xx, errors: r.errors, p50: r.p50, p99: r.p99, loadCpu: r.loadCpu,
    serverCpuUs: (cpu.user + cpu.system) / Math.max(1, r.ok),
  };
}

// ── the run ────────────────────────────────────────────────────────────────────────────────

async function main(): Promise<void> {
  const { createKeygate, createMemoryLockout, createMemoryRateLimiter, createMemoryStore } = await load<typeof import("../src/index.js")>("index.js");
  const { buildGatewayServer } = await load<typeof import("../src/http/gateway/index.js")>("http/gateway/index.js");

  // The V8 setting `keygate serve` gives its process (src/lib/serving-flags.ts); the bare proxy,
  // in this same process, runs with it too.
  (await load<typeof import("../src/lib/serving-flags.js")>("lib/serving-flags.js")).tuneV8ForServing();
  const upstream = await startUpstreamProcess();
  const servers: FastifyInstance[] = [];
  let keygate: Awaited<ReturnType<typeof createKeygate>> | null = null;
  try {
    keygate = await createKeygate({
      store: createMemoryStore(),
      limiter: createMemoryRateLimiter(),
      lockout: createMemoryLockout(),
      config: {
        apis: [
          {
            id: "auth", keyFormat: { prefix: "bk" }, scopes: ["orders.read"],
            rateLimit: { limit: 1_000_000_000, windowSeconds: 3600 },
            upstream: upstream.url, pathPrefix: "/auth",
            routes: [{ methods: ["GET"], path: "/auth/orders/:id", scopes: ["orders.read"] }],
          },
          {
            id: "open", keyFormat: { prefix: "ok" },
            upstream: upstream.url, pathPrefix: "/open",
            routes: [{ methods: ["GET"], path: "/open/orders/:id", public: true }],
          },
        ],
      },
    });
    const gateway = await buildGatewayServer({ keygate });
    servers.push(gateway);

    // The same proxy with nothing of keygate: reply-from with the gateway's pool options.
    const bare = Fastify();
    servers.push(bare);
    await bare.register(replyFrom, { base: upstream.url, undici: { connections: 256, pipelining: 1, keepAliveTimeout: 30_000 } });
    bare.get("/bare/orders/:id", (request, reply) => reply.from(request.url));

    const listen = async (server: FastifyInstance): Promise<string> => {
      await server.listen({ port: 0, host: "127.0.0.1" });
      return `http://127.0.0.1:${(server.server.address() as AddressInfo).port}`;
    };
    const gatewayUrl = await listen(gateway);
    const bareUrl = await listen(bare);

    const account = await keygate.accounts.create({ name: "bench", email: "bench@example.test" });
    const { key } = await keygate.keys.create({ api: "auth", accountId: account.id, scopes: ["orders.read"], ipAllowlist: ["127.0.0.0/8"] });
    const headers = { authorization: `Bearer ${key}`, accept: "application/json" };

    const targets = { public: `${gatewayUrl}/open/orders/42`, auth: `${gatewayUrl}/auth/orders/42`, bare: `${bareUrl}/bare/orders/42` } as const;
    type Side = keyof typeof targets;
    const sides = Object.keys(targets) as Side[];

    // Each side does what it should: the key is verified and replaced by identity headers on
    // the auth side only; no credential reaches the upstream through the gateway.
    const seen = async (side: Side): Promise<{ headers: Record<string, string>; response: Response }> => {
      const response = await fetch(targets[side], { headers });
      if (response.status !== 200) throw new Error(`${side}: ${response.status} ${await response.text()}`);
      return { headers: ((await response.json()) as { headers: Record<string, string> }).headers, response };
    };
    const auth = await seen("auth");
    if (!auth.headers["x-keygate-key-id"] || auth.headers.authorization) throw new Error(`auth: the upstream saw ${JSON.stringify(auth.headers)}`);
    const open = await seen("public");
    if (open.headers["x-keygate-key-id"] || open.headers.authorization) throw new Error(`public: the upstream saw ${JSON.stringify(open.headers)}`);
    await seen("bare");
    console.log(`fastify ${gateway.version}; upstream ${upstream.url} (child process); ${CONNECTIONS} connections × pipelining ${PIPELINING}, ${ROUNDS} rounds of ${SECONDS} s each`);

    for (const side of sides) await loadRun(targets[side], headers, WARMUP_SECONDS);
    // The limit's fixed window, so that a run crossing its end (the counts start again) is told apart.
    const resetBefore = (await seen("auth")).response.headers.get("x-ratelimit-reset");
    const rounds: Record<Side, LoadResult[]> = { public: [], auth: [], bare: [] };
    let authOk = 0;
    for (let r = 0; r < ROUNDS; r++) {
      const order = r % 2 === 0 ? sides : [...sides].reverse();
      for (const side of order) {
        const x = await loadRun(targets[side], headers, SECONDS);
        if (x.non2xx || x.errors) throw new Error(`${side}: ${x.non2xx} non-2xx responses, ${x.errors} errors`);
        if (side === "auth") authOk += x.ok;
        rounds[side].push(x);
        console.log(`${side.padEnd(7)} ${fmt.ops(x.reqPerSec).padStart(10)}  p50 ${x.p50.toFixed(2)} ms  p99 ${x.p99.toFixed(2)} ms  ` +
          `gateway process ${x.serverCpuUs.toFixed(1)} µs CPU/req  load generator ${(x.loadCpu * 100).toFixed(0)}% CPU`);
      }
    }

    // Every answered auth request was admitted by the rate limiter, which only a valid
    // verdict reaches, and the limit was never hit.
    const last = await seen("auth");
    const remaining = Number(last.response.headers.get("x-ratelimit-remaining"));
    const consumed = Number(last.response.headers.get("x-ratelimit-limit")) - remaining;
    checkAllLimited("auth", { resetBefore, resetAfter: last.response.headers.get("x-ratelimit-reset") }, consumed, authOk);

    const m = (side: Side, f: (x: LoadResult) => number): number => median(rounds[side].map(f));
    const rps = (side: Side): number => m(side, (x) => x.reqPerSec);
    const cpu = (side: Side): number => m(side, (x) => x.serverCpuUs);
    const setup = `c=${CONNECTIONS} p=${PIPELINING}`;
    const info = (name: string, value: number, unit: string, base: { name: string; value: number }): Row => infoRow(BENCH, name, value, unit, base);
    const rows: Row[] = [
      ratioRow(BENCH, `GET through the gateway with a key, ${setup}`, rps("auth"), "req/s", { name: "public route", value: rps("public") }, { atLeast: 0.85 },
        { rounds: rounds.auth.map((x) => x.reqPerSec), baselineRounds: rounds.public.map((x) => x.reqPerSec) }),
      // CPU per request, inverted so that the ratio reads as throughput does (higher is better).
      info("gateway capacity (1 / CPU per request)", 1e6 / cpu("auth"), "req/CPU-s", { name: "public route", value: 1e6 / cpu("public") }),
      info("latency p50 with a key", m("auth", (x) => x.p50), "ms", { name: "public route", value: m("public", (x) => x.p50) }),
      info("latency p99 with a key", m("auth", (x) => x.p99), "ms", { name: "public route", value: m("public", (x) => x.p99) }),
      info("public route vs bare reply-from proxy", rps("public"), "req/s", { name: "bare reply-from", value: rps("bare") }),
      info("with a key vs bare reply-from proxy", rps("auth"), "req/s", { name: "bare reply-from", value: rps("bare") }),
    ];
    await report(BENCH, rows);
  } finally {
    await Promise.all(servers.map((s) => s.close()));
    await keygate?.close();
    await upstream.stop();
  }
}

if (process.env.BENCH_GATEWAY_UPSTREAM === "1") await upstreamProcess();
else await main();
