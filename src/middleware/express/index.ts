/**
 * `keygate/express`: API-key authentication for Express 4 and 5. See docs/middleware.md.
 *
 * @example
 * import express from "express";
 * import { keygateAuth, requireScopes } from "keygate/express";
 *
 * const app = express();
 * app.set("trust proxy", "loopback"); // req.ip, and so allowlists and the lockout, follow it
 * app.use("/v1", keygateAuth({ keygate, api: "payments" }));
 * app.get("/v1/wallets", requireScopes("wallets.read"), (req, res) => res.json({ account: req.keygate!.accountId }));
 */
import type { Request, RequestHandler, Response } from "express";
import { admissionOf, admit, checkScopeList, createGate, NOT_AUTHENTICATED, requestIdFrom } from "../core.js";
import type { AuthenticatedVerdict, Denial, KeygateMiddlewareOptions } from "../core.js";

export type { ApiSettings, AuthenticatedVerdict, InProcessOptions, KeygateMiddlewareOptions, RemoteCacheOptions, RemoteOptions } from "../core.js";

declare global {
  // Express's own extension point for request properties (@types/express-serve-static-core).
  namespace Express {
    interface Request {
      /** The verdict that admitted the request; set by `keygateAuth`, absent on routes it does not cover. */
      keygate?: AuthenticatedVerdict;
    }
  }
}

export type KeygateExpressOptions = KeygateMiddlewareOptions & {
  /**
   * The request id that denials carry in their body. Default: the `X-Request-Id` header when
   * it is a well-formed id, otherwise a new `req_…`.
   */
  requestId?: ((req: Request) => string | undefined) | undefined;
};

const WHERE = "keygate/express";

function send(res: Response, denial: Denial): void {
  res.status(denial.status).set(denial.headers).type(denial.contentType).send(denial.body);
}

/**
 * Authenticates every request it sees: reads the credential as the API's config says,
 * verifies it (in-process with `{ keygate, api }`, or through a keygate service with
 * `{ client, api }`), sets the rate-limit headers, and either puts the verdict on
 * `req.keygate` and calls `next()`, or answers the denial in the API's error style. The
 * client address is `req.ip`, so Express's `trust proxy` setting decides which proxies'
 * `X-Forwarded-For` is believed. Infrastructure failures go to `next(error)`.
 *
 * @example
 * app.use(keygateAuth({ client: createKeygateClient({ baseUrl, rootKey }), api: "payments", cache: { ttlMs: 5000 } }));
 */
export function keygateAuth(options: KeygateExpressOptions): RequestHandler {
  const gate = createGate(options, WHERE);
  const idOf = options.requestId ?? ((req: Request) => req.get("x-request-id"));
  return function keygateAuth(req, res, next) {
    const ip = req.ip ?? null;
    const requestId = requestIdFrom(idOf(req));
    gate.authenticate({ headers: req.headers, ip, requestId, method: req.method, path: (req.originalUrl || req.url).split("?")[0]! }).then((outcome) => {
      if (!outcome.ok) return send(res, outcome);
      res.set(outcome.headers);
      req.keygate = outcome.verdict;
      admit(req, { gate, verdict: outcome.verdict, request: { ip, requestId } });
      next();
    }, next);
  };
}

/**
 * A route guard: the admitted key must hold every one of `scopes`, or the request is denied
 * with INSUFFICIENT_SCOPE (403 by default) in the API's error style, naming the missing
 * scopes. Checked against the verdict `keygateAuth` put on the request: no second verification.
 *
 * @example
 * app.post("/v1/wallets/:id/debit", requireScopes("wallets.write"), debit);
 */
export function requireScopes(...scopes: string[]): RequestHandler {
  const needed = checkScopeList(scopes, WHERE);
  return function requireScopes(req, res, next) {
    const admission = admissionOf(req);
    if (!admission) return next(NOT_AUTHENTICATED(WHERE));
    const denial = admission.gate.requireScopes(admission.verdict, needed, admission.request);
    if (denial) return send(res, denial);
    next();
  };
}
