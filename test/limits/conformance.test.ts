/**
 * One suite for every rate-limiter and lockout adapter (memory, Redis), so they cannot drift
 * apart. Time is always passed explicitly; it starts at an hour boundary in the near future
 * so that Redis' real-time key expiry (PEXPIREAT) never removes a counter a test still reads.
 */
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { Redis } from "ioredis";
import { createMemoryLockout, createMemoryRateLimiter } from "../../src/limits/memory/index.js";
import { createRedisLockout, createRedisRateLimiter } from "../../src/limits/redis/index.js";
import type { Lockout, LockoutPolicy, RateLimiter } from "../../src/limits/types.js";
import { deleteRedisKeys, REDIS_SKIP, REDIS_URL, uniqueRedisPrefix } from "../support/scale-out.js";

interface Limits {
  limiter: RateLimiter;
  lockout: Lockout;
  close(): Promise<void>;
}

const ADAPTERS: Array<[name: string, make: () => Promise<Limits>, skip: string | false]> = [
  ["memory", async () => ({ limiter: createMemoryRateLimiter(), lockout: createMemoryLockout(), close: async () => {} }), false],
  ["redis", async () => {
    const redis = new Redis(REDIS_URL!, { enableAutoPipelining: true });
    const keyPrefix = uniqueRedisPrefix("limits");
    return {
      limiter: createRedisRateLimiter({ redis, keyPrefix }),
      lockout: createRedisLockout({ redis, keyPrefix }),
      async close() {
        await deleteRedisKeys(redis, keyPrefix);
        redis.disconnect();
      },
    };
  }, REDIS_SKIP],
];

const HOUR = 3_600_000;
const MINUTE = 60_000;
/** An hour boundary a few hours ahead: every window below lies in the real future. */
const T0 = Math.ceil(Date.now() / HOUR) * HOUR + 2 * HOUR;

let ids = 0;
const fresh = (what: string): string => `${what}-${++ids}`;

for (const [name, make, skip] of ADAPTERS) {
  describe(`limits conformance: ${name}`, { skip }, () => {
    let limits: Limits;
    before(async () => { limits = await make(); });
    after(async () => { await limits?.close(); });

    describe("rate limiter", () => {
      test("admits exactly `limit` of 500 concurrent requests", async () => {
        const id = fresh("key");
        const verdicts = await Promise.all(Array.from({ length: 500 }, () => limits.limiter.consume(id, 50, HOUR, T0 + 1_000)));
        const allowed = verdicts.filter((v) => v.allowed);
        assert.equal(allowed.length, 50);
        // Each admitted request saw a different count: remaining takes every value 49…0 once.
        assert.deepEqual(allowed.map((v) => v.remaining).sort((a, b) => a - b), Array.from({ length: 50 }, (_, i) => i));
        for (const v of verdicts.filter((x) => !x.allowed)) assert.deepEqual(v, { allowed: false, limit: 50, remaining: 0, resetAt: T0 + HOUR });
      });

      test("remaining counts down and resetAt is the end of the epoch-aligned window", async () => {
        const id = fresh("key");
        const now = T0 + 12_345;
        const seen = [];
        for (let i = 0; i < 4; i++) seen.push(await limits.limiter.consume(id, 3, MINUTE, now + i));
        assert.deepEqual(seen, [
          { allowed: true, limit: 3, remaining: 2, resetAt: T0 + MINUTE },
          { allowed: true, limit: 3, remaining: 1, resetAt: T0 + MINUTE },
          { allowed: true, limit: 3, remaining: 0, resetAt: T0 + MINUTE },
          { allowed: false, limit: 3, remaining: 0, resetAt: T0 + MINUTE },
        ]);
      });

      test("a window that does not divide the hour is still aligned to the epoch", async () => {
        const id = fresh("key");
        const windowMs = 7_000;
        const now = T0 + 10_500;
        const start = now - (now % windowMs);
        const v = await limits.limiter.consume(id, 10, windowMs, now);
        assert.deepEqual(v, { allowed: true, limit: 10, remaining: 9, resetAt: start + windowMs });
      });

      test("the next window starts exactly at the boundary, with the full limit", async () => {
        const id = fresh("key");
        const lastMs = T0 + MINUTE - 1;
        assert.equal((await limits.limiter.consume(id, 2, MINUTE, T0)).remaining, 1);
        assert.equal((await limits.limiter.consume(id, 2, MINUTE, lastMs)).remaining, 0);
        const refused = await limits.limiter.consume(id, 2, MINUTE, lastMs);
        assert.equal(refused.allowed, false);
        assert.equal(refused.resetAt, T0 + MINUTE);
        assert.deepEqual(await limits.limiter.consume(id, 2, MINUTE, T0 + MINUTE), { allowed: true, limit: 2, remaining: 1, resetAt: T0 + 2 * MINUTE });
        assert.deepEqual(await limits.limiter.consume(id, 2, MINUTE, T0 + 2 * MINUTE - 1), { allowed: true, limit: 2, remaining: 0, resetAt: T0 + 2 * MINUTE });
        assert.equal((await limits.limiter.consume(id, 2, MINUTE, T0 + 2 * MINUTE - 1)).allowed, false);
      });

      test("refused requests are not counted", async () => {
        const id = fresh("key");
        for (let i = 0; i < 5; i++) await limits.limiter.consume(id, 2, MINUTE, T0 + i);
        assert.equal((await limits.limiter.peek(id, 2, MINUTE, T0 + 10)).remaining, 0);
        // Raising the limit mid-window admits exactly the difference: 5 calls counted 2, not 5.
        const raised = await limits.limiter.consume(id, 4, MINUTE, T0 + 11);
        assert.deepEqual(raised, { allowed: true, limit: 4, remaining: 1, resetAt: T0 + MINUTE });
      });

      test("peek reports the window without consuming from it", async () => {
        const id = fresh("key");
        assert.deepEqual(await limits.limiter.peek(id, 3, MINUTE, T0 + 5), { allowed: true, limit: 3, remaining: 3, resetAt: T0 + MINUTE });
        await limits.limiter.consume(id, 3, MINUTE, T0 + 6);
        for (let i = 0; i < 5; i++) {
          const p = await limits.limiter.peek(id, 3, MINUTE, T0 + 7);
          assert.equal(p.remaining, 2);
          assert.equal(p.resetAt, T0 + MINUTE);
        }
        assert.equal((await limits.limiter.consume(id, 3, MINUTE, T0 + 8)).remaining, 1);
        assert.equal((await limits.limiter.consume(id, 3, MINUTE, T0 + 9)).remaining, 0);
        assert.deepEqual(await limits.limiter.peek(id, 3, MINUTE, T0 + 10), { allowed: false, limit: 3, remaining: 0, resetAt: T0 + MINUTE });
        // The next window is untouched by anything above.
        assert.equal((await limits.limiter.peek(id, 3, MINUTE, T0 + MINUTE)).remaining, 3);
      });

      test("keys are counted independently", async () => {
        const a = fresh("key");
        const b = fresh("key");
        await Promise.all(Array.from({ length: 20 }, () => limits.limiter.consume(a, 5, MINUTE, T0)));
        assert.equal((await limits.limiter.consume(a, 5, MINUTE, T0)).allowed, false);
        assert.deepEqual(await limits.limiter.consume(b, 5, MINUTE, T0), { allowed: true, limit: 5, remaining: 4, resetAt: T0 + MINUTE });
      });
    });

      test("a burst across several keys admits exactly each key's limit", async () => {
        const caps = [1, 3, 7, 20, 50];
        const ids = caps.map(() => fresh("key"));
        // Interleaved, as concurrent requests of several keys arrive.
        const calls = Array.from({ length: 100 }, (_, i) => caps.map((limit, k) => ({ k, v: limits.limiter.consume(ids[k]!, limit, HOUR, T0 + i) }))).flat();
        const verdicts = await Promise.all(calls.map(async (c) => ({ k: c.k, v: await c.v })));
        caps.forEach((limit, k) => {
          const allowed = verdicts.filter((x) => x.k === k && x.v.allowed);
          assert.equal(allowed.length, limit, `key ${k}`);
          assert.deepEqual(allowed.map((x) => x.v.remaining).sort((a, b) => a - b), Array.from({ length: limit }, (_, i) => i));
        });
        for (const [k, id] of ids.entries()) assert.equal((await limits.limiter.peek(id, caps[k]!, HOUR, T0 + 200)).remaining, 0);
      });

      test("300 keys consumed in one burst each admit exactly their limit", async () => {
        const ids = Array.from({ length: 300 }, () => fresh("key"));
        const verdicts = await Promise.all(ids.flatMap((id) => [0, 1, 2].map(() => limits.limiter.consume(id, 2, MINUTE, T0))));
        for (let k = 0; k < ids.length; k++) {
          assert.deepEqual(verdicts.slice(3 * k, 3 * k + 3).map((v) => v.allowed), [true, true, false], `key ${k}`);
        }
      });

    describe("lockout", () => {
      const policy: LockoutPolicy = { maxAttempts: 3, windowMs: 10 * MINUTE, blockMs: 15 * MINUTE };
      const unblocked = (attemptsLeft: number) => ({ blocked: false, attemptsLeft, blockedUntil: null });

      test("attemptsLeft counts down to a block of blockMs", async () => {
        const ip = fresh("203.0.113.1");
        assert.deepEqual(await limits.lockout.check(ip, policy, T0), unblocked(3));
        assert.deepEqual(await limits.lockout.recordFailure(ip, policy, T0 + 1), unblocked(2));
        assert.deepEqual(await limits.lockout.check(ip, policy, T0 + 2), unblocked(2));
        assert.deepEqual(await limits.lockout.recordFailure(ip, policy, T0 + 3), unblocked(1));
        const blockedUntil = T0 + 4 + policy.blockMs;
        assert.deepEqual(await limits.lockout.recordFailure(ip, policy, T0 + 4), { blocked: true, attemptsLeft: 0, blockedUntil });
        assert.deepEqual(await limits.lockout.check(ip, policy, T0 + 5), { blocked: true, attemptsLeft: 0, blockedUntil });
      });

      test("failures during a block neither count nor extend it", async () => {
        const ip = fresh("2001:db8::1");
        for (let i = 0; i < 3; i++) await limits.lockout.recordFailure(ip, policy, T0);
        const blockedUntil = T0 + policy.blockMs;
        assert.deepEqual(await limits.lockout.recordFailure(ip, policy, T0 + MINUTE), { blocked: true, attemptsLeft: 0, blockedUntil });
        assert.deepEqual(await limits.lockout.check(ip, policy, blockedUntil - 1), { blocked: true, attemptsLeft: 0, blockedUntil });
      });

      test("the block ends at blockedUntil and the client starts over with every attempt", async () => {
        const ip = fresh("203.0.113.2");
        for (let i = 0; i < 3; i++) await limits.lockout.recordFailure(ip, policy, T0);
        const end = T0 + policy.blockMs;
        assert.deepEqual(await limits.lockout.check(ip, policy, end), unblocked(3));
        assert.deepEqual(await limits.lockout.recordFailure(ip, policy, end), unblocked(2));
      });

      test("a block shorter than the window also ends with every attempt restored", async () => {
        const short: LockoutPolicy = { maxAttempts: 3, windowMs: 60 * MINUTE, blockMs: MINUTE };
        const ip = fresh("203.0.113.3");
        for (let i = 0; i < 3; i++) await limits.lockout.recordFailure(ip, short, T0);
        // Still inside the failure window, but the block is over: the count started again.
        assert.deepEqual(await limits.lockout.check(ip, short, T0 + MINUTE), unblocked(3));
        assert.deepEqual(await limits.lockout.recordFailure(ip, short, T0 + MINUTE), unblocked(2));
        assert.deepEqual(await limits.lockout.check(ip, short, T0 + MINUTE + 1), unblocked(2));
      });

      test("failures older than the window are forgotten", async () => {
        const ip = fresh("203.0.113.4");
        await limits.lockout.recordFailure(ip, policy, T0);
        await limits.lockout.recordFailure(ip, policy, T0 + 1);
        assert.deepEqual(await limits.lockout.check(ip, policy, T0 + policy.windowMs - 1), unblocked(1));
        assert.deepEqual(await limits.lockout.check(ip, policy, T0 + policy.windowMs), unblocked(3));
        // A failure after the window opens a new one instead of completing the old count.
        assert.deepEqual(await limits.lockout.recordFailure(ip, policy, T0 + policy.windowMs), unblocked(2));
      });

      test("the last failure inside the window still blocks", async () => {
        const ip = fresh("203.0.113.5");
        await limits.lockout.recordFailure(ip, policy, T0);
        await limits.lockout.recordFailure(ip, policy, T0 + 1);
        const last = T0 + policy.windowMs - 1;
        assert.deepEqual(await limits.lockout.recordFailure(ip, policy, last), { blocked: true, attemptsLeft: 0, blockedUntil: last + policy.blockMs });
      });

      test("a success clears the count", async () => {
        const ip = fresh("203.0.113.6");
        await limits.lockout.recordFailure(ip, policy, T0);
        await limits.lockout.recordFailure(ip, policy, T0 + 1);
        await limits.lockout.recordSuccess(ip);
        assert.deepEqual(await limits.lockout.check(ip, policy, T0 + 2), unblocked(3));
        assert.deepEqual(await limits.lockout.recordFailure(ip, policy, T0 + 3), unblocked(2));
      });

      test("is exact under concurrency: of 50 simultaneous failures only maxAttempts - 1 stay unblocked", async () => {
        const ip = fresh("198.51.100.7");
        const five: LockoutPolicy = { maxAttempts: 5, windowMs: policy.windowMs, blockMs: policy.blockMs };
        const states = await Promise.all(Array.from({ length: 50 }, () => limits.lockout.recordFailure(ip, five, T0)));
        const open = states.filter((s) => !s.blocked);
        assert.deepEqual(open.map((s) => s.attemptsLeft).sort(), [1, 2, 3, 4]);
        for (const s of states.filter((x) => x.blocked)) assert.deepEqual(s, { blocked: true, attemptsLeft: 0, blockedUntil: T0 + five.blockMs });
      });

      test("checks of several clients in one burst, beside rate-limit consumes, each read their own state", async () => {
        const blocked = fresh("198.51.100.1");
        const failing = fresh("198.51.100.2");
        const clean = fresh("198.51.100.3");
        for (let i = 0; i < 3; i++) await limits.lockout.recordFailure(blocked, policy, T0);
        await limits.lockout.recordFailure(failing, policy, T0);
        const id = fresh("key");
        const burst = await Promise.all(Array.from({ length: 10 }, (_, i) => Promise.all([
          limits.lockout.check(blocked, policy, T0 + 1),
          limits.lockout.check(failing, policy, T0 + 1),
          limits.lockout.check(clean, policy, T0 + 1),
          limits.limiter.consume(id, 5, MINUTE, T0 + i),
        ])));
        for (const [b, f, c] of burst) {
          assert.deepEqual(b, { blocked: true, attemptsLeft: 0, blockedUntil: T0 + policy.blockMs });
          assert.deepEqual(f, unblocked(2));
          assert.deepEqual(c, unblocked(3));
        }
        assert.equal(burst.filter(([, , , v]) => v.allowed).length, 5);
      });

      test("clients are counted independently", async () => {
        const a = fresh("192.0.2.1");
        const b = fresh("192.0.2.2");
        for (let i = 0; i < 3; i++) await limits.lockout.recordFailure(a, policy, T0);
        assert.equal((await limits.lockout.check(a, policy, T0)).blocked, true);
        assert.deepEqual(await limits.lockout.check(b, policy, T0), unblocked(3));
      });
    });
  });
}
