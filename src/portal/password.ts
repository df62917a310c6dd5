import { randomBytes, scrypt, timingSafeEqual } from "node:crypto";
import type { ScryptOptions } from "node:crypto";

/**
 * scrypt parameters: N = 2^15, r = 8, p = 3 is one of OWASP's equivalents of its N = 2^17, p = 1
 * minimum that needs a quarter of the memory (32 MiB per hash instead of 128 MiB), so a burst
 * of sign-ins cannot exhaust a small server. They are written into every hash, so raising them
 * later needs no migration: {@link needsRehash} tells the sign-in to re-hash.
 */
export const SCRYPT_PARAMS = { N: 2 ** 15, r: 8, p: 3 } as const;
const KEY_LENGTH = 32;
const SALT_BYTES = 16;

/** A password's hash, as stored: `scrypt$N$r$p$<salt base64url>$<hash base64url>`. */
export type PasswordHash = string;

const derive = (password: string, salt: Buffer, params: { N: number; r: number; p: number }, length: number): Promise<Buffer> =>
  new Promise((resolve, reject) => {
    // 128 · N · r bytes plus headroom; node's default cap (32 MiB) is exactly that and refuses it.
    const options: ScryptOptions = { ...params, maxmem: 256 * params.N * params.r };
    scrypt(password.normalize("NFC"), salt, length, options, (error, key) => (error ? reject(error) : resolve(key)));
  });

/**
 * Hashes a password with scrypt and a fresh 16-byte salt, off the event loop (libuv's pool).
 *
 * @example
 * const stored = await hashPassword("correct horse battery staple");
 * await verifyPassword("correct horse battery staple", stored); // true
 */
export async function hashPassword(password: string): Promise<PasswordHash> {
  const salt = randomBytes(SALT_BYTES);
  const hash = await derive(password, salt, SCRYPT_PARAMS, KEY_LENGTH);
  const { N, r, p } = SCRYPT_PARAMS;
  return `scrypt$${N}$${r}$${p}$${salt.toString("base64url")}$${hash.toString("base64url")}`;
}

interface Parsed { N: number; r: number; p: number; salt: Buffer; hash: Buffer }

function parse(stored: string): Parsed | null {
  const parts = stored.split("$");
  if (parts.length !== 6 || parts[0] !== "scrypt") return null;
  const [N, r, p] = parts.slice(1, 4).map(Number) as [number, number, number];
  // Bounds, so a tampered row cannot make one sign-in allocate gigabytes.
  if (!Number.isInteger(Math.log2(N)) || N < 2 ** 10 || N > 2 ** 20 || !(r >= 1 && r <= 32) || !(p >= 1 && p <= 16)) return null;
  const salt = Buffer.from(parts[4]!, "base64url");
  const hash = Buffer.from(parts[5]!, "base64url");
  if (salt.length < 8 || hash.length < 16) return null;
  return { N, r, p, salt, hash };
}

/**
 * Whether `password` matches `stored`, compared in constant time. A malformed hash is a
 * mismatch, never an exception.
 *
 * @example
 * if (!(await verifyPassword(body.password, user.passwordHash))) return wrongPassword();
 */
export async function verifyPassword(password: string, stored: PasswordHash): Promise<boolean> {
  const parsed = parse(stored);
  if (!parsed) return false;
  const candidate = await derive(password, parsed.salt, parsed, parsed.hash.length);
  return timingSafeEqual(candidate, parsed.hash);
}

/** True when `stored` was made with other parameters than today's: re-hash it at the next sign-in. */
export function needsRehash(stored: PasswordHash): boolean {
  const parsed = parse(stored);
  return !parsed || parsed.N !== SCRYPT_PARAMS.N || parsed.r !== SCRYPT_PARAMS.r || parsed.p !== SCRYPT_PARAMS.p;
}

let decoy: Promise<PasswordHash> | null = null;

/**
 * Spends the time of one verification on a throwaway hash, so that a sign-in for an unknown
 * email takes as long as one with a wrong password and does not reveal which emails exist.
 */
export async function burnVerification(password: string): Promise<void> {
  decoy ??= hashPassword(randomBytes(12).toString("base64url"));
  await verifyPassword(password, await decoy);
}

/** Rules every new password follows; null when it does, else what to fix. */
export function passwordProblem(password: string, email: string): string | null {
  if (password.length < 10) return "Use at least 10 characters.";
  if (password.length > 200) return "Use at most 200 characters.";
  if (password.trim().toLowerCase() === email.trim().toLowerCase()) return "Do not use your email address as your password.";
  if (/^(.)\1*$/.test(password)) return "Do not repeat one character.";
  return null;
}
