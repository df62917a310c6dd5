import { crc32 } from "node:zlib";
import { toBase62 } from "./alphabet.js";
import type { AlphabetName } from "./alphabet.js";

/** How many characters the checksum takes at the end of a key body in each alphabet. */
export function checksumLength(alphabet: AlphabetName): number {
  switch (alphabet) {
    case "base62": return 6; // 62^6 > 2^32, as GitHub's tokens
    case "hex": return 8;
    case "uuid": return 0; // a UUID has no room for one; the config rejects the combination
  }
}

/**
 * The CRC32 of `text`, encoded in the key's alphabet. It catches typos and lets secret
 * scanners and the verifier reject forged or truncated keys without a storage lookup; it is
 * not a MAC and adds no secrecy.
 */
export function checksum(text: string, alphabet: AlphabetName): string {
  const value = crc32(text);
  return alphabet === "hex" ? value.toString(16).padStart(8, "0") : toBase62(value, 6);
}
