import { mkdirSync } from "node:fs";
import { dirname } from "node:path";
import { setImmediate as nextTurn } from "node:timers/promises";
import Database from "better-sqlite3";
import { Kysely, SqliteDialect } from "kysely";
import type { RequestLog, Store, UsageCounters, UsageDelta } from "../types.js";
import { eachAggregate } from "../aggregates.js";
import { AGGREGATE_KEY, createSqlStore, fromRequestLog } from "../sql/store.js";
import type { KeygateDatabase } from "../sql/schema.js";

export interface SqliteStoreOptions {
  /** Path of the database file; its folder is created if missing. `:memory:` for a private in-memory database. */
  filename: string;
}

/**
 * The embedded default store: one SQLite file in WAL mode, so readers never wait for the
 * usage flusher. Call `migrate()` before use.
 *
 * @example
 * const store = createSqliteStore({ filename: "./data/keygate.db" });
 * await store.migrate();
 */
export function createSqliteStore(options: SqliteStoreOptions): Store {
  if (options.filename !== ":memory:") mkdirSync(dirname(options.filename), { recursive: true });
  const sqlite = new Database(options.filename);
  // First: switching a fresh file to WAL takes a lock, and another process opening it at the
  // same moment (two CLI commands) must wait for it rather than fail with "database is locked".
  sqlite.pragma("busy_timeout = 5000");
  sqlite.pragma("journal_mode = WAL");
  sqlite.pragma("synchronous = NORMAL");
  sqlite.pragma("foreign_keys = ON");
  const db = new Kysely<KeygateDatabase>({ dialect: new SqliteDialect({ database: sqlite }) });
  return createSqlStore(db, {
    insertRequestLogs: insertLogsDirectly(db, sqlite),
    upsertAggregates: upsertAggregatesDirectly(sqlite),
    recordUsage: recordUsageDirectly(db, sqlite),
    kind: "sqlite",
    isUniqueViolation: (e) => typeof e === "object" && e !== null && "code" in e &&
      (e.code === "SQLITE_CONSTRAINT_UNIQUE" || e.code === "SQLITE_CONSTRAINT_PRIMARYKEY"),
    isUnavailable: (e) => typeof e === "object" && e !== null && "code" in e && (e.code === "SQLITE_BUSY" || e.code === "SQLITE_CANTOPEN" || e.code === "SQLITE_IOERR"),
    close: () => db.destroy(),
  });
}

/**
 * A batch's counters added to the stored rows (minute rows, and the hours and days of minutes
 * already rolled up) through one statement prepared once and run per row, inside the
 * transaction the SQL store holds open (this is its connection), its values bound by position
 * straight from the counters: no object per row. With many keys in use a flush adds to tens
 * of thousands of rows (per key, code and latency bin), and the 500-row upserts Kysely built
 * value by value, which better-sqlite3 then prepared anew, made the process that wrote them
 * spend 32 % of its time in GC pauses (bench/verify-scale.ts, 10,000 keys in turn on SQLite).
 */
function upsertAggregatesDirectly(sqlite: Database.Database): (counters: readonly UsageCounters[], toHoursAndDays: (c: UsageCounters) => boolean) => void {
  let statement: Database.Statement | null = null;
  return (counters, toHoursAndDays) => {
    if (counters.length === 0) return;
    // Prepared on first use: the table exists only once migrate() has run.
    statement ??= sqlite.prepare(
      "INSERT INTO usage_aggregates (period, bucket_start, api, key_id, account_id, application_id, environment, code, metric, bin, count) " +
      `VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (${AGGREGATE_KEY.join(", ")}) DO UPDATE SET count = usage_aggregates.count + excluded.count`,
    );
    const upsert = statement;
    eachAggregate(counters, (c, period, start, bin, count) => {
      upsert.run(period, start, c.api, c.keyId ?? "", c.accountId ?? "", c.applicationId ?? "", c.environment ?? "", c.code, c.metric, bin, count);
    }, toHoursAndDays);
  };
}

/**
 * Usage counts added by one statement prepared once and run per key, in one transaction on
 * Kysely's connection (`db.connection()`), so it waits for a transaction Kysely has open
 * instead of landing inside it.
 */
function recordUsageDirectly(db: Kysely<KeygateDatabase>, sqlite: Database.Database): (deltas: UsageDelta[]) => Promise<void> {
  let add: ((deltas: UsageDelta[]) => void) | null = null;
  const prepare = (): ((deltas: UsageDelta[]) => void) => {
    // Prepared on first use: the table exists only once migrate() has run.
    const statement = sqlite.prepare(
      "UPDATE keys SET usage_count = usage_count + ?, " +
      // CASE rather than max(), as PostgreSQL's statement spells it too.
      "last_used_at = CASE WHEN last_used_at IS NULL OR last_used_at < ? THEN ? ELSE last_used_at END WHERE id = ?",
    );
    return sqlite.transaction((deltas: UsageDelta[]) => {
      for (const d of deltas) statement.run(d.count, d.lastUsedAt, d.lastUsedAt, d.keyId);
    });
  };
  return async (deltas) => {
    await db.connection().execute(async () => { (add ??= prepare())(deltas); });
  };
}

/**
 * Rows per transaction. The insert is synchronous, so a flush of 10,000 logs would hold the
 * event loop for tens of milliseconds; between two chunks it yields (setImmediate) so that
 * requests that arrived meanwhile are answered, and queued queries get the connection.
 */
const LOG_ROWS_PER_TRANSACTION = 250;

/**
 * Raw request logs written through one statement prepared once and run per row, bypassing
 * Kysely: they are the one write per request (up to `analytics.maxQueue` per flush), and the
 * 500-row INSERT that Kysely builds value by value, which better-sqlite3 then prepares anew
 * each time, spent ~4 % of the server's CPU in that building and preparing alone
 * (bench/verify-http.ts with BENCH_STORE=sqlite, CPU profile). Each chunk runs on Kysely's connection (`db.connection()`), so it
 * waits for a transaction Kysely has open instead of landing inside it.
 */
function insertLogsDirectly(db: Kysely<KeygateDatabase>, sqlite: Database.Database): (logs: RequestLog[]) => Promise<void> {
  let insert: ((rows: RequestLog[]) => void) | null = null;
  const prepare = (first: RequestLog): ((rows: RequestLog[]) => void) => {
    // Prepared on first use: the table exists only once migrate() has run.
    // The columns are the row's own (`fromRequestLog`), bound by name.
    const columns = Object.keys(fromRequestLog(first));
    const statement = sqlite.prepare(
      `INSERT INTO request_logs (${columns.join(", ")}) VALUES (${columns.map((c) => `@${c}`).join(", ")}) ON CONFLICT (id) DO NOTHING`,
    );
    return sqlite.transaction((rows: RequestLog[]) => {
      for (const l of rows) statement.run(fromRequestLog(l));
    });
  };
  return async (logs) => {
    for (let i = 0; i < logs.length; i += LOG_ROWS_PER_TRANSACTION) {
      const rows = logs.slice(i, i + LOG_ROWS_PER_TRANSACTION);
      if (i > 0) await nextTurn();
      await db.connection().execute(async () => { (insert ??= prepare(rows[0]!))(rows); });
    }
  };
}
