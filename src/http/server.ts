import { createServer as createHttpServer } from "node:http";
import type { IncomingMessage, ServerResponse } from "node:http";
import { requestIdOf } from "./request-id.js";
import Fastify, { LogController } from "fastify";
import type { FastifyBaseLogger, FastifyError, FastifyInstance, FastifyReply, FastifyRequest } from "fastify";
import swagger from "@fastify/swagger";
import type { Logger } from "pino";
import type { Keygate } from "../keygate.js";
import { KeygateError } from "../lib/errors.js";
import { createRootKeyCheck } from "../auth/root-key.js";
import { internalProblem, keygateProblem, problem, sendError, sendProblem } from "./problem.js";
import { createFastVerify } from "./fast-verify.js";
import { bearerToken } from "./bearer.js";
import { registerAdminRoutes } from "./routes/admin.js";
import type { KeygateMetrics } from "../ops/metrics.js";
import { registerForwardAuth } from "./routes/forward-auth.js";
import { registerIntrospection } from "./routes/introspection.js";
import { registerTokenRoutes } from "./routes/tokens.js";
import { registerApplicationRoutes } from "./routes/applications.js";
import { registerAnalyticsRoutes } from "./routes/analytics.js";
import { registerApiReference } from "./routes/reference.js";
import { registerGithubSecretScanning, registerSecretPatternRoutes } from "./routes/secret-scanning.js";
import { compileRoutes } from "./authenticate.js";
import { checkGatewayConfig, registerGateway } from "./gateway/index.js";
import type { CompiledRoute } from "./authenticate.js";
import { registerPortal } from "../portal/index.js";
import { warmNextTick } from "../lib/warm-next-tick.js";

export interface BuildServerOptions {
  keygate: Keygate;
  /** SHA-256 (hex) of the root key that guards /v1. */
  rootKeyHash: string;
  /** A pino logger; omitted, the server logs nothing. */
  logger?: Logger;
  bodyLimitBytes?: number;
  version?: string;
  /** Served at /metrics when given. */
  metrics?: KeygateMetrics;
  /**
   * Extra readiness checks for /readyz (e.g. Redis), each throwing when not ready. A check
   * given as `{ check, required: false }` is one the node can serve without (Redis with
   * `redis.failureMode: local`): its failure makes /readyz 200 "degraded", not 503.
   */
  readiness?: Record<string, (() => Promise<unknown>) | { check: () => Promise<unknown>; required: boolean }>;
}


export { bearerToken };

/** The path of a JSON-schema error as a field name a person recognises: `body.scopes[0]`. */
function fieldOf(context: string, instancePath: string, params: Record<string, unknown>): string {
  let path = instancePath.split("/").slice(1).map((p) => (/^\d+$/.test(p) ? `[${p}]` : `.${p}`)).join("");
  if (typeof params.missingProperty === "string") path += `.${params.missingProperty}`;
  if (typeof params.additionalProperty === "string") path += `.${params.additionalProperty}`;
  return `${context}${path}`;
}

/**
 * The keygate HTTP service: admin API, verify API, health and OpenAPI. Routes are registered,
 * not started: call `listen()` or use `inject()` in tests.
 *
 * @example
 * const app = await buildServer({ keygate, rootKeyHash });
 * await app.listen({ port: 8080, host: "127.0.0.1" });
 */
export async function buildServer(options: BuildServerOptions): Promise<FastifyInstance> {
  await warmNextTick(); // before the boot below; see ../lib/warm-next-tick.ts
  // POST /v1/keys/verify is answered ahead of Fastify when it can be (./fast-verify.ts);
  // set once every route is registered.
  let fastVerify: ((req: IncomingMessage, res: ServerResponse) => boolean) | null = null;
  let closing = false;
  const app = Fastify({
    serverFactory: (handler, opts) => {
      const server = createHttpServer((req, res) => { if (fastVerify === null || !fastVerify(req, res)) handler(req, res); });
      // What Fastify sets on the server it makes itself (its options, defaults filled in).
      const o = opts as unknown as { keepAliveTimeout: number; requestTimeout: number; connectionTimeout: number; maxRequestsPerSocket: number };
      server.keepAliveTimeout = o.keepAliveTimeout;
      server.requestTimeout = o.requestTimeout;
      server.setTimeout(o.connectionTimeout);
      if (o.maxRequestsPerSocket > 0) server.maxRequestsPerSocket = o.maxRequestsPerSocket;
      return server;
    },
    loggerInstance: options.logger as FastifyBaseLogger | undefined,
    // Per-request lines are off: the usage pipeline records requests, and never their secrets.
    logController: new LogController({ disableRequestLogging: true }),
    bodyLimit: options.bodyLimitBytes ?? 10 * 1024 * 1024,
    genReqId: (req) => requestIdOf(req.headers["x-request-id"]),
    ajv: { customOptions: { removeAdditional: false, coerceTypes: false, useDefaults: true, allErrors: false } },
    return503OnClosing: true,
    // Only these hops' X-Forwarded-For is believed, so no client can choose its own address
    // to slip past an allowlist or a lockout.
    trustProxy: options.keygate.config.server.trustedProxies.length ? options.keygate.config.server.trustedProxies : false,
    // Errors Fastify raises before routing (a URL such as /%ZZ that cannot be decoded, a bad
    // Content-Type): the same problem document as every other error, not Fastify's own shape.
    frameworkErrors: (error, request, reply) => {
      reply.header("x-request-id", request.id);
      return sendProblem(reply, problem(request, 400, "BAD_REQUEST", error.message));
    },
  });

  // Callback-style hooks on every request: an async hook costs a promise per request.
  app.addHook("onRequest", (request, reply, done) => {
    reply.header("x-request-id", request.id);
    done();
  });

  await app.register(swagger, {
    openapi: {
      openapi: "3.1.0",
      info: {
        title: "keygate",
        version: options.version ?? "0.1.0",
        description: "API-key authentication for API providers. Every /v1 route takes `Authorization: Bearer <root key>`. Errors are RFC 9457 problem documents with a stable `code`.",
      },
      components: { securitySchemes: { rootKey: { type: "http", scheme: "bearer", description: "The root key printed on first start or set with KEYGATE_ROOT_KEY." } } },
      security: [{ rootKey: [] }],
    },
  });

  app.setErrorHandler((error: FastifyError | KeygateError, request, reply) => {
    // Every 401 of the admin API is a KeygateError thrown here (RFC 6750 §3): its challenge is
    // set here rather than in an onSend hook, which every successful response would pay for.
    if (error instanceof KeygateError) return sendError(reply, keygateProblem(error, request.url, request.id));
    if (error.validation) {
      const errors = error.validation.map((v) => {
        const field = fieldOf(error.validationContext ?? "body", v.instancePath, v.params as Record<string, unknown>);
        const message = v.keyword === "additionalProperties" ? "unknown field" : v.message ?? "invalid";
        return { field, message };
      });
      const first = errors[0]!;
      return sendProblem(reply, problem(request, 400, "INVALID_REQUEST", `${first.field}: ${first.message}`, { errors }));
    }
    switch (error.code) {
      case "FST_ERR_CTP_INVALID_JSON_BODY":
      case "FST_ERR_CTP_EMPTY_JSON_BODY":
        return sendProblem(reply, problem(request, 400, "MALFORMED_JSON", `The request body is not valid JSON: ${error.message}`));
      case "FST_ERR_CTP_INVALID_MEDIA_TYPE":
        return sendProblem(reply, problem(request, 415, "UNSUPPORTED_MEDIA_TYPE", "Send the body as application/json."));
      case "FST_ERR_CTP_BODY_TOO_LARGE":
        return sendProblem(reply, problem(request, 413, "BODY_TOO_LARGE", `The request body exceeds ${options.bodyLimitBytes ?? 10 * 1024 * 1024} bytes.`));
      case "FST_ERR_CTP_INVALID_CONTENT_LENGTH":
        return sendProblem(reply, problem(request, 400, "INVALID_CONTENT_LENGTH", "Content-Length does not match the body."));
    }
    if (typeof error.statusCode === "number" && error.statusCode >= 400 && error.statusCode < 500) {
      return sendProblem(reply, problem(request, error.statusCode, "BAD_REQUEST", error.message));
    }
    request.log.error({ err: error, requestId: request.id }, "unhandled error");
    return sendError(reply, internalProblem(request.id));
  });

  app.setNotFoundHandler((request, reply) =>
    sendProblem(reply, problem(request, 404, "ROUTE_NOT_FOUND", `No route ${request.method} ${request.url.split("?")[0]}; see /openapi.json.`)));

  const rootKeyHash = Buffer.from(options.rootKeyHash, "hex");
  const isRootKey = createRootKeyCheck(rootKeyHash);
  const requireRoot = (request: FastifyRequest, _reply: FastifyReply, done: (error?: Error) => void): void => {
    const token = bearerToken(request.headers.authorization);
    if (token === null) return done(new KeygateError("UNAUTHORIZED", "Send the root key as `Authorization: Bearer <root key>`.", 401));
    if (!isRootKey(token)) return done(new KeygateError("UNAUTHORIZED", "The root key is not valid.", 401));
    done();
  };

  app.get("/healthz", { schema: { hide: true } }, async (_request, reply) => {
    try {
      await options.keygate.store.getSetting("healthz");
      return { status: "ok", store: options.keygate.store.kind };
    } catch (e) {
      return reply.code(503).send({ status: "unavailable", store: options.keygate.store.kind, error: (e as Error).message });
    }
  });
  app.get("/openapi.json", { schema: { hide: true } }, async () => app.swagger());
  await app.register(registerApiReference);

  // Ready when every dependency answers: the store, and Redis in a cluster.
  app.get("/readyz", { schema: { hide: true } }, async (_request, reply) => {
    const checks: NonNullable<BuildServerOptions["readiness"]> = { store: () => options.keygate.store.getSetting("readyz"), ...options.readiness };
    const results: Record<string, string> = {};
    let ready = true;
    let degraded = false;
    await Promise.all(Object.entries(checks).map(async ([name, entry]) => {
      const { check, required } = typeof entry === "function" ? { check: entry, required: true } : entry;
      try {
        await Promise.race([check(), new Promise((_, reject) => setTimeout(() => reject(new Error("timed out after 2 s")), 2000).unref())]);
        results[name] = "ok";
      } catch (e) {
        if (required) ready = false;
        else degraded = true;
        results[name] = (e as Error).message;
      }
    }));
    const status = !ready ? "unavailable" : degraded ? "degraded" : "ready";
    return reply.code(ready ? 200 : 503).send({ status, checks: results });
  });

  const metrics = options.metrics;
  if (metrics) {
    app.get("/metrics", { schema: { hide: true } }, async (_request, reply) =>
      reply.type(metrics.registry.contentType).send(await metrics.registry.metrics()));
  }

  const routes = new Map<string, CompiledRoute[] | null>();
  for (const [id, runtime] of options.keygate.apis) routes.set(id, compileRoutes(runtime.config.routes));
  await app.register(async (auth) => registerForwardAuth(auth, options.keygate, routes));
  await app.register(async (introspection) => registerIntrospection(introspection, options.keygate));
  await app.register(async (tokens) => registerTokenRoutes(tokens, options.keygate));
  await app.register(async (scanning) => registerGithubSecretScanning(scanning, options.keygate));

  await app.register(async (admin) => {
    admin.addHook("onRequest", requireRoot);
    registerAdminRoutes(admin, options.keygate);
    registerApplicationRoutes(admin, options.keygate);
    registerAnalyticsRoutes(admin, options.keygate);
    registerSecretPatternRoutes(admin, options.keygate);
  }, { prefix: "/v1" });
  // The customer portal (/portal) and the root key's /v1/portal/users; see docs/portal.md.
  if (options.keygate.config.portal?.enabled) await app.register(async (portal) => registerPortal(portal, { keygate: options.keygate, rootKeyHash: options.rootKeyHash }));

  // Gateway APIs last, so keygate's own routes stay the more specific; with server.gatewayPort
  // they are served by buildGatewayServer instead. Collisions are refused here, at start.
  checkGatewayConfig(options.keygate.config);
  if (options.keygate.config.server.gatewayPort === undefined) await registerGateway(app, options.keygate, routes);

  app.addHook("preClose", (done) => { closing = true; done(); });
  fastVerify = createFastVerify({ app, keygate: options.keygate, isRootKey, closing: () => closing });
  return app;
}
