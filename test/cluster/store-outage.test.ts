/**
 * A PostgreSQL outage, simulated without touching the shared server: keygate reaches its
 * database through a TCP proxy that the test cuts and restores. While it is cut, cached keys
 * keep verifying for at most `cache.maxStaleSeconds`; everything that needs the database gets
 * KeygateError STORE_UNAVAILABLE (HTTP 503), nothing is half-written, and once the proxy is
 * back everything works again without a restart.
 */
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import type { FastifyInstance } from "fastify";
import { createKeygate } from "../../src/keygate.js";
import type { Keygate } from "../../src/keygate.js";
import { buildServer } from "../../src/http/server.js";
import { createManualClock } from "../../src/lib/clock.js";
import type { ManualClock } from "../../src/lib/clock.js";
import { KeygateError } from "../../src/lib/errors.js";
import { sha256Hex } from "../../src/keys/hash.js";
import { createPostgresStore } from "../../src/store/postgres/index.js";
import type { Store } from "../../src/store/types.js";
import { createTestDatabase, PG_SKIP, PG_URL, startTcpProxy } from "../support/scale-out.js";
import type { TcpProxy, TestDatabase } from "../support/scale-out.js";

const ROOT_KEY = "kg_root_store_outage_0123456789abcdefghij";
const MAX_STALE_SECONDS = 30;

const storeUnavailable = (e: unknown): boolean => {
  assert.ok(e instanceof KeygateError, `expected a KeygateError, got ${String(e)}`);
  assert.equal(e.code, "STORE_UNAVAILABLE");
  assert.equal(e.status, 503);
  return true;
};

describe("PostgreSQL outage behind a TCP proxy", { skip: PG_SKIP }, () => {
  let db: TestDatabase;
  let proxy: TcpProxy;
  let store: Store;
  let keygate: Keygate;
  let app: FastifyInstance;
  let clock: ManualClock;
  let accountId: string;
  let cached: { id: string; key: string };
  let uncached: { id: string; key: string };
  let validWhileCut = 0;

  const http = async (method: "GET" | "POST", url: string, payload?: unknown) => {
    const res = await app.inject({ method, url, headers: { authorization: `Bearer ${ROOT_KEY}` }, ...(payload === undefined ? {} : { payload: payload as object }) });
    return { status: res.statusCode, body: res.json(), headers: res.headers };
  };

  before(async () => {
    db = await createTestDatabase();
    const target = new URL(PG_URL!);
    proxy = await startTcpProxy({ host: target.hostname, port: Number(target.port || 5432) });
    const viaProxy = new URL(db.url);
    viaProxy.hostname = "127.0.0.1";
    viaProxy.port = String(proxy.port);
    store = createPostgresStore({ connectionString: viaProxy.toString(), maxConnections: 4, connectTimeoutMs: 1000 });
    clock = createManualClock(Date.now());
    keygate = await createKeygate({
      config: {
        apis: [{ id: "pay", keyFormat: { prefix: "ce" } }],
        // The change feed is read only when the test says so (syncChanges), and usage is
        // flushed only when it says so (flush), so the outage is the only thing going on.
        cache: { changePollMs: 600_000, maxStaleSeconds: MAX_STALE_SECONDS },
        usage: { flushIntervalMs: 600_000 },
      },
      store, clock, onBackgroundError: () => {},
    });
    app = await buildServer({ keygate, rootKeyHash: sha256Hex(ROOT_KEY) });
    accountId = (await keygate.accounts.create({ name: "Acme", email: "ops@acme.test" })).id;
    const a = await keygate.keys.create({ api: "pay", accountId });
    const b = await keygate.keys.create({ api: "pay", accountId });
    cached = { id: a.id, key: a.key };
    uncached = { id: b.id, key: b.key };
    // Reading the feed drops this node's own new keys from its cache too, so verify after it.
    await keygate.syncChanges();
    assert.equal((await keygate.verifyKey({ api: "pay", key: cached.key })).code, "VALID");
    await keygate.flush();
  });

  after(async () => {
    await proxy?.restore().catch(() => {});
    await app?.close();
    await keygate?.close().catch(() => {});
    await proxy?.close();
    await db?.drop();
  });

  describe("while the database is unreachable", () => {
    before(async () => { await proxy.cut(); });

    test("a cached key keeps verifying, in-process and over HTTP", async () => {
      assert.equal((await keygate.verifyKey({ api: "pay", key: cached.key })).code, "VALID");
      const res = await http("POST", "/v1/keys/verify", { api: "pay", key: cached.key });
      assert.equal(res.status, 200);
      assert.equal(res.body.code, "VALID");
      validWhileCut = 2;
    });

    test("an uncached key gets STORE_UNAVAILABLE, not a verdict", async () => {
      await assert.rejects(keygate.verifyKey({ api: "pay", key: uncached.key }), storeUnavailable);
      const res = await http("POST", "/v1/keys/verify", { api: "pay", key: uncached.key });
      assert.equal(res.status, 503);
      assert.equal(res.body.code, "STORE_UNAVAILABLE");
      assert.equal(res.headers["retry-after"], "1");
      assert.doesNotMatch(JSON.stringify(res.body), new RegExp(uncached.key));
    });

    test("writes and reads of the admin API get STORE_UNAVAILABLE (503)", async () => {
      await assert.rejects(keygate.keys.create({ api: "pay", accountId }), storeUnavailable);
      await assert.rejects(keygate.keys.revoke(cached.id), storeUnavailable);
      await assert.rejects(keygate.accounts.create({ name: "Other", email: "other@acme.test" }), storeUnavailable);
      for (const [method, url, payload] of [
        ["POST", "/v1/keys", { api: "pay", accountId }],
        ["POST", `/v1/keys/${cached.id}/revoke`, undefined],
        ["GET", `/v1/keys/${cached.id}`, undefined],
        ["GET", "/v1/accounts", undefined],
      ] as const) {
        const res = await http(method, url, payload);
        assert.equal(res.status, 503, `${method} ${url}: ${JSON.stringify(res.body)}`);
        assert.equal(res.body.code, "STORE_UNAVAILABLE");
      }
      const health = await app.inject({ method: "GET", url: "/healthz" });
      assert.equal(health.statusCode, 503);
    });

    test("the change feed and the usage flush fail, and usage is kept for later", async () => {
      await assert.rejects(keygate.syncChanges(), storeUnavailable);
      await assert.rejects(keygate.flush(), storeUnavailable);
    });

    test("after cache.maxStaleSeconds without the change feed, cached keys are no longer trusted", async () => {
      clock.advance((MAX_STALE_SECONDS - 1) * 1000);
      assert.equal((await keygate.verifyKey({ api: "pay", key: cached.key })).code, "VALID");
      validWhileCut++;
      clock.advance(2000);
      await assert.rejects(keygate.verifyKey({ api: "pay", key: cached.key }), storeUnavailable);
    });
  });

  describe("once the database is back", () => {
    before(async () => { await proxy.restore(); });

    test("verifications, the change feed and writes work again without a restart", async () => {
      assert.equal((await keygate.verifyKey({ api: "pay", key: uncached.key })).code, "VALID");
      assert.equal((await keygate.verifyKey({ api: "pay", key: cached.key })).code, "VALID");
      await keygate.syncChanges();
      const created = await keygate.keys.create({ api: "pay", accountId });
      assert.equal((await keygate.verifyKey({ api: "pay", key: created.key })).code, "VALID");
      const res = await http("GET", `/v1/keys/${created.id}`);
      assert.equal(res.status, 200);
      assert.equal((await app.inject({ method: "GET", url: "/healthz" })).statusCode, 200);
    });

    test("usage counted during the outage reaches the database", async () => {
      await keygate.flush();
      const stored = await store.getKey(cached.id);
      // 1 before the outage, `validWhileCut` during it, 1 just after it.
      assert.equal(stored!.usageCount, 1 + validWhileCut + 1);
    });
  });

  describe("a connection lost in the middle of a transaction", () => {
    /** Cuts the proxy when a client sends the `nth` statement containing `text`; restores it afterwards. */
    async function cutAt(text: string, nth: number, action: () => Promise<unknown>): Promise<unknown> {
      let seen = 0;
      let tail = ""; // a statement may straddle two chunks
      proxy.onClientData = (chunk) => {
        const data = tail + chunk.toString("latin1");
        seen += data.split(text).length - 1;
        tail = data.slice(-(text.length - 1));
        return seen < nth;
      };
      try {
        return await action().then(() => assert.fail(`expected the cut at ${text} #${nth} to fail the operation`), (e: unknown) => e);
      } finally {
        proxy.onClientData = null;
        await proxy.restore();
      }
    }

    test("a query in flight fails with STORE_UNAVAILABLE and does not crash the process", async () => {
      // Before the fix in src/store/postgres, the dropped connection's 'error' event on the
      // checked-out client had no listener: an uncaught exception that ends `keygate serve`.
      const error = await cutAt('from "keys"', 1, () => keygate.keys.get(uncached.id));
      storeUnavailable(error);
      await new Promise((resolve) => setTimeout(resolve, 50)); // let the socket's close events run
      assert.equal((await keygate.keys.get(uncached.id)).id, uncached.id);
    });

    test("an import of 1200 keys cut after its first chunk leaves no key and no change behind", async () => {
      const before = (await store.listKeys({ limit: 10_000 })).length;
      const cursor = (await store.keyChangesSince(null, 0)).cursor;
      const hashes = Array.from({ length: 1200 }, (_, i) => sha256Hex(`imported-${i}`));
      const inputs = hashes.map((hash) => ({ hash, accountId }));
      const error = await cutAt('insert into "keys"', 2, () => keygate.keys.import("pay", inputs));
      storeUnavailable(error);

      assert.equal((await store.listKeys({ limit: 10_000 })).length, before);
      assert.equal(await store.getKeyByHash(hashes[0]!), null);
      assert.deepEqual((await store.keyChangesSince(cursor, 10_000)).hashes, []);
      // Nothing was written, so the same import now succeeds in full instead of clashing.
      assert.equal((await keygate.keys.import("pay", inputs)).length, 1200);
    });

    test("a rotation cut between marking the old key and inserting its successor changes nothing", async () => {
      const key = await keygate.keys.create({ api: "pay", accountId });
      const before = await store.getKey(key.id);
      const cursor = (await store.keyChangesSince(null, 0)).cursor;
      const error = await cutAt('insert into "keys"', 1, () => keygate.keys.rotate(key.id, { gracePeriodSeconds: 60 }));
      storeUnavailable(error);

      assert.deepEqual(await store.getKey(key.id), before);
      assert.equal((await store.listKeys({ accountId, limit: 10_000 })).filter((k) => k.replacedBy !== null).length, 0);
      assert.deepEqual((await store.keyChangesSince(cursor, 100)).hashes, []);
      assert.equal((await keygate.verifyKey({ api: "pay", key: key.key })).code, "VALID");
      const rotated = await keygate.keys.rotate(key.id, { gracePeriodSeconds: 60 });
      assert.equal((await keygate.verifyKey({ api: "pay", key: rotated.key.key })).code, "VALID");
    });
  });
});
