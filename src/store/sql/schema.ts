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

export interface KeygateDatabase {
  key_changes: KeyChangesTable;
  accounts: AccountsTable;
  keys: KeysTable;
  applications: ApplicationsTable;
  settings: SettingsTable;
  kysely_migration?: { name: Generated<string> };
}
