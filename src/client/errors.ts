/**
 * The admin API's stable error codes (docs/errors.md). The union is open: a code added to the
 * service later is still a string the client passes on unchanged.
 */
export type KeygateErrorCode =
  | "UNAUTHORIZED" | "INVALID_REQUEST" | "MALFORMED_JSON" | "UNSUPPORTED_MEDIA_TYPE" | "BODY_TOO_LARGE"
  | "INVALID_CONTENT_LENGTH" | "ROUTE_NOT_FOUND" | "UNKNOWN_API" | "UNKNOWN_ACCOUNT" | "UNKNOWN_ENVIRONMENT"
  | "UNKNOWN_SCOPE" | "INVALID_IP_ALLOWLIST" | "INVALID_IP" | "INVALID_EXPIRES_AT" | "EXPIRES_AT_IN_PAST"
  | "INVALID_GRACE_PERIOD" | "INVALID_IMPORT" | "INVALID_HASH" | "MALFORMED_KEY" | "ENVIRONMENT_MISMATCH"
  | "EMAIL_TAKEN" | "DUPLICATE_KEY" | "KEY_NOT_ROTATABLE" | "UNKNOWN_APPLICATION" | "APPLICATION_MISMATCH"
  | "UNKNOWN_FEATURE" | "SCOPE_NOT_GRANTED" | "CLIENT_ID_TAKEN" | "TOKENS_NOT_ENABLED" | "UNKNOWN_ALGORITHM"
  | "SIGNING_KEYS_CONTENDED" | "STORE_UNAVAILABLE" | "KEY_NOT_FOUND" | "ACCOUNT_NOT_FOUND"
  | "APPLICATION_NOT_FOUND" | "API_NOT_FOUND" | "LOG_NOT_FOUND" | "INVALID_CURSOR" | "INVALID_TIME_RANGE"
  | "RANGE_TOO_LARGE" | "QUERY_TOO_LARGE" | "LIMITER_UNAVAILABLE" | "PUBLIC_KEYS_UNAVAILABLE" | "INTERNAL_ERROR"
  /** A response that was not a keygate problem document, e.g. a proxy's 502 page: `HTTP_502`. */
  | `HTTP_${number}`
  | (string & {});

/** What went wrong in one field of a request, for INVALID_REQUEST. */
export interface FieldError {
  field: string;
  message: string;
}

/**
 * The service answered with an error: an RFC 9457 problem document carrying a stable `code`.
 * A denied key is not an error — `keys.verify` answers it as a verdict.
 *
 * @example
 * try {
 *   await client.keys.rotate(id);
 * } catch (e) {
 *   if (e instanceof KeygateApiError && e.code === "KEY_NOT_ROTATABLE") console.log(e.detail, e.requestId);
 *   else throw e;
 * }
 */
export class KeygateApiError extends Error {
  /** The HTTP status. */
  readonly status: number;
  /** The stable code from docs/errors.md, or `HTTP_<status>` when the body was not keygate's. */
  readonly code: KeygateErrorCode;
  /** The service's request id (body or `X-Request-Id`), to quote when reporting a problem. */
  readonly requestId: string | null;
  /** The problem's human-readable explanation. */
  readonly detail: string;
  /** Per-field errors of an INVALID_REQUEST. */
  readonly errors: FieldError[];
  /** The parsed response body, for fields beyond these (`details`, `attemptsLeft`, …). */
  readonly body: unknown;

  constructor(status: number, body: unknown, headerRequestId: string | null) {
    const problem = (body !== null && typeof body === "object" ? body : {}) as Record<string, unknown>;
    const code = typeof problem.code === "string" ? problem.code : `HTTP_${status}`;
    const detail = typeof problem.detail === "string" ? problem.detail : `The keygate service answered ${status}.`;
    super(`${code}: ${detail}`);
    this.name = "KeygateApiError";
    this.status = status;
    this.code = code;
    this.detail = detail;
    this.requestId = typeof problem.requestId === "string" ? problem.requestId : headerRequestId;
    this.errors = Array.isArray(problem.errors) ? (problem.errors as FieldError[]) : [];
    this.body = body;
  }
}

/**
 * The service could not be reached or did not answer in time, after any retries. `cause`
 * holds the last underlying error.
 *
 * @example
 * catch (e) { if (e instanceof KeygateNetworkError && e.code === "TIMEOUT") fallBack(); }
 */
export class KeygateNetworkError extends Error {
  /** `TIMEOUT`: no complete answer within `timeoutMs`; `NETWORK_ERROR`: the request failed in transport. */
  readonly code: "TIMEOUT" | "NETWORK_ERROR";
  /** How many times the request was sent. */
  readonly attempts: number;

  constructor(code: "TIMEOUT" | "NETWORK_ERROR", message: string, attempts: number, cause: unknown) {
    super(message, { cause });
    this.name = "KeygateNetworkError";
    this.code = code;
    this.attempts = attempts;
  }
}
