import { createRequire } from "node:module";
import { Kysely, PostgresDialect, sql } from "kysely";
import type { Store, UsageDelta } from "../types.js";
import { cmp, createSqlStore } from "../sql/store.js";
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

/** The advisory lock that key-changing transactions of every node queue on ("kg" + "chg"). */
const KEY_CHANGES_LOCK = 0x6b67_636867;

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
  // Loaded here rather than imported: `import "keygate"` re-exports this factory, and an
  // application on SQLite should not pay for loading pg.
  const pg = createRequire(import.meta.url)("pg") as typeof import("pg");
  const pool = new pg.Pool({
    connectionString: options.connectionString,
    max: options.maxConnections ?? 10,
    connectionTimeoutMillis: options.connectTimeoutMs ?? 5000,
  });
  // A client that loses its server emits 'error': while idle, the pool relays it as the pool's
  // 'error'; while checked out (a query in flight, a transaction open), on the client itself,
  // where the pool listens no longer. Unheard, either would crash the process. The query
  // itself fails with the error (→ STORE_UNAVAILABLE), the pool drops the broken client, and
  // the next query gets a fresh connection.
  pool.on("error", () => {});
  pool.on("connect", (client) => { client.on("error", () => {}); });
  const db = new Kysely<KeygateDatabase>({ dialect: new PostgresDialect({ pool }) });
  return createSqlStore(db, {
    kind: "postgres",
    isUniqueViolation: (e) => typeof e === "object" && e !== null && "code" in e && e.code === "23505",
    isUnavailable: isConnectionError,
    // Nodes write concurrently, and a sequence hands out numbers in the order transactions
    // ask, not the order they commit. Queuing the (rare) key writes on one lock, taken before
    // anything else so no two transactions can wait on each other, makes the two orders agree.
    serializeChanges: async (trx) => { await sql`select pg_advisory_xact_lock(${KEY_CHANGES_LOCK})`.execute(trx); },
    recordUsage: (deltas) => recordUsage(db, deltas),
    close: () => db.destroy(),
  });
}

/**
 * One flush's usage counts in two statements whatever their number, instead of one round trip
 * per key. The keys' rows are locked first, in id order, so that two nodes flushing the same
 * keys lock them in the same order and cannot deadlock; then one UPDATE joins them to the
 * deltas, passed as three arrays. Deltas of one key are merged first: an UPDATE … FROM
 * changes a row once, whatever the number of rows it joins.
 */
async function recordUsage(db: Kysely<KeygateDatabase>, deltas: UsageDelta[]): Promise<void> {
  const merged = new Map<string, UsageDelta>();
  for (const d of deltas) {
    const held = merged.get(d.keyId);
    if (held === undefined) merged.set(d.keyId, { ...d });
    else { held.count += d.count; held.lastUsedAt = Math.max(held.lastUsedAt, d.lastUsedAt); }
  }
  const rows = [...merged.values()].sort((a, b) => cmp(a.keyId, b.keyId));
  const ids = rows.map((d) => d.keyId);
  await db.transaction().execute(async (trx) => {
    await sql`select id from keys where id = any(${ids}::text[]) order by id for update`.execute(trx);
    await sql`
      update keys set usage_count = keys.usage_count + d.count,
        last_used_at = case when keys.last_used_at is null or keys.last_used_at < d.last_used_at then d.last_used_at else keys.last_used_at end
      from unnest(${ids}::text[], ${rows.map((d) => d.count)}::bigint[], ${rows.map((d) => d.lastUsedAt)}::bigint[]) as d(id, count, last_used_at)
      where keys.id = d.id`.execute(trx);
  });
}
