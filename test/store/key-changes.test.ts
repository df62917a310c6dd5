/**
 * The store's change feed (keyChangesSince / pruneKeyChanges), run against every adapter:
 * it is what lets other processes sharing a store drop changed keys from their caches, so a
 * change it skips is a revoked key that keeps working somewhere.
 */
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import pg from "pg";
import { KeygateError } from "../../src/lib/errors.js";
import { createMemoryStore } from "../../src/store/memory/index.js";
import { createSqliteStore } from "../../src/store/sqlite/index.js";
import { createPostgresStore } from "../../src/store/postgres/index.js";
import type { Account, KeyRecord, Store } from "../../src/store/types.js";
import { createTestDatabase, PG_SKIP, waitFor } from "../support/scale-out.js";
import type { TestDatabase } from "../support/scale-out.js";

interface Adapter {
  store: Store;
  /** Another store on the same database, as a second node would have; null where there is none. */
  second: Store | null;
  db: TestDatabase | null;
  close(): Promise<void>;
}

const ADAPTERS: Array<[name: string, make: () => Promise<Adapter>, skip: string | false]> = [
  ["memory", async () => { const store = createMemoryStore(); return { store, second: null, db: null, close: () => store.close() }; }, false],
  ["sqlite", async () => { const store = createSqliteStore({ filename: ":memory:" }); return { store, second: null, db: null, close: () => store.close() }; }, false],
  ["postgres", async () => {
    const db = await createTestDatabase();
    const store = createPostgresStore({ connectionString: db.url, maxConnections: 4 });
    const second = createPostgresStore({ connectionString: db.url, maxConnections: 2 });
    return { store, second, db, async close() { await store.close(); await second.close(); await db.drop(); } };
  }, PG_SKIP],
];

const ACCOUNT_ID = "acc_0000000000000000000001";
let serial = 0;

/** A key record with every field set; ids sort by creation like real ones. */
function keyRecord(at: number, over: Partial<KeyRecord> = {}): KeyRecord {
  const n = String(++serial).padStart(8, "0");
  return {
    id: `key_${n}`, api: "pay", accountId: ACCOUNT_ID, applicationId: null, name: null, environment: "live",
    hash: `hash-${n}-${Math.random().toString(36).slice(2)}`, hashAlgorithm: "sha256", start: null, scopes: [], ipAllowlist: [],
    expiresAt: null, rateLimit: null, enabled: true, revokedAt: null, rotatedAt: null, graceEndsAt: null, replacedBy: null,
    metadata: {}, source: "generated", createdAt: at, updatedAt: at, lastUsedAt: null, usageCount: 0, ...over,
  };
}

const position = async (store: Store): Promise<number> => (await store.keyChangesSince(null, 0)).cursor;

for (const [name, make, skip] of ADAPTERS) {
  describe(`store change feed: ${name}`, { skip }, () => {
    let adapter: Adapter;
    let store: Store;

    before(async () => {
      adapter = await make();
      store = adapter.store;
      await store.migrate();
      await store.createAccount({ id: ACCOUNT_ID, name: "Acme", email: "ops@acme.test", metadata: {}, ipAllowlists: {}, createdAt: 1, updatedAt: 1 } as Account);
    });
    after(async () => { await adapter?.close(); });

    test("a null cursor returns the current position and no hashes", async () => {
      const start = await store.keyChangesSince(null, 100);
      assert.deepEqual(start.hashes, []);
      assert.equal(start.complete, true);
      await store.insertKeys([keyRecord(1000), keyRecord(1000)]);
      const now = await store.keyChangesSince(null, 100);
      assert.deepEqual(now.hashes, []);
      assert.equal(now.complete, true);
      assert.ok(now.cursor > start.cursor, `position moved from ${start.cursor} to ${now.cursor}`);
      assert.deepEqual(await store.keyChangesSince(now.cursor, 100), { cursor: now.cursor, hashes: [], complete: true });
    });

    test("creates, updates and rotations come back in order; failed writes leave no change", async () => {
      const from = await position(store);
      const k1 = keyRecord(1000);
      const k2 = keyRecord(1000);
      await store.insertKeys([k1, k2]);
      await store.updateKey(k1.id, { name: "renamed" }, 2000);
      const k3 = keyRecord(3000);
      await store.rotateKey(k2.id, { rotatedAt: 3000, graceEndsAt: 3000, replacedBy: k3.id }, k3, 3000);
      assert.equal(await store.updateKey("key_missing", { name: "x" }, 4000), null);
      await assert.rejects(store.insertKeys([keyRecord(4000), keyRecord(4000, { hash: k1.hash })]), (e: unknown) => e instanceof KeygateError && e.code === "DUPLICATE_KEY");
      await assert.rejects(store.rotateKey(k3.id, { rotatedAt: 4000 }, keyRecord(4000, { hash: k1.hash }), 4000), (e: unknown) => e instanceof KeygateError && e.code === "DUPLICATE_KEY");

      const changes = await store.keyChangesSince(from, 100);
      assert.equal(changes.complete, true);
      assert.deepEqual(changes.hashes.slice(0, 3), [k1.hash, k2.hash, k1.hash]);
      // Both hashes of a rotation are one transaction: their order between them is not specified.
      assert.deepEqual([...changes.hashes.slice(3)].sort(), [k2.hash, k3.hash].sort());
      assert.equal(changes.cursor, await position(store));
    });

    test("reads in pages of `limit`, each cursor continuing where the last stopped", async () => {
      const from = await position(store);
      const keys = Array.from({ length: 5 }, () => keyRecord(1000));
      for (const k of keys) await store.insertKeys([k]);
      const seen: string[] = [];
      let cursor = from;
      for (const size of [2, 2, 1]) {
        const page = await store.keyChangesSince(cursor, 2);
        assert.equal(page.hashes.length, size);
        assert.equal(page.complete, true);
        seen.push(...page.hashes);
        cursor = page.cursor;
      }
      assert.deepEqual(seen, keys.map((k) => k.hash));
      assert.deepEqual(await store.keyChangesSince(cursor, 2), { cursor, hashes: [], complete: true });
    });

    test("a cursor from before pruned changes is incomplete; one after them is not", async () => {
      const base = 10_000_000;
      const k1 = keyRecord(base + 1000);
      const k2 = keyRecord(base + 2000);
      const from = await position(store);
      await store.insertKeys([k1]);
      const afterFirst = await position(store);
      await store.insertKeys([k2]);
      const afterSecond = await position(store);
      await store.updateKey(k1.id, { name: "late" }, base + 3000);
      // Everything so far in this suite is older than base + 2500, so this prunes all but the update.
      await store.pruneKeyChanges(base + 2500);

      const stale = await store.keyChangesSince(from, 100);
      assert.equal(stale.complete, false);
      assert.deepEqual(stale.hashes, []);
      assert.equal(stale.cursor, await position(store)); // where a caller that dropped its cache resumes
      assert.equal((await store.keyChangesSince(afterFirst, 100)).complete, false);
      const current = await store.keyChangesSince(afterSecond, 100);
      assert.equal(current.complete, true);
      assert.deepEqual(current.hashes, [k1.hash]);
    });

    test("pruning every change keeps the position, and a cursor before them stays incomplete", async () => {
      const from = await position(store);
      const k1 = keyRecord(20_000_000);
      const k2 = keyRecord(20_000_000);
      await store.insertKeys([k1]);
      await store.insertKeys([k2]);
      const end = await position(store);
      await store.pruneKeyChanges(Number.MAX_SAFE_INTEGER);

      assert.equal((await store.keyChangesSince(from, 100)).complete, false, "changes after `from` were pruned: the caller must drop its cache");
      assert.equal(await position(store), end, "the position must not move back, or new nodes would replay or skip changes");
      assert.deepEqual(await store.keyChangesSince(end, 100), { cursor: end, hashes: [], complete: true });
      const k3 = keyRecord(20_000_001);
      await store.insertKeys([k3]);
      const next = await store.keyChangesSince(end, 100);
      assert.deepEqual(next.hashes, [k3.hash]);
      assert.equal(next.complete, true);
    });

    if (name === "postgres") {
      test("a change that commits after a later-numbered one is still delivered", async () => {
        // Two nodes write at once: node A's import is held up mid-transaction (its second chunk
        // waits for a conflicting uncommitted row of a third session) after its first chunk's
        // changes were numbered; node B's write goes meanwhile. A reader that polls in between
        // must still get A's changes once A commits.
        const db = adapter.db!;
        const second = adapter.second!;
        const blocker = new pg.Client({ connectionString: db.url });
        const watcher = new pg.Client({ connectionString: db.url });
        await blocker.connect();
        await watcher.connect();
        try {
          const held = keyRecord(30_000_000);
          await blocker.query("BEGIN");
          await blocker.query(
            "INSERT INTO keys (id, api, account_id, environment, hash, hash_algorithm, source, created_at, updated_at) VALUES ($1, 'pay', $2, 'live', $3, 'sha256', 'imported', 1, 1)",
            [`${held.id}_blocker`, ACCOUNT_ID, held.hash],
          );
          await store.insertKeys([keyRecord(30_000_000)]); // so the feed is not empty before `from`
          const from = await position(store);
          const importA = [...Array.from({ length: 500 }, () => keyRecord(30_000_000)), held]; // chunk 1: 500 keys, chunk 2: `held`
          const writeB = keyRecord(30_000_000);
          const waiting = async (): Promise<number> =>
            Number((await watcher.query("SELECT count(*) AS n FROM pg_stat_activity WHERE datname = $1 AND wait_event_type = 'Lock'", [db.name])).rows[0].n);

          const a = store.insertKeys(importA);
          a.catch(() => {});
          await waitFor("node A's import to wait on the held row", async () => (await waiting()) >= 1, 10_000, 10);
          let bDone = false;
          const b = second.insertKeys([writeB]).then(() => { bDone = true; });
          b.catch(() => {});
          // B either commits at once (changes numbered out of commit order) or waits its turn.
          await waitFor("node B's write to commit or to wait", async () => bDone || (await waiting()) >= 2, 10_000, 10);
          const early = await store.keyChangesSince(from, 10_000);

          await blocker.query("ROLLBACK");
          await Promise.all([a, b]);
          const late = await store.keyChangesSince(early.cursor, 10_000);

          const seen = new Set([...early.hashes, ...late.hashes]);
          const missed = [...importA, writeB].filter((k) => !seen.has(k.hash));
          assert.equal(missed.length, 0, `${missed.length} of ${importA.length + 1} changes were never delivered to a reader that polled in between`);
          assert.deepEqual([early.complete, late.complete], [true, true]);
        } finally {
          await blocker.end().catch(() => {});
          await watcher.end();
        }
      });
    }
  });
}
