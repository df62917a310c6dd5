import type { Keygate } from "../keygate.js";
import { createKeyHasher, sha256Hex } from "../keys/hash.js";
import type { KeyRecord } from "../store/types.js";

/** What keygate does with a key found in public: revoke it, or only flag it for the operator. */
export type LeakAction = "revoke" | "flag";

/** A key seen in public, as a scanner reports it. */
export interface LeakReport {
  /** The secret as found. Never logged, never stored: only its hash is looked up. */
  token: string;
  /** Where it was seen, e.g. a GitHub blob address; null when the reporter does not say. */
  url: string | null;
  /** What kind of place: `content`, `commit`, `npm`, …; null when the reporter does not say. */
  source: string | null;
  /** Who reported it: `github`, `manual`, … */
  reporter: string;
}

/** What is written into a leaked key's `metadata.leaked`; the last report wins. */
export interface LeakRecord {
  url: string | null;
  source: string | null;
  reporter: string;
  /** When keygate received the report, ISO 8601. */
  at: string;
  /** What keygate did: `revoked` (now or earlier) or `flagged`. */
  action: "revoked" | "flagged";
}

/** A report's outcome: whether the token is one of this deployment's keys, and what was done. */
export type LeakOutcome =
  | { found: true; keyId: string; api: string; action: "revoked" | "flagged" }
  | { found: false };

/**
 * Finds the key whose secret is `token`, if any, the way the verifier does: the token must parse
 * as a key of some API (its format and checksum, so most false positives never reach the store),
 * then it is looked up by its hash, and, with a hash secret, also by its plain SHA-256 for keys
 * imported as such.
 *
 * @example
 * const record = await findKeyBySecret(keygate, "sk_live_…"); // KeyRecord | null
 */
export async function findKeyBySecret(keygate: Keygate, token: string): Promise<KeyRecord | null> {
  const apis = [...keygate.apis.values()].filter((api) => api.codec.parse(token) !== null).map((api) => api.config.id);
  if (apis.length === 0) return null;
  const hasher = createKeyHasher(keygate.config.security.hashSecret || undefined);
  let record = await keygate.store.getKeyByHash(hasher.hash(token));
  if (record === null && hasher.algorithm !== "sha256") {
    const plain = await keygate.store.getKeyByHash(sha256Hex(token));
    if (plain?.hashAlgorithm === "sha256") record = plain;
  }
  return record !== null && apis.includes(record.api) ? record : null;
}

/**
 * Acts on one report of a key seen in public: a key of this deployment is revoked (with
 * `action: "revoke"`) and, in either mode, its `metadata.leaked` records where and when it was
 * seen. A token that is no key of ours changes nothing. Revoking comes first: if recording
 * fails after it, the key is at least no longer usable, and a retried report records it.
 *
 * @example
 * const outcome = await reportLeakedKey(keygate, { token, url, source: "content", reporter: "github" }, "revoke");
 * outcome.found; // true: the key is revoked and metadata.leaked says where it was found
 */
export async function reportLeakedKey(keygate: Keygate, report: LeakReport, action: LeakAction, now: () => number = Date.now): Promise<LeakOutcome> {
  const record = await findKeyBySecret(keygate, report.token);
  if (record === null) return { found: false };
  const done = action === "revoke" || record.revokedAt !== null ? "revoked" : "flagged";
  const current = action === "revoke" ? await keygate.keys.revoke(record.id) : await keygate.keys.get(record.id);
  const leaked: LeakRecord = { url: report.url, source: report.source, reporter: report.reporter, at: new Date(now()).toISOString(), action: done };
  await keygate.keys.update(record.id, { metadata: { ...current.metadata, leaked } });
  return { found: true, keyId: record.id, api: record.api, action: done };
}
