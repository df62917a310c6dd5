import type { RateLimitConfig } from "../config/schema.js";
import type { HashAlgorithm } from "../keys/hash.js";

/** One of the operator's customers. Every key belongs to exactly one account. */
export interface Account {
  id: string;
  name: string;
  email: string;
  metadata: Record<string, unknown>;
  /** One IP allowlist per environment, as the top-up seed's dashboard has; empty allows all. */
  ipAllowlists: Record<string, string[]>;
  createdAt: number;
  updatedAt: number;
}

/** The fields of an account that change after creation. */
export type AccountPatch = Partial<Pick<Account, "name" | "metadata" | "ipAllowlists">>;

/**
 * An account's application (the payments seed): a named integration whose features grant
 * scopes to its keys, identified to token endpoints by a non-secret Client ID.
 */
export interface Application {
  id: string;
  accountId: string;
  /** The API whose `features` this application picks from; its keys belong to this API. */
  api: string;
  name: string;
  /** What the customer integrates with, e.g. `api` (the seed's "Integration Type"). */
  integrationType: string;
  /** Names of the API's `features`; each grants its scopes to the application's keys. */
  features: string[];
  /** Not a secret: shown in the portal and sent with the API key to token endpoints. */
  clientId: string;
  metadata: Record<string, unknown>;
  createdAt: number;
  updatedAt: number;
}

/** The fields of an application that change after creation. */
export type ApplicationPatch = Partial<Pick<Application, "name" | "integrationType" | "features" | "metadata">>;

export interface ApplicationListQuery {
  accountId?: string | undefined;
  api?: string | undefined;
  after?: string | undefined;
  limit: number;
}

/**
 * A stored key. Holds the hash of the secret, never the secret. Times are epoch milliseconds.
 */
export interface KeyRecord {
  id: string;
  api: string;
  accountId: string;
  applicationId: string | null;
  name: string | null;
  environment: string;
  hash: string;
  hashAlgorithm: HashAlgorithm;
  /** The non-secret head of the key shown in listings, e.g. `ce_live_a1B2`. Null for keys imported as hashes. */
  start: string | null;
  scopes: string[];
  ipAllowlist: string[];
  expiresAt: number | null;
  rateLimit: RateLimitConfig | null;
  enabled: boolean;
  revokedAt: number | null;
  /** Set on the old key when it is rotated; it keeps working until `graceEndsAt`. */
  rotatedAt: number | null;
  graceEndsAt: number | null;
  replacedBy: string | null;
  metadata: Record<string, unknown>;
  source: "generated" | "imported";
  createdAt: number;
  updatedAt: number;
  lastUsedAt: number | null;
  usageCount: number;
}

/** The fields of a key that change after creation. */
export type KeyPatch = Partial<Pick<KeyRecord,
  "name" | "scopes" | "ipAllowlist" | "expiresAt" | "rateLimit" | "enabled" | "metadata" |
  "revokedAt" | "rotatedAt" | "graceEndsAt" | "replacedBy">>;

export interface KeyListQuery {
  api?: string | undefined;
  accountId?: string | undefined;
  applicationId?: string | undefined;
  /** Return keys with an id greater than this one (ids sort by creation time). */
  after?: string | undefined;
  limit: number;
}

export interface AccountListQuery {
  after?: string | undefined;
  limit: number;
}

/** Batched usage: how many verifications a key had since the last flush, and the latest one. */
export interface UsageDelta {
  keyId: string;
  count: number;
  lastUsedAt: number;
}

export interface KeyChanges {
  cursor: number;
  hashes: string[];
  complete: boolean;
}

/**
 * The storage port. The engine and the HTTP layer only ever see this interface; each adapter
 * (memory, SQLite, PostgreSQL) passes the same conformance suite in test/store/.
 * Infrastructure failures throw; a missing row is `null`.
 */
export interface Store {
  readonly kind: string;
  /** Creates or upgrades the schema. Safe to call on every start. */
  migrate(): Promise<void>;
  close(): Promise<void>;

  /** Throws KeygateError `EMAIL_TAKEN` when another account has the email. */
  createAccount(account: Account): Promise<void>;
  getAccount(id: string): Promise<Account | null>;
  getAccountByEmail(email: string): Promise<Account | null>;
  listAccounts(query: AccountListQuery): Promise<Account[]>;
  /** Also records the account id in the change feed, so every node drops its cached rules. */
  updateAccount(id: string, patch: AccountPatch, now: number): Promise<Account | null>;

  /** Inserts all or none. Throws KeygateError `DUPLICATE_KEY` when a hash already exists. */
  insertKeys(records: KeyRecord[]): Promise<void>;
  getKey(id: string): Promise<KeyRecord | null>;
  getKeyByHash(hash: string): Promise<KeyRecord | null>;
  listKeys(query: KeyListQuery): Promise<KeyRecord[]>;
  updateKey(id: string, patch: KeyPatch, now: number): Promise<KeyRecord | null>;
  /** Marks `oldId` rotated and inserts its successor in one transaction. */
  rotateKey(oldId: string, patch: KeyPatch, successor: KeyRecord, now: number): Promise<KeyRecord | null>;
  /** Whether any key was stored with this hash algorithm (imports of plain SHA-256 hashes). */
  hasHashAlgorithm(algorithm: KeyRecord["hashAlgorithm"]): Promise<boolean>;
  recordUsage(deltas: UsageDelta[]): Promise<void>;

  /**
   * Hashes of keys created or changed after `cursor`, oldest first, for invalidating the
   * caches of other processes sharing this store (the CLI, other nodes). A null cursor
   * returns only the current position. `complete` is false when changes after `cursor` were
   * pruned already, and the caller must drop its whole cache.
   */
  keyChangesSince(cursor: number | null, limit: number): Promise<KeyChanges>;
  /** Forgets change records older than `before` (epoch ms). */
  pruneKeyChanges(before: number): Promise<void>;

  /** Throws KeygateError `CLIENT_ID_TAKEN` when the Client ID exists already. */
  createApplication(application: Application): Promise<void>;
  getApplication(id: string): Promise<Application | null>;
  getApplicationByClientId(clientId: string): Promise<Application | null>;
  listApplications(query: ApplicationListQuery): Promise<Application[]>;
  updateApplication(id: string, patch: ApplicationPatch, now: number): Promise<Application | null>;

  getSetting(name: string): Promise<string | null>;
  setSetting(name: string, value: string): Promise<void>;
  /**
   * Writes `value` only if the setting still holds `expected` (null: does not exist yet), in
   * one atomic step; false when another writer got there first. For state several nodes
   * share and change, such as the JWT signing keys.
   */
  compareAndSetSetting(name: string, expected: string | null, value: string): Promise<boolean>;
}
