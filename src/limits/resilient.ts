import { KeygateError } from "../lib/errors.js";
import { createMemoryLockout, createMemoryRateLimiter } from "./memory/index.js";
import type { Lockout, RateLimiter } from "./types.js";

/**
 * What to do while the shared limiter (Redis) cannot be reached:
 * - `closed` (default): refuse verifications with 503 `LIMITER_UNAVAILABLE`; no request gets
 *   past a limit or a lockout it cannot check.
 * - `local`: fall back to per-node memory limits and lockouts (a cluster of N nodes admits up
 *   to N × limit while it lasts), and return to the shared ones as soon as they answer again.
 */
export type LimiterFailureMode = "closed" | "local";

export interface ResilienceEvents {
  /** Called on the first failure after a success, and on the first success after a failure. */
  onStateChange?: (state: "degraded" | "recovered", error?: unknown) => void;
}

function guard<T extends object>(primary: T, fallback: T, mode: LimiterFailureMode, events: ResilienceEvents, what: string): T {
  let degraded = false;
  const wrap = <A extends unknown[], R>(name: string, primaryFn: (...a: A) => R | Promise<R>, fallbackFn: (...a: A) => R | Promise<R>) =>
    async (...args: A): Promise<R> => {
      try {
        const result = await primaryFn.apply(primary, args);
        if (degraded) { degraded = false; events.onStateChange?.("recovered"); }
        return result;
      } catch (error) {
        if (!degraded) { degraded = true; events.onStateChange?.("degraded", error); }
        if (mode === "local") return fallbackFn.apply(fallback, args);
        throw new KeygateError("LIMITER_UNAVAILABLE", `The shared ${what} store is unreachable; requests are refused until it returns (${name}).`, 503);
      }
    };
  const out: Record<string, unknown> = {};
  for (const key of Object.keys(primary) as (keyof T & string)[]) {
    const p = primary[key];
    const f = fallback[key];
    out[key] = typeof p === "function" && typeof f === "function" ? wrap(key, p as never, f as never) : p;
  }
  return out as T;
}

/**
 * Wraps a shared rate limiter and lockout so an outage follows the configured failure mode
 * and recovery needs no restart: every call tries the shared store first.
 *
 * @example
 * const { limiter, lockout } = withFailureMode(createRedisRateLimiter({ redis }), createRedisLockout({ redis }), "local");
 */
export function withFailureMode(limiter: RateLimiter, lockout: Lockout, mode: LimiterFailureMode, events: ResilienceEvents = {}): { limiter: RateLimiter; lockout: Lockout } {
  return {
    limiter: guard(limiter, createMemoryRateLimiter(), mode, events, "rate-limit"),
    lockout: guard(lockout, createMemoryLockout(), mode, events, "lockout"),
  };
}
