/**
 * What the Express, Fastify and Hono middleware share: reading the credential the API's
 * config names, verifying it in-process or through the service, and turning the verdict into
 * rate-limit headers or a denial in the API's error style. No framework is imported here, nor
 * at run time by the adapters: they only use the objects the framework hands them.
 */
import type { IncomingHttpHeaders } from "node:http";
import { Value } from "@sinclair/typebox/value";
import { ApiSchema } from "../config/schema.js";
import type { ApiConfig } from "../config/schema.js";
import { extractCredential, rateLimitHeaders } from "../http/authenticate.js";
import { renderError } from "../http/error-styles/index.js";
import type { Keygate } from "../keygate.js";
import type { Verdict } from "../verify/engine.js";
import { createRemoteVerifier } from "./remote.js";
import type { RemoteCacheOptions, VerifyingClient } from "./remote.js";

export type { RemoteCacheOptions, VerifyingClient } from "./remote.js";

/** The verdict of an admitted request: valid, and naming the key and account it resolved to. */
export type AuthenticatedVerdict = Verdict & {
  valid: true;
  code: "VALID";
  keyId: string;
  accountId: string;
  environment: string;
  scopes: string[];
};

/**
 * How the remote middleware should read and answer for an API the service knows: the fields
 * of its entry in keygate.yaml that matter at the edge. Omitted fields take the config's
 * defaults (bearer credentials, RFC 9457 problems, X-RateLimit-* headers). An `ApiConfig` from
 * `loadConfigFile(...)` fits as it is.
 */
export interface ApiSettings {
  id: string;
  credentials?: ApiConfig["credentials"] | undefined;
  errorStyle?: ApiConfig["errorStyle"] | undefined;
  errorCodes?: ApiConfig["errorCodes"] | undefined;
  rateLimitHeaders?: Partial<ApiConfig["rateLimitHeaders"]> | undefined;
}

interface CommonOptions {
  /**
   * Scopes every request must hold, checked within the verification (so a request lacking one
   * uses no unit of the key's rate limit). Routes add theirs with `requireScopes`.
   */
  scopes?: readonly string[] | undefined;
}

/** Verification in this process, by the library: no network hop. */
export interface InProcessOptions extends CommonOptions {
  keygate: Keygate;
  /** The API's `id` in the keygate config. */
  api: string;
}

/** Verification by a keygate service, through the SDK's `keys.verify`. */
export interface RemoteOptions extends CommonOptions {
  client: VerifyingClient;
  /** The API's id (with default credentials and error style), or its settings. */
  api: string | ApiSettings;
  /** Reuse VALID verdicts for a few seconds; off by default. `true` is `{ ttlMs: 5000 }`. */
  cache?: boolean | RemoteCacheOptions | undefined;
  /** Per-verification timeout, overriding the client's `timeoutMs`. */
  timeoutMs?: number | undefined;
}

/** Either mode; the presence of `keygate` or `client` tells which. */
export type KeygateMiddlewareOptions = InProcessOptions | RemoteOptions;

/** One request, as the gate needs to see it. */
export interface GateRequest {
  headers: IncomingHttpHeaders;
  /** The client address by the framework's trusted-proxy rules; null when unknown. */
  ip: string | null;
  requestId: string;
  method: string;
  /** Without the query string. */
  path: string;
}

/** A response refusing the request, in the API's error style, its body already serialized. */
export interface Denial {
  ok: false;
  verdict: Verdict;
  status: number;
  headers: Record<string, string>;
  contentType: string;
  body: string;
}

/** The gate's answer: admit with these (rate-limit) headers, or send the denial. */
export type GateOutcome = { ok: true; verdict: AuthenticatedVerdict; headers: Record<string, string> } | Denial;

export interface Gate {
  readonly api: ApiConfig;
  /** Lower-case names of the headers the API's credential schemes read. */
  readonly credentialHeaders: readonly string[];
  authenticate(request: GateRequest): Promise<GateOutcome>;
  /** A denial when `verdict` lacks one of `scopes`; null when it holds them all. */
  requireScopes(verdict: AuthenticatedVerdict, scopes: readonly string[], request: Pick<GateRequest, "ip" | "requestId">): Denial | null;
}

/** Completes API settings with the config's defaults and checks them as keygate.yaml is checked. */
function apiConfigOf(settings: ApiSettings, where: string): ApiConfig {
  const value = Value.Default(ApiSchema, Value.Clone(settings));
  const error = Value.Errors(ApiSchema, value).First();
  if (error) throw new TypeError(`${where}: api${error.path.replace(/\//g, ".")}: ${error.message}`);
  return value as ApiConfig;
}

/** Frameworks' request ids are used when valid; otherwise one is made, as the service makes them. */
const REQUEST_ID = /^[A-Za-z0-9._:-]{1,128}$/;

export function requestIdFrom(given: unknown): string {
  if (typeof given === "string" && REQUEST_ID.test(given)) return given;
  const bytes = globalThis.crypto.getRandomValues(new Uint8Array(12));
  return `req_${btoa(String.fromCharCode(...bytes)).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "")}`;
}

/**
 * The gate for one API. Throws at start-up, not per request, for an unknown API, invalid
 * settings, or a remote gate for an API that accepts JWTs (the verify API checks keys only;
 * verify such APIs in-process).
 */
export function createGate(options: KeygateMiddlewareOptions, where: string): Gate {
  const scopes = options.scopes && options.scopes.length > 0 ? [...options.scopes] : undefined;
  let api: ApiConfig;
  let verify: (key: string | null, scheme: string | null, identity: string | undefined, request: GateRequest) => Promise<Verdict>;
  /** The clock the verdicts were computed with: keygate's in-process, the wall clock for a service. */
  let now: () => number = Date.now;

  if ("keygate" in options && options.keygate) {
    const { keygate } = options;
    const runtime = keygate.apis.get(options.api);
    if (!runtime) throw new TypeError(`${where}: no API ${JSON.stringify(options.api)} in the keygate config; known: ${[...keygate.apis.keys()].join(", ")}`);
    api = runtime.config;
    now = () => keygate.clock.now();
    const id = api.id;
    verify = (key, scheme, identity, request) => {
      const ip = request.ip ?? undefined;
      if (scheme === "jwt") return keygate.tokens.verify({ api: id, token: key!, ip, scopes });
      return keygate.verifyKey(
        { api: id, key, identity, ip, scopes },
        { source: "library", requestId: request.requestId, method: request.method, path: request.path },
      );
    };
  } else if ("client" in options && options.client) {
    api = apiConfigOf(typeof options.api === "string" ? { id: options.api } : options.api, where);
    if (api.credentials.some((c) => c.type === "jwt")) {
      throw new TypeError(`${where}: API ${api.id} accepts JWTs, which POST /v1/keys/verify cannot check; verify it in-process ({ keygate, api })`);
    }
    const cache = options.cache === true ? {} : options.cache || null;
    const remote = createRemoteVerifier(options.client, cache);
    const id = api.id;
    const timeoutMs = options.timeoutMs;
    verify = async (key, _scheme, identity, request) => {
      // Nothing presented: the service would answer this without looking anything up.
      if (key === null || key === "") return { valid: false, code: "MISSING_CREDENTIALS", api: id };
      const input = { api: id, key, ...(identity !== undefined ? { identity } : {}), ...(request.ip ? { ip: request.ip } : {}), ...(scopes ? { scopes } : {}) };
      return remote.verify(input, { requestId: request.requestId, timeoutMs });
    };
  } else {
    throw new TypeError(`${where}: pass { keygate, api } to verify in-process, or { client, api } to verify through a keygate service`);
  }

  const bearer = api.credentials.some((c) => c.type === "bearer" || c.type === "jwt");
  const credentialHeaders = [...new Set(api.credentials.flatMap((c) => {
    switch (c.type) {
      case "bearer": case "jwt": return ["authorization"];
      case "header": return [c.name.toLowerCase()];
      case "identity": return [c.identityHeader.toLowerCase(), c.secretHeader.toLowerCase()];
    }
  }))];

  const deny = (verdict: Verdict, request: Pick<GateRequest, "ip" | "requestId">, limits: Record<string, string>): Denial => {
    const r = renderError(api, verdict, { requestId: request.requestId, ip: request.ip, bearer });
    return { ok: false, verdict, status: r.status, headers: { ...r.headers, ...limits }, contentType: r.contentType, body: JSON.stringify(r.body) };
  };

  return {
    api,
    credentialHeaders,
    async authenticate(request) {
      const credential = extractCredential(api, request.headers);
      const verdict = await verify(credential.key, credential.scheme, credential.scheme === "identity" ? credential.identity : undefined, request);
      const limits = rateLimitHeaders(api, verdict, now());
      if (!verdict.valid) return deny(verdict, request, limits);
      return { ok: true, verdict: verdict as AuthenticatedVerdict, headers: limits };
    },
    requireScopes(verdict, needed, request) {
      const missing = needed.filter((s) => !verdict.scopes.includes(s));
      if (missing.length === 0) return null;
      // The rate-limit headers went out with the admission already; the denial repeats them.
      const denied: Verdict = { ...verdict, valid: false, code: "INSUFFICIENT_SCOPE", missingScopes: missing };
      return deny(denied, request, rateLimitHeaders(api, denied, now()));
    },
  };
}

/** Per request: the gate that admitted it, the verdict, and what its denials need. */
export interface Admission {
  gate: Gate;
  verdict: AuthenticatedVerdict;
  request: Pick<GateRequest, "ip" | "requestId">;
}

// Keyed by the framework's request (or Hono context) object, so nothing is added to it but the documented verdict.
const admissions = new WeakMap<object, Admission>();

export const admit = (target: object, admission: Admission): void => { admissions.set(target, admission); };
export const admissionOf = (target: object): Admission | undefined => admissions.get(target);

/** `requireScopes()` with no scope is surely a mistake: refused when the route is declared. */
export function checkScopeList(scopes: readonly string[], where: string): string[] {
  if (scopes.length === 0 || scopes.some((s) => typeof s !== "string" || s === "")) {
    throw new TypeError(`${where}: requireScopes needs one or more non-empty scope names`);
  }
  return [...scopes];
}

export const NOT_AUTHENTICATED = (where: string): Error =>
  new Error(`${where}: requireScopes ran on a request keygateAuth did not admit; register keygateAuth before it`);
