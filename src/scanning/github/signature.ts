import { verify } from "node:crypto";
import type { GithubPublicKeys } from "./public-keys.js";

/** Why a delivery is not from GitHub. Each is answered 401 with this code. */
export type SignatureFailure = "MISSING_SIGNATURE" | "UNKNOWN_PUBLIC_KEY" | "INVALID_SIGNATURE";

export type SignatureVerdict = { valid: true; keyIdentifier: string } | { valid: false; code: SignatureFailure };

const BASE64 = /^[A-Za-z0-9+/]+={0,2}$/;
// GitHub's identifiers are 64 hex characters; anything far longer is not worth a key lookup.
const MAX_KEY_ID_LENGTH = 256;
const MAX_SIGNATURE_LENGTH = 512;

/**
 * Checks that `payload` (the raw request body, byte for byte) was signed by GitHub: an ECDSA
 * P-256 signature over its SHA-256, DER-encoded then base64, in `Github-Public-Key-Signature`,
 * by the published key named in `Github-Public-Key-Identifier`. A forged or missing signature
 * is a verdict, not an error; only failing to fetch GitHub's keys throws.
 *
 * @example
 * const verdict = await verifyGithubSignature(keys, rawBody, {
 *   keyIdentifier: request.headers["github-public-key-identifier"],
 *   signature: request.headers["github-public-key-signature"],
 * });
 * if (!verdict.valid) return reply.code(401).send({ code: verdict.code });
 */
export async function verifyGithubSignature(
  keys: GithubPublicKeys,
  payload: Uint8Array,
  headers: { keyIdentifier: string | string[] | undefined; signature: string | string[] | undefined },
): Promise<SignatureVerdict> {
  const { keyIdentifier, signature } = headers;
  if (typeof keyIdentifier !== "string" || typeof signature !== "string" || keyIdentifier === "" || signature === "") {
    return { valid: false, code: "MISSING_SIGNATURE" };
  }
  const sig = signature.trim();
  if (keyIdentifier.length > MAX_KEY_ID_LENGTH || sig.length > MAX_SIGNATURE_LENGTH || !BASE64.test(sig)) {
    return { valid: false, code: "INVALID_SIGNATURE" };
  }
  const key = await keys.get(keyIdentifier);
  if (key === null) return { valid: false, code: "UNKNOWN_PUBLIC_KEY" };
  let ok = false;
  try {
    ok = verify("sha256", payload, { key, dsaEncoding: "der" }, Buffer.from(sig, "base64"));
  } catch {
    // A malformed DER signature throws in some OpenSSL versions instead of returning false.
  }
  return ok ? { valid: true, keyIdentifier } : { valid: false, code: "INVALID_SIGNATURE" };
}
