import { performance } from "node:perf_hooks";
import type { ServerResponse } from "node:http";
import type { FastifyReply, FastifyRequest } from "fastify";
import type { Keygate } from "../keygate.js";
import type { ExpectedVerification } from "./index.js";
import type { UsageEvent, UsageSource } from "./events.js";

/** Client gone before the response started: nginx's code for it. */
const CLIENT_CLOSED = 499;

const kTracking = Symbol("keygate.tracking");
type TrackedResponse = ServerResponse & { [kTracking]?: Tracking };

/**
 * One request's verification, from its announcement to the end of its response. One object
 * with methods, and a 'close' listener shared by every response that finds it on the
 * response itself, rather than closures per request: this runs on every request the gateway
 * and forward-auth verify.
 */
class Tracking implements ExpectedVerification {
  private event: UsageEvent | null = null;
  private verifiedAt = 0;
  private ended = false;

  constructor(
    private readonly keygate: Keygate,
    private readonly request: FastifyRequest,
    private readonly reply: FastifyReply,
    private readonly source: Exclude<UsageSource, "library">,
    private readonly original: { method: string; path: string } | undefined,
    private readonly arrived: number,
  ) {}

  attach(e: UsageEvent): void {
    this.verifiedAt = performance.now();
    e.latencyMs = this.verifiedAt - this.arrived;
    e.source = this.source;
    e.requestId = this.request.id;
    e.method = this.original?.method ?? this.request.method;
    e.path = this.original?.path ?? (this.request.raw.url ?? this.request.url);
    this.event = e;
    if (this.ended) this.complete();
  }

  /** The response has ended (finished, or its connection is gone). */
  close(): void {
    this.ended = true;
    if (this.event !== null) this.complete();
  }

  private complete(): void {
    const e = this.event!;
    const reply = this.reply;
    // forward-auth for nginx answers 403 for a 429 and carries the real status in a header.
    const told = Number(reply.getHeader("x-keygate-status"));
    e.status = !reply.raw.headersSent ? CLIENT_CLOSED : Number.isInteger(told) && told >= 100 ? told : reply.raw.statusCode;
    if (this.source === "gateway" && e.code === "VALID") e.upstreamMs = performance.now() - this.verifiedAt;
    this.keygate.analytics.record(e);
  }
}

function onClose(this: TrackedResponse): void {
  this[kTracking]?.close();
}

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
  const tracking = new Tracking(keygate, request, reply, source, original, performance.now() - reply.elapsedTime);
  keygate.analytics.expect(tracking);
  // A response emits 'close' once it has finished or its connection is gone, whichever is
  // first, and only once: one listener sees both.
  const res = reply.raw as TrackedResponse;
  res[kTracking] = tracking;
  res.on("close", onClose);
}
