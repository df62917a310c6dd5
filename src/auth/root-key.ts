import { timingSafeEqual } from "node:crypto";
import { BASE62, randomString } from "../keys/alphabet.js";
import { sha256Hex } from "../keys/hash.js";
import { ConfigError } from "../lib/errors.js";
import type { Store } from "../store/types.js";

const SETTING = "root_key_sha256";
export const ROOT_KEY_MIN_LENGTH = 32;

/** The admin credential's hash, and the key itself only when it was generated just now. */
export interface RootKey {
  hash: string;
  /** Set once, on the start that generated the key, so it can be shown in the banner. */
  generated: string | null;
  source: "env" | "store" | "generated";
}

/**
 * Settles the root key on start-up. `KEYGATE_ROOT_KEY` (32+ characters) wins and replaces any
 * stored one; otherwise the stored hash is used; otherwise a new key is generated and only
 * its hash is stored.
 *
 * @example
 * const root = await ensureRootKey(store, process.env.KEYGATE_ROOT_KEY);
 * if (root.generated) console.log(root.generated); // shown once, never again
 */
export async function ensureRootKey(store: Store, fromEnv: string | undefined): Promise<RootKey> {
  if (fromEnv !== undefined && fromEnv !== "") {
    if (fromEnv.length < ROOT_KEY_MIN_LENGTH) {
      throw new ConfigError(`KEYGATE_ROOT_KEY: must be at least ${ROOT_KEY_MIN_LENGTH} characters (got ${fromEnv.length})`);
    }
    const hash = sha256Hex(fromEnv);
    if ((await store.getSetting(SETTING)) !== hash) await store.setSetting(SETTING, hash);
    return { hash, generated: null, source: "env" };
  }
  const stored = await store.getSetting(SETTING);
  if (stored) return { hash: stored, generated: null, source: "store" };
  const key = `kg_root_${randomString(BASE62, 40)}`;
  const hash = sha256Hex(key);
  await store.setSetting(SETTING, hash);
  return { hash, generated: key, source: "generated" };
}

/** Constant-time check of a presented root key against the stored hash. */
export function matchesRootKey(presented: string, hash: string | Buffer): boolean {
  const a = Buffer.from(sha256Hex(presented), "hex");
  const b = typeof hash === "string" ? Buffer.from(hash, "hex") : hash;
  return a.length === b.length && timingSafeEqual(a, b);
}

/**
 * `matchesRootKey` for a server's hot path: once a presented key has matched the hash, its
 * bytes are kept, and later keys of the same length are compared with them in constant time
 * instead of being hashed (a SHA-256 per request was a sixth of the HTTP verify endpoint's
 * own work). Keys of another length still go through the hash, so what the shortcut reveals
 * by its timing is only the root key's length, which is no secret (32 characters or more,
 * `kg_root_` + 40 when generated). The kept bytes live only in this process's memory, where
 * KEYGATE_ROOT_KEY, when used, already is.
 *
 * @example
 * const isRoot = createRootKeyCheck(Buffer.from(hash, "hex"));
 * if (!isRoot(bearerToken(header) ?? "")) reply.code(401);
 */
export function createRootKeyCheck(hash: Buffer): (presented: string) => boolean {
  let proven: Buffer | null = null;
  return (presented) => {
    if (proven !== null && presented.length === proven.length) {
      const bytes = Buffer.from(presented, "utf8");
      return bytes.length === proven.length && timingSafeEqual(bytes, proven);
    }
    if (!matchesRootKey(presented, hash)) return false;
    // Only a key whose UTF-8 is as long as the string: then the length test above is exact.
    const bytes = Buffer.from(presented, "utf8");
    if (bytes.length === presented.length) proven = bytes;
    return true;
  };
}

