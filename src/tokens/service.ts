/**
 * Client credentials → short-lived JWT, and the verification of those JWTs.
 *
 * A token is minted only for a valid API key presented with its application's Client ID. It
 * names the key (`sub`), and every verification checks that key's current state through the
 * engine, so revoking, disabling or expiring the key stops its tokens on the very next request
 * (on every node, through the same cache invalidation as the key itself), and the key's rate
 * limit, IP allowlists and lockout apply to calls made with its tokens.
 *
 * Signature checks follow RFC 8725: the algorithm is pinned per API (`tokens.algorithm`), the
 * `kid` must name one of keygate's own published keys, and `aud` (the API), `iss`, `exp`,
 * `iat`, `jti`, `sub` and `typ` (`at+jwt`, RFC 9068) are required.
 */
import { randomBytes } from "node:crypto";
import { LRUCache } from "lru-cache";
import { SignJWT, decodeProtectedHeader, errors as joseErrors, jwtVerify } from "jose";
import type { ApiConfig } from "../config/schema.js";
import type { Clock } from "../lib/clock.js";
import { KeygateError } from "../lib/errors.js";
import type { Store } from "../store/types.js";
import type { ApiRuntime, Verdict, Verifier } from "../verify/engine.js";
import type { SigningKeys } from "./signing.js";

export interface IssueTokenInput {
  api: string;
  /** The application's Client ID. */
  clientId: string | null | undefined;
  /** The API key. */
  key: string | null | undefined;
  ip?: string | undefined;
  /** Narrower scopes for this token (OAuth 2 `scope`); the key must hold every one. */
  scopes?: readonly string[] | undefined;
}

export type IssuedToken =
  | { ok: true; token: string; tokenType: "Bearer"; expiresIn: number; expiresAt: string; scopes: string[]; verdict: Verdict }
  | { ok: false; verdict: Verdict };

export interface VerifyTokenInput {
  api: string;
  token: string;
  ip?: string | undefined;
  scopes?: readonly string[] | undefined;
  anyScopes?: readonly string[] | undefined;
}

export interface TokenService {
  issue(input: IssueTokenInput): Promise<IssuedToken>;
  verify(input: VerifyTokenInput): Promise<Verdict>;
}

export interface TokenServiceOptions {
  apis: ReadonlyMap<string, ApiRuntime>;
  verifier: Verifier;
  store: Store;
  clock: Clock;
  signing: SigningKeys;
}

/** Compact JWS: three base64url parts. Anything longer than this is not one of ours. */
const COMPACT = /^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+$/;
const MAX_TOKEN_LENGTH = 4096;
/** Tokens whose signature was checked already; the key behind each is still checked every time. */
const VERIFIED_CACHE_SIZE = 50_000;

/** What a checked token says; the signature and claims will not change, only the clock. */
interface CheckedToken {
  /** The audience it was checked for: a token of one API is never good for another. */
  api: string;
  keyId: string;
  jti: string;
  exp: number;
  scopes: ReadonlySet<string>;
}

/** A Client ID that no application can have: the key pair is then wrong, whichever half it is. */
const NO_APPLICATION = "app_none";

export function createTokenService(options: TokenServiceOptions): TokenService {
  const { apis, verifier, store, clock, signing } = options;
  const checked = new LRUCache<string, CheckedToken>({ max: VERIFIED_CACHE_SIZE });

  const tokensOf = (apiId: string): NonNullable<ApiConfig["tokens"]> => {
    const api = apis.get(apiId);
    if (!api) throw new KeygateError("UNKNOWN_API", `No API with id ${JSON.stringify(apiId)} is configured.`, 400);
    if (!api.config.tokens) throw new KeygateError("TOKENS_NOT_ENABLED", `API ${apiId} has no token endpoints; add tokens: to its config.`, 400);
    return api.config.tokens;
  };

  /** Checks signature and claims; a failure code, or what the token says. */
  async function check(apiId: string, token: string): Promise<CheckedToken | "INVALID_TOKEN" | "TOKEN_EXPIRED"> {
    const now = clock.now();
    const hit = checked.get(token);
    if (hit && hit.api === apiId) return hit.exp * 1000 > now ? hit : "TOKEN_EXPIRED";
    if (token.length > MAX_TOKEN_LENGTH || !COMPACT.test(token)) return "INVALID_TOKEN";
    const spec = tokensOf(apiId);
    let header: ReturnType<typeof decodeProtectedHeader>;
    try { header = decodeProtectedHeader(token); } catch { return "INVALID_TOKEN"; }
    if (header.alg !== spec.algorithm || typeof header.kid !== "string") return "INVALID_TOKEN";
    const key = await signing.byKid(header.kid);
    if (!key || key.alg !== spec.algorithm) return "INVALID_TOKEN";
    try {
      const { payload } = await jwtVerify(token, key.publicKey, {
        algorithms: [spec.algorithm], audience: apiId, issuer: spec.issuer, typ: "at+jwt",
        requiredClaims: ["exp", "iat", "jti", "sub"], currentDate: new Date(now),
      });
      const result: CheckedToken = {
        api: apiId, keyId: payload.sub!, jti: payload.jti!, exp: payload.exp!,
        scopes: new Set(typeof payload.scope === "string" && payload.scope !== "" ? payload.scope.split(" ") : []),
      };
      checked.set(token, result);
      return result;
    } catch (e) {
      return e instanceof joseErrors.JWTExpired ? "TOKEN_EXPIRED" : "INVALID_TOKEN";
    }
  }

  return {
    async issue(input) {
      const spec = tokensOf(input.api);
      const clientId = input.clientId?.trim();
      const key = input.key?.trim();
      if (!clientId || !key) return { ok: false, verdict: await verifier.verify({ api: input.api, key: null, ip: input.ip }) };
      const application = clientId.length <= 128 ? await store.getApplicationByClientId(clientId) : null;
      const verdict = await verifier.verify({
        api: input.api, key, ip: input.ip, scopes: input.scopes,
        applicationId: application && application.api === input.api ? application.id : NO_APPLICATION,
      });
      if (!verdict.valid) return { ok: false, verdict };

      const now = clock.now();
      const iat = Math.floor(now / 1000);
      // A token never outlives the key it was minted from.
      const keyExpiry = verdict.expiresAt ? Math.floor(Date.parse(verdict.expiresAt) / 1000) : Infinity;
      const exp = Math.min(iat + spec.ttlSeconds, keyExpiry);
      const scopes = input.scopes && input.scopes.length > 0 ? [...new Set(input.scopes)] : verdict.scopes ?? [];
      const signer = await signing.active(spec.algorithm);
      const token = await new SignJWT({
        scope: scopes.join(" "), acc: verdict.accountId, app: verdict.applicationId ?? undefined, env: verdict.environment,
        client_id: clientId,
      })
        .setProtectedHeader({ alg: spec.algorithm, kid: signer.kid, typ: "at+jwt" })
        .setIssuer(spec.issuer).setAudience(input.api).setSubject(verdict.keyId!)
        .setIssuedAt(iat).setExpirationTime(exp).setJti(randomBytes(16).toString("base64url"))
        .sign(signer.privateKey);
      return { ok: true, token, tokenType: "Bearer", expiresIn: exp - iat, expiresAt: new Date(exp * 1000).toISOString(), scopes, verdict };
    },

    async verify(input) {
      const result = await check(input.api, input.token);
      if (typeof result === "string") return verifier.deny({ api: input.api, ip: input.ip }, result);
      // The token may carry fewer scopes than its key (OAuth 2 `scope`): it needs them too.
      const missing = (input.scopes ?? []).filter((s) => !result.scopes.has(s));
      const anyOk = !input.anyScopes || input.anyScopes.length === 0 || input.anyScopes.some((s) => result.scopes.has(s));
      if (missing.length > 0 || !anyOk) {
        return { valid: false, code: "INSUFFICIENT_SCOPE", api: input.api, keyId: result.keyId, tokenId: result.jti, missingScopes: missing.length > 0 ? missing : [...input.anyScopes!] };
      }
      const verdict = await verifier.verify({ api: input.api, keyId: result.keyId, ip: input.ip, scopes: input.scopes, anyScopes: input.anyScopes });
      const out: Verdict = { ...verdict, tokenId: result.jti };
      if (out.scopes) out.scopes = out.scopes.filter((s) => result.scopes.has(s));
      return out;
    },
  };
}
