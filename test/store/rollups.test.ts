/**
 * The SQL stores' hour and day rows: a flush adds to minute rows only, and the store rolls
 * each minute up into its hour and day once it has passed (`rollUp` in src/store/sql/store.ts).
 * The conformance suite checks what queries answer; this checks that the rows are really
 * rolled up (not only summed from minutes at query time), that concurrent writers and rollups
 * add up exactly, and that a database migrated from before rollups counts nothing twice.
 */
import { after, describe, test } from "node:test";
import assert from "node:assert/strict";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import Database from "better-sqlite3";
import { Kysely, Migrator, SqliteDialect } from "kysely";
import pg from "pg";
import { createMigrationProvider } from "../../src/store/sql/migrations.js";
import { createPostgresStore } from "../../src/store/postgres/index.js";
import { createSqliteStore } from "../../src/store/sqlite/index.js";
import type { AnalyticsBatch, Store, UsageCounters, UsagePeriod } from "../../src/store/types.js";
import { createTestDatabase, PG_SKIP } from "../support/scale-out.js";

const T = Date.parse("2026-01-01T00:00:00Z");
const MIN = 60_000;
const HOUR = 3_600_000;
const dirs: string[] = [];
after(() => { for (const d of dirs) rmSync(d, { recursive: true, force: true }); });

const tempFile = (): string => {
  const dir = mkdtempSync(join(tmpdir(), "keygate-rollups-"));
  dirs.push(dir);
  return join(dir, "keygate.db");
};

let serial = 0;
const counters = (minute: number, bins: number[], keyId = "key_1"): UsageCounters => ({
  minute, api: "pay", keyId, accountId: "acc_1", applicationId: null, environment: "live", code: "VALID", metric: "latency", bins,
});
const batch = (at: number, list: UsageCounters[]): AnalyticsBatch => ({ id: `bat_${String(++serial).padStart(10, "0")}`, at, counters: list, logs: [] });

/** Total count per period of the stored rows themselves (not what a query sums). */
type Totals = Record<UsagePeriod, number> & { through: number };

interface Fixture { store: Store; totals(): Promise<Totals>; position(): Promise<string>; close(): Promise<void> }

async function sqliteFixture(file = tempFile()): Promise<Fixture> {
  const store = createSqliteStore({ filename: file });
  await store.migrate();
  const reader = new Database(file, { readonly: true });
  return {
    store,
    async totals() {
      const rows = reader.prepare("SELECT period, SUM(count) AS n FROM usage_aggregates GROUP BY period").all() as Array<{ period: UsagePeriod; n: number }>;
      const through = (reader.prepare("SELECT through FROM analytics_rollups WHERE name = 'minutes'").get() as { through: number }).through;
      return { minute: 0, hour: 0, day: 0, ...Object.fromEntries(rows.map((r) => [r.period, Number(r.n)])), through: Number(through) };
    },
    async position() {
      const p = reader.prepare("SELECT through, through_api, through_key FROM analytics_rollups WHERE name = 'minutes'").get() as { through: number; through_api: string; through_key: string };
      return `${Number(p.through) - T} ${p.through_api} ${p.through_key}`;
    },
    async close() { reader.close(); await store.close(); },
  };
}

async function postgresFixture(): Promise<Fixture> {
  const db = await createTestDatabase();
  const store = createPostgresStore({ connectionString: db.url, maxConnections: 6 });
  await store.migrate();
  const client = new pg.Client({ connectionString: db.url });
  await client.connect();
  return {
    store,
    async totals() {
      const rows = (await client.query<{ period: UsagePeriod; n: string }>("SELECT period, SUM(count) AS n FROM usage_aggregates GROUP BY period")).rows;
      const through = (await client.query<{ through: string }>("SELECT through FROM analytics_rollups WHERE name = 'minutes'")).rows[0]!.through;
      return { minute: 0, hour: 0, day: 0, ...Object.fromEntries(rows.map((r) => [r.period, Number(r.n)])), through: Number(through) };
    },
    async position() {
      const p = (await client.query<{ through: string; through_api: string; through_key: string }>("SELECT through, through_api, through_key FROM analytics_rollups WHERE name = 'minutes'")).rows[0]!;
      return `${Number(p.through) - T} ${p.through_api} ${p.through_key}`;
    },
    async close() { await client.end(); await store.close(); await db.drop(); },
  };
}

const FIXTURES: Array<[string, () => Promise<Fixture>, string | false]> = [["sqlite", () => sqliteFixture(), false], ["postgres", postgresFixture, PG_SKIP]];

for (const [name, make, skip] of FIXTURES) {
  describe(`analytics rollups: ${name}`, { skip }, () => {
    test("a flush writes minute rows; each minute is rolled up into its hour and day once two minutes have passed", async () => {
      const f = await make();
      try {
        await f.store.recordAnalytics(batch(T, [counters(T, [40, 1, 41, 2])]));
        assert.deepEqual(await f.totals(), { minute: 3, hour: 0, day: 0, through: T - 2 * MIN }, "nothing to roll up yet");
        await f.store.recordAnalytics(batch(T + 2 * MIN, [counters(T + 2 * MIN, [40, 4])]));
        assert.deepEqual(await f.totals(), { minute: 7, hour: 0, day: 0, through: T }, "minute 0 ended less than two minutes ago");
        await f.store.recordAnalytics(batch(T + 3 * MIN, []));
        assert.deepEqual(await f.totals(), { minute: 7, hour: 3, day: 3, through: T + MIN }, "minute 0 rolled up, minute 2 not yet");
        // A late count for minute 0 goes to its hour and day at once.
        await f.store.recordAnalytics(batch(T + 3 * MIN, [counters(T, [40, 8])]));
        assert.deepEqual(await f.totals(), { minute: 15, hour: 11, day: 11, through: T + MIN });
        // One minute per flush: minute 1 has no rows, so the next flush rolls up minute 2.
        // A flush rolls up several chunks: minute 1 has no rows, minute 2 is rolled up, and
        // there is nothing more before minute 8.
        await f.store.recordAnalytics(batch(T + 10 * MIN, []));
        assert.deepEqual(await f.totals(), { minute: 15, hour: 15, day: 15, through: T + 8 * MIN });
        const hours = await f.store.queryUsage({ period: "hour", from: T, to: T + HOUR, groupBy: null, limit: 10 });
        assert.deepEqual(hours.map((r) => `${r.bin}=${r.count}`), ["40=13", "41=2"]);
      } finally {
        await f.close();
      }
    });

    test("a large minute is rolled up in chunks of whole keys, and counts stay exact between them", async () => {
      const f = await make();
      try {
        // Minute 0: 11,000 keys with two bins each (22,000 rows); minute 1: one key with 5,200 rows.
        const keys = Array.from({ length: 11_000 }, (_, i) => `key_${String(i).padStart(5, "0")}`);
        await f.store.recordAnalytics(batch(T, keys.map((k) => counters(T, [40, 1, 41, 1], k))));
        const big = Array.from({ length: 2600 }, (_, i) => ({ ...counters(T + MIN, [40, 1, 41, 1], "key_big"), code: `C${String(i).padStart(4, "0")}` }));
        await f.store.recordAnalytics(batch(T + MIN, big));
        const hourTotal = async (): Promise<number> =>
          (await f.store.queryUsage({ period: "hour", from: T, to: T + HOUR, groupBy: null, limit: 10_000 })).reduce((n, r) => n + r.count, 0);
        assert.equal(await hourTotal(), 27_200);
        // Minute 0 over: one flush rolls up four chunks of 5,000 rows, up to key 10,000.
        await f.store.recordAnalytics(batch(T + 3 * MIN, []));
        assert.equal(await f.position(), "0 pay key_10000");
        assert.deepEqual(await f.totals(), { minute: 27_200, hour: 20_000, day: 20_000, through: T });
        assert.equal(await hourTotal(), 27_200, "rolled rows from the hour rows, the rest from the minute rows");
        // Late counts for a key rolled up and for one not yet; the flush then rolls up the rest of minute 0.
        await f.store.recordAnalytics(batch(T + 3 * MIN, [counters(T, [40, 1], "key_00001"), counters(T, [40, 1], "key_10999")]));
        assert.deepEqual(await f.totals(), { minute: 27_202, hour: 22_002, day: 22_002, through: T + MIN }, "each late count once: straight to the hour, or rolled up with its minute");
        assert.equal(await hourTotal(), 27_202);
        // Minute 1's one key, whole, although larger than a chunk.
        await f.store.recordAnalytics(batch(T + 4 * MIN, []));
        assert.equal(await f.position(), "120000  ");
        assert.deepEqual(await f.totals(), { minute: 27_202, hour: 27_202, day: 27_202, through: T + 2 * MIN });
        assert.equal(await hourTotal(), 27_202);
      } finally {
        await f.close();
      }
    });

    test("four writers flushing through an hour and a half while minutes roll up add up exactly", async () => {
      const f = await make();
      try {
        const expected = new Map<number, number>();
        const writer = async (w: number): Promise<void> => {
          for (let m = 0; m < 90; m++) {
            const list: UsageCounters[] = [];
            for (let k = 0; k < 3; k++) {
              const count = 1 + ((w * 7 + m * 3 + k) % 5);
              // Mostly the current minute; every fifth batch also a count from four minutes back.
              const minute = T + (m % 5 === 4 ? m - 4 : m) * MIN;
              list.push(counters(minute, [40 + k, count], `key_${w}`));
              expected.set(minute - (minute % HOUR), (expected.get(minute - (minute % HOUR)) ?? 0) + count);
            }
            await f.store.recordAnalytics(batch(T + m * MIN + w * 1000, list));
          }
        };
        await Promise.all([0, 1, 2, 3].map(writer));
        const total = [...expected.values()].reduce((a, b) => a + b, 0);
        const stored = await f.totals();
        assert.equal(stored.minute, total);
        assert.ok(stored.hour > 0 && stored.hour <= total, `some minutes rolled up: ${stored.hour} of ${total}`);
        assert.equal(stored.hour, stored.day);
        for (const period of ["hour", "day"] as const) {
          const rows = await f.store.queryUsage({ period, from: T, to: T + 86_400_000, groupBy: null, limit: 100 });
          const by = new Map<number, number>();
          for (const r of rows) by.set(r.bucketStart, (by.get(r.bucketStart) ?? 0) + r.count);
          if (period === "hour") assert.deepEqual([...by].sort((a, b) => a[0] - b[0]), [...expected].sort((a, b) => a[0] - b[0]));
          else assert.deepEqual([...by], [[T, total]]);
        }
        // Pruning the minutes rolls up the rest first.
        await f.store.pruneAnalytics({ logsBefore: 0, minutesBefore: T + 2 * HOUR, hoursBefore: 0, daysBefore: null, batchesBefore: 0 });
        assert.deepEqual(await f.totals(), { minute: 0, hour: total, day: total, through: T + 2 * HOUR });
      } finally {
        await f.close();
      }
    });
  });
}

describe("analytics rollups: a database from before them", () => {
  test("starts rolling up after the latest minute it holds, so no minute counts twice", async () => {
    const file = tempFile();
    // The schema as it was before 0009, with a minute, its hour and its day written as that
    // version wrote them: all three at once.
    const db = new Kysely<any>({ dialect: new SqliteDialect({ database: new Database(file) }) });
    const { error } = await new Migrator({ db, provider: createMigrationProvider("sqlite") }).migrateTo("0008_binary_id_order");
    assert.equal(error, undefined);
    const old = { api: "pay", key_id: "key_1", account_id: "acc_1", application_id: "", environment: "live", code: "VALID", metric: "latency", bin: 40, count: 5 };
    await db.insertInto("usage_aggregates").values([
      { ...old, period: "minute", bucket_start: T + 7 * MIN }, { ...old, period: "hour", bucket_start: T }, { ...old, period: "day", bucket_start: T },
    ]).execute();
    await db.destroy();

    const f = await sqliteFixture(file);
    try {
      assert.equal((await f.totals()).through, T + 8 * MIN);
      await f.store.recordAnalytics(batch(T + 9 * MIN, [counters(T + 7 * MIN, [40, 1]), counters(T + 9 * MIN, [40, 2])]));
      for (let m = 12; m < 20; m++) await f.store.recordAnalytics(batch(T + m * MIN, []));
      assert.deepEqual(await f.totals(), { minute: 8, hour: 8, day: 8, through: T + 17 * MIN });
    } finally {
      await f.close();
    }
  });
});
