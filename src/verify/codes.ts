/**
 * Every verdict a verification can reach. Stable: a code is never renamed or reused.
 * See docs/verdict-codes.md.
 */
export const VERDICT_CODES = [
  "VALID",
  "MISSING_CREDENTIALS",
  "MALFORMED_KEY",
  "NOT_FOUND",
  "EXPIRED",
  "REVOKED",
  "DISABLED",
  "ROTATED",
  "IP_NOT_ALLOWED",
  "IP_BLOCKED",
  "INSUFFICIENT_SCOPE",
  "RATE_LIMITED",
  "INVALID_TOKEN",
  "TOKEN_EXPIRED",
] as const;

export type VerdictCode = (typeof VERDICT_CODES)[number];

/** The one table from verdict code to HTTP status, used by every error style by default. */
export const VERDICT_STATUS: Readonly<Record<VerdictCode, number>> = {
  VALID: 200,
  MISSING_CREDENTIALS: 401,
  MALFORMED_KEY: 401,
  NOT_FOUND: 401,
  EXPIRED: 401,
  REVOKED: 401,
  DISABLED: 401,
  ROTATED: 401,
  IP_NOT_ALLOWED: 403,
  IP_BLOCKED: 403,
  INSUFFICIENT_SCOPE: 403,
  RATE_LIMITED: 429,
  INVALID_TOKEN: 401,
  TOKEN_EXPIRED: 401,
};

/** A sentence per code, for logs, error bodies and docs. Never includes the key. */
export const VERDICT_MESSAGES: Readonly<Record<VerdictCode, string>> = {
  VALID: "The key is valid.",
  MISSING_CREDENTIALS: "No API key was presented.",
  MALFORMED_KEY: "The API key is not in this API's key format, or its checksum does not match.",
  NOT_FOUND: "The API key does not exist.",
  EXPIRED: "The API key has expired.",
  REVOKED: "The API key has been revoked.",
  DISABLED: "The API key is disabled.",
  ROTATED: "The API key was rotated and its grace period is over; use its replacement.",
  IP_NOT_ALLOWED: "The client IP address is not in the key's allowlist.",
  IP_BLOCKED: "The client IP address is temporarily blocked after too many failed attempts.",
  INSUFFICIENT_SCOPE: "The API key lacks a scope this request requires.",
  RATE_LIMITED: "The API key's rate limit is exhausted for the current window.",
  INVALID_TOKEN: "The access token is not a token this API issued: malformed, forged, or for another audience.",
  TOKEN_EXPIRED: "The access token has expired; exchange the Client ID and API key for a new one.",
};

/** Codes that count as a failed authentication attempt towards the IP lockout. */
export const LOCKOUT_FAILURES: ReadonlySet<VerdictCode> = new Set<VerdictCode>([
  "MALFORMED_KEY", "NOT_FOUND", "EXPIRED", "REVOKED", "DISABLED", "ROTATED", "INVALID_TOKEN",
]);
