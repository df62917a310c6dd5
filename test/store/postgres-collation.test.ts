/**
 * Ids sort by creation time as bytes (base62 time first), and every list pages by id. On a
 * PostgreSQL database whose locale is not C — here ICU en-US, which orders "key_a" before
 * "key_B" — keys, accounts and their pages must still come in byte order, as SQLite and the
 * memory store give them (migration 0008_binary_id_order).
 */
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import pg from "pg";
import { createPostgresStore } from "../../src/store/postgres/index.js";
import type { Account, KeyRecord, Store } from "../../src/store/types.js";
import { createTestDatabase, PG_SKIP } from "../support/scale-out.js";
import type { TestDatabase } from "../support/scale-out.js";

const T = Date.parse("2031-05-06T07:08:09.123Z");
let serial = 0;
const account = (id: string): Account => ({ id, name: id, email: `owner-${++serial}@example.test`, metadata: {}, ipAllowlists: {}, createdAt: T, updatedAt: T });
const key = (id: string, accountId: string): KeyRecord => ({
  id, api: "pay", accountId, applicationId: null, name: null, environment: "live", hash: id.padEnd(64, "0"), hashAlgorithm: "sha256",
  start: null, scopes: [], ipAllowlist: [], expiresAt: null, rateLimit: null, enabled: true, revokedAt: null, rotatedAt: null,
  graceEndsAt: null, replacedBy: null, metadata: {}, source: "generated", createdAt: T, updatedAt: T, lastUsedAt: null, usageCount: 0,
});

// Byte order: digits, then upper case, then lower case. en-US would interleave the cases.
const IDS = ["0Aa", "0Ab", "0B", "0a", "0b", "1", "Z", "a", "b"];
const byteSorted = [...IDS].sort();

describe("PostgreSQL on a database with a non-C locale", { skip: PG_SKIP }, () => {
  let db: TestDatabase;
  let store: Store;

  before(async () => {
    db = await createTestDatabase("TEMPLATE template0 LOCALE_PROVIDER icu ICU_LOCALE 'en-US' LOCALE 'C.UTF-8'");
    store = createPostgresStore({ connectionString: db.url, maxConnections: 2 });
    await store.migrate();
  });
  after(async () => {
    await store?.close();
    await db?.drop();
  });

  test("the database's own order is not byte order (the premise)", async () => {
    const client = new pg.Client({ connectionString: db.url });
    await client.connect();
    try {
      const { rows } = await client.query<{ lt: boolean }>("SELECT 'key_a' < 'key_B' AS lt");
      assert.equal(rows[0]!.lt, true, "en-US puts key_a first; byte order would not");
    } finally {
      await client.end();
    }
  });

  test("keys and accounts list, and page, in byte order of their ids", async () => {
    for (const id of IDS) await store.createAccount(account(`acc_${id}`));
    await store.insertKeys(IDS.map((id) => key(`key_${id}`, "acc_0a")));
    const keys = await store.listKeys({ limit: 100 });
    assert.deepEqual(keys.map((k) => k.id), byteSorted.map((id) => `key_${id}`));
    const accounts = await store.listAccounts({ limit: 100 });
    assert.deepEqual(accounts.map((a) => a.id), byteSorted.map((id) => `acc_${id}`));
    // Pages of two, each after the last id of the previous page: every key once, in order.
    const paged: string[] = [];
    let after: string | undefined;
    for (;;) {
      const page = await store.listKeys({ limit: 2, after });
      if (page.length === 0) break;
      paged.push(...page.map((k) => k.id));
      after = page[page.length - 1]!.id;
    }
    assert.deepEqual(paged, byteSorted.map((id) => `key_${id}`));
  });
});
