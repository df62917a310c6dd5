import { KeygateError } from "../../lib/errors.js";
import type { Account, AccountListQuery, AccountPatch, Application, ApplicationListQuery, ApplicationPatch, KeyListQuery, KeyPatch, KeyRecord, Store, UsageDelta } from "../types.js";
import type { LatencyMetric, RequestLog, UsageDimensions, UsageFilter, UsagePeriod, UsageQueryRow } from "../types.js";
import { bucketOf, PERIODS } from "../aggregates.js";
import type { PortalSession, PortalUser } from "../types.js";
import { grown, KeyTable } from "./key-table.js";

const copy = <T>(v: T): T => structuredClone(v);
/** A patch without its undefined fields, which leave a column alone in the SQL stores too. */
const defined = <T extends object>(patch: T): Partial<T> =>
  Object.fromEntries(Object.entries(patch).filter(([, v]) => v !== undefined)) as Partial<T>;

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
  const keys = new KeyTable();
  const algorithms = new Set<string>();
  const settings = new Map<string, string>();
  const applications = new Map<string, Application>();

  // The change feed, in typed arrays like the keys it names: a key's change is its slot (its
  // hash never changes), another change (an account's) is -1 with its id in `named`, by change
  // number. Change number `seq - (length - head) + 1 + i` is at index `head + i`, so a read
  // starts at its cursor instead of scanning the feed, and pruning moves `head` instead of
  // shifting the arrays one change at a time.
  let changeRefs = new Int32Array(1024);
  let changeTimes = new Float64Array(1024);
  const named = new Map<number, string>();
  let length = 0;
  let head = 0;
  let seq = 0;
  const changed = (ref: number | string, at: number): void => {
    if (length === changeRefs.length) {
      changeRefs = grown(changeRefs, length * 2);
      changeTimes = grown(changeTimes, length * 2);
    }
    seq++;
    if (typeof ref === "string") named.set(seq, ref);
    changeRefs[length] = typeof ref === "string" ? -1 : ref;
    changeTimes[length++] = at;
  };
  /** The number of the oldest change still held; seq + 1 when none is. */
  const oldest = (): number => seq - (length - head) + 1;

  const sortedAfter = <T extends { id: string }>(items: Iterable<T>, after: string | undefined, limit: number): T[] =>
    [...items].filter((x) => after === undefined || x.id > after).sort((a, b) => (a.id < b.id ? -1 : 1)).slice(0, limit).map(copy);

  const apply = (id: string, patch: KeyPatch, now: number): KeyRecord | null => {
    const slot = keys.slotOfId(id);
    if (slot < 0) return null;
    keys.replace(slot, { ...keys.get(slot), ...defined(patch), updatedAt: now });
    changed(slot, now);
    return keys.get(slot);
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
        if (keys.slotOfHash(r.hash) >= 0 || seen.has(r.hash)) throw new KeygateError("DUPLICATE_KEY", "A key with the same secret exists already.", 409);
        seen.add(r.hash);
      }
      const ids = new Set<string>();
      for (const r of records) {
        // Ids are generated, so this is a caller's bug, refused as a database's primary key would.
        if (keys.slotOfId(r.id) >= 0 || ids.has(r.id)) throw new Error(`A key with id ${r.id} exists already.`);
        ids.add(r.id);
      }
      const first = keys.size;
      keys.insert(records);
      for (let i = 0; i < records.length; i++) {
        algorithms.add(records[i]!.hashAlgorithm);
        changed(first + i, records[i]!.createdAt);
      }
    },
    async getKey(id) { const slot = keys.slotOfId(id); return slot < 0 ? null : keys.get(slot); },
    async getKeyByHash(hash) { const slot = keys.slotOfHash(hash); return slot < 0 ? null : keys.get(slot); },
    async listKeys(q: KeyListQuery) { return keys.list(q); },
    async updateKey(id, patch, now) { return apply(id, patch, now); },
    async rotateKey(oldId, patch, successor, now) {
      if (keys.slotOfId(oldId) < 0) return null;
      await this.insertKeys([successor]);
      return apply(oldId, patch, now);
    },
    async hasHashAlgorithm(algorithm) { return algorithms.has(algorithm); },
    async recordUsage(deltas: UsageDelta[]) {
      for (const d of deltas) {
        const slot = keys.slotOfId(d.keyId);
        if (slot >= 0) keys.addUsage(slot, d.count, d.lastUsedAt);
      }
    },
    async keyChangesSince(cursor, limit) {
      if (cursor === null) return { cursor: seq, hashes: [], complete: true };
      const first = oldest();
      if (cursor < seq && first > cursor + 1) return { cursor: seq, hashes: [], complete: false };
      const from = head + Math.max(0, cursor + 1 - first);
      const to = Math.min(length, from + limit);
      const hashes: string[] = [];
      for (let i = from; i < to; i++) {
        const ref = changeRefs[i]!;
        hashes.push(ref >= 0 ? keys.hashOf(ref) : named.get(first + (i - head))!);
      }
      return { cursor: hashes.length > 0 ? cursor + hashes.length : cursor, hashes, complete: true };
    },
    async pruneKeyChanges(before) {
      while (head < length && changeTimes[head]! < before) {
        if (changeRefs[head] === -1) named.delete(oldest());
        head++;
      }
      // Dropped in one go once they are most of the arrays, so pruning stays linear overall.
      if (head > 0 && head * 2 >= length) {
        changeRefs.copyWithin(0, head, length);
        changeTimes.copyWithin(0, head, length);
        length -= head;
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
