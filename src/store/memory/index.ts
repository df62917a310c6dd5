import { KeygateError } from "../../lib/errors.js";
import type { Account, AccountListQuery, AccountPatch, Application, ApplicationListQuery, ApplicationPatch, KeyListQuery, KeyPatch, KeyRecord, Store, UsageDelta } from "../types.js";

interface Change { seq: number; hash: string; at: number }

const copy = <T>(v: T): T => structuredClone(v);
/** A patch without its undefined fields, which leave a column alone in the SQL stores too. */
const defined = <T extends object>(patch: T): Partial<T> =>
  Object.fromEntries(Object.entries(patch).filter(([, v]) => v !== undefined)) as Partial<T>;

/**
 * A store that keeps everything in process memory: for tests and for throwaway embedded use.
 * It returns copies, so callers cannot mutate what it holds, just as with a database.
 *
 * @example
 * const keygate = await createKeygate({ config, store: createMemoryStore() });
 */
export function createMemoryStore(): Store {
  const accounts = new Map<string, Account>();
  const keys = new Map<string, KeyRecord>();
  const byHash = new Map<string, string>();
  const settings = new Map<string, string>();
  const applications = new Map<string, Application>();
  const changes: Change[] = [];
  let seq = 0;
  const changed = (hash: string, at: number): void => { changes.push({ seq: ++seq, hash, at }); };

  const sortedAfter = <T extends { id: string }>(items: Iterable<T>, after: string | undefined, limit: number): T[] =>
    [...items].filter((x) => after === undefined || x.id > after).sort((a, b) => (a.id < b.id ? -1 : 1)).slice(0, limit).map(copy);

  const apply = (id: string, patch: KeyPatch, now: number): KeyRecord | null => {
    const rec = keys.get(id);
    if (!rec) return null;
    const next = { ...rec, ...copy(defined(patch)), updatedAt: now };
    keys.set(id, next);
    changed(rec.hash, now);
    return copy(next);
  };

  return {
    kind: "memory",
    async migrate() {},
    async close() {},
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
      for (const r of records) { keys.set(r.id, copy(r)); byHash.set(r.hash, r.id); changed(r.hash, r.createdAt); }
    },
    async getKey(id) { const k = keys.get(id); return k ? copy(k) : null; },
    async getKeyByHash(hash) { const id = byHash.get(hash); const k = id ? keys.get(id) : undefined; return k ? copy(k) : null; },
    async listKeys(q: KeyListQuery) {
      const all = [...keys.values()].filter((k) => (q.api === undefined || k.api === q.api) && (q.accountId === undefined || k.accountId === q.accountId) &&
        (q.applicationId === undefined || k.applicationId === q.applicationId));
      return sortedAfter(all, q.after, q.limit);
    },
    async updateKey(id, patch, now) { return apply(id, patch, now); },
    async rotateKey(oldId, patch, successor, now) {
      if (!keys.has(oldId)) return null;
      await this.insertKeys([successor]);
      return apply(oldId, patch, now);
    },
    async hasHashAlgorithm(algorithm) {
      for (const k of keys.values()) if (k.hashAlgorithm === algorithm) return true;
      return false;
    },
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
      const complete = cursor >= seq || (changes[0] !== undefined && changes[0].seq <= cursor + 1);
      if (!complete) return { cursor: seq, hashes: [], complete: false };
      const batch = changes.filter((c) => c.seq > cursor).slice(0, limit);
      return { cursor: batch.length ? batch[batch.length - 1]!.seq : cursor, hashes: batch.map((c) => c.hash), complete: true };
    },
    async pruneKeyChanges(before) {
      while (changes.length > 0 && changes[0]!.at < before) changes.shift();
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
