import { STATUS_CODES } from "node:http";
import type { FastifyReply, FastifyRequest } from "fastify";

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
  return { type: "about:blank", title: STATUS_CODES[status] ?? "Error", status, detail, code, requestId: request.id, ...extra };
}

export function sendProblem(reply: FastifyReply, body: Problem): FastifyReply {
  return reply.code(body.status).type("application/problem+json; charset=utf-8").send(body);
}
