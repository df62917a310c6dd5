import type { Lockout, LockoutState, RateLimiter, RateLimitVerdict } from "../types.js";

interface Window { start: number; end: number; count: number }

/**
 * Fixed-window counters in a Map. Hand-rolled rather than rate-limiter-flexible's
 * RateLimiterMemory because that one allocates a Promise and a timer per key and call, which
 * alone would cost more than the whole cached verification (see bench/verify-inprocess.ts).
 * One thread runs it, so it is exact without locks. Windows that have ended are swept
 * once the map grows, so memory stays bounded by the keys active in the last window.
 *
 * @example
 * const limiter = createMemoryRateLimiter();
 * limiter.consume("key_123", 1000, 3_600_000, Date.now()); // { allowed: true, remaining: 999, … }
 */
export function createMemoryRateLimiter(options: { sweepAbove?: number } = {}): RateLimiter {
  const windows = new Map<string, Window>();
  let sweepAbove = options.sweepAbove ?? 100_000;

  const sweep = (now: number): void => {
    for (const [id, w] of windows) if (w.end <= now) windows.delete(id);
    sweepAbove = Math.max(sweepAbove, windows.size * 2);
  };

  const current = (id: string, windowMs: number, now: number): Window => {
    const start = now - (now % windowMs);
    let w = windows.get(id);
    if (w === undefined || w.start !== start) {
      if (w === undefined && windows.size >= sweepAbove) sweep(now);
      w = { start, end: start + windowMs, count: 0 };
      windows.set(id, w);
    }
    return w;
  };

  const verdict = (w: Window, allowed: boolean, limit: number): RateLimitVerdict =>
    ({ allowed, limit, remaining: Math.max(0, limit - w.count), resetAt: w.end });

  return {
    consume(id, limit, windowMs, now) {
      const w = current(id, windowMs, now);
      if (w.count >= limit) return verdict(w, false, limit);
      w.count++;
      return verdict(w, true, limit);
    },
    peek(id, limit, windowMs, now) {
      const start = now - (now % windowMs);
      const found = windows.get(id);
      const w = found && found.start === start ? found : { start, end: start + windowMs, count: 0 };
      // `allowed`: whether the next request would be admitted, as the Redis adapter answers.
      return verdict(w, w.count < limit, limit);
    },
  };
}

interface Attempts { windowStart: number; failures: number; blockedUntil: number }

/**
 * Failed-attempt counters per client in a Map; entries whose window and block have both
 * passed are dropped as the map grows.
 *
 * @example
 * const lockout = createMemoryLockout();
 * lockout.recordFailure("203.0.113.45", { maxAttempts: 5, windowMs: 900_000, blockMs: 900_000 }, Date.now());
 */
export function createMemoryLockout(options: { sweepAbove?: number } = {}): Lockout {
  const subjects = new Map<string, Attempts & { windowMs: number }>();
  let sweepAbove = options.sweepAbove ?? 100_000;

  const sweep = (now: number): void => {
    for (const [s, a] of subjects) if (a.blockedUntil <= now && a.windowStart + a.windowMs <= now) subjects.delete(s);
    sweepAbove = Math.max(sweepAbove, subjects.size * 2);
  };

  // The state of a client without failures, shared per policy size: most checks answer it,
  // and a verification should not allocate what it only reads. Frozen, as it is shared.
  const clean = new Map<number, LockoutState>();
  const state = (a: Attempts | undefined, maxAttempts: number, now: number): LockoutState => {
    if (a && a.blockedUntil > now) return { blocked: true, attemptsLeft: 0, blockedUntil: a.blockedUntil };
    if (a === undefined || a.failures === 0) {
      let s = clean.get(maxAttempts);
      if (s === undefined) clean.set(maxAttempts, s = Object.freeze({ blocked: false, attemptsLeft: Math.max(0, maxAttempts), blockedUntil: null }));
      return s;
    }
    return { blocked: false, attemptsLeft: Math.max(0, maxAttempts - a.failures), blockedUntil: null };
  };

  return {
    check(subject, policy, now) {
      const a = subjects.get(subject);
      // A block that has ended starts the count over, as recordFailure does (and Redis).
      if (a && a.blockedUntil <= now && (a.blockedUntil !== 0 || a.windowStart + policy.windowMs <= now)) {
        subjects.delete(subject);
        return state(undefined, policy.maxAttempts, now);
      }
      return state(a, policy.maxAttempts, now);
    },
    recordFailure(subject, policy, now) {
      let a = subjects.get(subject);
      if (a && a.blockedUntil > now) return state(a, policy.maxAttempts, now);
      if (!a || a.windowStart + policy.windowMs <= now || a.blockedUntil !== 0) {
        if (!a && subjects.size >= sweepAbove) sweep(now);
        a = { windowStart: now, failures: 0, blockedUntil: 0, windowMs: policy.windowMs };
        subjects.set(subject, a);
      }
      a.failures++;
      if (a.failures >= policy.maxAttempts) a.blockedUntil = now + policy.blockMs;
      return state(a, policy.maxAttempts, now);
    },
    recordSuccess(subject) {
      subjects.delete(subject);
    },
  };
}
