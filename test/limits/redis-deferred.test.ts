/**
 * The Redis limiter and lockout as `keygate` exports them (src/limits/redis-deferred.ts): the
 * adapter module is imported on first creation, and calls made before it has loaded wait for
 * it instead of failing; afterwards they go straight to the adapter, results unchanged.
 */
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { Redis } from "ioredis";
import { createRedisLockout, createRedisRateLimiter } from "../../src/limits/redis-deferred.js";
import { deleteRedisKeys, REDIS_SKIP, REDIS_URL, uniqueRedisPrefix } from "../support/scale-out.js";

describe("deferred Redis limits", { skip: REDIS_SKIP }, () => {
  let redis: Redis;
  const prefix = uniqueRedisPrefix("deferred");
  before(() => { redis = new Redis(REDIS_URL!); });
  after(async () => {
    await deleteRedisKeys(redis, prefix);
    redis.disconnect();
  });

  test("calls made in the same tick as creation wait for the adapter, and count exactly", async () => {
    const limiter = createRedisRateLimiter({ redis, keyPrefix: prefix });
    const now = Date.now();
    const verdicts = await Promise.all([1, 2, 3].map(() => limiter.consume("key_a", 2, 60_000, now)));
    assert.deepEqual(verdicts.map((v) => v.allowed).sort(), [false, true, true]);
    // Loaded now: the next call reaches the adapter directly and sees the same window.
    const peek = await limiter.peek("key_a", 2, 60_000, now);
    assert.equal(peek.remaining, 0);
  });

  test("the lockout counts failures to a block and clears on success", async () => {
    const lockout = createRedisLockout({ redis, keyPrefix: prefix });
    const policy = { maxAttempts: 2, windowMs: 60_000, blockMs: 60_000 };
    const now = Date.now();
    assert.equal((await lockout.check("ip:203.0.113.1", policy, now)).blocked, false);
    await lockout.recordFailure("ip:203.0.113.1", policy, now);
    const blocked = await lockout.recordFailure("ip:203.0.113.1", policy, now);
    assert.equal(blocked.blocked, true);
    await lockout.recordSuccess("ip:203.0.113.1");
    assert.equal((await lockout.check("ip:203.0.113.1", policy, now)).blocked, false);
  });
});
