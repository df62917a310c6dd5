import * as crypto from "node:crypto";
import { createHash, createHmac } from "node:crypto";

/** How a stored key hash was computed. Imported SHA-256 hashes stay `sha256` forever. */
export type HashAlgorithm = "sha256" | "hmac-sha256";

/**
 * Hashes presented keys for storage and lookup. With a server secret (a pepper), hashes are
 * HMAC-SHA-256, so a stolen database alone does not allow confirming guessed keys.
 * Keys carry at least 128 bits of entropy, so a fast hash is right here: a slow password
 * hash would only cost every request latency and buy nothing against brute force.
 *
 * @example
 * const hasher = createKeyHasher(process.env.KEYGATE_HASH_SECRET);
 * hasher.hash("ce_live_…"); // 64 hex characters
 */
export interface KeyHasher {
  readonly algorithm: HashAlgorithm;
  hash(key: string): string;
  /**
   * The same digest as `hash`, as 32 Latin-1 characters (one per byte) instead of 64 hex ones:
   * the key of in-process caches. Shorter to encode and to hash as a `Map` key, it saved some
   * 80 ns of a ~1 µs cached verification (bench/verify-inprocess.ts). `hexOfDigest` and
   * `digestOfHex` convert, for the store (which keeps hex) and for invalidations.
   */
  digest(key: string): string;
}

// crypto.hash (Node ≥ 20.12) hashes in one call without a Hash object: about 3× faster than
// createHash().update().digest() on a key-sized input, which is most of a cached verify.
const oneShot = (crypto as { hash?: (algorithm: string, data: string, encoding: "hex" | "latin1") => string }).hash;

/** Lower-case hex SHA-256 of a UTF-8 string. */
export const sha256Hex: (text: string) => string = oneShot
  ? (text) => oneShot("sha256", text, "hex")
  : (text) => createHash("sha256").update(text).digest("hex");

const sha256Latin1: (text: string) => string = oneShot
  ? (text) => oneShot("sha256", text, "latin1")
  : (text) => createHash("sha256").update(text).digest("binary");

export function createKeyHasher(secret?: string): KeyHasher {
  if (!secret) return { algorithm: "sha256", hash: sha256Hex, digest: sha256Latin1 };
  return {
    algorithm: "hmac-sha256",
    hash: (key) => createHmac("sha256", secret).update(key).digest("hex"),
    digest: (key) => createHmac("sha256", secret).update(key).digest("binary"),
  };
}

/** The hex form of a `KeyHasher.digest`: what `hash` gives for the same key. */
export const hexOfDigest = (digest: string): string => Buffer.from(digest, "latin1").toString("hex");

/**
 * The `KeyHasher.digest` form of a stored hex hash. Anything but 64 hex characters (which no
 * stored key hash is) gives a string no digest equals — it holds a character above Latin-1 —
 * so an invalidation by it reaches nothing.
 */
export const digestOfHex = (hex: string): string =>
  isSha256Hex(hex) ? Buffer.from(hex, "hex").toString("latin1") : `\u0100${hex}`;

const SHA256_HEX = /^[0-9a-f]{64}$/;

/** True for a lower- or upper-case hex SHA-256 digest, as accepted by key import. */
export const isSha256Hex = (value: string): boolean => SHA256_HEX.test(value.toLowerCase());
