import { createPublicKey } from "node:crypto";
import type { KeyObject } from "node:crypto";
import { KeygateError } from "../../lib/errors.js";
import { systemClock } from "../../lib/clock.js";
import type { Clock } from "../../lib/clock.js";

/** GitHub.com's signing keys for secret-scanning alerts; GHES serves the same under /api/v3. */
export const GITHUB_PUBLIC_KEYS_URL = "https://api.github.com/meta/public_keys/secret_scanning";

export interface GithubPublicKeysOptions {
  /** Where the key document is published: `{ public_keys: [{ key_identifier, key, is_current }] }`. */
  url?: string | undefined;
  /** A GitHub token sent as `Authorization: Bearer`, for a higher API rate limit. */
  token?: string | undefined;
  /** How long a fetched key set is used before it is fetched again; 0 fetches per alert. */
  cacheMs?: number | undefined;
  /**
   * An unknown key id (GitHub rotated its keys) refetches the set, but at most this often, so
   * that unsigned requests carrying made-up ids cannot spend the operator's GitHub rate limit.
   */
  refetchIntervalMs?: number | undefined;
  timeoutMs?: number | undefined;
  clock?: Clock | undefined;
  fetch?: typeof fetch | undefined;
}

/**
 * GitHub's published secret-scanning public keys, fetched on first use, cached, and fetched
 * again when they grow old or an alert names a key id the cache does not know. A failed
 * refresh keeps serving the keys already known; with none known it throws
 * `PUBLIC_KEYS_UNAVAILABLE` (503), so GitHub retries the delivery later.
 *
 * @example
 * const keys = createGithubPublicKeys({ url: GITHUB_PUBLIC_KEYS_URL });
 * const key = await keys.get(request.headers["github-public-key-identifier"]); // KeyObject | null
 */
export interface GithubPublicKeys {
  /** The P-256 public key with this identifier, or null when GitHub does not publish one. */
  get(keyIdentifier: string): Promise<KeyObject | null>;
  /** How many times the key document was requested; for tests and metrics. */
  readonly fetches: number;
}

interface KeySet {
  keys: Map<string, KeyObject>;
  fetchedAt: number;
}

const MAX_DOCUMENT_BYTES = 1_000_000;

export function createGithubPublicKeys(options: GithubPublicKeysOptions = {}): GithubPublicKeys {
  const url = options.url ?? GITHUB_PUBLIC_KEYS_URL;
  const cacheMs = options.cacheMs ?? 3_600_000;
  const refetchIntervalMs = options.refetchIntervalMs ?? 60_000;
  const timeoutMs = options.timeoutMs ?? 5000;
  const clock = options.clock ?? systemClock;
  const fetchFn = options.fetch ?? fetch;
  let current: KeySet | null = null;
  let lastAttempt = Number.NEGATIVE_INFINITY;
  let inflight: Promise<KeySet> | null = null;
  let lastError: unknown = null;
  let fetches = 0;

  const download = async (): Promise<KeySet> => {
    fetches++;
    lastAttempt = clock.now();
    const headers: Record<string, string> = { accept: "application/json", "user-agent": "keygate-secret-scanning" };
    if (options.token) headers.authorization = `Bearer ${options.token}`;
    const res = await fetchFn(url, { headers, signal: AbortSignal.timeout(timeoutMs), redirect: "follow" });
    const text = await res.text();
    if (!res.ok) throw new Error(`HTTP ${res.status}`);
    if (text.length > MAX_DOCUMENT_BYTES) throw new Error(`the document exceeds ${MAX_DOCUMENT_BYTES} bytes`);
    const set: KeySet = { keys: parseKeyDocument(JSON.parse(text) as unknown), fetchedAt: clock.now() };
    current = set;
    return set;
  };
  // Concurrent alerts share one request.
  const refresh = (): Promise<KeySet> => {
    inflight ??= download().then(
      (set) => { lastError = null; return set; },
      (e: unknown) => { lastError = e; throw e; },
    ).finally(() => { inflight = null; });
    return inflight;
  };
  // Named in errors without any credentials or query the operator put in the address.
  const shown = ((u) => `${u.origin}${u.pathname}`)(new URL(url));
  const unavailable = (e: unknown): KeygateError =>
    new KeygateError("PUBLIC_KEYS_UNAVAILABLE", `GitHub's secret-scanning public keys could not be fetched from ${shown} (${(e as Error).message}); retry later.`, 503);

  return {
    get fetches() { return fetches; },
    async get(keyIdentifier) {
      let refreshed = false;
      if (current === null || clock.now() - current.fetchedAt >= cacheMs) {
        try {
          await refresh();
          refreshed = true;
        } catch (e) {
          // Old keys stay good while GitHub's endpoint is down; they are GitHub's, not ours to expire.
          if (current === null) throw unavailable(e);
        }
      }
      const known = current!.keys.get(keyIdentifier);
      if (known !== undefined) return known;
      if (refreshed || clock.now() - lastAttempt < refetchIntervalMs) {
        // The id may be a key GitHub has just started signing with, unseen because its
        // endpoint is failing: answer 503 so that GitHub retries rather than 401.
        if (lastError !== null) throw unavailable(lastError);
        return null;
      }
      try {
        return (await refresh()).keys.get(keyIdentifier) ?? null;
      } catch (e) {
        throw unavailable(e);
      }
    },
  };
}

/**
 * The keys of GitHub's document, by identifier. Entries that are not P-256 public keys in PEM
 * are skipped rather than failing the set, so one odd entry cannot stop every alert.
 */
export function parseKeyDocument(doc: unknown): Map<string, KeyObject> {
  const list = (doc as { public_keys?: unknown } | null)?.public_keys;
  if (!Array.isArray(list)) throw new Error("the document has no public_keys array");
  const keys = new Map<string, KeyObject>();
  for (const entry of list as unknown[]) {
    const { key_identifier: id, key: pem } = (entry ?? {}) as { key_identifier?: unknown; key?: unknown };
    if (typeof id !== "string" || id === "" || typeof pem !== "string") continue;
    try {
      const key = createPublicKey({ key: pem, format: "pem" });
      if (key.asymmetricKeyType === "ec" && key.asymmetricKeyDetails?.namedCurve === "prime256v1") keys.set(id, key);
    } catch {
      // not a PEM public key: skipped
    }
  }
  return keys;
}
