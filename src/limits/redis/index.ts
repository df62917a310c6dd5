import type { Redis } from "ioredis";
import type { Lockout, LockoutPolicy, LockoutState, RateLimiter, RateLimitVerdict } from "../types.js";

/**
 * Fixed window in one atomic script, for a batch of `n` requests of one key: admit as many as
 * the window still has room for, count only those, and return how many were admitted and
 * the count before them. Refused requests are not counted, so `remaining` stays meaningful;
 * the key expires just after its window. n = 0 only reads.
 */
const RATE_LIMIT_LUA = `
local c = tonumber(redis.call('GET', KEYS[1]) or '0')
local n = tonumber(ARGV[3])
local take = math.min(n, math.max(0, tonumber(ARGV[1]) - c))
if take > 0 then
  if redis.call('INCRBY', KEYS[1], take) == take then redis.call('PEXPIREAT', KEYS[1], tonumber(ARGV[2]) + 1000) end
end
return {take, c}
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
  keygateRateLimit(key: string, limit: number, windowEnd: number, n: number): Promise<[number, number]>;
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

  // Requests for the same key and window that arrive in the same tick share one script call:
  // a hot key under load costs one round trip per tick instead of one per request, and the
  // script admits exactly as many of them as the window has room for.
  interface Waiter { resolve(v: RateLimitVerdict): void; reject(e: unknown): void }
  interface Batch { key: string; limit: number; end: number; waiters: Waiter[] }
  let pending = new Map<string, Batch>();
  const flush = (): void => {
    const batches = pending;
    pending = new Map();
    for (const b of batches.values()) {
      redis.keygateRateLimit(b.key, b.limit, b.end, b.waiters.length).then(([take, before]) => {
        b.waiters.forEach((w, i) => {
          const allowed = i < take;
          const used = allowed ? before + i + 1 : before + take;
          w.resolve({ allowed, limit: b.limit, remaining: Math.max(0, b.limit - used), resetAt: b.end });
        });
      }, (e: unknown) => { for (const w of b.waiters) w.reject(e); });
    }
  };

  return {
    consume(id, limit, windowMs, now) {
      const start = now - (now % windowMs);
      const key = `${prefix}${id}:${start}`;
      return new Promise<RateLimitVerdict>((resolve, reject) => {
        let b = pending.get(`${key}|${limit}`);
        if (!b) {
          if (pending.size === 0) process.nextTick(flush);
          b = { key, limit, end: start + windowMs, waiters: [] };
          pending.set(`${key}|${limit}`, b);
        }
        b.waiters.push({ resolve, reject });
      });
    },
    async peek(id, limit, windowMs, now) {
      const start = now - (now % windowMs);
      const [, count] = await redis.keygateRateLimit(`${prefix}${id}:${start}`, limit, start + windowMs, 0);
      return { allowed: count < limit, limit, remaining: Math.max(0, limit - count), resetAt: start + windowMs };
    },
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
  // Concurrent checks of one client in the same tick share one read.
  let reads = new Map<string, Promise<(string | null)[]>>();
  const read = (subject: string): Promise<(string | null)[]> => {
    let p = reads.get(subject);
    if (!p) {
      if (reads.size === 0) process.nextTick(() => { reads = new Map(); });
      p = redis.hmget(`${prefix}${subject}`, "f", "w", "b");
      reads.set(subject, p);
    }
    return p;
  };
  return {
    async check(subject, policy, now) {
      const [f, w, b] = await read(subject);
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
