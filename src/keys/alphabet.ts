import { randomBytes, randomUUID } from "node:crypto";

/** The alphabets a key body can be drawn from. */
export type AlphabetName = "base62" | "hex" | "uuid";

export const BASE62 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
export const HEX = "0123456789abcdef";

/**
 * `length` characters drawn uniformly from `alphabet` with rejection sampling: a byte is kept
 * only below the largest multiple of the alphabet size, so no character is more likely than
 * another (a plain `byte % 62` would favour the first 8 characters by 1/256).
 */
export function randomString(alphabet: string, length: number): string {
  const size = alphabet.length;
  const limit = 256 - (256 % size);
  let out = "";
  while (out.length < length) {
    const bytes = randomBytes(Math.ceil((length - out.length) * 1.1) + 8);
    for (let i = 0; i < bytes.length && out.length < length; i++) {
      const b = bytes[i]!;
      if (b < limit) out += alphabet[b % size];
    }
  }
  return out;
}

/** A random RFC 9562 version-4 UUID, lower-case. */
export const randomUuid = (): string => randomUUID();

/** Encodes a non-negative integer in base62, left-padded with "0" to `width`. */
export function toBase62(value: number, width: number): string {
  let out = "";
  let v = Math.floor(value);
  while (v > 0) {
    out = BASE62[v % 62] + out;
    v = Math.floor(v / 62);
  }
  return out.padStart(width, "0");
}

const UUID_RE = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;

/** A matcher for a body of exactly `length` characters of `alphabet` (uuid: the canonical form). */
export function bodyPattern(alphabet: AlphabetName, length: number): RegExp {
  switch (alphabet) {
    case "base62": return new RegExp(`^[0-9A-Za-z]{${length}}$`);
    case "hex": return new RegExp(`^[0-9a-f]{${length}}$`);
    case "uuid": return UUID_RE;
  }
}
