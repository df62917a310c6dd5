import type { Clock } from "../lib/clock.js";

/** An attempt over the limit: how long until the window ends. */
export interface AttemptVerdict {
  allowed: boolean;
  retryAfterSeconds: number;
}

/** Counts password attempts per client IP in fixed windows. */
export interface AttemptLimiter {
  /** Counts one attempt from `ip` and says whether it may proceed. */
  take(ip: string): AttemptVerdict;
}

/** Entries kept at most; beyond, finished windows are swept and then the oldest dropped. */
const MAX_TRACKED = 50_000;

/**
 * A per-node limit on sign-in, sign-up and password attempts per client IP, in front of the
 * per-user lockout that the store keeps for every node (docs/portal.md). Memory is bounded: a
 * flood from many addresses evicts the oldest windows first.
 *
 * @example
 * const attempts = createAttemptLimiter({ limit: 20, windowMs: 300_000 }, systemClock);
 * if (!attempts.take(request.ip).allowed) throw tooMany();
 */
export function createAttemptLimiter(options: { limit: number; windowMs: number }, clock: Clock): AttemptLimiter {
  const windows = new Map<string, { start: number; count: number }>();
  return {
    take(ip) {
      const now = clock.now();
      const start = Math.floor(now / options.windowMs) * options.windowMs;
      let w = windows.get(ip);
      if (!w || w.start !== start) {
        if (w) windows.delete(ip);
        w = { start, count: 0 };
        if (windows.size >= MAX_TRACKED) {
          for (const [k, v] of windows) if (v.start !== start) windows.delete(k);
          // Still full: drop the oldest insertions (Map iterates in insertion order).
          for (const k of windows.keys()) { if (windows.size < MAX_TRACKED) break; windows.delete(k); }
        }
        windows.set(ip, w);
      }
      w.count++;
      return { allowed: w.count <= options.limit, retryAfterSeconds: Math.max(1, Math.ceil((start + options.windowMs - now) / 1000)) };
    },
  };
}
