/**
 * The JWT signing keys: one active key per algorithm, older ones kept in the JWKS until every
 * token they signed has expired, so a rotation never breaks a token in flight.
 *
 * The key set lives in the store (setting `tokens.signing-keys`), so every node signs and
 * verifies with the same keys; writes are compare-and-set, so two nodes that start or rotate
 * at once cannot drop each other's key. With `security.hashSecret` set, private keys are
 * stored encrypted (JWE `dir` + A256GCM, through jose) under a key derived from it.
 */
import { hkdfSync, randomBytes } from "node:crypto";
import { CompactEncrypt, compactDecrypt, exportJWK, generateKeyPair, importJWK } from "jose";
import type { CryptoKey, JWK, KeyObject } from "jose";
import { KeygateError } from "../lib/errors.js";
import type { Clock } from "../lib/clock.js";
import type { Store } from "../store/types.js";

export type SigningAlgorithm = "EdDSA" | "ES256";

const SETTING = "tokens.signing-keys";

/** One signing key as stored: the private half as a JWK, or encrypted to a compact JWE. */
interface StoredKey {
  kid: string;
  alg: SigningAlgorithm;
  publicJwk: JWK;
  privateJwk?: JWK;
  privateJwe?: string;
  createdAt: number;
  /** When a newer key took over signing; the key stays published until `retiredAt + keepMs`. */
  retiredAt: number | null;
}

interface StoredSet {
  keys: StoredKey[];
}

/** A signing key ready for use. */
export interface SigningKey {
  kid: string;
  alg: SigningAlgorithm;
  createdAt: number;
  retiredAt: number | null;
  publicJwk: JWK;
  privateKey: KeyObject | CryptoKey;
  publicKey: KeyObject | CryptoKey;
}

/** What the admin API shows of a signing key: never the private half. */
export interface SigningKeyView {
  kid: string;
  alg: SigningAlgorithm;
  status: "active" | "retired";
  createdAt: string;
  retiredAt: string | null;
  /** When it leaves the JWKS: after the longest token it can have signed has expired. */
  publishedUntil: string | null;
}

export interface SigningKeysOptions {
  store: Store;
  clock: Clock;
  /** The algorithms the configured APIs sign with: each gets an active key. */
  algorithms: readonly SigningAlgorithm[];
  /** How long a retired key stays published: the longest token lifetime plus a margin. */
  keepMs: number;
  /** `security.hashSecret`: when set, private keys are stored encrypted under a key derived from it. */
  secret?: string | undefined;
}

export interface SigningKeys {
  /** The key that signs new tokens of `alg` (reloaded from the store when it may have changed). */
  active(alg: SigningAlgorithm): Promise<SigningKey>;
  /** The key with this `kid`, reloading the set once when it is unknown (another node rotated). */
  byKid(kid: string): Promise<SigningKey | null>;
  /** The public keys of every published key, as a JWKS (RFC 7517). */
  jwks(): Promise<{ keys: JWK[] }>;
  list(): Promise<SigningKeyView[]>;
  /** Makes a new key the active one for `alg`; the old one stays published for `keepMs`. */
  rotate(alg: SigningAlgorithm): Promise<SigningKeyView>;
}

/** How often a node rereads the set to pick up another node's rotation, at most. */
const RELOAD_MS = 30_000;
/** An unknown `kid` rereads the set at most this often, so forged kids cannot hammer the store. */
const MISS_RELOAD_MS = 1_000;

export async function createSigningKeys(options: SigningKeysOptions): Promise<SigningKeys> {
  const { store, clock, keepMs } = options;
  const wrapKey = options.secret ? new Uint8Array(hkdfSync("sha256", options.secret, "keygate", "jwt signing keys", 32)) : null;

  let raw: string | null = null;
  let keys = new Map<string, SigningKey>();
  let loadedAt = 0;
  let lastMissReload = 0;

  async function unwrap(k: StoredKey): Promise<SigningKey> {
    let jwk: JWK;
    if (k.privateJwe !== undefined) {
      if (!wrapKey) throw new KeygateError("SIGNING_KEY_LOCKED", "The JWT signing keys are stored encrypted; start keygate with the security.hashSecret they were written with.", 500);
      try {
        jwk = JSON.parse(new TextDecoder().decode((await compactDecrypt(k.privateJwe, wrapKey)).plaintext)) as JWK;
      } catch {
        throw new KeygateError("SIGNING_KEY_LOCKED", "The JWT signing keys cannot be decrypted with this security.hashSecret.", 500);
      }
    } else {
      jwk = k.privateJwk!;
    }
    return {
      kid: k.kid, alg: k.alg, createdAt: k.createdAt, retiredAt: k.retiredAt, publicJwk: k.publicJwk,
      privateKey: (await importJWK(jwk, k.alg)) as KeyObject | CryptoKey,
      publicKey: (await importJWK(k.publicJwk, k.alg)) as KeyObject | CryptoKey,
    };
  }

  async function generate(alg: SigningAlgorithm, now: number): Promise<StoredKey> {
    const pair = await generateKeyPair(alg, { extractable: true, ...(alg === "EdDSA" ? { crv: "Ed25519" } : {}) });
    const kid = `${now.toString(36)}-${randomBytes(6).toString("base64url")}`;
    const publicJwk = { ...(await exportJWK(pair.publicKey)), kid, alg, use: "sig" };
    const privateJwk = await exportJWK(pair.privateKey);
    const stored: StoredKey = { kid, alg, publicJwk, createdAt: now, retiredAt: null };
    if (wrapKey) {
      stored.privateJwe = await new CompactEncrypt(new TextEncoder().encode(JSON.stringify(privateJwk)))
        .setProtectedHeader({ alg: "dir", enc: "A256GCM" })
        .encrypt(wrapKey);
    } else {
      stored.privateJwk = privateJwk;
    }
    return stored;
  }

  const parse = (text: string | null): StoredSet => (text === null ? { keys: [] } : (JSON.parse(text) as StoredSet));

  /** Applies `change` to the stored set with compare-and-set, retrying when another node wrote first. */
  async function update(change: (set: StoredSet, now: number) => Promise<boolean>): Promise<void> {
    for (let attempt = 0; attempt < 20; attempt++) {
      const current = await store.getSetting(SETTING);
      const set = parse(current);
      const now = clock.now();
      if (!(await change(set, now))) { await adopt(current); return; }
      // Published keys are never dropped before every token they signed has expired.
      set.keys = set.keys.filter((k) => k.retiredAt === null || k.retiredAt + keepMs > now);
      const next = JSON.stringify(set);
      if (await store.compareAndSetSetting(SETTING, current, next)) { await adopt(next); return; }
    }
    throw new KeygateError("SIGNING_KEYS_CONTENDED", "Could not update the JWT signing keys: other nodes kept changing them; retry.", 503);
  }

  async function adopt(text: string | null): Promise<void> {
    loadedAt = clock.now();
    if (text === raw) return;
    const next = new Map<string, SigningKey>();
    for (const k of parse(text).keys) {
      // Imported key objects are reused; what may have changed (retirement) comes from the store.
      const known = keys.get(k.kid);
      next.set(k.kid, known ? { ...known, retiredAt: k.retiredAt } : await unwrap(k));
    }
    keys = next;
    raw = text;
  }

  const reload = async (): Promise<void> => adopt(await store.getSetting(SETTING));

  const ensureActive = (set: StoredSet, now: number): Promise<boolean> => (async () => {
    let changed = false;
    for (const alg of options.algorithms) {
      if (!set.keys.some((k) => k.alg === alg && k.retiredAt === null)) { set.keys.push(await generate(alg, now)); changed = true; }
    }
    return changed;
  })();

  await update(ensureActive);

  const view = (k: SigningKey): SigningKeyView => ({
    kid: k.kid, alg: k.alg, status: k.retiredAt === null ? "active" : "retired",
    createdAt: new Date(k.createdAt).toISOString(), retiredAt: k.retiredAt === null ? null : new Date(k.retiredAt).toISOString(),
    publishedUntil: k.retiredAt === null ? null : new Date(k.retiredAt + keepMs).toISOString(),
  });
  const published = (now: number): SigningKey[] => [...keys.values()].filter((k) => k.retiredAt === null || k.retiredAt + keepMs > now);

  async function active(alg: SigningAlgorithm): Promise<SigningKey> {
    if (clock.now() - loadedAt > RELOAD_MS) await reload();
    const newest = [...keys.values()].filter((k) => k.alg === alg && k.retiredAt === null).sort((a, b) => b.createdAt - a.createdAt)[0];
    if (newest) return newest;
    // Only if the stored set lost its active key (edited by hand): make one.
    await update(ensureActive);
    return active(alg);
  }

  return {
    active,
    async byKid(kid) {
      const hit = keys.get(kid);
      if (hit) return hit.retiredAt === null || hit.retiredAt + keepMs > clock.now() ? hit : null;
      const now = clock.now();
      if (now - lastMissReload < MISS_RELOAD_MS) return null;
      lastMissReload = now;
      await reload();
      return keys.get(kid) ?? null;
    },
    async jwks() {
      if (clock.now() - loadedAt > RELOAD_MS) await reload();
      return { keys: published(clock.now()).sort((a, b) => b.createdAt - a.createdAt).map((k) => k.publicJwk) };
    },
    async list() {
      await reload();
      return published(clock.now()).sort((a, b) => b.createdAt - a.createdAt).map(view);
    },
    async rotate(alg) {
      let kid = "";
      await update(async (set, now) => {
        for (const k of set.keys) if (k.alg === alg && k.retiredAt === null) k.retiredAt = now;
        const fresh = await generate(alg, now);
        kid = fresh.kid;
        set.keys.push(fresh);
        return true;
      });
      return view(keys.get(kid)!);
    },
  };
}
