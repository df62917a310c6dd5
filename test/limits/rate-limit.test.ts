/**
 * Rate limits through the whole pipeline and on the memory limiter itself: exact under
 * concurrency, fixed windows aligned to the epoch, and which limit applies to a key.
 */
import { after, describe, test } from "node:test";
import assert from "node:assert/strict";
import { createMemoryRateLimiter } from "../../src/limits/memory/index.js";
import { createTestKeygate, T0 } from "../support/keygate.js";
import type { TestKeygate } from "../support/keygate.js";

const MINUTE = 60_000;
const HOUR = 3_600_000;

const CONFIG = {
  apis: [
    {
      id: "mail", keyFormat: { prefix: "ck", alphabet: "hex", length: 40 },
      // The email-validation seed: 1000/hour by default, more for test keys.
      rateLimit: { limit: 5, windowSeconds: 3600 },
      environmentRateLimits: { test: { limit: 2, windowSeconds: 60 } },
    },
    { id: "open", keyFormat: { prefix: "op" } },
  ],
};

const open: TestKeygate[] = [];
async function setup(): Promise<TestKeygate> {
  const t = await createTestKeygate(CONFIG);
  open.push(t);
  return t;
}
after(async () => { for (const t of open) await t.keygate.close(); });

describe("rate limits through verifyKey", () => {
  test("1000 concurrent verifications of a key limited to 100 give exactly 100 VALID and 900 RATE_LIMITED", async () => {
    const { keygate, accountId } = await setup();
    const { id, key } = await keygate.keys.create({ api: "mail", accountId, rateLimit: { limit: 100, windowSeconds: 3600 } });
    // From a cold cache: every request starts before any has finished its store read.
    const verdicts = await Promise.all(Array.from({ length: 1000 }, () => keygate.verifyKey({ api: "mail", key })));
    const valid = verdicts.filter((v) => v.code === "VALID");
    const limited = verdicts.filter((v) => v.code === "RATE_LIMITED");
    assert.equal(valid.length, 100);
    assert.equal(limited.length, 900);
    // Each admitted request saw its own count: remaining takes every value 99…0 once.
    assert.deepEqual(valid.map((v) => v.ratelimit!.remaining).sort((a, b) => a - b), Array.from({ length: 100 }, (_, i) => i));
    for (const v of limited) {
      assert.equal(v.valid, false);
      assert.deepEqual(v.ratelimit, { limit: 100, remaining: 0, reset: (T0 + HOUR) / 1000, window: 3600 });
      assert.equal(v.retryAfter, 3600);
    }
    // Only admitted requests are usage.
    await keygate.flush();
    assert.equal((await keygate.keys.get(id)).usageCount, 100);
  });

  test("concurrent verifications of two keys are limited per key", async () => {
    const { keygate, accountId } = await setup();
    const a = await keygate.keys.create({ api: "mail", accountId, rateLimit: { limit: 30, windowSeconds: 60 } });
    const b = await keygate.keys.create({ api: "mail", accountId, rateLimit: { limit: 70, windowSeconds: 60 } });
    const verdicts = await Promise.all(Array.from({ length: 400 }, (_, i) => keygate.verifyKey({ api: "mail", key: i % 2 ? a.key : b.key })));
    assert.equal(verdicts.filter((v) => v.valid && v.keyId === a.id).length, 30);
    assert.equal(verdicts.filter((v) => v.valid && v.keyId === b.id).length, 70);
  });

  test("remaining counts down to 0, then the key is RATE_LIMITED", async () => {
    const { keygate, accountId } = await setup();
    const { key } = await keygate.keys.create({ api: "mail", accountId });
    for (const remaining of [4, 3, 2, 1, 0]) {
      const v = await keygate.verifyKey({ api: "mail", key });
      assert.equal(v.code, "VALID");
      assert.equal(v.ratelimit!.remaining, remaining);
      assert.equal(v.ratelimit!.limit, 5);
    }
    const v = await keygate.verifyKey({ api: "mail", key });
    assert.equal(v.code, "RATE_LIMITED");
    assert.equal(v.ratelimit!.remaining, 0);
  });

  test("the window resets at the aligned boundary, not a full window after the first request", async () => {
    const { keygate, clock, accountId } = await setup();
    const { key } = await keygate.keys.create({ api: "mail", accountId, rateLimit: { limit: 2, windowSeconds: 60 } });
    clock.set(T0 + 45_000); // 15 s before the minute ends
    assert.equal((await keygate.verifyKey({ api: "mail", key })).ratelimit!.reset, (T0 + MINUTE) / 1000);
    await keygate.verifyKey({ api: "mail", key });
    clock.set(T0 + MINUTE - 1);
    const last = await keygate.verifyKey({ api: "mail", key });
    assert.equal(last.code, "RATE_LIMITED");
    assert.equal(last.retryAfter, 1);
    clock.set(T0 + MINUTE);
    const fresh = await keygate.verifyKey({ api: "mail", key });
    assert.equal(fresh.code, "VALID");
    assert.deepEqual(fresh.ratelimit, { limit: 2, remaining: 1, reset: (T0 + 2 * MINUTE) / 1000, window: 60 });
  });

  test("an hourly window resets on the hour, as the email-validation seed documents", async () => {
    const { keygate, clock, accountId } = await setup();
    const { key } = await keygate.keys.create({ api: "mail", accountId });
    clock.set(T0 + 59 * MINUTE + 30_000);
    for (let i = 0; i < 5; i++) assert.equal((await keygate.verifyKey({ api: "mail", key })).code, "VALID");
    const limited = await keygate.verifyKey({ api: "mail", key });
    assert.equal(limited.code, "RATE_LIMITED");
    assert.equal(limited.retryAfter, 30);
    assert.equal(limited.ratelimit!.reset, (T0 + HOUR) / 1000);
    clock.set(T0 + HOUR);
    assert.equal((await keygate.verifyKey({ api: "mail", key })).code, "VALID");
  });

  test("each environment gets its default limit, and a key's own limit overrides both", async () => {
    const { keygate, accountId } = await setup();
    const live = await keygate.keys.create({ api: "mail", accountId, environment: "live" });
    const testKey = await keygate.keys.create({ api: "mail", accountId, environment: "test" });
    const own = await keygate.keys.create({ api: "mail", accountId, environment: "test", rateLimit: { limit: 7, windowSeconds: 10 } });
    assert.deepEqual((await keygate.verifyKey({ api: "mail", key: live.key })).ratelimit, { limit: 5, remaining: 4, reset: (T0 + HOUR) / 1000, window: 3600 });
    assert.deepEqual((await keygate.verifyKey({ api: "mail", key: testKey.key })).ratelimit, { limit: 2, remaining: 1, reset: (T0 + MINUTE) / 1000, window: 60 });
    assert.deepEqual((await keygate.verifyKey({ api: "mail", key: own.key })).ratelimit, { limit: 7, remaining: 6, reset: (T0 + 10_000) / 1000, window: 10 });
    assert.equal((await keygate.verifyKey({ api: "mail", key: testKey.key })).code, "VALID");
    assert.equal((await keygate.verifyKey({ api: "mail", key: testKey.key })).code, "RATE_LIMITED");
  });

  test("a key's limit changed after creation applies on its next verification, counting the window's requests so far", async () => {
    const { keygate, accountId } = await setup();
    const { id, key } = await keygate.keys.create({ api: "mail", accountId });
    for (let i = 0; i < 5; i++) assert.equal((await keygate.verifyKey({ api: "mail", key })).code, "VALID");
    assert.equal((await keygate.verifyKey({ api: "mail", key })).code, "RATE_LIMITED");
    await keygate.keys.update(id, { rateLimit: { limit: 7, windowSeconds: 3600 } });
    const raised = await keygate.verifyKey({ api: "mail", key });
    assert.equal(raised.code, "VALID");
    assert.deepEqual(raised.ratelimit, { limit: 7, remaining: 1, reset: (T0 + HOUR) / 1000, window: 3600 });
    await keygate.keys.update(id, { rateLimit: null });
    assert.equal((await keygate.verifyKey({ api: "mail", key })).ratelimit!.limit, 5, "back to the API's default");
  });

  test("a key of an API without any limit is never limited and carries no ratelimit", async () => {
    const { keygate, accountId } = await setup();
    const { key } = await keygate.keys.create({ api: "open", accountId });
    const verdicts = await Promise.all(Array.from({ length: 300 }, () => keygate.verifyKey({ api: "open", key })));
    assert.ok(verdicts.every((v) => v.code === "VALID" && v.ratelimit === undefined));
  });
});

describe("memory rate limiter", () => {
  /** The memory limiter answers synchronously, which the port allows. */
  const sync = <T>(value: T | Promise<T>): T => {
    if (value instanceof Promise) throw new Error("expected a synchronous answer");
    return value;
  };

  test("1000 concurrent consumes of a limit of 100 admit exactly 100", async () => {
    const limiter = createMemoryRateLimiter();
    const verdicts = await Promise.all(Array.from({ length: 1000 }, () => Promise.resolve().then(() => limiter.consume("key_a", 100, HOUR, T0 + 5))));
    assert.equal(verdicts.filter((v) => v.allowed).length, 100);
    assert.equal(verdicts.filter((v) => !v.allowed).length, 900);
    for (const v of verdicts.filter((x) => !x.allowed)) assert.deepEqual(v, { allowed: false, limit: 100, remaining: 0, resetAt: T0 + HOUR });
  });

  test("remaining counts down and resetAt is the end of the aligned window", () => {
    const limiter = createMemoryRateLimiter();
    const now = T0 + 25_000;
    assert.deepEqual(sync(limiter.consume("k", 3, MINUTE, now)), { allowed: true, limit: 3, remaining: 2, resetAt: T0 + MINUTE });
    assert.deepEqual(sync(limiter.consume("k", 3, MINUTE, now)), { allowed: true, limit: 3, remaining: 1, resetAt: T0 + MINUTE });
    assert.deepEqual(sync(limiter.consume("k", 3, MINUTE, now)), { allowed: true, limit: 3, remaining: 0, resetAt: T0 + MINUTE });
    assert.deepEqual(sync(limiter.consume("k", 3, MINUTE, now)), { allowed: false, limit: 3, remaining: 0, resetAt: T0 + MINUTE });
  });

  test("a new window starts exactly at the boundary", () => {
    const limiter = createMemoryRateLimiter();
    assert.equal(sync(limiter.consume("k", 1, MINUTE, T0 + MINUTE - 1)).allowed, true);
    assert.equal(sync(limiter.consume("k", 1, MINUTE, T0 + MINUTE - 1)).allowed, false);
    const next = sync(limiter.consume("k", 1, MINUTE, T0 + MINUTE));
    assert.deepEqual(next, { allowed: true, limit: 1, remaining: 0, resetAt: T0 + 2 * MINUTE });
  });

  test("peek reports the window without consuming from it", () => {
    const limiter = createMemoryRateLimiter();
    const now = T0 + 1000;
    assert.deepEqual(sync(limiter.peek("k", 2, MINUTE, now)), { allowed: true, limit: 2, remaining: 2, resetAt: T0 + MINUTE });
    assert.deepEqual(sync(limiter.peek("k", 2, MINUTE, now)), { allowed: true, limit: 2, remaining: 2, resetAt: T0 + MINUTE });
    sync(limiter.consume("k", 2, MINUTE, now));
    for (let i = 0; i < 5; i++) assert.equal(sync(limiter.peek("k", 2, MINUTE, now)).remaining, 1);
    sync(limiter.consume("k", 2, MINUTE, now));
    assert.deepEqual(sync(limiter.peek("k", 2, MINUTE, now)), { allowed: false, limit: 2, remaining: 0, resetAt: T0 + MINUTE });
    assert.equal(sync(limiter.peek("k", 2, MINUTE, T0 + MINUTE)).remaining, 2, "the next window is untouched");
  });

  test("keys have independent windows", () => {
    const limiter = createMemoryRateLimiter();
    for (let i = 0; i < 3; i++) sync(limiter.consume("a", 3, MINUTE, T0));
    assert.equal(sync(limiter.consume("a", 3, MINUTE, T0)).allowed, false);
    assert.equal(sync(limiter.consume("b", 3, MINUTE, T0)).remaining, 2);
  });

  test("sweeping ended windows never forgets a current one", () => {
    const limiter = createMemoryRateLimiter({ sweepAbove: 10 });
    for (let i = 0; i < 10; i++) sync(limiter.consume(`old-${i}`, 5, MINUTE, T0));
    sync(limiter.consume("current", 2, MINUTE, T0 + MINUTE));
    sync(limiter.consume("current", 2, MINUTE, T0 + MINUTE));
    // Enough new ids to trigger sweeps; "current" is in the live window and must keep its count.
    for (let i = 0; i < 50; i++) sync(limiter.consume(`new-${i}`, 5, MINUTE, T0 + MINUTE + 1));
    assert.equal(sync(limiter.consume("current", 2, MINUTE, T0 + MINUTE + 2)).allowed, false);
  });
});
