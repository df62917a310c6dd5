import type { Redis } from "ioredis";
import type { Lockout, LockoutPolicy, LockoutState, RateLimiter, RateLimitVerdict } from "../types.js";

/**
 * Fixed window in one atomic script: read, refuse at the limit, else count. A refused request
 * is not counted, so `remaining` stays meaningful; the key expires just after its window.
 */
const RATE_LIMIT_LUA = `
local c = tonumber(redis.call('GET', KEYS[1]) or '0')
if ARGV[3] == '0' then return {1, c} end
if c >= tonumber(ARGV[1]) then return {0, c} end
c = redis.call('INCR', KEYS[1])
if c == 1 then redis.call('PEXPIREAT', KEYS[1], tonumber(ARGV[2]) + 1000) end
return {1, c}
`;

/** Counts a failed attempt and starts the block at the limit, atomically across nodes. */
const LOCKOUT_FAIL_LUA = `
local v = redis.call('HMGET', KEYS[1], 'f', 'w', 'b')
local f = tonumber(v[1]) or 0
local w = tonumber(v[2]) or 0
local b = tonumber(v[3]) or 0
local now = tonumber(ARGV[1])
local windowMs = tonumber(ARGV[2])
if b > now then return {f, b} end
if f == 0 or w + windowMs <= now or b ~= 0 then f = 0; w = now; b = 0 end
f = f + 1
if f >= tonumber(ARGV[4]) then b = now + tonumber(ARGV[3]) end
redis.call('HSET', KEYS[1], 'f', f, 'w', w, 'b', b)
redis.call('PEXPIREAT', KEYS[1], math.max(w + windowMs, b) + 1000)
return {f, b}
`;

type Scripted = Redis & {
  keygateRateLimit(key: string, limit: number, windowEnd: number, consume: 0 | 1): Promise<[number, number]>;
  keygateLockoutFail(key: string, now: number, windowMs: number, blockMs: number, maxAttempts: number): Promise<[number, number]>;
};

function scripted(redis: Redis): Scripted {
  const r = redis as Scripted;
  if (typeof r.keygateRateLimit !== "function") {
    redis.defineCommand("keygateRateLimit", { numberOfKeys: 1, lua: RATE_LIMIT_LUA });
    redis.defineCommand("keygateLockoutFail", { numberOfKeys: 1, lua: LOCKOUT_FAIL_LUA });
  }
  return r;
}

export interface RedisLimitsOptions {
  /** An ioredis client; share one per process (it pipelines concurrent calls automatically). */
  redis: Redis;
  /** Prefix of every Redis key keygate writes; default `keygate:`. */
  keyPrefix?: string;
}

/**
 * Exact rate limits across any number of nodes: one Redis round trip per verification, one
 * Lua script, so no two nodes can both take the last request of a window. Windows are aligned
 * to the epoch by the nodes' clocks, which must agree (NTP) to within a small part of a window.
 *
 * @example
 * const redis = new Redis(process.env.KEYGATE_REDIS_URL!, { enableAutoPipelining: true });
 * const limiter = createRedisRateLimiter({ redis });
 */
export function createRedisRateLimiter(options: RedisLimitsOptions): RateLimiter {
  const redis = scripted(options.redis);
  const prefix = `${options.keyPrefix ?? "keygate:"}rl:`;
  const run = async (id: string, limit: number, windowMs: number, now: number, consume: 0 | 1): Promise<RateLimitVerdict> => {
    const start = now - (now % windowMs);
    const end = start + windowMs;
    const [allowed, count] = await redis.keygateRateLimit(`${prefix}${id}:${start}`, limit, end, consume);
    return { allowed: allowed === 1, limit, remaining: Math.max(0, limit - count), resetAt: end };
  };
  return {
    consume: (id, limit, windowMs, now) => run(id, limit, windowMs, now, 1),
    peek: (id, limit, windowMs, now) => run(id, limit, windowMs, now, 0),
  };
}

/**
 * The brute-force lockout shared by all nodes: a failure counted on one node blocks the
 * client on every node.
 *
 * @example
 * const lockout = createRedisLockout({ redis });
 */
export function createRedisLockout(options: RedisLimitsOptions): Lockout {
  const redis = scripted(options.redis);
  const prefix = `${options.keyPrefix ?? "keygate:"}lo:`;
  const state = (failures: number, blockedUntil: number, policy: LockoutPolicy, now: number): LockoutState =>
    blockedUntil > now
      ? { blocked: true, attemptsLeft: 0, blockedUntil }
      : { blocked: false, attemptsLeft: Math.max(0, policy.maxAttempts - failures), blockedUntil: null };
  return {
    async check(subject, policy, now) {
      const [f, w, b] = await redis.hmget(`${prefix}${subject}`, "f", "w", "b");
      const failures = Number(f ?? 0);
      const windowStart = Number(w ?? 0);
      const blockedUntil = Number(b ?? 0);
      if (blockedUntil > now) return state(failures, blockedUntil, policy, now);
      if (blockedUntil !== 0 || windowStart + policy.windowMs <= now) return state(0, 0, policy, now);
      return state(failures, 0, policy, now);
    },
    async recordFailure(subject, policy, now) {
      const [failures, blockedUntil] = await redis.keygateLockoutFail(`${prefix}${subject}`, now, policy.windowMs, policy.blockMs, policy.maxAttempts);
      if (blockedUntil > now) return { blocked: true, attemptsLeft: 0, blockedUntil };
      return state(failures, blockedUntil, policy, now);
    },
    async recordSuccess(subject) {
      await redis.del(`${prefix}${subject}`);
    },
  };
}
