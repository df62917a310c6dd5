/**
 * Gateway mode: keygate as the reverse proxy in front of an API. Each API with an `upstream`
 * is served under its `pathPrefix`: authenticate, authorize (route → scopes), rate-limit, then
 * forward with identity headers and without the credential. Bodies stream both ways; only a
 * route that takes its scope from a JSON body field buffers the request, up to
 * `server.bodyLimitBytes`. The proxying itself is @fastify/reply-from over an undici pool per
 * API (keep-alive to the upstream).
 */
import { requestIdOf } from "../request-id.js";
import type { IncomingHttpHeaders } from "node:http";
import type { Readable } from "node:stream";
import Fastify, { LogController } from "fastify";
import type { FastifyBaseLogger, FastifyError, FastifyInstance, FastifyReply, FastifyRequest } from "fastify";
import replyFrom from "@fastify/reply-from";
import type { Logger } from "pino";
import type { ApiConfig, KeygateConfig } from "../../config/schema.js";
import type { Keygate } from "../../keygate.js";
import { ConfigError, KeygateError } from "../../lib/errors.js";
import { isPromise } from "../../lib/promise.js";
import { authenticateRequest, compileRoutes, identityHeaders, matchRoute, rateLimitHeaders } from "../authenticate.js";
import type { CompiledRoute } from "../authenticate.js";
import { renderError, renderPlainError } from "../error-styles/index.js";
import type { RenderContext, RenderedError } from "../error-styles/index.js";
import { problem, sendProblem } from "../problem.js";
import { registerIntrospection } from "../routes/introspection.js";
import { registerTokenRoutes } from "../routes/tokens.js";
import { trackVerification } from "../../analytics/http.js";
import { warmNextTick } from "../../lib/warm-next-tick.js";

/**
 * Paths keygate serves itself on its main port. On a shared port no gateway route or prefix
 * may reach into them: the request would silently go to keygate instead of the upstream.
 */
export const RESERVED_PATHS = [
  "/v1", "/healthz", "/readyz", "/openapi.json", "/docs", "/_auth", "/.well-known", "/secret-scanning", "/portal", "/metrics",
] as const;

/** The APIs keygate proxies: those with an `upstream`. */
export const gatewayApis = (config: KeygateConfig): ApiConfig[] => config.apis.filter((a) => a.upstream !== undefined);

/** `/v2/` → `/v2`, `/` → `` (the root). */
const trimPrefix = (prefix: string): string => prefix.replace(/\/+$/, "");

/**
 * Whether a route pattern (`/orders/:id`, `/files/*`) matches `reserved` itself or any path
 * below it. `:param` matches one segment, a trailing `*` everything, as in compileRoutes.
 */
export function reachesInto(pattern: string, reserved: string): boolean {
  const p = pattern.split("/").slice(1);
  const r = reserved.split("/").slice(1);
  for (let i = 0; i < r.length; i++) {
    const seg = p[i];
    if (seg === undefined) return false;
    if (seg === "*" && i === p.length - 1) return true;
    if (seg.startsWith(":") && seg.length > 1 && r[i] !== "") continue;
    if (seg !== r[i]) return false;
  }
  return true;
}

/** Where a request to this API comes in: its routes, or everything under its prefix. */
const reachOf = (api: ApiConfig): Array<{ pattern: string; field: string; what: string }> =>
  api.routes
    ? api.routes.map((r, i) => ({ pattern: r.path, field: `routes[${i}]`, what: `${r.methods.join(",")} ${r.path}` }))
    : [{ pattern: `${trimPrefix(api.pathPrefix)}/*`, field: "pathPrefix", what: `${JSON.stringify(api.pathPrefix)} (no routes: every path under it)` }];

/**
 * The endpoints keygate answers itself for an API's clients, on the main port and on the
 * gateway port alike: key introspection and the token endpoints.
 */
const clientEndpointsOf = (api: ApiConfig): Array<{ path: string; what: string }> => [
  ...(api.introspection ? [{ path: api.introspection.path, what: "introspection.path" }] : []),
  ...(api.tokens?.endpoints ?? []).map((e, i) => ({ path: e.path, what: `tokens.endpoints[${i}].path` })),
];

/**
 * Cross-checks the gateway part of a config, beyond what its schema can say, and throws a
 * {@link ConfigError} naming the API and the field:
 * - `server.gatewayPort`, when set, is not `server.port`;
 * - an upstream per environment covers every environment of the API's keys (or has `default`);
 * - upstream URLs carry no credentials, query or fragment;
 * - no two gateway APIs share a `pathPrefix`, and every route lies under its API's prefix;
 * - no route or prefix reaches into another API's introspection or token endpoint, which
 *   keygate answers itself on either port;
 * - on a shared port (no `server.gatewayPort`), no route or prefix reaches into
 *   {@link RESERVED_PATHS}.
 *
 * @example
 * checkGatewayConfig(keygate.config); // at start, before listening
 */
export function checkGatewayConfig(config: KeygateConfig): void {
  const shared = config.server.gatewayPort === undefined;
  if (config.server.gatewayPort !== undefined && config.server.gatewayPort !== 0 && config.server.gatewayPort === config.server.port) {
    throw new ConfigError(
      `server.gatewayPort: ${config.server.gatewayPort} is also server.port; give the gateway a port of its own, or leave gatewayPort out to share server.port`,
      { field: "server.gatewayPort" },
    );
  }
  const prefixes = new Map<string, string>();
  config.apis.forEach((api, index) => {
    if (api.upstream === undefined) return;
    const where = `apis[${index}] (${api.id})`;
    const fail = (field: string, message: string): never => {
      throw new ConfigError(`${where}.${field}: ${message}`, { api: api.id, field });
    };

    const urls = typeof api.upstream === "string" ? { "": api.upstream } : api.upstream;
    for (const [env, url] of Object.entries(urls)) {
      const field = env ? `upstream.${env}` : "upstream";
      let u: URL;
      try { u = new URL(url); } catch { return fail(field, `${JSON.stringify(url)} is not a URL`); }
      if (u.username || u.password) fail(field, "credentials in the upstream URL are not supported; send them from the upstream's own configuration");
      if (u.search || u.hash) fail(field, "an upstream URL cannot have a query string or fragment");
    }
    if (typeof api.upstream !== "string") {
      const envs = api.keyFormat.environments;
      for (const env of Object.keys(api.upstream)) {
        if (env !== "default" && !envs.includes(env)) fail(`upstream.${env}`, `${JSON.stringify(env)} is not one of the API's key environments (${envs.join(", ")}) nor "default"`);
      }
      if (api.upstream.default === undefined) {
        const missing = envs.filter((e) => api.upstream && typeof api.upstream !== "string" && api.upstream[e] === undefined);
        if (missing.length) fail("upstream", `no upstream for the key environment(s) ${missing.join(", ")}; add them or a "default" entry`);
      }
    }

    const prefix = trimPrefix(api.pathPrefix);
    const other = prefixes.get(prefix);
    if (other !== undefined) fail("pathPrefix", `${JSON.stringify(api.pathPrefix)} is also the pathPrefix of API ${other}; each gateway API needs its own`);
    prefixes.set(prefix, api.id);
    if (prefix !== "") {
      api.routes?.forEach((r, i) => {
        if (!reachesInto(r.path, prefix)) fail(`routes[${i}]`, `${r.path} lies outside pathPrefix ${JSON.stringify(api.pathPrefix)} and could never be reached`);
      });
    }

    for (const { pattern, field, what } of reachOf(api)) {
      for (const other of config.apis) {
        if (other === api) continue; // an API's own endpoints are meant to be answered by keygate
        const hit = clientEndpointsOf(other).find((e) => reachesInto(pattern, e.path));
        if (hit) {
          throw new ConfigError(
            `${where}.${field}: ${what} reaches ${hit.path}, the ${hit.what} of API ${other.id}, which keygate answers itself; ` +
            "requests for it would never reach this API's upstream. Narrow the routes or pathPrefix, or move that endpoint",
            { api: api.id, field, endpoint: hit.path, of: other.id },
          );
        }
      }
      if (!shared) continue;
      const reserved = RESERVED_PATHS.find((r) => reachesInto(pattern, r));
      if (reserved) {
        throw new ConfigError(
          `${where}.${field}: ${what} collides with keygate's own ${reserved} on the shared port; ` +
          "narrow the routes or pathPrefix, or serve the gateway on its own port with server.gatewayPort",
          { api: api.id, field, reserved },
        );
      }
    }
  });
}

/** An upstream split for reply-from: the origin to connect to and a base path to prepend. */
interface Upstream {
  origin: string;
  basePath: string;
}

const toUpstream = (url: string): Upstream => {
  const u = new URL(url);
  return { origin: u.origin, basePath: trimPrefix(u.pathname) };
};

/** The upstream for a key's environment; for public routes (no key), `default` or the first environment's. */
function upstreamsOf(api: ApiConfig): (environment: string | undefined) => Upstream {
  const spec = api.upstream!;
  if (typeof spec === "string") {
    const one = toUpstream(spec);
    return () => one;
  }
  const byEnv = new Map(Object.entries(spec).map(([env, url]) => [env, toUpstream(url)]));
  const fallback = byEnv.get("default") ?? byEnv.get(api.keyFormat.environments[0]!) ?? [...byEnv.values()][0]!;
  return (env) => (env !== undefined ? byEnv.get(env) : undefined) ?? fallback;
}

// Hop-by-hop fields (RFC 9110 §7.6.1) and those undici refuses to send: never forwarded.
const HOP_BY_HOP = ["connection", "keep-alive", "proxy-connection", "transfer-encoding", "upgrade", "te", "trailer", "expect", "http2-settings"];

/** The header names that carry the API's credential, lower-cased: never sent upstream. */
function credentialHeaders(api: ApiConfig): string[] {
  const names = new Set<string>();
  for (const c of api.credentials) {
    switch (c.type) {
      case "header": names.add(c.name.toLowerCase()); break;
      case "identity": names.add(c.identityHeader.toLowerCase()); names.add(c.secretHeader.toLowerCase()); break;
      // bearer, and any scheme carried in Authorization (a JWT).
      default: names.add("authorization");
    }
  }
  return [...names];
}

const first = (v: string | string[] | undefined): string | undefined => (Array.isArray(v) ? v[0] : v);

/** Reads a request body of at most `limit` bytes; null when it is longer. */
function readBounded(stream: Readable, limit: number): Promise<Buffer | null> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    const done = (result: Buffer | null): void => {
      stream.off("data", onData).off("end", onEnd).off("error", onError).off("close", onClose);
      resolve(result);
    };
    const onData = (chunk: Buffer): void => {
      size += chunk.length;
      if (size > limit) { stream.pause(); done(null); return; }
      chunks.push(chunk);
    };
    const onEnd = (): void => done(Buffer.concat(chunks, size));
    // The client's doing (it went away mid-body), not keygate's: a 400 nobody will read, no error log.
    const onError = (e: Error): void => { stream.off("data", onData).off("end", onEnd).off("close", onClose); reject(Object.assign(e, { statusCode: 400 })); };
    const onClose = (): void => onError(new Error("The client closed the connection before sending the whole body."));
    stream.on("data", onData).on("end", onEnd).on("error", onError).on("close", onClose);
  });
}

const isStream = (body: unknown): body is Readable => typeof body === "object" && body !== null && typeof (body as Readable).pipe === "function";

function send(reply: FastifyReply, r: RenderedError, extra: Record<string, string> = {}): FastifyReply {
  return reply.code(r.status).headers({ ...r.headers, ...extra }).type(r.contentType).send(r.body);
}

/** Serves one API under its prefix, in its own plugin scope: its own pool, parsers and error style. */
async function registerApi(app: FastifyInstance, keygate: Keygate, api: ApiConfig, compiled: CompiledRoute[] | null): Promise<void> {
  const upstreamFor = upstreamsOf(api);
  const strip = new Set([...HOP_BY_HOP, ...credentialHeaders(api)]);
  const bearer = api.credentials.some((c) => c.type === "bearer" || c.type === "jwt");
  const bodyLimit = keygate.config.server.bodyLimitBytes;
  const timeout = api.upstreamTimeoutMs;
  const ctxOf = (request: FastifyRequest): RenderContext => ({ requestId: request.id, ip: request.ip, bearer });

  const undici = {
    connections: 256,
    pipelining: 1,
    keepAliveTimeout: 30_000,
    // reply-from turns certificate checks off by default; `connect` is applied after its choice.
    connect: { timeout: Math.min(timeout, 10_000), rejectUnauthorized: true },
  };
  await app.register(replyFrom, { undici, destroyAgent: true, disableRequestLogging: true });

  // Bodies stay streams: reply-from pipes them to the upstream as they arrive.
  app.removeAllContentTypeParsers();
  app.addContentTypeParser("*", (_request, payload, done) => done(null, payload));

  app.setErrorHandler((error: FastifyError | KeygateError, request, reply) => {
    const ctx = ctxOf(request);
    if (error instanceof KeygateError) {
      if (error.status === 503) reply.header("retry-after", "1");
      return send(reply, renderPlainError(api, error.code, error.status, error.message, ctx));
    }
    if (error.code === "FST_ERR_CTP_INVALID_MEDIA_TYPE") return send(reply, renderPlainError(api, "UNSUPPORTED_MEDIA_TYPE", 415, "The Content-Type header is not valid.", ctx));
    if (typeof error.statusCode === "number" && error.statusCode >= 400 && error.statusCode < 500) {
      return send(reply, renderPlainError(api, "BAD_REQUEST", error.statusCode, error.message, ctx));
    }
    request.log.error({ err: error, requestId: request.id, api: api.id }, "gateway error");
    return send(reply, renderPlainError(api, "INTERNAL_ERROR", 500, `Something went wrong on our side; quote request id ${request.id} when reporting it.`, ctx));
  });

  const handler = async (request: FastifyRequest, reply: FastifyReply): Promise<FastifyReply> => {
    const url = request.raw.url ?? "/";
    const q = url.indexOf("?");
    const path = q === -1 ? url : url.slice(0, q);
    const route = compiled ? matchRoute(compiled, request.method, path) : null;
    if (compiled && !route) return send(reply, renderPlainError(api, "ROUTE_NOT_FOUND", 404, `No route ${request.method} ${path}.`, ctxOf(request)));

    let identity: Record<string, string>;
    let limits: Record<string, string> = {};
    let upstream: Upstream;
    let buffered: Buffer | undefined;
    if (route?.config.public) {
      identity = { "x-keygate-request-id": request.id };
      upstream = upstreamFor(undefined);
    } else {
      let parsed: unknown;
      if (route?.config.scopeFromBody && isStream(request.body)) {
        const declared = Number(first(request.headers["content-length"]));
        buffered = declared > bodyLimit ? undefined : (await readBounded(request.body, bodyLimit)) ?? undefined;
        if (buffered === undefined) {
          return send(reply, renderPlainError(api, "BODY_TOO_LARGE", 413, `The request body exceeds ${bodyLimit} bytes.`, ctxOf(request)), { connection: "close" });
        }
        try { parsed = JSON.parse(buffered.toString("utf8")); } catch { parsed = undefined; }
      }
      trackVerification(keygate, request, reply, "gateway");
      const authenticated = authenticateRequest(keygate, { api, headers: request.headers, ip: request.ip, route, body: parsed });
      const { verdict } = isPromise(authenticated) ? await authenticated : authenticated;
      limits = rateLimitHeaders(api, verdict, keygate.clock.now());
      if (!verdict.valid) return send(reply, renderError(api, verdict, ctxOf(request)), limits);
      identity = identityHeaders(verdict, request.id);
      upstream = upstreamFor(verdict.environment);
    }

    return reply.from(upstream.basePath + path, {
      getUpstream: () => upstream.origin,
      timeout,
      // An upstream's 503 or a dropped connection goes back to the client as it is: retrying
      // is the client's decision, and a request body already streamed cannot be replayed.
      retryDelay: () => null,
      ...(buffered !== undefined ? { body: buffered, contentType: first(request.headers["content-type"]) ?? "application/octet-stream" } : {}),
      rewriteRequestHeaders: (_req, headers) => forwardHeaders(request, headers as IncomingHttpHeaders, strip, identity),
      rewriteHeaders: (headers) => {
        const out: IncomingHttpHeaders = {};
        const listed = new Set((first(headers.connection) ?? "").toLowerCase().split(",").map((s) => s.trim()));
        for (const [name, value] of Object.entries(headers)) {
          if (!HOP_BY_HOP.includes(name) && !listed.has(name)) out[name] = value;
        }
        Object.assign(out, limits);
        out["x-request-id"] = request.id;
        return out;
      },
      onError: (_reply, { error }) => {
        const e = error as FastifyError & { cause?: { code?: string; message?: string } };
        const timedOut = e.statusCode === 504;
        request.log.warn({ requestId: request.id, api: api.id, upstream: upstream.origin, err: e.cause?.code ?? e.code, message: e.cause?.message ?? e.message }, "upstream failed");
        const rendered = timedOut
          ? renderPlainError(api, "UPSTREAM_TIMEOUT", 504, `The upstream did not answer within ${timeout} ms.`, ctxOf(request))
          : renderPlainError(api, "UPSTREAM_UNAVAILABLE", 502, "The upstream could not be reached.", ctxOf(request));
        // Headers reply-from may have copied from a response that then failed.
        for (const name of Object.keys(reply.getHeaders())) if (name !== "x-request-id" && !(name in limits)) reply.removeHeader(name);
        send(reply, rendered, limits);
      },
    });
  };

  const prefix = trimPrefix(api.pathPrefix);
  const options = { schema: { hide: true } };
  if (prefix === "") {
    app.all("/", options, handler);
    app.all("/*", options, handler);
  } else {
    app.all(prefix, options, handler);
    app.all(`${prefix}/*`, options, handler);
  }
}

/**
 * Fields that say who the client is and how it came: a client can write any of them, so the
 * upstream gets keygate's own statement instead (see {@link forwardHeaders}).
 */
const isForwarding = (name: string): boolean => name.startsWith("x-forwarded-") || name === "forwarded" || name === "x-real-ip";

/**
 * The request headers the upstream sees: the client's, minus credentials, spoofed identities
 * and forwarding claims, plus keygate's. `X-Forwarded-For` is the chain keygate believed (the
 * client address it checked allowlists against, then each trusted hop, then the peer), so an
 * address a client wrote in front of its own never reaches the upstream either.
 */
function forwardHeaders(request: FastifyRequest, headers: IncomingHttpHeaders, strip: ReadonlySet<string>, identity: Record<string, string>): IncomingHttpHeaders {
  const out: IncomingHttpHeaders = {};
  for (const [name, value] of Object.entries(headers)) {
    if (value === undefined || strip.has(name) || name.startsWith("x-keygate-") || isForwarding(name)) continue;
    out[name] = value;
  }
  // request.ips runs from the peer back to the first untrusted address; defined only with trustProxy.
  out["x-forwarded-for"] = request.ips ? [...request.ips].reverse().join(", ") : request.ip;
  out["x-forwarded-proto"] = request.protocol;
  if (request.host) out["x-forwarded-host"] = request.host;
  out["x-request-id"] = request.id;
  return Object.assign(out, identity);
}

/**
 * Serves every API that has an `upstream` under its `pathPrefix`. On keygate's main port,
 * register it after keygate's own routes (they are more specific and win) and call
 * {@link checkGatewayConfig} first; {@link buildGatewayServer} does both for its own port.
 *
 * @example
 * checkGatewayConfig(keygate.config);
 * await registerGateway(app, keygate, routes); // routes: compileRoutes per API id
 */
export async function registerGateway(app: FastifyInstance, keygate: Keygate, routes: ReadonlyMap<string, CompiledRoute[] | null>): Promise<void> {
  for (const api of gatewayApis(keygate.config)) {
    const compiled = routes.has(api.id) ? routes.get(api.id)! : compileRoutes(api.routes);
    await app.register(async (scope) => registerApi(scope, keygate, api, compiled));
  }
}


export interface BuildGatewayServerOptions {
  keygate: Keygate;
  /** A pino logger; omitted, the server logs nothing. */
  logger?: Logger;
}

/**
 * A server with only the gateway on it, for `server.gatewayPort` (as Kong splits proxy and
 * admin ports), plus each API's own client-facing endpoints (key introspection) that the
 * upstream cannot answer. Not started: call `listen()`.
 *
 * @example
 * const gateway = await buildGatewayServer({ keygate });
 * await gateway.listen({ port: keygate.config.server.gatewayPort, host: "0.0.0.0" });
 */
export async function buildGatewayServer(options: BuildGatewayServerOptions): Promise<FastifyInstance> {
  const { keygate } = options;
  checkGatewayConfig(keygate.config);
  await warmNextTick(); // before the boot below; see ../../lib/warm-next-tick.ts
  const app = Fastify({
    loggerInstance: options.logger as FastifyBaseLogger | undefined,
    logController: new LogController({ disableRequestLogging: true }),
    bodyLimit: keygate.config.server.bodyLimitBytes,
    genReqId: (req) => requestIdOf(req.headers["x-request-id"]),
    return503OnClosing: true,
    trustProxy: keygate.config.server.trustedProxies.length ? keygate.config.server.trustedProxies : false,
    // A URL the router cannot decode (`/%ZZ`) is refused before any route or hook runs:
    // answer it like every other error here rather than in Fastify's own shape.
    frameworkErrors: (error, request, reply) => {
      reply.header("x-request-id", request.id);
      return sendProblem(reply, problem(request, 400, "BAD_REQUEST", error.message));
    },
  });
  // Callback style, as in server.ts: an async hook costs every proxied request a promise.
  app.addHook("onRequest", (request, reply, done) => {
    reply.header("x-request-id", request.id);
    done();
  });
  app.setErrorHandler((error: FastifyError, request, reply) => {
    if (typeof error.statusCode === "number" && error.statusCode >= 400 && error.statusCode < 500) {
      return sendProblem(reply, problem(request, error.statusCode, "BAD_REQUEST", error.message));
    }
    request.log.error({ err: error, requestId: request.id }, "unhandled error");
    return sendProblem(reply, problem(request, 500, "INTERNAL_ERROR", `Something went wrong on our side; quote request id ${request.id} when reporting it.`));
  });
  app.setNotFoundHandler((request, reply) =>
    sendProblem(reply, problem(request, 404, "ROUTE_NOT_FOUND", `No route ${request.method} ${request.url.split("?")[0]}.`)));

  await app.register(async (scope) => registerIntrospection(scope, keygate));
  await app.register(async (scope) => registerTokenRoutes(scope, keygate));
  const routes = new Map<string, CompiledRoute[] | null>();
  for (const api of gatewayApis(keygate.config)) routes.set(api.id, compileRoutes(api.routes));
  await registerGateway(app, keygate, routes);
  return app;
}
