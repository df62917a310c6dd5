import type { KeygateConfig, RateLimitConfig } from "./config/schema.js";
import { parseConfig, scopeNames } from "./config/load.js";
import { KeygateError, notFound } from "./lib/errors.js";
import { normalizeCidr } from "./lib/ip.js";
import { systemClock } from "./lib/clock.js";
import type { Clock } from "./lib/clock.js";
import { createKeyCodec } from "./keys/format.js";
import { createKeyHasher, isSha256Hex } from "./keys/hash.js";
import { newId } from "./keys/ids.js";
import { createMemoryLockout, createMemoryRateLimiter } from "./limits/memory/index.js";
import type { Lockout, RateLimiter } from "./limits/types.js";
import { createMemoryStore } from "./store/memory/index.js";
import type { Account, AccountPatch, Application, ApplicationPatch, KeyPatch, KeyRecord, Store } from "./store/types.js";
import { randomString, BASE62 } from "./keys/alphabet.js";
import { createSigningKeys } from "./tokens/signing.js";
import type { SigningAlgorithm, SigningKeyView } from "./tokens/signing.js";
import { createTokenService } from "./tokens/service.js";
import type { IssueTokenInput, IssuedToken, VerifyTokenInput } from "./tokens/service.js";
import { createUsageRecorder } from "./usage/recorder.js";
import { createAnalytics } from "./analytics/index.js";
import type { Analytics, VerifyContext } from "./analytics/index.js";
import { createVerifier } from "./verify/engine.js";
import type { InvalidationBus } from "./cluster/invalidation.js";
import type { KeygateMetrics } from "./ops/metrics.js";
import type { ApiRuntime, Verdict, VerifyRequest } from "./verify/engine.js";

/** How a key stands now, derived from its record and the clock. */
export type KeyStatus = "active" | "disabled" | "expired" | "revoked" | "rotating" | "rotated";

/** A key as the admin API and the SDK show it: everything but the secret. Times are ISO 8601. */
export interface KeyView {
  id: string;
  api: string;
  accountId: string;
  applicationId: string | null;
  name: string | null;
  environment: string;
  start: string | null;
  status: KeyStatus;
  scopes: string[];
  ipAllowlist: string[];
  expiresAt: string | null;
  rateLimit: RateLimitConfig | null;
  enabled: boolean;
  revokedAt: string | null;
  rotatedAt: string | null;
  graceEndsAt: string | null;
  replacedBy: string | null;
  metadata: Record<string, unknown>;
  source: KeyRecord["source"];
  createdAt: string;
  updatedAt: string;
  lastUsedAt: string | null;
  usageCount: number;
}

/** The one response that carries a secret: the key just created, rotated in, or nothing else. */
export interface CreatedKey extends KeyView {
  key: string;
}

export interface AccountView {
  id: string;
  name: string;
  email: string;
  metadata: Record<string, unknown>;
  /** IP allowlist per environment; an environment absent or empty allows every address. */
  ipAllowlists: Record<string, string[]>;
  createdAt: string;
  updatedAt: string;
}

/** An application as the admin API shows it. Its Client ID is not a secret. */
export interface ApplicationView {
  id: string;
  accountId: string;
  api: string;
  name: string;
  integrationType: string;
  features: string[];
  /** The scopes its features grant (the API's `features`); null when the API declares none. */
  scopes: string[] | null;
  clientId: string;
  metadata: Record<string, unknown>;
  createdAt: string;
  updatedAt: string;
}

export interface CreateApplicationInput {
  accountId: string;
  api: string;
  name: string;
  integrationType?: string | undefined;
  features?: string[] | undefined;
  metadata?: Record<string, unknown> | undefined;
}

export interface UpdateApplicationInput {
  name?: string | undefined;
  integrationType?: string | undefined;
  features?: string[] | undefined;
  metadata?: Record<string, unknown> | undefined;
}

export interface CreateKeyInput {
  api: string;
  accountId: string;
  applicationId?: string | null | undefined;
  name?: string | null | undefined;
  environment?: string | undefined;
  scopes?: string[] | undefined;
  ipAllowlist?: string[] | undefined;
  expiresAt?: string | Date | null | undefined;
  rateLimit?: RateLimitConfig | null | undefined;
  metadata?: Record<string, unknown> | undefined;
}

export interface UpdateKeyInput {
  name?: string | null;
  scopes?: string[];
  ipAllowlist?: string[];
  expiresAt?: string | Date | null;
  rateLimit?: RateLimitConfig | null;
  enabled?: boolean;
  metadata?: Record<string, unknown>;
}

/** One key to import: exactly one of `key` (plaintext) or `hash` (its SHA-256, hex). */
export interface ImportKeyInput extends Omit<CreateKeyInput, "api"> {
  key?: string | undefined;
  hash?: string | undefined;
}

export interface Page<T> {
  data: T[];
  /** Pass as `cursor` for the next page; null on the last page. */
  nextCursor: string | null;
}

export interface CreateKeygateOptions {
  /** A validated config, or a plain object that {@link parseConfig} accepts. */
  config: KeygateConfig | Record<string, unknown>;
  /** Defaults to an in-memory store; use `createSqliteStore` for the embedded default. */
  store?: Store;
  limiter?: RateLimiter;
  lockout?: Lockout;
  clock?: Clock;
  /** Prometheus metrics (createMetrics()); the store is instrumented with it. */
  metrics?: KeygateMetrics;
  /** Broadcasts key changes to other nodes at once (e.g. `createRedisInvalidation`). */
  invalidation?: InvalidationBus;
  /** Called when a background task (the usage flush) fails; it will retry on its own. */
  onBackgroundError?: (error: unknown) => void;
}

/**
 * The whole of keygate in-process: key management and verification over the given ports.
 *
 * @example
 * import { createKeygate, createSqliteStore } from "keygate";
 *
 * const keygate = await createKeygate({
 *   config: { apis: [{ id: "payments", keyFormat: { prefix: "pk" } }] },
 *   store: createSqliteStore({ filename: "./data/keygate.db" }),
 * });
 * const account = await keygate.accounts.create({ name: "Acme", email: "dev@acme.test" });
 * const { key } = await keygate.keys.create({ api: "payments", accountId: account.id });
 * const verdict = await keygate.verifyKey({ api: "payments", key });
 * verdict.valid; // true
 */
export interface Keygate {
  readonly config: KeygateConfig;
  readonly store: Store;
  readonly apis: ReadonlyMap<string, ApiRuntime>;
  /** The clock verdicts are computed with (the system clock unless one was given). */
  readonly clock: Clock;
  /** Verifies a key and records a usage event (docs/analytics.md); `context` describes the request. */
  verifyKey(request: VerifyRequest, context?: VerifyContext): Promise<Verdict>;
  /**
   * `verifyKey` without the promise when none is needed: a cached key checked against limits
   * that answer at once (memory) gets its verdict synchronously. Throws, rather than rejects,
   * on bad input. For hot paths that can use a plain value (keygate's own HTTP verify).
   */
  verifyKeyNow(request: VerifyRequest, context?: VerifyContext): Verdict | Promise<Verdict>;
  /** Usage events, aggregates, request logs and the live feed (docs/analytics.md). */
  readonly analytics: Analytics;
  accounts: {
    create(input: { name: string; email: string; metadata?: Record<string, unknown> | undefined; ipAllowlists?: Record<string, string[]> | undefined }): Promise<AccountView>;
    get(id: string): Promise<AccountView>;
    update(id: string, input: { name?: string | undefined; metadata?: Record<string, unknown> | undefined; ipAllowlists?: Record<string, string[]> | undefined }): Promise<AccountView>;
    list(query?: { cursor?: string | undefined; limit?: number | undefined }): Promise<Page<AccountView>>;
  };
  keys: {
    create(input: CreateKeyInput): Promise<CreatedKey>;
    get(id: string): Promise<KeyView>;
    list(query?: { api?: string | undefined; accountId?: string | undefined; cursor?: string | undefined; limit?: number | undefined }): Promise<Page<KeyView>>;
    update(id: string, input: UpdateKeyInput): Promise<KeyView>;
    revoke(id: string): Promise<KeyView>;
    rotate(id: string, input?: { gracePeriodSeconds?: number | undefined }): Promise<{ key: CreatedKey; previous: KeyView }>;
    import(api: string, keys: ImportKeyInput[]): Promise<KeyView[]>;
  };
  /** Accounts' applications (the payments seed): features that grant scopes, a Client ID. */
  applications: {
    create(input: CreateApplicationInput): Promise<ApplicationView>;
    get(id: string): Promise<ApplicationView>;
    list(query?: { accountId?: string | undefined; api?: string | undefined; cursor?: string | undefined; limit?: number | undefined }): Promise<Page<ApplicationView>>;
    /** Changing `features` changes the scopes of the application's keys at once. */
    update(id: string, input: UpdateApplicationInput): Promise<ApplicationView>;
  };
  /** Client ID + API key → short-lived JWT, for APIs with `tokens`. */
  tokens: {
    issue(input: IssueTokenInput): Promise<IssuedToken>;
    /** Verifies a JWT and the current state of the key it was minted from. */
    verify(input: VerifyTokenInput): Promise<Verdict>;
    /** The published public keys (RFC 7517), for `/.well-known/jwks.json`. */
    jwks(): Promise<{ keys: Record<string, unknown>[] }>;
    signingKeys: {
      list(): Promise<SigningKeyView[]>;
      /** A new signing key for `algorithm`; tokens signed by the old one stay valid until they expire. */
      rotate(algorithm?: SigningAlgorithm): Promise<SigningKeyView>;
    };
  };
  /** Writes pending usage counts to the store. */
  flush(): Promise<void>;
  /** Reads the store's change feed now instead of waiting for the next poll. */
  syncChanges(): Promise<void>;
  /** Flushes and closes the store and limiters. */
  close(): Promise<void>;
}

const iso = (ms: number | null): string | null => (ms === null ? null : new Date(ms).toISOString());
const MAX_GRACE_SECONDS = 30 * 86_400;
const MAX_PAGE = 100;

export function keyStatus(r: KeyRecord, now: number): KeyStatus {
  if (r.revokedAt !== null) return "revoked";
  if (r.graceEndsAt !== null) return r.graceEndsAt <= now ? "rotated" : "rotating";
  if (r.expiresAt !== null && r.expiresAt <= now) return "expired";
  if (!r.enabled) return "disabled";
  return "active";
}

export async function createKeygate(options: CreateKeygateOptions): Promise<Keygate> {
  const config = "apis" in options.config && Array.isArray(options.config.apis) && isParsed(options.config)
    ? (options.config as KeygateConfig)
    : parseConfig(options.config);
  const store = options.metrics ? options.metrics.instrumentStore(options.store ?? createMemoryStore()) : options.store ?? createMemoryStore();
  const limiter = options.limiter ?? createMemoryRateLimiter();
  const lockout = options.lockout ?? createMemoryLockout();
  const clock = options.clock ?? systemClock;
  const hasher = createKeyHasher(config.security.hashSecret || undefined);
  const onError = options.onBackgroundError ?? ((e: unknown) => { process.emitWarning(`keygate: background task failed, will retry: ${(e as Error).message}`); });
  await store.migrate();

  const apis = new Map<string, ApiRuntime>();
  for (const api of config.apis) {
    apis.set(api.id, {
      config: api,
      codec: createKeyCodec(api.keyFormat),
      lockout: api.lockout.enabled
        ? { maxAttempts: api.lockout.maxAttempts, windowMs: api.lockout.windowSeconds * 1000, blockMs: api.lockout.blockSeconds * 1000 }
        : null,
      rateLimitFor: (env) => api.environmentRateLimits?.[env] ?? api.rateLimit ?? null,
    });
  }

  const usage = createUsageRecorder(store, config.usage.flushIntervalMs, onError);
  options.metrics?.setUsageQueueDepth(() => usage.size());
  const analytics = createAnalytics({ store, clock, limiter, apis, settings: config.analytics, onError, pendingUsage: (id) => usage.pending(id) });
  // A read the verifier began before a key changed can end after the change's invalidation
  // arrived (from this node, the bus or the feed), and would then cache the old record until
  // the next change-feed poll: a revoked key still valid here for up to changePollMs. Such
  // reads are repeated, so what gets cached is never older than the last invalidation.
  let invalidations = 0;
  const coherent = <A extends unknown[], R>(read: (...args: A) => Promise<R>) => async (...args: A): Promise<R> => {
    for (let attempt = 1; ; attempt++) {
      const seen = invalidations;
      const result = await read(...args);
      if (seen === invalidations || attempt === 3) return result;
    }
  };
  const verifierStore: Store = Object.assign(Object.create(store) as Store, {
    getKeyByHash: coherent(store.getKeyByHash.bind(store)),
    getKey: coherent(store.getKey.bind(store)),
    getAccount: coherent(store.getAccount.bind(store)),
  });
  const verifier = createVerifier({
    apis, store: verifierStore, limiter, lockout, clock, hasher, usage,
    cache: { maxKeys: config.cache.maxKeys, negativeTtlMs: config.cache.negativeTtlSeconds * 1000 },
    observer: options.metrics?.observer,
    // A cached key is trusted while the change feed is being read; once it has failed for
    // longer than maxStaleSeconds (the store is down), verifications need the store again.
    fresh: (now) => config.cache.changePollMs === 0 || now - lastSync <= config.cache.maxStaleSeconds * 1000,
  });
  let lastSync = clock.now();
  const bus = options.invalidation;
  const invalidate = (hash: string): void => { invalidations++; verifier.invalidate(hash); };
  if (bus) await bus.subscribe(invalidate);
  /** Drops changed keys from this node's cache now, and from every other node's through the bus. */
  const changed = async (hashes: string[]): Promise<void> => {
    for (const h of hashes) invalidate(h);
    if (bus) await bus.publish(hashes).catch(onError);
  };
  // Whether plain SHA-256 hashes (imports) may exist while new keys get HMACs; once true, stays.
  let legacyKnown = hasher.algorithm !== "sha256" && await store.hasHashAlgorithm("sha256");
  verifier.setLegacyHashes(legacyKnown);

  // Changes made by other processes on the same store (the CLI, other nodes) reach this
  // node's cache through the store's change feed; this node's own changes invalidate at once.
  let changeCursor = (await store.keyChangesSince(null, 0)).cursor;
  let polling: Promise<void> | null = null;
  const readChanges = async (): Promise<void> => {
    let changes = false;
    for (;;) {
      const batch = await store.keyChangesSince(changeCursor, 1000);
      if (!batch.complete) { invalidations++; verifier.clear(); }
      for (const hash of batch.hashes) invalidate(hash);
      changes ||= !batch.complete || batch.hashes.length > 0;
      changeCursor = batch.cursor;
      if (batch.hashes.length < 1000) break;
    }
    // Another process may have imported the first plain SHA-256 hashes into the shared store.
    if (changes && !legacyKnown && hasher.algorithm !== "sha256" && await store.hasHashAlgorithm("sha256")) {
      legacyKnown = true;
      verifier.setLegacyHashes(true);
    }
    lastSync = clock.now();
  };
  const pollChanges = (): Promise<void> => {
    polling ??= readChanges().finally(() => { polling = null; });
    return polling;
  };
  const timers: NodeJS.Timeout[] = [];
  if (config.cache.changePollMs > 0) {
    timers.push(setInterval(() => { pollChanges().catch(onError); }, config.cache.changePollMs));
    timers.push(setInterval(() => { store.pruneKeyChanges(clock.now() - 86_400_000).catch(onError); }, 3_600_000));
    for (const t of timers) t.unref();
  }

  const tokenApis = config.apis.filter((a) => a.tokens !== undefined);
  const algorithms = [...new Set(tokenApis.map((a) => a.tokens!.algorithm))];
  // A retired signing key stays published until the longest token it signed has expired,
  // plus margin for nodes that have not yet reread the key set (they do every 30 s).
  const signing = tokenApis.length === 0 ? null : await createSigningKeys({
    store, clock, algorithms, secret: config.security.hashSecret || undefined,
    keepMs: Math.max(...tokenApis.map((a) => a.tokens!.ttlSeconds)) * 1000 + 5 * 60_000,
  });
  const tokenService = signing ? createTokenService({ apis, verifier, store, clock, signing }) : null;
  const noTokens = (): never => { throw new KeygateError("TOKENS_NOT_ENABLED", "No API of this deployment has token endpoints; add tokens: to an API's config.", 400); };

  const apiOf = (id: string): ApiRuntime => {
    const api = apis.get(id);
    if (!api) throw new KeygateError("UNKNOWN_API", `No API with id ${JSON.stringify(id)} is configured; known: ${[...apis.keys()].join(", ")}.`);
    return api;
  };

  const view = (r: KeyRecord): KeyView => {
    const pending = usage.pending(r.id);
    const lastUsed = pending ? Math.max(pending.lastUsedAt, r.lastUsedAt ?? 0) : r.lastUsedAt;
    return {
      id: r.id, api: r.api, accountId: r.accountId, applicationId: r.applicationId, name: r.name,
      environment: r.environment, start: r.start, status: keyStatus(r, clock.now()), scopes: r.scopes,
      ipAllowlist: r.ipAllowlist, expiresAt: iso(r.expiresAt), rateLimit: r.rateLimit, enabled: r.enabled,
      revokedAt: iso(r.revokedAt), rotatedAt: iso(r.rotatedAt), graceEndsAt: iso(r.graceEndsAt), replacedBy: r.replacedBy,
      metadata: r.metadata, source: r.source, createdAt: iso(r.createdAt)!, updatedAt: iso(r.updatedAt)!,
      lastUsedAt: iso(lastUsed), usageCount: r.usageCount + (pending?.count ?? 0),
    };
  };

  const accountView = (a: Account): AccountView => ({
    id: a.id, name: a.name, email: a.email, metadata: a.metadata, ipAllowlists: a.ipAllowlists ?? {}, createdAt: iso(a.createdAt)!, updatedAt: iso(a.updatedAt)!,
  });

  const checkScopes = (api: ApiRuntime, scopes: string[], field: string): string[] => {
    const known = scopeNames(api.config);
    if (known.length > 0) {
      const unknown = scopes.filter((s) => !known.includes(s));
      if (unknown.length > 0) {
        throw new KeygateError("UNKNOWN_SCOPE", `${field}: ${unknown.map((s) => JSON.stringify(s)).join(", ")} ${unknown.length > 1 ? "are" : "is"} not a scope of API ${api.config.id}; known: ${known.join(", ")}.`, 400, { field, unknown });
      }
    }
    return [...new Set(scopes)];
  };

  const checkAllowlist = (entries: string[], field: string): string[] => {
    const out: string[] = [];
    for (const [i, e] of entries.entries()) {
      const n = normalizeCidr(e);
      if (!n) throw new KeygateError("INVALID_IP_ALLOWLIST", `${field}[${i}]: ${JSON.stringify(e)} is not an IP address or CIDR range (e.g. 203.0.113.45 or 198.51.100.0/24).`, 400, { field: `${field}[${i}]` });
      if (!out.includes(n)) out.push(n);
    }
    return out;
  };

  const environments = new Set(config.apis.flatMap((a) => a.keyFormat.environments));
  const checkAccountAllowlists = (lists: Record<string, string[]>): Record<string, string[]> => {
    const out: Record<string, string[]> = {};
    for (const [env, list] of Object.entries(lists)) {
      if (!environments.has(env)) {
        throw new KeygateError("UNKNOWN_ENVIRONMENT", `ipAllowlists.${env}: no API has an environment ${JSON.stringify(env)}; known: ${[...environments].join(", ")}.`, 400, { field: `ipAllowlists.${env}` });
      }
      out[env] = checkAllowlist(list, `ipAllowlists.${env}`);
    }
    return out;
  };

  const checkExpiry = (value: string | Date | null | undefined, field: string): number | null => {
    if (value === null || value === undefined) return null;
    const ms = value instanceof Date ? value.getTime() : Date.parse(value);
    if (Number.isNaN(ms)) throw new KeygateError("INVALID_EXPIRES_AT", `${field}: ${JSON.stringify(value)} is not an ISO 8601 date-time.`, 400, { field });
    if (ms <= clock.now()) throw new KeygateError("EXPIRES_AT_IN_PAST", `${field}: ${new Date(ms).toISOString()} is not in the future.`, 400, { field });
    return ms;
  };

  /** The scopes an application's features grant; null when its API declares no features. */
  const grantedScopes = (app: Application): string[] | null => {
    const features = apis.get(app.api)?.config.features;
    if (!features) return null;
    return [...new Set(app.features.flatMap((f) => features[f] ?? []))];
  };

  const applicationView = (a: Application): ApplicationView => ({
    id: a.id, accountId: a.accountId, api: a.api, name: a.name, integrationType: a.integrationType, features: a.features,
    scopes: grantedScopes(a), clientId: a.clientId, metadata: a.metadata, createdAt: iso(a.createdAt)!, updatedAt: iso(a.updatedAt)!,
  });

  const checkFeatures = (api: ApiRuntime, features: string[], field: string): string[] => {
    const known = Object.keys(api.config.features ?? {});
    const unknown = features.filter((f) => !known.includes(f));
    if (unknown.length > 0) {
      throw new KeygateError("UNKNOWN_FEATURE", `${field}: ${unknown.map((f) => JSON.stringify(f)).join(", ")} ${unknown.length > 1 ? "are" : "is"} not a feature of API ${api.config.id}; ${known.length ? `known: ${known.join(", ")}` : "it declares none"}.`, 400, { field, unknown });
    }
    return [...new Set(features)];
  };

  /**
   * Checks that a key may belong to this application (same account and API) and returns the
   * scopes it gets: those asked for, which its features must grant, or all they grant.
   */
  const applicationScopes = async (input: { api: string; accountId: string; applicationId?: string | null | undefined; scopes?: string[] | undefined }, at = ""): Promise<string[] | undefined> => {
    if (input.applicationId === undefined || input.applicationId === null) return input.scopes;
    const app = await store.getApplication(input.applicationId);
    if (!app) throw new KeygateError("UNKNOWN_APPLICATION", `${at}applicationId: no application with id ${JSON.stringify(input.applicationId)}.`, 400, { field: `${at}applicationId` });
    if (app.accountId !== input.accountId || app.api !== input.api) {
      throw new KeygateError("APPLICATION_MISMATCH", `${at}applicationId: application ${app.id} belongs to account ${app.accountId} on API ${app.api}, not to account ${input.accountId} on API ${input.api}.`, 400, { field: `${at}applicationId` });
    }
    const granted = grantedScopes(app);
    if (granted === null) return input.scopes;
    if (input.scopes === undefined) return granted;
    const extra = input.scopes.filter((s) => !granted.includes(s));
    if (extra.length > 0) {
      throw new KeygateError("SCOPE_NOT_GRANTED", `${at}scopes: ${extra.map((s) => JSON.stringify(s)).join(", ")} ${extra.length > 1 ? "are" : "is"} not granted by the features of application ${app.id} (${app.features.join(", ") || "none"}); it grants: ${granted.join(", ") || "nothing"}.`, 400, { field: `${at}scopes`, extra });
    }
    return input.scopes;
  };

  const requireAccount = async (id: string): Promise<void> => {
    if (!(await store.getAccount(id))) throw new KeygateError("UNKNOWN_ACCOUNT", `No account with id ${JSON.stringify(id)}; create it with POST /v1/accounts first.`, 400, { field: "accountId" });
  };

  const buildRecord = (api: ApiRuntime, input: CreateKeyInput, hash: string, hashAlgorithm: KeyRecord["hashAlgorithm"], start: string | null, source: KeyRecord["source"], at = ""): KeyRecord => {
    const environment = input.environment ?? api.config.keyFormat.environments[0]!;
    if (!api.config.keyFormat.environments.includes(environment)) {
      throw new KeygateError("UNKNOWN_ENVIRONMENT", `${at}environment: ${JSON.stringify(environment)} is not an environment of API ${api.config.id}; known: ${api.config.keyFormat.environments.join(", ")}.`, 400);
    }
    const now = clock.now();
    return {
      id: newId("key", now), api: api.config.id, accountId: input.accountId, applicationId: input.applicationId ?? null,
      name: input.name ?? null, environment, hash, hashAlgorithm, start,
      scopes: checkScopes(api, input.scopes ?? api.config.defaultScopes, `${at}scopes`),
      ipAllowlist: checkAllowlist(input.ipAllowlist ?? [], `${at}ipAllowlist`),
      expiresAt: checkExpiry(input.expiresAt, `${at}expiresAt`), rateLimit: input.rateLimit ?? null,
      enabled: true, revokedAt: null, rotatedAt: null, graceEndsAt: null, replacedBy: null,
      metadata: input.metadata ?? {}, source, createdAt: now, updatedAt: now, lastUsedAt: null, usageCount: 0,
    };
  };

  const getRecord = async (id: string): Promise<KeyRecord> => {
    const r = await store.getKey(id);
    if (!r) throw notFound("key", id);
    return r;
  };

  const mutate = async (id: string, patch: KeyPatch): Promise<KeyView> => {
    const before = await getRecord(id);
    const after = await store.updateKey(id, patch, clock.now());
    if (!after) throw notFound("key", id);
    await changed([before.hash]);
    return view(after);
  };

  const pageOf = <T extends { id: string }>(rows: T[], limit: number): Page<T> => ({
    data: rows.slice(0, limit),
    nextCursor: rows.length > limit ? rows[limit - 1]!.id : null,
  });
  const pageLimit = (limit: number | undefined): number => Math.min(Math.max(limit ?? 50, 1), MAX_PAGE);
  // Made once and handed to analytics with each request, rather than a closure per verification.
  const check = (request: VerifyRequest, now: number): Verdict | Promise<Verdict> => verifier.check(request, now);
  const verifyToken = (input: VerifyTokenInput): Promise<Verdict> => (tokenService ?? noTokens()).verify(input);

  return {
    config, store, apis, clock,
    analytics,
    verifyKey: (request, context) => analytics.observe(request, context, check),
    verifyKeyNow: (request, context) => analytics.observeNow(request, context, check),
    accounts: {
      async create(input) {
        const now = clock.now();
        const account: Account = {
          id: newId("acc", now), name: input.name, email: input.email, metadata: input.metadata ?? {},
          ipAllowlists: checkAccountAllowlists(input.ipAllowlists ?? {}), createdAt: now, updatedAt: now,
        };
        await store.createAccount(account);
        return accountView(account);
      },
      async get(id) {
        const a = await store.getAccount(id);
        if (!a) throw notFound("account", id);
        return accountView(a);
      },
      async update(id, input) {
        const patch: AccountPatch = {};
        if (input.name !== undefined) patch.name = input.name;
        if (input.metadata !== undefined) patch.metadata = input.metadata;
        if (input.ipAllowlists !== undefined) {
          const current = await store.getAccount(id);
          if (!current) throw notFound("account", id);
          // Environments not named keep their list; an empty list clears one.
          patch.ipAllowlists = { ...current.ipAllowlists, ...checkAccountAllowlists(input.ipAllowlists) };
          for (const [env, list] of Object.entries(patch.ipAllowlists)) if (list.length === 0) delete patch.ipAllowlists[env];
        }
        const a = await store.updateAccount(id, patch, clock.now());
        if (!a) throw notFound("account", id);
        await changed([id]);
        return accountView(a);
      },
      async list(query = {}) {
        const limit = pageLimit(query.limit);
        const rows = await store.listAccounts({ after: query.cursor, limit: limit + 1 });
        const page = pageOf(rows, limit);
        return { data: page.data.map(accountView), nextCursor: page.nextCursor };
      },
    },
    keys: {
      async create(input) {
        const api = apiOf(input.api);
        await requireAccount(input.accountId);
        const scopes = await applicationScopes(input);
        const environment = input.environment ?? api.config.keyFormat.environments[0]!;
        const probe = buildRecord(api, { ...input, scopes, environment }, "", hasher.algorithm, null, "generated");
        const key = api.codec.generate(environment);
        const record = { ...probe, hash: hasher.hash(key), start: api.codec.start(key) };
        await store.insertKeys([record]);
        await changed([record.hash]);
        return { ...view(record), key };
      },
      async get(id) {
        return view(await getRecord(id));
      },
      async list(query = {}) {
        if (query.api !== undefined) apiOf(query.api);
        const limit = pageLimit(query.limit);
        const rows = await store.listKeys({ api: query.api, accountId: query.accountId, after: query.cursor, limit: limit + 1 });
        const page = pageOf(rows, limit);
        return { data: page.data.map(view), nextCursor: page.nextCursor };
      },
      async update(id, input) {
        const current = await getRecord(id);
        const api = apiOf(current.api);
        const patch: KeyPatch = {};
        if (input.name !== undefined) patch.name = input.name;
        if (input.scopes !== undefined) {
          patch.scopes = checkScopes(api, input.scopes, "scopes");
          await applicationScopes({ ...current, scopes: patch.scopes });
        }
        if (input.ipAllowlist !== undefined) patch.ipAllowlist = checkAllowlist(input.ipAllowlist, "ipAllowlist");
        if (input.expiresAt !== undefined) patch.expiresAt = checkExpiry(input.expiresAt, "expiresAt");
        if (input.rateLimit !== undefined) patch.rateLimit = input.rateLimit;
        if (input.enabled !== undefined) patch.enabled = input.enabled;
        if (input.metadata !== undefined) patch.metadata = input.metadata;
        return mutate(id, patch);
      },
      async revoke(id) {
        const current = await getRecord(id);
        if (current.revokedAt !== null) return view(current);
        return mutate(id, { revokedAt: clock.now() });
      },
      async rotate(id, input = {}) {
        const old = await getRecord(id);
        const now = clock.now();
        const status = keyStatus(old, now);
        if (status === "revoked" || status === "rotated" || status === "rotating" || status === "expired") {
          throw new KeygateError("KEY_NOT_ROTATABLE", `Key ${id} is ${status}; only a key that is not revoked, expired or already rotated can be rotated (its successor would inherit that).`, 409);
        }
        const grace = input.gracePeriodSeconds ?? 0;
        if (!Number.isInteger(grace) || grace < 0 || grace > MAX_GRACE_SECONDS) {
          throw new KeygateError("INVALID_GRACE_PERIOD", `gracePeriodSeconds must be an integer from 0 to ${MAX_GRACE_SECONDS} (30 days).`, 400, { field: "gracePeriodSeconds" });
        }
        const api = apiOf(old.api);
        const key = api.codec.generate(old.environment);
        const successor: KeyRecord = {
          ...old, id: newId("key", now), hash: hasher.hash(key), hashAlgorithm: hasher.algorithm, start: api.codec.start(key),
          source: "generated", createdAt: now, updatedAt: now, lastUsedAt: null, usageCount: 0,
          revokedAt: null, rotatedAt: null, graceEndsAt: null, replacedBy: null,
        };
        const previous = await store.rotateKey(id, { rotatedAt: now, graceEndsAt: now + grace * 1000, replacedBy: successor.id }, successor, now);
        if (!previous) throw notFound("key", id);
        await changed([old.hash, successor.hash]);
        return { key: { ...view(successor), key }, previous: view(previous) };
      },
      async import(apiId, inputs) {
        const api = apiOf(apiId);
        const accounts = new Set<string>();
        const records: KeyRecord[] = [];
        for (const [i, given] of inputs.entries()) {
          const at = `keys[${i}].`;
          let input = given;
          if ((input.key === undefined) === (input.hash === undefined)) {
            throw new KeygateError("INVALID_IMPORT", `${at.slice(0, -1)}: give exactly one of "key" (the secret) or "hash" (its SHA-256 in hex).`, 400, { index: i });
          }
          if (!accounts.has(input.accountId)) {
            if (!(await store.getAccount(input.accountId))) throw new KeygateError("UNKNOWN_ACCOUNT", `${at}accountId: no account with id ${JSON.stringify(input.accountId)}.`, 400, { index: i });
            accounts.add(input.accountId);
          }
          const scopes = await applicationScopes({ ...input, api: apiId }, at);
          if (scopes !== input.scopes) input = { ...input, scopes };
          let record: KeyRecord;
          if (input.key !== undefined) {
            const parsed = api.codec.parse(input.key);
            if (!parsed) {
              // Never echo the secret: say only where it is and what format was expected.
              throw new KeygateError("MALFORMED_KEY", `${at}key: does not match API ${api.config.id}'s key format${api.config.keyFormat.importPattern ? " nor its importPattern" : ""}.`, 400, { index: i });
            }
            if (parsed.environment !== null && input.environment !== undefined && input.environment !== parsed.environment) {
              throw new KeygateError("ENVIRONMENT_MISMATCH", `${at}environment: the key is a ${parsed.environment} key, not ${input.environment}.`, 400, { index: i });
            }
            record = buildRecord(api, { ...input, api: apiId, environment: input.environment ?? parsed.environment ?? undefined }, hasher.hash(input.key), hasher.algorithm, api.codec.start(input.key), "imported", at);
          } else {
            if (!isSha256Hex(input.hash!)) throw new KeygateError("INVALID_HASH", `${at}hash: expected 64 hex characters (a SHA-256 digest).`, 400, { index: i });
            record = buildRecord(api, { ...input, api: apiId }, input.hash!.toLowerCase(), "sha256", null, "imported", at);
          }
          records.push(record);
        }
        await store.insertKeys(records);
        await changed(records.map((r) => r.hash));
        if (records.some((r) => r.hashAlgorithm === "sha256") && hasher.algorithm !== "sha256") {
          legacyKnown = true;
          verifier.setLegacyHashes(true);
        }
        return records.map(view);
      },
    },
    applications: {
      async create(input) {
        const api = apiOf(input.api);
        await requireAccount(input.accountId);
        const now = clock.now();
        const app: Application = {
          id: newId("app", now), accountId: input.accountId, api: api.config.id, name: input.name,
          integrationType: input.integrationType ?? "api", features: checkFeatures(api, input.features ?? [], "features"),
          // Not a secret, but unguessable all the same: 30 base62 characters.
          clientId: `ID${randomString(BASE62, 30)}`, metadata: input.metadata ?? {}, createdAt: now, updatedAt: now,
        };
        await store.createApplication(app);
        return applicationView(app);
      },
      async get(id) {
        const a = await store.getApplication(id);
        if (!a) throw notFound("application", id);
        return applicationView(a);
      },
      async list(query = {}) {
        if (query.api !== undefined) apiOf(query.api);
        const limit = pageLimit(query.limit);
        const rows = await store.listApplications({ accountId: query.accountId, api: query.api, after: query.cursor, limit: limit + 1 });
        const page = pageOf(rows, limit);
        return { data: page.data.map(applicationView), nextCursor: page.nextCursor };
      },
      async update(id, input) {
        const current = await store.getApplication(id);
        if (!current) throw notFound("application", id);
        const api = apiOf(current.api);
        const patch: ApplicationPatch = {};
        if (input.name !== undefined) patch.name = input.name;
        if (input.integrationType !== undefined) patch.integrationType = input.integrationType;
        if (input.metadata !== undefined) patch.metadata = input.metadata;
        if (input.features !== undefined) patch.features = checkFeatures(api, input.features, "features");
        const updated = await store.updateApplication(id, patch, clock.now());
        if (!updated) throw notFound("application", id);
        // Features grant scopes: each key of the application loses what a removed feature
        // granted and gains what an added one grants, and every node sees it at once.
        const before = grantedScopes(current);
        const after = grantedScopes(updated);
        if (before !== null && after !== null && before.join(" ") !== after.join(" ")) {
          for (let cursor: string | undefined; ;) {
            const keys = await store.listKeys({ applicationId: id, after: cursor, limit: 500 });
            for (const k of keys) {
              const scopes = [...new Set([...k.scopes.filter((s) => after.includes(s)), ...after.filter((s) => !before.includes(s))])];
              if (scopes.join(" ") !== k.scopes.join(" ")) await mutate(k.id, { scopes });
            }
            if (keys.length < 500) break;
            cursor = keys[keys.length - 1]!.id;
          }
        }
        return applicationView(updated);
      },
    },
    tokens: {
      issue: (input) => (tokenService ?? noTokens()).issue(input),
      verify: (input) => analytics.observe(input, undefined, verifyToken),
      jwks: async () => (signing ? signing.jwks() : { keys: [] }),
      signingKeys: {
        list: async () => (signing ? signing.list() : []),
        async rotate(algorithm) {
          if (!signing) return noTokens();
          const alg = algorithm ?? algorithms[0]!;
          if (!algorithms.includes(alg)) {
            throw new KeygateError("UNKNOWN_ALGORITHM", `No API signs with ${alg}; configured: ${algorithms.join(", ")}.`, 400, { field: "algorithm" });
          }
          return signing.rotate(alg);
        },
      },
    },
    async flush() {
      const [counts, events] = await Promise.allSettled([usage.flush(), analytics.flush()]);
      for (const r of [counts, events]) if (r.status === "rejected") throw r.reason;
    },
    syncChanges: pollChanges,
    async close() {
      for (const t of timers) clearInterval(t);
      await bus?.close();
      await usage.close();
      await analytics.close();
      await limiter.close?.();
      await lockout.close?.();
      await store.close();
    },
  };
}

/** True for a config that went through parseConfig (defaults applied), so it is not parsed twice. */
function isParsed(config: Record<string, unknown>): boolean {
  return typeof config.server === "object" && typeof config.cache === "object" && typeof config.usage === "object" && typeof config.security === "object";
}
