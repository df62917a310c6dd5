import { Kysely, PostgresDialect } from "kysely";
import pg from "pg";
import type { Store } from "../types.js";
import { createSqlStore } from "../sql/store.js";
import type { KeygateDatabase } from "../sql/schema.js";

export interface PostgresStoreOptions {
  /** `postgres://user:password@host:5432/database` */
  connectionString: string;
  /** Pool size per node; default 10. */
  maxConnections?: number;
  /** Give up on a connection attempt after this long; default 5000 ms. */
  connectTimeoutMs?: number;
}

const CONNECTION_CODES = new Set(["ECONNREFUSED", "ECONNRESET", "ETIMEDOUT", "EPIPE", "ENOTFOUND", "EAI_AGAIN", "57P01", "57P02", "57P03", "08000", "08001", "08003", "08004", "08006", "53300"]);

function isConnectionError(e: unknown): boolean {
  if (typeof e !== "object" || e === null) return false;
  const code = (e as { code?: unknown }).code;
  if (typeof code === "string" && CONNECTION_CODES.has(code)) return true;
  const message = (e as { message?: unknown }).message;
  return typeof message === "string" && /Connection terminated|timeout exceeded when trying to connect|connect ECONNREFUSED|Client has encountered a connection error/i.test(message);
}

/**
 * The scale-out store: PostgreSQL through a connection pool, with the same schema, migrations
 * and conformance suite as SQLite. Several keygate nodes may share one database; migrations
 * are serialised by Kysely's migration lock.
 *
 * @example
 * const store = createPostgresStore({ connectionString: process.env.KEYGATE_DATABASE_URL! });
 * await store.migrate();
 */
export function createPostgresStore(options: PostgresStoreOptions): Store {
  const pool = new pg.Pool({
    connectionString: options.connectionString,
    max: options.maxConnections ?? 10,
    connectionTimeoutMillis: options.connectTimeoutMs ?? 5000,
  });
  // An idle client that loses its server emits 'error' on the pool; without a listener that
  // would crash the process. The next query simply gets a fresh connection.
  pool.on("error", () => {});
  const db = new Kysely<KeygateDatabase>({ dialect: new PostgresDialect({ pool }) });
  return createSqlStore(db, {
    kind: "postgres",
    isUniqueViolation: (e) => typeof e === "object" && e !== null && "code" in e && e.code === "23505",
    isUnavailable: isConnectionError,
    close: () => db.destroy(),
  });
}
