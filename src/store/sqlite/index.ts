import { mkdirSync } from "node:fs";
import { dirname } from "node:path";
import Database from "better-sqlite3";
import { Kysely, SqliteDialect } from "kysely";
import type { Store } from "../types.js";
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
    kind: "sqlite",
    isUniqueViolation: (e) => typeof e === "object" && e !== null && "code" in e &&
      (e.code === "SQLITE_CONSTRAINT_UNIQUE" || e.code === "SQLITE_CONSTRAINT_PRIMARYKEY"),
    isUnavailable: (e) => typeof e === "object" && e !== null && "code" in e && (e.code === "SQLITE_BUSY" || e.code === "SQLITE_CANTOPEN" || e.code === "SQLITE_IOERR"),
    close: () => db.destroy(),
  });
}
