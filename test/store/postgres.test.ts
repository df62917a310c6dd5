/**
 * The Store port's conformance suite against PostgreSQL, on a database of its own: every
 * method, every field round-tripped (BIGINT epoch milliseconds come back as numbers, JSON
 * columns as values), all-or-none writes, and the races only a server database has (two
 * nodes inserting the same secret or email at once). The change feed has its own suite in
 * key-changes.test.ts. Written like the memory/SQLite suite so it can join its ADAPTERS list.
 */
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import pg from "pg";
import { KeygateError } from "../../src/lib/errors.js";
import { createPostgresStore } from "../../src/store/postgres/index.js";
import type { Account, KeyRecord, Store } from "../../src/store/types.js";
import { createTestDatabase, PG_SKIP } from "../support/scale-out.js";
import type { TestDatabase } from "../support/scale-out.js";

interface Adapter {
  store: Store;
  /** A second store on the same database, as another node has. */
  other: Store;
  /** The database's name, to find its sessions. */
  database: string;
  close(): Promise<void>;
}

const ADAPTERS: Array<[name: string, make: () => Promise<Adapter>, skip: string | false]> = [
  ["postgres", async () => {
    const db: TestDatabase = await createTestDatabase();
    const store = createPostgresStore({ connectionString: db.url, maxConnections: 4 });
    const other = createPostgresStore({ connectionString: db.url, maxConnections: 4 });
    return { store, other, database: db.name, async close() { await store.close(); await other.close(); await db.drop(); } };
  }, PG_SKIP],
];

/** Epoch milliseconds beyond 2^31, so a driver that truncates or stringifies them is caught. */
const T = Date.parse("2031-05-06T07:08:09.123Z");
let serial = 0;
const next = (): string => String(++serial).padStart(8, "0");

function account(over: Partial<Account> = {}): Account {
  const n = next();
  return { id: `acc_${n}`, name: `Account ${n}`, email: `owner-${n}@example.test`, metadata: {}, ipAllowlists: {}, createdAt: T, updatedAt: T, ...over };
}

function key(accountId: string, over: Partial<KeyRecord> = {}): KeyRecord {
  const n = next();
  return {
    id: `key_${n}`, api: "pay", accountId, applicationId: null, name: null, environment: "live",
    hash: `${n}`.padEnd(64, "a"), hashAlgorithm: "sha256", start: null, scopes: [], ipAllowlist: [], expiresAt: null,
    rateLimit: null, enabled: true, revokedAt: null, rotatedAt: null, graceEndsAt: null, replacedBy: null, metadata: {},
    source: "generated", createdAt: T, updatedAt: T, lastUsedAt: null, usageCount: 0, ...over,
  };
}

/** A record with every optional field set, and values that need escaping or exact numbers. */
const everyField = (accountId: string): KeyRecord => key(accountId, {
  api: "airtime", applicationId: "app_00000001", name: "O'Brien \"prod\" key; DROP TABLE keys; --", environment: "test",
  hashAlgorithm: "hmac-sha256", start: "ce_test_a1B2", scopes: ["airtime.read", "wallets.read"],
  ipAllowlist: ["203.0.113.45/32", "2001:db8::/32"], expiresAt: T + 86_400_000, rateLimit: { limit: 1000, windowSeconds: 3600 },
  enabled: false, revokedAt: T + 1, rotatedAt: T + 2, graceEndsAt: T + 3, replacedBy: "key_99999999",
  metadata: { plan: "gold", nested: { list: [1, 2.5, null, "ünïcødé ✓"] } }, source: "imported",
  createdAt: T, updatedAt: T + 4, lastUsedAt: T + 5, usageCount: 9_007_199_254,
});

const isCode = (code: string) => (e: unknown): boolean => {
  assert.ok(e instanceof KeygateError, `expected KeygateError ${code}, got ${String(e)}`);
  assert.equal(e.code, code);
  assert.equal(e.status, 409);
  return true;
};

for (const [name, make, skip] of ADAPTERS) {
  describe(`store conformance: ${name}`, { skip }, () => {
    let adapter: Adapter;
    let store: Store;
    let owner: Account;

    before(async () => {
      adapter = await make();
      store = adapter.store;
      await store.migrate();
      owner = account();
      await store.createAccount(owner);
    });
    after(async () => { await adapter?.close(); });

    describe("schema", () => {
      test("migrate is safe to run again, and from two nodes at once", async () => {
        await store.migrate();
        await Promise.all([store.migrate(), adapter.other.migrate()]);
        assert.deepEqual(await store.getAccount(owner.id), owner);
      });
    });

    describe("accounts", () => {
      test("round-trip every field", async () => {
        const a = account({ name: "Zoë's \"shop\"", metadata: { tier: 2, tags: ["a", "b"] }, ipAllowlists: { live: ["198.51.100.0/24"], test: [] }, updatedAt: T + 10 });
        await store.createAccount(a);
        assert.deepEqual(await store.getAccount(a.id), a);
        assert.equal(await store.getAccount("acc_missing"), null);
      });

      test("emails are unique case-insensitively and found case-insensitively", async () => {
        const a = account({ email: "Dev.Team@Acme.test" });
        await store.createAccount(a);
        assert.deepEqual(await store.getAccountByEmail("dev.team@ACME.TEST"), a);
        await assert.rejects(store.createAccount(account({ email: "DEV.TEAM@acme.test" })), isCode("EMAIL_TAKEN"));
        assert.equal(await store.getAccountByEmail("nobody@acme.test"), null);
      });

      test("two nodes creating the same email at once: exactly one wins", async () => {
        const results = await Promise.allSettled([
          store.createAccount(account({ email: "race@acme.test" })),
          adapter.other.createAccount(account({ email: "RACE@acme.test" })),
        ]);
        assert.equal(results.filter((r) => r.status === "fulfilled").length, 1);
        const lost = results.find((r) => r.status === "rejected") as PromiseRejectedResult;
        isCode("EMAIL_TAKEN")(lost.reason);
      });

      test("list in id order, with a cursor and a limit", async () => {
        const all: Account[] = [];
        let after: string | undefined;
        for (;;) {
          const page = await store.listAccounts({ after, limit: 2 });
          assert.ok(page.length <= 2);
          all.push(...page);
          if (page.length < 2) break;
          after = page[page.length - 1]!.id;
        }
        const ids = all.map((a) => a.id);
        assert.deepEqual(ids, [...ids].sort());
        assert.equal(new Set(ids).size, ids.length);
        assert.ok(ids.includes(owner.id));
        assert.deepEqual(await store.listAccounts({ after: ids[ids.length - 1], limit: 10 }), []);
      });

      test("update patches the given fields and sets updatedAt", async () => {
        const a = account({ metadata: { keep: true } });
        await store.createAccount(a);
        const updated = await store.updateAccount(a.id, { name: "Renamed", ipAllowlists: { live: ["192.0.2.1/32"] } }, T + 100);
        const expected = { ...a, name: "Renamed", ipAllowlists: { live: ["192.0.2.1/32"] }, updatedAt: T + 100 };
        assert.deepEqual(updated, expected);
        assert.deepEqual(await store.getAccount(a.id), expected);
        assert.equal(await store.updateAccount("acc_missing", { name: "x" }, T), null);
      });
    });

    describe("keys", () => {
      test("getKey and getKeyByHash round-trip every field, set or null", async () => {
        const full = everyField(owner.id);
        const bare = key(owner.id);
        await store.insertKeys([full, bare]);
        assert.deepEqual(await store.getKey(full.id), full);
        assert.deepEqual(await store.getKeyByHash(full.hash), full);
        assert.deepEqual(await store.getKey(bare.id), bare);
        assert.deepEqual(await store.getKeyByHash(bare.hash), bare);
        assert.equal(await store.getKey("key_missing"), null);
        assert.equal(await store.getKeyByHash("f".repeat(64)), null);
      });

      test("insertKeys is all or none: a duplicate inside the batch or against a stored key inserts nothing", async () => {
        const stored = key(owner.id);
        await store.insertKeys([stored]);
        const fresh1 = key(owner.id);
        const fresh2 = key(owner.id);
        await assert.rejects(store.insertKeys([fresh1, key(owner.id, { hash: stored.hash })]), isCode("DUPLICATE_KEY"));
        await assert.rejects(store.insertKeys([fresh2, key(owner.id, { hash: fresh2.hash })]), isCode("DUPLICATE_KEY"));
        assert.equal(await store.getKey(fresh1.id), null);
        assert.equal(await store.getKey(fresh2.id), null);
        await store.insertKeys([]);
      });

      test("a batch larger than one statement's chunk is inserted whole, or not at all", async () => {
        const batch = Array.from({ length: 1201 }, () => key(owner.id, { api: "bulk" }));
        const clash = [...batch.slice(0, 1200), key(owner.id, { api: "bulk", hash: batch[0]!.hash })];
        await assert.rejects(store.insertKeys(clash), isCode("DUPLICATE_KEY"));
        assert.deepEqual(await store.listKeys({ api: "bulk", limit: 10 }), []);
        await store.insertKeys(batch);
        assert.equal((await store.listKeys({ api: "bulk", limit: 5000 })).length, 1201);
      });

      test("two nodes inserting the same secret at once: exactly one wins", async () => {
        const hash = "race".padEnd(64, "0");
        const results = await Promise.allSettled([
          store.insertKeys([key(owner.id, { hash })]),
          adapter.other.insertKeys([key(owner.id, { hash })]),
        ]);
        assert.equal(results.filter((r) => r.status === "fulfilled").length, 1);
        isCode("DUPLICATE_KEY")((results.find((r) => r.status === "rejected") as PromiseRejectedResult).reason);
      });

      test("listKeys filters by api and account, in id order, paged by cursor", async () => {
        const other = account();
        await store.createAccount(other);
        const mine = [key(other.id, { api: "list" }), key(other.id, { api: "list" }), key(other.id, { api: "list" })];
        await store.insertKeys([...mine, key(other.id, { api: "elsewhere" }), key(owner.id, { api: "list" })]);
        assert.deepEqual(await store.listKeys({ api: "list", accountId: other.id, limit: 10 }), mine);
        assert.deepEqual(await store.listKeys({ api: "list", accountId: other.id, limit: 2 }), mine.slice(0, 2));
        assert.deepEqual(await store.listKeys({ api: "list", accountId: other.id, after: mine[1]!.id, limit: 2 }), mine.slice(2));
        assert.equal((await store.listKeys({ accountId: other.id, limit: 10 })).length, 4);
        assert.equal((await store.listKeys({ api: "list", limit: 10 })).length, 4);
      });

      test("updateKey patches the given fields, clears nullable ones, and sets updatedAt", async () => {
        const k = everyField(owner.id);
        k.id = `key_${next()}`;
        k.hash = `upd${next()}`.padEnd(64, "b");
        await store.insertKeys([k]);
        const updated = await store.updateKey(k.id, { name: null, scopes: ["x"], ipAllowlist: [], expiresAt: null, rateLimit: null, enabled: true, metadata: {} }, T + 1000);
        const expected = { ...k, name: null, scopes: ["x"], ipAllowlist: [], expiresAt: null, rateLimit: null, enabled: true, metadata: {}, updatedAt: T + 1000 };
        assert.deepEqual(updated, expected);
        assert.deepEqual(await store.getKey(k.id), expected);
        assert.equal(await store.updateKey("key_missing", { name: "x" }, T), null);
      });

      test("rotateKey marks the old key and inserts its successor in one transaction", async () => {
        const old = key(owner.id, { scopes: ["a"] });
        await store.insertKeys([old]);
        const successor = key(owner.id, { scopes: ["a"] });
        const patch = { rotatedAt: T + 10, graceEndsAt: T + 60_010, replacedBy: successor.id };
        assert.deepEqual(await store.rotateKey(old.id, patch, successor, T + 10), { ...old, ...patch, updatedAt: T + 10 });
        assert.deepEqual(await store.getKey(successor.id), successor);

        // A successor whose secret exists already: DUPLICATE_KEY, and the old key is untouched.
        const another = key(owner.id);
        await store.insertKeys([another]);
        await assert.rejects(store.rotateKey(another.id, { rotatedAt: T + 20, replacedBy: "key_x" }, key(owner.id, { hash: successor.hash }), T + 20), isCode("DUPLICATE_KEY"));
        assert.deepEqual(await store.getKey(another.id), another);

        // An unknown old key: null, and no successor.
        const orphan = key(owner.id);
        assert.equal(await store.rotateKey("key_missing", { rotatedAt: T }, orphan, T), null);
        assert.equal(await store.getKey(orphan.id), null);
      });

      test("hasHashAlgorithm tells whether any key was stored with an algorithm", async () => {
        assert.equal(await store.hasHashAlgorithm("hmac-sha256"), true); // everyField above
        assert.equal(await store.hasHashAlgorithm("sha256"), true);
        assert.equal(await store.hasHashAlgorithm("argon2" as KeyRecord["hashAlgorithm"]), false);
      });

      test("recordUsage adds counts and keeps the latest lastUsedAt", async () => {
        const a = key(owner.id);
        const b = key(owner.id, { usageCount: 5, lastUsedAt: T + 500 });
        await store.insertKeys([a, b]);
        await store.recordUsage([{ keyId: a.id, count: 3, lastUsedAt: T + 100 }, { keyId: b.id, count: 2, lastUsedAt: T + 50 }, { keyId: "key_missing", count: 1, lastUsedAt: T }]);
        await store.recordUsage([{ keyId: a.id, count: 4, lastUsedAt: T + 90 }]);
        await store.recordUsage([]);
        assert.deepEqual([(await store.getKey(a.id))!.usageCount, (await store.getKey(a.id))!.lastUsedAt], [7, T + 100]);
        assert.deepEqual([(await store.getKey(b.id))!.usageCount, (await store.getKey(b.id))!.lastUsedAt], [7, T + 500]);
      });

      test("concurrent usage flushes from two nodes lose no count", async () => {
        const k = key(owner.id);
        await store.insertKeys([k]);
        await Promise.all(Array.from({ length: 20 }, (_, i) => (i % 2 ? store : adapter.other).recordUsage([{ keyId: k.id, count: 1, lastUsedAt: T + i }])));
        const stored = await store.getKey(k.id);
        assert.equal(stored!.usageCount, 20);
        assert.equal(stored!.lastUsedAt, T + 19);
      });
    });

    describe("settings", () => {
      test("absent is null; set, then overwrite", async () => {
        assert.equal(await store.getSetting("conformance"), null);
        await store.setSetting("conformance", "one");
        assert.equal(await store.getSetting("conformance"), "one");
        await adapter.other.setSetting("conformance", "two ' \" ;");
        assert.equal(await store.getSetting("conformance"), "two ' \" ;");
      });
    });

    describe("failures", () => {
      test("a query that is wrong, not an outage, is not reported as STORE_UNAVAILABLE", async () => {
        // A constraint the store does not translate (the account does not exist) surfaces as the driver's error.
        await assert.rejects(store.insertKeys([key("acc_does_not_exist")]), (e: unknown) => !(e instanceof KeygateError && e.code === "STORE_UNAVAILABLE"));
      });

      test("an unreachable server is STORE_UNAVAILABLE (503), for every method", async () => {
        const url = new URL(process.env.KEYGATE_TEST_PG_URL!);
        url.port = "1"; // nothing listens there
        const down = createPostgresStore({ connectionString: url.toString(), connectTimeoutMs: 1000 });
        try {
          for (const call of [() => down.getKeyByHash("x"), () => down.insertKeys([key(owner.id)]), () => down.getSetting("x"), () => down.keyChangesSince(null, 1), () => down.migrate()]) {
            await assert.rejects(call(), (e: unknown) => e instanceof KeygateError && e.code === "STORE_UNAVAILABLE" && e.status === 503);
          }
        } finally {
          await down.close();
        }
      });

      test("backends terminated by the server (admin shutdown) are replaced by themselves", async () => {
        assert.equal(await store.getSetting("conformance"), "two ' \" ;");
        const admin = new pg.Client({ connectionString: process.env.KEYGATE_TEST_PG_URL });
        await admin.connect();
        try {
          // Only this suite's database's sessions, never the machine's others.
          const killed = await admin.query("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1 AND pid <> pg_backend_pid()", [adapter.database]);
          assert.ok(killed.rowCount! > 0);
        } finally {
          await admin.end();
        }
        // A pooled connection may learn of its death from this query: that one is STORE_UNAVAILABLE…
        await store.getSetting("conformance").catch((e: unknown) => assert.ok(e instanceof KeygateError && e.code === "STORE_UNAVAILABLE", String(e)));
        await new Promise((resolve) => setTimeout(resolve, 50));
        // …and after it, the pool has fresh connections.
        assert.equal(await store.getSetting("conformance"), "two ' \" ;");
        assert.equal(await adapter.other.getSetting("conformance"), "two ' \" ;");
      });
    });
  });
}
