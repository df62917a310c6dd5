import { performance } from "node:perf_hooks";
import type { FastifyReply, FastifyRequest } from "fastify";
import type { Keygate } from "../keygate.js";
import type { UsageEvent, UsageSource } from "./events.js";

/** Client gone before the response started: nginx's code for it. */
const CLIENT_CLOSED = 499;

/**
 * Ties the verification an HTTP front end is about to run to its request, so the usage event
 * carries the request id, method, path and final status — and, for the gateway, the upstream's
 * time — and is recorded once the response has ended.
 *
 * Call it right before `authenticateRequest` (or `keygate.verifyKey`), in the same synchronous
 * run: the announcement lapses at the next microtask. A request that turns out to need no
 * verification (a public route) records nothing.
 *
 * @example
 * trackVerification(keygate, request, reply, "gateway");
 * const { verdict } = await authenticateRequest(keygate, { api, headers: request.headers, ip: request.ip, route });
 */
export function trackVerification(
  keygate: Keygate,
  request: FastifyRequest,
  reply: FastifyReply,
  source: Exclude<UsageSource, "library">,
  /** For forward-auth: the proxied request, not the `/_auth` call. */
  original?: { method: string; path: string },
): void {
  const analytics = keygate.analytics;
  const arrived = performance.now() - reply.elapsedTime;
  let event: UsageEvent | null = null;
  let verifiedAt = 0;
  let ended = false;

  const complete = (): void => {
    const e = event!;
    // forward-auth for nginx answers 403 for a 429 and carries the real status in a header.
    const told = Number(reply.getHeader("x-keygate-status"));
    e.status = !reply.raw.headersSent ? CLIENT_CLOSED : Number.isInteger(told) && told >= 100 ? told : reply.raw.statusCode;
    if (source === "gateway" && e.code === "VALID") e.upstreamMs = performance.now() - verifiedAt;
    analytics.record(e);
  };

  analytics.expect({
    attach(e) {
      verifiedAt = performance.now();
      e.latencyMs = verifiedAt - arrived;
      e.source = source;
      e.requestId = request.id;
      e.method = original?.method ?? request.method;
      e.path = original?.path ?? (request.raw.url ?? request.url);
      event = e;
      if (ended) complete();
    },
  });

  // A response emits 'close' once it has finished or its connection is gone, whichever is
  // first, and only once: one listener sees both.
  reply.raw.once("close", () => {
    ended = true;
    if (event !== null) complete();
  });
}
