/**
 * `keygate/fastify`: API-key authentication for Fastify 5, as a plugin. See docs/middleware.md.
 *
 * @example
 * import Fastify from "fastify";
 * import { keygateAuth, requireScopes } from "keygate/fastify";
 *
 * const app = Fastify({ trustProxy: "127.0.0.1" }); // request.ip follows it
 * await app.register(async (api) => {
 *   await api.register(keygateAuth, { keygate, api: "payments" });
 *   api.get("/v1/wallets", { preHandler: requireScopes("wallets.read") }, async (request) => ({ account: request.keygate!.accountId }));
 * });
 */
import type { FastifyPluginAsync, FastifyReply, preHandlerAsyncHookHandler } from "fastify";
import { admissionOf, admit, checkScopeList, createGate, NOT_AUTHENTICATED } from "../core.js";
import type { AuthenticatedVerdict, Denial, KeygateMiddlewareOptions } from "../core.js";

export type { ApiSettings, AuthenticatedVerdict, InProcessOptions, KeygateMiddlewareOptions, RemoteCacheOptions, RemoteOptions } from "../core.js";

declare module "fastify" {
  interface FastifyRequest {
    /** The verdict that admitted the request; absent on routes `keygateAuth` does not cover. */
    keygate?: AuthenticatedVerdict;
  }
}

export type KeygateFastifyOptions = KeygateMiddlewareOptions;

const WHERE = "keygate/fastify";

function send(reply: FastifyReply, denial: Denial): FastifyReply {
  return reply.code(denial.status).headers(denial.headers).type(denial.contentType).send(denial.body);
}

const plugin: FastifyPluginAsync<KeygateFastifyOptions> = async (app, options) => {
  const gate = createGate(options, WHERE);
  // Declared up front, as Fastify asks, so every request object has the same shape; two gates
  // in one tree (two APIs, each in its own scope) share it.
  if (!app.hasRequestDecorator("keygate")) app.decorateRequest("keygate", undefined);
  // onRequest: a denied request is answered before its body is read.
  app.addHook("onRequest", async (request, reply) => {
    const ip = request.ip ?? null;
    const outcome = await gate.authenticate({ headers: request.headers, ip, requestId: request.id, method: request.method, path: request.url.split("?")[0]! });
    if (!outcome.ok) return send(reply, outcome);
    reply.headers(outcome.headers);
    request.keygate = outcome.verdict;
    admit(request, { gate, verdict: outcome.verdict, request: { ip, requestId: request.id } });
  });
};

/**
 * A plugin that authenticates every request of the scope it is registered in: reads the
 * credential as the API's config says, verifies it (in-process with `{ keygate, api }`, or
 * through a keygate service with `{ client, api }`), sets the rate-limit headers, and either
 * puts the verdict on `request.keygate` or answers the denial in the API's error style. Like
 * a plugin wrapped in fastify-plugin it is not encapsulated: it covers the routes of the
 * scope that registers it, so register it inside the scope of the routes it should guard.
 * The client address is `request.ip` (Fastify's `trustProxy`). Infrastructure failures are
 * thrown to Fastify's error handler.
 *
 * @example
 * await app.register(keygateAuth, { client, api: { id: "payments", errorStyle: "airtime-v2" } });
 */
export const keygateAuth: FastifyPluginAsync<KeygateFastifyOptions> = Object.assign(plugin, {
  // What fastify-plugin sets: skip encapsulation, a name for errors and `dependencies`.
  [Symbol.for("skip-override")]: true,
  [Symbol.for("fastify.display-name")]: "keygate",
  [Symbol.for("plugin-meta")]: { name: "keygate", fastify: ">=4" },
});

/**
 * A route guard (`preHandler` or `onRequest`): the admitted key must hold every one of
 * `scopes`, or the request is denied with INSUFFICIENT_SCOPE (403 by default) in the API's
 * error style. Checked against `request.keygate`: no second verification.
 *
 * @example
 * app.post("/v1/wallets/:id/debit", { preHandler: requireScopes("wallets.write") }, debit);
 */
export function requireScopes(...scopes: string[]): preHandlerAsyncHookHandler {
  const needed = checkScopeList(scopes, WHERE);
  return async function requireScopes(request, reply) {
    const admission = admissionOf(request);
    if (!admission) throw NOT_AUTHENTICATED(WHERE);
    const denial = admission.gate.requireScopes(admission.verdict, needed, admission.request);
    if (denial) return send(reply, denial);
  };
}
