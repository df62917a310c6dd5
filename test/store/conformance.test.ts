/**
 * The storage port's contract, run against every adapter so that they cannot drift apart.
 * Every test gets a fresh, migrated store.
 *
 * To add an adapter, append to ADAPTERS a name, a factory and a skip reason (or false).
 * PostgreSQL reads KEYGATE_TEST_PG_URL and gets a throwaway database per test; PostgreSQL-only
 * behaviour (races between nodes, outages) is in postgres.test.ts.
 */
import { existsSync, mkdtempSync, readdirSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, describe, test } from "node:test";
import assert from "node:assert/strict";
import { KeygateError } from "../../src/lib/errors.js";
import { createMemoryStore } from "../../src/store/memory/index.js";
import { createSqliteStore } from "../../src/store/sqlite/index.js";
import { createPostgresStore } from "../../src/store/postgres/index.js";
import { createTestDatabase, PG_SKIP } from "../support/scale-out.js";
import type { Account, Application, KeyPatch, KeyRecord, Store } from "../../src/store/types.js";
import type { AnalyticsBatch, RequestLog, UsageCounters, UsageQuery, UsageQueryRow } from "../../src/store/types.js";

/** A store for one test, and how to dispose of it and everything it wrote. */
interface StoreFixture {
  store: Store;
  cleanup(): Promise<void>;
}

const sqliteDirs: string[] = [];

const ADAPTERS: Array<[name: string, make: () => Promise<StoreFixture>, skip: string | false]> = [
  ["memory", async () => {
    const store = createMemoryStore();
    return { store, cleanup: () => store.close() };
  }, false],
  ["sqlite", async () => {
    const dir = mkdtempSync(join(tmpdir(), "keygate-store-"));
    sqliteDirs.push(dir);
    const file = join(dir, "keygate.db");
    const store = createSqliteStore({ filename: file });
    return {
      store,
      async cleanup() {
        await store.close();
        for (const f of [file, `${file}-wal`, `${file}-shm`]) rmSync(f, { force: true });
        rmSync(dir, { recursive: true, force: true });
      },
    };
  }, false],
  ["postgres", async () => {
    const db = await createTestDatabase();
    const store = createPostgresStore({ connectionString: db.url, maxConnections: 4 });
    return { store, async cleanup() { await store.close(); await db.drop(); } };
  }, PG_SKIP],
];

after(() => {
  for (const dir of sqliteDirs) assert.equal(existsSync(dir), false, `${dir} was left behind: ${existsSync(dir) ? readdirSync(dir).join(", ") : ""}`);
});

/** Runs `fn` on a fresh migrated store of the adapter and always disposes of it. */
const withStore = (make: () => Promise<StoreFixture>) => async (fn: (store: Store) => Promise<void>): Promise<void> => {
  const fixture = await make();
  try {
    await fixture.store.migrate();
    await fn(fixture.store);
  } finally {
    await fixture.cleanup();
  }
};

const T = Date.parse("2026-01-01T00:00:00Z");
/** The latest time a JavaScript Date can hold: 8.64e15 ms, beyond 32 and 48 bits. */
const FAR_FUTURE = 8_640_000_000_000_000;

function account(id: string, over: Partial<Account> = {}): Account {
  // Hex, so that ids differing only in case (acc_b, acc_B) get different emails.
  return { id, name: `Account ${id}`, email: `${Buffer.from(id).toString("hex")}@example.test`, metadata: {}, ipAllowlists: {}, createdAt: T, updatedAt: T, ...over };
}

let serial = 0;
/** A key record with only required fields set; ids sort in creation order like real ones. */
function keyRecord(accountId: string, over: Partial<KeyRecord> = {}): KeyRecord {
  const n = String(++serial).padStart(8, "0");
  return {
    id: `key_${n}`, api: "pay", accountId, applicationId: null, name: null, environment: "live",
    hash: `${n}${"0".repeat(56)}`, hashAlgorithm: "sha256", start: null, scopes: [], ipAllowlist: [],
    expiresAt: null, rateLimit: null, enabled: true, revokedAt: null, rotatedAt: null, graceEndsAt: null, replacedBy: null,
    metadata: {}, source: "generated", createdAt: T, updatedAt: T, lastUsedAt: null, usageCount: 0, ...over,
  };
}

/** A record with every nullable field set and awkward values everywhere. */
function fullRecord(accountId: string): KeyRecord {
  return keyRecord(accountId, {
    api: "mail", applicationId: "app_0000000001", name: "Ünïcode name — ключ 🔑 'quoted' \"double\"", environment: "test",
    hashAlgorithm: "hmac-sha256", start: "ck_test_ab12", scopes: ["read", "write:all", "validate:target-groups"],
    ipAllowlist: ["198.51.100.0/24", "2001:db8::/32"], expiresAt: FAR_FUTURE, rateLimit: { limit: 1_000_000_000, windowSeconds: 31_536_000 },
    enabled: false, revokedAt: T + 1, rotatedAt: T + 2, graceEndsAt: T + 3, replacedBy: "key_99999999",
    metadata: { plan: "pro", nested: { list: [1, "two", null, { three: true }], empty: {} }, n: -1.5, big: 2 ** 53 - 1, t: true, nul: null, s: "a\u0000b" },
    source: "imported", createdAt: 1, updatedAt: FAR_FUTURE - 1, lastUsedAt: FAR_FUTURE - 2, usageCount: 2 ** 40,
  });
}

const isCode = (code: string) => (e: unknown): boolean => {
  assert.ok(e instanceof KeygateError, `expected a KeygateError, got ${String(e)}`);
  assert.equal(e.code, code);
  assert.equal(e.status, 409);
  return true;
};

for (const [name, make, skip] of ADAPTERS) {
  const run = withStore(make);

  describe(`store conformance: ${name}`, { skip }, () => {
    describe("migrations", () => {
      test("migrate is idempotent and keeps the data", () => run(async (store) => {
        await store.createAccount(account("acc_1"));
        await store.migrate();
        await store.migrate();
        assert.deepEqual(await store.getAccount("acc_1"), account("acc_1"));
      }));
    });

    describe("accounts", () => {
      test("an account reads back exactly as created; an unknown id is null", () => run(async (store) => {
        const a = account("acc_Full", {
          name: "Acme ✓", email: "Dev.Team@Acme.Test", metadata: { tier: "gold", limits: [1, 2], nested: { x: null } },
          ipAllowlists: { live: ["198.51.100.0/24"], test: [] }, createdAt: T, updatedAt: FAR_FUTURE,
        });
        await store.createAccount(a);
        assert.deepEqual(await store.getAccount("acc_Full"), a);
        assert.equal(await store.getAccount("acc_none"), null);
      }));

      test("getAccountByEmail ignores case and returns the email as written", () => run(async (store) => {
        await store.createAccount(account("acc_1", { email: "Dev.Team@Acme.Test" }));
        for (const email of ["Dev.Team@Acme.Test", "dev.team@acme.test", "DEV.TEAM@ACME.TEST"]) {
          const found = await store.getAccountByEmail(email);
          assert.equal(found?.id, "acc_1", email);
          assert.equal(found?.email, "Dev.Team@Acme.Test");
        }
        assert.equal(await store.getAccountByEmail("other@acme.test"), null);
      }));

      test("a second account with the same email in any case is EMAIL_TAKEN and the first is unchanged", () => run(async (store) => {
        const first = account("acc_1", { email: "ops@acme.test" });
        await store.createAccount(first);
        await assert.rejects(store.createAccount(account("acc_2", { email: "OPS@acme.test" })), isCode("EMAIL_TAKEN"));
        assert.equal(await store.getAccount("acc_2"), null);
        assert.deepEqual(await store.getAccountByEmail("ops@acme.test"), first);
      }));

      test("listAccounts pages by id in byte order with an `after` cursor", () => run(async (store) => {
        // Base62 ids sort by creation time only in byte order: digits < upper case < lower case.
        const ids = ["acc_b", "acc_0", "acc_B", "acc_a", "acc_Z", "acc_9", "acc_z"];
        for (const id of ids) await store.createAccount(account(id));
        const sorted = ["acc_0", "acc_9", "acc_B", "acc_Z", "acc_a", "acc_b", "acc_z"];
        assert.deepEqual((await store.listAccounts({ limit: 100 })).map((a) => a.id), sorted);
        const pages: string[][] = [];
        let after: string | undefined;
        for (;;) {
          const page = await store.listAccounts({ after, limit: 3 });
          if (page.length === 0) break;
          pages.push(page.map((a) => a.id));
          after = page[page.length - 1]!.id;
        }
        assert.deepEqual(pages, [["acc_0", "acc_9", "acc_B"], ["acc_Z", "acc_a", "acc_b"], ["acc_z"]]);
        assert.deepEqual((await store.listAccounts({ after: "acc_C", limit: 2 })).map((a) => a.id), ["acc_Z", "acc_a"]);
        assert.deepEqual(await store.listAccounts({ after: "acc_z", limit: 10 }), []);
        assert.deepEqual((await store.listAccounts({ limit: 1 }))[0], account("acc_0"));
      }));

      test("updateAccount changes only the given fields and returns null for an unknown id", () => run(async (store) => {
        await store.createAccount(account("acc_1", { metadata: { a: 1 } }));
        const updated = await store.updateAccount("acc_1", { name: "Renamed" }, T + 5);
        assert.deepEqual(updated, account("acc_1", { name: "Renamed", metadata: { a: 1 }, updatedAt: T + 5 }));
        const lists = await store.updateAccount("acc_1", { ipAllowlists: { live: ["203.0.113.0/24"] }, metadata: { b: [2] } }, T + 6);
        assert.deepEqual(lists, account("acc_1", { name: "Renamed", metadata: { b: [2] }, ipAllowlists: { live: ["203.0.113.0/24"] }, updatedAt: T + 6 }));
        assert.deepEqual(await store.getAccount("acc_1"), lists);
        assert.equal(await store.updateAccount("acc_none", { name: "x" }, T), null);
        const untouched = await store.updateAccount("acc_1", { name: undefined, metadata: undefined }, T + 7);
        assert.deepEqual(untouched, { ...lists, updatedAt: T + 7 }, "undefined fields are not changed");
      }));
    });

    describe("keys", () => {
      test("getKey and getKeyByHash round-trip every field exactly, including nulls and large numbers", () => run(async (store) => {
        await store.createAccount(account("acc_1"));
        const full = fullRecord("acc_1");
        const minimal = keyRecord("acc_1");
        await store.insertKeys([full, minimal]);
        assert.deepEqual(await store.getKey(full.id), full);
        assert.deepEqual(await store.getKeyByHash(full.hash), full);
        assert.deepEqual(await store.getKey(minimal.id), minimal);
        assert.deepEqual(await store.getKeyByHash(minimal.hash), minimal);
        assert.equal(await store.getKey("key_none"), null);
        assert.equal(await store.getKeyByHash("f".repeat(64)), null);
      }));

      test("records read back are copies: changing one does not change the store", () => run(async (store) => {
        await store.createAccount(account("acc_1"));
        const rec = keyRecord("acc_1", { scopes: ["read"], metadata: { a: { b: 1 } } });
        await store.insertKeys([rec]);
        const read = (await store.getKey(rec.id))!;
        read.scopes.push("write");
        (read.metadata.a as { b: number }).b = 2;
        read.enabled = false;
        assert.deepEqual(await store.getKey(rec.id), rec);
        rec.scopes.push("admin");
        assert.deepEqual((await store.getKey(rec.id))!.scopes, ["read"], "nor does changing the inserted object");
      }));

      test("insertKeys stores all or none: a duplicate hash is DUPLICATE_KEY and the rest of the batch is not stored", () => run(async (store) => {
        await store.createAccount(account("acc_1"));
        const existing = keyRecord("acc_1");
        await store.insertKeys([existing]);
        const fresh = keyRecord("acc_1");
        const clash = keyRecord("acc_1", { hash: existing.hash });
        await assert.rejects(store.insertKeys([fresh, clash]), isCode("DUPLICATE_KEY"));
        assert.equal(await store.getKey(fresh.id), null);
        assert.equal(await store.getKeyByHash(fresh.hash), null);
        assert.equal(await store.getKey(clash.id), null);
        assert.deepEqual(await store.getKeyByHash(existing.hash), existing);
        assert.deepEqual((await store.listKeys({ limit: 10 })).map((k) => k.id), [existing.id]);
      }));

      test("a batch that repeats a hash within itself is DUPLICATE_KEY and stores nothing", () => run(async (store) => {
        await store.createAccount(account("acc_1"));
        const a = keyRecord("acc_1");
        const b = keyRecord("acc_1", { hash: a.hash });
        await assert.rejects(store.insertKeys([a, b]), isCode("DUPLICATE_KEY"));
        assert.deepEqual(await store.listKeys({ limit: 10 }), []);
        await store.insertKeys([]);
        assert.deepEqual(await store.listKeys({ limit: 10 }), []);
      }));

      test("a key whose metadata JSON cannot hold (a BigInt) is refused, in a batch or a patch, and stores nothing", () => run(async (store) => {
        await store.createAccount(account("acc_1"));
        const existing = keyRecord("acc_1");
        await store.insertKeys([existing]);
        const good = keyRecord("acc_1");
        const bad = keyRecord("acc_1", { metadata: { n: 10n } as unknown as Record<string, unknown> });
        await assert.rejects(store.insertKeys([good, bad]));
        assert.equal(await store.getKey(good.id), null);
        assert.equal(await store.getKeyByHash(good.hash), null);
        await assert.rejects(store.updateKey(existing.id, { metadata: bad.metadata }, T + 5));
        assert.deepEqual(await store.getKey(existing.id), existing);
        assert.deepEqual(await store.listKeys({ limit: 10 }), [existing]);
        await store.insertKeys([good]);
        assert.deepEqual((await store.listKeys({ limit: 10 })).map((k) => k.id), [existing.id, good.id]);
      }));

      test("a large batch is stored whole", () => run(async (store) => {
        await store.createAccount(account("acc_1"));
        const batch = Array.from({ length: 1200 }, () => keyRecord("acc_1"));
        await store.insertKeys(batch);
        assert.equal((await store.listKeys({ limit: 5000 })).length, 1200);
        assert.deepEqual(await store.getKeyByHash(batch[1100]!.hash), batch[1100]);
      }));

      test("listKeys filters by api and account, orders by id and pages with `after`", () => run(async (store) => {
        await store.createAccount(account("acc_1"));
        await store.createAccount(account("acc_2"));
        const k = [
          keyRecord("acc_1", { api: "pay" }), keyRecord("acc_2", { api: "pay" }), keyRecord("acc_1", { api: "mail" }),
          keyRecord("acc_1", { api: "pay" }), keyRecord("acc_2", { api: "mail" }), keyRecord("acc_1", { api: "pay" }),
        ];
        // Inserted out of order: the store orders.
        await store.insertKeys([k[3]!, k[0]!, k[5]!]);
        await store.insertKeys([k[4]!, k[1]!, k[2]!]);
        const ids = (rows: KeyRecord[]) => rows.map((r) => k.findIndex((x) => x.id === r.id));
        assert.deepEqual(ids(await store.listKeys({ limit: 100 })), [0, 1, 2, 3, 4, 5]);
        assert.deepEqual(ids(await store.listKeys({ api: "pay", limit: 100 })), [0, 1, 3, 5]);
        assert.deepEqual(ids(await store.listKeys({ accountId: "acc_1", limit: 100 })), [0, 2, 3, 5]);
        assert.deepEqual(ids(await store.listKeys({ api: "pay", accountId: "acc_1", limit: 100 })), [0, 3, 5]);
        assert.deepEqual(ids(await store.listKeys({ api: "pay", accountId: "acc_1", limit: 2 })), [0, 3]);
        assert.deepEqual(ids(await store.listKeys({ api: "pay", accountId: "acc_1", after: k[3]!.id, limit: 2 })), [5]);
        assert.deepEqual(ids(await store.listKeys({ after: k[1]!.id, limit: 3 })), [2, 3, 4]);
        assert.deepEqual(await store.listKeys({ api: "none", limit: 100 }), []);
        assert.deepEqual(await store.listKeys({ accountId: "acc_none", limit: 100 }), []);
        assert.deepEqual((await store.listKeys({ api: "mail", limit: 1 }))[0], k[2]);
      }));

      test("updateKey applies each field of a patch, sets updatedAt, and leaves every other field alone", () => run(async (store) => {
        await store.createAccount(account("acc_1"));
        const patches: KeyPatch[] = [
          { name: "renamed" }, { name: null },
          { scopes: ["a", "b"] }, { scopes: [] },
          { ipAllowlist: ["203.0.113.0/24"] }, { ipAllowlist: [] },
          { expiresAt: FAR_FUTURE }, { expiresAt: null },
          { rateLimit: { limit: 10, windowSeconds: 60 } }, { rateLimit: null },
          { enabled: false }, { enabled: true },
          { metadata: { x: { y: [1] } } }, { metadata: {} },
          { revokedAt: T + 10 }, { revokedAt: null },
          { rotatedAt: T + 11 }, { graceEndsAt: T + 12 }, { replacedBy: "key_next" },
          { rotatedAt: null, graceEndsAt: null, replacedBy: null },
        ];
        const rec = fullRecord("acc_1");
        await store.insertKeys([rec]);
        let expected = rec;
        let now = T + 100;
        for (const patch of patches) {
          now++;
          expected = { ...expected, ...structuredClone(patch), updatedAt: now };
          const returned = await store.updateKey(rec.id, patch, now);
          assert.deepEqual(returned, expected, JSON.stringify(patch));
          assert.deepEqual(await store.getKey(rec.id), expected);
          assert.deepEqual(await store.getKeyByHash(rec.hash), expected);
        }
      }));

      test("fields a patch leaves undefined are not changed", () => run(async (store) => {
        await store.createAccount(account("acc_1"));
        const rec = fullRecord("acc_1");
        await store.insertKeys([rec]);
        const patch: KeyPatch = { name: undefined, expiresAt: undefined, scopes: ["only"] };
        assert.deepEqual(await store.updateKey(rec.id, patch, T + 1), { ...rec, scopes: ["only"], updatedAt: T + 1 });
      }));

      test("updateKey of an unknown id returns null and stores nothing", () => run(async (store) => {
        assert.equal(await store.updateKey("key_none", { name: "x" }, T), null);
        assert.deepEqual(await store.listKeys({ limit: 10 }), []);
      }));

      test("rotateKey marks the old key and inserts its successor together", () => run(async (store) => {
        await store.createAccount(account("acc_1"));
        const old = keyRecord("acc_1", { scopes: ["read"] });
        await store.insertKeys([old]);
        const successor = keyRecord("acc_1", { scopes: ["read"] });
        const patch = { rotatedAt: T + 1, graceEndsAt: T + 60_001, replacedBy: successor.id };
        const previous = await store.rotateKey(old.id, patch, successor, T + 1);
        const expectedOld = { ...old, ...patch, updatedAt: T + 1 };
        assert.deepEqual(previous, expectedOld);
        assert.deepEqual(await store.getKey(old.id), expectedOld);
        assert.deepEqual(await store.getKeyByHash(successor.hash), successor);
      }));

      test("rotateKey with a successor whose hash exists is DUPLICATE_KEY and changes nothing", () => run(async (store) => {
        await store.createAccount(account("acc_1"));
        const old = keyRecord("acc_1");
        const other = keyRecord("acc_1");
        await store.insertKeys([old, other]);
        const successor = keyRecord("acc_1", { hash: other.hash });
        await assert.rejects(store.rotateKey(old.id, { rotatedAt: T + 1, graceEndsAt: T + 1, replacedBy: successor.id }, successor, T + 1), isCode("DUPLICATE_KEY"));
        assert.deepEqual(await store.getKey(old.id), old, "the old key is not marked rotated");
        assert.equal(await store.getKey(successor.id), null);
        assert.deepEqual(await store.getKeyByHash(other.hash), other);
      }));

      test("rotateKey of an unknown key returns null and does not insert the successor", () => run(async (store) => {
        await store.createAccount(account("acc_1"));
        const successor = keyRecord("acc_1");
        assert.equal(await store.rotateKey("key_none", { rotatedAt: T, graceEndsAt: T, replacedBy: successor.id }, successor, T), null);
        assert.equal(await store.getKey(successor.id), null);
        assert.equal(await store.getKeyByHash(successor.hash), null);
      }));

      test("hasHashAlgorithm tells whether any key was stored with the algorithm", () => run(async (store) => {
        await store.createAccount(account("acc_1"));
        assert.equal(await store.hasHashAlgorithm("sha256"), false);
        assert.equal(await store.hasHashAlgorithm("hmac-sha256"), false);
        await store.insertKeys([keyRecord("acc_1", { hashAlgorithm: "hmac-sha256" })]);
        assert.equal(await store.hasHashAlgorithm("sha256"), false);
        assert.equal(await store.hasHashAlgorithm("hmac-sha256"), true);
        await store.insertKeys([keyRecord("acc_1", { hashAlgorithm: "sha256" })]);
        assert.equal(await store.hasHashAlgorithm("sha256"), true);
      }));
    });

    describe("usage", () => {
      test("recordUsage adds counts and keeps the latest lastUsedAt", () => run(async (store) => {
        await store.createAccount(account("acc_1"));
        const a = keyRecord("acc_1");
        const b = keyRecord("acc_1", { usageCount: 7, lastUsedAt: T + 500 });
        await store.insertKeys([a, b]);
        await store.recordUsage([{ keyId: a.id, count: 3, lastUsedAt: T + 100 }, { keyId: b.id, count: 2, lastUsedAt: T + 200 }]);
        assert.deepEqual(await store.getKey(a.id), { ...a, usageCount: 3, lastUsedAt: T + 100 });
        assert.deepEqual(await store.getKey(b.id), { ...b, usageCount: 9, lastUsedAt: T + 500 }, "an older lastUsedAt does not move it back");
        await store.recordUsage([{ keyId: a.id, count: 1, lastUsedAt: T + 50 }, { keyId: a.id, count: 5, lastUsedAt: T + 300 }]);
        assert.deepEqual(await store.getKey(a.id), { ...a, usageCount: 9, lastUsedAt: T + 300 });
        await store.recordUsage([{ keyId: a.id, count: 2 ** 33, lastUsedAt: FAR_FUTURE }]);
        assert.deepEqual(await store.getKey(a.id), { ...a, usageCount: 9 + 2 ** 33, lastUsedAt: FAR_FUTURE });
      }));

      test("recordUsage ignores unknown keys and an empty batch", () => run(async (store) => {
        await store.createAccount(account("acc_1"));
        const a = keyRecord("acc_1");
        await store.insertKeys([a]);
        await store.recordUsage([]);
        await store.recordUsage([{ keyId: "key_none", count: 1, lastUsedAt: T }, { keyId: a.id, count: 1, lastUsedAt: T }]);
        assert.equal((await store.getKey(a.id))!.usageCount, 1);
        assert.equal(await store.getKey("key_none"), null);
      }));

      test("concurrent flushes of thousands of keys, in opposite orders, add up exactly", () => run(async (store) => {
        await store.createAccount(account("acc_1"));
        const keys = Array.from({ length: 2500 }, () => keyRecord("acc_1"));
        await store.insertKeys(keys);
        const deltas = keys.map((k, i) => ({ keyId: k.id, count: 1 + (i % 3), lastUsedAt: T + i }));
        // Four writers at once (several nodes): two in key order, two in reverse.
        await Promise.all([0, 1, 2, 3].map((w) => store.recordUsage(w % 2 ? [...deltas].reverse() : deltas)));
        for (const i of [0, 1, 2, 1234, 2499]) {
          const k = (await store.getKey(keys[i]!.id))!;
          assert.equal(k.usageCount, 4 * (1 + (i % 3)), `key ${i}`);
          assert.equal(k.lastUsedAt, T + i);
        }
        const total = (await store.listKeys({ accountId: "acc_1", limit: 2500 })).reduce((n, k) => n + k.usageCount, 0);
        assert.equal(total, 4 * deltas.reduce((n, d) => n + d.count, 0));
      }));
    });

    describe("settings", () => {
      test("a setting reads back, can be overwritten, and unknown names are null", () => run(async (store) => {
        assert.equal(await store.getSetting("jwks"), null);
        await store.setSetting("jwks", "{\"keys\":[]}");
        await store.setSetting("other", "");
        assert.equal(await store.getSetting("jwks"), "{\"keys\":[]}");
        await store.setSetting("jwks", "second ✓");
        assert.equal(await store.getSetting("jwks"), "second ✓");
        assert.equal(await store.getSetting("other"), "");
        assert.equal(await store.getSetting("JWKS"), null);
      }));

      test("compare-and-set writes only over the expected value; one of two racers wins", () => run(async (store) => {
        assert.equal(await store.compareAndSetSetting("cas", null, "one"), true);
        assert.equal(await store.compareAndSetSetting("cas", null, "again"), false, "exists already");
        assert.equal(await store.compareAndSetSetting("cas", "stale", "two"), false);
        assert.equal(await store.getSetting("cas"), "one");
        const racers = await Promise.all([store.compareAndSetSetting("cas", "one", "a"), store.compareAndSetSetting("cas", "one", "b")]);
        assert.deepEqual(racers.filter(Boolean).length, 1);
        assert.ok(["a", "b"].includes((await store.getSetting("cas"))!));
        const fresh = await Promise.all([store.compareAndSetSetting("new", null, "x"), store.compareAndSetSetting("new", null, "y")]);
        assert.equal(fresh.filter(Boolean).length, 1);
      }));
    });

    describe("applications", () => {
      const application = (id: string, accountId: string, over: Partial<Application> = {}): Application => ({
        id, accountId, api: "pay", name: `App ${id}`, integrationType: "api", features: ["payment-api"],
        clientId: `ID${id}`, metadata: {}, createdAt: T, updatedAt: T, ...over,
      });

      test("an application reads back by id and Client ID; the Client ID is unique", () => run(async (store) => {
        await store.createAccount(account("acc_1"));
        const a = application("app_1", "acc_1", { name: "Ünïcode 🔑", features: ["payment-api", "payout-api"], metadata: { n: 1, nested: { x: [null] } } });
        await store.createApplication(a);
        assert.deepEqual(await store.getApplication("app_1"), a);
        assert.deepEqual(await store.getApplicationByClientId("IDapp_1"), a);
        assert.equal(await store.getApplication("app_none"), null);
        assert.equal(await store.getApplicationByClientId("idapp_1"), null, "Client IDs are case-sensitive");
        await assert.rejects(store.createApplication(application("app_2", "acc_1", { clientId: "IDapp_1" })), isCode("CLIENT_ID_TAKEN"));
        assert.equal(await store.getApplication("app_2"), null);
      }));

      test("applications list by account and API with a cursor; a patch changes only its fields", () => run(async (store) => {
        await store.createAccount(account("acc_1"));
        await store.createAccount(account("acc_2"));
        for (const [id, acc, api] of [["app_1", "acc_1", "pay"], ["app_2", "acc_2", "pay"], ["app_3", "acc_1", "mail"], ["app_4", "acc_1", "pay"]] as const) {
          await store.createApplication(application(id, acc, { api }));
        }
        const ids = (rows: Application[]) => rows.map((r) => r.id);
        assert.deepEqual(ids(await store.listApplications({ accountId: "acc_1", limit: 10 })), ["app_1", "app_3", "app_4"]);
        assert.deepEqual(ids(await store.listApplications({ accountId: "acc_1", api: "pay", limit: 10 })), ["app_1", "app_4"]);
        assert.deepEqual(ids(await store.listApplications({ after: "app_1", limit: 2 })), ["app_2", "app_3"]);
        const updated = await store.updateApplication("app_1", { features: [], name: "Renamed" }, T + 5);
        assert.deepEqual(updated, { ...application("app_1", "acc_1"), features: [], name: "Renamed", updatedAt: T + 5 });
        assert.equal(await store.updateApplication("app_none", { name: "x" }, T), null);
      }));

      test("keys list by application", () => run(async (store) => {
        await store.createAccount(account("acc_1"));
        await store.createApplication(application("app_1", "acc_1"));
        const mine = keyRecord("acc_1", { applicationId: "app_1" });
        await store.insertKeys([keyRecord("acc_1"), mine]);
        assert.deepEqual((await store.listKeys({ applicationId: "app_1", limit: 10 })).map((k) => k.id), [mine.id]);
      }));
    });
  });
}

// ---- Analytics: usage counters, raw request logs, batch ids (0006_analytics). ----

const MIN = 60_000;
const HOUR = 3_600_000;
let batchSerial = 0;

/** One minute's counts of one series; by default one event in latency bin 40 at minute T. */
function counters(over: Partial<UsageCounters> = {}): UsageCounters {
  return {
    minute: T, api: "pay", keyId: "key_1", accountId: "acc_1", applicationId: "app_1", environment: "live",
    code: "VALID", metric: "latency", bins: [40, 1], ...over,
  };
}

function batch(counts: UsageCounters[], logs: RequestLog[] = [], id = `bat_${String(++batchSerial).padStart(8, "0")}`): AnalyticsBatch {
  return { id, at: T, counters: counts, logs };
}

function requestLog(n: number, over: Partial<RequestLog> = {}): RequestLog {
  return {
    id: `log_${String(n).padStart(12, "0")}`, at: T + n, api: "pay", keyId: "key_1", accountId: "acc_1", applicationId: null,
    environment: "live", code: "VALID", status: 200, method: "GET", path: "/v1/balance", latencyUs: 1234, upstreamUs: null,
    ip: "203.0.113.45", requestId: `req_${n}`, source: "gateway", ...over,
  };
}

const usageQuery = (over: Partial<UsageQuery> = {}): UsageQuery => ({ period: "minute", from: T, to: T + HOUR, groupBy: null, limit: 1000, ...over });

/** Rows in one order whatever the database's collation, with only what a test looks at. */
const sorted = (rows: UsageQueryRow[]): string[] =>
  rows.map((r) => `${r.bucketStart - T}|${r.group ?? "-"}|${r.code}|${r.metric}|${r.bin}=${r.count}`).sort();

for (const [name, make, skip] of ADAPTERS) {
  const run = withStore(make);

  describe(`store conformance (analytics): ${name}`, { skip }, () => {
    test("counters add up across batches; a batch id is applied once", () => run(async (store) => {
      assert.equal(await store.recordAnalytics(batch([counters({ bins: [40, 3, 41, 2] })], [], "bat_a")), true);
      assert.equal(await store.recordAnalytics(batch([counters({ bins: [40, 4] })])), true);
      assert.equal(await store.recordAnalytics(batch([counters({ bins: [40, 100] })], [requestLog(1)], "bat_a")), false, "a retried batch is skipped");
      for (const period of ["minute", "hour", "day"] as const) {
        assert.deepEqual(sorted(await store.queryUsage(usageQuery({ period, to: T + 86_400_000 }))), ["0|-|VALID|latency|40=7", "0|-|VALID|latency|41=2"], period);
      }
      // The logs of a retried batch are written (an earlier attempt may have failed after the
      // counters), each at most once.
      await store.recordAnalytics(batch([], [requestLog(1)], "bat_a"));
      assert.deepEqual(await store.listRequestLogs({ limit: 10 }), [requestLog(1)]);
    }));

    test("large counts stay exact", () => run(async (store) => {
      await store.recordAnalytics(batch([counters({ bins: [40, 2 ** 40] })]));
      await store.recordAnalytics(batch([counters({ bins: [40, 2 ** 40 + 1] })]));
      assert.deepEqual((await store.queryUsage(usageQuery())).map((r) => r.count), [2 ** 41 + 1]);
    }));

    test("usage is filtered, grouped and bounded by [from, to)", () => run(async (store) => {
      await store.recordAnalytics(batch([
        counters(),
        counters({ keyId: "key_2", applicationId: null, code: "RATE_LIMITED", bins: [40, 2] }),
        counters({ keyId: "key_3", accountId: "acc_2", applicationId: "app_2", environment: "test", bins: [40, 4] }),
        counters({ keyId: null, accountId: null, applicationId: null, environment: null, code: "NOT_FOUND", bins: [1, 8] }),
        counters({ api: "mail", keyId: "key_4", accountId: "acc_2", applicationId: null, bins: [90, 16] }),
        counters({ metric: "upstream", bins: [120, 1] }),
        counters({ minute: T + MIN, bins: [40, 32] }),
        counters({ minute: T + HOUR, bins: [40, 64] }),
        counters({ minute: T - MIN, bins: [40, 128] }),
      ]));
      assert.deepEqual(sorted(await store.queryUsage(usageQuery({ groupBy: "account" }))), [
        "0|-|NOT_FOUND|latency|1=8", "0|acc_1|RATE_LIMITED|latency|40=2", "0|acc_1|VALID|latency|40=1", "0|acc_1|VALID|upstream|120=1",
        "0|acc_2|VALID|latency|40=4", "0|acc_2|VALID|latency|90=16", "60000|acc_1|VALID|latency|40=32",
      ]);
      assert.deepEqual(sorted(await store.queryUsage(usageQuery({ groupBy: "application", to: T + MIN }))), [
        "0|-|NOT_FOUND|latency|1=8", "0|-|RATE_LIMITED|latency|40=2", "0|-|VALID|latency|90=16", "0|app_1|VALID|latency|40=1",
        "0|app_1|VALID|upstream|120=1", "0|app_2|VALID|latency|40=4",
      ]);
      assert.deepEqual(sorted(await store.queryUsage(usageQuery({ groupBy: "api", to: T + MIN }))), [
        "0|mail|VALID|latency|90=16", "0|pay|NOT_FOUND|latency|1=8", "0|pay|RATE_LIMITED|latency|40=2", "0|pay|VALID|latency|40=5", "0|pay|VALID|upstream|120=1",
      ]);
      assert.deepEqual(sorted(await store.queryUsage(usageQuery({ groupBy: "key", to: T + MIN, code: "VALID" }))), [
        "0|key_1|VALID|latency|40=1", "0|key_1|VALID|upstream|120=1", "0|key_3|VALID|latency|40=4", "0|key_4|VALID|latency|90=16",
      ]);
      // Every filter, ANDed.
      assert.deepEqual(sorted(await store.queryUsage(usageQuery({ accountId: "acc_2", environment: "test" }))), ["0|-|VALID|latency|40=4"]);
      assert.deepEqual(sorted(await store.queryUsage(usageQuery({ api: "mail", keyId: "key_4" }))), ["0|-|VALID|latency|90=16"]);
      assert.deepEqual(sorted(await store.queryUsage(usageQuery({ applicationId: "app_1", accountId: "acc_1", code: "VALID", to: T + MIN }))), ["0|-|VALID|latency|40=1", "0|-|VALID|upstream|120=1"]);
      assert.deepEqual(await store.queryUsage(usageQuery({ accountId: "acc_1", keyId: "key_3" })), []);
      // Periods are separate series; the bucket at `to` is excluded, the one at `from` included.
      // Hours and days hold the sums of their minutes.
      assert.deepEqual(sorted(await store.queryUsage(usageQuery({ period: "hour" }))), [
        "0|-|NOT_FOUND|latency|1=8", "0|-|RATE_LIMITED|latency|40=2", "0|-|VALID|latency|40=37", "0|-|VALID|latency|90=16", "0|-|VALID|upstream|120=1",
      ]);
      assert.deepEqual(sorted(await store.queryUsage(usageQuery({ period: "hour", from: T - HOUR, to: T + 2 * HOUR, code: "VALID", groupBy: "key" }))).filter((r) => r.includes("|40=")), [
        "-3600000|key_1|VALID|latency|40=128", "0|key_1|VALID|latency|40=33", "0|key_3|VALID|latency|40=4", "3600000|key_1|VALID|latency|40=64",
      ]);
      assert.deepEqual(sorted(await store.queryUsage(usageQuery({ period: "day", to: T + 86_400_000, keyId: "key_1" }))), ["0|-|VALID|latency|40=97", "0|-|VALID|upstream|120=1"]);
      assert.deepEqual(sorted(await store.queryUsage(usageQuery({ from: T - MIN, to: T, keyId: "key_1" }))), ["-60000|-|VALID|latency|40=128"]);
      // Ungrouped sums over keys; the limit caps rows.
      assert.deepEqual(sorted(await store.queryUsage(usageQuery({ code: "VALID", to: T + MIN }))), [
        "0|-|VALID|latency|40=5", "0|-|VALID|latency|90=16", "0|-|VALID|upstream|120=1",
      ]);
      assert.equal((await store.queryUsage(usageQuery({ limit: 2 }))).length, 2);
    }));

    test("request logs read back exactly and list newest first with filters and a cursor", () => run(async (store) => {
      const odd = requestLog(1, {
        keyId: null, accountId: null, environment: null, code: "MALFORMED_KEY", status: 401, method: null, path: "/ünï/côdé/🔑/'\"",
        latencyUs: 0, upstreamUs: 600_000_000, ip: "2001:db8::1", requestId: null, source: "forward-auth",
      });
      const logs = [odd, ...Array.from({ length: 6 }, (_, i) => requestLog(i + 2, {
        keyId: i % 2 ? "key_2" : "key_1", status: i < 3 ? 200 : 429, code: i < 3 ? "VALID" : "RATE_LIMITED", applicationId: i === 5 ? "app_9" : null,
      }))];
      await store.recordAnalytics(batch([], logs.slice(0, 4)));
      await store.recordAnalytics(batch([], logs.slice(3)));
      assert.deepEqual(await store.getRequestLog(odd.id), odd);
      assert.equal(await store.getRequestLog("log_000000000099"), null);
      const ids = (rows: RequestLog[]) => rows.map((r) => Number(r.id.slice(4)));
      assert.deepEqual(ids(await store.listRequestLogs({ limit: 100 })), [7, 6, 5, 4, 3, 2, 1], "newest first, each once");
      assert.deepEqual(ids(await store.listRequestLogs({ limit: 3 })), [7, 6, 5]);
      assert.deepEqual(ids(await store.listRequestLogs({ before: logs[4]!.id, limit: 3 })), [4, 3, 2]);
      assert.deepEqual(ids(await store.listRequestLogs({ keyId: "key_2", limit: 100 })), [7, 5, 3]);
      assert.deepEqual(ids(await store.listRequestLogs({ status: 429, limit: 100 })), [7, 6, 5]);
      assert.deepEqual(ids(await store.listRequestLogs({ code: "RATE_LIMITED", keyId: "key_1", limit: 100 })), [6]);
      assert.deepEqual(ids(await store.listRequestLogs({ applicationId: "app_9", limit: 100 })), [7]);
      assert.deepEqual(ids(await store.listRequestLogs({ accountId: "acc_1", api: "pay", environment: "live", limit: 100 })), [7, 6, 5, 4, 3, 2]);
      assert.deepEqual(ids(await store.listRequestLogs({ from: T + 2, to: T + 4, limit: 100 })), [3, 2], "at in [from, to)");
      assert.deepEqual(await store.listRequestLogs({ accountId: "acc_none", limit: 100 }), []);
    }));

    test("a batch of more logs than one statement or transaction takes is stored whole, each log once", () => run(async (store) => {
      const logs = Array.from({ length: 1234 }, (_, i) => requestLog(i + 1));
      await store.recordAnalytics(batch([counters({ bins: [40, 1234] })], logs));
      await store.recordAnalytics(batch([], logs.slice(600, 700))); // a retried part adds no copies
      const listed = await store.listRequestLogs({ limit: 1000 });
      assert.equal(listed.length, 1000);
      assert.equal(listed[0]!.id, logs[1233]!.id);
      assert.deepEqual(await store.getRequestLog(logs[0]!.id), logs[0]);
      assert.equal((await store.listRequestLogs({ before: listed[999]!.id, limit: 1000 })).length, 234);
    }));

    test("prune deletes logs, minute, hour and day buckets and batch ids past their cut-offs", () => run(async (store) => {
      // Minute, hour and day buckets a day ago; a minute and an hour ago (that day too); now.
      await store.recordAnalytics(batch([counters({ minute: T - 86_400_000 }), counters({ minute: T - MIN }), counters({ minute: T })],
        [requestLog(1, { at: T - 1 }), requestLog(2, { at: T })], "bat_old"));
      await store.pruneAnalytics({ logsBefore: T, minutesBefore: T, hoursBefore: T, daysBefore: null, batchesBefore: T });
      assert.deepEqual((await store.listRequestLogs({ limit: 10 })).map((l) => l.at), [T]);
      assert.deepEqual(sorted(await store.queryUsage(usageQuery({ from: T - HOUR }))), ["0|-|VALID|latency|40=1"]);
      assert.deepEqual(sorted(await store.queryUsage(usageQuery({ period: "hour", from: T - HOUR }))), ["0|-|VALID|latency|40=1"]);
      assert.equal((await store.queryUsage(usageQuery({ period: "day", from: T - 86_400_000, to: T }))).length, 1, "day buckets kept when daysBefore is null");
      await store.pruneAnalytics({ logsBefore: 0, minutesBefore: 0, hoursBefore: 0, daysBefore: T, batchesBefore: T + 1 });
      assert.equal((await store.queryUsage(usageQuery({ period: "day", from: T - 86_400_000, to: T }))).length, 0);
      // Its id forgotten, the batch would count again: ids are kept far longer than any retry waits.
      assert.equal(await store.recordAnalytics(batch([], [], "bat_old")), true);
    }));

    test("hours and days stay exact as their minutes pass, for counts that come late, after pruning and on retries", () => run(async (store) => {
      const at = (minutes: number) => T + minutes * MIN;
      const hoursAndDays = async () => [
        ...sorted(await store.queryUsage(usageQuery({ period: "hour", to: T + 2 * HOUR }))).map((r) => `hour ${r}`),
        ...sorted(await store.queryUsage(usageQuery({ period: "day", to: T + 86_400_000 }))).map((r) => `day ${r}`),
      ];
      const withAt = (b: AnalyticsBatch, when: number): AnalyticsBatch => ({ ...b, at: when });
      await store.recordAnalytics(withAt(batch([counters({ minute: at(0) }), counters({ minute: at(1), bins: [40, 2] })]), at(1)));
      assert.deepEqual(await hoursAndDays(), ["hour 0|-|VALID|latency|40=3", "day 0|-|VALID|latency|40=3"]);
      // Ten minutes on: the first minutes are over (a SQL store rolls them up as time passes).
      await store.recordAnalytics(withAt(batch([counters({ minute: at(10), bins: [40, 4] })]), at(10)));
      assert.deepEqual(await hoursAndDays(), ["hour 0|-|VALID|latency|40=7", "day 0|-|VALID|latency|40=7"]);
      // Counts for minute 0 that come late, in a batch whose id is then retried.
      const late = withAt(batch([counters({ minute: at(0), bins: [40, 8] })], [], "bat_late"), at(11));
      await store.recordAnalytics(late);
      assert.equal(await store.recordAnalytics(late), false);
      assert.deepEqual(await hoursAndDays(), ["hour 0|-|VALID|latency|40=15", "day 0|-|VALID|latency|40=15"]);
      assert.deepEqual(sorted(await store.queryUsage(usageQuery({ to: at(2) }))), ["0|-|VALID|latency|40=9", "60000|-|VALID|latency|40=2"]);
      await store.recordAnalytics(withAt(batch([counters({ minute: at(65), bins: [41, 16] })]), at(65)));
      for (let i = 0; i < 3; i++) await store.recordAnalytics(withAt(batch([]), at(66 + i)));
      const expected = ["hour 0|-|VALID|latency|40=15", "hour 3600000|-|VALID|latency|41=16", "day 0|-|VALID|latency|40=15", "day 0|-|VALID|latency|41=16"];
      assert.deepEqual(await hoursAndDays(), expected);
      // Minute buckets pruned: their hours and days keep them.
      await store.pruneAnalytics({ logsBefore: 0, minutesBefore: T + HOUR, hoursBefore: 0, daysBefore: null, batchesBefore: 0 });
      assert.deepEqual(await store.queryUsage(usageQuery()), []);
      assert.deepEqual(sorted(await store.queryUsage(usageQuery({ from: T + HOUR, to: T + 2 * HOUR }))), [`${HOUR + 5 * MIN}|-|VALID|latency|41=16`]);
      assert.deepEqual(await hoursAndDays(), expected);
    }));

    test("hour and day queries with bounds inside a bucket count the buckets that start in [from, to), whole", () => run(async (store) => {
      const inside = async (): Promise<string[]> => [
        ...sorted(await store.queryUsage(usageQuery({ period: "hour", from: T + 30 * MIN, to: T + HOUR + 30 * MIN }))),
        ...sorted(await store.queryUsage(usageQuery({ period: "hour", from: T - 30 * MIN, to: T + 30 * MIN }))),
        ...sorted(await store.queryUsage(usageQuery({ period: "day", from: T + 1, to: T + 86_400_000 + 1 }))),
      ];
      const want = [`${HOUR}|-|VALID|latency|41=2`, "0|-|VALID|latency|40=1", "86400000|-|VALID|latency|42=4"];
      await store.recordAnalytics({ ...batch([counters({ minute: T + 40 * MIN }), counters({ minute: T + 70 * MIN, bins: [41, 2] }), counters({ minute: T + 86_400_000 + MIN, bins: [42, 4] })]), at: T + 41 * MIN });
      assert.deepEqual(await inside(), want, "minutes not rolled up yet");
      for (let h = 1; h <= 3; h++) await store.recordAnalytics({ ...batch([]), at: T + 86_400_000 + h * HOUR });
      assert.deepEqual(await inside(), want, "rolled up");
    }));

    test("concurrent batches of several writers add up exactly", () => run(async (store) => {
      // Two minutes of one hour in each batch: one hour row gets both (PostgreSQL refuses a
      // statement that updates a row twice).
      const rows = (n: number) => [counters({ bins: [40, n, 41, n] }), counters({ minute: T + MIN, bins: [40, n] }), counters({ keyId: "key_2", bins: [40, n] })];
      await Promise.all(Array.from({ length: 12 }, (_, i) => store.recordAnalytics(batch(i % 2 ? rows(1) : [...rows(1)].reverse(), [requestLog(100 + i)]))));
      assert.deepEqual(sorted(await store.queryUsage(usageQuery({ groupBy: "key" }))), [
        "0|key_1|VALID|latency|40=12", "0|key_1|VALID|latency|41=12", "0|key_2|VALID|latency|40=12", "60000|key_1|VALID|latency|40=12",
      ]);
      assert.deepEqual(sorted(await store.queryUsage(usageQuery({ period: "hour" }))), ["0|-|VALID|latency|40=36", "0|-|VALID|latency|41=12"]);
      assert.deepEqual(sorted(await store.queryUsage(usageQuery({ period: "day", to: T + 86_400_000, groupBy: "key" }))), [
        "0|key_1|VALID|latency|40=24", "0|key_1|VALID|latency|41=12", "0|key_2|VALID|latency|40=12",
      ]);
      assert.equal((await store.listRequestLogs({ limit: 100 })).length, 12);
    }));
  });
}

describe("memory store: raw request logs are bounded", () => {
  test("it keeps the newest maxRequestLogs logs, drops the earliest written, and still counts every aggregate", async () => {
    const store = createMemoryStore({ maxRequestLogs: 3 });
    await store.recordAnalytics(batch([counters({ bins: [40, 2] })], [requestLog(1), requestLog(2)]));
    await store.recordAnalytics(batch([counters({ bins: [40, 5] })], [requestLog(3), requestLog(4), requestLog(5)]));
    const ids = (await store.listRequestLogs({ limit: 100 })).map((r) => r.id);
    assert.deepEqual(ids, [requestLog(5).id, requestLog(4).id, requestLog(3).id]);
    assert.equal(await store.getRequestLog(requestLog(1).id), null, "the earliest written log is gone");
    assert.deepEqual(sorted(await store.queryUsage(usageQuery())), ["0|-|VALID|latency|40=7"]);
    await store.close();
  });

  test("0 keeps no raw logs; a bound that is not a whole number ≥ 0 is refused", async () => {
    const store = createMemoryStore({ maxRequestLogs: 0 });
    await store.recordAnalytics(batch([], [requestLog(1)]));
    assert.deepEqual(await store.listRequestLogs({ limit: 10 }), []);
    await store.close();
    for (const bad of [-1, 1.5, Number.NaN]) assert.throws(() => createMemoryStore({ maxRequestLogs: bad }), RangeError);
  });
});
