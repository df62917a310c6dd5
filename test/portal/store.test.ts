/**
 * The store's portal methods (0007_portal) — users and sessions — run against every adapter:
 * memory, SQLite, and PostgreSQL when KEYGATE_TEST_PG_URL is set (a throwaway database).
 */
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, test } from "node:test";
import assert from "node:assert/strict";
import { KeygateError } from "../../src/lib/errors.js";
import { createMemoryStore } from "../../src/store/memory/index.js";
import { createPostgresStore } from "../../src/store/postgres/index.js";
import { createSqliteStore } from "../../src/store/sqlite/index.js";
import type { Account, PortalSession, PortalUser, Store } from "../../src/store/types.js";
import { createTestDatabase, PG_SKIP } from "../support/scale-out.js";

const ADAPTERS: Array<[name: string, make: () => Promise<{ store: Store; cleanup(): Promise<void> }>, skip: string | false]> = [
  ["memory", async () => { const store = createMemoryStore(); return { store, cleanup: () => store.close() }; }, false],
  ["sqlite", async () => {
    const dir = mkdtempSync(join(tmpdir(), "keygate-portal-store-"));
    const store = createSqliteStore({ filename: join(dir, "keygate.db") });
    return { store, async cleanup() { await store.close(); rmSync(dir, { recursive: true, force: true }); } };
  }, false],
  ["postgres", async () => {
    const db = await createTestDatabase();
    const store = createPostgresStore({ connectionString: db.url, maxConnections: 4 });
    return { store, async cleanup() { await store.close(); await db.drop(); } };
  }, PG_SKIP],
];

const T0 = Date.parse("2026-05-01T12:00:00Z");
const account = (id: string): Account => ({ id, name: id, email: `${id}@example.test`, metadata: {}, ipAllowlists: {}, createdAt: T0, updatedAt: T0 });
const user = (id: string, email: string, accountId: string | null, extra: Partial<PortalUser> = {}): PortalUser => ({
  id, email, name: "Dev", accountId, operator: accountId === null, passwordHash: "scrypt$32768$8$3$c2FsdHNhbHRzYWx0$a2V5a2V5a2V5a2V5a2V5a2V5",
  failedSignIns: 0, lockedUntil: null, passwordChangedAt: T0, lastSignInAt: null, createdAt: T0, updatedAt: T0, ...extra,
});
const session = (idHash: string, userId: string, expiresAt = T0 + 3_600_000): PortalSession => ({
  idHash, userId, csrfToken: `csrf-${idHash}`, createdAt: T0, expiresAt, ip: "203.0.113.7", userAgent: "test",
});

for (const [name, make, skip] of ADAPTERS) {
  describe(`portal store: ${name}`, { skip }, () => {
    const withStore = async (fn: (store: Store) => Promise<void>): Promise<void> => {
      const { store, cleanup } = await make();
      try {
        await store.migrate();
        await store.createAccount(account("acc_a"));
        await store.createAccount(account("acc_b"));
        await fn(store);
      } finally {
        await cleanup();
      }
    };

    test("a user round-trips every field; emails are unique whatever their case", () => withStore(async (store) => {
      const u = user("usr_1", "Dev@Acme.test", "acc_a", { lastSignInAt: T0 + 5, lockedUntil: T0 + 9, failedSignIns: 2 });
      await store.createPortalUser(u);
      assert.deepEqual(await store.getPortalUser("usr_1"), u);
      assert.deepEqual(await store.getPortalUserByEmail("dev@acme.TEST"), u);
      assert.equal(await store.getPortalUser("usr_none"), null);
      assert.equal(await store.getPortalUserByEmail("nobody@acme.test"), null);
      await assert.rejects(store.createPortalUser(user("usr_2", "DEV@acme.test", "acc_b")), (e: unknown) => e instanceof KeygateError && e.code === "EMAIL_TAKEN" && e.status === 409);
      const operator = user("usr_3", "ops@provider.test", null);
      await store.createPortalUser(operator);
      assert.deepEqual(await store.getPortalUser("usr_3"), operator);
    }));

    test("users are listed by account, oldest id first, after a cursor", () => withStore(async (store) => {
      for (const [id, acc] of [["usr_1", "acc_a"], ["usr_2", "acc_b"], ["usr_3", "acc_a"], ["usr_4", null]] as const) {
        await store.createPortalUser(user(id, `${id}@x.test`, acc));
      }
      assert.deepEqual((await store.listPortalUsers({ limit: 10 })).map((u) => u.id), ["usr_1", "usr_2", "usr_3", "usr_4"]);
      assert.deepEqual((await store.listPortalUsers({ accountId: "acc_a", limit: 10 })).map((u) => u.id), ["usr_1", "usr_3"]);
      assert.deepEqual((await store.listPortalUsers({ after: "usr_1", limit: 2 })).map((u) => u.id), ["usr_2", "usr_3"]);
    }));

    test("an update changes the given fields only; an unknown user is null", () => withStore(async (store) => {
      await store.createPortalUser(user("usr_1", "a@x.test", "acc_a"));
      const updated = await store.updatePortalUser("usr_1", { name: "Ada", passwordHash: "scrypt$new", lockedUntil: T0 + 60_000, operator: true }, T0 + 1);
      assert.deepEqual(updated, { ...user("usr_1", "a@x.test", "acc_a"), name: "Ada", passwordHash: "scrypt$new", lockedUntil: T0 + 60_000, operator: true, updatedAt: T0 + 1 });
      assert.deepEqual(await store.updatePortalUser("usr_1", { lockedUntil: null }, T0 + 2), { ...updated, lockedUntil: null, updatedAt: T0 + 2 });
      assert.equal(await store.updatePortalUser("usr_none", { name: "x" }, T0), null);
    }));

    test("concurrent failed sign-ins are all counted", () => withStore(async (store) => {
      await store.createPortalUser(user("usr_1", "a@x.test", "acc_a"));
      const counts = await Promise.all(Array.from({ length: 20 }, () => store.addPortalSignInFailure("usr_1", T0)));
      assert.deepEqual([...counts].sort((a, b) => a! - b!), Array.from({ length: 20 }, (_, i) => i + 1));
      assert.equal((await store.getPortalUser("usr_1"))!.failedSignIns, 20);
      assert.equal(await store.addPortalSignInFailure("usr_none", T0), null);
    }));

    test("sessions are kept by the hash of their id, ended one by one, per user, or when expired", () => withStore(async (store) => {
      await store.createPortalUser(user("usr_1", "a@x.test", "acc_a"));
      await store.createPortalUser(user("usr_2", "b@x.test", "acc_b"));
      const s1 = session("a".repeat(64), "usr_1");
      await store.createPortalSession(s1);
      await store.createPortalSession(session("b".repeat(64), "usr_1"));
      await store.createPortalSession(session("c".repeat(64), "usr_1", T0 - 1));
      await store.createPortalSession(session("d".repeat(64), "usr_2"));
      assert.deepEqual(await store.getPortalSession("a".repeat(64)), s1);
      assert.equal(await store.getPortalSession("e".repeat(64)), null);

      await store.prunePortalSessions(T0);
      assert.equal(await store.getPortalSession("c".repeat(64)), null, "expired before T0");
      assert.ok(await store.getPortalSession("a".repeat(64)));

      assert.equal(await store.deletePortalSessions("usr_1", "a".repeat(64)), 1);
      assert.ok(await store.getPortalSession("a".repeat(64)), "the one kept");
      assert.equal(await store.getPortalSession("b".repeat(64)), null);
      assert.ok(await store.getPortalSession("d".repeat(64)), "another user's are untouched");

      await store.deletePortalSession("a".repeat(64));
      assert.equal(await store.getPortalSession("a".repeat(64)), null);
      assert.equal(await store.deletePortalSessions("usr_2"), 1);
      assert.equal(await store.getPortalSession("d".repeat(64)), null);
    }));
  });
}
