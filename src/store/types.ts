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

  /**
   * Adds a batch's counters to the stored minute rows and, at once or once their minute has
   * passed, to its hour and day rows (upsert-add, exact across nodes; see `UsageCounters`), and
   * inserts its raw logs. Idempotent by `batch.id`: a batch retried after a failure whose commit
   * may have happened is not counted twice. False when the batch had been applied already.
   */
  recordAnalytics(batch: AnalyticsBatch): Promise<boolean>;
  /** Sums of the aggregate counters per bucket, group, code, metric and bin, in that order; at most `limit` rows. */
  queryUsage(query: UsageQuery): Promise<UsageQueryRow[]>;
  /** Raw request logs matching the filter, newest first (by id), older than the `before` cursor. */
  listRequestLogs(query: RequestLogQuery): Promise<RequestLog[]>;
  getRequestLog(id: string): Promise<RequestLog | null>;
  /** Deletes raw logs, aggregate buckets and batch ids older than the retention allows. */
  pruneAnalytics(retention: AnalyticsRetention): Promise<void>;

  // ---- The customer portal (0007_portal): its users and their sessions. ----
  /** Throws KeygateError `EMAIL_TAKEN` when another portal user has the email (case-insensitive). */
  createPortalUser(user: PortalUser): Promise<void>;
  getPortalUser(id: string): Promise<PortalUser | null>;
  getPortalUserByEmail(email: string): Promise<PortalUser | null>;
  listPortalUsers(query: PortalUserListQuery): Promise<PortalUser[]>;
  updatePortalUser(id: string, patch: PortalUserPatch, now: number): Promise<PortalUser | null>;
  /** Adds one to the user's failed sign-ins in one atomic step and returns the new count; null when no such user. */
  addPortalSignInFailure(id: string, now: number): Promise<number | null>;
  createPortalSession(session: PortalSession): Promise<void>;
  getPortalSession(idHash: string): Promise<PortalSession | null>;
  deletePortalSession(idHash: string): Promise<void>;
  /** Ends every session of a user but `exceptIdHash` (a password change); returns how many ended. */
  deletePortalSessions(userId: string, exceptIdHash?: string | undefined): Promise<number>;
  /** Deletes sessions that expired before `before` (epoch ms). */
  prunePortalSessions(before: number): Promise<void>;
}

/** The length of an aggregate bucket. Buckets are aligned to the epoch, so days are UTC days. */
export type UsagePeriod = "minute" | "hour" | "day";

/** What an aggregate row's latency bin measures: keygate's own time, or the upstream's (gateway). */
export type LatencyMetric = "latency" | "upstream";

/** The dimensions usage can be grouped by. */
export type UsageGroupBy = "key" | "application" | "account" | "api";

/** What a verification is counted by: the API, the key it resolved to (and its owners), the code. */
export interface UsageDimensions {
  api: string;
  keyId: string | null;
  accountId: string | null;
  applicationId: string | null;
  environment: string | null;
  code: string;
}

/**
 * The counts of one minute of one (API, key, outcome `code`, `metric`), as a flush hands them
 * to the store: `bins` holds `[bin, count]` pairs (latency bins, see src/analytics/histogram.ts;
 * a bin at most once). The store adds each count to the row of that minute and to the rows of
 * the hour and the UTC day the minute falls in: at once (the memory store, `eachAggregate` in
 * src/store/aggregates.ts), or, the SQL stores, by rolling the minute up once it has passed
 * (docs/analytics.md), its hours and days read from its minute rows until then. A flush hands
 * over one object per series rather than three rows per bin. Every event adds one to exactly
 * one `latency` count, so a bucket's requests are the sum of its latency rows. Account,
 * application and environment follow from the key; a stored row keeps those of the first
 * counts added to it.
 */
export interface UsageCounters extends UsageDimensions {
  /** Epoch ms, a multiple of 60,000. */
  minute: number;
  metric: LatencyMetric;
  /** `[bin, count, bin, count, …]`, counts ≥ 1. */
  bins: number[];
}

/** One request as the raw log keeps it: everything but the secret. Latencies in microseconds. */
export interface RequestLog extends UsageDimensions {
  /** `log_…`, sortable by time. */
  id: string;
  at: number;
  status: number;
  method: string | null;
  /** Without the query string. */
  path: string | null;
  latencyUs: number;
  upstreamUs: number | null;
  ip: string | null;
  requestId: string | null;
  /** gateway, forward-auth, verify or library. */
  source: string;
}

/** What one flush writes. */
export interface AnalyticsBatch {
  /** Unique per batch and kept on retries: the store applies a batch id once. */
  id: string;
  at: number;
  counters: UsageCounters[];
  logs: RequestLog[];
}

/** Equality filters shared by usage and log queries; each given one must match. */
export interface UsageFilter {
  api?: string | undefined;
  keyId?: string | undefined;
  accountId?: string | undefined;
  applicationId?: string | undefined;
  environment?: string | undefined;
  code?: string | undefined;
}

export interface UsageQuery extends UsageFilter {
  period: UsagePeriod;
  /** Bucket starts from `from` (inclusive) to `to` (exclusive), epoch ms. */
  from: number;
  to: number;
  /** Null: one group over everything that matches. */
  groupBy: UsageGroupBy | null;
  limit: number;
}

export interface UsageQueryRow {
  bucketStart: number;
  /** The group's key id, application id, account id or api; null for "none" or no grouping. */
  group: string | null;
  code: string;
  metric: LatencyMetric;
  bin: number;
  count: number;
}

export interface RequestLogQuery extends UsageFilter {
  /** `at` from (inclusive) and to (exclusive), epoch ms. */
  from?: number | undefined;
  to?: number | undefined;
  status?: number | undefined;
  /** Only logs with a smaller id: the cursor of the previous page. */
  before?: string | undefined;
  limit: number;
}

/** Cut-offs, epoch ms: rows older than these go. `daysBefore` null keeps day buckets forever. */
export interface AnalyticsRetention {
  logsBefore: number;
  minutesBefore: number;
  hoursBefore: number;
  daysBefore: number | null;
  batchesBefore: number;
}

/**
 * A person who signs in to the customer portal: a user of one customer's account, or an
 * operator (the API provider's staff, `accountId` null) who sees every account.
 */
export interface PortalUser {
  /** `usr_…` */
  id: string;
  email: string;
  name: string;
  accountId: string | null;
  operator: boolean;
  /** `scrypt$N$r$p$salt$hash` (src/portal/password.ts); never the password. */
  passwordHash: string;
  /** Wrong passwords since the last successful sign-in or lock. */
  failedSignIns: number;
  /** Sign-in is refused until then (epoch ms). */
  lockedUntil: number | null;
  passwordChangedAt: number;
  lastSignInAt: number | null;
  createdAt: number;
  updatedAt: number;
}

/** The fields of a portal user that change after creation. */
export type PortalUserPatch = Partial<Pick<PortalUser,
  "name" | "accountId" | "operator" | "passwordHash" | "passwordChangedAt" | "failedSignIns" | "lockedUntil" | "lastSignInAt">>;

export interface PortalUserListQuery {
  accountId?: string | undefined;
  after?: string | undefined;
  limit: number;
}

/** A signed-in browser. The cookie holds a random secret; the store only its SHA-256. */
export interface PortalSession {
  /** SHA-256 (hex) of the cookie's secret: a copy of the database opens no session. */
  idHash: string;
  userId: string;
  /** The synchronizer token every state-changing request of this session must carry. */
  csrfToken: string;
  createdAt: number;
  expiresAt: number;
  ip: string | null;
  userAgent: string | null;
}
