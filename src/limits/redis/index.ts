import { createHash } from "node:crypto";
import { Command } from "ioredis";
import type { Redis } from "ioredis";
import type { Lockout, LockoutPolicy, LockoutState, RateLimiter, RateLimitVerdict } from "../types.js";

/**
 * Every rate-limit consume, peek and lockout read a process issues in one turn of the event
 * loop, in one atomic script call: KEYS[i] is operation i's key and ARGV[3i-2..3i] its
 * arguments. Redis runs the script as a whole, so each operation is as exact as if it ran
 * alone, and a hundred verifications cost Redis one command instead of a hundred.
 *
 * - Rate limit (ARGV limit ≥ 0, window end, n): a fixed window for `n` requests of one key:
 *   admit as many as the window still has room for, count only those, and return how many
 *   were admitted and the count before them. Refused requests are not counted, so `remaining`
 *   stays meaningful; the key expires just after its window. n = 0 only reads.
 * - Lockout read (ARGV limit = -1): the client's failures, window start and block end.
 *
 * Each operation runs under pcall: one that Redis refuses (a key of the wrong type, out of
 * memory) answers its error message in place of its figures, and the others still count.
 */
const BATCH_LUA = `
local function consume(key, limit, windowEnd, n)
  local c = tonumber(redis.call('GET', key) or '0')
  local take = math.min(n, math.max(0, limit - c))
  if take > 0 then
    if redis.call('INCRBY', key, take) == take then redis.call('PEXPIREAT', key, windowEnd + 1000) end
  end
  return take, c, 0
end
local function lockout(key)
  local v = redis.call('HMGET', key, 'f', 'w', 'b')
  return tonumber(v[1]) or 0, tonumber(v[2]) or 0, tonumber(v[3]) or 0
end
local out = {}
for i = 1, #KEYS do
  local a = tonumber(ARGV[3 * i - 2])
  local ok, x, y, z
  if a < 0 then ok, x, y, z = pcall(lockout, KEYS[i])
  else ok, x, y, z = pcall(consume, KEYS[i], a, tonumber(ARGV[3 * i - 1]), tonumber(ARGV[3 * i])) end
  if not ok then
    x = type(x) == 'table' and (x.err or 'error') or tostring(x)
    y = 0; z = 0
  end
  out[3 * i - 2] = x; out[3 * i - 1] = y; out[3 * i] = z
end
return out
`;
const BATCH_SHA = createHash("sha1").update(BATCH_LUA).digest("hex");

/**
 * Most operations in one script call: a larger batch is split, so that one call never holds
 * Redis for long (Redis runs nothing else while a script runs).
 */
const MAX_BATCH = 128;

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
  keygateLockoutFail(key: string, now: number, windowMs: number, blockMs: number, maxAttempts: number): Promise<[number, number]>;
};

function scripted(redis: Redis): Scripted {
  const r = redis as Scripted;
  if (typeof r.keygateLockoutFail !== "function") redis.defineCommand("keygateLockoutFail", { numberOfKeys: 1, lua: LOCKOUT_FAIL_LUA });
  return r;
}

/** One caller of an operation; lockout reads also carry the policy and time to judge by. */
interface Waiter<T> {
  resolve(value: T): void;
  reject(error: unknown): void;
  policy?: LockoutPolicy;
  now?: number;
  promise?: Promise<T>;
}

/** One operation of a batch, and the callers sharing it. */
interface Operation {
  /** -1 for a lockout read, else the rate limit. */
  limit: number;
  /** End of the rate-limit window; 0 for a lockout read. */
  end: number;
  /** Requests to take: the number of consumers; 0 for a peek or a lockout read. */
  n: number;
  waiters: Waiter<never>[];
  /** Answers every waiter from the operation's three figures. */
  settle(op: Operation, x: number, y: number, z: number): void;
}

/**
 * The error Redis answered for one operation of a batch (say, WRONGTYPE for a key of another
 * type under the prefix); only that operation's callers see it. `withFailureMode` treats it
 * as an outage of the shared store, as it does any other error.
 *
 * @example
 * try { await limiter.consume(keyId, 100, 60_000, Date.now()); }
 * catch (e) { if (e instanceof RedisLimitsError) log.warn(e.message); throw e; }
 */
export class RedisLimitsError extends Error {
  override name = "RedisLimitsError";
}

/**
 * Gathers the operations of a turn of the event loop into one script call per Redis client,
 * shared by the rate limiter and the lockout built on that client, so a verification's
 * lockout read rides in the same call as its rate limit.
 */
interface Batcher {
  /**
   * Counts the batches sent. A port may add callers to an operation it queued while the
   * number is unchanged; once it changes, that operation is on its way to Redis.
   */
  readonly sent: number;
  /** Queues a new operation in the pending batch; the caller adds itself to `waiters` at once. */
  queue(key: string, limit: number, end: number, settle: Operation["settle"]): Operation;
}

const batchers = new WeakMap<Redis, Batcher>();

function batcherFor(redis: Redis): Batcher {
  let b = batchers.get(redis);
  if (!b) {
    b = createBatcher(redis);
    batchers.set(redis, b);
  }
  return b;
}

function answer(batch: Operation[], reply: unknown): void {
  const r = reply as (number | string)[];
  for (let i = 0; i < batch.length; i++) {
    const op = batch[i]!;
    const x = r[3 * i];
    if (typeof x === "number") {
      op.settle(op, x, r[3 * i + 1] as number, r[3 * i + 2] as number);
    } else {
      const e = new RedisLimitsError(`Redis refused a rate-limit or lockout operation: ${String(x)}`);
      for (const w of op.waiters) w.reject(e);
    }
  }
}

function failAll(batch: Operation[], error: unknown): void {
  for (const op of batch) for (const w of op.waiters) w.reject(error);
}

function createBatcher(redis: Redis): Batcher {
  let ops: Operation[] = [];
  let keys: string[] = [];
  let scheduled = false;

  const send = (name: "evalsha" | "eval", args: (string | number)[]): Promise<unknown> =>
    // Sent at once rather than through ioredis' auto-pipelining, which would wrap the one
    // command in a pipeline of its own and send it a turn of the event loop later.
    redis.sendCommand(new Command(name, args, { replyEncoding: "utf8", keyPrefix: redis.options.keyPrefix })) as Promise<unknown>;

  const batcher = {
    sent: 0,
    queue(key: string, limit: number, end: number, settle: Operation["settle"]): Operation {
      if (ops.length >= MAX_BATCH) flush();
      const op: Operation = { limit, end, n: 0, waiters: [], settle };
      ops.push(op);
      keys.push(key);
      if (!scheduled) {
        scheduled = true;
        // Sent when the event loop has run every I/O callback ready in this turn, not at the end
        // of the current one (process.nextTick): a server reads each request in a callback of its
        // own, so a batch per callback would be a script call per HTTP request. Measured
        // (bench/verify-http.ts, 32 connections): Redis limits went from 0.72 of memory limits'
        // requests per second to 0.97; in-process batches, all issued in one callback, are as before.
        setImmediate(onTurn);
      }
      return op;
    },
  };

  function flush(): void {
    if (ops.length === 0) return;
    const batch = ops;
    const args: (string | number)[] = [BATCH_SHA, keys.length];
    for (const key of keys) args.push(key);
    for (const op of batch) args.push(op.limit, op.end, op.n);
    ops = [];
    keys = [];
    batcher.sent++;
    send("evalsha", args)
      .catch((e: unknown) => {
        // Redis restarted or its script cache was flushed: send the script itself.
        if (!(e instanceof Error) || !e.message.startsWith("NOSCRIPT")) throw e;
        args[0] = BATCH_LUA;
        return send("eval", args);
      })
      .then((reply) => answer(batch, reply))
      // An error, or a reply that is not what the script returns: every caller not yet answered gets it.
      .catch((e: unknown) => failAll(batch, e));
  }
  function onTurn(): void {
    scheduled = false;
    flush();
  }
  return batcher;
}

/**
 * The operations a port queued in the batch not yet sent, by key, so that concurrent callers
 * share one. A new `Map` for every batch rather than `Map#clear`: V8 links a cleared table to
 * the table that replaces it, so once the map had been promoted to the old generation, every
 * later batch's operations (and their callers' promises) stayed reachable through that chain
 * across young-generation collections until the next full one. Measured with 64 verifications
 * in flight: 1.6 MB promoted per scavenge, 2–3 ms pauses, and less than half the throughput.
 */
function pendingOps(batcher: Batcher): () => Map<string, Operation> {
  let sent = -1;
  let ops = new Map<string, Operation>();
  return () => {
    if (sent !== batcher.sent) { ops = new Map(); sent = batcher.sent; }
    return ops;
  };
}

// The resolving functions of the promise `waitOn` makes, handed over by one executor shared
// by every call: a closure per promise would capture the caller's list and be one more
// allocation per verification.
let resolveNext: Waiter<never>["resolve"] = () => {};
let rejectNext: Waiter<never>["reject"] = () => {};
function capture(resolve: (value: never) => void, reject: (error: unknown) => void): void {
  resolveNext = resolve;
  rejectNext = reject;
}

/** A promise of the answer, its caller added to `waiters`. */
function waitOn<T>(waiters: Waiter<T>[], policy?: LockoutPolicy, now?: number): Promise<T> {
  const promise = new Promise<T>(capture as (resolve: (value: T) => void, reject: (error: unknown) => void) => void);
  const waiter: Waiter<T> = { resolve: resolveNext, reject: rejectNext };
  if (policy !== undefined) { waiter.policy = policy; waiter.now = now; waiter.promise = promise; }
  waiters.push(waiter);
  return promise;
}

/** Consumers of one key and window are admitted in the order they came: the i-th when i < take. */
function settleConsume(op: Operation, take: number, before: number): void {
  const { limit, end: resetAt } = op;
  const waiters = op.waiters as Waiter<RateLimitVerdict>[];
  for (let i = 0; i < waiters.length; i++) {
    const allowed = i < take;
    const used = allowed ? before + i + 1 : before + take;
    waiters[i]!.resolve({ allowed, limit, remaining: Math.max(0, limit - used), resetAt });
  }
}

function settlePeek(op: Operation, _take: number, count: number): void {
  const { limit, end: resetAt } = op;
  for (const w of op.waiters as Waiter<RateLimitVerdict>[]) w.resolve({ allowed: count < limit, limit, remaining: Math.max(0, limit - count), resetAt });
}

const lockoutState = (failures: number, blockedUntil: number, policy: LockoutPolicy, now: number): LockoutState =>
  blockedUntil > now
    ? { blocked: true, attemptsLeft: 0, blockedUntil }
    : { blocked: false, attemptsLeft: Math.max(0, policy.maxAttempts - failures), blockedUntil: null };

/** A failure window that has run out, or a block that has, leaves the client a clean slate. */
function settleLockout(op: Operation, failures: number, windowStart: number, blockedUntil: number): void {
  for (const w of op.waiters as Waiter<LockoutState>[]) {
    const policy = w.policy!;
    const now = w.now!;
    // Frozen: callers that checked at the same time share the one state.
    if (blockedUntil > now) w.resolve(Object.freeze(lockoutState(failures, blockedUntil, policy, now)));
    else if (blockedUntil !== 0 || windowStart + policy.windowMs <= now) w.resolve(Object.freeze(lockoutState(0, 0, policy, now)));
    else w.resolve(Object.freeze(lockoutState(failures, 0, policy, now)));
  }
}

export interface RedisLimitsOptions {
  /** An ioredis client; share one per process (the limiter and the lockout batch their calls on it). */
  redis: Redis;
  /** Prefix of every Redis key keygate writes; default `keygate:`. */
  keyPrefix?: string;
}

/**
 * Exact rate limits across any number of nodes: every rate limit and lockout read a process
 * issues in one turn of the event loop goes to Redis as one Lua script call, so no two nodes
 * can both take the last request of a window, and a busy node costs Redis one call per turn
 * rather than one per verification. Windows are aligned to the epoch by the nodes' clocks,
 * which must agree (NTP) to within a small part of a window.
 *
 * Failures: when the call fails as a whole (Redis unreachable, timed out, a script error) every
 * caller in that batch gets the error — which `withFailureMode` turns into the configured
 * failure mode; when Redis refuses one key's operation (say, a key of another type under the
 * prefix), only that key's callers get a {@link RedisLimitsError}.
 *
 * Needs one Redis server (or a primary with replicas); a Redis Cluster would refuse a script
 * whose keys lie in different slots.
 *
 * @example
 * const redis = new Redis(process.env.KEYGATE_REDIS_URL!);
 * const limiter = createRedisRateLimiter({ redis });
 */
export function createRedisRateLimiter(options: RedisLimitsOptions): RateLimiter {
  const batcher = batcherFor(options.redis);
  const prefix = `${options.keyPrefix ?? "keygate:"}rl:`;
  // The consumes of each key queued in the pending batch: concurrent requests of one key
  // share one operation, which admits exactly as many of them as the window has room for.
  const pending = pendingOps(batcher);
  return {
    consume(id, limit, windowMs, now) {
      const start = now - (now % windowMs);
      const end = start + windowMs;
      let op = pending().get(id);
      if (op === undefined || op.end !== end || op.limit !== limit) {
        op = batcher.queue(`${prefix}${id}:${start}`, limit, end, settleConsume);
        pending().set(id, op);
      }
      op.n++;
      return waitOn(op.waiters as Waiter<RateLimitVerdict>[]);
    },
    peek(id, limit, windowMs, now) {
      const start = now - (now % windowMs);
      const op = batcher.queue(`${prefix}${id}:${start}`, limit, start + windowMs, settlePeek);
      return waitOn(op.waiters as Waiter<RateLimitVerdict>[]);
    },
  };
}

/**
 * The brute-force lockout shared by all nodes: a failure counted on one node blocks the
 * client on every node. Its reads join the rate limiter's script call on the same client.
 *
 * @example
 * const lockout = createRedisLockout({ redis });
 */
export function createRedisLockout(options: RedisLimitsOptions): Lockout {
  const redis = scripted(options.redis);
  const batcher = batcherFor(options.redis);
  const prefix = `${options.keyPrefix ?? "keygate:"}lo:`;
  // Concurrent checks of one client share one read.
  const pending = pendingOps(batcher);
  return {
    check(subject, policy, now) {
      let op = pending().get(subject);
      if (op === undefined) {
        op = batcher.queue(`${prefix}${subject}`, -1, 0, settleLockout);
        pending().set(subject, op);
      }
      // Checks of one client under one policy in the same millisecond share one answer.
      const last = op.waiters[op.waiters.length - 1] as Waiter<LockoutState> | undefined;
      if (last !== undefined && last.policy === policy && last.now === now) return last.promise!;
      return waitOn(op.waiters as Waiter<LockoutState>[], policy, now);
    },
    async recordFailure(subject, policy, now) {
      const [failures, blockedUntil] = await redis.keygateLockoutFail(`${prefix}${subject}`, now, policy.windowMs, policy.blockMs, policy.maxAttempts);
      if (blockedUntil > now) return { blocked: true, attemptsLeft: 0, blockedUntil };
      return lockoutState(failures, blockedUntil, policy, now);
    },
    async recordSuccess(subject) {
      await redis.del(`${prefix}${subject}`);
    },
  };
}
