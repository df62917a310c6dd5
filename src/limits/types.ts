/** The outcome of taking one request from a key's rate-limit window. Over the limit is a value, not an error. */
export interface RateLimitVerdict {
  allowed: boolean;
  limit: number;
  /** Requests still admitted in the current window after this one. */
  remaining: number;
  /** When the current window ends, epoch milliseconds. */
  resetAt: number;
}

/**
 * The rate-limit port: a fixed window per key, aligned to the epoch (a 1-hour window resets
 * on the hour, as the email-validation seed documents). Adapters must be exact: never more
 * than `limit` admitted per window, however many requests arrive at once.
 */
export interface RateLimiter {
  consume(id: string, limit: number, windowMs: number, now: number): RateLimitVerdict | Promise<RateLimitVerdict>;
  /** The window's state without consuming from it. */
  peek(id: string, limit: number, windowMs: number, now: number): RateLimitVerdict | Promise<RateLimitVerdict>;
  close?(): void | Promise<void>;
}

export interface LockoutPolicy {
  maxAttempts: number;
  windowMs: number;
  blockMs: number;
}

export interface LockoutState {
  blocked: boolean;
  /** Failures still allowed before the block; 0 once blocked. */
  attemptsLeft: number;
  /** When the block ends, epoch milliseconds; null when not blocked. */
  blockedUntil: number | null;
}

/**
 * The brute-force lockout port: `maxAttempts` failed authentications from one client within
 * `windowMs` block it for `blockMs`. A successful authentication clears the count.
 */
export interface Lockout {
  check(subject: string, policy: LockoutPolicy, now: number): LockoutState | Promise<LockoutState>;
  recordFailure(subject: string, policy: LockoutPolicy, now: number): LockoutState | Promise<LockoutState>;
  recordSuccess(subject: string): void | Promise<void>;
  close?(): void | Promise<void>;
}
