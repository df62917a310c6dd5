import { LRUCache } from "lru-cache";
import type { KeygateClient, RequestOptions, Verdict, VerifyInput } from "../client/index.js";

/**
 * A local cache of VALID verdicts in front of the service's POST /v1/keys/verify. Off unless
 * asked for; see docs/middleware.md for what it costs in exactness.
 */
export interface RemoteCacheOptions {
  /** How long a VALID verdict is reused, in ms. Default 5 000. */
  ttlMs?: number | undefined;
  /** Verdicts kept, least recently used dropped first. Default 10 000. */
  maxEntries?: number | undefined;
  /**
   * Also cache verdicts of keys that have a rate limit. Off by default, because the service
   * counts only the verifications it sees: with it on, every hit is a request the key's limit
   * never hears of. A cached verdict still admits no more requests than the `remaining` it was
   * given, and expires with its window.
   */
  rateLimited?: boolean | undefined;
}

/** The part of the SDK a remote verifier uses; a whole `KeygateClient` fits. */
export interface VerifyingClient {
  keys: Pick<KeygateClient["keys"], "verify">;
}

export interface RemoteVerifier {
  verify(input: VerifyInput, options: RequestOptions): Promise<Verdict>;
}

interface Entry {
  verdict: Verdict;
  /** Epoch ms after which the entry is not used. */
  until: number;
  /** Requests the entry may still admit, when the verdict carried a rate limit. */
  remaining: number | null;
}

/** Verdicts handed to many requests are frozen, so one handler's change cannot reach another's. */
function deepFreeze<T>(value: T): T {
  if (value && typeof value === "object" && !Object.isFrozen(value)) {
    for (const v of Object.values(value)) deepFreeze(v);
    Object.freeze(value);
  }
  return value;
}

const hex = (bytes: ArrayBuffer): string => Array.from(new Uint8Array(bytes), (b) => b.toString(16).padStart(2, "0")).join("");

/**
 * Verifies through the service, reusing VALID verdicts for a few seconds when `cache` is set.
 * The cache is keyed by a SHA-256 of everything the verdict depends on (API, key, identity,
 * client IP, scopes), so no secret is kept as a map key, and a verdict for one address or
 * scope set is never reused for another.
 */
export function createRemoteVerifier(client: VerifyingClient, cache: RemoteCacheOptions | null): RemoteVerifier {
  if (!cache) return { verify: (input, options) => client.keys.verify(input, options) };
  const ttl = cache.ttlMs ?? 5000;
  if (!(ttl > 0)) throw new TypeError(`keygate middleware: cache.ttlMs must be a positive number of milliseconds (got ${cache.ttlMs})`);
  const entries = new LRUCache<string, Entry>({ max: Math.max(1, cache.maxEntries ?? 10_000) });
  const subtle = globalThis.crypto.subtle;
  const encoder = new TextEncoder();

  return {
    async verify(input, options) {
      const id = hex(await subtle.digest("SHA-256", encoder.encode(JSON.stringify([input.api, input.key, input.identity ?? null, input.ip ?? null, input.scopes ?? []]))));
      const now = Date.now();
      const hit = entries.get(id);
      if (hit) {
        if (hit.until > now && (hit.remaining === null || hit.remaining > 0)) {
          if (hit.remaining === null) return hit.verdict;
          hit.remaining -= 1;
          return { ...hit.verdict, ratelimit: { ...hit.verdict.ratelimit!, remaining: hit.remaining } };
        }
        entries.delete(id);
      }
      const verdict = await client.keys.verify(input, options);
      if (verdict.valid && (verdict.ratelimit === undefined || cache.rateLimited)) {
        let until = now + ttl;
        if (verdict.expiresAt) until = Math.min(until, Date.parse(verdict.expiresAt));
        if (verdict.ratelimit) until = Math.min(until, verdict.ratelimit.reset * 1000);
        if (until > now) entries.set(id, { verdict: deepFreeze(verdict), until, remaining: verdict.ratelimit ? verdict.ratelimit.remaining : null });
      }
      return verdict;
    },
  };
}
