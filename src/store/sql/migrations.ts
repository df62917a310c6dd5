import { sql } from "kysely";
import type { Kysely, Migration, MigrationProvider } from "kysely";

/**
 * The schema's history, oldest first. Never edit a migration that has shipped: add one.
 * Written with Kysely's schema builder so the same list serves SQLite and PostgreSQL.
 */
function migrations(dialect: SqlDialectName): Record<string, Migration> {
  return {
  "0001_initial": {
    async up(db: Kysely<any>) {
      await db.schema.createTable("accounts")
        .addColumn("id", "varchar(64)", (c) => c.primaryKey())
        .addColumn("name", "text", (c) => c.notNull())
        .addColumn("email", "text", (c) => c.notNull())
        .addColumn("email_lower", "text", (c) => c.notNull().unique())
        .addColumn("metadata", "text", (c) => c.notNull().defaultTo("{}"))
        .addColumn("created_at", "bigint", (c) => c.notNull())
        .addColumn("updated_at", "bigint", (c) => c.notNull())
        .execute();
      await db.schema.createTable("keys")
        .addColumn("id", "varchar(64)", (c) => c.primaryKey())
        .addColumn("api", "varchar(64)", (c) => c.notNull())
        .addColumn("account_id", "varchar(64)", (c) => c.notNull().references("accounts.id"))
        .addColumn("application_id", "varchar(64)")
        .addColumn("name", "text")
        .addColumn("environment", "varchar(32)", (c) => c.notNull())
        .addColumn("hash", "varchar(128)", (c) => c.notNull().unique())
        .addColumn("hash_algorithm", "varchar(32)", (c) => c.notNull())
        .addColumn("start", "varchar(64)")
        .addColumn("scopes", "text", (c) => c.notNull().defaultTo("[]"))
        .addColumn("ip_allowlist", "text", (c) => c.notNull().defaultTo("[]"))
        .addColumn("expires_at", "bigint")
        .addColumn("rate_limit", "text")
        .addColumn("enabled", "integer", (c) => c.notNull().defaultTo(1))
        .addColumn("revoked_at", "bigint")
        .addColumn("rotated_at", "bigint")
        .addColumn("grace_ends_at", "bigint")
        .addColumn("replaced_by", "varchar(64)")
        .addColumn("metadata", "text", (c) => c.notNull().defaultTo("{}"))
        .addColumn("source", "varchar(16)", (c) => c.notNull())
        .addColumn("created_at", "bigint", (c) => c.notNull())
        .addColumn("updated_at", "bigint", (c) => c.notNull())
        .addColumn("last_used_at", "bigint")
        .addColumn("usage_count", "bigint", (c) => c.notNull().defaultTo(0))
        .execute();
      await db.schema.createIndex("keys_account_idx").on("keys").columns(["account_id", "id"]).execute();
      await db.schema.createIndex("keys_api_idx").on("keys").columns(["api", "id"]).execute();
      await db.schema.createIndex("keys_hash_algorithm_idx").on("keys").column("hash_algorithm").execute();
      await db.schema.createTable("settings")
        .addColumn("name", "varchar(128)", (c) => c.primaryKey())
        .addColumn("value", "text", (c) => c.notNull())
        .execute();
    },
  },
  "0002_key_changes": {
    async up(db: Kysely<any>) {
      await db.schema.createTable("key_changes")
        .addColumn("seq", dialect === "postgres" ? "bigserial" : "integer", (c) => (dialect === "postgres" ? c.primaryKey() : c.primaryKey().autoIncrement()))
        .addColumn("hash", "varchar(128)", (c) => c.notNull())
        .addColumn("at", "bigint", (c) => c.notNull())
        .execute();
      await db.schema.createIndex("key_changes_at_idx").on("key_changes").column("at").execute();
    },
  },
  "0004_account_ip_allowlists": {
    async up(db: Kysely<any>) {
      await db.schema.alterTable("accounts").addColumn("ip_allowlists", "text", (c) => c.notNull().defaultTo("{}")).execute();
    },
  },
  // 0003 was never used: numbers only grow, so a database that ran 0004 never meets an older one.
  "0005_applications": {
    async up(db: Kysely<any>) {
      await db.schema.createTable("applications")
        .addColumn("id", "varchar(64)", (c) => c.primaryKey())
        .addColumn("account_id", "varchar(64)", (c) => c.notNull().references("accounts.id"))
        .addColumn("api", "varchar(64)", (c) => c.notNull())
        .addColumn("name", "text", (c) => c.notNull())
        .addColumn("integration_type", "varchar(64)", (c) => c.notNull())
        .addColumn("features", "text", (c) => c.notNull().defaultTo("[]"))
        .addColumn("client_id", "varchar(128)", (c) => c.notNull().unique())
        .addColumn("metadata", "text", (c) => c.notNull().defaultTo("{}"))
        .addColumn("created_at", "bigint", (c) => c.notNull())
        .addColumn("updated_at", "bigint", (c) => c.notNull())
        .execute();
      await db.schema.createIndex("applications_account_idx").on("applications").columns(["account_id", "id"]).execute();
      await db.schema.createIndex("keys_application_idx").on("keys").columns(["application_id", "id"]).execute();
    },
  },
  "0006_analytics": {
    async up(db: Kysely<any>) {
      await db.schema.createTable("usage_aggregates")
        .addColumn("period", "varchar(8)", (c) => c.notNull())
        .addColumn("bucket_start", "bigint", (c) => c.notNull())
        .addColumn("api", "varchar(64)", (c) => c.notNull())
        .addColumn("key_id", "varchar(64)", (c) => c.notNull())
        .addColumn("account_id", "varchar(64)", (c) => c.notNull())
        .addColumn("application_id", "varchar(64)", (c) => c.notNull())
        .addColumn("environment", "varchar(32)", (c) => c.notNull())
        .addColumn("code", "varchar(64)", (c) => c.notNull())
        .addColumn("metric", "varchar(16)", (c) => c.notNull())
        .addColumn("bin", "integer", (c) => c.notNull())
        .addColumn("count", "bigint", (c) => c.notNull())
        .addPrimaryKeyConstraint("usage_aggregates_pk", ["period", "bucket_start", "api", "key_id", "code", "metric", "bin"])
        .execute();
      await db.schema.createIndex("usage_aggregates_account_idx").on("usage_aggregates").columns(["account_id", "period", "bucket_start"]).execute();
      await db.schema.createIndex("usage_aggregates_key_idx").on("usage_aggregates").columns(["key_id", "period", "bucket_start"]).execute();
      await db.schema.createTable("request_logs")
        .addColumn("id", "varchar(64)", (c) => c.primaryKey())
        .addColumn("at", "bigint", (c) => c.notNull())
        .addColumn("api", "varchar(64)", (c) => c.notNull())
        .addColumn("key_id", "varchar(64)")
        .addColumn("account_id", "varchar(64)")
        .addColumn("application_id", "varchar(64)")
        .addColumn("environment", "varchar(32)")
        .addColumn("code", "varchar(64)", (c) => c.notNull())
        .addColumn("status", "integer", (c) => c.notNull())
        .addColumn("method", "varchar(16)")
        .addColumn("path", "text")
        .addColumn("latency_us", "bigint", (c) => c.notNull())
        .addColumn("upstream_us", "bigint")
        .addColumn("ip", "varchar(64)")
        .addColumn("request_id", "varchar(128)")
        .addColumn("source", "varchar(16)", (c) => c.notNull())
        .execute();
      await db.schema.createIndex("request_logs_at_idx").on("request_logs").column("at").execute();
      await db.schema.createIndex("request_logs_account_idx").on("request_logs").columns(["account_id", "id"]).execute();
      await db.schema.createIndex("request_logs_key_idx").on("request_logs").columns(["key_id", "id"]).execute();
      await db.schema.createTable("analytics_batches")
        .addColumn("id", "varchar(64)", (c) => c.primaryKey())
        .addColumn("at", "bigint", (c) => c.notNull())
        .execute();
      await db.schema.createIndex("analytics_batches_at_idx").on("analytics_batches").column("at").execute();
    },
  },
  "0007_portal": {
    async up(db: Kysely<any>) {
      await db.schema.createTable("portal_users")
        .addColumn("id", "varchar(64)", (c) => c.primaryKey())
        .addColumn("email", "text", (c) => c.notNull())
        .addColumn("email_lower", "varchar(320)", (c) => c.notNull().unique())
        .addColumn("name", "text", (c) => c.notNull())
        .addColumn("account_id", "varchar(64)", (c) => c.references("accounts.id"))
        .addColumn("operator", "integer", (c) => c.notNull().defaultTo(0))
        .addColumn("password_hash", "text", (c) => c.notNull())
        .addColumn("failed_sign_ins", "integer", (c) => c.notNull().defaultTo(0))
        .addColumn("locked_until", "bigint")
        .addColumn("password_changed_at", "bigint", (c) => c.notNull())
        .addColumn("last_sign_in_at", "bigint")
        .addColumn("created_at", "bigint", (c) => c.notNull())
        .addColumn("updated_at", "bigint", (c) => c.notNull())
        .execute();
      await db.schema.createIndex("portal_users_account_idx").on("portal_users").columns(["account_id", "id"]).execute();
      await db.schema.createTable("portal_sessions")
        .addColumn("id_hash", "varchar(64)", (c) => c.primaryKey())
        .addColumn("user_id", "varchar(64)", (c) => c.notNull().references("portal_users.id"))
        .addColumn("csrf_token", "varchar(128)", (c) => c.notNull())
        .addColumn("created_at", "bigint", (c) => c.notNull())
        .addColumn("expires_at", "bigint", (c) => c.notNull())
        .addColumn("ip", "varchar(64)")
        .addColumn("user_agent", "text")
        .execute();
      await db.schema.createIndex("portal_sessions_user_idx").on("portal_sessions").column("user_id").execute();
      await db.schema.createIndex("portal_sessions_expires_idx").on("portal_sessions").column("expires_at").execute();
    },
  },
  "0008_binary_id_order": {
    // Ids start with their creation time in base62, and lists page by id: PostgreSQL must
    // order them by bytes, as SQLite does, not by the database's locale (en_US would put
    // "key_a" before "key_B", out of creation order). SQLite compares bytes already.
    async up(db: Kysely<any>) {
      if (dialect !== "postgres") return;
      for (const table of ["accounts", "keys", "applications", "request_logs", "portal_users"]) {
        await sql`ALTER TABLE ${sql.table(table)} ALTER COLUMN "id" TYPE varchar(64) COLLATE "C"`.execute(db);
      }
    },
  },
  "0009_analytics_rollups": {
    // Hour and day rows are rolled up from minute rows once their minutes have passed, rather
    // than added to by every flush (`rollUp` in store.ts). The one row says how far: every
    // minute row before (through, through_api, through_key), in the primary key's order, is in
    // its hour and day. Minute rows written before this migration were added to their hours
    // and days as they were written: it starts after the latest of them (at 0 on a database
    // with none). Nodes of an earlier version must not write analytics to a migrated
    // database, or the minutes they write would count twice.
    async up(db: Kysely<any>) {
      if (dialect === "postgres") {
        // Rolled up in key order, chunk by chunk, and compared with ids in JavaScript: the
        // columns must sort by bytes, as SQLite's do, not by the database's locale.
        for (const column of ["api", "key_id"]) {
          await sql`ALTER TABLE usage_aggregates ALTER COLUMN ${sql.ref(column)} TYPE varchar(64) COLLATE "C"`.execute(db);
        }
      }
      await db.schema.createTable("analytics_rollups")
        .addColumn("name", "varchar(16)", (c) => c.primaryKey())
        .addColumn("through", "bigint", (c) => c.notNull())
        .addColumn("through_api", "varchar(64)", (c) => c.notNull())
        .addColumn("through_key", "varchar(64)", (c) => c.notNull())
        .execute();
      const latest = await db.selectFrom("usage_aggregates").select((eb) => eb.fn.max("bucket_start").as("max")).where("period", "=", "minute").executeTakeFirst();
      const through = latest?.max === null || latest?.max === undefined ? 0 : Number(latest.max) + 60_000;
      await db.insertInto("analytics_rollups").values({ name: "minutes", through, through_api: "", through_key: "" }).execute();
    },
  },
  };
}

export type SqlDialectName = "sqlite" | "postgres";

export const createMigrationProvider = (dialect: SqlDialectName): MigrationProvider => ({
  getMigrations: async () => migrations(dialect),
});
