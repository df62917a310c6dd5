import { mkdirSync } from "node:fs";
import { dirname } from "node:path";
import Database from "better-sqlite3";
import { Kysely, SqliteDialect } from "kysely";
import type { RequestLog, Store } from "../types.js";
import { createSqlStore } from "../sql/store.js";
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
    kind: "sqlite",
    isUniqueViolation: (e) => typeof e === "object" && e !== null && "code" in e &&
      (e.code === "SQLITE_CONSTRAINT_UNIQUE" || e.code === "SQLITE_CONSTRAINT_PRIMARYKEY"),
    isUnavailable: (e) => typeof e === "object" && e !== null && "code" in e && (e.code === "SQLITE_BUSY" || e.code === "SQLITE_CANTOPEN" || e.code === "SQLITE_IOERR"),
    close: () => db.destroy(),
  });
}

/**
 * Rows per transaction. The insert is synchronous, so a flush of 10,000 logs would hold the
 * event loop for tens of milliseconds; between two chunks it yields (setImmediate) so that
 * requests that arrived meanwhile are answered, and queued queries get the connection.
 */
const LOG_ROWS_PER_TRANSACTION = 250;

/**
 * Raw request logs written through one statement prepared once and run per row, bypassing
 * Kysely: they are the one write per request (up to `analytics.maxQueue` per flush), and a
 * 500-row INSERT that Kysely builds value by value, which better-sqlite3 then prepares anew
 * each time, cost three times as much main-thread time per log (bench/verify-http.ts with
 * BENCH_STORE=sqlite). Each chunk runs on Kysely's connection (`db.connection()`), so it
 * waits for a transaction Kysely has open instead of landing inside it.
 */
function insertLogsDirectly(db: Kysely<KeygateDatabase>, sqlite: Database.Database): (logs: RequestLog[]) => Promise<void> {
  let insert: ((rows: RequestLog[]) => void) | null = null;
  const prepare = (): ((rows: RequestLog[]) => void) => {
    // Prepared on first use: the table exists only once migrate() has run.
    const statement = sqlite.prepare(
      "INSERT INTO request_logs (id, at, api, key_id, account_id, application_id, environment, code, status, method, path, " +
      "latency_us, upstream_us, ip, request_id, source) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (id) DO NOTHING",
    );
    return sqlite.transaction((rows: RequestLog[]) => {
      for (const l of rows) {
        statement.run(l.id, l.at, l.api, l.keyId, l.accountId, l.applicationId, l.environment, l.code, l.status, l.method, l.path,
          l.latencyUs, l.upstreamUs, l.ip, l.requestId, l.source);
      }
    });
  };
  return async (logs) => {
    for (let i = 0; i < logs.length; i += LOG_ROWS_PER_TRANSACTION) {
      const rows = logs.slice(i, i + LOG_ROWS_PER_TRANSACTION);
      if (i > 0) await new Promise<void>((resolve) => setImmediate(resolve));
      await db.connection().execute(async () => { (insert ??= prepare())(rows); });
    }
  };
}
