/**
 * Several real `keygate serve` processes sharing one PostgreSQL database and one Redis behave
 * as one: exact global rate limits, a lockout seen by every node, revocations propagated over
 * the Redis bus in milliseconds, and the configured failure mode while Redis is away.
 *
 * The change feed is slowed to once a minute (`cache.changePollMs: 60000`), so that only the
 * Redis bus can explain a revocation reaching another node's cache quickly.
 *
 * After each Redis outage the key's usage count and its VALID analytics events in PostgreSQL
 * equal the VALID answers the clients received: usage is counted in the store, not in Redis,
 * so an outage loses none of it (docs/deploy.md).
 */
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import type { ChildProcess } from "node:child_process";
import { existsSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createInterface } from "node:readline";
import { fileURLToPath } from "node:url";
import pg from "pg";
import { Redis } from "ioredis";
import {
  createTestDatabase, deleteRedisKeys, PG_AND_REDIS_SKIP, REDIS_URL, sleep, startPrivateRedis, uniqueRedisPrefix, waitFor,
} from "../support/scale-out.js";
import type { PrivateRedis, TestDatabase } from "../support/scale-out.js";

const CLI = fileURLToPath(new URL("../../dist/cli/index.js", import.meta.url));
const ROOT_KEY = "kg_root_multinode_0123456789abcdefghijkl"; // 40 characters
assert.equal(ROOT_KEY.length, 40);

interface KeygateNode {
  name: string;
  url: string;
  logs: string[];
  stop(): Promise<void>;
}

/** Starts `keygate serve --port 0` and resolves once its "keygate listening on" line says where. */
async function startNode(name: string, options: { configPath: string; databaseUrl: string; redisUrl: string; dataDir: string }): Promise<KeygateNode> {
  const env: NodeJS.ProcessEnv = { ...process.env, KEYGATE_DATABASE_URL: options.databaseUrl, KEYGATE_REDIS_URL: options.redisUrl, KEYGATE_ROOT_KEY: ROOT_KEY, KEYGATE_LOG_LEVEL: "info" };
  delete env.KEYGATE_CONFIG;
  delete env.PORT;
  const child: ChildProcess = spawn(process.execPath, [CLI, "serve", "--port", "0", "--config", options.configPath, "--data", options.dataDir], { env, stdio: ["ignore", "pipe", "pipe"] });
  const logs: string[] = [];
  const exited = new Promise<void>((resolve) => child.once("exit", () => resolve()));
  const stop = async (): Promise<void> => {
    if (child.exitCode !== null || child.signalCode !== null) return;
    child.kill("SIGTERM");
    const killer = setTimeout(() => child.kill("SIGKILL"), 5000);
    await exited;
    clearTimeout(killer);
  };
  createInterface({ input: child.stderr! }).on("line", (line) => logs.push(line));
  const url = await new Promise<string>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`${name} did not start within 20 s:\n${logs.join("\n")}`)), 20_000);
    child.once("exit", (code) => { clearTimeout(timer); reject(new Error(`${name} exited with ${code} before listening:\n${logs.join("\n")}`)); });
    createInterface({ input: child.stdout! }).on("line", (line) => {
      logs.push(line);
      try {
        const entry = JSON.parse(line) as { msg?: string; url?: string };
        if (entry.msg?.startsWith("keygate listening on") && entry.url) { clearTimeout(timer); resolve(entry.url); }
      } catch { /* not JSON: keep it in the log */ }
    });
  }).catch(async (e: unknown) => { await stop(); throw e; });
  return { name, url, logs, stop };
}

interface Reply { status: number; body: any; headers: Headers }

async function call(node: KeygateNode, method: string, path: string, body?: unknown): Promise<Reply> {
  const res = await fetch(`${node.url}${path}`, {
    method,
    headers: { authorization: `Bearer ${ROOT_KEY}`, ...(body === undefined ? {} : { "content-type": "application/json" }) },
    body: body === undefined ? undefined : JSON.stringify(body),
    signal: AbortSignal.timeout(10_000), // a hung node fails the test instead of stalling it
  });
  return { status: res.status, body: await res.json(), headers: res.headers };
}

const verify = (node: KeygateNode, key: string, extra: { ip?: string } = {}): Promise<Reply> =>
  call(node, "POST", "/v1/keys/verify", { api: "pay", key, ...extra });

function configYaml(options: { keyPrefix: string; failureMode: "closed" | "local" }): string {
  return [
    "server: { host: 127.0.0.1 }",
    // The feed is read once a minute, and a cached key stays trusted meanwhile.
    "cache: { changePollMs: 60000, maxStaleSeconds: 3600 }",
    `redis: { keyPrefix: "${options.keyPrefix}", failureMode: ${options.failureMode} }`,
    "apis:",
    "  - id: pay",
    "    keyFormat: { prefix: ce, environments: [live, test] }",
    "    lockout: { maxAttempts: 5, windowSeconds: 900, blockSeconds: 900 }",
    // Client ID + API key → JWT: tokens minted on one node verify on every node.
    "  - id: jwtpay",
    "    keyFormat: { prefix: jp }",
    "    credentials: [{ type: jwt }]",
    "    tokens: { endpoints: [{ style: oauth2, path: /oauth/token }] }",
    "",
  ].join("\n");
}

/** A cluster of `count` nodes on a fresh database; everything it starts is stopped by `close()`. */
interface Cluster {
  nodes: KeygateNode[];
  db: TestDatabase;
  keyPrefix: string;
  accountId: string;
  createKey(rateLimit?: { limit: number; windowSeconds: number }): Promise<{ id: string; key: string }>;
  close(): Promise<void>;
}

async function startCluster(count: number, options: { redisUrl: string; failureMode: "closed" | "local"; what: string }): Promise<Cluster> {
  const dir = mkdtempSync(join(tmpdir(), "keygate-cluster-"));
  const keyPrefix = uniqueRedisPrefix(options.what);
  const configPath = join(dir, "keygate.yaml");
  writeFileSync(configPath, configYaml({ keyPrefix, failureMode: options.failureMode }));
  const db = await createTestDatabase();
  const nodes: KeygateNode[] = [];
  const close = async (): Promise<void> => {
    await Promise.all(nodes.map((n) => n.stop()));
    const redis = new Redis(options.redisUrl, { lazyConnect: true, maxRetriesPerRequest: 0, retryStrategy: () => null });
    redis.on("error", () => {});
    try { await redis.connect(); await deleteRedisKeys(redis, keyPrefix); } catch { /* a private Redis may be gone already */ }
    redis.disconnect();
    await db.drop();
    rmSync(dir, { recursive: true, force: true });
  };
  try {
    // Started together, so their migrations race on the fresh database as in a real rollout.
    const started = await Promise.allSettled(Array.from({ length: count }, (_, i) =>
      startNode(`node${i + 1}`, { configPath, databaseUrl: db.url, redisUrl: options.redisUrl, dataDir: join(dir, `data${i + 1}`) })));
    for (const s of started) if (s.status === "fulfilled") nodes.push(s.value);
    for (const s of started) if (s.status === "rejected") throw s.reason;
    const account = await call(nodes[0]!, "POST", "/v1/accounts", { name: "Acme", email: `ops-${keyPrefix.replace(/:/g, "")}@acme.test` });
    assert.equal(account.status, 201, JSON.stringify(account.body));
    const accountId = account.body.id as string;
    return {
      nodes, db, keyPrefix, accountId, close,
      async createKey(rateLimit) {
        const created = await call(nodes[0]!, "POST", "/v1/keys", { api: "pay", accountId, ...(rateLimit ? { rateLimit } : {}) });
        assert.equal(created.status, 201, JSON.stringify(created.body));
        return { id: created.body.id, key: created.body.key };
      },
    };
  } catch (e) {
    await close();
    throw e;
  }
}

const tally = (replies: Array<{ status: number; body: { code: string } }>): Record<string, number> => {
  const out: Record<string, number> = {};
  for (const r of replies) {
    const label = `${r.status} ${r.body.code}`;
    out[label] = (out[label] ?? 0) + 1;
  }
  return out;
};

/** Waits past an hour boundary that is about to pass, so a burst stays inside one hourly window. */
async function awayFromHourBoundary(): Promise<void> {
  const left = 3_600_000 - (Date.now() % 3_600_000);
  if (left < 15_000) await sleep(left + 50);
}

/** A well-formed `ce_live_…` key that no one issued. */
const unknownKey = (): string => `ce_live_${Array.from({ length: 32 }, () => "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"[Math.floor(Math.random() * 62)]).join("")}`;

/**
 * How soon after node1 acknowledges a revocation node2 must refuse the key. docs/deploy.md
 * measures p99 ≈ 15 ms (bench/cluster-propagation.ts). On a loaded 2-core CI machine one
 * round in ten may stall for tens of ms (seen: 69 ms with p50 7 ms), so the claim is checked
 * as a percentile over several keys, and every single key gets a hard bound that still fails
 * at once if the bus missed it (the change feed would take 60 s).
 */
const PROPAGATION_P90_MS = 100;
const PROPAGATION_MAX_MS = 250;
const PROPAGATION_ROUNDS = 10;

const percentile = (sorted: number[], p: number): number => sorted[Math.min(sorted.length - 1, Math.ceil(p * sorted.length) - 1)]!;

/** A key's usage count and VALID analytics events as written to PostgreSQL, not as a node holds them in memory. */
async function storedUsage(db: TestDatabase, keyId: string): Promise<{ usageCount: number; validEvents: number }> {
  const client = new pg.Client({ connectionString: db.url });
  await client.connect();
  try {
    const key = await client.query<{ n: string }>("SELECT usage_count AS n FROM keys WHERE id = $1", [keyId]);
    const events = await client.query<{ n: string | null }>("SELECT SUM(count) AS n FROM usage_aggregates WHERE key_id = $1 AND period = 'minute' AND metric = 'latency' AND code = 'VALID'", [keyId]);
    return { usageCount: Number(key.rows[0]!.n), validEvents: Number(events.rows[0]!.n ?? 0) };
  } finally {
    await client.end();
  }
}

/** Waits for the nodes' usage flush (every second) to write `valid` for the key, then checks a later flush adds nothing. */
async function expectStoredUsage(db: TestDatabase, keyId: string, valid: number, what: string): Promise<void> {
  let last = { usageCount: -1, validEvents: -1 };
  await waitFor(`${what}: ${valid} VALID answers in the store`, async () => {
    last = await storedUsage(db, keyId);
    return last.usageCount === valid && last.validEvents === valid;
  }, 10_000, 100).catch((e: Error) => { throw new Error(`${e.message}; the store has ${JSON.stringify(last)}`); });
  await sleep(1500);
  assert.deepEqual(await storedUsage(db, keyId), { usageCount: valid, validEvents: valid }, `${what}: counted once`);
}

describe("two nodes sharing PostgreSQL and Redis", { skip: PG_AND_REDIS_SKIP }, () => {
  let cluster: Cluster;
  let n1: KeygateNode;
  let n2: KeygateNode;

  before(async () => {
    assert.ok(existsSync(CLI), `${CLI} is missing: run npm run build first`);
    cluster = await startCluster(2, { redisUrl: REDIS_URL!, failureMode: "closed", what: "cluster" });
    [n1, n2] = cluster.nodes as [KeygateNode, KeygateNode];
  });
  after(async () => { await cluster?.close(); });

  test("both nodes use the shared PostgreSQL store", async () => {
    for (const node of cluster.nodes) {
      const health = await fetch(`${node.url}/healthz`).then((r) => r.json()) as { store: string };
      assert.equal(health.store, "postgres");
    }
  });

  test("a key with 50/hour admits exactly 50 of 300 concurrent verifications split across both nodes", async () => {
    const { key } = await cluster.createKey({ limit: 50, windowSeconds: 3600 });
    await awayFromHourBoundary();
    const replies = await Promise.all(Array.from({ length: 300 }, (_, i) => verify(i % 2 === 0 ? n1 : n2, key).then((r) => ({ ...r, node: i % 2 }))));
    assert.deepEqual(tally(replies), { "200 VALID": 50, "200 RATE_LIMITED": 250 });
    const valid = replies.filter((r) => r.body.code === "VALID");
    // One global counter: the 50 admitted requests saw remaining 49…0, each value once, whichever node served them.
    assert.deepEqual(valid.map((r) => r.body.ratelimit.remaining).sort((a: number, b: number) => a - b), Array.from({ length: 50 }, (_, i) => i));
    console.log(`rate limit 50/h across 2 nodes: ${valid.filter((r) => r.node === 0).length} VALID on node1 + ${valid.filter((r) => r.node === 1).length} VALID on node2 = ${valid.length} of 300`);
  });

  test("5 failed verifications from one IP on node1 get that IP blocked on node2", async () => {
    const ip = "198.51.100.23";
    const { key } = await cluster.createKey();
    const left = [];
    for (let i = 0; i < 5; i++) {
      const r = await verify(n1, unknownKey(), { ip });
      assert.equal(r.body.code, "NOT_FOUND");
      left.push(r.body.attemptsLeft);
    }
    assert.deepEqual(left, [4, 3, 2, 1, 0]);
    const blocked = await verify(n2, key, { ip });
    assert.equal(blocked.status, 200);
    assert.equal(blocked.body.code, "IP_BLOCKED");
    assert.ok(blocked.body.retryAfter > 800 && blocked.body.retryAfter <= 900, `retryAfter ${blocked.body.retryAfter}`);
    assert.equal((await verify(n2, key, { ip: "198.51.100.24" })).body.code, "VALID");
  });

  test(`a revocation on node1 is refused by node2 within ${PROPAGATION_P90_MS} ms at p90 over ${PROPAGATION_ROUNDS} keys, and every key within ${PROPAGATION_MAX_MS} ms`, async () => {
    const admin = new pg.Client({ connectionString: cluster.db.url });
    await admin.connect();
    const seen: number[] = [];
    try {
      for (let round = 0; round < PROPAGATION_ROUNDS; round++) {
        const { id, key } = await cluster.createKey();
        assert.equal((await verify(n2, key)).body.code, "VALID"); // now cached on node2
        if (round === 0) {
          // Proof that node2 answers from its cache: a change made behind keygate's back (no
          // change-feed row, no bus message) stays invisible to it.
          await admin.query("UPDATE keys SET name = 'changed behind keygate' WHERE id = $1", [id]);
          assert.equal((await verify(n2, key)).body.name, null);
        }

        let firstRevokedAt = 0;
        let polls = 0;
        let polling = true;
        const poller = (async () => {
          while (polling) {
            const r = await verify(n2, key);
            polls++;
            if (r.body.code === "REVOKED") { firstRevokedAt = performance.now(); return; }
            assert.equal(r.body.code, "VALID");
            await sleep(2);
          }
        })();
        await sleep(10);
        const sentAt = performance.now();
        const revoked = await call(n1, "POST", `/v1/keys/${id}/revoke`);
        const ackAt = performance.now();
        assert.equal(revoked.status, 200);
        const timeout = setTimeout(() => { polling = false; }, 5000);
        await poller;
        clearTimeout(timeout);
        polling = false;
        assert.ok(firstRevokedAt > 0, "node2 never answered REVOKED within 5 s");
        const afterAck = Math.max(0, firstRevokedAt - ackAt);
        seen.push(afterAck);
        console.log(`revocation propagation node1 → node2: REVOKED seen ${afterAck.toFixed(1)} ms after the revoke was acknowledged (${(firstRevokedAt - sentAt).toFixed(1)} ms after it was sent; ${polls} polls)`);
      }
    } finally {
      await admin.end();
    }
    const sorted = [...seen].sort((a, b) => a - b);
    console.log(`revocation propagation over ${sorted.length} keys: min ${sorted[0]!.toFixed(1)} ms, p50 ${percentile(sorted, 0.5).toFixed(1)} ms, p90 ${percentile(sorted, 0.9).toFixed(1)} ms, max ${sorted[sorted.length - 1]!.toFixed(1)} ms (bounds: p90 ${PROPAGATION_P90_MS} ms, each ${PROPAGATION_MAX_MS} ms; change feed polled only every 60 s)`);
    const all = seen.map((ms) => ms.toFixed(1)).join(", ");
    assert.ok(percentile(sorted, 0.9) <= PROPAGATION_P90_MS, `p90 ${percentile(sorted, 0.9).toFixed(1)} ms: ${all}`);
    assert.ok(sorted[sorted.length - 1]! <= PROPAGATION_MAX_MS, `slowest ${sorted[sorted.length - 1]!.toFixed(1)} ms: ${all}`);
  });

  test("a JWT minted on node1 works on node2 until its key is revoked on node1, then fails there at once", async () => {
    const app = await call(n1, "POST", "/v1/applications", { accountId: cluster.accountId, api: "jwtpay", name: "App" });
    assert.equal(app.status, 201, JSON.stringify(app.body));
    const created = await call(n1, "POST", "/v1/keys", { api: "jwtpay", accountId: cluster.accountId, applicationId: app.body.id });
    const minted = await fetch(`${n1.url}/oauth/token`, {
      method: "POST",
      headers: { "content-type": "application/x-www-form-urlencoded" },
      body: new URLSearchParams({ grant_type: "client_credentials", client_id: app.body.clientId, client_secret: created.body.key }),
    });
    assert.equal(minted.status, 200);
    const { access_token: jwt } = (await minted.json()) as { access_token: string };
    const check = async (): Promise<{ status: number; code: string | undefined }> => {
      const res = await fetch(`${n2.url}/_auth/jwtpay`, { headers: { authorization: `Bearer ${jwt}` }, signal: AbortSignal.timeout(5000) });
      const text = await res.text();
      return { status: res.status, code: text ? (JSON.parse(text) as { code?: string }).code : undefined };
    };
    assert.equal((await check()).status, 200);
    const revoked = await call(n1, "POST", `/v1/keys/${created.body.id}/revoke`);
    const ackAt = performance.now();
    assert.equal(revoked.status, 200);
    let last = await check();
    while (last.status === 200 && performance.now() - ackAt < 5000) { await sleep(2); last = await check(); }
    const after = performance.now() - ackAt;
    console.log(`JWT revocation propagation node1 → node2: refused ${after.toFixed(1)} ms after the revoke was acknowledged`);
    assert.deepEqual(last, { status: 401, code: "REVOKED" });
    assert.ok(after <= PROPAGATION_MAX_MS, `took ${after.toFixed(1)} ms`);
  });

  test("a rotation on node1 stops the old key on node2 at once, and the successor verifies there", async () => {
    const { id, key } = await cluster.createKey();
    assert.equal((await verify(n2, key)).body.code, "VALID");
    const rotated = await call(n1, "POST", `/v1/keys/${id}/rotate`, { gracePeriodSeconds: 0 });
    assert.equal(rotated.status, 201, JSON.stringify(rotated.body));
    await waitFor("node2 to refuse the rotated key", async () => (await verify(n2, key)).body.code === "ROTATED", 500, 2);
    assert.equal((await verify(n2, rotated.body.key.key)).body.code, "VALID");
  });

  test("a key imported on node1 verifies on node2 although node2 had just cached it as NOT_FOUND", async () => {
    const key = unknownKey();
    assert.equal((await verify(n2, key)).body.code, "NOT_FOUND"); // negative cache, 10 s by default
    const imported = await call(n1, "POST", "/v1/keys/import", { api: "pay", keys: [{ key, accountId: cluster.accountId }] });
    assert.equal(imported.status, 201, JSON.stringify(imported.body));
    await waitFor("node2 to accept the imported key", async () => (await verify(n2, key)).body.code === "VALID", 500, 2);
  });
});

interface Outcome { startedAt: number; endedAt: number; status: number; code: string; retryAfter: string | null }

/** Verifies `key` from `workers` concurrent loops until stopped, recording every answer with its timing. */
function load(node: KeygateNode, key: string, workers: number, ip: string): { outcomes: Outcome[]; stop(): Promise<void> } {
  const outcomes: Outcome[] = [];
  let running = true;
  const loops = Array.from({ length: workers }, async () => {
    while (running) {
      const startedAt = performance.now();
      try {
        const r = await verify(node, key, { ip });
        outcomes.push({ startedAt, endedAt: performance.now(), status: r.status, code: r.body.code, retryAfter: r.headers.get("retry-after") });
      } catch (e) {
        outcomes.push({ startedAt, endedAt: performance.now(), status: 0, code: `fetch failed: ${(e as Error).message}`, retryAfter: null });
      }
      await sleep(1);
    }
  });
  return { outcomes, async stop() { running = false; await Promise.all(loops); } };
}

describe("redis.failureMode closed: a Redis outage refuses verifications and heals by itself", { skip: PG_AND_REDIS_SKIP }, () => {
  let redis: PrivateRedis;
  let cluster: Cluster;

  before(async () => {
    assert.ok(existsSync(CLI), `${CLI} is missing: run npm run build first`);
    redis = await startPrivateRedis();
    cluster = await startCluster(1, { redisUrl: redis.url, failureMode: "closed", what: "closed" });
  });
  after(async () => {
    await cluster?.close();
    await redis?.stop();
  });

  test("503 LIMITER_UNAVAILABLE while Redis is down (never VALID unchecked, never 500), VALID again after it restarts, and every VALID counted", async () => {
    const node = cluster.nodes[0]!;
    const { id, key } = await cluster.createKey({ limit: 1_000_000, windowSeconds: 3600 });
    const traffic = load(node, key, 4, "203.0.113.77");
    try {
      await waitFor("50 verifications before the outage", () => traffic.outcomes.filter((o) => o.code === "VALID").length >= 50, 10_000);

      await redis.stop();
      const downAt = performance.now();
      await waitFor("verifications during the outage", () => traffic.outcomes.filter((o) => o.startedAt > downAt).length >= 40, 10_000);

      // While it is down, keys are still managed (the store is up), and a verification that
      // has no shared limit to check (no rate limit, no client IP for the lockout) still passes.
      const plain = await cluster.createKey();
      assert.equal((await verify(node, plain.key)).body.code, "VALID");
      const unknown = await verify(node, unknownKey(), { ip: "203.0.113.78" });
      assert.equal(unknown.status, 503);
      assert.equal(unknown.body.code, "LIMITER_UNAVAILABLE");

      const restartAt = performance.now();
      await redis.start();
      const upAt = performance.now();
      const healed = await waitFor("a VALID verification after the restart",
        () => traffic.outcomes.some((o) => o.startedAt > upAt && o.code === "VALID"), 15_000, 10);
      console.log(`redis failureMode closed: VALID again ${healed.toFixed(0)} ms after redis-server was back (no restart of keygate)`);
      await sleep(300);
      const settledAt = performance.now();
      await sleep(300);
      await traffic.stop();

      const all = traffic.outcomes;
      const statuses = tally(all.map((o) => ({ status: o.status, body: { code: o.code } })));
      console.log(`redis failureMode closed: ${all.length} verifications during the run: ${JSON.stringify(statuses)}`);
      for (const o of all) {
        assert.ok((o.status === 200 && o.code === "VALID") || (o.status === 503 && o.code === "LIMITER_UNAVAILABLE"), `unexpected answer ${o.status} ${o.code}`);
        if (o.status === 503) assert.equal(o.retryAfter, "1");
      }
      const duringOutage = all.filter((o) => o.startedAt > downAt && o.endedAt < restartAt);
      assert.ok(duringOutage.length >= 40);
      assert.deepEqual(new Set(duringOutage.map((o) => o.code)), new Set(["LIMITER_UNAVAILABLE"]));
      const afterwards = all.filter((o) => o.startedAt > settledAt);
      assert.ok(afterwards.length > 0);
      assert.deepEqual(new Set(afterwards.map((o) => o.code)), new Set(["VALID"]));

      // Nothing lost, nothing counted twice: a 503 is no use of the key, and each VALID is.
      const valid = all.filter((o) => o.code === "VALID").length;
      await expectStoredUsage(cluster.db, id, valid, "closed mode, the loaded key");
      await expectStoredUsage(cluster.db, plain.id, 1, "closed mode, the key verified during the outage");
      console.log(`redis failureMode closed: ${valid} VALID answers, ${valid} in keys.usage_count and in the VALID analytics events`);
    } finally {
      await traffic.stop();
    }
  });
});

describe("redis.failureMode closed: a Redis that hangs", { skip: PG_AND_REDIS_SKIP }, () => {
  let redis: PrivateRedis;
  let cluster: Cluster;

  before(async () => {
    assert.ok(existsSync(CLI), `${CLI} is missing: run npm run build first`);
    redis = await startPrivateRedis();
    cluster = await startCluster(1, { redisUrl: redis.url, failureMode: "closed", what: "hang" });
  });
  after(async () => {
    redis?.resume();
    await cluster?.close();
    await redis?.stop();
  });

  test("a paused Redis (SIGSTOP, connections open) gets 503 LIMITER_UNAVAILABLE within seconds, not a hang", async () => {
    const node = cluster.nodes[0]!;
    const { key } = await cluster.createKey({ limit: 1000, windowSeconds: 3600 });
    assert.equal((await verify(node, key)).body.code, "VALID");
    redis.pause();
    try {
      const started = performance.now();
      const answers = await Promise.all(Array.from({ length: 5 }, () => verify(node, key, { ip: "203.0.113.90" })));
      const took = performance.now() - started;
      console.log(`redis failureMode closed: a paused Redis is answered with 503 after ${took.toFixed(0)} ms`);
      assert.deepEqual(tally(answers), { "503 LIMITER_UNAVAILABLE": 5 });
      assert.ok(took < 5000, `took ${took.toFixed(0)} ms`);
    } finally {
      redis.resume();
    }
    await waitFor("VALID after SIGCONT", async () => (await verify(node, key)).body.code === "VALID", 10_000, 20);
  });
});

describe("redis.failureMode local: a Redis outage falls back to per-node limits and back again", { skip: PG_AND_REDIS_SKIP }, () => {
  let redis: PrivateRedis;
  let cluster: Cluster;
  let probe: Redis;

  before(async () => {
    assert.ok(existsSync(CLI), `${CLI} is missing: run npm run build first`);
    redis = await startPrivateRedis();
    cluster = await startCluster(2, { redisUrl: redis.url, failureMode: "local", what: "local" });
    probe = new Redis(redis.url, { maxRetriesPerRequest: 1 });
    probe.on("error", () => {});
  });
  after(async () => {
    probe?.disconnect();
    await cluster?.close();
    await redis?.stop();
  });

  /** VALID answers received, per key: what the store's usage counts must end up holding. */
  const validAnswers = new Map<string, number>();
  const verifyCounted = async (node: KeygateNode, key: string, extra: { ip?: string } = {}): Promise<Reply> => {
    const r = await verify(node, key, extra);
    if (r.body.code === "VALID") validAnswers.set(key, (validAnswers.get(key) ?? 0) + 1);
    return r;
  };
  const burst = async (key: string, count: number): Promise<Reply[]> =>
    Promise.all(Array.from({ length: count }, (_, i) => verifyCounted(cluster.nodes[i % 2]!, key)));

  test("limits are shared before the outage, per node during it, and shared again after the restart; usage counts every VALID", async () => {
    const [n1, n2] = cluster.nodes as [KeygateNode, KeygateNode];
    await awayFromHourBoundary();
    const shared = await cluster.createKey({ limit: 5, windowSeconds: 3600 });
    assert.deepEqual(tally(await burst(shared.key, 20)), { "200 VALID": 5, "200 RATE_LIMITED": 15 });

    const duringOutage = await cluster.createKey({ limit: 5, windowSeconds: 3600 });
    const meter = await cluster.createKey({ limit: 1_000_000, windowSeconds: 3600 });
    await redis.stop();

    // Each node now counts on its own: 5 per node, 10 in the cluster, and never a 503.
    const perNode = await Promise.all([n1, n2].map(async (node) => {
      const replies = await Promise.all(Array.from({ length: 12 }, () => verifyCounted(node, duringOutage.key)));
      return tally(replies);
    }));
    assert.deepEqual(perNode, [{ "200 VALID": 5, "200 RATE_LIMITED": 7 }, { "200 VALID": 5, "200 RATE_LIMITED": 7 }]);
    // The lockout is per node too: node1 blocks an IP that node2 does not know about.
    const ip = "192.0.2.200";
    for (let i = 0; i < 5; i++) assert.equal((await verifyCounted(n1, unknownKey(), { ip })).status, 200);
    assert.equal((await verifyCounted(n1, meter.key, { ip })).body.code, "IP_BLOCKED");
    assert.equal((await verifyCounted(n2, meter.key, { ip })).body.code, "VALID");

    const upAt = performance.now();
    await redis.start();
    // A node is back on Redis when its verification of `meter` is counted there: the counter
    // moves by one and the verdict's `remaining` is read from it.
    const counterKey = (): string => { const now = Date.now(); return `${cluster.keyPrefix}rl:${meter.id}:${now - (now % 3_600_000)}`; };
    const counted = async (k: string): Promise<number> => Number(await probe.get(k).catch(() => null) ?? 0);
    const recovery: string[] = [];
    for (const node of [n1, n2]) {
      await waitFor(`${node.name} to count in Redis again`, async () => {
        const k = counterKey();
        const before = await counted(k);
        const r = await verifyCounted(node, meter.key);
        const after = await counted(k);
        return r.body.code === "VALID" && after === before + 1 && r.body.ratelimit.remaining === 1_000_000 - after;
      }, 15_000, 25).catch((e: Error) => { throw new Error(`${e.message}; ${node.name} logged:\n${node.logs.join("\n")}`); });
      recovery.push(`${node.name} ${(performance.now() - upAt).toFixed(0)} ms`);
    }
    console.log(`redis failureMode local: back on shared limits after redis-server restarted: ${recovery.join(", ")}`);

    const after = await cluster.createKey({ limit: 5, windowSeconds: 3600 });
    assert.deepEqual(tally(await burst(after.key, 20)), { "200 VALID": 5, "200 RATE_LIMITED": 15 });
    // The lockout is shared again too (Redis restarted empty, so the IP starts afresh).
    const ip2 = "192.0.2.201";
    for (let i = 0; i < 5; i++) await verifyCounted(n1, unknownKey(), { ip: ip2 });
    assert.equal((await verifyCounted(n2, meter.key, { ip: ip2 })).body.code, "IP_BLOCKED");

    // Usage is counted in PostgreSQL, not Redis: the outage lost none of it, on either node.
    for (const [what, k] of Object.entries({ shared, duringOutage, meter, after })) {
      await expectStoredUsage(cluster.db, k.id, validAnswers.get(k.key) ?? 0, `local mode, ${what}`);
    }
    console.log(`redis failureMode local: VALID answers per key ${JSON.stringify(Object.fromEntries(Object.entries({ shared, duringOutage, meter, after }).map(([w, k]) => [w, validAnswers.get(k.key) ?? 0])))}, all in the store`);
  });

  test("after the restart the invalidation bus delivers revocations again", async () => {
    const [n1, n2] = cluster.nodes as [KeygateNode, KeygateNode];
    // Both nodes' subscriber connections resubscribe by themselves.
    await waitFor("both nodes to resubscribe", async () => {
      const [, subscribers] = (await probe.pubsub("NUMSUB", `${cluster.keyPrefix}invalidate`)) as [string, number];
      return Number(subscribers) === 2;
    }, 15_000, 50);
    const { id, key } = await cluster.createKey();
    assert.equal((await verify(n2, key)).body.code, "VALID");
    assert.equal((await call(n1, "POST", `/v1/keys/${id}/revoke`)).status, 200);
    const took = await waitFor("node2 to see the revocation", async () => (await verify(n2, key)).body.code === "REVOKED", 500, 2);
    console.log(`revocation propagation after a Redis restart: ${took.toFixed(1)} ms`);
  });
});
