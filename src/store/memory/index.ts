import { KeygateError } from "../../lib/errors.js";
import type { RateLimitConfig } from "../../config/schema.js";
import type { Account, AccountListQuery, AccountPatch, Application, ApplicationListQuery, ApplicationPatch, KeyListQuery, KeyPatch, KeyRecord, Store, UsageDelta } from "../types.js";
import type { LatencyMetric, RequestLog, UsageDimensions, UsageFilter, UsagePeriod, UsageQueryRow } from "../types.js";
import { bucketOf, PERIODS } from "../aggregates.js";
import type { PortalSession, PortalUser } from "../types.js";

const copy = <T>(v: T): T => structuredClone(v);
/** A patch without its undefined fields, which leave a column alone in the SQL stores too. */
const defined = <T extends object>(patch: T): Partial<T> =>
  Object.fromEntries(Object.entries(patch).filter(([, v]) => v !== undefined)) as Partial<T>;

/**
 * A key as the memory store holds it. Its lists and objects are frozen and may be shared with
 * other keys; every read hands out a copy (`readKey`).
 */
type HeldKey = Omit<KeyRecord, "scopes" | "ipAllowlist" | "rateLimit" | "metadata"> & {
  readonly scopes: readonly string[];
  readonly ipAllowlist: readonly string[];
  readonly rateLimit: Readonly<RateLimitConfig> | null;
  readonly metadata: Readonly<Record<string, unknown>>;
};

/** How many distinct strings, and lists, `createInterner` shares at most. */
const INTERNED_MAX = 50_000;
const NO_METADATA: Readonly<Record<string, unknown>> = Object.freeze({});

const deepFreeze = <T>(value: T): T => {
  if (value !== null && typeof value === "object" && !Object.isFrozen(value)) {
    for (const v of Object.values(value)) deepFreeze(v);
    Object.freeze(value);
  }
  return value;
};

/**
 * `s`, made one flat string. Ids are built by concatenation, and V8 keeps such a string as a
 * tree of its pieces (some 170-210 bytes for a 26-character id) until something reads it by
 * index, which copies it into one flat string in place (some 60 bytes). Each key's id and hash
 * are held for as long as the store lives, a million of them in a big store.
 */
const flat = (s: string): string => {
  s.charCodeAt(0);
  return s;
};

/**
 * Equal values held once rather than once per key: a million keys usually name a handful of
 * APIs, environments and accounts and carry a handful of distinct scope lists and allowlists.
 * A held key would otherwise cost over a kilobyte of heap, and the collector's work per
 * young-generation pass grows with the size of the old generation — a big memory store made
 * every verification slower, even of cached keys (bench/verify-scale.ts). Bounded: past
 * INTERNED_MAX distinct values, new ones are held as they come, lists as their own frozen copy.
 */
function createInterner(): { string(s: string): string; json<T extends readonly string[] | RateLimitConfig>(value: T): Readonly<T> } {
  const strings = new Map<string, string>();
  // Keyed by JSON, which is exact for lists of strings and objects of numbers.
  const values = new Map<string, unknown>();
  return {
    string(s) {
      const hit = strings.get(s);
      if (hit !== undefined) return hit;
      if (strings.size < INTERNED_MAX) strings.set(s, s);
      return s;
    },
    json(value) {
      const json = JSON.stringify(value);
      const hit = values.get(json);
      if (hit !== undefined) return hit as typeof value;
      const held = Object.freeze(Array.isArray(value) ? [...value] : { ...value }) as typeof value;
      if (values.size < INTERNED_MAX) values.set(json, held);
      return held;
    },
  };
}

/**
 * A copy of a held key that the caller may change at will, as a database row would be. Its
 * id is a copy too: the verifier keeps the record in its cache and touches the id on every
 * verification (rate limit, usage, analytics), and a held id sits wherever the key was
 * inserted, amid a million others — measurably slower to reach than a copy allocated beside
 * the cache entry (bench/verify-scale.ts).
 */
function readKey(k: HeldKey): KeyRecord {
  return {
    id: copy(k.id), api: k.api, accountId: k.accountId, applicationId: k.applicationId, name: k.name, environment: k.environment,
    hash: k.hash, hashAlgorithm: k.hashAlgorithm, start: k.start, scopes: [...k.scopes], ipAllowlist: [...k.ipAllowlist],
    expiresAt: k.expiresAt, rateLimit: k.rateLimit === null ? null : { ...k.rateLimit }, enabled: k.enabled,
    revokedAt: k.revokedAt, rotatedAt: k.rotatedAt, graceEndsAt: k.graceEndsAt, replacedBy: k.replacedBy,
    metadata: k.metadata === NO_METADATA ? {} : copy(k.metadata) as Record<string, unknown>, source: k.source,
    createdAt: k.createdAt, updatedAt: k.updatedAt, lastUsedAt: k.lastUsedAt, usageCount: k.usageCount,
  };
}

/**
 * A store that keeps everything in process memory: for tests and for throwaway embedded use.
 * It returns copies, so callers cannot mutate what it holds, just as with a database.
 * Raw request logs are the one thing it bounds: it keeps the newest `maxRequestLogs` of them
 * (aggregates count every request regardless), so a long-running process that logs every
 * request holds a fixed amount of memory instead of 30 days of traffic.
 *
 * @example
 * const keygate = await createKeygate({ config, store: createMemoryStore() });
 */
export interface MemoryStoreOptions {
  /** Raw request logs kept, newest first; older ones are dropped as new ones arrive. Default 10,000. */
  maxRequestLogs?: number;
}

export function createMemoryStore(options: MemoryStoreOptions = {}): Store {
  const maxRequestLogs = options.maxRequestLogs ?? 10_000;
  if (!Number.isInteger(maxRequestLogs) || maxRequestLogs < 0) throw new RangeError(`maxRequestLogs must be a whole number ≥ 0, not ${maxRequestLogs}`);
  const accounts = new Map<string, Account>();
  const keys = new Map<string, HeldKey>();
  const byHash = new Map<string, HeldKey>();
  const algorithms = new Set<string>();
  const settings = new Map<string, string>();
  const applications = new Map<string, Application>();
  const interned = createInterner();

  // The change feed: change number `seq - (changeHashes.length - head) + i` is at index
  // `head + i` of both lists, so a read starts at its cursor instead of scanning the feed,
  // and pruning moves `head` instead of shifting the lists one change at a time.
  const changeHashes: string[] = [];
  const changeTimes: number[] = [];
  let head = 0;
  let seq = 0;
  const changed = (hash: string, at: number): void => { changeHashes.push(hash); changeTimes.push(at); seq++; };
  /** The number of the oldest change still held; seq + 1 when none is. */
  const oldest = (): number => seq - (changeHashes.length - head) + 1;

  /** A record as held: one object of fixed shape, with shared frozen lists and interned strings. */
  const hold = (r: KeyRecord): HeldKey => ({
    id: flat(r.id), api: interned.string(r.api), accountId: interned.string(r.accountId),
    applicationId: r.applicationId === null ? null : interned.string(r.applicationId), name: r.name,
    environment: interned.string(r.environment), hash: flat(r.hash), hashAlgorithm: r.hashAlgorithm, start: r.start,
    scopes: interned.json(r.scopes), ipAllowlist: interned.json(r.ipAllowlist), expiresAt: r.expiresAt,
    rateLimit: r.rateLimit === null ? null : interned.json(r.rateLimit), enabled: r.enabled, revokedAt: r.revokedAt,
    rotatedAt: r.rotatedAt, graceEndsAt: r.graceEndsAt, replacedBy: r.replacedBy,
    metadata: Object.keys(r.metadata).length === 0 ? NO_METADATA : deepFreeze(copy(r.metadata)), source: r.source,
    createdAt: r.createdAt, updatedAt: r.updatedAt, lastUsedAt: r.lastUsedAt, usageCount: r.usageCount,
  });

  const sortedAfter = <T extends { id: string }>(items: Iterable<T>, after: string | undefined, limit: number): T[] =>
    [...items].filter((x) => after === undefined || x.id > after).sort((a, b) => (a.id < b.id ? -1 : 1)).slice(0, limit).map(copy);

  const apply = (id: string, patch: KeyPatch, now: number): KeyRecord | null => {
    const rec = keys.get(id);
    if (!rec) return null;
    const next = hold({ ...readKey(rec), ...defined(patch), updatedAt: now });
    keys.set(id, next);
    byHash.set(next.hash, next);
    changed(rec.hash, now);
    return readKey(next);
  };

  return {
    kind: "memory",
    async migrate() {},
    async close() {},
    ...memoryAnalytics(maxRequestLogs),
    ...memoryPortal(),
    async createAccount(account) {
      const email = account.email.toLowerCase();
      for (const a of accounts.values()) {
        if (a.email.toLowerCase() === email) throw new KeygateError("EMAIL_TAKEN", `An account with email ${account.email} exists already.`, 409);
      }
      accounts.set(account.id, copy(account));
    },
    async getAccount(id) { const a = accounts.get(id); return a ? copy(a) : null; },
    async getAccountByEmail(email) {
      const e = email.toLowerCase();
      for (const a of accounts.values()) if (a.email.toLowerCase() === e) return copy(a);
      return null;
    },
    async listAccounts(q: AccountListQuery) { return sortedAfter(accounts.values(), q.after, q.limit); },
    async updateAccount(id: string, patch: AccountPatch, now: number) {
      const a = accounts.get(id);
      if (!a) return null;
      const next = { ...a, ...copy(defined(patch)), updatedAt: now };
      accounts.set(id, next);
      changed(id, now);
      return copy(next);
    },
    async insertKeys(records) {
      const seen = new Set<string>();
      for (const r of records) {
        if (byHash.has(r.hash) || seen.has(r.hash)) throw new KeygateError("DUPLICATE_KEY", "A key with the same secret exists already.", 409);
        seen.add(r.hash);
      }
      for (const r of records) {
        const held = hold(r);
        keys.set(held.id, held);
        byHash.set(held.hash, held);
        algorithms.add(held.hashAlgorithm);
        changed(held.hash, held.createdAt);
      }
    },
    async getKey(id) { const k = keys.get(id); return k ? readKey(k) : null; },
    async getKeyByHash(hash) { const k = byHash.get(hash); return k ? readKey(k) : null; },
    async listKeys(q: KeyListQuery) {
      const page: HeldKey[] = [];
      for (const k of keys.values()) {
        if ((q.api === undefined || k.api === q.api) && (q.accountId === undefined || k.accountId === q.accountId) &&
          (q.applicationId === undefined || k.applicationId === q.applicationId) && (q.after === undefined || k.id > q.after)) page.push(k);
      }
      return page.sort((a, b) => (a.id < b.id ? -1 : 1)).slice(0, q.limit).map(readKey);
    },
    async updateKey(id, patch, now) { return apply(id, patch, now); },
    async rotateKey(oldId, patch, successor, now) {
      if (!keys.has(oldId)) return null;
      await this.insertKeys([successor]);
      return apply(oldId, patch, now);
    },
    async hasHashAlgorithm(algorithm) { return algorithms.has(algorithm); },
    async recordUsage(deltas: UsageDelta[]) {
      for (const d of deltas) {
        const k = keys.get(d.keyId);
        if (!k) continue;
        k.usageCount += d.count;
        k.lastUsedAt = Math.max(k.lastUsedAt ?? 0, d.lastUsedAt);
      }
    },
    async keyChangesSince(cursor, limit) {
      if (cursor === null) return { cursor: seq, hashes: [], complete: true };
      const first = oldest();
      if (cursor < seq && first > cursor + 1) return { cursor: seq, hashes: [], complete: false };
      const from = head + Math.max(0, cursor + 1 - first);
      const hashes = changeHashes.slice(from, Math.min(changeHashes.length, from + limit));
      return { cursor: hashes.length > 0 ? cursor + hashes.length : cursor, hashes, complete: true };
    },
    async pruneKeyChanges(before) {
      while (head < changeHashes.length && changeTimes[head]! < before) head++;
      // Dropped in one go once they are most of the lists, so pruning stays linear overall.
      if (head > 0 && head * 2 >= changeHashes.length) {
        changeHashes.splice(0, head);
        changeTimes.splice(0, head);
        head = 0;
      }
    },
    async createApplication(application) {
      for (const a of applications.values()) {
        if (a.clientId === application.clientId) throw new KeygateError("CLIENT_ID_TAKEN", "An application with this Client ID exists already.", 409);
      }
      applications.set(application.id, copy(application));
    },
    async getApplication(id) { const a = applications.get(id); return a ? copy(a) : null; },
    async getApplicationByClientId(clientId) {
      for (const a of applications.values()) if (a.clientId === clientId) return copy(a);
      return null;
    },
    async listApplications(q: ApplicationListQuery) {
      const all = [...applications.values()].filter((a) => (q.accountId === undefined || a.accountId === q.accountId) && (q.api === undefined || a.api === q.api));
      return sortedAfter(all, q.after, q.limit);
    },
    async updateApplication(id: string, patch: ApplicationPatch, now: number) {
      const a = applications.get(id);
      if (!a) return null;
      const next = { ...a, ...copy(defined(patch)), updatedAt: now };
      applications.set(id, next);
      return copy(next);
    },
    async getSetting(name) { return settings.get(name) ?? null; },
    async setSetting(name, value) { settings.set(name, value); },
    async compareAndSetSetting(name, expected, value) {
      if ((settings.get(name) ?? null) !== expected) return false;
      settings.set(name, value);
      return true;
    },
  };
}

/** One stored bucket of a series: counts per latency bin, and the dimensions of the first counts added (as a SQL row keeps them). */
interface Bucket { readonly dims: UsageDimensions; readonly bins: Map<number, number> }
/** The buckets of one (API, key, code, metric), per period, by start. */
type SeriesBuckets = { readonly metric: LatencyMetric } & Record<UsagePeriod, Map<number, Bucket>>;

/** The analytics half of the memory store: the same semantics as the SQL one, in maps. */
function memoryAnalytics(maxRequestLogs: number): Pick<Store, "recordAnalytics" | "queryUsage" | "listRequestLogs" | "getRequestLog" | "pruneAnalytics"> {
  /**
   * By series rather than by row: a batch brings one object per series and minute, which then
   * costs one string id and three bucket lookups, not one id per row (three per latency bin).
   */
  const series = new Map<string, SeriesBuckets>();
  const logs = new Map<string, RequestLog>();
  const batches = new Map<string, number>();
  const matches = (row: Pick<RequestLog, "api" | "keyId" | "accountId" | "applicationId" | "environment" | "code">, f: UsageFilter): boolean =>
    (f.api === undefined || row.api === f.api) && (f.keyId === undefined || row.keyId === f.keyId) &&
    (f.accountId === undefined || row.accountId === f.accountId) && (f.applicationId === undefined || row.applicationId === f.applicationId) &&
    (f.environment === undefined || row.environment === f.environment) && (f.code === undefined || row.code === f.code);
  const dimension = { key: "keyId", application: "applicationId", account: "accountId", api: "api" } as const;

  return {
    async recordAnalytics(batch) {
      // Logs by their own ids, whether or not the counters were applied before (as in SQL).
      for (const l of batch.logs) if (!logs.has(l.id)) logs.set(l.id, { ...l });
      // A Map iterates in insertion order: the first are the logs written earliest.
      if (logs.size > maxRequestLogs) {
        let excess = logs.size - maxRequestLogs;
        for (const id of logs.keys()) {
          if (excess-- === 0) break;
          logs.delete(id);
        }
      }
      if (batches.has(batch.id)) return false;
      batches.set(batch.id, batch.at);
      for (const c of batch.counters) {
        const id = `${c.api}\u0000${c.keyId ?? ""}\u0000${c.code}\u0000${c.metric}`;
        let held = series.get(id);
        if (held === undefined) series.set(id, held = { metric: c.metric, minute: new Map(), hour: new Map(), day: new Map() });
        let dims: UsageDimensions | null = null;
        for (const period of PERIODS) {
          const start = bucketOf(period, c.minute);
          let bucket = held[period].get(start);
          if (bucket === undefined) {
            dims ??= { api: c.api, keyId: c.keyId, accountId: c.accountId, applicationId: c.applicationId, environment: c.environment, code: c.code };
            held[period].set(start, bucket = { dims, bins: new Map() });
          }
          const bins = bucket.bins;
          for (let i = 0; i < c.bins.length; i += 2) bins.set(c.bins[i]!, (bins.get(c.bins[i]!) ?? 0) + c.bins[i + 1]!);
        }
      }
      return true;
    },
    async queryUsage(q) {
      const sums = new Map<string, UsageQueryRow>();
      for (const held of series.values()) {
        for (const [start, { dims, bins }] of held[q.period]) {
          if (start < q.from || start >= q.to || !matches(dims, q)) continue;
          const group = q.groupBy === null ? null : dims[dimension[q.groupBy]] || null;
          for (const [bin, count] of bins) {
            const id = [start, group ?? "", dims.code, held.metric, bin].join("\u0000");
            const cur = sums.get(id);
            if (cur) cur.count += count;
            else sums.set(id, { bucketStart: start, group, code: dims.code, metric: held.metric, bin, count });
          }
        }
      }
      const order = (a: UsageQueryRow, b: UsageQueryRow): number =>
        a.bucketStart - b.bucketStart || ((a.group ?? "") < (b.group ?? "") ? -1 : (a.group ?? "") > (b.group ?? "") ? 1 : 0) ||
        (a.code < b.code ? -1 : a.code > b.code ? 1 : 0) || (a.metric < b.metric ? -1 : a.metric > b.metric ? 1 : 0) || a.bin - b.bin;
      return [...sums.values()].sort(order).slice(0, q.limit);
    },
    async listRequestLogs(q) {
      return [...logs.values()]
        .filter((l) => matches(l, q) && (q.status === undefined || l.status === q.status) && (q.from === undefined || l.at >= q.from) &&
          (q.to === undefined || l.at < q.to) && (q.before === undefined || l.id < q.before))
        .sort((a, b) => (a.id < b.id ? 1 : -1))
        .slice(0, q.limit)
        .map((l) => ({ ...l }));
    },
    async getRequestLog(id) { const l = logs.get(id); return l ? { ...l } : null; },
    async pruneAnalytics(r) {
      for (const [id, l] of logs) if (l.at < r.logsBefore) logs.delete(id);
      const cutOff: Record<UsagePeriod, number | null> = { minute: r.minutesBefore, hour: r.hoursBefore, day: r.daysBefore };
      for (const [id, held] of series) {
        for (const period of PERIODS) {
          const before = cutOff[period];
          if (before !== null) for (const start of held[period].keys()) if (start < before) held[period].delete(start);
        }
        if (held.minute.size === 0 && held.hour.size === 0 && held.day.size === 0) series.delete(id);
      }
      for (const [id, at] of batches) if (at < r.batchesBefore) batches.delete(id);
    },
  };
}

/** The portal half of the memory store: users by id and their sessions by the hash of their id. */
function memoryPortal(): Pick<Store, "createPortalUser" | "getPortalUser" | "getPortalUserByEmail" | "listPortalUsers" | "updatePortalUser" |
  "addPortalSignInFailure" | "createPortalSession" | "getPortalSession" | "deletePortalSession" | "deletePortalSessions" | "prunePortalSessions"> {
  const users = new Map<string, PortalUser>();
  const sessions = new Map<string, PortalSession>();
  return {
    async createPortalUser(user) {
      const email = user.email.toLowerCase();
      for (const u of users.values()) {
        if (u.email.toLowerCase() === email) throw new KeygateError("EMAIL_TAKEN", `A portal user with email ${user.email} exists already.`, 409);
      }
      users.set(user.id, copy(user));
    },
    async getPortalUser(id) { const u = users.get(id); return u ? copy(u) : null; },
    async getPortalUserByEmail(email) {
      const e = email.toLowerCase();
      for (const u of users.values()) if (u.email.toLowerCase() === e) return copy(u);
      return null;
    },
    async listPortalUsers(q) {
      return [...users.values()]
        .filter((u) => (q.accountId === undefined || u.accountId === q.accountId) && (q.after === undefined || u.id > q.after))
        .sort((a, b) => (a.id < b.id ? -1 : 1)).slice(0, q.limit).map(copy);
    },
    async updatePortalUser(id, patch, now) {
      const u = users.get(id);
      if (!u) return null;
      const next = { ...u, ...defined(patch), updatedAt: now };
      users.set(id, next);
      return copy(next);
    },
    async addPortalSignInFailure(id, now) {
      const u = users.get(id);
      if (!u) return null;
      u.failedSignIns += 1;
      u.updatedAt = now;
      return u.failedSignIns;
    },
    async createPortalSession(session) { sessions.set(session.idHash, copy(session)); },
    async getPortalSession(idHash) { const s = sessions.get(idHash); return s ? copy(s) : null; },
    async deletePortalSession(idHash) { sessions.delete(idHash); },
    async deletePortalSessions(userId, exceptIdHash) {
      let n = 0;
      for (const [h, s] of sessions) if (s.userId === userId && h !== exceptIdHash) { sessions.delete(h); n++; }
      return n;
    },
    async prunePortalSessions(before) {
      for (const [h, s] of sessions) if (s.expiresAt < before) sessions.delete(h);
    },
  };
}
