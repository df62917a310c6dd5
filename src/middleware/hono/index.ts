/**
 * `keygate/hono`: API-key authentication for Hono 4. See docs/middleware.md.
 *
 * @example
 * import { Hono } from "hono";
 * import { getConnInfo } from "@hono/node-server/conninfo";
 * import { keygateAuth, requireScopes } from "keygate/hono";
 *
 * const app = new Hono();
 * app.use("/v1/*", keygateAuth({ keygate, api: "payments", ip: (c) => getConnInfo(c).remote.address }));
 * app.get("/v1/wallets", requireScopes("wallets.read"), (c) => c.json({ account: c.get("keygate").accountId }));
 */
import type { IncomingHttpHeaders } from "node:http";
import type { Context, MiddlewareHandler } from "hono";
import type { ContentfulStatusCode } from "hono/utils/http-status";
import { admissionOf, admit, checkScopeList, createGate, NOT_AUTHENTICATED, requestIdFrom } from "../core.js";
import type { AuthenticatedVerdict, Denial, KeygateMiddlewareOptions } from "../core.js";

export type { ApiSettings, AuthenticatedVerdict, InProcessOptions, KeygateMiddlewareOptions, RemoteCacheOptions, RemoteOptions } from "../core.js";

/** What the middleware sets: `c.get("keygate")` is the verdict that admitted the request. */
export interface KeygateVariables {
  keygate: AuthenticatedVerdict;
}

/** An `Env` for `new Hono<KeygateEnv>()`, for handlers not chained after the middleware. */
export interface KeygateEnv {
  Variables: KeygateVariables;
}

export type KeygateHonoOptions = KeygateMiddlewareOptions & {
  /**
   * The client address, as your runtime and proxies tell it (Hono has no one notion of it):
   * e.g. `(c) => getConnInfo(c).remote.address`, or a header your own proxy sets. Default: the
   * socket's peer address under @hono/node-server, null elsewhere — and with no address, keys
   * with an IP allowlist are denied and the lockout cannot count failures.
   */
  ip?: ((c: Context) => string | null | undefined) | undefined;
  /** The request id denials carry. Default: `c.get("requestId")` (hono/request-id), a well-formed `X-Request-Id`, or a new one. */
  requestId?: ((c: Context) => string | undefined) | undefined;
};

const WHERE = "keygate/hono";

/** @hono/node-server passes `{ incoming, outgoing }` as the env. */
const nodeSocketAddress = (c: Context): string | undefined =>
  (c.env as { incoming?: { socket?: { remoteAddress?: string } } } | undefined)?.incoming?.socket?.remoteAddress;

function setHeaders(c: Context, headers: Record<string, string>): void {
  const entries = Object.entries(headers);
  if (entries.length === 0) return;
  try {
    for (const [name, value] of entries) c.res.headers.set(name, value);
  } catch {
    // A Response from fetch() has immutable headers: copy it (Hono carries its headers over).
    c.res = new Response(c.res.body, c.res);
    for (const [name, value] of entries) c.res.headers.set(name, value);
  }
}

const send = (c: Context, denial: Denial): Response =>
  c.body(denial.body, denial.status as ContentfulStatusCode, { ...denial.headers, "content-type": denial.contentType });

/**
 * Authenticates every request it sees: reads the credential as the API's config says,
 * verifies it (in-process with `{ keygate, api }`, or through a keygate service with
 * `{ client, api }`), sets the rate-limit headers, and either sets `c.get("keygate")` and
 * calls the next handler, or answers the denial in the API's error style. Infrastructure
 * failures are thrown to `app.onError`.
 *
 * @example
 * app.use("/v1/*", keygateAuth({ client, api: "payments", ip: (c) => c.req.header("x-real-ip") }));
 */
export function keygateAuth(options: KeygateHonoOptions): MiddlewareHandler<KeygateEnv> {
  const gate = createGate(options, WHERE);
  const ipOf = options.ip ?? nodeSocketAddress;
  const idOf = options.requestId ?? ((c: Context) => {
    const given = (c.var as Record<string, unknown>).requestId;
    return typeof given === "string" ? given : c.req.header("x-request-id");
  });
  return async function keygateAuth(c, next) {
    // Only the headers the API's credential schemes read are copied out of the Headers object.
    const headers: IncomingHttpHeaders = {};
    for (const name of gate.credentialHeaders) {
      const value = c.req.header(name);
      if (value !== undefined) headers[name] = value;
    }
    const ip = ipOf(c) ?? null;
    const requestId = requestIdFrom(idOf(c));
    const outcome = await gate.authenticate({ headers, ip, requestId, method: c.req.method, path: c.req.path });
    if (!outcome.ok) return send(c, outcome);
    c.set("keygate", outcome.verdict);
    admit(c, { gate, verdict: outcome.verdict, request: { ip, requestId } });
    await next();
    // Set on the final response, whichever way the handler made it (c.json, a Response of its own, app.onError).
    setHeaders(c, outcome.headers);
  };
}

/**
 * A route guard: the admitted key must hold every one of `scopes`, or the request is denied
 * with INSUFFICIENT_SCOPE (403 by default) in the API's error style. Checked against the
 * verdict `keygateAuth` set: no second verification.
 *
 * @example
 * app.post("/v1/wallets/:id/debit", requireScopes("wallets.write"), debit);
 */
export function requireScopes(...scopes: string[]): MiddlewareHandler<KeygateEnv> {
  const needed = checkScopeList(scopes, WHERE);
  return async function requireScopes(c, next) {
    const admission = admissionOf(c);
    if (!admission) throw NOT_AUTHENTICATED(WHERE);
    const denial = admission.gate.requireScopes(admission.verdict, needed, admission.request);
    if (denial) return send(c, denial);
    await next();
  };
}
