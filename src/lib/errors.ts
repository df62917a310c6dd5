/**
 * Every error keygate raises for bad input or a missing resource. `code` is stable and
 * documented in docs/errors.md; `status` is the HTTP status the admin API answers with.
 * Verdicts about keys are never errors: see {@link Verdict}.
 */
export class KeygateError extends Error {
  readonly code: string;
  readonly status: number;
  readonly details: Record<string, unknown> | undefined;

  constructor(code: string, message: string, status = 400, details?: Record<string, unknown>) {
    super(message);
    this.name = "KeygateError";
    this.code = code;
    this.status = status;
    this.details = details;
  }
}

/** Raised when `keygate.yaml` or its environment cannot be turned into a valid config. */
export class ConfigError extends KeygateError {
  constructor(message: string, details?: Record<string, unknown>) {
    super("INVALID_CONFIG", message, 500, details);
    this.name = "ConfigError";
  }
}

export const notFound = (what: string, id: string): KeygateError =>
  new KeygateError(`${what.toUpperCase()}_NOT_FOUND`, `No ${what} with id ${JSON.stringify(id)}.`, 404);
