/**
 * The brute-force lockout of the top-up seed: 5 failed attempts from one address block it
 * for 15 minutes. Driven through verifyKey with a frozen clock.
 */
import { after, describe, test } from "node:test";
import assert from "node:assert/strict";
import { createMemoryLockout } from "../../src/limits/memory/index.js";
import type { Verdict } from "../../src/verify/engine.js";
import { createTestKeygate, T0 } from "../support/keygate.js";
import type { TestKeygate } from "../support/keygate.js";

const MINUTE = 60_000;

const CONFIG = {
  apis: [
    {
      id: "topup", keyFormat: { environments: ["sandbox", "production"], environmentInKey: false, alphabet: "uuid" },
      scopes: ["read", "write"], defaultScopes: ["read"],
      lockout: { maxAttempts: 5, windowSeconds: 900, blockSeconds: 900 },
    },
    { id: "nolock", keyFormat: { prefix: "nl" }, lockout: { enabled: false } },
    { id: "guarded", keyFormat: { prefix: "gd" } },
  ],
};

interface Fixture extends TestKeygate {
  /** A valid key of topup. */
  key: string;
  /** A well-formed key that was never issued. */
  unknown: () => string;
  verify(key: string, ip: string, extra?: { scopes?: string[] }): Promise<Verdict>;
}

const open: TestKeygate[] = [];
async function setup(): Promise<Fixture> {
  const t = await createTestKeygate(CONFIG);
  open.push(t);
  const { key } = await t.keygate.keys.create({ api: "topup", accountId: t.accountId });
  return {
    ...t, key,
    unknown: () => t.keygate.apis.get("topup")!.codec.generate("sandbox"),
    verify: (k, ip, extra = {}) => t.keygate.verifyKey({ api: "topup", key: k, ip, ...extra }),
  };
}
after(async () => { for (const t of open) await t.keygate.close(); });

describe("IP lockout", () => {
  test("5 failures give attemptsLeft 4, 3, 2, 1, 0; then the address is IP_BLOCKED even with a valid key", async () => {
    const f = await setup();
    const ip = "203.0.113.10";
    const left: (number | undefined)[] = [];
    for (let i = 0; i < 5; i++) {
      const v = await f.verify(i % 2 ? "not-a-uuid" : f.unknown(), ip);
      assert.ok(v.code === "NOT_FOUND" || v.code === "MALFORMED_KEY", v.code);
      left.push(v.attemptsLeft);
      if (i < 4) assert.equal(v.retryAfter, undefined);
      else assert.equal(v.retryAfter, 900, "the failure that blocks says for how long");
    }
    assert.deepEqual(left, [4, 3, 2, 1, 0]);
    const blocked = await f.verify(f.key, ip);
    assert.deepEqual(blocked, { valid: false, code: "IP_BLOCKED", api: "topup", attemptsLeft: 0, retryAfter: 900, reset: Math.ceil(f.clock.now() / 1000) + 900 });
    assert.equal((await f.verify(f.unknown(), ip)).code, "IP_BLOCKED");
    assert.equal((await f.verify("garbage", ip)).code, "IP_BLOCKED");
  });

  test("retryAfter counts down while blocked, and the address may try again after 15 minutes", async () => {
    const f = await setup();
    const ip = "203.0.113.11";
    for (let i = 0; i < 5; i++) await f.verify(f.unknown(), ip);
    f.clock.advance(10 * MINUTE);
    assert.equal((await f.verify(f.key, ip)).retryAfter, 300);
    f.clock.advance(5 * MINUTE - 1);
    const last = await f.verify(f.key, ip);
    assert.equal(last.code, "IP_BLOCKED");
    assert.equal(last.retryAfter, 1);
    f.clock.advance(1);
    assert.equal((await f.verify(f.key, ip)).code, "VALID");
    // And its count started over.
    assert.equal((await f.verify(f.unknown(), ip)).attemptsLeft, 4);
  });

  test("after a block ends, a failure starts a fresh count instead of blocking again", async () => {
    const f = await setup();
    const ip = "203.0.113.12";
    for (let i = 0; i < 5; i++) await f.verify(f.unknown(), ip);
    f.clock.advance(15 * MINUTE);
    assert.equal((await f.verify(f.unknown(), ip)).attemptsLeft, 4);
  });

  test("a blocked address never reaches the store", async () => {
    const f = await setup();
    const ip = "203.0.113.13";
    for (let i = 0; i < 5; i++) await f.verify(f.unknown(), ip);
    f.calls.reset();
    for (let i = 0; i < 20; i++) assert.equal((await f.verify(f.unknown(), ip)).code, "IP_BLOCKED");
    assert.equal(f.calls.count("getKeyByHash"), 0);
  });

  test("failures further apart than the window do not accumulate", async () => {
    const f = await setup();
    const ip = "203.0.113.14";
    for (let i = 0; i < 4; i++) await f.verify(f.unknown(), ip);
    f.clock.advance(15 * MINUTE);
    assert.equal((await f.verify(f.unknown(), ip)).attemptsLeft, 4, "the window of the first four has passed");
    for (let round = 0; round < 10; round++) {
      f.clock.advance(15 * MINUTE);
      assert.equal((await f.verify(f.unknown(), ip)).attemptsLeft, 4);
    }
    assert.equal((await f.verify(f.key, ip)).code, "VALID");
  });

  test("failures within the window accumulate even when spread out", async () => {
    const f = await setup();
    const ip = "203.0.113.15";
    for (let i = 0; i < 5; i++) {
      await f.verify(f.unknown(), ip);
      f.clock.advance(3 * MINUTE - 1);
    }
    assert.equal((await f.verify(f.key, ip)).code, "IP_BLOCKED");
  });

  test("a success resets the count", async () => {
    const f = await setup();
    const ip = "203.0.113.16";
    for (let i = 0; i < 4; i++) await f.verify(f.unknown(), ip);
    assert.equal((await f.verify(f.key, ip)).code, "VALID");
    assert.equal((await f.verify(f.unknown(), ip)).attemptsLeft, 4);
    for (let i = 0; i < 3; i++) await f.verify(f.unknown(), ip);
    assert.equal((await f.verify(f.key, ip)).code, "VALID", "4 failures after the reset do not block");
  });

  test("another address is unaffected by a blocked one", async () => {
    const f = await setup();
    for (let i = 0; i < 5; i++) await f.verify(f.unknown(), "203.0.113.17");
    assert.equal((await f.verify(f.key, "203.0.113.17")).code, "IP_BLOCKED");
    assert.equal((await f.verify(f.key, "203.0.113.18")).code, "VALID");
    assert.equal((await f.verify(f.unknown(), "203.0.113.18")).attemptsLeft, 4);
    assert.equal((await f.verify(f.key, "2001:db8::17")).code, "VALID");
  });

  test("failures on one API never block the same address on another API", async () => {
    const f = await setup();
    const ip = "203.0.113.22";
    for (let i = 0; i < 5; i++) await f.keygate.verifyKey({ api: "guarded", key: "garbage", ip });
    assert.equal((await f.keygate.verifyKey({ api: "guarded", key: "garbage", ip })).code, "IP_BLOCKED");
    assert.equal((await f.verify(f.key, ip)).code, "VALID");
    assert.equal((await f.verify(f.unknown(), ip)).attemptsLeft, 4);
  });

  test("an IPv4 client is one subject whether it arrives as IPv4 or IPv4-mapped IPv6", async () => {
    const f = await setup();
    for (let i = 0; i < 3; i++) await f.verify(f.unknown(), "198.51.100.20");
    for (let i = 0; i < 2; i++) await f.verify(f.unknown(), "::ffff:198.51.100.20");
    assert.equal((await f.verify(f.key, "198.51.100.20")).code, "IP_BLOCKED");
  });

  test("every failure that names a key counts: revoked, disabled and expired keys too", async () => {
    const f = await setup();
    const ip = "203.0.113.19";
    const { keygate, accountId } = f;
    const revoked = await keygate.keys.create({ api: "topup", accountId });
    await keygate.keys.revoke(revoked.id);
    const disabled = await keygate.keys.create({ api: "topup", accountId });
    await keygate.keys.update(disabled.id, { enabled: false });
    const expiring = await keygate.keys.create({ api: "topup", accountId, expiresAt: new Date(T0 + 1000).toISOString() });
    f.clock.advance(1000);
    const codes: [string, number | undefined][] = [];
    for (const k of [revoked.key, disabled.key, expiring.key]) {
      const v = await f.verify(k, ip);
      codes.push([v.code, v.attemptsLeft]);
    }
    assert.deepEqual(codes, [["REVOKED", 4], ["DISABLED", 3], ["EXPIRED", 2]]);
  });

  test("MISSING_CREDENTIALS, IP_NOT_ALLOWED, INSUFFICIENT_SCOPE and RATE_LIMITED are not failed attempts", async () => {
    const f = await setup();
    const ip = "203.0.113.20";
    const { keygate, accountId } = f;
    const fenced = await keygate.keys.create({ api: "topup", accountId, ipAllowlist: ["198.51.100.0/24"] });
    const limited = await keygate.keys.create({ api: "topup", accountId, rateLimit: { limit: 1, windowSeconds: 3600 } });
    for (let i = 0; i < 10; i++) {
      const missing = await keygate.verifyKey({ api: "topup", key: "", ip });
      assert.equal(missing.code, "MISSING_CREDENTIALS");
      assert.equal(missing.attemptsLeft, undefined);
      const outside = await f.verify(fenced.key, ip);
      assert.equal(outside.code, "IP_NOT_ALLOWED");
      assert.equal(outside.attemptsLeft, undefined);
      const scope = await f.verify(f.key, ip, { scopes: ["write"] });
      assert.equal(scope.code, "INSUFFICIENT_SCOPE");
      assert.equal(scope.attemptsLeft, undefined);
      const rate = await f.verify(limited.key, ip);
      assert.equal(rate.code, i === 0 ? "VALID" : "RATE_LIMITED");
    }
    assert.equal((await f.verify(f.unknown(), ip)).attemptsLeft, 4);
  });

  test("with the lockout disabled, failures are never counted and nothing is blocked", async () => {
    const f = await setup();
    const { key } = await f.keygate.keys.create({ api: "nolock", accountId: f.accountId });
    const forged = f.keygate.apis.get("nolock")!.codec.generate("live");
    const ip = "203.0.113.21";
    for (let i = 0; i < 50; i++) {
      const v = await f.keygate.verifyKey({ api: "nolock", key: i % 2 ? forged : "garbage", ip });
      assert.ok(v.code === "NOT_FOUND" || v.code === "MALFORMED_KEY");
      assert.equal(v.attemptsLeft, undefined);
    }
    assert.equal((await f.keygate.verifyKey({ api: "nolock", key, ip })).code, "VALID");
  });

  test("without a client address there is no subject to lock out", async () => {
    const f = await setup();
    for (let i = 0; i < 20; i++) {
      const v = await f.keygate.verifyKey({ api: "topup", key: f.unknown() });
      assert.equal(v.code, "NOT_FOUND");
      assert.equal(v.attemptsLeft, undefined);
    }
    assert.equal((await f.keygate.verifyKey({ api: "topup", key: f.key })).code, "VALID");
  });
});

describe("memory lockout", () => {
  const policy = { maxAttempts: 3, windowMs: 10 * MINUTE, blockMs: 5 * MINUTE };

  test("reports attempts left, then the block and when it ends", () => {
    const lockout = createMemoryLockout();
    assert.deepEqual(lockout.check("s", policy, T0), { blocked: false, attemptsLeft: 3, blockedUntil: null });
    assert.deepEqual(lockout.recordFailure("s", policy, T0), { blocked: false, attemptsLeft: 2, blockedUntil: null });
    assert.deepEqual(lockout.recordFailure("s", policy, T0 + 1), { blocked: false, attemptsLeft: 1, blockedUntil: null });
    assert.deepEqual(lockout.recordFailure("s", policy, T0 + 2), { blocked: true, attemptsLeft: 0, blockedUntil: T0 + 2 + 5 * MINUTE });
    assert.deepEqual(lockout.check("s", policy, T0 + 3), { blocked: true, attemptsLeft: 0, blockedUntil: T0 + 2 + 5 * MINUTE });
    // Failures while blocked do not extend the block.
    assert.deepEqual(lockout.recordFailure("s", policy, T0 + MINUTE), { blocked: true, attemptsLeft: 0, blockedUntil: T0 + 2 + 5 * MINUTE });
    assert.deepEqual(lockout.check("s", policy, T0 + 2 + 5 * MINUTE), { blocked: false, attemptsLeft: 3, blockedUntil: null });
  });

  test("a block shorter than the window still starts the count over when it ends", () => {
    const lockout = createMemoryLockout();
    for (let i = 0; i < 3; i++) lockout.recordFailure("s", policy, T0);
    assert.deepEqual(lockout.recordFailure("s", policy, T0 + 5 * MINUTE), { blocked: false, attemptsLeft: 2, blockedUntil: null });
  });

  test("recordSuccess clears the count", () => {
    const lockout = createMemoryLockout();
    lockout.recordFailure("s", policy, T0);
    lockout.recordFailure("s", policy, T0);
    lockout.recordSuccess("s");
    assert.deepEqual(lockout.check("s", policy, T0), { blocked: false, attemptsLeft: 3, blockedUntil: null });
  });
});
