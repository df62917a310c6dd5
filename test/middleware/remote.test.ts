/**
 * Remote mode's own behaviour, with Express over real HTTP in front of a real keygate
 * service: which verdicts the local cache keeps and for how long, what that means for
 * revocation and rate limits, and how the service is called (request id, timeout).
 */
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { createServer } from "node:http";
import type { IncomingHttpHeaders } from "node:http";
import { setTimeout as sleep } from "node:timers/promises";
import express from "express";
import type { ErrorRequestHandler } from "express";
import { keygateAuth } from "../../src/middleware/express/index.js";
import type { KeygateExpressOptions } from "../../src/middleware/express/index.js";
import { createKeygateClient } from "../../src/client/index.js";
import type { KeygateClient } from "../../src/client/index.js";
import type { VerifyingClient } from "../../src/middleware/core.js";
import { bearer, closeServer, createFixture, listen, nextIp, ROOT_KEY, send } from "./support.js";
import type { Fixture } from "./support.js";

let fx: Fixture;
let client: KeygateClient;
before(async () => {
  fx = await createFixture("remote");
  client = fx.client!;
});
after(async () => { await fx?.close(); });

/** The SDK, counting the verifications that reach the service. */
function countingClient(): VerifyingClient & { calls: number } {
  const counting = { calls: 0, keys: { verify: (...args: Parameters<KeygateClient["keys"]["verify"]>) => { counting.calls++; return client.keys.verify(...args); } } };
  return counting;
}

/** An Express app whose GET /me is guarded by `options`; errors are answered 503 with their name. */
async function app(options: KeygateExpressOptions): Promise<{ url: string; close(): Promise<void> }> {
  const a = express();
  a.set("trust proxy", "loopback");
  a.get("/me", keygateAuth(options), (req, res) => { res.json({ keyId: req.keygate!.keyId }); });
  a.use(((error, _req, res, _next) => { res.status(503).json({ error: error.name, code: error.code }); }) as ErrorRequestHandler);
  const server = createServer(a);
  const url = await listen(server);
  return { url: `${url}/me`, close: () => closeServer(server) };
}

describe("remote verification without a cache", () => {
  test("every request is verified by the service, so a revoked key is refused on the very next request", async () => {
    const counter = countingClient();
    const served = await app({ client: counter, api: fx.keygate.apis.get("pay")!.config });
    try {
      const { id, key } = await fx.key({ api: "pay" });
      for (let i = 0; i < 3; i++) assert.equal((await send(served.url, { headers: bearer(key) })).status, 200);
      assert.equal(counter.calls, 3);
      await client.keys.revoke(id);
      assert.equal((await send(served.url, { headers: bearer(key) })).body.code, "REVOKED");
    } finally {
      await served.close();
    }
  });

  test("a request without a credential is refused locally, without asking the service", async () => {
    const counter = countingClient();
    const served = await app({ client: counter, api: "pay" });
    try {
      const res = await send(served.url);
      assert.equal(res.status, 401);
      assert.equal(res.body.code, "MISSING_CREDENTIALS");
      assert.equal(counter.calls, 0);
    } finally {
      await served.close();
    }
  });
});

describe("remote verification with a cache", () => {
  test("a VALID verdict is reused for ttlMs; a revocation shows once it has expired", async () => {
    const counter = countingClient();
    const served = await app({ client: counter, api: "pay", cache: { ttlMs: 400 } });
    try {
      const { id, key } = await fx.key({ api: "pay" });
      const ip = nextIp();
      for (let i = 0; i < 5; i++) assert.equal((await send(served.url, { headers: bearer(key), ip })).status, 200);
      assert.equal(counter.calls, 1);
      await client.keys.revoke(id);
      // The documented cost of the cache: up to ttlMs of a revoked key still admitted here.
      assert.equal((await send(served.url, { headers: bearer(key), ip })).status, 200);
      await sleep(450);
      const res = await send(served.url, { headers: bearer(key), ip });
      assert.equal(res.status, 401);
      assert.equal(res.body.code, "REVOKED");
      assert.equal(counter.calls, 2);
    } finally {
      await served.close();
    }
  });

  test("denials are never cached: each wrong attempt reaches the service and counts towards the lockout", async () => {
    const counter = countingClient();
    const served = await app({ client: counter, api: fx.keygate.apis.get("pay")!.config, cache: true });
    try {
      const { key } = await fx.key({ api: "pay" });
      const wrong = `${key.slice(0, -6)}zzzzzz`;
      const ip = nextIp();
      const left = [];
      for (let i = 0; i < 3; i++) left.push((await send(served.url, { headers: bearer(wrong), ip })).body.attemptsLeft);
      assert.deepEqual(left, [2, 1, 0]);
      assert.equal(counter.calls, 3);
      assert.equal((await send(served.url, { headers: bearer(key), ip })).body.code, "IP_BLOCKED");
    } finally {
      await served.close();
    }
  });

  test("a verdict is kept per client address: another address is verified by the service (its allowlist applies)", async () => {
    const counter = countingClient();
    const served = await app({ client: counter, api: "pay", cache: true });
    try {
      const { key } = await fx.key({ api: "pay", ipAllowlist: ["203.0.113.0/24"] });
      assert.equal((await send(served.url, { headers: bearer(key), ip: "203.0.113.1" })).status, 200);
      assert.equal((await send(served.url, { headers: bearer(key), ip: "203.0.113.1" })).status, 200);
      assert.equal(counter.calls, 1);
      assert.equal((await send(served.url, { headers: bearer(key), ip: "198.51.100.77" })).body.code, "IP_NOT_ALLOWED");
      assert.equal(counter.calls, 2);
    } finally {
      await served.close();
    }
  });

  test("keys with a rate limit are not cached by default, so the limit stays exact", async () => {
    const counter = countingClient();
    const served = await app({ client: counter, api: fx.keygate.apis.get("pay")!.config, cache: { ttlMs: 60_000 } });
    try {
      const { key } = await fx.key({ api: "pay", rateLimit: { limit: 2, windowSeconds: 31_536_000 } });
      const ip = nextIp();
      const statuses = [];
      for (let i = 0; i < 3; i++) statuses.push((await send(served.url, { headers: bearer(key), ip })).status);
      assert.deepEqual(statuses, [200, 200, 429]);
      assert.equal(counter.calls, 3);
    } finally {
      await served.close();
    }
  });

  test("rateLimited: true reuses a verdict for at most the `remaining` it carried, counting down; the service counts only misses", async () => {
    const counter = countingClient();
    const served = await app({ client: counter, api: fx.keygate.apis.get("pay")!.config, cache: { ttlMs: 60_000, rateLimited: true } });
    try {
      const { key } = await fx.key({ api: "pay", rateLimit: { limit: 3, windowSeconds: 31_536_000 } });
      const ip = nextIp();
      const remaining = [];
      for (let i = 0; i < 4; i++) {
        const res = await send(served.url, { headers: bearer(key), ip });
        assert.equal(res.status, 200);
        remaining.push(res.headers.get("x-ratelimit-remaining"));
      }
      // 2 from the service, 1 and 0 from the cache, then the entry is spent and the service,
      // which saw one request, answers 1: the trade-off docs/middleware.md describes.
      assert.deepEqual(remaining, ["2", "1", "0", "1"]);
      assert.equal(counter.calls, 2);
    } finally {
      await served.close();
    }
  });

  test("a cached verdict is not used past the key's own expiry", async () => {
    const counter = countingClient();
    const served = await app({ client: counter, api: "pay", cache: { ttlMs: 60_000 } });
    try {
      const { key } = await fx.key({ api: "pay", expiresAt: new Date(Date.now() + 400).toISOString() });
      const ip = nextIp();
      assert.equal((await send(served.url, { headers: bearer(key), ip })).status, 200);
      assert.equal((await send(served.url, { headers: bearer(key), ip })).status, 200);
      assert.equal(counter.calls, 1);
      await sleep(450);
      assert.equal((await send(served.url, { headers: bearer(key), ip })).body.code, "EXPIRED");
    } finally {
      await served.close();
    }
  });
});

describe("calling the service", () => {
  /** A stand-in verify API that records what it was sent and answers after `delayMs`. */
  async function fakeService(delayMs: number) {
    const seen: IncomingHttpHeaders[] = [];
    const server = createServer((req, res) => {
      seen.push(req.headers);
      const timer = setTimeout(() => {
        res.writeHead(200, { "content-type": "application/json" });
        res.end(JSON.stringify({ valid: true, code: "VALID", api: "pay", keyId: "key_1", accountId: "acc_1", environment: "live", scopes: [] }));
      }, delayMs);
      res.on("close", () => clearTimeout(timer));
    });
    const url = await listen(server);
    return { url, seen, close: () => closeServer(server) };
  }

  test("the request id goes to the service as X-Request-Id", async () => {
    const svc = await fakeService(0);
    const served = await app({ client: createKeygateClient({ baseUrl: svc.url, rootKey: ROOT_KEY }), api: "pay" });
    try {
      const res = await send(served.url, { headers: { ...bearer("pk_live_anything"), "x-request-id": "req_trace_9" } });
      assert.equal(res.status, 200);
      assert.equal(svc.seen[0]!["x-request-id"], "req_trace_9");
    } finally {
      await served.close();
      await svc.close();
    }
  });

  test("timeoutMs bounds each verification: a stalled service is a TIMEOUT error for the app's handler", async () => {
    const svc = await fakeService(5_000);
    const served = await app({ client: createKeygateClient({ baseUrl: svc.url, rootKey: ROOT_KEY, retries: 0 }), api: "pay", timeoutMs: 100 });
    try {
      const started = Date.now();
      const res = await send(served.url, { headers: bearer("pk_live_anything") });
      assert.equal(res.status, 503);
      assert.deepEqual(res.body, { error: "KeygateNetworkError", code: "TIMEOUT" });
      assert.ok(Date.now() - started < 2_000);
    } finally {
      await served.close();
      await svc.close();
    }
  });
});

describe("remote settings are checked when the app is built", () => {
  test("an API that accepts JWTs cannot be verified remotely", () => {
    assert.throws(() => keygateAuth({ client, api: fx.keygate.apis.get("pesa")!.config }), /accepts JWTs, which POST \/v1\/keys\/verify cannot check/);
  });

  test("settings are checked like keygate.yaml: a misspelt error style names its field", () => {
    assert.throws(() => keygateAuth({ client, api: { id: "pay", errorStyle: "problme" as "problem" } }), /api\.errorStyle/);
  });

  test("a non-positive cache ttl is refused", () => {
    assert.throws(() => keygateAuth({ client, api: "pay", cache: { ttlMs: 0 } }), /ttlMs must be a positive number/);
  });
});
