/**
 * The Redis limits send every rate-limit consume, peek and lockout read of one tick as one
 * script call: how many calls that makes, that it stays exact across keys and across nodes,
 * and what every caller of a batch sees when Redis refuses one operation, fails the call, or
 * is away.
 */
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { Redis } from "ioredis";
import type { Command } from "ioredis";
import { KeygateError } from "../../src/lib/errors.js";
import { createRedisLockout, createRedisRateLimiter, RedisLimitsError } from "../../src/limits/redis/index.js";
import { withFailureMode } from "../../src/limits/resilient.js";
import type { LockoutPolicy, LockoutState, RateLimitVerdict } from "../../src/limits/types.js";
import { deleteRedisKeys, REDIS_SKIP, REDIS_URL, startPrivateRedis, uniqueRedisPrefix } from "../support/scale-out.js";
import type { PrivateRedis } from "../support/scale-out.js";

const HOUR = 3_600_000;
const MINUTE = 60_000;
/** An hour boundary in the near future, so that real-time key expiry never gets in the way. */
const T0 = Math.ceil(Date.now() / HOUR) * HOUR + 2 * HOUR;
const POLICY: LockoutPolicy = { maxAttempts: 3, windowMs: 10 * MINUTE, blockMs: 15 * MINUTE };

let ids = 0;
const fresh = (what: string): string => `${what}-${++ids}`;

/** Notes the name of every command `redis` sends itself; `fail` may answer one with an error instead. */
function watch(redis: Redis): { sent: string[]; fail: ((command: Command) => Error | null) | null } {
  const seen = { sent: [] as string[], fail: null as ((command: Command) => Error | null) | null };
  const send = redis.sendCommand.bind(redis);
  redis.sendCommand = ((command: Command, ...rest: unknown[]) => {
    seen.sent.push(command.name);
    const error = seen.fail?.(command) ?? null;
    if (error) {
      command.reject(error);
      return command.promise;
    }
    return (send as (c: Command, ...r: unknown[]) => unknown)(command, ...rest);
  }) as typeof redis.sendCommand;
  return seen;
}

/** Script calls sent: EVALSHA, each followed by an EVAL only when Redis did not know the script. */
const scriptCalls = (sent: string[]): number => sent.filter((n) => n === "evalsha").length;

/** The ports answer `T | Promise<T>`; the Redis ones always a promise. */
const later = <T>(x: T | Promise<T>): Promise<T> => Promise.resolve(x);

/** Settles every promise and sorts the outcomes into values and errors. */
async function outcomes<T>(promises: Promise<T>[]): Promise<{ values: T[]; errors: unknown[] }> {
  const settled = await Promise.allSettled(promises);
  return {
    values: settled.flatMap((s) => (s.status === "fulfilled" ? [s.value] : [])),
    errors: settled.flatMap((s) => (s.status === "rejected" ? [s.reason] : [])),
  };
}

describe("Redis limits: one script call per turn of the event loop", { skip: REDIS_SKIP }, () => {
  let redis: Redis;
  let other: Redis;
  const keyPrefix = uniqueRedisPrefix("batch");
  before(async () => {
    redis = new Redis(REDIS_URL!, { enableAutoPipelining: true });
    other = new Redis(REDIS_URL!, { enableAutoPipelining: true });
    // Loads the script, so that the calls counted below are EVALSHA only.
    await createRedisRateLimiter({ redis, keyPrefix }).peek("warm-up", 1, HOUR, T0);
  });
  after(async () => {
    await deleteRedisKeys(redis, keyPrefix);
    redis.disconnect();
    other.disconnect();
  });

  test("consumes of several keys and lockout reads of several clients in one tick cost one script call", async () => {
    const seen = watch(redis);
    const limiter = createRedisRateLimiter({ redis, keyPrefix });
    const lockout = createRedisLockout({ redis, keyPrefix });
    const keys = [fresh("key"), fresh("key"), fresh("key")];
    const clients = [fresh("ip"), fresh("ip")];
    const consumes = keys.flatMap((id) => Array.from({ length: 20 }, () => limiter.consume(id, 10, HOUR, T0)));
    const checks = clients.flatMap((ip) => Array.from({ length: 5 }, () => lockout.check(ip, POLICY, T0)));
    const verdicts = await Promise.all(consumes);
    const states = await Promise.all(checks);
    assert.equal(scriptCalls(seen.sent), 1);
    for (let k = 0; k < keys.length; k++) assert.equal(verdicts.slice(20 * k, 20 * k + 20).filter((v) => v.allowed).length, 10);
    for (const s of states) assert.deepEqual(s, { blocked: false, attemptsLeft: 3, blockedUntil: null });
  });

  test("operations issued in separate callbacks of one turn of the event loop, as a server reads its requests, share one script call", async () => {
    const seen = watch(redis);
    const limiter = createRedisRateLimiter({ redis, keyPrefix });
    const lockout = createRedisLockout({ redis, keyPrefix });
    const id = fresh("key");
    const ip = fresh("ip");
    // Four callbacks of one phase of the loop, each followed by its ticks and microtasks, as
    // the read callbacks of different sockets are.
    const issued = await Promise.all(Array.from({ length: 4 }, () => new Promise<[Promise<RateLimitVerdict>, Promise<LockoutState>]>((resolve) => {
      setImmediate(() => resolve([later(limiter.consume(id, 3, HOUR, T0)), later(lockout.check(ip, POLICY, T0))]));
    })));
    const verdicts = await Promise.all(issued.map(([v]) => v));
    await Promise.all(issued.map(([, l]) => l));
    assert.equal(scriptCalls(seen.sent), 1);
    assert.deepEqual(verdicts.map((v) => [v.allowed, v.remaining]), [[true, 2], [true, 1], [true, 0], [false, 0]]);
  });

  test("more operations than one call holds are split into several calls, each exact", async () => {
    const seen = watch(redis);
    const limiter = createRedisRateLimiter({ redis, keyPrefix });
    const keys = Array.from({ length: 300 }, () => fresh("key"));
    const verdicts = await Promise.all(keys.flatMap((id) => [limiter.consume(id, 1, HOUR, T0), limiter.consume(id, 1, HOUR, T0)]));
    assert.equal(scriptCalls(seen.sent), 3); // 128 + 128 + 44 operations
    for (let k = 0; k < keys.length; k++) assert.deepEqual([verdicts[2 * k]!.allowed, verdicts[2 * k + 1]!.allowed], [true, false]);
  });

  test("two nodes consuming the same keys at once admit exactly each key's limit between them", async () => {
    const nodes = [createRedisRateLimiter({ redis, keyPrefix }), createRedisRateLimiter({ redis: other, keyPrefix })];
    const keys = [fresh("key"), fresh("key"), fresh("key")];
    for (let round = 0; round < 5; round++) {
      const burst = keys.flatMap((id, k) => nodes.flatMap((node) => Array.from({ length: 30 }, () => later(node.consume(id, 7 * (k + 1), HOUR, T0 + round)).then((v) => ({ k, v })))));
      const verdicts = await Promise.all(burst);
      if (round === 0) {
        for (let k = 0; k < keys.length; k++) assert.equal(verdicts.filter((x) => x.k === k && x.v.allowed).length, 7 * (k + 1));
      } else {
        assert.equal(verdicts.filter((x) => x.v.allowed).length, 0, `round ${round}`);
      }
    }
  });

  test("a peek in the same tick as consumes reads the window without taking from it", async () => {
    const limiter = createRedisRateLimiter({ redis, keyPrefix });
    const id = fresh("key");
    const [a, b, p] = await Promise.all([later(limiter.consume(id, 5, HOUR, T0)), later(limiter.consume(id, 5, HOUR, T0)), later(limiter.peek(id, 5, HOUR, T0))]);
    assert.equal(a.remaining, 4);
    assert.equal(b.remaining, 3);
    assert.deepEqual(p, { allowed: true, limit: 5, remaining: 3, resetAt: T0 + HOUR });
    assert.equal((await limiter.peek(id, 5, HOUR, T0)).remaining, 3);
  });

  test("a key Redis refuses fails only its own callers; the rest of the batch is answered and counted", async () => {
    const limiter = createRedisRateLimiter({ redis, keyPrefix });
    const lockout = createRedisLockout({ redis, keyPrefix });
    const good = fresh("key");
    const poisoned = fresh("key");
    const badClient = fresh("ip");
    // Keys of another type where the limits expect a counter and a hash.
    await redis.hset(`${keyPrefix}rl:${poisoned}:${T0}`, "x", "1");
    await redis.set(`${keyPrefix}lo:${badClient}`, "x");
    const goodCalls = Array.from({ length: 8 }, () => limiter.consume(good, 5, HOUR, T0));
    const badCalls = Array.from({ length: 4 }, () => later(limiter.consume(poisoned, 5, HOUR, T0)));
    const badCheck = later(lockout.check(badClient, POLICY, T0));
    const goodCheck = lockout.check(fresh("ip"), POLICY, T0);
    const bad = await outcomes<unknown>([...badCalls, badCheck]);
    assert.equal(bad.values.length, 0);
    for (const e of bad.errors) {
      assert.ok(e instanceof RedisLimitsError);
      assert.match(e.message, /WRONGTYPE/);
    }
    assert.equal((await Promise.all(goodCalls)).filter((v) => v.allowed).length, 5);
    assert.deepEqual(await goodCheck, { blocked: false, attemptsLeft: 3, blockedUntil: null });
    assert.equal((await limiter.peek(good, 5, HOUR, T0)).remaining, 0);
  });

  test("a call that fails as a whole fails every caller in its batch, with the same error", async () => {
    const seen = watch(redis);
    const limiter = createRedisRateLimiter({ redis, keyPrefix });
    const lockout = createRedisLockout({ redis, keyPrefix });
    const busy = new Error("BUSY Redis is busy running a script.");
    seen.fail = (c) => (c.name === "evalsha" ? busy : null);
    const { values, errors } = await outcomes<unknown>([
      ...Array.from({ length: 10 }, () => later(limiter.consume(fresh("key"), 5, HOUR, T0))),
      later(limiter.consume("k", 5, HOUR, T0)), later(limiter.peek("k", 5, HOUR, T0)), later(lockout.check(fresh("ip"), POLICY, T0)),
    ]);
    assert.equal(values.length, 0);
    assert.equal(errors.length, 13);
    for (const e of errors) assert.equal(e, busy);
    seen.fail = null;
    assert.equal((await limiter.consume(fresh("key"), 5, HOUR, T0)).allowed, true);
  });

  test("under redis.failureMode closed every caller of a failed batch gets LIMITER_UNAVAILABLE; under local, the memory limits", async () => {
    const seen = watch(redis);
    seen.fail = (c) => (c.name === "evalsha" ? new Error("READONLY You can't write against a read only replica.") : null);
    for (const mode of ["closed", "local"] as const) {
      const { limiter, lockout } = withFailureMode(createRedisRateLimiter({ redis, keyPrefix }), createRedisLockout({ redis, keyPrefix }), mode);
      const id = fresh("key");
      const { values, errors } = await outcomes<unknown>([
        ...Array.from({ length: 6 }, () => later(limiter.consume(id, 4, HOUR, T0))),
        later(lockout.check(fresh("ip"), POLICY, T0)),
      ]);
      if (mode === "closed") {
        assert.equal(values.length, 0);
        assert.equal(errors.length, 7);
        for (const e of errors) {
          assert.ok(e instanceof KeygateError);
          assert.equal(e.code, "LIMITER_UNAVAILABLE");
        }
      } else {
        assert.equal(errors.length, 0);
        const verdicts = values.slice(0, 6) as { allowed: boolean }[];
        assert.equal(verdicts.filter((v) => v.allowed).length, 4);
        assert.deepEqual(values[6], { blocked: false, attemptsLeft: 3, blockedUntil: null });
      }
    }
  });
});

describe("Redis limits: outages, hangs and a flushed script cache (a private redis-server)", { skip: REDIS_SKIP }, () => {
  let server: PrivateRedis;
  let redis: Redis;
  const keyPrefix = uniqueRedisPrefix("batch-outage");
  before(async () => {
    server = await startPrivateRedis();
    // As keygate serve connects: no offline queue, one retry, a command timeout.
    redis = new Redis(server.url, { enableAutoPipelining: true, enableOfflineQueue: false, maxRetriesPerRequest: 1, commandTimeout: 300, retryStrategy: () => 50, lazyConnect: true });
    redis.on("error", () => {});
    await redis.connect();
  });
  after(async () => {
    redis.disconnect();
    await server.stop();
  });

  test("after SCRIPT FLUSH the batch is sent again with the script itself, and counted once", async () => {
    const limiter = createRedisRateLimiter({ redis, keyPrefix });
    const id = fresh("key");
    assert.equal((await limiter.consume(id, 5, HOUR, T0)).remaining, 4);
    await redis.script("FLUSH");
    const verdicts = await Promise.all(Array.from({ length: 6 }, () => limiter.consume(id, 5, HOUR, T0)));
    assert.deepEqual(verdicts.map((v) => v.remaining), [3, 2, 1, 0, 0, 0]);
    assert.deepEqual(verdicts.map((v) => v.allowed), [true, true, true, true, false, false]);
  });

  test("a hung Redis times out every caller of the batch in flight", async () => {
    const limiter = createRedisRateLimiter({ redis, keyPrefix });
    const lockout = createRedisLockout({ redis, keyPrefix });
    server.pause();
    try {
      const started = Date.now();
      const { values, errors } = await outcomes<unknown>([
        ...Array.from({ length: 10 }, (_, i) => later(limiter.consume(fresh("key"), 5, HOUR, T0 + i))),
        later(lockout.check(fresh("ip"), POLICY, T0)),
      ]);
      assert.equal(values.length, 0);
      assert.equal(errors.length, 11);
      for (const e of errors) assert.match((e as Error).message, /timed out/i);
      assert.ok(Date.now() - started < 5000);
    } finally {
      server.resume();
    }
  });

  test("while Redis is down every caller of a batch fails at once (closed: LIMITER_UNAVAILABLE), and the limits work again when it returns", async () => {
    const { limiter, lockout } = withFailureMode(createRedisRateLimiter({ redis, keyPrefix }), createRedisLockout({ redis, keyPrefix }), "closed");
    await server.stop();
    try {
      for (let i = 0; i < 50 && redis.status === "ready"; i++) await new Promise((r) => setTimeout(r, 20));
      const { values, errors } = await outcomes<unknown>([
        ...Array.from({ length: 10 }, () => later(limiter.consume(fresh("key"), 5, HOUR, T0))),
        later(lockout.check(fresh("ip"), POLICY, T0)),
      ]);
      assert.equal(values.length, 0);
      assert.equal(errors.length, 11);
      for (const e of errors) assert.equal((e as KeygateError).code, "LIMITER_UNAVAILABLE");
    } finally {
      await server.start();
    }
    for (let i = 0; i < 100 && redis.status !== "ready"; i++) await new Promise((r) => setTimeout(r, 20));
    const id = fresh("key");
    const verdicts = await Promise.all(Array.from({ length: 4 }, () => limiter.consume(id, 3, HOUR, T0)));
    assert.deepEqual(verdicts.map((v) => v.allowed), [true, true, true, false]);
  });
});
