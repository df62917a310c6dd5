import type { IncomingMessage, ServerResponse } from "node:http";
import { Ajv } from "ajv";
import fastJson from "fast-json-stringify";
import type { FastifyInstance } from "fastify";
import type { Keygate } from "../keygate.js";
import { KeygateError } from "../lib/errors.js";
import { isPromise } from "../lib/promise.js";
import type { Verdict, VerifyRequest } from "../verify/engine.js";
import { bearerToken } from "./bearer.js";
import { internalProblem, keygateProblem } from "./problem.js";
import type { ErrorResponse } from "./problem.js";
import { requestIdOf } from "./request-id.js";
import { VerdictSchema, VerifyBody } from "./schemas.js";

/** Bodies up to this size are read here; a larger one goes to Fastify (which enforces its bodyLimit). */
const MAX_BODY = 16 * 1024;
const JSON_TYPE = /^application\/json[ \t]*(?:;[ \t]*charset="?utf-8"?[ \t]*)?$/i;
const JSON_UTF8 = "application/json; charset=utf-8";
const noop = (): void => {};

export interface FastVerifyOptions {
  app: FastifyInstance;
  keygate: Keygate;
  /** Whether a presented key is the root key (the server's `createRootKeyCheck`). */
  isRootKey: (presented: string) => boolean;
  /** True once the server is closing: Fastify then answers 503 (`return503OnClosing`). */
  closing: () => boolean;
}

/**
 * `POST /v1/keys/verify` answered from Node's request event, ahead of Fastify's routing — the
 * one endpoint every remote deployment calls per request of its own, so its cost is theirs.
 * Fastify's per-request machinery (request and reply objects, hook runner, the asynchronous
 * body parser) costs more than the verification itself; hand-rolled here, for this one route
 * only, because keygate's verify answered ~0.55 of a bare Fastify route's throughput through
 * it (bench/verify-http.ts).
 *
 * The same route stays registered in Fastify, which remains the reference: this handler takes
 * only the plain case and lets Fastify answer everything else, so every error is Fastify's own.
 * - Declined before the body is read (Fastify answers): another method or URL (a query string
 *   too), a server that is closing, a content type other than JSON in UTF-8, no or a large
 *   Content-Length, chunked bodies, `Expect`, a missing or wrong root key.
 * - Replayed through `app.inject` after the body is read (nothing has happened yet, so Fastify
 *   answers exactly as it would have): a body that is not plain JSON (or that names
 *   `__proto__`, `constructor` or holds `\u` escapes, which Fastify's parser inspects), one the
 *   route's schema refuses, and a verification refused as bad input (4xx: thrown before any
 *   counter moved).
 * - Answered here: the verdict, serialised by fast-json-stringify from the route's schema as
 *   Fastify does; and a failure of the shared stores (5xx, which a replay would repeat, counting
 *   twice), by the error handler's own functions.
 *
 * @returns a request handler that answers true when it took the request.
 */
export function createFastVerify(options: FastVerifyOptions): (req: IncomingMessage, res: ServerResponse) => boolean {
  const { app, keygate, isRootKey, closing } = options;
  // The options of buildServer's Fastify validator (its ajv customOptions) for the same schema.
  const validate = new Ajv({ removeAdditional: false, coerceTypes: false, useDefaults: true, allErrors: false, strict: false }).compile<VerifyRequest>(VerifyBody);
  const serialize = fastJson(VerdictSchema);

  const reply = (res: ServerResponse, requestId: string, answer: ErrorResponse | { status: 200; body: string }): void => {
    const body = typeof answer.body === "string" ? answer.body : JSON.stringify(answer.body);
    // One flat list: writeHead takes it as it is, where setHeader before it costs a merge.
    const headers = ["x-request-id", requestId, "content-type", answer.status === 200 ? JSON_UTF8 : "application/problem+json; charset=utf-8", "content-length", String(Buffer.byteLength(body))];
    if ("headers" in answer) for (const [name, value] of Object.entries(answer.headers)) headers.push(name, value);
    res.writeHead(answer.status, headers);
    res.end(body);
  };

  /**
   * Verdicts reached synchronously (a cached key, memory limits) are answered together, once
   * the event loop has read every request that arrived with theirs: `setImmediate` runs after
   * the poll phase that delivered them. Answered one by one instead, each response's write
   * woke the waiting client (on one host, that costs the writer: the kernel wakes the reader
   * inside the `writev`) and the verification code and the network stack took turns evicting
   * each other from the CPU's caches. bench/verify-http.ts, 32 connections on a 2-core VM: the
   * server's CPU per request 35.1 → 23.8 µs, 28,900 → 42,200 requests/s (scratch A/B, six
   * rounds each). A lone request waits one turn of the loop, microseconds; under load, a
   * response waits for the rest of its batch, which then all leave sooner than one by one.
   * Verdicts that wait on Redis or a store already arrive in batches, as their replies do.
   */
  let waiting: Array<((v: Verdict) => void) | Verdict> = [];
  const answerWaiting = (): void => {
    const batch = waiting;
    waiting = [];
    // `answer` does not throw, so one request's failure cannot leave the rest unanswered.
    for (let i = 0; i < batch.length; i += 2) (batch[i] as (v: Verdict) => void)(batch[i + 1] as Verdict);
  };
  const later = (answer: (v: Verdict) => void, verdict: Verdict): void => {
    if (waiting.push(answer, verdict) === 2) setImmediate(answerWaiting);
  };

  const replay = (req: IncomingMessage, res: ServerResponse, payload: Buffer): void => {
    app.inject({ method: "POST", url: req.url!, headers: req.headers, payload, remoteAddress: req.socket.remoteAddress }).then((r) => {
      for (const [name, value] of Object.entries(r.headers)) {
        // Node writes its own Date and keep-alive headers; only a `Connection: close` is Fastify's to pass on.
        if (value === undefined || name === "date" || name === "keep-alive" || name === "transfer-encoding") continue;
        if (name === "connection" && value !== "close") continue;
        res.setHeader(name, value);
      }
      res.writeHead(r.statusCode);
      res.end(r.rawPayload);
    }, (error: unknown) => {
      app.log.error({ err: error }, "verify replay failed");
      res.destroy();
    });
  };

  return (req, res) => {
    if (req.method !== "POST" || req.url !== "/v1/keys/verify" || closing()) return false;
    const h = req.headers;
    const type = h["content-type"];
    if (type === undefined || (type !== "application/json" && !JSON_TYPE.test(type))) return false;
    if (h["transfer-encoding"] !== undefined || h.expect !== undefined) return false;
    const length = Number(h["content-length"]);
    if (!(length > 0 && length <= MAX_BODY)) return false;
    const token = bearerToken(h.authorization);
    if (token === null || !isRootKey(token)) return false;

    const requestId = requestIdOf(h["x-request-id"]);
    const chunks: Buffer[] = [];
    req.on("error", noop); // a client gone mid-body: nothing to answer
    req.on("data", (chunk: Buffer) => { chunks.push(chunk); });
    req.on("end", () => {
      const payload = chunks.length === 1 ? chunks[0]! : Buffer.concat(chunks);
      const text = payload.toString("utf8");
      let body: unknown;
      if (text.includes("__proto__") || text.includes("constructor") || text.includes("\\u")) return replay(req, res, payload);
      try {
        body = JSON.parse(text);
      } catch {
        return replay(req, res, payload);
      }
      if (!validate(body)) return replay(req, res, payload);
      const failed = (error: unknown): void => {
        if (error instanceof KeygateError && error.status < 500) return replay(req, res, payload);
        if (!(error instanceof KeygateError)) app.log.error({ err: error, requestId }, "unhandled error");
        reply(res, requestId, error instanceof KeygateError ? keygateProblem(error, req.url!, requestId) : internalProblem(requestId));
      };
      let verdict: Verdict | Promise<Verdict>;
      try {
        verdict = keygate.verifyKeyNow(body, { source: "verify", requestId });
      } catch (e) {
        return failed(e);
      }
      // Serialising cannot fail for a verdict the engine made; should it, the client gets the
      // error handler's 500 rather than the process an uncaught exception. Should replying
      // fail (only a bug could), that client's connection is cut rather than left waiting.
      const answer = (v: Verdict): void => {
        try {
          let body: string;
          try { body = serialize(v); } catch (e) { return failed(e); }
          reply(res, requestId, { status: 200, body });
        } catch (error) {
          app.log.error({ err: error, requestId }, "verify reply failed");
          res.destroy();
        }
      };
      if (isPromise(verdict)) verdict.then(answer, failed);
      else later(answer, verdict);
    });
    return true;
  };
}
