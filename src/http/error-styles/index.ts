import { STATUS_CODES } from "node:http";
import type { ApiConfig } from "../../config/schema.js";
import type { Verdict } from "../../verify/engine.js";
import { VERDICT_MESSAGES, VERDICT_STATUS } from "../../verify/codes.js";
import type { VerdictCode } from "../../verify/codes.js";

/** What a denial looks like on the wire. */
export interface RenderedError {
  status: number;
  headers: Record<string, string>;
  body: unknown;
  contentType: string;
}

export interface RenderContext {
  requestId: string;
  /** The client address as keygate saw it, for messages that name it. */
  ip: string | null;
  /** Which credential scheme the API reads first, for WWW-Authenticate. */
  bearer: boolean;
}

type Renderer = (verdict: Verdict, code: string, status: number, message: string, ctx: RenderContext) => RenderedError;

const json = "application/json; charset=utf-8";

/** RFC 6750 §3: the error attribute for bearer challenges. */
function bearerChallenge(code: VerdictCode, api: string): string {
  if (code === "MISSING_CREDENTIALS") return `Bearer realm="${api}"`;
  const error = code === "INSUFFICIENT_SCOPE" ? "insufficient_scope" : "invalid_token";
  return `Bearer realm="${api}", error="${error}", error_description="${VERDICT_MESSAGES[code].replace(/"/g, "'")}"`;
}

const styles: Record<ApiConfig["errorStyle"], Renderer> = {
  // RFC 9457, the default.
  problem: (v, code, status, message, ctx) => ({
    status, contentType: "application/problem+json; charset=utf-8", headers: {},
    body: {
      type: "about:blank", title: STATUS_CODES[status] ?? "Error", status, detail: message, code, requestId: ctx.requestId,
      ...(v.attemptsLeft !== undefined ? { attemptsLeft: v.attemptsLeft } : {}),
      ...(v.retryAfter !== undefined ? { retryAfter: v.retryAfter } : {}),
      ...(v.missingScopes ? { missingScopes: v.missingScopes } : {}),
    },
  }),
  // Seed 000: one body for every failure; the status says which kind.
  "airtime-v1": (_v, _code, status, message) => ({ status, contentType: json, headers: {}, body: { message, statusCode: status } }),
  // Seed 001 documents codes and statuses only; keygate's body choice is in examples/click-airtime.
  "airtime-v2": (_v, code, status, message, ctx) => ({
    status, contentType: json, headers: {},
    body: { success: false, error: { code, message }, requestId: ctx.requestId },
  }),
  // Seed 003: {success:false, error:{code,message,details}, requestId}.
  topup: (v, code, status, message, ctx) => {
    const details: Record<string, unknown> = {};
    if (v.attemptsLeft !== undefined && v.code !== "IP_BLOCKED") details.attemptsLeft = v.attemptsLeft;
    // The seed's IP_BLOCKED and RATE_LIMITED bodies carry no details: Retry-After says when.
    if (v.retryAfter !== undefined && v.code !== "RATE_LIMITED" && v.code !== "IP_BLOCKED") details.retryAfter = v.retryAfter;
    if (v.missingScopes) details.missingScopes = v.missingScopes;
    return {
      status, contentType: json, headers: {},
      body: { success: false, error: { code, message, ...(Object.keys(details).length ? { details } : {}) }, requestId: ctx.requestId },
    };
  },
};

/** The built-in code, status and message of each style, before the API's own `errorCodes`. */
const STYLE_DEFAULTS: Partial<Record<ApiConfig["errorStyle"], Partial<Record<VerdictCode, { code?: string; status?: number; message?: string | ((v: Verdict, ctx: RenderContext) => string) }>>>> = {
  "airtime-v1": Object.fromEntries((["MISSING_CREDENTIALS", "MALFORMED_KEY", "NOT_FOUND", "EXPIRED", "REVOKED", "DISABLED", "ROTATED", "INVALID_TOKEN", "TOKEN_EXPIRED"] as VerdictCode[])
    .map((c) => [c, { message: "Invalid or missing authentication credentials" }])),
  "airtime-v2": {
    MISSING_CREDENTIALS: { code: "INVALID_API_KEY", message: "API key is missing." },
    MALFORMED_KEY: { code: "INVALID_API_KEY", message: "API key is malformed." },
    NOT_FOUND: { code: "INVALID_API_KEY", message: "API key not found." },
    DISABLED: { code: "INVALID_API_KEY", message: "API key is disabled." },
    ROTATED: { code: "INVALID_API_KEY", message: "API key was rotated; use its replacement." },
    EXPIRED: { code: "EXPIRED_API_KEY", message: "API key has passed its expiration date." },
    REVOKED: { code: "REVOKED_API_KEY", message: "API key has been revoked." },
    IP_NOT_ALLOWED: { code: "IP_NOT_ALLOWED", message: "Request from an unauthorized IP address." },
    INSUFFICIENT_SCOPE: { code: "INSUFFICIENT_PERMISSIONS", message: "API key lacks the required permission for this endpoint." },
    INVALID_TOKEN: { code: "INVALID_API_KEY", message: "Access token is not valid." },
    TOKEN_EXPIRED: { code: "EXPIRED_API_KEY", message: "Access token has expired." },
  },
  topup: {
    MISSING_CREDENTIALS: { code: "MISSING_ACCESS_TOKEN", status: 400, message: "Access token is required" },
    MALFORMED_KEY: { code: "INVALID_ACCESS_TOKEN", message: "The provided access token is invalid" },
    NOT_FOUND: { code: "INVALID_ACCESS_TOKEN", message: "The provided access token is invalid" },
    EXPIRED: { code: "INVALID_ACCESS_TOKEN", message: "The provided access token is invalid" },
    REVOKED: { code: "INVALID_ACCESS_TOKEN", message: "The provided access token is invalid" },
    DISABLED: { code: "INVALID_ACCESS_TOKEN", message: "The provided access token is invalid" },
    ROTATED: { code: "INVALID_ACCESS_TOKEN", message: "The provided access token is invalid" },
    INVALID_TOKEN: { code: "INVALID_ACCESS_TOKEN", message: "The provided access token is invalid" },
    TOKEN_EXPIRED: { code: "INVALID_ACCESS_TOKEN", message: "The provided access token is invalid" },
    // The seed's wording, settings URL included; another API of this style replaces it with an
    // errorCodes message, which can name the address and environment the same way.
    IP_NOT_ALLOWED: {
      message: "Your IP address {ip} is not whitelisted for this {ENVIRONMENT} API key. Add your IP to the whitelist at https://oneclickdz.com/#/settings",
    },
    IP_BLOCKED: { message: "Your IP has been temporarily blocked due to too many invalid attempts" },
    INSUFFICIENT_SCOPE: { message: "This API key's scope does not allow this operation" },
    RATE_LIMITED: { message: "Too many requests; retry after the rate-limit window resets" },
  },
};

const PLACEHOLDER = /\{(ip|environment|ENVIRONMENT|retryAfter|attemptsLeft|missingScopes)\}/g;

/**
 * Fills a message's placeholders from the verdict: `{ip}`, `{environment}`, `{ENVIRONMENT}`
 * (upper-cased), `{retryAfter}`, `{attemptsLeft}`, `{missingScopes}` (comma-separated). A value
 * the verdict lacks becomes `unknown`; other braces are left as written.
 */
export function fillMessage(template: string, verdict: Verdict, ctx: Pick<RenderContext, "ip">): string {
  if (!template.includes("{")) return template;
  return template.replace(PLACEHOLDER, (_m, name: string) => {
    let value: string | number | undefined;
    switch (name) {
      case "ip": value = ctx.ip ?? undefined; break;
      case "environment": value = verdict.environment; break;
      case "ENVIRONMENT": value = verdict.environment?.toUpperCase(); break;
      case "retryAfter": value = verdict.retryAfter; break;
      case "attemptsLeft": value = verdict.attemptsLeft; break;
      case "missingScopes": value = verdict.missingScopes?.join(", "); break;
    }
    return value === undefined || value === "" ? "unknown" : String(value);
  });
}

/**
 * Renders a denied verdict in an API's error style, applying the API's `errorCodes` renames
 * last. Always sets the headers a client needs to act: `Retry-After` on 429 and blocks,
 * `WWW-Authenticate` (RFC 6750) on 401/403 of bearer APIs.
 *
 * @example
 * const { status, body } = renderError(api, verdict, { requestId: "req_1", ip: "203.0.113.45", bearer: false });
 */
export function renderError(api: ApiConfig, verdict: Verdict, ctx: RenderContext): RenderedError {
  const code = verdict.code;
  const base = STYLE_DEFAULTS[api.errorStyle]?.[code];
  const custom = api.errorCodes?.[code];
  const status = custom?.status ?? base?.status ?? VERDICT_STATUS[code];
  const baseMessage = typeof base?.message === "function" ? base.message(verdict, ctx) : base?.message;
  const message = fillMessage(custom?.message ?? baseMessage ?? VERDICT_MESSAGES[code], verdict, ctx);
  const out = styles[api.errorStyle](verdict, custom?.code ?? base?.code ?? code, status, message, ctx);
  if (verdict.retryAfter !== undefined && (status === 429 || code === "IP_BLOCKED" || code === "RATE_LIMITED")) out.headers["retry-after"] = String(verdict.retryAfter);
  if (ctx.bearer && (status === 401 || status === 403)) out.headers["www-authenticate"] = bearerChallenge(code, api.id);
  return out;
}

/** Errors that are not verdicts (no route, bad upstream) in the API's style. */
export function renderPlainError(api: ApiConfig, code: string, status: number, message: string, ctx: RenderContext): RenderedError {
  const verdict: Verdict = { valid: false, code: "NOT_FOUND", api: api.id };
  return styles[api.errorStyle](verdict, code, status, message, ctx);
}
