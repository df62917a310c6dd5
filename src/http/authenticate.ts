import type { IncomingHttpHeaders } from "node:http";
import type { ApiConfig } from "../config/schema.js";
import type { Keygate } from "../keygate.js";
import type { Verdict } from "../verify/engine.js";
import { isPromise } from "../lib/promise.js";
import { bearerToken } from "./bearer.js";

type RouteConfig = NonNullable<ApiConfig["routes"]>[number];

/** A route of the config compiled to a matcher. */
export interface CompiledRoute {
  config: RouteConfig;
  methods: ReadonlySet<string> | null;
  pattern: RegExp;
}

/** Compiles `/orders/:id` and `/files/*` into anchored regular expressions, once at start-up. */
export function compileRoutes(routes: ApiConfig["routes"]): CompiledRoute[] | null {
  if (!routes) return null;
  return routes.map((config) => {
    const parts = config.path.split("/").map((seg, i, all) => {
      if (seg === "*" && i === all.length - 1) return ".*";
      if (seg.startsWith(":")) return "[^/]+";
      return seg.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");
    });
    return {
      config,
      methods: config.methods.includes("*") ? null : new Set(config.methods),
      pattern: new RegExp(`^${parts.join("/")}/?$`),
    };
  });
}

/** The first route matching `method` and `path` (no query string), or null. */
export function matchRoute(routes: readonly CompiledRoute[], method: string, path: string): CompiledRoute | null {
  for (const r of routes) {
    if ((r.methods === null || r.methods.has(method) || (method === "HEAD" && r.methods.has("GET"))) && r.pattern.test(path)) return r;
  }
  return null;
}

/** What the client presented, by the first of the API's schemes that found anything. */
export interface PresentedCredential {
  key: string | null;
  identity?: string;
  scheme: ApiConfig["credentials"][number]["type"] | null;
}

/** A compact JWS (three base64url parts, a JSON header first): a JWT rather than an API key. */
const looksLikeJwt = (token: string): boolean => token.startsWith("eyJ") && /^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+$/.test(token);

const header = (headers: IncomingHttpHeaders, name: string): string | undefined => {
  const v = headers[name.toLowerCase()];
  return Array.isArray(v) ? v[0] : v;
};

/**
 * Reads the credential from the request headers. Header names are case-insensitive, as HTTP
 * says (the airtime v1 seed warns they are case-sensitive; any HTTP client sends them as typed
 * and keygate accepts either). A scheme that finds half a credential (an identity without
 * its token) yields no key, so the verdict is MISSING_CREDENTIALS.
 */
export function extractCredential(api: ApiConfig, headers: IncomingHttpHeaders): PresentedCredential {
  const jwt = api.credentials.some((c) => c.type === "jwt");
  for (const scheme of api.credentials) {
    switch (scheme.type) {
      case "bearer":
      case "jwt": {
        const auth = header(headers, "authorization");
        if (auth === undefined) break;
        const token = bearerToken(auth);
        if (token === null) break;
        // One Authorization header, two schemes: a JWT goes to the token check, a key to the key check.
        if (scheme.type === "jwt" || (jwt && looksLikeJwt(token))) return { key: token, scheme: "jwt" };
        return { key: token, scheme: "bearer" };
      }
      case "header": {
        const value = header(headers, scheme.name)?.trim();
        if (value) return { key: value, scheme: "header" };
        break;
      }
      case "identity": {
        const identity = header(headers, scheme.identityHeader)?.trim();
        const secret = header(headers, scheme.secretHeader)?.trim();
        if (identity || secret) return { key: identity && secret ? secret : null, identity: identity ?? "", scheme: "identity" };
        break;
      }
    }
  }
  return { key: null, scheme: null };
}

const NO_SCOPES: { scopes: string[] } = Object.freeze({ scopes: Object.freeze([]) as unknown as string[] });
/** A route's needs when its body does not choose them: the same object every time. */
const fixedNeeds = new WeakMap<CompiledRoute, { scopes: string[]; anyScopes?: string[] }>();

/** The scopes a request needs under its route: all of `scopes`, and one of `anyScopes`. */
export function requiredScopes(route: CompiledRoute | null, body: unknown): { scopes: string[]; anyScopes?: string[] } {
  if (!route) return NO_SCOPES;
  if (!route.config.scopeFromBody) {
    let need = fixedNeeds.get(route);
    if (need === undefined) {
      const { scopes, anyScopes } = route.config;
      need = Object.freeze(anyScopes ? { scopes: Object.freeze([...scopes]) as string[], anyScopes: Object.freeze([...anyScopes]) as string[] } : { scopes: Object.freeze([...scopes]) as string[] });
      fixedNeeds.set(route, need);
    }
    return need;
  }
  const { scopes, anyScopes, scopeFromBody } = route.config;
  const out: { scopes: string[]; anyScopes?: string[] } = { scopes: [...scopes] };
  if (anyScopes) out.anyScopes = anyScopes;
  if (scopeFromBody) {
    const value = body && typeof body === "object" ? (body as Record<string, unknown>)[scopeFromBody.field] : undefined;
    const mapped = typeof value === "string" ? scopeFromBody.map[value] : undefined;
    // An unknown or missing value must not pass with fewer scopes than any known one needs.
    if (mapped) out.scopes.push(mapped);
    else out.scopes.push(...new Set(Object.values(scopeFromBody.map)));
  }
  return out;
}

export interface AuthenticateInput {
  api: ApiConfig;
  headers: IncomingHttpHeaders;
  ip: string | null;
  route: CompiledRoute | null;
  body?: unknown;
}

/** What {@link authenticateRequest} found. */
export interface Authenticated { verdict: Verdict; credential: PresentedCredential }

/**
 * Extracts, then verifies: the whole pipeline for one HTTP request. Synchronous when the
 * verification is (a cached API key, memory limits): callers skip the await then.
 */
export function authenticateRequest(keygate: Keygate, input: AuthenticateInput): Authenticated | Promise<Authenticated> {
  const credential = extractCredential(input.api, input.headers);
  const need = requiredScopes(input.route, input.body);
  if (credential.scheme === "jwt") {
    return keygate.tokens.verify({ api: input.api.id, token: credential.key!, ip: input.ip ?? undefined, scopes: need.scopes, anyScopes: need.anyScopes })
      .then((verdict) => ({ verdict, credential }));
  }
  let verdict: Verdict | Promise<Verdict>;
  try {
    verdict = keygate.verifyKeyNow({
      api: input.api.id,
      key: credential.key,
      identity: credential.scheme === "identity" ? credential.identity : undefined,
      ip: input.ip ?? undefined,
      scopes: need.scopes,
      anyScopes: need.anyScopes,
    });
  } catch (e) {
    return Promise.reject(e);
  }
  return isPromise(verdict) ? verdict.then((v) => ({ verdict: v, credential })) : { verdict, credential };
}

/** Headers an authenticated request carries upstream; clients' own copies are dropped. */
export const IDENTITY_HEADERS = ["x-keygate-key-id", "x-keygate-account-id", "x-keygate-application-id", "x-keygate-scopes", "x-keygate-environment", "x-keygate-request-id"] as const;

const pctEncode = (c: string): string => [...Buffer.from(c, "utf8")].map((b) => `%${b.toString(16).toUpperCase().padStart(2, "0")}`).join("");

/**
 * A scope as one token of the space-separated `X-Keygate-Scopes`. Scope names are free text
 * when an API declares none; a space would split one scope in two, and a character outside
 * Latin-1 or a control character cannot be sent in a header at all (the request would fail).
 * So everything but the characters scopes are usually made of is percent-encoded as UTF-8:
 * `orders:read` stays as it is, `a b` becomes `a%20b`.
 */
export const encodeScope = (scope: string): string => scope.replace(/[^A-Za-z0-9\-._~:/*!$&'()+,;=@]/gu, pctEncode);

// A verdict's scopes are its cached key's (frozen) list: encoded once per list, not per request.
const encodedScopes = new WeakMap<readonly string[], string>();
const scopesHeader = (scopes: readonly string[]): string => {
  let value = encodedScopes.get(scopes);
  if (value === undefined) {
    value = scopes.map(encodeScope).join(" ");
    if (Object.isFrozen(scopes)) encodedScopes.set(scopes, value);
  }
  return value;
};

/**
 * The identity headers of a valid verdict, for the upstream (gateway) or for the proxy to copy
 * (forward-auth): key, account, application (when the key has one), scopes (space-separated,
 * see {@link encodeScope}), environment, and the request id.
 *
 * @example
 * identityHeaders(verdict, "req_1");
 * // { "x-keygate-request-id": "req_1", "x-keygate-key-id": "key_…", "x-keygate-scopes": "orders:read orders:write", … }
 */
export function identityHeaders(verdict: Verdict, requestId: string): Record<string, string> {
  const h: Record<string, string> = { "x-keygate-request-id": requestId };
  if (verdict.keyId) h["x-keygate-key-id"] = verdict.keyId;
  if (verdict.accountId) h["x-keygate-account-id"] = verdict.accountId;
  if (verdict.applicationId) h["x-keygate-application-id"] = verdict.applicationId;
  if (verdict.scopes) h["x-keygate-scopes"] = scopesHeader(verdict.scopes);
  if (verdict.environment) h["x-keygate-environment"] = verdict.environment;
  return h;
}

/**
 * X-RateLimit-* (epoch-seconds reset, as the email seed documents) and, optionally, the IETF
 * fields, for a verdict that went through the rate limit; none for one refused before it.
 * `now` (ms) gives the IETF `t`, the seconds left in the window.
 *
 * @example
 * reply.headers(rateLimitHeaders(api, verdict, Date.now()));
 * // x-ratelimit-limit: 1000, x-ratelimit-remaining: 998, x-ratelimit-reset: 1767229200
 */
export function rateLimitHeaders(api: ApiConfig, verdict: Verdict, now: number): Record<string, string> {
  const rl = verdict.ratelimit;
  if (!rl) return {};
  const h: Record<string, string> = {};
  if (api.rateLimitHeaders.xRateLimit) {
    h["x-ratelimit-limit"] = String(rl.limit);
    h["x-ratelimit-remaining"] = String(rl.remaining);
    h["x-ratelimit-reset"] = String(rl.reset);
  }
  if (api.rateLimitHeaders.ietf) {
    // draft-ietf-httpapi-ratelimit-headers: a named policy and its current state.
    h["ratelimit-policy"] = `"default";q=${rl.limit};w=${rl.window}`;
    h["ratelimit"] = `"default";r=${rl.remaining};t=${Math.max(0, rl.reset - Math.floor(now / 1000))}`;
  }
  return h;
}
