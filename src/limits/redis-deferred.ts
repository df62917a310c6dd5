/**
 * The Redis rate limiter and lockout as `keygate` (src/index.ts) exports them: the same
 * factories as ./redis/index.ts, whose module — and ioredis with it — is imported when one is
 * first created instead of when `keygate` is, so that an application without Redis does not
 * pay for loading it. Calls made in the moment before the import completes wait for it;
 * later calls go straight to the adapter.
 */
import type { Lockout, RateLimiter } from "./types.js";
import type { RedisLimitsOptions } from "./redis/index.js";

type RedisLimitsModule = typeof import("./redis/index.js");

let loading: Promise<RedisLimitsModule> | undefined;

/** The adapter once built (`now`), and a promise of it for calls made before that (`later`). */
function deferred<T>(make: (m: RedisLimitsModule) => T): { now: T | undefined; later: Promise<T> } {
  const adapter: { now: T | undefined; later: Promise<T> } = { now: undefined, later: undefined as never };
  adapter.later = (loading ??= import("./redis/index.js")).then((m) => (adapter.now = make(m)));
  adapter.later.catch(() => {}); // reported to the first call, not as an unhandled rejection
  return adapter;
}

/**
 * Exact rate limits across nodes, in Redis: see `createRedisRateLimiter` in ./redis/index.ts.
 *
 * @example
 * import { Redis } from "ioredis";
 * import { createRedisRateLimiter } from "keygate";
 * const limiter = createRedisRateLimiter({ redis: new Redis(process.env.REDIS_URL!), keyPrefix: "keygate:" });
 */
export function createRedisRateLimiter(options: RedisLimitsOptions): RateLimiter {
  const adapter = deferred((m) => m.createRedisRateLimiter(options));
  return {
    consume: (...args) => adapter.now?.consume(...args) ?? adapter.later.then((l) => l.consume(...args)),
    peek: (...args) => adapter.now?.peek(...args) ?? adapter.later.then((l) => l.peek(...args)),
    close: async () => { await (await adapter.later).close?.(); },
  };
}

/**
 * The brute-force lockout shared by every node, in Redis: see `createRedisLockout` in
 * ./redis/index.ts.
 *
 * @example
 * const lockout = createRedisLockout({ redis, keyPrefix: "keygate:" });
 */
export function createRedisLockout(options: RedisLimitsOptions): Lockout {
  const adapter = deferred((m) => m.createRedisLockout(options));
  return {
    check: (...args) => adapter.now?.check(...args) ?? adapter.later.then((l) => l.check(...args)),
    recordFailure: (...args) => adapter.now?.recordFailure(...args) ?? adapter.later.then((l) => l.recordFailure(...args)),
    recordSuccess: async (...args) => { await (adapter.now ?? await adapter.later).recordSuccess(...args); },
    close: async () => { await (await adapter.later).close?.(); },
  };
}
