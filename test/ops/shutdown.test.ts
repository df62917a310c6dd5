/**
 * Graceful shutdown of a real `keygate serve` process in gateway mode: on SIGTERM (or SIGINT)
 * a request already in flight to a slow upstream still completes with 200, new connections
 * are refused, and every request answered — before the signal or while draining — is in the
 * SQLite file after the process exits: the key's usage count and the analytics aggregates
 * and request logs. Usage and analytics flush only once every 10 minutes here, so only the
 * shutdown flush can have written them.
 */
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { existsSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { createServer } from "node:http";
import type { Server } from "node:http";
import { connect } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import Database from "better-sqlite3";
import { admin, CLI, startServe } from "../support/serve.js";

const ROOT_KEY = "kg_root_shutdown_test_0123456789abcdefgh";
const SLOW_MS = 1500;
const FAST_REQUESTS = 5;

const SLOW_FLUSH = ["usage: { flushIntervalMs: 600000 }", "analytics: { flushIntervalMs: 600000 }"];
const shopApi = (): string[] => ["apis:", "  - id: shop", "    keyFormat: { prefix: sk }", "    pathPrefix: /shop", `    upstream: ${upstreamUrl}`, ""];

let dir: string;
let upstream: Server;
let upstreamUrl: string;
/** Resolves each time the upstream receives a /slow request. */
let slowArrived: () => void = () => {};

before(async () => {
  assert.ok(existsSync(CLI), `${CLI} is missing: run \`npm run build\` first`);
  dir = mkdtempSync(join(tmpdir(), "keygate-shutdown-"));
  upstream = createServer((req, res) => {
    const answer = (): void => { res.setHeader("content-type", "application/json"); res.end(JSON.stringify({ path: req.url })); };
    if (req.url?.startsWith("/shop/hang")) { slowArrived(); return; } // never answers
    if (req.url?.startsWith("/shop/slow")) { slowArrived(); setTimeout(answer, SLOW_MS); } else answer();
  });
  await new Promise<void>((r) => upstream.listen(0, "127.0.0.1", r));
  upstreamUrl = `http://127.0.0.1:${(upstream.address() as { port: number }).port}`;
});
after(async () => {
  upstream?.closeAllConnections();
  await new Promise<void>((r) => (upstream ? upstream.close(() => r()) : r()));
  rmSync(dir, { recursive: true, force: true });
});

/** Whether a fresh TCP connection to `url` is accepted (a pooled keep-alive socket would not tell). */
const accepts = (url: string): Promise<boolean> => new Promise((resolve) => {
  const { hostname, port } = new URL(url);
  const socket = connect(Number(port), hostname);
  socket.setTimeout(2000);
  socket.once("connect", () => { socket.destroy(); resolve(true); });
  socket.once("error", () => resolve(false));
  socket.once("timeout", () => { socket.destroy(); resolve(false); });
});

/**
 * `keygate serve` in gateway mode with `shutdownTimeoutMs`, after one answered request and with
 * a second one hanging at the upstream (never answered), both with the same key.
 */
/** Runs `read` on the stopped node's SQLite file, opened read-only, and closes it. */
function readStore<T>(data: string, read: (db: Database.Database) => T): T {
  const db = new Database(join(data, "keygate.db"), { readonly: true });
  try {
    return read(db);
  } finally {
    db.close();
  }
}

/** A key's usage count as the store holds it: what was flushed. */
const usageCount = (db: Database.Database, keyId: string): number =>
  Number((db.prepare("SELECT usage_count AS n FROM keys WHERE id = ?").get(keyId) as { n: number }).n);

async function serveWithHangingRequest(name: string, shutdownTimeoutMs: number) {
  const config = join(dir, `${name}.yaml`);
  const data = join(dir, `data-${name}`);
  writeFileSync(config, [`server: { host: 127.0.0.1, shutdownTimeoutMs: ${shutdownTimeoutMs} }`, ...SLOW_FLUSH, ...shopApi()].join("\n"));
  const kg = await startServe({ config, dataDir: data, env: { KEYGATE_ROOT_KEY: ROOT_KEY } });
  try {
    const account = await admin(kg.url, ROOT_KEY, "POST", "/v1/accounts", { name: "Acme", email: "ops@acme.test" });
    const key = await admin(kg.url, ROOT_KEY, "POST", "/v1/keys", { api: "shop", accountId: account.body.id });
    const auth = { authorization: `Bearer ${key.body.key as string}` };
    const ok = await fetch(`${kg.url}/shop/fast`, { headers: auth, signal: AbortSignal.timeout(5000) });
    assert.equal(ok.status, 200);
    await ok.arrayBuffer();
    const arrived = new Promise<void>((r) => { slowArrived = r; });
    const hanging = fetch(`${kg.url}/shop/hang`, { headers: auth, signal: AbortSignal.timeout(20_000) }).then((r) => r.status, (e: Error) => e);
    await arrived;
    return { kg, key, data, hanging };
  } catch (e) {
    await kg.stop();
    throw e;
  }
}

describe("keygate serve shuts down gracefully", () => {
  for (const signal of ["SIGTERM", "SIGINT"] as const) {
    test(`${signal}: the in-flight gateway request completes, new connections are refused, and usage and analytics reach the store`, async () => {
      const config = join(dir, `${signal}.yaml`);
      const data = join(dir, `data-${signal}`);
      writeFileSync(config, [
        "server: { host: 127.0.0.1 }",
        ...SLOW_FLUSH,
        ...shopApi(),
      ].join("\n"));
      const kg = await startServe({ config, dataDir: data, env: { KEYGATE_ROOT_KEY: ROOT_KEY } });
      try {
        const account = await admin(kg.url, ROOT_KEY, "POST", "/v1/accounts", { name: "Acme", email: "ops@acme.test" });
        const key = await admin(kg.url, ROOT_KEY, "POST", "/v1/keys", { api: "shop", accountId: account.body.id });
        assert.equal(key.status, 201, JSON.stringify(key.body));
        const auth = { authorization: `Bearer ${key.body.key as string}` };

        for (let i = 0; i < FAST_REQUESTS; i++) {
          const res = await fetch(`${kg.url}/shop/fast/${i}`, { headers: auth, signal: AbortSignal.timeout(5000) });
          assert.equal(res.status, 200);
          await res.arrayBuffer();
        }

        const arrived = new Promise<void>((r) => { slowArrived = r; });
        const started = performance.now();
        const slow = fetch(`${kg.url}/shop/slow`, { headers: auth, signal: AbortSignal.timeout(10_000) })
          .then(async (res) => ({ status: res.status, body: (await res.json()) as { path: string }, at: performance.now() }));
        await arrived;
        const signalledAt = performance.now();
        kg.child.kill(signal);

        // The listener closes at once; the process stays up until the slow answer is out.
        let refusedWhileDraining = false;
        while (kg.child.exitCode === null && performance.now() - signalledAt < SLOW_MS - 300) {
          if (!(await accepts(kg.url))) { refusedWhileDraining = true; break; }
          await new Promise((r) => setTimeout(r, 20));
        }
        assert.ok(refusedWhileDraining, "a new connection was still accepted while draining");
        assert.equal(kg.child.exitCode, null, "the process exited before its in-flight request was answered");

        const answered = await slow;
        assert.equal(answered.status, 200);
        assert.deepEqual(answered.body, { path: "/shop/slow" });
        assert.ok(answered.at - started >= SLOW_MS - 50, "the slow request was really in flight across the signal");
        assert.equal(await kg.exited, 0, kg.logs.join("\n"));
        const exitedAfter = performance.now() - answered.at;
        // Not the keep-alive timeout (72 s) of the connection that carried the slow request.
        assert.ok(exitedAfter < 3000, `exited ${exitedAfter.toFixed(0)} ms after its last answer`);
        const lines = kg.logs.flatMap((l) => { try { return [JSON.parse(l) as { msg?: string; signal?: string }]; } catch { return []; } });
        assert.ok(lines.some((l) => l.signal === signal && l.msg?.startsWith("shutting down")), "the signal is logged");
        assert.ok(lines.some((l) => l.msg === "stopped"));
        console.log(`${signal}: in-flight request answered ${(answered.at - signalledAt).toFixed(0)} ms after the signal; new connections refused meanwhile`);

        readStore(data, (db) => {
          const total = FAST_REQUESTS + 1;
          assert.equal(usageCount(db, key.body.id), total, "usage count");
          const agg = db.prepare("SELECT SUM(count) AS n FROM usage_aggregates WHERE key_id = ? AND period = 'minute' AND metric = 'latency'").get(key.body.id) as { n: number };
          assert.equal(Number(agg.n), total, "analytics aggregates (minute buckets)");
          const logs = db.prepare("SELECT path, status FROM request_logs WHERE key_id = ? ORDER BY at").all(key.body.id) as Array<{ path: string; status: number }>;
          assert.deepEqual(logs.map((l) => `${l.status} ${l.path}`).sort(), [...Array.from({ length: FAST_REQUESTS }, (_, i) => `200 /shop/fast/${i}`), "200 /shop/slow"].sort());
        });
      } finally {
        await kg.stop();
      }
    });
  }

  test("a second signal cuts the requests still open at once and still flushes usage", async () => {
    const { kg, key, data, hanging } = await serveWithHangingRequest("second-signal", 60_000);
    try {
      kg.child.kill("SIGTERM");
      await new Promise((r) => setTimeout(r, 400));
      assert.equal(kg.child.exitCode, null, "the first signal drains: the hanging request holds the process");
      const secondAt = performance.now();
      kg.child.kill("SIGTERM");
      assert.equal(await kg.exited, 0, kg.logs.join("\n"));
      const took = performance.now() - secondAt;
      assert.ok(took < 5000, `exited ${took.toFixed(0)} ms after the second signal (shutdownTimeoutMs is 60 s)`);
      assert.ok((await hanging) instanceof Error, "the hanging request was cut off, not answered");
      assert.ok(kg.logs.some((l) => l.includes("second signal: cutting the requests still open and flushing usage now")));
      assert.ok(kg.logs.some((l) => l.includes('"msg":"stopped"')));

      readStore(data, (db) => assert.equal(usageCount(db, key.body.id), 2, "both verifications were flushed"));
    } finally {
      await kg.stop();
    }
  });

  test("a request still open after server.shutdownTimeoutMs is cut off, and usage is flushed all the same", async () => {
    const { kg, key, data, hanging } = await serveWithHangingRequest("deadline", 500);
    try {
      const signalledAt = performance.now();
      kg.child.kill("SIGTERM");
      assert.equal(await kg.exited, 0, kg.logs.join("\n"));
      const took = performance.now() - signalledAt;
      assert.ok(took >= 450 && took < 5000, `exited ${took.toFixed(0)} ms after the signal`);
      assert.ok((await hanging) instanceof Error, "the hanging request was cut off, not answered");
      assert.ok(kg.logs.some((l) => l.includes("requests still open after server.shutdownTimeoutMs were cut off")));

      readStore(data, (db) => {
        // Both verifications were counted; the cut request's analytics event never completed.
        assert.equal(usageCount(db, key.body.id), 2);
        const logs = db.prepare("SELECT path FROM request_logs WHERE key_id = ?").all(key.body.id) as Array<{ path: string }>;
        assert.ok(logs.some((l) => l.path === "/shop/fast"));
      });
    } finally {
      await kg.stop();
    }
  });
});
