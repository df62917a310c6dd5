import type { FastifyInstance, FastifyRequest } from "fastify";
import type { Keygate } from "../../keygate.js";
import { KeygateError } from "../../lib/errors.js";
import { authenticateRequest, identityHeaders, matchRoute, rateLimitHeaders } from "../authenticate.js";
import type { CompiledRoute } from "../authenticate.js";
import { renderError, renderPlainError } from "../error-styles/index.js";
import { trackVerification } from "../../analytics/http.js";
import { isPromise } from "../../lib/promise.js";

/** JSON safe for a header value: nginx copies it into a response body verbatim. */
const headerJson = (body: unknown): string =>
  JSON.stringify(body).replace(/[\u007f-\uffff]/g, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, "0")}`);

const first = (v: string | string[] | undefined): string | undefined => (Array.isArray(v) ? v[0] : v);

/** A URI's path, percent-decoded where that is possible, for comparing two proxies' views. */
function comparablePath(uri: string): string {
  const path = uri.split("?")[0] || "/";
  try { return decodeURIComponent(path); } catch { return path; }
}

/**
 * The original request a proxy asks about, from whichever convention it uses, or null when two
 * conventions name different requests. Proxies pass the client's own headers on (Traefik all of
 * them, nginx all but the ones it sets), so behind Traefik a client could add nginx's
 * X-Original-URI, and behind nginx Traefik's X-Forwarded-Uri: believing either over what the
 * proxy itself set would let a client choose the route, and so the scopes, it is checked for.
 * Nothing tells keygate which proxy asks, so disagreement is refused rather than resolved.
 */
function originalRequest(request: FastifyRequest, rest: string | undefined): { method: string; path: string } | null {
  const h = request.headers;
  const nginxUri = first(h["x-original-uri"]);
  const traefikUri = first(h["x-forwarded-uri"]);
  // Envoy's path_prefix: the original path follows /_auth/:api, asked with the original method.
  const envoyUri = rest !== undefined ? `/${rest}` : undefined;
  const uris = [nginxUri, traefikUri, envoyUri].filter((u): u is string => u !== undefined);
  const methods = [first(h["x-original-method"]), first(h["x-forwarded-method"]), envoyUri !== undefined ? request.method : undefined]
    .filter((m): m is string => m !== undefined).map((m) => m.toUpperCase());
  if (new Set(uris.map(comparablePath)).size > 1 || new Set(methods).size > 1) return null;
  return { method: methods[0] ?? request.method.toUpperCase(), path: (uris[0] ?? "/").split("?")[0] || "/" };
}

/** Whether the asker is nginx `auth_request`, which turns any status but 401/403 into a 500. */
function fromNginx(request: FastifyRequest): boolean {
  const mode = first(request.headers["x-keygate-auth-mode"]);
  return mode ? mode === "nginx" : first(request.headers["x-original-uri"]) !== undefined;
}

/**
 * `/_auth/:api` for nginx `auth_request`, Traefik ForwardAuth and Envoy ext_authz (HTTP; the
 * original path follows the prefix). 200 with identity and rate-limit headers to copy, or the
 * API's own error. nginx turns any auth status but 401/403 into a 500, so for nginx a 429 is
 * sent as 403 with the real status and body in `X-Keygate-Status` / `X-Keygate-Body` for the
 * `error_page` recipe in docs/forward-auth.md.
 */
export function registerForwardAuth(app: FastifyInstance, keygate: Keygate, routes: ReadonlyMap<string, CompiledRoute[] | null>): void {
  app.addContentTypeParser("*", { parseAs: "buffer", bodyLimit: 1024 * 1024 }, (_req, body, done) => done(null, body));

  const handler = async (request: FastifyRequest<{ Params: { api: string; "*"?: string } }>, reply: import("fastify").FastifyReply) => {
    const runtime = keygate.apis.get(request.params.api);
    if (!runtime) throw new KeygateError("UNKNOWN_API", `No API with id ${JSON.stringify(request.params.api)} is configured.`, 404);
    const api = runtime.config;
    const ctx = { requestId: request.id, ip: request.ip, bearer: api.credentials.some((c) => c.type === "bearer" || c.type === "jwt") };
    const original = originalRequest(request, request.params["*"]);
    const compiled = routes.get(api.id) ?? null;
    const route = original && compiled ? matchRoute(compiled, original.method, original.path) : null;

    let status: number;
    let headers: Record<string, string>;
    let body: unknown;
    let contentType = "application/json; charset=utf-8";
    if (!original) {
      const r = renderPlainError(api, "AMBIGUOUS_ORIGINAL_REQUEST", 400,
        "The proxy's headers name more than one original request (X-Original-URI/-Method, X-Forwarded-Uri/-Method, the path after /_auth/:api); keygate will not guess which to authorize.", ctx);
      ({ status, headers, body, contentType } = r);
    } else if (compiled && !route) {
      const r = renderPlainError(api, "ROUTE_NOT_FOUND", 404, `No route ${original.method} ${original.path}.`, ctx);
      ({ status, headers, body, contentType } = r);
    } else if (route?.config.public) {
      reply.code(200).header("x-keygate-request-id", request.id);
      return reply.send();
    } else {
      let parsed: unknown;
      if (Buffer.isBuffer(request.body) && request.body.length > 0) {
        try { parsed = JSON.parse(request.body.toString("utf8")); } catch { parsed = undefined; }
      }
      trackVerification(keygate, request, reply, "forward-auth", original);
      const authenticated = authenticateRequest(keygate, { api, headers: request.headers, ip: request.ip, route, body: parsed });
      const { verdict } = isPromise(authenticated) ? await authenticated : authenticated;
      const rl = rateLimitHeaders(api, verdict, keygate.clock.now());
      if (verdict.valid) {
        return reply.code(200).headers({ ...identityHeaders(verdict, request.id), ...rl }).send();
      }
      const r = renderError(api, verdict, ctx);
      status = r.status;
      headers = { ...r.headers, ...rl };
      body = r.body;
      contentType = r.contentType;
    }
    if (fromNginx(request)) {
      headers["x-keygate-status"] = String(status);
      headers["x-keygate-body"] = headerJson(body);
      if (status !== 401 && status !== 403) status = 403;
    }
    return reply.code(status).headers(headers).type(contentType).send(body);
  };

  app.all("/_auth/:api", handler);
  app.all("/_auth/:api/*", handler);
}
