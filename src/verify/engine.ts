import { performance } from "node:perf_hooks";
import { LRUCache } from "lru-cache";
import type { ApiConfig, RateLimitConfig } from "../config/schema.js";
import { KeygateError } from "../lib/errors.js";
import { HotCache } from "../lib/hot-cache.js";
import { isPromise, promised } from "../lib/promise.js";
import { compileAllowlist, parseIp } from "../lib/ip.js";
import type { IpAddress, IpMatcher } from "../lib/ip.js";
import type { Clock } from "../lib/clock.js";
import type { KeyCodec } from "../keys/format.js";
import type { KeyHasher } from "../keys/hash.js";
import { digestOfHex, hexOfDigest, sha256Hex } from "../keys/hash.js";
import type { Lockout, LockoutPolicy, LockoutState, RateLimiter, RateLimitVerdict } from "../limits/types.js";
import type { KeyRecord, Store } from "../store/types.js";
import type { UsageRecorder } from "../usage/recorder.js";
import { LOCKOUT_FAILURES } from "./codes.js";
import type { VerdictCode } from "./codes.js";

/** What to verify: a presented key for one API, from one client, needing some scopes. */
export interface VerifyRequest {
  /** The API id from the config. */
  api: string;
  /** The presented credential; empty or missing gives `MISSING_CREDENTIALS`. */
  key?: string | null | undefined;
  /**
   * Instead of `key`: the id of a key whose holder already proved possession, e.g. the `sub`
   * of a JWT minted from it. The key's current state is checked as for a presented key.
   */
  keyId?: string | undefined;
  /**
   * For identity + secret schemes (an email header beside a token header): the identity the
   * client claimed. The key's account email must match it, case-insensitively.
   */
  identity?: string | undefined;
  /** The client address, for allowlists and the lockout. */
  ip?: string | undefined;
  /** Scopes the request needs; the key must hold all of them. */
  scopes?: readonly string[] | undefined;
  /** Scopes of which the key must hold at least one (besides all of `scopes`). */
  anyScopes?: readonly string[] | undefined;
  /**
   * The application the client named (a token endpoint's Client ID): a key of another
   * application, or of none, is NOT_FOUND — the pair is wrong, whichever half it is.
   */
  applicationId?: string | undefined;
}

/** The state of the key's rate limit after this request. `reset` is epoch seconds. */
export interface RateLimitInfo {
  limit: number;
  remaining: number;
  reset: number;
  /** Window length in seconds, for RateLimit-Policy. */
  window: number;
}

/**
 * The answer to a verification. A denied key is an ordinary verdict, never an exception.
 *
 * @example
 * const verdict = await keygate.verifyKey({ api: "payments", key, ip: "203.0.113.45" });
 * if (!verdict.valid) console.log(verdict.code, verdict.attemptsLeft);
 */
export interface Verdict {
  valid: boolean;
  code: VerdictCode;
  api: string;
  keyId?: string;
  accountId?: string;
  applicationId?: string | null;
  name?: string | null;
  environment?: string;
  scopes?: string[];
  /** ISO 8601, or null for keys that never expire. */
  expiresAt?: string | null;
  metadata?: Record<string, unknown>;
  ratelimit?: RateLimitInfo;
  /** Failed attempts this client has left before it is blocked (when a lockout applies). */
  attemptsLeft?: number;
  /** Seconds until a retry can succeed: end of a block, or of a rate-limit window. */
  retryAfter?: number;
  /** When a retry can succeed, Unix epoch seconds: always set with `retryAfter`. */
  reset?: number;
  /** The required scopes the key lacks, with `INSUFFICIENT_SCOPE`. */
  missingScopes?: string[];
  /** The `jti` of the access token presented, when the credential was a JWT. */
  tokenId?: string;
}

/** Everything the engine needs about one API, compiled once at start-up. */
export interface ApiRuntime {
  config: ApiConfig;
  codec: KeyCodec;
  lockout: LockoutPolicy | null;
  rateLimitFor(environment: string): RateLimitConfig | null;
}

/** What the engine keeps per account: the email identity schemes match, allowlists per environment. */
interface AccountRules {
  email: string;
  allow: Map<string, IpMatcher>;
}

/** A key record with its allowlist and scopes compiled for the hot path. */
interface CachedKey {
  record: KeyRecord;
  allow: IpMatcher | null;
  scopes: ReadonlySet<string>;
  /**
   * The API this key was presented to, found well-formed for and matched to, once one was:
   * the cache is keyed by the key's hash, so a later hit is the same string and its format
   * check and prefix environment would give the same answer again.
   */
  parsedFor: string | null;
  /** The account's rules, valid while `rulesGeneration` is the verifier's current one. */
  rules: AccountRules | undefined;
  rulesGeneration: number;
}

/** Optional hooks for metrics; each call is cheap and synchronous. */
export interface VerifyObserver {
  verdict(api: string, code: VerdictCode, ms: number): void;
  cache(result: "hit" | "negative" | "miss"): void;
  limiter(ms: number): void;
}

export interface VerifierPorts {
  apis: ReadonlyMap<string, ApiRuntime>;
  store: Store;
  limiter: RateLimiter;
  lockout: Lockout;
  clock: Clock;
  hasher: KeyHasher;
  usage: UsageRecorder;
  cache: { maxKeys: number; negativeTtlMs: number };
  observer?: VerifyObserver | undefined;
  /** Whether cached entries may be trusted at `now`; when not, every lookup reads the store. */
  fresh?: (now: number) => boolean;
}

/** The verification pipeline of DESIGN.md, talking only to ports. */
export interface Verifier {
  verify(request: VerifyRequest): Promise<Verdict>;
  /**
   * `verify` without the promise when none is needed: a cached key checked against ports
   * that answer at once gets its verdict synchronously. Throws (rather than rejects) on bad
   * input such as an unknown API. `now` is the time to verify at, when the caller has read
   * the clock already.
   */
  check(request: VerifyRequest, now?: number): Verdict | Promise<Verdict>;
  /** Drops a key from the caches after it changed, so this node enforces the change at once. */
  invalidate(hash: string): void;
  /** Drops every cached key. */
  clear(): void;
  /** Tells the verifier that keys imported as plain SHA-256 hashes exist (see `hashSecret`). */
  setLegacyHashes(present: boolean): void;
  /**
   * A failure found outside the pipeline (a forged or expired JWT) turned into a verdict the
   * way the pipeline does it: a blocked client sees IP_BLOCKED, and codes that count as failed
   * attempts count towards the client's lockout.
   */
  deny(request: { api: string; ip?: string | undefined }, code: VerdictCode): Promise<Verdict>;
}

const NEGATIVE = Symbol("not-found");
const ignore = (): void => {};
/** Marks a lockout promise whose answer `settledLockouts` will hold once it settles. */
const WATCHED = Symbol("watched");

/** A parsed client address and the text the lockout keys it by. */
interface ClientAddress {
  address: IpAddress;
  text: string;
  /**
   * Lockout subjects (`api|address`) by API id, built once: a string the lockout map has
   * seen before keeps its hash, where a new concatenation is hashed on every lookup.
   */
  subjects: Map<string, string>;
}

/** How many parsed client addresses are kept; the map is emptied when it is full. */
const ADDRESS_CACHE_SIZE = 10_000;

export function createVerifier(ports: VerifierPorts): Verifier {
  const { apis, store, limiter, lockout, clock, hasher, usage } = ports;
  const positive = ports.cache.maxKeys > 0 ? new HotCache<string, CachedKey>(ports.cache.maxKeys) : null;
  const negative = ports.cache.negativeTtlMs > 0
    ? new LRUCache<string, typeof NEGATIVE>({ max: 100_000, ttl: ports.cache.negativeTtlMs, ttlAutopurge: false })
    : null;
  // Keys looked up by id (JWT subjects); `idByHash` lets an invalidation by hash reach them.
  const byId = new LRUCache<string, CachedKey>({ max: Math.max(1, Math.min(ports.cache.maxKeys, 100_000)) });
  const idByHash = new Map<string, string>();
  // Per account: its email (identity schemes) and its IP allowlist per environment.
  const accountRules = new HotCache<string, AccountRules>(100_000);
  // Bumped when any account changes: a key entry's copy of its account's rules is then
  // looked up again (in `accountRules`) before it is trusted.
  let rulesGeneration = 0;
  let legacyHashes = hasher.algorithm !== "sha256";
  let legacyPresent = false;
  // The key caches (`positive`, `negative`, `legacyAlias`) are keyed by `hasher.digest`, the
  // hash as 32 Latin-1 characters; the store and invalidations speak hex (`hash`).
  // A legacy record's own (SHA-256) digest → the primary digest it is also cached under, so
  // that invalidating the record reaches both entries. Bounded by the number of legacy keys.
  const legacyAlias = new Map<string, string>();

  // Verdicts hand out the cached record's arrays and objects; frozen once here, so a caller
  // mutating a verdict cannot change what later verdicts say.
  const deepFreeze = <T>(value: T): T => {
    if (value && typeof value === "object" && !Object.isFrozen(value)) {
      for (const v of Object.values(value)) deepFreeze(v);
      Object.freeze(value);
    }
    return value;
  };
  // Keys with the same scopes share one set (as they share a compiled allowlist): a verification
  // then reads one small object however many keys carry the list. Bounded like those.
  const scopeSets = new HotCache<string, ReadonlySet<string>>(10_000);
  const scopeSet = (scopes: readonly string[]): ReadonlySet<string> => {
    const id = scopes.join("\u0000");
    let set = scopeSets.get(id);
    if (set === undefined) scopeSets.set(id, set = new Set(scopes));
    return set;
  };
  const compile = (record: KeyRecord): CachedKey => ({
    record: deepFreeze(record),
    allow: compileAllowlist(record.ipAllowlist),
    scopes: scopeSet(record.scopes),
    parsedFor: null,
    rules: undefined,
    rulesGeneration: -1,
  });

  const fresh = ports.fresh ?? (() => true);
  const obs = ports.observer;
  const check = obs === undefined ? verifyOnce : (request: VerifyRequest, now?: number): Verdict | Promise<Verdict> => {
    const started = performance.now();
    const verdict = verifyOnce(request, now);
    if (!isPromise(verdict)) {
      obs.verdict(verdict.api, verdict.code, performance.now() - started);
      return verdict;
    }
    return verdict.then((v) => {
      obs.verdict(v.api, v.code, performance.now() - started);
      return v;
    });
  };

  /** The cache's answer for a digest: an entry, null for a known-unknown key, undefined on a miss. */
  function peek(digest: string, now: number): CachedKey | null | undefined {
    if (!fresh(now)) return undefined;
    const hit = positive?.get(digest);
    if (hit) return hit;
    if (negative?.has(digest)) return null;
    return undefined;
  }

  async function load(digest: string, key: string): Promise<CachedKey | null> {
    const hash = hexOfDigest(digest);
    let record = await store.getKeyByHash(hash);
    if (!record && legacyHashes && legacyPresent) {
      const plain = await store.getKeyByHash(sha256Hex(key));
      if (plain && plain.hashAlgorithm === "sha256") record = plain;
    }
    if (!record) {
      negative?.set(digest, NEGATIVE);
      return null;
    }
    const entry = compile(record);
    positive?.set(digest, entry);
    // A legacy record is cached under the primary digest too, but invalidated by its own.
    if (record.hash !== hash && positive) {
      const own = digestOfHex(record.hash);
      positive.set(own, entry);
      legacyAlias.set(own, digest);
    }
    return entry;
  }

  async function lookupById(id: string, now: number): Promise<CachedKey | null> {
    if (ports.cache.maxKeys > 0 && fresh(now)) {
      const hit = byId.get(id);
      if (hit) return hit;
    }
    const record = await store.getKey(id);
    if (!record) return null;
    const entry = compile(record);
    if (ports.cache.maxKeys > 0) {
      byId.set(id, entry);
      idByHash.set(record.hash, id);
    }
    return entry;
  }

  // Parsing an address with ipaddr.js (validate, parse, unmap, print) costs more than all
  // the rest of a cached verification, and a client sends many requests from one address.
  const addresses = new Map<string, ClientAddress>();
  function clientAddress(ip: string): ClientAddress | null {
    let hit = addresses.get(ip);
    if (hit === undefined) {
      const address = parseIp(ip);
      if (!address) return null;
      if (addresses.size >= ADDRESS_CACHE_SIZE) addresses.clear();
      hit = { address, text: address.toString(), subjects: new Map() };
      addresses.set(ip, hit);
    }
    return hit;
  }

  function lockoutSubject(api: ApiRuntime, client: ClientAddress): string {
    let subject = client.subjects.get(api.config.id);
    if (subject === undefined) client.subjects.set(api.config.id, subject = `${api.config.id}|${client.text}`);
    return subject;
  }

  /**
   * Lockout answers by the promise that brought them, once it has settled. Concurrent checks of
   * one client share one promise (the Redis lockout answers them with one read), and its answer
   * arrives before the rate limit's (the batch settles the lockout read first): a verification
   * whose rate limit has come back finds the answer here, instead of chaining one more promise
   * per verification onto the shared one (bench/cluster-redis.ts). A promise that has not
   * settled yet is waited for as before.
   */
  const settledLockouts = new WeakMap<Promise<LockoutState>, LockoutState | typeof WATCHED>();
  function watchLockout(checking: Promise<LockoutState>): void {
    if (settledLockouts.has(checking)) return;
    settledLockouts.set(checking, WATCHED);
    // A rejection reaches the verification through its own wait on the promise.
    checking.then((state) => { settledLockouts.set(checking, state); }, ignore);
  }

  /** The account's rules from the store; callers look in `accountRules` first. */
  async function loadRules(accountId: string): Promise<AccountRules | null> {
    const account = await store.getAccount(accountId);
    if (!account) return null;
    const allow = new Map<string, IpMatcher>();
    for (const [env, list] of Object.entries(account.ipAllowlists ?? {})) {
      const m = compileAllowlist(list);
      if (m) allow.set(env, m);
    }
    const rules = { email: account.email.toLowerCase(), allow };
    accountRules.set(accountId, rules);
    return rules;
  }

  function describe(base: Verdict, r: KeyRecord): Verdict {
    base.keyId = r.id;
    base.accountId = r.accountId;
    base.applicationId = r.applicationId;
    base.name = r.name;
    base.environment = r.environment;
    base.scopes = r.scopes;
    base.expiresAt = r.expiresAt === null ? null : new Date(r.expiresAt).toISOString();
    base.metadata = r.metadata;
    return base;
  }

  const retryAfter = (until: number, now: number): number => Math.max(1, Math.ceil((until - now) / 1000));
  /** Sets `retryAfter` (seconds from now) and `reset` (epoch seconds, as `ratelimit.reset`) of one instant. */
  const retryAt = (verdict: Verdict, until: number, now: number): Verdict => {
    verdict.retryAfter = retryAfter(until, now);
    verdict.reset = Math.ceil(until / 1000);
    return verdict;
  };
  const blockedVerdict = (api: ApiRuntime, state: LockoutState, now: number): Verdict =>
    retryAt({ valid: false, code: "IP_BLOCKED", api: api.config.id, attemptsLeft: 0 }, state.blockedUntil ?? now, now);

  /**
   * A failure verdict. `lock` is the client's lockout state if this verification read it
   * already (it is read at most once); a blocked client always sees IP_BLOCKED.
   */
  async function fail(api: ApiRuntime, subject: string | null, lock: LockoutState | null, code: VerdictCode, record: KeyRecord | null, now: number): Promise<Verdict> {
    const state = subject !== null && lock === null ? await lockout.check(subject, api.lockout!, now) : lock;
    if (state?.blocked) return blockedVerdict(api, state, now);
    const verdict: Verdict = { valid: false, code, api: api.config.id };
    if (record) describe(verdict, record);
    if (subject !== null && LOCKOUT_FAILURES.has(code)) {
      const after = await lockout.recordFailure(subject, api.lockout!, now);
      verdict.attemptsLeft = after.attemptsLeft;
      if (after.blockedUntil !== null) retryAt(verdict, after.blockedUntil, now);
    }
    return verdict;
  }

  return {
    invalidate(hash) {
      if (hash.startsWith("acc_")) { accountRules.delete(hash); rulesGeneration++; return; }
      const digest = digestOfHex(hash);
      positive?.delete(digest);
      negative?.delete(digest);
      const alias = legacyAlias.get(digest);
      if (alias !== undefined) { positive?.delete(alias); legacyAlias.delete(digest); }
      // A changed SHA-256 record may be the legacy twin of a key cached as unknown under its
      // primary (HMAC) hash, which this hash does not name: forget every unknown key.
      if (legacyHashes && legacyPresent) negative?.clear();
      const id = idByHash.get(hash);
      if (id !== undefined) { byId.delete(id); idByHash.delete(hash); }
    },
    clear() {
      addresses.clear();
      positive?.clear();
      negative?.clear();
      byId.clear();
      idByHash.clear();
      legacyAlias.clear();
      accountRules.clear();
      rulesGeneration++;
    },
    setLegacyHashes(present) {
      // Keys looked up before SHA-256 hashes were known may be cached as unknown.
      if (present && !legacyPresent) negative?.clear();
      legacyPresent = present;
      legacyHashes = hasher.algorithm !== "sha256";
    },
    async deny(request, code) {
      const api = apis.get(request.api);
      if (!api) throw new KeygateError("UNKNOWN_API", `No API with id ${JSON.stringify(request.api)} is configured.`, 400);
      let client: ClientAddress | null = null;
      if (request.ip !== undefined && request.ip !== "") {
        client = clientAddress(request.ip);
        if (!client) throw new KeygateError("INVALID_IP", `${JSON.stringify(request.ip)} is not an IPv4 or IPv6 address.`, 400);
      }
      const subject = api.lockout && client !== null ? lockoutSubject(api, client) : null;
      const started = performance.now();
      const verdict = await fail(api, subject, null, code, null, clock.now());
      obs?.verdict(verdict.api, verdict.code, performance.now() - started);
      return verdict;
    },
    check,
    verify: (request) => promised(() => check(request)),
  };

  /**
   * The pipeline. Synchronous as far as it can be: a cached key checked against ports that
   * answer at once (memory limits) gets its verdict without a promise, because every await
   * is a trip through the microtask queue and together they cost more than the checks. Any
   * step that must wait (a store read, a Redis round trip) continues asynchronously from there.
   */
  function verifyOnce(request: VerifyRequest, now = clock.now()): Verdict | Promise<Verdict> {
    const api = apis.get(request.api);
    if (!api) throw new KeygateError("UNKNOWN_API", `No API with id ${JSON.stringify(request.api)} is configured.`, 400);
    let client: ClientAddress | null = null;
    if (request.ip !== undefined && request.ip !== "") {
      client = clientAddress(request.ip);
      if (!client) throw new KeygateError("INVALID_IP", `${JSON.stringify(request.ip)} is not an IPv4 or IPv6 address.`, 400);
    }
    const key = request.key;
    const byKeyId = request.keyId !== undefined && request.keyId !== "";
    if (!byKeyId && (key === null || key === undefined || key === "")) return { valid: false, code: "MISSING_CREDENTIALS", api: api.config.id };

    // The lockout is read at most once per verification, and as late as it can be: before
    // any storage lookup (blocked clients never reach the store), before any failure verdict
    // (a blocked client always sees IP_BLOCKED), and on the hot path — a cached, valid key —
    // in the same round trip as the rate limit, so a shared (Redis) limiter costs one.
    // Per API and client: each API has its own policy, and failures on one never block another.
    const address = client === null ? null : client.address;
    const subject = api.lockout && client !== null ? lockoutSubject(api, client) : null;
    if (byKeyId) return viaKeyId(api, request, address, subject, now);

    // A key found in the cache and already matched to this API is the same string that
    // passed its format check then: it is not parsed again. Any other key is parsed before
    // anything else is looked at, so a malformed key never reaches the store.
    const digest = hasher.digest(key!);
    const cached = peek(digest, now);
    if (cached && cached.parsedFor === api.config.id) {
      obs?.cache("hit");
      return admit(api, request, cached, address, subject, null, now);
    }
    const parsed = api.codec.parse(key!);
    if (!parsed) return fail(api, subject, null, "MALFORMED_KEY", null, now);
    obs?.cache(cached === undefined ? "miss" : cached === null ? "negative" : "hit");
    if (cached === undefined) return loadThenAdmit(api, request, digest, key!, parsed.environment, address, subject, now);
    return match(api, request, cached, parsed.environment, address, subject, null, now);
  }

  async function viaKeyId(api: ApiRuntime, request: VerifyRequest, address: IpAddress | null, subject: string | null, now: number): Promise<Verdict> {
    let lock: LockoutState | null = null;
    if (subject !== null && (lock = await lockout.check(subject, api.lockout!, now)).blocked) return blockedVerdict(api, lock, now);
    const entry = await lookupById(request.keyId!, now);
    if (!entry || entry.record.api !== api.config.id) return fail(api, subject, lock, "NOT_FOUND", null, now);
    return admit(api, request, entry, address, subject, lock, now);
  }

  async function loadThenAdmit(api: ApiRuntime, request: VerifyRequest, digest: string, key: string, environment: string | null, address: IpAddress | null, subject: string | null, now: number): Promise<Verdict> {
    let lock: LockoutState | null = null;
    if (subject !== null && (lock = await lockout.check(subject, api.lockout!, now)).blocked) return blockedVerdict(api, lock, now);
    return match(api, request, await load(digest, key), environment, address, subject, lock, now);
  }

  /** A key of another API, or of another environment than its prefix names, is not found. */
  function match(api: ApiRuntime, request: VerifyRequest, entry: CachedKey | null, environment: string | null, address: IpAddress | null, subject: string | null, lock: LockoutState | null, now: number): Verdict | Promise<Verdict> {
    if (!entry || entry.record.api !== api.config.id || (environment !== null && environment !== entry.record.environment)) {
      return fail(api, subject, lock, "NOT_FOUND", null, now);
    }
    entry.parsedFor = api.config.id;
    return admit(api, request, entry, address, subject, lock, now);
  }

  /** The key's account rules (cached on the entry while no account changed), then its checks. */
  function admit(api: ApiRuntime, request: VerifyRequest, entry: CachedKey, address: IpAddress | null, subject: string | null, lock: LockoutState | null, now: number): Verdict | Promise<Verdict> {
    let rules = entry.rulesGeneration === rulesGeneration ? entry.rules : accountRules.get(entry.record.accountId);
    if (rules === undefined) return loadRules(entry.record.accountId).then((loaded) => checks(api, request, entry, loaded, address, subject, lock, now));
    if (entry.rulesGeneration !== rulesGeneration) { entry.rules = rules; entry.rulesGeneration = rulesGeneration; }
    return checks(api, request, entry, rules, address, subject, lock, now);
  }

  function checks(api: ApiRuntime, request: VerifyRequest, entry: CachedKey, rules: AccountRules | null, address: IpAddress | null, subject: string | null, lock: LockoutState | null, now: number): Verdict | Promise<Verdict> {
    const r = entry.record;
    const scopes = entry.scopes;
    // A token presented under someone else's identity is as good as an unknown token.
    if (request.identity !== undefined && rules?.email !== request.identity.trim().toLowerCase()) {
      return fail(api, subject, lock, "NOT_FOUND", null, now);
    }
    if (request.applicationId !== undefined && r.applicationId !== request.applicationId) return fail(api, subject, lock, "NOT_FOUND", null, now);
    if (r.revokedAt !== null) return fail(api, subject, lock, "REVOKED", r, now);
    if (r.graceEndsAt !== null && r.graceEndsAt <= now) return fail(api, subject, lock, "ROTATED", r, now);
    if (r.expiresAt !== null && r.expiresAt <= now) return fail(api, subject, lock, "EXPIRED", r, now);
    if (!r.enabled) return fail(api, subject, lock, "DISABLED", r, now);

    if (entry.allow && (!address || !entry.allow(address))) return fail(api, subject, lock, "IP_NOT_ALLOWED", r, now);
    const accountAllow = rules?.allow.get(r.environment);
    if (accountAllow && (!address || !accountAllow(address))) return fail(api, subject, lock, "IP_NOT_ALLOWED", r, now);
    if (request.scopes && request.scopes.length > 0) {
      let missing: string[] | null = null;
      for (const s of request.scopes) if (!scopes.has(s)) (missing ??= []).push(s);
      if (missing !== null) return insufficient(api, subject, lock, r, now, missing);
    }
    if (request.anyScopes && request.anyScopes.length > 0 && !request.anyScopes.some((s) => scopes.has(s))) {
      return insufficient(api, subject, lock, r, now, [...request.anyScopes]);
    }

    const verdict = describe({ valid: true, code: "VALID", api: api.config.id }, r);
    const limit = r.rateLimit ?? api.rateLimitFor(r.environment);
    if (limit) {
      // Issued together: a pipelining Redis client sends both in one round trip. Should the
      // client turn out to be blocked, the request used one slot of the key's window without
      // being admitted — conservative, never more than the limit.
      const t = obs ? performance.now() : 0;
      const checking = subject !== null && lock === null ? lockout.check(subject, api.lockout!, now) : lock;
      const consuming = limiter.consume(r.id, limit.limit, limit.windowSeconds * 1000, now);
      if (isPromise(consuming)) {
        // Both travel in the same round trip (a Redis batch answers the lockout read first),
        // so waiting for one and then the other costs no more than Promise.all and allocates less.
        if (!isPromise(checking)) return consuming.then((rl) => limited(api, verdict, r, subject, checking, rl, limit, now, t));
        watchLockout(checking);
        return consuming.then(
          (rl) => {
            const l = settledLockouts.get(checking);
            if (l !== undefined && l !== WATCHED) return limited(api, verdict, r, subject, l, rl, limit, now, t);
            return checking.then((answer) => limited(api, verdict, r, subject, answer, rl, limit, now, t));
          },
          // The lockout read is not waited for then; its own failure must not go unhandled.
          (error: unknown) => { checking.then(undefined, ignore); throw error; },
        );
      }
      if (isPromise(checking)) return checking.then((l) => limited(api, verdict, r, subject, l, consuming, limit, now, t));
      obs?.limiter(performance.now() - t);
      return finish(api, verdict, r, subject, checking, consuming, limit, now);
    }
    if (subject !== null && lock === null) {
      const checking = lockout.check(subject, api.lockout!, now);
      if (isPromise(checking)) return checking.then((l) => finish(api, verdict, r, subject, l, null, null, now));
      lock = checking;
    }
    return finish(api, verdict, r, subject, lock, null, null, now);
  }

  async function insufficient(api: ApiRuntime, subject: string | null, lock: LockoutState | null, r: KeyRecord, now: number, missing: string[]): Promise<Verdict> {
    const verdict = await fail(api, subject, lock, "INSUFFICIENT_SCOPE", r, now);
    if (verdict.code === "INSUFFICIENT_SCOPE") verdict.missingScopes = missing;
    return verdict;
  }

  function limited(api: ApiRuntime, verdict: Verdict, r: KeyRecord, subject: string | null, lock: LockoutState | null, rl: RateLimitVerdict, limit: RateLimitConfig, now: number, t: number): Verdict | Promise<Verdict> {
    obs?.limiter(performance.now() - t);
    return finish(api, verdict, r, subject, lock, rl, limit, now);
  }

  /** The lockout and rate-limit answers applied to a key that passed every other check. */
  function finish(api: ApiRuntime, verdict: Verdict, r: KeyRecord, subject: string | null, lock: LockoutState | null, rl: RateLimitVerdict | null, limit: RateLimitConfig | null, now: number): Verdict | Promise<Verdict> {
    if (lock?.blocked) return blockedVerdict(api, lock, now);
    if (rl) {
      verdict.ratelimit = { limit: rl.limit, remaining: rl.remaining, reset: Math.ceil(rl.resetAt / 1000), window: limit!.windowSeconds };
      if (!rl.allowed) {
        verdict.valid = false;
        verdict.code = "RATE_LIMITED";
        retryAt(verdict, rl.resetAt, now);
        return verdict;
      }
    }
    if (subject !== null && lock !== null && lock.attemptsLeft < api.lockout!.maxAttempts) {
      const cleared = lockout.recordSuccess(subject);
      if (isPromise(cleared)) return cleared.then(() => { usage.record(r.id, now); return verdict; });
    }
    usage.record(r.id, now);
    return verdict;
  }
}
