import { STATUS_CODES } from "node:http";
import type { FastifyReply, FastifyRequest } from "fastify";
import type { KeygateError } from "../lib/errors.js";

/**
 * An RFC 9457 problem document with keygate's stable `code` and the request id. Every error
 * of the admin API has this shape; docs/errors.md lists the codes.
 */
export interface Problem {
  type: string;
  title: string;
  status: number;
  detail: string;
  code: string;
  requestId: string;
  errors?: Array<{ field: string; message: string }>;
  [extension: string]: unknown;
}

export function problem(request: FastifyRequest, status: number, code: string, detail: string, extra: Record<string, unknown> = {}): Problem {
  return problemDoc(request.id, status, code, detail, extra);
}

export function problemDoc(requestId: string, status: number, code: string, detail: string, extra: Record<string, unknown> = {}): Problem {
  return { type: "about:blank", title: STATUS_CODES[status] ?? "Error", status, detail, code, requestId, ...extra };
}

/** An error's status, extra headers and problem document. */
export interface ErrorResponse {
  status: number;
  headers: Record<string, string>;
  body: Problem;
}

/** The answer to a KeygateError: its status and code, `Retry-After` on 503, RFC 6750's challenge on the admin API's 401. */
export function keygateProblem(error: KeygateError, url: string, requestId: string): ErrorResponse {
  const headers: Record<string, string> = {};
  if (error.status === 503) headers["retry-after"] = "1";
  if (error.status === 401 && url.startsWith("/v1/")) headers["www-authenticate"] = 'Bearer realm="keygate"';
  return { status: error.status, headers, body: problemDoc(requestId, error.status, error.code, error.message, error.details ? { details: error.details } : {}) };
}

/** The answer to an error nobody anticipated (the caller logs it). */
export function internalProblem(requestId: string): ErrorResponse {
  return { status: 500, headers: {}, body: problemDoc(requestId, 500, "INTERNAL_ERROR", `Something went wrong on our side; quote request id ${requestId} when reporting it.`) };
}

/** Sends an ErrorResponse through Fastify. */
export function sendError(reply: FastifyReply, answer: ErrorResponse): FastifyReply {
  for (const [name, value] of Object.entries(answer.headers)) reply.header(name, value);
  return sendProblem(reply, answer.body);
}

export function sendProblem(reply: FastifyReply, body: Problem): FastifyReply {
  return reply.code(body.status).type("application/problem+json; charset=utf-8").send(body);
}
