import type { ColumnType, Generated } from "kysely";

/** Epoch milliseconds. PostgreSQL returns BIGINT as a string, SQLite as a number. */
type Millis = ColumnType<number | string, number, number>;

export interface AccountsTable {
  id: string;
  name: string;
  email: string;
  email_lower: string;
  metadata: string;
  ip_allowlists: ColumnType<string, string | undefined, string>;
  created_at: Millis;
  updated_at: Millis;
}

export interface KeysTable {
  id: string;
  api: string;
  account_id: string;
  application_id: string | null;
  name: string | null;
  environment: string;
  hash: string;
  hash_algorithm: string;
  start: string | null;
  scopes: string;
  ip_allowlist: string;
  expires_at: Millis | null;
  rate_limit: string | null;
  enabled: number;
  revoked_at: Millis | null;
  rotated_at: Millis | null;
  grace_ends_at: Millis | null;
  replaced_by: string | null;
  metadata: string;
  source: string;
  created_at: Millis;
  updated_at: Millis;
  last_used_at: Millis | null;
  usage_count: ColumnType<number | string, number, number>;
}

export interface ApplicationsTable {
  id: string;
  account_id: string;
  api: string;
  name: string;
  integration_type: string;
  features: string;
  client_id: string;
  metadata: string;
  created_at: Millis;
  updated_at: Millis;
}

export interface SettingsTable {
  name: string;
  value: string;
}

export interface KeyChangesTable {
  seq: Generated<number | string>;
  hash: string;
  at: Millis;
}

/**
 * Usage counters (0006_analytics). Absent ids are stored as '' rather than NULL, because they
 * are part of the primary key that upserts add on.
 */
export interface UsageAggregatesTable {
  period: string;
  bucket_start: Millis;
  api: string;
  key_id: string;
  account_id: string;
  application_id: string;
  environment: string;
  code: string;
  metric: string;
  bin: number;
  count: ColumnType<number | string, number, number>;
}

export interface RequestLogsTable {
  id: string;
  at: Millis;
  api: string;
  key_id: string | null;
  account_id: string | null;
  application_id: string | null;
  environment: string | null;
  code: string;
  status: number;
  method: string | null;
  path: string | null;
  latency_us: ColumnType<number | string, number, number>;
  upstream_us: ColumnType<number | string | null, number | null, number | null>;
  ip: string | null;
  request_id: string | null;
  source: string;
}

/** Ids of analytics batches already applied, so a retried batch is not counted twice. */
export interface AnalyticsBatchesTable {
  id: string;
  at: Millis;
}

/**
 * How far minute rows have been rolled up into hours and days (0009_analytics_rollups): one
 * row, `minutes`; every minute row before (through, through_api, through_key) is.
 */
export interface AnalyticsRollupsTable {
  name: string;
  through: Millis;
  through_api: string;
  through_key: string;
}

/** Users of the customer portal (0007_portal). */
export interface PortalUsersTable {
  id: string;
  email: string;
  email_lower: string;
  name: string;
  account_id: string | null;
  operator: number;
  password_hash: string;
  failed_sign_ins: ColumnType<number, number | undefined, number>;
  locked_until: Millis | null;
  password_changed_at: Millis;
  last_sign_in_at: Millis | null;
  created_at: Millis;
  updated_at: Millis;
}

/** Signed-in browsers of the portal, by the SHA-256 of their cookie's secret. */
export interface PortalSessionsTable {
  id_hash: string;
  user_id: string;
  csrf_token: string;
  created_at: Millis;
  expires_at: Millis;
  ip: string | null;
  user_agent: string | null;
}

export interface KeygateDatabase {
  portal_users: PortalUsersTable;
  portal_sessions: PortalSessionsTable;
  usage_aggregates: UsageAggregatesTable;
  request_logs: RequestLogsTable;
  analytics_batches: AnalyticsBatchesTable;
  analytics_rollups: AnalyticsRollupsTable;
  key_changes: KeyChangesTable;
  accounts: AccountsTable;
  keys: KeysTable;
  applications: ApplicationsTable;
  settings: SettingsTable;
  kysely_migration?: { name: Generated<string> };
}
