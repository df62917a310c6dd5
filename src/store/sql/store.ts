import { setImmediate as nextTurn } from "node:timers/promises";
import { Migrator, sql } from "kysely";
import type { Insertable, Kysely, Selectable, Updateable } from "kysely";
import { KeygateError } from "../../lib/errors.js";
import type { Account, Application, KeyPatch, KeyRecord, Store, UsageDelta } from "../types.js";
import type { AnalyticsBatch, RequestLog, UsageCounters, UsageQueryRow } from "../types.js";
import { bucketOf, eachAggregate, PERIOD_MS } from "../aggregates.js";
import { createMigrationProvider } from "./migrations.js";
import type { SqlDialectName } from "./migrations.js";
import type { AccountsTable, ApplicationsTable, KeygateDatabase, KeysTable, UsageAggregatesTable } from "./schema.js";
import type { RequestLogsTable } from "./schema.js";
import type { PortalSessionsTable, PortalUsersTable } from "./schema.js";
import type { PortalSession, PortalUser } from "../types.js";

/** What differs between SQL dialects, supplied by each adapter folder. */
export interface SqlDialectHooks {
  kind: SqlDialectName;
  /** True when `error` is a unique-constraint violation of this driver. */
  isUniqueViolation(error: unknown): boolean;
  /** True when `error` means the database cannot be reached (as opposed to a bad query). */
  isUnavailable(error: unknown): boolean;
  /**
   * Called first in every transaction that records key changes, to make them commit in the
   * order of their sequence numbers (see `writing`). SQLite needs none: its one connection
   * already runs one transaction at a time.
   */
  serializeChanges?(trx: Kysely<KeygateDatabase>): Promise<void>;
  /**
   * Inserts raw request logs, skipping ids already stored, in place of the Kysely statement
   * (a dialect with a cheaper way to write many small rows).
   */
  insertRequestLogs?(logs: RequestLog[]): Promise<void>;
  /**
   * Adds a batch's counters to the stored minute rows, and to hour and day rows for those
   * that `toHoursAndDays` accepts, whose minute rows are rolled up already (`eachAggregate`;
   * the others will be, by `rollUp`), in place of the Kysely statements. Called inside the
   * transaction that claims the batch id, on the connection it holds, so it commits or rolls
   * back with it; synchronous, as that connection is (SQLite).
   */
  upsertAggregates?(counters: readonly UsageCounters[], toHoursAndDays: (c: UsageCounters) => boolean): void;
  /**
   * Adds usage counts to keys and moves their `last_used_at` forward, in one transaction of
   * its own: a flush brings one delta per key used since the last one, ten thousand with ten
   * thousand keys in use, and one Kysely statement built and prepared per key cost ~19 µs
   * each (SQLite, scratch harness) and one round trip each (PostgreSQL). Each dialect has a
   * cheaper way: a statement prepared once (SQLite), one statement for all of them (PostgreSQL).
   */
  recordUsage(deltas: UsageDelta[]): Promise<void>;
  close(): Promise<void>;
}

/** One row of `usage_aggregates` as written: the counts to add to it. */
type AggregateRow = Insertable<UsageAggregatesTable>;

const num = (v: number | string): number => (typeof v === "string" ? Number(v) : v);
const numOrNull = (v: number | string | null): number | null => (v === null ? null : num(v));

function toAccount(row: Selectable<AccountsTable>): Account {
  return {
    id: row.id, name: row.name, email: row.email, metadata: JSON.parse(row.metadata), ipAllowlists: JSON.parse(row.ip_allowlists),
    createdAt: num(row.created_at), updatedAt: num(row.updated_at),
  };
}

function toApplication(row: Selectable<ApplicationsTable>): Application {
  return {
    id: row.id, accountId: row.account_id, api: row.api, name: row.name, integrationType: row.integration_type,
    features: JSON.parse(row.features), clientId: row.client_id, metadata: JSON.parse(row.metadata),
    createdAt: num(row.created_at), updatedAt: num(row.updated_at),
  };
}

function toKey(row: Selectable<KeysTable>): KeyRecord {
  return {
    id: row.id, api: row.api, accountId: row.account_id, applicationId: row.application_id,
    name: row.name, environment: row.environment, hash: row.hash,
    hashAlgorithm: row.hash_algorithm as KeyRecord["hashAlgorithm"], start: row.start,
    scopes: JSON.parse(row.scopes), ipAllowlist: JSON.parse(row.ip_allowlist),
    expiresAt: numOrNull(row.expires_at), rateLimit: row.rate_limit ? JSON.parse(row.rate_limit) : null,
    enabled: Boolean(row.enabled), revokedAt: numOrNull(row.revoked_at), rotatedAt: numOrNull(row.rotated_at),
    graceEndsAt: numOrNull(row.grace_ends_at), replacedBy: row.replaced_by, metadata: JSON.parse(row.metadata),
    source: row.source as KeyRecord["source"], createdAt: num(row.created_at), updatedAt: num(row.updated_at),
    lastUsedAt: numOrNull(row.last_used_at), usageCount: num(row.usage_count),
  };
}

function fromKey(r: KeyRecord): Insertable<KeysTable> {
  return {
    id: r.id, api: r.api, account_id: r.accountId, application_id: r.applicationId, name: r.name,
    environment: r.environment, hash: r.hash, hash_algorithm: r.hashAlgorithm, start: r.start,
    scopes: JSON.stringify(r.scopes), ip_allowlist: JSON.stringify(r.ipAllowlist), expires_at: r.expiresAt,
    rate_limit: r.rateLimit ? JSON.stringify(r.rateLimit) : null, enabled: r.enabled ? 1 : 0,
    revoked_at: r.revokedAt, rotated_at: r.rotatedAt, grace_ends_at: r.graceEndsAt, replaced_by: r.replacedBy,
    metadata: JSON.stringify(r.metadata), source: r.source, created_at: r.createdAt, updated_at: r.updatedAt,
    last_used_at: r.lastUsedAt, usage_count: r.usageCount,
  };
}

function patchColumns(p: KeyPatch, now: number): Updateable<KeysTable> {
  const out: Updateable<KeysTable> = { updated_at: now };
  if (p.name !== undefined) out.name = p.name;
  if (p.scopes !== undefined) out.scopes = JSON.stringify(p.scopes);
  if (p.ipAllowlist !== undefined) out.ip_allowlist = JSON.stringify(p.ipAllowlist);
  if (p.expiresAt !== undefined) out.expires_at = p.expiresAt;
  if (p.rateLimit !== undefined) out.rate_limit = p.rateLimit ? JSON.stringify(p.rateLimit) : null;
  if (p.enabled !== undefined) out.enabled = p.enabled ? 1 : 0;
  if (p.metadata !== undefined) out.metadata = JSON.stringify(p.metadata);
  if (p.revokedAt !== undefined) out.revoked_at = p.revokedAt;
  if (p.rotatedAt !== undefined) out.rotated_at = p.rotatedAt;
  if (p.graceEndsAt !== undefined) out.grace_ends_at = p.graceEndsAt;
  if (p.replacedBy !== undefined) out.replaced_by = p.replacedBy;
  return out;
}

/**
 * The {@link Store} over any Kysely database with the keygate schema. The SQLite and
 * PostgreSQL adapters only supply a Kysely instance and {@link SqlDialectHooks}.
 */
export function createSqlStore(db: Kysely<KeygateDatabase>, hooks: SqlDialectHooks): Store {
  const duplicate = (e: unknown, code: string, message: string): never => {
    if (hooks.isUniqueViolation(e)) throw new KeygateError(code, message, 409);
    throw e;
  };

  /**
   * A transaction that records key changes. Readers of the feed remember the highest sequence
   * number they saw; were a change numbered 10 to commit after one numbered 11 had been read,
   * they would never see it, and a revoked key would stay cached on other nodes.
   */
  const writing = <T>(fn: (trx: Kysely<KeygateDatabase>) => Promise<T>): Promise<T> =>
    db.transaction().execute(async (trx) => {
      await hooks.serializeChanges?.(trx);
      return fn(trx);
    });

  async function insertKeysWith(trx: Kysely<KeygateDatabase>, records: KeyRecord[]): Promise<void> {
    // Chunked so that a 100k-key import stays under every driver's bound-parameter limit.
    const rows = records.map(fromKey);
    for (let i = 0; i < rows.length; i += 500) {
      await trx.insertInto("keys").values(rows.slice(i, i + 500)).execute();
      await trx.insertInto("key_changes").values(records.slice(i, i + 500).map((r) => ({ hash: r.hash, at: r.createdAt }))).execute();
    }
  }

  /** Updates a key and records the change for other processes' caches; false when no such key. */
  async function updateWith(trx: Kysely<KeygateDatabase>, id: string, patch: KeyPatch, now: number): Promise<boolean> {
    const row = await trx.updateTable("keys").set(patchColumns(patch, now)).where("id", "=", id).returning("hash").executeTakeFirst();
    if (!row) return false;
    await trx.insertInto("key_changes").values({ hash: row.hash, at: now }).execute();
    return true;
  }

  const store: Store = {
    kind: hooks.kind,
    async migrate() {
      const migrator = new Migrator({ db, provider: createMigrationProvider(hooks.kind) });
      // PostgreSQL serializes migrators with an advisory lock; Kysely's SQLite adapter has no
      // lock, so two processes opening a fresh file at once can both start the same migration.
      // The loser's transaction rolls back whole; a second pass then finds the work done.
      for (let attempt = 1; ; attempt++) {
        const { error } = await migrator.migrateToLatest();
        if (!error) return;
        if (hooks.kind !== "sqlite" || attempt === 5) throw error;
        await new Promise((r) => setTimeout(r, 20 * attempt));
      }
    },
    close: () => hooks.close(),
    ...sqlAnalytics(db, hooks),
    ...sqlPortal(db, hooks),

    async createAccount(a) {
      try {
        await db.insertInto("accounts").values({
          id: a.id, name: a.name, email: a.email, email_lower: a.email.toLowerCase(),
          metadata: JSON.stringify(a.metadata), ip_allowlists: JSON.stringify(a.ipAllowlists ?? {}), created_at: a.createdAt, updated_at: a.updatedAt,
        }).execute();
      } catch (e) {
        duplicate(e, "EMAIL_TAKEN", `An account with email ${a.email} exists already.`);
      }
    },
    async getAccount(id) {
      const row = await db.selectFrom("accounts").selectAll().where("id", "=", id).executeTakeFirst();
      return row ? toAccount(row) : null;
    },
    async getAccountByEmail(email) {
      const row = await db.selectFrom("accounts").selectAll().where("email_lower", "=", email.toLowerCase()).executeTakeFirst();
      return row ? toAccount(row) : null;
    },
    async updateAccount(id, patch, now) {
      const set: Updateable<AccountsTable> = { updated_at: now };
      if (patch.name !== undefined) set.name = patch.name;
      if (patch.metadata !== undefined) set.metadata = JSON.stringify(patch.metadata);
      if (patch.ipAllowlists !== undefined) set.ip_allowlists = JSON.stringify(patch.ipAllowlists);
      const found = await writing(async (trx) => {
        const res = await trx.updateTable("accounts").set(set).where("id", "=", id).executeTakeFirst();
        if (Number(res.numUpdatedRows) === 0) return false;
        await trx.insertInto("key_changes").values({ hash: id, at: now }).execute();
        return true;
      });
      return found ? this.getAccount(id) : null;
    },
    async listAccounts(q) {
      let query = db.selectFrom("accounts").selectAll().orderBy("id").limit(q.limit);
      if (q.after !== undefined) query = query.where("id", ">", q.after);
      return (await query.execute()).map(toAccount);
    },

    async insertKeys(records) {
      if (records.length === 0) return;
      try {
        await writing((trx) => insertKeysWith(trx, records));
      } catch (e) {
        duplicate(e, "DUPLICATE_KEY", "A key with the same secret exists already.");
      }
    },
    async getKey(id) {
      const row = await db.selectFrom("keys").selectAll().where("id", "=", id).executeTakeFirst();
      return row ? toKey(row) : null;
    },
    async getKeyByHash(hash) {
      const row = await db.selectFrom("keys").selectAll().where("hash", "=", hash).executeTakeFirst();
      return row ? toKey(row) : null;
    },
    async listKeys(q) {
      let query = db.selectFrom("keys").selectAll().orderBy("id").limit(q.limit);
      if (q.api !== undefined) query = query.where("api", "=", q.api);
      if (q.accountId !== undefined) query = query.where("account_id", "=", q.accountId);
      if (q.applicationId !== undefined) query = query.where("application_id", "=", q.applicationId);
      if (q.after !== undefined) query = query.where("id", ">", q.after);
      return (await query.execute()).map(toKey);
    },
    async updateKey(id, patch, now) {
      const found = await writing((trx) => updateWith(trx, id, patch, now));
      return found ? this.getKey(id) : null;
    },
    async rotateKey(oldId, patch, successor, now) {
      try {
        const found = await writing(async (trx) => {
          if (!(await updateWith(trx, oldId, patch, now))) return false;
          await insertKeysWith(trx, [successor]);
          return true;
        });
        return found ? this.getKey(oldId) : null;
      } catch (e) {
        return duplicate(e, "DUPLICATE_KEY", "A key with the same secret exists already.");
      }
    },
    async hasHashAlgorithm(algorithm) {
      const row = await db.selectFrom("keys").select("id").where("hash_algorithm", "=", algorithm).limit(1).executeTakeFirst();
      return row !== undefined;
    },
    async recordUsage(deltas) {
      if (deltas.length > 0) await hooks.recordUsage(deltas);
    },

    async keyChangesSince(cursor, limit) {
      const bounds = await db.selectFrom("key_changes").select((eb) => [eb.fn.min("seq").as("min"), eb.fn.max("seq").as("max")]).executeTakeFirstOrThrow();
      const max = bounds.max === null ? 0 : Number(bounds.max);
      if (cursor === null) return { cursor: max, hashes: [], complete: true };
      const min = bounds.min === null ? max + 1 : Number(bounds.min);
      if (cursor < max && min > cursor + 1) return { cursor: max, hashes: [], complete: false };
      const rows = await db.selectFrom("key_changes").select(["seq", "hash"]).where("seq", ">", cursor).orderBy("seq").limit(limit).execute();
      return { cursor: rows.length ? Number(rows[rows.length - 1]!.seq) : cursor, hashes: rows.map((r) => r.hash), complete: true };
    },
    async pruneKeyChanges(before) {
      // The newest record is always kept: max(seq) is the feed's position, and were it to
      // vanish, the position would fall back to 0 and a cursor before the pruned records
      // would no longer be reported incomplete.
      await db.deleteFrom("key_changes")
        .where("at", "<", before)
        .where("seq", "<", (eb) => eb.selectFrom("key_changes").select((e) => e.fn.max("seq").as("max")))
        .execute();
    },
    async createApplication(a) {
      try {
        await db.insertInto("applications").values({
          id: a.id, account_id: a.accountId, api: a.api, name: a.name, integration_type: a.integrationType,
          features: JSON.stringify(a.features), client_id: a.clientId, metadata: JSON.stringify(a.metadata),
          created_at: a.createdAt, updated_at: a.updatedAt,
        }).execute();
      } catch (e) {
        duplicate(e, "CLIENT_ID_TAKEN", "An application with this Client ID exists already.");
      }
    },
    async getApplication(id) {
      const row = await db.selectFrom("applications").selectAll().where("id", "=", id).executeTakeFirst();
      return row ? toApplication(row) : null;
    },
    async getApplicationByClientId(clientId) {
      const row = await db.selectFrom("applications").selectAll().where("client_id", "=", clientId).executeTakeFirst();
      return row ? toApplication(row) : null;
    },
    async listApplications(q) {
      let query = db.selectFrom("applications").selectAll().orderBy("id").limit(q.limit);
      if (q.accountId !== undefined) query = query.where("account_id", "=", q.accountId);
      if (q.api !== undefined) query = query.where("api", "=", q.api);
      if (q.after !== undefined) query = query.where("id", ">", q.after);
      return (await query.execute()).map(toApplication);
    },
    async updateApplication(id, patch, now) {
      const set: Updateable<ApplicationsTable> = { updated_at: now };
      if (patch.name !== undefined) set.name = patch.name;
      if (patch.integrationType !== undefined) set.integration_type = patch.integrationType;
      if (patch.features !== undefined) set.features = JSON.stringify(patch.features);
      if (patch.metadata !== undefined) set.metadata = JSON.stringify(patch.metadata);
      const res = await db.updateTable("applications").set(set).where("id", "=", id).executeTakeFirst();
      return Number(res.numUpdatedRows) === 0 ? null : this.getApplication(id);
    },
    async getSetting(name) {
      const row = await db.selectFrom("settings").select("value").where("name", "=", name).executeTakeFirst();
      return row?.value ?? null;
    },
    async setSetting(name, value) {
      await db.insertInto("settings").values({ name, value })
        .onConflict((oc) => oc.column("name").doUpdateSet({ value }))
        .execute();
    },
    async compareAndSetSetting(name, expected, value) {
      if (expected === null) {
        const res = await db.insertInto("settings").values({ name, value }).onConflict((oc) => oc.column("name").doNothing()).executeTakeFirst();
        return Number(res.numInsertedOrUpdatedRows ?? 0) > 0;
      }
      const res = await db.updateTable("settings").set({ value }).where("name", "=", name).where("value", "=", expected).executeTakeFirst();
      return Number(res.numUpdatedRows) > 0;
    },
  };

  // Every method turns "cannot reach the database" into one stable 503, so callers can tell an
  // outage from a bug; transactions guarantee nothing was half-written.
  for (const name of Object.keys(store) as (keyof Store)[]) {
    const fn = store[name];
    if (typeof fn !== "function" || name === "close") continue;
    (store as unknown as Record<string, unknown>)[name] = async (...args: unknown[]) => {
      try {
        return await (fn as (...a: unknown[]) => Promise<unknown>).apply(store, args);
      } catch (e) {
        if (!(e instanceof KeygateError) && hooks.isUnavailable(e)) {
          throw new KeygateError("STORE_UNAVAILABLE", `The ${hooks.kind} store is unreachable (${(e as Error).message}); retry shortly.`, 503);
        }
        throw e;
      }
    };
  }
  return store;
}

// ---- Analytics (0006_analytics): usage counters, raw request logs, applied batch ids. ----

/** Rows per statement: under every driver's bound-parameter limit (16 columns × 500). */
const ANALYTICS_CHUNK = 500;
/** The one row of `analytics_rollups`. */
const ROLLUP = "minutes";
/** The advisory lock flushes share and a rollup takes alone, on PostgreSQL ("kg" + "roll"). */
const ROLLUP_LOCK = 0x6b67_726f6c6c;
export const AGGREGATE_KEY = ["period", "bucket_start", "api", "key_id", "code", "metric", "bin"] as const;
const GROUP_COLUMNS = { key: "key_id", application: "application_id", account: "account_id", api: "api" } as const;

/** Primary-key order, so that concurrent flushes of several nodes lock rows in one order and never deadlock. */
const byAggregateKey = (a: AggregateRow, b: AggregateRow): number =>
  cmp(a.period, b.period) || a.bucket_start - b.bucket_start || cmp(a.api, b.api) || cmp(a.key_id, b.key_id) ||
  cmp(a.code, b.code) || cmp(a.metric, b.metric) || a.bin - b.bin;

/**
 * The rows a batch's counters add to, each once (two minutes of one hour add to one hour row:
 * PostgreSQL refuses a statement that updates a row twice), in primary-key order.
 */
function aggregateRows(counters: readonly UsageCounters[], toHoursAndDays: (c: UsageCounters) => boolean): AggregateRow[] {
  const rows = new Map<string, AggregateRow>();
  eachAggregate(counters, (c, period, start, bin, count) => {
    const id = [period, start, c.api, c.keyId ?? "", c.code, c.metric, bin].join("\u0000");
    const row = rows.get(id);
    if (row !== undefined) row.count += count;
    else {
      rows.set(id, {
        period, bucket_start: start, api: c.api, key_id: c.keyId ?? "", account_id: c.accountId ?? "", application_id: c.applicationId ?? "",
        environment: c.environment ?? "", code: c.code, metric: c.metric, bin, count,
      });
    }
  }, toHoursAndDays);
  return [...rows.values()].sort(byAggregateKey);
}
/** Code-unit order, the same on every node whatever its locale. */
export const cmp = (a: string, b: string): number => (a < b ? -1 : a > b ? 1 : 0);

/** A request log as its row: what both the Kysely insert and SQLite's own statement write. */
export function fromRequestLog(l: RequestLog): Insertable<RequestLogsTable> {
  return {
    id: l.id, at: l.at, api: l.api, key_id: l.keyId, account_id: l.accountId, application_id: l.applicationId,
    environment: l.environment, code: l.code, status: l.status, method: l.method, path: l.path,
    latency_us: l.latencyUs, upstream_us: l.upstreamUs, ip: l.ip, request_id: l.requestId, source: l.source,
  };
}

function toRequestLog(row: Selectable<RequestLogsTable>): RequestLog {
  return {
    id: row.id, at: num(row.at), api: row.api, keyId: row.key_id, accountId: row.account_id, applicationId: row.application_id,
    environment: row.environment, code: row.code, status: row.status, method: row.method, path: row.path,
    latencyUs: num(row.latency_us), upstreamUs: numOrNull(row.upstream_us), ip: row.ip, requestId: row.request_id, source: row.source,
  };
}

/**
 * Minutes are rolled up into their hours and days once this much has passed since they ended:
 * by then a minute's events have been flushed (a flush a second; a slow request ends a little
 * after the minute it was verified in), and the few that come later are added to their hours
 * and days as they come.
 */
const ROLLUP_LAG_MS = 2 * PERIOD_MS.minute;
/**
 * Minute rows rolled up per transaction: with 10,000 keys in use, a minute has some 300,000
 * (a few dozen latency bins per key), which rolled up in one statement per period held SQLite's
 * connection and the event loop for 2-3 s (scratch harness); a chunk takes some 50 ms.
 */
const ROLLUP_CHUNK_ROWS = 5000;
/** Chunks rolled up after one flush, each in a transaction of its own, the event loop let through between. */
const ROLLUP_CHUNKS_PER_FLUSH = 4;

/** Every minute row before this, in the primary key's order (minute, api, key), is in its hour and day. */
interface RollupPosition { minute: number; api: string; key: string }

const isRolledUp = (c: UsageCounters, p: RollupPosition): boolean => {
  if (c.minute !== p.minute) return c.minute < p.minute;
  const key = c.keyId ?? "";
  return c.api < p.api || (c.api === p.api && key < p.key);
};

/**
 * The analytics half of the SQL store; the same statements serve SQLite and PostgreSQL.
 *
 * A flush adds to minute rows; hour and day rows are rolled up from minute rows in SQL once
 * their minute has passed (`rollUp`), and `analytics_rollups` says how far. With many keys in
 * use, a flush adds to a few rows per key (one per latency bin hit), and adding each to its
 * hour and day too tripled the rows written every second (SQLite: some 3-5 µs per row, on the
 * event loop); rolled up, an hour row is written once per minute with the bins of the whole
 * minute. Minute rows not rolled up yet are read by hour and day queries (`queryUsage`), so a
 * query sees every count flushed. Counts for minute rows already rolled up (events recorded
 * late, a batch retried after an outage) are added to their hours and days directly. On
 * PostgreSQL, flushes read the position under a shared advisory lock and a rollup takes it
 * exclusively, so no flush writes a minute row while it is being rolled up.
 */
function sqlAnalytics(db: Kysely<KeygateDatabase>, hooks: SqlDialectHooks): Pick<Store, "recordAnalytics" | "queryUsage" | "listRequestLogs" | "getRequestLog" | "pruneAnalytics"> {
  const insertLogs = hooks.insertRequestLogs ?? (async (logs: RequestLog[]): Promise<void> => {
    for (let i = 0; i < logs.length; i += ANALYTICS_CHUNK) {
      await db.insertInto("request_logs").values(logs.slice(i, i + ANALYTICS_CHUNK).map(fromRequestLog))
        .onConflict((oc) => oc.column("id").doNothing()).execute();
    }
  });
  /** Where the rollup stood when last read: a flush that finds it current starts no transaction. */
  let known: RollupPosition = { minute: -Infinity, api: "", key: "" };
  /** The position as a row value, for statements. */
  const position = sql`(select through, through_api, through_key from analytics_rollups where name = ${ROLLUP})`;
  const positionMinute = db.selectFrom("analytics_rollups").select("through").where("name", "=", ROLLUP);
  const readPosition = async (trx: Kysely<KeygateDatabase>, lock: "shared" | "exclusive"): Promise<RollupPosition> => {
    // PostgreSQL: a transaction-level advisory lock, shared by flushes and exclusive for a
    // rollup, rather than FOR SHARE / FOR UPDATE on the row: a row's share locks are granted
    // ahead of a waiting FOR UPDATE, so nodes whose flushes overlap could hold a rollup off
    // for good, where the lock manager queues a later shared request behind a waiting
    // exclusive one. SQLite runs one transaction at a time anyway.
    if (hooks.kind === "postgres") {
      await (lock === "shared" ? sql`select pg_advisory_xact_lock_shared(${ROLLUP_LOCK})` : sql`select pg_advisory_xact_lock(${ROLLUP_LOCK})`).execute(trx);
    }
    const row = await trx.selectFrom("analytics_rollups").select(["through", "through_api", "through_key"]).where("name", "=", ROLLUP).executeTakeFirst();
    known = row === undefined ? { minute: 0, api: "", key: "" } : { minute: num(row.through), api: row.through_api, key: row.through_key };
    return known;
  };

  /**
   * Rolls up the next chunk of minute rows, in primary-key order, if they are of a minute
   * before `target`: up to ROLLUP_CHUNK_ROWS rows of one minute, whole keys at a time (a key
   * with more rows than that goes in a chunk of its own). Two statements, one per period,
   * each adding the chunk's rows summed per hour or day to what is there. True when every
   * minute before `target` is rolled up.
   */
  const rollUpChunk = async (target: number): Promise<boolean> => {
    if (target <= known.minute) return true;
    const moved = await db.transaction().execute(async (trx): Promise<RollupPosition | null> => {
      const at = await readPosition(trx, "exclusive");
      if (target <= at.minute) return null;
      const first = await trx.selectFrom("usage_aggregates").select(["bucket_start", "api", "key_id"])
        .where("period", "=", "minute").where("bucket_start", "<", target)
        .where(sql<boolean>`(bucket_start, api, key_id) >= (${at.minute}, ${at.api}, ${at.key})`)
        .orderBy("bucket_start").orderBy("api").orderBy("key_id").limit(1).executeTakeFirst();
      let next: RollupPosition;
      if (first === undefined) next = { minute: target, api: "", key: "" };
      else {
        const minute = num(first.bucket_start);
        const inMinute = trx.selectFrom("usage_aggregates").select(["api", "key_id"]).where("period", "=", "minute").where("bucket_start", "=", minute)
          .orderBy("api").orderBy("key_id").orderBy("code").orderBy("metric").orderBy("bin").limit(1);
        let end = await inMinute.where(sql<boolean>`(api, key_id) >= (${first.api}, ${first.key_id})`).offset(ROLLUP_CHUNK_ROWS).executeTakeFirst();
        if (end !== undefined && end.api === first.api && end.key_id === first.key_id) {
          end = await inMinute.where(sql<boolean>`(api, key_id) > (${first.api}, ${first.key_id})`).executeTakeFirst();
        }
        const upTo = end === undefined ? sql`` : sql`AND (api, key_id) < (${end.api}, ${end.key_id})`;
        for (const period of ["hour", "day"] as const) {
          // The size as a literal: PostgreSQL matches the GROUP BY expression to the selected one only if they are written alike.
          const bucket = sql<number>`bucket_start - (bucket_start % ${sql.lit(PERIOD_MS[period])})`;
          await sql`
            INSERT INTO usage_aggregates (period, bucket_start, api, key_id, account_id, application_id, environment, code, metric, bin, count)
            SELECT ${period}, ${bucket}, api, key_id, MIN(account_id), MIN(application_id), MIN(environment), code, metric, bin, SUM(count)
            FROM usage_aggregates
            WHERE period = 'minute' AND bucket_start = ${minute} AND (api, key_id) >= (${first.api}, ${first.key_id}) ${upTo}
            GROUP BY ${bucket}, api, key_id, code, metric, bin
            ON CONFLICT (${sql.join(AGGREGATE_KEY.map((c) => sql.ref(c)))}) DO UPDATE SET count = usage_aggregates.count + excluded.count`.execute(trx);
        }
        next = end === undefined ? { minute: minute + PERIOD_MS.minute, api: "", key: "" } : { minute, api: end.api, key: end.key_id };
      }
      const row = { through: next.minute, through_api: next.api, through_key: next.key };
      await trx.insertInto("analytics_rollups").values({ name: ROLLUP, ...row }).onConflict((oc) => oc.column("name").doUpdateSet(row)).execute();
      return next;
    });
    // Only once committed: a failed commit leaves the position where it was.
    if (moved !== null) known = moved;
    return known.minute >= target;
  };
  /** Up to `chunks` chunks, the event loop let through between two. */
  const rollUp = async (target: number, chunks: number): Promise<boolean> => {
    for (let i = 0; i < chunks; i++) {
      if (i > 0) await nextTurn();
      if (await rollUpChunk(target)) return true;
    }
    return false;
  };

  return {
    async recordAnalytics(batch: AnalyticsBatch) {
      // Counters and the batch id commit together: a batch whose commit was not acknowledged
      // is retried with the same id and then skipped, so no count is ever added twice.
      const fresh = await db.transaction().execute(async (trx) => {
        const claimed = await trx.insertInto("analytics_batches").values({ id: batch.id, at: batch.at })
          .onConflict((oc) => oc.column("id").doNothing()).executeTakeFirst();
        if (Number(claimed.numInsertedOrUpdatedRows ?? 0) === 0) return false;
        const rolled = await readPosition(trx, "shared");
        const toHoursAndDays = (c: UsageCounters): boolean => isRolledUp(c, rolled);
        if (hooks.upsertAggregates) {
          hooks.upsertAggregates(batch.counters, toHoursAndDays);
          return true;
        }
        const rows = aggregateRows(batch.counters, toHoursAndDays);
        for (let i = 0; i < rows.length; i += ANALYTICS_CHUNK) {
          await trx.insertInto("usage_aggregates").values(rows.slice(i, i + ANALYTICS_CHUNK))
            .onConflict((oc) => oc.columns([...AGGREGATE_KEY]).doUpdateSet((eb) => ({ count: eb("usage_aggregates.count", "+", eb.ref("excluded.count")) })))
            .execute();
        }
        return true;
      });
      // Logs outside that transaction, so a large batch does not hold the (SQLite: only) connection
      // for long; their ids make a retry insert each one once.
      await insertLogs(batch.logs);
      // A failure here fails the call: the batch is retried (skipped by its id) and the rollup with it.
      await rollUp(bucketOf("minute", batch.at) - ROLLUP_LAG_MS, ROLLUP_CHUNKS_PER_FLUSH);
      return fresh;
    },
    async queryUsage(q) {
      const groupColumn = q.groupBy === null ? null : GROUP_COLUMNS[q.groupBy];
      // Hours and days: their rows, and the minute rows not rolled up into them yet, each
      // counted in the bucket it falls in (a row of the period itself is its own bucket).
      const size = PERIOD_MS[q.period];
      const bucket = sql<number>`bucket_start - (bucket_start % ${sql.lit(size)})`;
      // Bounds rounded up to whole buckets: a bucket of the period starts in [from, to) exactly
      // when it starts in [lo, hi), and so do the minutes in it.
      const lo = Math.ceil(q.from / size) * size;
      const hi = Math.ceil(q.to / size) * size;
      let query = db.selectFrom("usage_aggregates")
        .select((eb) => [
          bucket.as("bucket"), "code", "metric", "bin", eb.fn.sum<number | string>("count").as("total"),
          (groupColumn === null ? sql<string>`''` : sql<string>`${sql.ref(groupColumn)}`).as("grp"),
        ])
        .where((eb) => (q.period === "minute" ? eb("period", "=", "minute") : eb.or([
          eb("period", "=", q.period),
          // The plain bound lets the index skip the minutes rolled up; the row value then drops the keys rolled up in the position's minute.
          eb.and([eb("period", "=", "minute"), eb("bucket_start", ">=", positionMinute), sql<boolean>`(bucket_start, api, key_id) >= ${position}`]),
        ])))
        .where("bucket_start", ">=", lo).where("bucket_start", "<", hi);
      if (q.api !== undefined) query = query.where("api", "=", q.api);
      if (q.keyId !== undefined) query = query.where("key_id", "=", q.keyId);
      if (q.accountId !== undefined) query = query.where("account_id", "=", q.accountId);
      if (q.applicationId !== undefined) query = query.where("application_id", "=", q.applicationId);
      if (q.environment !== undefined) query = query.where("environment", "=", q.environment);
      if (q.code !== undefined) query = query.where("code", "=", q.code);
      const grouped = groupColumn === null
        ? query.groupBy([bucket, "code", "metric", "bin"]).orderBy("bucket").orderBy("code").orderBy("metric").orderBy("bin")
        : query.groupBy([bucket, groupColumn, "code", "metric", "bin"]).orderBy("bucket").orderBy(groupColumn).orderBy("code").orderBy("metric").orderBy("bin");
      const rows = await grouped.limit(q.limit).execute();
      return rows.map((r): UsageQueryRow => ({
        bucketStart: num(r.bucket), group: r.grp === "" ? null : r.grp, code: r.code,
        metric: r.metric as UsageQueryRow["metric"], bin: Number(r.bin), count: num(r.total),
      }));
    },
    async listRequestLogs(q) {
      let query = db.selectFrom("request_logs").selectAll().orderBy("id", "desc").limit(q.limit);
      if (q.api !== undefined) query = query.where("api", "=", q.api);
      if (q.keyId !== undefined) query = query.where("key_id", "=", q.keyId);
      if (q.accountId !== undefined) query = query.where("account_id", "=", q.accountId);
      if (q.applicationId !== undefined) query = query.where("application_id", "=", q.applicationId);
      if (q.environment !== undefined) query = query.where("environment", "=", q.environment);
      if (q.code !== undefined) query = query.where("code", "=", q.code);
      if (q.status !== undefined) query = query.where("status", "=", q.status);
      if (q.from !== undefined) query = query.where("at", ">=", q.from);
      if (q.to !== undefined) query = query.where("at", "<", q.to);
      if (q.before !== undefined) query = query.where("id", "<", q.before);
      return (await query.execute()).map(toRequestLog);
    },
    async getRequestLog(id) {
      const row = await db.selectFrom("request_logs").selectAll().where("id", "=", id).executeTakeFirst();
      return row ? toRequestLog(row) : null;
    },
    async pruneAnalytics(r) {
      await db.deleteFrom("request_logs").where("at", "<", r.logsBefore).execute();
      // Minute rows go once they are in their hours and days: rolled up first if they are not yet.
      for (let done = false; !done;) done = await rollUp(r.minutesBefore, 100);
      await db.deleteFrom("usage_aggregates").where("period", "=", "minute").where("bucket_start", "<", r.minutesBefore)
        .where(sql<boolean>`(bucket_start, api, key_id) < ${position}`).execute();
      await db.deleteFrom("usage_aggregates").where("period", "=", "hour").where("bucket_start", "<", r.hoursBefore).execute();
      if (r.daysBefore !== null) await db.deleteFrom("usage_aggregates").where("period", "=", "day").where("bucket_start", "<", r.daysBefore).execute();
      await db.deleteFrom("analytics_batches").where("at", "<", r.batchesBefore).execute();
    },
  };
}

// ---- The customer portal (0007_portal): users and sessions. ----

type PortalMethods = "createPortalUser" | "getPortalUser" | "getPortalUserByEmail" | "listPortalUsers" | "updatePortalUser" |
  "addPortalSignInFailure" | "createPortalSession" | "getPortalSession" | "deletePortalSession" | "deletePortalSessions" | "prunePortalSessions";

function toPortalUser(row: Selectable<PortalUsersTable>): PortalUser {
  return {
    id: row.id, email: row.email, name: row.name, accountId: row.account_id, operator: Boolean(row.operator),
    passwordHash: row.password_hash, failedSignIns: Number(row.failed_sign_ins), lockedUntil: numOrNull(row.locked_until),
    passwordChangedAt: num(row.password_changed_at), lastSignInAt: numOrNull(row.last_sign_in_at),
    createdAt: num(row.created_at), updatedAt: num(row.updated_at),
  };
}

function toPortalSession(row: Selectable<PortalSessionsTable>): PortalSession {
  return {
    idHash: row.id_hash, userId: row.user_id, csrfToken: row.csrf_token, createdAt: num(row.created_at),
    expiresAt: num(row.expires_at), ip: row.ip, userAgent: row.user_agent,
  };
}

/** The portal half of the SQL store; the same statements serve SQLite and PostgreSQL. */
function sqlPortal(db: Kysely<KeygateDatabase>, hooks: SqlDialectHooks): Pick<Store, PortalMethods> {
  const getUser = async (id: string): Promise<PortalUser | null> => {
    const row = await db.selectFrom("portal_users").selectAll().where("id", "=", id).executeTakeFirst();
    return row ? toPortalUser(row) : null;
  };
  return {
    async createPortalUser(u) {
      try {
        await db.insertInto("portal_users").values({
          id: u.id, email: u.email, email_lower: u.email.toLowerCase(), name: u.name, account_id: u.accountId,
          operator: u.operator ? 1 : 0, password_hash: u.passwordHash, failed_sign_ins: u.failedSignIns, locked_until: u.lockedUntil,
          password_changed_at: u.passwordChangedAt, last_sign_in_at: u.lastSignInAt, created_at: u.createdAt, updated_at: u.updatedAt,
        }).execute();
      } catch (e) {
        if (hooks.isUniqueViolation(e)) throw new KeygateError("EMAIL_TAKEN", `A portal user with email ${u.email} exists already.`, 409);
        throw e;
      }
    },
    getPortalUser: getUser,
    async getPortalUserByEmail(email) {
      const row = await db.selectFrom("portal_users").selectAll().where("email_lower", "=", email.toLowerCase()).executeTakeFirst();
      return row ? toPortalUser(row) : null;
    },
    async listPortalUsers(q) {
      let query = db.selectFrom("portal_users").selectAll().orderBy("id").limit(q.limit);
      if (q.accountId !== undefined) query = query.where("account_id", "=", q.accountId);
      if (q.after !== undefined) query = query.where("id", ">", q.after);
      return (await query.execute()).map(toPortalUser);
    },
    async updatePortalUser(id, p, now) {
      const set: Updateable<PortalUsersTable> = { updated_at: now };
      if (p.name !== undefined) set.name = p.name;
      if (p.accountId !== undefined) set.account_id = p.accountId;
      if (p.operator !== undefined) set.operator = p.operator ? 1 : 0;
      if (p.passwordHash !== undefined) set.password_hash = p.passwordHash;
      if (p.passwordChangedAt !== undefined) set.password_changed_at = p.passwordChangedAt;
      if (p.failedSignIns !== undefined) set.failed_sign_ins = p.failedSignIns;
      if (p.lockedUntil !== undefined) set.locked_until = p.lockedUntil;
      if (p.lastSignInAt !== undefined) set.last_sign_in_at = p.lastSignInAt;
      const res = await db.updateTable("portal_users").set(set).where("id", "=", id).executeTakeFirst();
      return Number(res.numUpdatedRows) === 0 ? null : getUser(id);
    },
    async addPortalSignInFailure(id, now) {
      // One statement, so concurrent wrong guesses are all counted (no read-modify-write race).
      const row = await db.updateTable("portal_users")
        .set({ failed_sign_ins: sql<number>`failed_sign_ins + 1`, updated_at: now })
        .where("id", "=", id).returning("failed_sign_ins").executeTakeFirst();
      return row ? Number(row.failed_sign_ins) : null;
    },
    async createPortalSession(s) {
      await db.insertInto("portal_sessions").values({
        id_hash: s.idHash, user_id: s.userId, csrf_token: s.csrfToken, created_at: s.createdAt, expires_at: s.expiresAt,
        ip: s.ip, user_agent: s.userAgent,
      }).execute();
    },
    async getPortalSession(idHash) {
      const row = await db.selectFrom("portal_sessions").selectAll().where("id_hash", "=", idHash).executeTakeFirst();
      return row ? toPortalSession(row) : null;
    },
    async deletePortalSession(idHash) {
      await db.deleteFrom("portal_sessions").where("id_hash", "=", idHash).execute();
    },
    async deletePortalSessions(userId, exceptIdHash) {
      let query = db.deleteFrom("portal_sessions").where("user_id", "=", userId);
      if (exceptIdHash !== undefined) query = query.where("id_hash", "!=", exceptIdHash);
      const res = await query.executeTakeFirst();
      return Number(res.numDeletedRows);
    },
    async prunePortalSessions(before) {
      await db.deleteFrom("portal_sessions").where("expires_at", "<", before).execute();
    },
  };
}
